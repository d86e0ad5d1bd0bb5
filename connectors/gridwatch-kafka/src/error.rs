//! Errors, and which librdkafka failures a retry can cure.
//!
//! The shared retry policy and the DLQ depend on that split (FR-008):
//! a broker that is down, restarting or electing a leader is transient; a
//! record the broker will never take, a missing topic or refused
//! credentials are permanent.

use gridwatch_connector::SinkError;
use gridwatch_contracts::ConfigError;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode as Code};

/// Why a Kafka connector could not start or keep going.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The config failed validation.
    #[error("invalid config: {0}")]
    Config(#[from] ConfigError),
    /// A secret file (`sasl.password_file`) could not be read.
    #[error("cannot read a secret file: {0}")]
    SecretFile(#[source] std::io::Error),
    /// librdkafka refused the configuration or could not start.
    #[error("cannot create the Kafka client: {0}")]
    Client(#[source] RdError),
    /// The brokers did not answer a metadata request.
    #[error("cannot reach the brokers {brokers}: {source}")]
    Unreachable {
        brokers: String,
        #[source]
        source: RdError,
    },
    /// A topic the connector needs does not exist. Neither connector
    /// creates topics: brokers such as Tansu 0.6 do not auto-create them and
    /// production clusters usually forbid it.
    #[error(
        "topic {topic:?} does not exist on {brokers} ({detail}); create it first, e.g. `tansu topic create {topic} --partitions 3`"
    )]
    UnknownTopic {
        topic: String,
        brokers: String,
        detail: String,
    },
    /// `transactional = true` on a broker that cannot do transactions.
    #[error(
        "cannot start Kafka transactions: {0}; the broker may not support them (Tansu 0.6 does not commit them): set transactional = false to use the idempotent producer with tail recovery"
    )]
    Transactions(#[source] RdError),
    /// Reading the topic's tail at start-up failed.
    #[error("cannot read back topic {topic:?}: {source}")]
    ReadBack {
        topic: String,
        #[source]
        source: RdError,
    },
    /// The consumer failed in a way that restarting the source cannot cure.
    #[error("Kafka consumer failed: {0}")]
    Consumer(#[source] RdError),
    /// A blocking client call's thread went away (the runtime is shutting down).
    #[error("the Kafka client's worker thread stopped: {0}")]
    Worker(String),
}

impl KafkaError {
    /// Whether trying again later can help.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::ReadBack { .. } | Self::Worker(_) => true,
            Self::Consumer(e) => classify(e) == Class::Transient,
            _ => false,
        }
    }
}

impl From<KafkaError> for SinkError {
    fn from(e: KafkaError) -> Self {
        if e.is_transient() {
            SinkError::Transient(e.to_string())
        } else {
            SinkError::Permanent(e.to_string())
        }
    }
}

/// How a failure is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Retry later: connection, timeout, leadership and load problems.
    Transient,
    /// This one record can never be written; the rest of the batch can.
    Record,
    /// Nothing can be written until an operator acts (topic, auth, config).
    Permanent,
}

/// Classifies a librdkafka error.
pub(crate) fn classify(error: &RdError) -> Class {
    match error.rdkafka_error_code() {
        Some(code) => classify_code(code),
        // Configuration, creation and NUL errors: the code has no code.
        None => match error {
            RdError::Canceled | RdError::NoMessageReceived => Class::Transient,
            _ => Class::Permanent,
        },
    }
}

pub(crate) fn classify_code(code: Code) -> Class {
    match code {
        // The record itself is unacceptable.
        Code::MessageSizeTooLarge
        | Code::InvalidMessageSize
        | Code::InvalidRecord
        | Code::InvalidMessage
        | Code::InvalidTimestamp
        | Code::BadMessage
        | Code::KeySerialization
        | Code::ValueSerialization => Class::Record,
        // Operator action needed.
        Code::UnknownTopic
        | Code::UnknownTopicOrPartition
        | Code::InvalidTopic
        | Code::TopicAuthorizationFailed
        | Code::ClusterAuthorizationFailed
        | Code::TransactionalIdAuthorizationFailed
        | Code::SaslAuthenticationFailed
        | Code::Authentication
        | Code::UnsupportedSASLMechanism
        | Code::IllegalSASLState
        | Code::InvalidRequiredAcks
        | Code::UnsupportedVersion
        | Code::UnsupportedForMessageFormat
        | Code::UnsupportedCompressionType
        | Code::UnsupportedFeature
        | Code::InvalidConfig
        | Code::InvalidArgument
        | Code::PolicyViolation
        | Code::SecurityDisabled
        | Code::ProducerFenced
        | Code::Fenced
        | Code::NotConfigured
        | Code::NotImplemented => Class::Permanent,
        // Everything else is the cluster being down, slow, restarting or
        // re-electing (AllBrokersDown, BrokerTransportFailure,
        // MessageTimedOut, RequestTimedOut, NotLeaderForPartition,
        // LeaderNotAvailable, NotEnoughReplicas, QueueFull,
        // ThrottlingQuotaExceeded, ...), or an idempotence/transaction state
        // problem the bridge cures by recreating its producer (Fatal,
        // OutOfOrderSequenceNumber, InvalidProducerEpoch, UnknownProducerId).
        _ => Class::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_fr_008() {
        for code in [
            Code::AllBrokersDown,
            Code::BrokerTransportFailure,
            Code::MessageTimedOut,
            Code::RequestTimedOut,
            Code::NotLeaderForPartition,
            Code::LeaderNotAvailable,
            Code::NotEnoughReplicas,
            Code::QueueFull,
            Code::ThrottlingQuotaExceeded,
            Code::Fatal,
            Code::OutOfOrderSequenceNumber,
        ] {
            assert_eq!(classify_code(code), Class::Transient, "{code:?}");
        }
        for code in [
            Code::MessageSizeTooLarge,
            Code::InvalidRecord,
            Code::InvalidMessage,
        ] {
            assert_eq!(classify_code(code), Class::Record, "{code:?}");
        }
        for code in [
            Code::UnknownTopicOrPartition,
            Code::TopicAuthorizationFailed,
            Code::SaslAuthenticationFailed,
            Code::UnsupportedVersion,
        ] {
            assert_eq!(classify_code(code), Class::Permanent, "{code:?}");
        }
        assert_eq!(
            classify(&RdError::MessageProduction(Code::MessageTimedOut)),
            Class::Transient
        );
        let e: SinkError = KafkaError::Unreachable {
            brokers: "127.0.0.1:1".into(),
            source: RdError::MetadataFetch(Code::AllBrokersDown),
        }
        .into();
        assert!(e.is_transient());
    }
}
