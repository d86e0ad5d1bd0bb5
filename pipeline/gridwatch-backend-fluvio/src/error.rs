//! What can go wrong talking to a Fluvio cluster, and whether retrying helps.
//!
//! The fluvio client reports most failures as `anyhow::Error` wrapping a
//! `FluvioError`, a socket error or a protocol `ErrorCode`. [`classify`]
//! looks inside once, so every call site gets the same answer to the one
//! question a retry policy asks: can the same call succeed later?

use fluvio::FluvioError;
use fluvio::ProducerError;
use fluvio::dataplane::link::ErrorCode;
use gridwatch_contracts::ConfigError;
use gridwatch_runtime::backend::BackendError;

/// A Fluvio backend failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum FluvioBackendError {
    /// The configuration cannot be used (checked before connecting).
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// No connection to the SC or an SPU, or it broke.
    #[error("cannot reach the Fluvio cluster at {target}: {message}")]
    Connect { target: String, message: String },
    #[error("topic {topic:?} does not exist in the Fluvio cluster")]
    NoSuchTopic { topic: String },
    #[error("topic {topic:?} has no partition {partition}")]
    NoSuchPartition { topic: String, partition: u32 },
    #[error(
        "offset {offset} of {topic}/{partition} is outside the partition's range {log_start}..={high_watermark}"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: u64,
        log_start: u64,
        high_watermark: u64,
    },
    /// A call to the cluster failed; `retryable` says whether trying again can help.
    #[error("fluvio {op} on {target}: {message}")]
    Cluster {
        /// What was being done, e.g. "produce" or "create topic".
        op: &'static str,
        /// The topic/partition or object involved.
        target: String,
        message: String,
        retryable: bool,
    },
    /// A SmartModule named in a chain is not registered in the cluster.
    #[error(
        "SmartModule {name:?} is not registered in the cluster (register it with `gridwatch modules publish` or `fluvio smartmodule create`)"
    )]
    SmartModuleNotFound { name: String },
    /// A SmartModule of a server-side chain failed to initialise or to process a record.
    #[error("server-side SmartModule chain on {target}: {message}")]
    SmartModule { target: String, message: String },
    /// A module file or its metadata could not be read or is malformed.
    #[error("SmartModule file {path}: {message}")]
    ModuleFile { path: String, message: String },
}

impl FluvioBackendError {
    /// True when the same call may succeed later: the cluster is
    /// unreachable, a leader is moving, a request timed out.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { .. } => true,
            Self::Cluster { retryable, .. } => *retryable,
            Self::Config(_)
            | Self::NoSuchTopic { .. }
            | Self::NoSuchPartition { .. }
            | Self::OffsetOutOfRange { .. }
            | Self::SmartModuleNotFound { .. }
            | Self::SmartModule { .. }
            | Self::ModuleFile { .. } => false,
        }
    }

    /// Wraps a client error from `op` on `target`, classifying it.
    pub(crate) fn cluster(op: &'static str, target: impl Into<String>, e: &anyhow::Error) -> Self {
        let target = target.into();
        let retryable = classify(e);
        Self::Cluster {
            op,
            target,
            message: format!("{e:#}"),
            retryable,
        }
    }

    /// An error code the SPU sent back for `op` on `target`.
    pub(crate) fn code(op: &'static str, target: impl Into<String>, code: &ErrorCode) -> Self {
        let target = target.into();
        match code {
            ErrorCode::SmartModuleNotFound { name } => {
                Self::SmartModuleNotFound { name: name.clone() }
            }
            ErrorCode::SmartModuleChainInitError(_)
            | ErrorCode::SmartModuleInitError(_)
            | ErrorCode::SmartModuleRuntimeError(_) => Self::SmartModule {
                target,
                message: code.to_string(),
            },
            _ => Self::Cluster {
                op,
                target,
                message: code.to_string(),
                retryable: code_is_retryable(code),
            },
        }
    }
}

/// Whether an error the fluvio client returned is transient.
pub(crate) fn classify(e: &anyhow::Error) -> bool {
    for cause in e.chain() {
        if let Some(f) = cause.downcast_ref::<FluvioError>() {
            return match f {
                FluvioError::Io(_) | FluvioError::Socket(_) | FluvioError::SPUNotFound(_) => true,
                FluvioError::Producer(p) => match p {
                    ProducerError::RecordTooLarge(..)
                    | ProducerError::InvalidConfiguration(_)
                    | ProducerError::PartitionNotFound(_) => false,
                    ProducerError::SpuErrorCode(code) => code_is_retryable(code),
                    // Timeouts, closed channels, internal hiccups.
                    _ => true,
                },
                FluvioError::AdminApi(api) => {
                    let text = api.to_string();
                    text.contains("NotLeader")
                        || text.contains("not leader")
                        || text.contains("timeout")
                }
                _ => false,
            };
        }
        if let Some(code) = cause.downcast_ref::<ErrorCode>() {
            return code_is_retryable(code);
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        if cause.downcast_ref::<fluvio_socket::SocketError>().is_some() {
            return true;
        }
    }
    false
}

/// Codes that mean "not now" rather than "never".
pub(crate) fn code_is_retryable(code: &ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotLeaderForPartition
            | ErrorCode::PartitionNotLeader
            | ErrorCode::StorageError
            | ErrorCode::SpuNotFound
            | ErrorCode::SpuOffline
            | ErrorCode::SpuError
            | ErrorCode::TopicPendingInitialization
            | ErrorCode::PartitionPendingInitialization
            | ErrorCode::FetchSessionNotFoud
    )
}

impl From<FluvioBackendError> for BackendError {
    /// The runtime's error type has dedicated variants for missing topics,
    /// partitions and offsets; the rest are transient (`Task`, which the
    /// runtime treats as retryable) or permanent. `BackendError` has no
    /// variant for a remote backend's permanent failure yet, so those travel
    /// as a non-retryable `Log(InvalidConfig)` whose text says "fluvio".
    fn from(e: FluvioBackendError) -> Self {
        match e {
            FluvioBackendError::NoSuchTopic { topic } => BackendError::NoSuchTopic { topic },
            FluvioBackendError::NoSuchPartition { topic, partition } => {
                BackendError::NoSuchPartition { topic, partition }
            }
            FluvioBackendError::OffsetOutOfRange {
                topic,
                partition,
                offset,
                ..
            } => BackendError::OffsetOutOfRange {
                topic,
                partition,
                offset,
            },
            e if e.is_retryable() => BackendError::Task(e.to_string()),
            e => BackendError::Log(gridwatch_log::LogError::InvalidConfig {
                field: "fluvio",
                reason: e.to_string(),
            }),
        }
    }
}
