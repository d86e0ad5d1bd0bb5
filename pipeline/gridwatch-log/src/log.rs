//! The data directory: every topic of one process.

use crate::config::{LogOptions, TopicConfig};
use crate::error::{LogError, Result};
use crate::partition::{Partition, RetentionOutcome};
use crate::topic::{Topic, validate_topic_name};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// All topics under one data directory, opened and recovered together.
///
/// Opening recovers every partition up front, so a process that starts has
/// its whole log checked before it serves anything (RTO is paid once, at
/// start, not on the first read of each partition).
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    options: LogOptions,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises topic creation so two callers cannot create the same
    /// directory with different settings.
    create: Mutex<()>,
}

impl Log {
    /// Opens the data directory `dir`, creating it if needed, and recovers
    /// every topic in it.
    ///
    /// Folders without a `topic.json` are left alone: they are topics whose
    /// creation was interrupted, and creating the topic again completes them.
    pub fn open(dir: impl AsRef<Path>, options: LogOptions) -> Result<Log> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| LogError::io("create directory", &dir, e))?;
        let mut topics = BTreeMap::new();
        let entries = fs::read_dir(&dir).map_err(|e| LogError::io("list directory", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| LogError::io("list directory", &dir, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if validate_topic_name(&name).is_err() || !entry.path().is_dir() {
                continue;
            }
            if let Some(config) = Topic::read_config(&entry.path())? {
                let topic = Topic::open(entry.path(), &name, config, &options)?;
                topics.insert(name, Arc::new(topic));
            }
        }
        Ok(Log {
            dir,
            options,
            topics: RwLock::new(topics),
            create: Mutex::new(()),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options the log was opened with.
    pub fn options(&self) -> &LogOptions {
        &self.options
    }

    /// Creates a topic, or returns the existing one if it has the same
    /// partition count.
    ///
    /// Idempotent so that every process of a pipeline can declare the topics
    /// it uses at start without coordinating. An existing topic keeps its
    /// persisted retention and segment settings; a different partition count
    /// is an error because it would silently re-route keys.
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>> {
        validate_topic_name(name)?;
        config.validate()?;
        let _serial = self.create.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = self.get(name) {
            if existing.partition_count() != config.partitions {
                return Err(LogError::PartitionCountMismatch {
                    topic: name.to_owned(),
                    existing: existing.partition_count(),
                    requested: config.partitions,
                });
            }
            return Ok(existing);
        }
        let topic = Arc::new(Topic::create(
            self.dir.join(name),
            name,
            config,
            &self.options,
        )?);
        self.topics
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), Arc::clone(&topic));
        Ok(topic)
    }

    fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// The topic called `name`.
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.get(name).ok_or_else(|| LogError::UnknownTopic {
            topic: name.to_owned(),
        })
    }

    /// Shorthand for `topic(name)?.partition(partition)`.
    pub fn partition(&self, name: &str, partition: u32) -> Result<Arc<Partition>> {
        self.topic(name)?.partition(partition).cloned()
    }

    /// Names of all topics, sorted.
    pub fn topic_names(&self) -> Vec<String> {
        self.topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// Applies retention to every partition of every topic; meant to be
    /// called periodically (e.g. once a minute) by the runtime.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome> {
        let topics: Vec<Arc<Topic>> = self
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut total = RetentionOutcome::default();
        for t in topics {
            total.add(t.enforce_retention(now_ms)?);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Durability;
    use crate::partition::ReadLimits;
    use crate::record::Record;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn topics_are_created_listed_and_found_again_after_reopen() -> TestResult {
        let dir = tempfile::tempdir()?;
        {
            let log = Log::open(dir.path(), LogOptions::default())?;
            assert!(log.topic_names().is_empty());
            let readings = log.create_topic("sensor-readings", TopicConfig::new(3))?;
            log.create_topic("anomalies", TopicConfig::new(1))?;
            // Idempotent: the same topic comes back with its data.
            let again = log.create_topic("sensor-readings", TopicConfig::new(3))?;
            assert!(Arc::ptr_eq(&readings, &again));
            readings
                .partition(2)?
                .append(Record::new(1, b"v").with_key(b"m"))?;
            assert_eq!(log.topic_names(), ["anomalies", "sensor-readings"]);
            assert!(dir.path().join("sensor-readings/2").is_dir());
            assert!(dir.path().join("sensor-readings/topic.json").is_file());
        }
        let log = Log::open(dir.path(), LogOptions::default())?;
        assert_eq!(log.topic_names(), ["anomalies", "sensor-readings"]);
        let p = log.partition("sensor-readings", 2)?;
        assert_eq!(p.high_watermark(), 1);
        assert_eq!(&p.read(0, ReadLimits::default())?[0].value[..], b"v");
        assert_eq!(log.topic("sensor-readings")?.partition_count(), 3);
        Ok(())
    }

    #[test]
    fn wrong_names_counts_and_numbers_are_reported() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = Log::open(dir.path(), LogOptions::default())?;
        log.create_topic("t", TopicConfig::new(2))?;
        let err = log
            .create_topic("t", TopicConfig::new(4))
            .expect_err("count changed");
        assert_eq!(
            err.to_string(),
            r#"topic "t" exists with 2 partitions, not 4"#
        );
        assert!(matches!(
            log.partition("t", 2),
            Err(LogError::UnknownPartition { count: 2, .. })
        ));
        assert!(matches!(
            log.topic("nope"),
            Err(LogError::UnknownTopic { .. })
        ));
        assert!(matches!(
            log.create_topic("../escape", TopicConfig::new(1)),
            Err(LogError::InvalidTopicName { .. })
        ));
        Ok(())
    }

    #[test]
    fn persisted_settings_win_over_process_options_and_retention_runs_on_all() -> TestResult {
        let dir = tempfile::tempdir()?;
        let options = LogOptions {
            durability: Durability::None,
            ..LogOptions::default()
        };
        let config = TopicConfig {
            retention_bytes: Some(500),
            segment_bytes: 400,
            ..TopicConfig::new(2)
        };
        {
            let log = Log::open(dir.path(), options)?;
            log.create_topic("t", config.clone())?;
        }
        // A folder without topic.json is an interrupted creation: skipped.
        fs::create_dir_all(dir.path().join("half-made/0"))?;
        let log = Log::open(dir.path(), options)?;
        assert_eq!(log.topic_names(), ["t"]);
        let t = log.topic("t")?;
        assert_eq!(t.config(), &config);
        let value = [7u8; 100];
        for _ in 0..20 {
            for p in t.partitions() {
                p.append(Record::new(0, &value))?;
            }
        }
        log.enforce_retention(0)?;
        for p in t.partitions() {
            assert!(p.log_start_offset() > 0);
            assert!(p.size_bytes() < 500 + 2 * 400);
        }
        Ok(())
    }
}
