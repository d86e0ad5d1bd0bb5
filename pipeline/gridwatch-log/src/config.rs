//! Configuration: per-topic settings persisted with the topic, and per-process
//! options that apply to every topic the process opens.
//!
//! The split follows what must survive a restart. Partition count, retention
//! and segment size describe the data and live in `topic.json`; durability
//! and framing limits describe how this process writes, so a benchmark or a
//! test can change them without rewriting any topic.

use crate::error::{LogError, Result};
use serde::{Deserialize, Serialize};

/// Upper bound on `partitions`, far above any sensible use, to turn a typo
/// into an error instead of a hundred thousand directories.
pub const MAX_PARTITIONS: u32 = 10_000;
/// Upper bound on `segment_bytes`; frame positions are plain `u64` but the
/// recovery scan of an active segment should stay in the seconds.
pub const MAX_SEGMENT_BYTES: u64 = 4 << 30;

/// Whether an append waits for its data to reach stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Every acknowledged append has been `fdatasync`ed. The only setting that
    /// meets RPO = 0 across a power loss.
    #[default]
    Fsync,
    /// Appends are acknowledged once written to the page cache. Survives a
    /// process crash but not an operating-system crash, after which even a
    /// sealed segment may be torn and open reports it as corrupt. For tests
    /// and for measuring what fsync costs.
    None,
}

/// Settings of one topic, stored in `<dir>/<topic>/topic.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Number of partitions, each an independent ordered log.
    pub partitions: u32,
    /// Keep at least this many bytes per partition; older whole segments
    /// beyond it are deleted. `None` keeps everything.
    #[serde(default)]
    pub retention_bytes: Option<u64>,
    /// Delete a segment once its newest record is older than this many
    /// milliseconds. `None` keeps everything.
    #[serde(default)]
    pub retention_ms: Option<u64>,
    /// A segment is sealed and a new one started once it reaches this size.
    /// Smaller segments make retention finer-grained, larger ones mean fewer
    /// files.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
}

/// 64 MiB: about half a minute of the project's target ingest rate per
/// segment, and a recovery scan well under a second.
fn default_segment_bytes() -> u64 {
    64 << 20
}

impl TopicConfig {
    /// A topic with `partitions` partitions, no retention limit and the
    /// default segment size.
    pub fn new(partitions: u32) -> Self {
        TopicConfig {
            partitions,
            retention_bytes: None,
            retention_ms: None,
            segment_bytes: default_segment_bytes(),
        }
    }

    /// Checks every field against its valid range.
    pub fn validate(&self) -> Result<()> {
        if self.partitions == 0 || self.partitions > MAX_PARTITIONS {
            return Err(LogError::InvalidConfig {
                field: "partitions",
                reason: format!("must be in 1..={MAX_PARTITIONS}, got {}", self.partitions),
            });
        }
        if self.segment_bytes == 0 || self.segment_bytes > MAX_SEGMENT_BYTES {
            return Err(LogError::InvalidConfig {
                field: "segment_bytes",
                reason: format!(
                    "must be in 1..={MAX_SEGMENT_BYTES}, got {}",
                    self.segment_bytes
                ),
            });
        }
        if self.retention_bytes == Some(0) {
            return Err(LogError::InvalidConfig {
                field: "retention_bytes",
                reason: "must be positive; leave it unset to keep everything".into(),
            });
        }
        if self.retention_ms == Some(0) {
            return Err(LogError::InvalidConfig {
                field: "retention_ms",
                reason: "must be positive; leave it unset to keep everything".into(),
            });
        }
        Ok(())
    }
}

/// Process-wide options of a [`crate::Log`]; not persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// When appends are acknowledged. Defaults to [`Durability::Fsync`].
    pub durability: Durability,
    /// Largest batch one append may write (and so the largest record). The
    /// writer holds a whole batch in memory until it is durable.
    pub max_batch_bytes: u64,
    /// Target size of one frame. Larger batches are split into several
    /// frames that recovery keeps or drops together; a reader must load and
    /// checksum a whole frame to return any record of it, so this bounds the
    /// cost of a small read inside a large batch.
    pub frame_bytes: u64,
    /// Bytes of log between two sparse index entries: the most a read from an
    /// arbitrary offset scans before reaching its frame (plus that frame).
    pub index_interval_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            durability: Durability::Fsync,
            max_batch_bytes: 16 << 20,
            frame_bytes: 64 << 10,
            index_interval_bytes: 4096,
        }
    }
}

impl LogOptions {
    /// Checks every field against its valid range.
    pub fn validate(&self) -> Result<()> {
        // The frame length field is a u32.
        if self.max_batch_bytes < 64 || self.max_batch_bytes > u64::from(u32::MAX) {
            return Err(LogError::InvalidConfig {
                field: "max_batch_bytes",
                reason: format!("must be in 64..={}, got {}", u32::MAX, self.max_batch_bytes),
            });
        }
        if self.frame_bytes == 0 || self.frame_bytes > u64::from(u32::MAX) {
            return Err(LogError::InvalidConfig {
                field: "frame_bytes",
                reason: format!("must be in 1..={}, got {}", u32::MAX, self.frame_bytes),
            });
        }
        if self.index_interval_bytes == 0 {
            return Err(LogError::InvalidConfig {
                field: "index_interval_bytes",
                reason: "must be positive".into(),
            });
        }
        Ok(())
    }
}

/// Everything one partition needs: its topic's settings plus the process
/// options. Public so a partition can be used without a [`crate::Log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionConfig {
    /// See [`TopicConfig::segment_bytes`].
    pub segment_bytes: u64,
    /// See [`TopicConfig::retention_bytes`].
    pub retention_bytes: Option<u64>,
    /// See [`TopicConfig::retention_ms`].
    pub retention_ms: Option<u64>,
    /// See [`LogOptions::durability`].
    pub durability: Durability,
    /// See [`LogOptions::max_batch_bytes`].
    pub max_batch_bytes: u64,
    /// See [`LogOptions::frame_bytes`].
    pub frame_bytes: u64,
    /// See [`LogOptions::index_interval_bytes`].
    pub index_interval_bytes: u64,
}

impl PartitionConfig {
    /// Combines a topic's settings with the process options.
    pub fn new(topic: &TopicConfig, options: &LogOptions) -> Self {
        PartitionConfig {
            segment_bytes: topic.segment_bytes,
            retention_bytes: topic.retention_bytes,
            retention_ms: topic.retention_ms,
            durability: options.durability,
            max_batch_bytes: options.max_batch_bytes,
            frame_bytes: options.frame_bytes,
            index_interval_bytes: options.index_interval_bytes,
        }
    }
}

impl Default for PartitionConfig {
    fn default() -> Self {
        PartitionConfig::new(&TopicConfig::new(1), &LogOptions::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_config_parses_with_defaults_and_rejects_unknown_fields() {
        let c: TopicConfig = serde_json::from_str(r#"{"partitions": 3}"#).expect("parse");
        assert_eq!(c, TopicConfig::new(3));
        let err = serde_json::from_str::<TopicConfig>(r#"{"partitions": 3, "retention": 1}"#)
            .expect_err("unknown field");
        assert!(err.to_string().contains("unknown field `retention`"));
    }

    #[test]
    fn validation_names_the_field_and_the_range() {
        let err = TopicConfig::new(0).validate().expect_err("zero partitions");
        assert_eq!(
            err.to_string(),
            "invalid configuration: partitions must be in 1..=10000, got 0"
        );
        let c = TopicConfig {
            retention_ms: Some(0),
            ..TopicConfig::new(1)
        };
        assert!(c.validate().is_err());
        assert!(LogOptions::default().validate().is_ok());
    }
}
