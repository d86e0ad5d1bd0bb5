//! Why a benchmark could not run or finish.

use std::path::PathBuf;
use std::time::Duration;

pub use gridwatch_contracts::ConfigError;

/// Everything that stops a bench, soak or chain measurement.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An option out of range; names the option, the value and what is allowed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("starting {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("gridwatch was not ready after {waited:?}: {detail}")]
    NotReady { waited: Duration, detail: String },
    #[error("gridwatch exited during the run ({status}); last output:\n{output}")]
    Exited { status: String, output: String },
    #[error("HTTP {what}: {source}")]
    Http {
        what: String,
        source: reqwest::Error,
    },
    #[error("unexpected answer from {what}: {detail}")]
    Protocol { what: String, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the chain failed: {0}")]
    Chain(#[from] gridwatch_runtime::chain::ChainError),
    #[error("the WASM host failed: {0}")]
    Host(#[from] gridwatch_wasm_host::HostError),
    #[error("a load client failed: {0}")]
    Load(String),
}

impl BenchError {
    pub(crate) fn http(what: impl Into<String>) -> impl FnOnce(reqwest::Error) -> Self {
        let what = what.into();
        move |source| Self::Http { what, source }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
