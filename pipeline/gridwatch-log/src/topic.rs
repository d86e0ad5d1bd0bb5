//! A topic: a named set of partitions sharing one configuration.
//!
//! The configuration is written to `topic.json` before any partition
//! directory exists, through a temporary file and a rename, so a topic folder
//! without a valid `topic.json` is always an interrupted creation and never a
//! topic with lost settings.

use crate::config::{LogOptions, PartitionConfig, TopicConfig};
use crate::error::{LogError, Result};
use crate::partition::{Partition, RetentionOutcome};
use crate::segment::sync_dir;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Name of the metadata file in each topic directory.
pub const TOPIC_METADATA_FILE: &str = "topic.json";

/// A named group of partitions.
#[derive(Debug)]
pub struct Topic {
    name: String,
    dir: PathBuf,
    config: TopicConfig,
    partitions: Vec<Arc<Partition>>,
}

/// Checks that `name` can be a directory name on every platform we run on
/// and cannot escape the data directory.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(LogError::InvalidTopicName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("must not be empty");
    }
    if name.len() > 249 {
        return invalid("must be at most 249 bytes");
    }
    if name == "." || name == ".." {
        return invalid("must not be . or ..");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return invalid("may contain only ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

impl Topic {
    /// Creates the topic's directory and metadata, then opens it.
    pub(crate) fn create(
        dir: PathBuf,
        name: &str,
        config: TopicConfig,
        options: &LogOptions,
    ) -> Result<Topic> {
        fs::create_dir_all(&dir).map_err(|e| LogError::io("create directory", &dir, e))?;
        let path = dir.join(TOPIC_METADATA_FILE);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(&config).map_err(|source| LogError::Metadata {
            path: path.clone(),
            source,
        })?;
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| LogError::io("write topic metadata", &path, e))?;
        sync_dir(&dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        Topic::open(dir, name, config, options)
    }

    /// Reads a topic's metadata; `None` if the folder holds no topic.
    pub(crate) fn read_config(dir: &Path) -> Result<Option<TopicConfig>> {
        let path = dir.join(TOPIC_METADATA_FILE);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LogError::io("read topic metadata", &path, e)),
        };
        let config: TopicConfig =
            serde_json::from_slice(&text).map_err(|source| LogError::Metadata { path, source })?;
        config.validate()?;
        Ok(Some(config))
    }

    /// Opens (and recovers) every partition of an existing topic.
    pub(crate) fn open(
        dir: PathBuf,
        name: &str,
        config: TopicConfig,
        options: &LogOptions,
    ) -> Result<Topic> {
        let pconfig = PartitionConfig::new(&config, options);
        let partitions = (0..config.partitions)
            .map(|p| Partition::open(dir.join(p.to_string()), pconfig).map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        Ok(Topic {
            name: name.to_owned(),
            dir,
            config,
            partitions,
        })
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The persisted settings.
    pub fn config(&self) -> &TopicConfig {
        &self.config
    }

    /// Number of partitions.
    pub fn partition_count(&self) -> u32 {
        self.config.partitions
    }

    /// All partitions, indexed by partition number.
    pub fn partitions(&self) -> &[Arc<Partition>] {
        &self.partitions
    }

    /// Partition number `partition`.
    pub fn partition(&self, partition: u32) -> Result<&Arc<Partition>> {
        self.partitions
            .get(partition as usize)
            .ok_or_else(|| LogError::UnknownPartition {
                topic: self.name.clone(),
                partition,
                count: self.config.partitions,
            })
    }

    /// Applies retention to every partition.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome> {
        let mut total = RetentionOutcome::default();
        for p in &self.partitions {
            total.add(p.enforce_retention(now_ms)?);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_that_could_escape_the_directory_are_refused() {
        assert!(validate_topic_name("sensor-readings.v1_raw").is_ok());
        for bad in ["", ".", "..", "a/b", "a\\b", "über", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
