//! What can go wrong opening or writing the lake.

use std::path::PathBuf;

use gridwatch_connector::SinkError;
use gridwatch_contracts::ConfigError;

/// Why the lake sink could not be built or could not write.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A `*_file` secret or the CA file could not be read.
    #[error("cannot read {key} from {}: {source}", path.display())]
    ReadFile {
        key: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The CA file is not PEM certificates.
    #[error("{key}: {} holds no usable PEM certificate: {source}", path.display())]
    Certificate {
        key: String,
        path: PathBuf,
        #[source]
        source: object_store::Error,
    },
    /// The local lake directory could not be created.
    #[error("cannot create the lake directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The object store refused or failed a request.
    #[error("lake {op} {path}: {source}")]
    Store {
        op: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// The lake's commit state cannot be read by this version.
    #[error("lake state {path} is not usable: {problem}")]
    State { path: String, problem: String },
    /// A data file could not be read back as the lake writes it.
    #[error("reading {path}: {problem}")]
    Decode { path: String, problem: String },
    /// Encoding rows to Parquet failed (a bug, not bad input).
    #[error("encoding {path}: {problem}")]
    Encode { path: String, problem: String },
}

impl LakeError {
    /// Whether retrying can help: network faults, timeouts and server
    /// errors can; bad credentials, a missing bucket or an unreadable state
    /// cannot.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store { source, .. } => !matches!(
                source,
                object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::NotImplemented { .. }
                    | object_store::Error::UnknownConfigurationKey { .. }
            ),
            Self::Encode { .. } => true,
            _ => false,
        }
    }
}

impl From<LakeError> for SinkError {
    fn from(e: LakeError) -> Self {
        if e.is_transient() {
            SinkError::Transient(e.to_string())
        } else {
            SinkError::Permanent(e.to_string())
        }
    }
}
