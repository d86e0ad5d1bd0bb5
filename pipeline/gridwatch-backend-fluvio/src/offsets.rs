//! A partition's log start and high watermark, asked of its leader SPU.
//!
//! The fluvio client resolves offsets internally (`Offset::end()`) but does
//! not expose them, and the SC's partition status is a report the SPU sends
//! now and then, so it lags behind appends. The runtime needs the exact
//! high watermark (its checkpoints record the outputs' watermarks), so this
//! module sends the SPU's own `FetchOffsets` request to the partition's
//! leader, over a connection built the way the fluvio client builds its own
//! (same TLS connector, same SNI prefix per SPU).
//!
//! Leaders and SPU addresses come from the SC's metadata and are cached;
//! a failed request drops both, so a moved leader is found again.

use std::collections::HashMap;
use std::sync::Arc;

use fluvio::FluvioAdmin;
use fluvio::dataplane::link::ErrorCode;
use fluvio::dataplane::record::ReplicaKey;
use fluvio::metadata::partition::PartitionSpec;
use fluvio::metadata::spu::SpuSpec;
use fluvio::metadata::topic::TopicSpec;
use fluvio_socket::{ClientConfig, MultiplexerSocket, VersionedSerialSocket};
use fluvio_spu_schema::server::fetch_offset::FetchOffsetsRequest;
use tokio::sync::Mutex;

use crate::error::FluvioBackendError;

/// Log start and high watermark of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// The first offset still held.
    pub log_start: u64,
    /// The offset the next committed record will get.
    pub high_watermark: u64,
}

/// Connections to SPUs for offset requests, by SPU id.
pub(crate) struct SpuOffsets {
    admin: Arc<FluvioAdmin>,
    /// Endpoint, TLS connector and client id of the cluster connection.
    base: ClientConfig,
    use_local_address: bool,
    leaders: Mutex<HashMap<(String, u32), i32>>,
    sockets: Mutex<HashMap<i32, Arc<VersionedSerialSocket>>>,
}

impl std::fmt::Debug for SpuOffsets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpuOffsets")
            .field("endpoint", &self.base.addr())
            .finish()
    }
}

impl SpuOffsets {
    pub(crate) fn new(
        admin: Arc<FluvioAdmin>,
        base: ClientConfig,
        use_local_address: bool,
    ) -> Self {
        Self {
            admin,
            base,
            use_local_address,
            leaders: Mutex::default(),
            sockets: Mutex::default(),
        }
    }

    /// The offsets of `topic`/`partition`; one retry after dropping caches.
    pub(crate) async fn get(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<PartitionOffsets, FluvioBackendError> {
        match self.try_get(topic, partition).await {
            Ok(o) => Ok(o),
            Err(e) if e.is_retryable() => {
                self.forget(topic, partition).await;
                self.try_get(topic, partition).await
            }
            Err(e) => Err(e),
        }
    }

    async fn forget(&self, topic: &str, partition: u32) {
        let leader = self
            .leaders
            .lock()
            .await
            .remove(&(topic.to_string(), partition));
        if let Some(id) = leader {
            self.sockets.lock().await.remove(&id);
        }
    }

    async fn try_get(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<PartitionOffsets, FluvioBackendError> {
        let target = format!("{topic}/{partition}");
        let leader = self.leader(topic, partition).await?;
        let socket = self.socket(leader).await?;
        let response = socket
            .send_receive(FetchOffsetsRequest::new(topic.to_string(), partition))
            .await
            .map_err(|e| FluvioBackendError::Connect {
                target: format!("SPU {leader} for {target}"),
                message: e.to_string(),
            });
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                self.sockets.lock().await.remove(&leader);
                return Err(e);
            }
        };
        let replica = ReplicaKey::new(topic.to_string(), partition);
        let Some(p) = response.find_partition(&replica) else {
            return Err(FluvioBackendError::NoSuchPartition {
                topic: topic.to_string(),
                partition,
            });
        };
        match p.error_code {
            ErrorCode::None => {}
            ErrorCode::TopicNotFound => {
                return Err(FluvioBackendError::NoSuchTopic {
                    topic: topic.to_string(),
                });
            }
            code => return Err(FluvioBackendError::code("fetch offsets", target, &code)),
        }
        Ok(PartitionOffsets {
            log_start: p.start_offset.max(0) as u64,
            high_watermark: p.last_stable_offset.max(0) as u64,
        })
    }

    /// The leader SPU of a partition, from the SC's metadata.
    async fn leader(&self, topic: &str, partition: u32) -> Result<i32, FluvioBackendError> {
        let key = (topic.to_string(), partition);
        if let Some(id) = self.leaders.lock().await.get(&key) {
            return Ok(*id);
        }
        let name = format!("{topic}-{partition}");
        let found = self
            .admin
            .list::<PartitionSpec, _>(vec![name.clone()])
            .await
            .map_err(|e| FluvioBackendError::cluster("list partitions", &name, &e))?;
        let Some(meta) = found.into_iter().find(|m| m.name == name) else {
            // Tell a missing topic from a missing partition.
            let topics = self
                .admin
                .list::<TopicSpec, _>(vec![topic.to_string()])
                .await
                .map_err(|e| FluvioBackendError::cluster("list topics", topic, &e))?;
            return Err(if topics.iter().any(|t| t.name == topic) {
                FluvioBackendError::NoSuchPartition {
                    topic: topic.to_string(),
                    partition,
                }
            } else {
                FluvioBackendError::NoSuchTopic {
                    topic: topic.to_string(),
                }
            });
        };
        let leader = meta.spec.leader;
        self.leaders.lock().await.insert(key, leader);
        Ok(leader)
    }

    /// A request/response socket to an SPU, connected once and shared.
    async fn socket(&self, spu: i32) -> Result<Arc<VersionedSerialSocket>, FluvioBackendError> {
        let mut sockets = self.sockets.lock().await;
        if let Some(s) = sockets.get(&spu)
            && !s.is_stale()
        {
            return Ok(Arc::clone(s));
        }
        let spus = self
            .admin
            .all::<SpuSpec>()
            .await
            .map_err(|e| FluvioBackendError::cluster("list SPUs", format!("SPU {spu}"), &e))?;
        let Some(meta) = spus.into_iter().find(|m| m.spec.id == spu) else {
            return Err(FluvioBackendError::Cluster {
                op: "find SPU",
                target: format!("SPU {spu}"),
                message: "the SC lists no such SPU".into(),
                retryable: true,
            });
        };
        let addr = match &meta.spec.public_endpoint_local {
            Some(local) if self.use_local_address => format!("{}:{}", local.host, local.port),
            _ => meta.spec.public_endpoint.addr(),
        };
        let mut config = self.base.with_prefix_sni_domain(&meta.name);
        config.set_addr(addr.clone());
        let versioned = config
            .connect()
            .await
            .map_err(|e| FluvioBackendError::Connect {
                target: format!("SPU {spu} at {addr}"),
                message: e.to_string(),
            })?;
        let (socket, config, versions) = versioned.split();
        let serial = Arc::new(VersionedSerialSocket::new(
            MultiplexerSocket::shared(socket),
            config,
            versions,
        ));
        sockets.insert(spu, Arc::clone(&serial));
        Ok(serial)
    }
}
