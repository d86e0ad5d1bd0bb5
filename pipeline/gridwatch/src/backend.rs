//! The topic backend `gridwatch run` uses, chosen by `backend:`.
//!
//! The runtime is generic over [`TopicBackend`], whose methods return
//! `impl Future`, so the choice is made once, here, as an enum rather than a
//! trait object. Everything above it (ingest, processors, sinks, the
//! dashboard, the admin API) takes an `Arc<AnyBackend>`.

use std::ops::Range;
use std::time::Duration;

use gridwatch_backend_fluvio::{FluvioBackend, ServerChainBackend};
use gridwatch_runtime::backend::embedded::EmbeddedBackend;
use gridwatch_runtime::backend::{BackendError, InRecord, OutRecord, TopicBackend, TopicInfo};
use serde::{Deserialize, Serialize};

/// `backend:` in the config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Topics in a durable log under `data_dir`; one process, no servers.
    #[default]
    Embedded,
    /// Topics on a Fluvio cluster (`fluvio:` says where and how).
    Fluvio,
}

/// One of the backends, behind the runtime's trait.
#[derive(Debug)]
pub enum AnyBackend {
    Embedded(EmbeddedBackend),
    Fluvio(FluvioBackend),
    /// Fluvio with the chain in the SPU: reading the input topic yields
    /// scored records. Only the processors get this one.
    FluvioServer(ServerChainBackend),
}

macro_rules! delegate {
    ($self:ident, $b:ident => $call:expr) => {
        match $self {
            AnyBackend::Embedded($b) => $call.await,
            AnyBackend::Fluvio($b) => $call.await,
            AnyBackend::FluvioServer($b) => $call.await,
        }
    };
}

impl TopicBackend for AnyBackend {
    async fn ensure_topic(&self, name: &str, partitions: u32) -> Result<TopicInfo, BackendError> {
        delegate!(self, b => b.ensure_topic(name, partitions))
    }

    async fn list_topics(&self) -> Result<Vec<TopicInfo>, BackendError> {
        delegate!(self, b => b.list_topics())
    }

    async fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<OutRecord>,
    ) -> Result<Range<u64>, BackendError> {
        delegate!(self, b => b.append(topic, partition, records))
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<InRecord>, BackendError> {
        delegate!(self, b => b.fetch(topic, partition, from, max, wait))
    }

    async fn high_watermark(&self, topic: &str, partition: u32) -> Result<u64, BackendError> {
        delegate!(self, b => b.high_watermark(topic, partition))
    }

    async fn log_start(&self, topic: &str, partition: u32) -> Result<u64, BackendError> {
        delegate!(self, b => b.log_start(topic, partition))
    }
}
