//! What can go wrong when hosting a chain, said per module.
//!
//! Every variant that concerns a guest names the module (as the chain
//! builder was told) and the ABI call that was running, because an operator
//! looking at a failed batch first needs to know whose code to blame.

use std::time::Duration;

/// An error from compiling, instantiating, initialising or running a module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The bytes are not a WebAssembly module this engine can compile.
    #[error("module {module}: not a valid WebAssembly module: {reason}")]
    Compile { module: String, reason: String },

    /// A precompiled module from another `wasmtime::Engine`: its code was
    /// generated without this engine's epoch checks, so it cannot run here.
    #[error(
        "module {module}: was compiled by a different wasmtime engine; compile it with this host's Engine"
    )]
    ForeignModule { module: String },

    /// Linking failed: an import the host does not provide, or a start
    /// function that failed.
    #[error("module {module}: cannot be instantiated: {reason}")]
    Instantiate { module: String, reason: String },

    /// The module lacks an export the SmartModule ABI requires.
    #[error(
        "module {module}: does not export `{export}` ({expected}), which the SmartModule ABI requires"
    )]
    MissingExport {
        module: String,
        export: &'static str,
        expected: &'static str,
    },

    /// An ABI export exists with the wrong signature.
    #[error("module {module}: export `{export}` has the wrong signature: {reason}")]
    BadExport {
        module: String,
        export: &'static str,
        reason: String,
    },

    /// No transform export, so there is nothing to run per batch.
    #[error("module {module}: exports no transform (filter, map, filter_map or array_map)")]
    NoTransform { module: String },

    /// A SmartModule kind this host does not run (aggregate).
    #[error("module {module}: {kind} SmartModules are not supported by this host")]
    UnsupportedKind { module: String, kind: &'static str },

    /// The module's `init` rejected its params; `message` is the module's own.
    #[error("module {module}: init failed: {message}")]
    Init { module: String, message: String },

    /// The module's `look_back` function returned an error; `message` is the module's own.
    #[error("module {module}: look_back failed: {message}")]
    LookBack { module: String, message: String },

    /// An ABI call returned a negative status without a detailed error,
    /// e.g. the module could not decode its input.
    #[error("module {module}: `{call}` returned status {code}: {status}")]
    GuestStatus {
        module: String,
        call: &'static str,
        code: i32,
        status: String,
    },

    /// The call ran past its wall-time budget and was interrupted.
    #[error("module {module}: `{call}` ran past its deadline of {timeout:?} and was stopped")]
    Deadline {
        module: String,
        call: &'static str,
        timeout: Duration,
    },

    /// The module tried to grow the store's memory past its limit.
    #[error(
        "module {module}: `{call}` tried to grow guest memory from {current} to {desired} bytes, past the store's limit of {limit} bytes"
    )]
    MemoryLimit {
        module: String,
        call: &'static str,
        current: usize,
        desired: usize,
        limit: usize,
    },

    /// The module trapped (a Rust panic, `unreachable`, an out-of-bounds
    /// access, `proc_exit`, ...). `trap` is set when wasmtime classified it.
    #[error("module {module}: `{call}` trapped: {message}")]
    Trap {
        module: String,
        call: &'static str,
        trap: Option<wasmtime::Trap>,
        message: String,
    },

    /// The module broke the ABI: output outside its memory, undecodable
    /// output, or no output at all.
    #[error("module {module}: `{call}` broke the SmartModule ABI: {reason}")]
    BadOutput {
        module: String,
        call: &'static str,
        reason: String,
    },

    /// An input larger than a 32-bit guest can address.
    #[error("module {module}: an input of {bytes} bytes is too large for a 32-bit guest")]
    InputTooLarge { module: String, bytes: usize },

    /// An earlier fault left a guest's state undefined; the chain refuses
    /// further work until it is rebuilt.
    #[error("module {module}: snapshot cannot be restored: {reason}")]
    Snapshot { module: String, reason: String },

    #[error("the chain stopped after a fault in module {module}; build a new chain")]
    Poisoned { module: String },

    /// `look_back` was asked for a module index the chain does not have.
    #[error("the chain has {len} modules, there is no module {index}")]
    NoSuchModule { index: usize, len: usize },

    /// The caller's reader could not supply the look_back records.
    #[error("module {module}: reading its look_back records failed: {source}")]
    LookBackRead {
        module: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Encoding or decoding the SmartModule protocol on the host failed.
    #[error("encoding or decoding {what} failed: {source}")]
    Codec {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// A limit or option that cannot work.
    #[error("{key} = {value} is not allowed: {allowed}")]
    Config {
        key: &'static str,
        value: String,
        allowed: &'static str,
    },

    /// The wasmtime engine could not be configured.
    #[error("creating the wasmtime engine failed: {reason}")]
    Engine { reason: String },

    /// The thread that advances the epoch could not be started.
    #[error("starting the epoch ticker thread failed: {source}")]
    Ticker {
        #[source]
        source: std::io::Error,
    },
}

impl HostError {
    /// The module the error concerns, when one does.
    pub fn module(&self) -> Option<&str> {
        match self {
            Self::Compile { module, .. }
            | Self::ForeignModule { module }
            | Self::Instantiate { module, .. }
            | Self::MissingExport { module, .. }
            | Self::BadExport { module, .. }
            | Self::NoTransform { module }
            | Self::UnsupportedKind { module, .. }
            | Self::Init { module, .. }
            | Self::LookBack { module, .. }
            | Self::GuestStatus { module, .. }
            | Self::Deadline { module, .. }
            | Self::MemoryLimit { module, .. }
            | Self::Trap { module, .. }
            | Self::BadOutput { module, .. }
            | Self::InputTooLarge { module, .. }
            | Self::Poisoned { module }
            | Self::Snapshot { module, .. }
            | Self::LookBackRead { module, .. } => Some(module),
            Self::NoSuchModule { .. }
            | Self::Codec { .. }
            | Self::Config { .. }
            | Self::Engine { .. }
            | Self::Ticker { .. } => None,
        }
    }

    /// Whether the guest's state is undefined after this error, so the chain
    /// must be rebuilt before it can process again. The chain enforces this
    /// itself (it answers [`HostError::Poisoned`]); the runtime uses it to
    /// decide between "send this batch to the DLQ" and "rebuild, then retry".
    pub fn poisons_chain(&self) -> bool {
        matches!(
            self,
            Self::Deadline { .. }
                | Self::MemoryLimit { .. }
                | Self::Trap { .. }
                | Self::BadOutput { .. }
                | Self::Poisoned { .. }
        )
    }

    /// Whether trying the same work again (on a rebuilt chain if
    /// [`poisons_chain`](Self::poisons_chain)) can succeed. A deadline depends
    /// on the machine's load and a reader's failure on I/O; a trap, a memory
    /// limit, a rejected param or a broken module repeat on the same input.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Deadline { .. } | Self::Poisoned { .. } | Self::LookBackRead { .. }
        )
    }
}
