//! [`LakeSink`]: the [`Sink`] that archives `scored` and `anomalies`.
//!
//! # Exactly once: the commit protocol
//!
//! Rows are buffered per topic partition and written at
//! [`Sink::flush`] (every checkpoint), one Parquet file per event-time
//! partition the flush touches. A flush of one topic partition covering
//! source offsets `first..=last` runs three steps against its state object
//! `_lake/state/<dataset>/p<partition>.json`:
//!
//! 1. **Intent.** Write the state with `pending = {first, last, files}`,
//!    naming every data file this flush will write (and any an earlier
//!    failed attempt of it may have left).
//! 2. **Data.** Write the data files (concurrently). Each `put` replaces
//!    the whole object or leaves it untouched.
//! 3. **Commit.** Write the state with `committed = last` and no pending.
//!
//! [`Sink::recover`] reads the state, deletes every file a pending flush
//! lists, and returns `committed`; the driver resumes after it. So a crash
//! anywhere in a flush leaves either the whole flush (step 3 done) or none
//! of it after recovery, even when the replay after the crash cuts its
//! flushes at other offsets than before, which a fixed "same name
//! overwrites" scheme could not handle. A reading is never in the lake
//! twice; files of an interrupted flush are visible to readers only between
//! the crash and the next start.
//!
//! Offsets at or below the highest committed or buffered one are skipped,
//! so a driver that re-delivers an overlap never duplicates rows.
//!
//! Records that do not decode (wrong framing, a datum that is not the
//! topic's record) are refused with [`SinkError::Rejected`] and go to the
//! dead-letter topic; the rest of the batch is archived.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use gridwatch_connector::{Sink, SinkError, SinkRecord};
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::{AnomalyEvent, ScoredReading};
use serde_avro_fast::de::DeserializerState;

use crate::config::{Compression, LakeConfig};
use crate::encoder::{self, AnomalyRow, Provenance, ReadingRow};
use crate::error::LakeError;
use crate::layout::{self, CommitState, Kind, Pending, STATE_VERSION, TimePartition};
use crate::store::Lake;

/// Data files written at once per flush.
const CONCURRENT_PUTS: usize = 8;

/// Counters since the sink was built, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LakeStats {
    /// Flushes committed (one per topic partition with rows).
    pub commits: u64,
    pub files: u64,
    pub rows: u64,
    /// Parquet bytes written.
    pub bytes: u64,
}

/// The lake archiver. See the module docs for its exactly-once protocol
/// and the crate docs for the layout and schemas.
#[derive(Debug)]
pub struct LakeSink {
    lake: Lake,
    compression: Compression,
    max_buffered_rows: usize,
    readings_topic: String,
    anomalies_topic: String,
    partitions: BTreeMap<(Kind, u32), PartitionState>,
    stats: LakeStats,
}

#[derive(Debug)]
struct PartitionState {
    topic: String,
    committed: Option<u64>,
    /// Files an earlier failed attempt of the buffered flush may have
    /// written; deleted once a later attempt commits.
    stale: BTreeSet<String>,
    rows: Rows,
}

#[derive(Debug, Clone)]
enum Rows {
    Readings(Vec<ReadingRow>),
    Anomalies(Vec<AnomalyRow>),
}

impl Rows {
    fn empty(kind: Kind) -> Self {
        match kind {
            Kind::Readings => Self::Readings(Vec::new()),
            Kind::Anomalies => Self::Anomalies(Vec::new()),
        }
    }
    fn len(&self) -> usize {
        match self {
            Self::Readings(r) => r.len(),
            Self::Anomalies(r) => r.len(),
        }
    }
    fn offsets(&self) -> Option<(u64, u64)> {
        match self {
            Self::Readings(r) => Some((r.first()?.offset, r.last()?.offset)),
            Self::Anomalies(r) => Some((r.first()?.offset, r.last()?.offset)),
        }
    }
}

impl PartitionState {
    /// The highest offset this sink already has, committed or buffered.
    fn high_water(&self) -> Option<u64> {
        self.rows.offsets().map(|(_, last)| last).or(self.committed)
    }
}

impl LakeSink {
    /// Opens the lake described by `config` (validated under the key
    /// prefix `sinks.lake`); creates a local lake directory if missing.
    /// Does no network I/O: S3 is first reached at the first recover,
    /// write or flush.
    pub fn new(config: &LakeConfig) -> Result<Self, LakeError> {
        let lake = Lake::open(config, "sinks.lake")?;
        tracing::info!(lake = %lake.display, compression = ?config.compression, "Lake sink ready.");
        Ok(Self {
            lake,
            compression: config.compression,
            max_buffered_rows: config.max_buffered_rows,
            readings_topic: config.readings_topic.clone(),
            anomalies_topic: config.anomalies_topic.clone(),
            partitions: BTreeMap::new(),
            stats: LakeStats::default(),
        })
    }

    /// Where the lake is (`file:///…` or `s3://bucket/prefix`).
    pub fn location(&self) -> &str {
        &self.lake.display
    }

    pub fn stats(&self) -> LakeStats {
        self.stats
    }

    /// Rows buffered and not yet flushed, over all partitions.
    pub fn buffered_rows(&self) -> usize {
        self.partitions.values().map(|p| p.rows.len()).sum()
    }

    fn kind_of(&self, topic: &str) -> Option<Kind> {
        if topic == self.readings_topic {
            Some(Kind::Readings)
        } else if topic == self.anomalies_topic {
            Some(Kind::Anomalies)
        } else {
            None
        }
    }

    fn unknown_topic(&self, topic: &str) -> String {
        format!(
            "the lake archives topics {:?} and {:?}, not {topic:?}",
            self.readings_topic, self.anomalies_topic
        )
    }

    /// Reads a partition's state from the lake, rolling back a flush that
    /// never committed, and replaces what this sink held for it.
    async fn load(&mut self, kind: Kind, topic: &str, partition: u32) -> Result<(), LakeError> {
        let path = layout::state_file(kind, partition);
        let state = match self.lake.get(&path).await? {
            None => CommitState::default(),
            Some(bytes) => {
                let state: CommitState =
                    serde_json::from_slice(&bytes).map_err(|e| LakeError::State {
                        path: path.clone(),
                        problem: e.to_string(),
                    })?;
                if state.version != STATE_VERSION {
                    return Err(LakeError::State {
                        path,
                        problem: format!(
                            "format version {} (this sink knows {STATE_VERSION})",
                            state.version
                        ),
                    });
                }
                if state.topic != topic {
                    return Err(LakeError::State {
                        path,
                        problem: format!(
                            "written from topic {:?}, but this sink reads {topic:?} into the same \
                             dataset; offsets of two topics cannot share a lake",
                            state.topic
                        ),
                    });
                }
                state
            }
        };
        if let Some(pending) = &state.pending {
            tracing::warn!(
                lake = %self.lake.display,
                topic,
                partition,
                first = pending.first,
                last = pending.last,
                files = pending.files.len(),
                "Rolling back a lake flush that did not commit."
            );
            for file in &pending.files {
                self.lake.delete(file).await?;
            }
            let rolled_back = CommitState {
                pending: None,
                ..state.clone()
            };
            self.put_state(&path, &rolled_back).await?;
        }
        self.partitions.insert(
            (kind, partition),
            PartitionState {
                topic: topic.to_owned(),
                committed: state.committed,
                stale: BTreeSet::new(),
                rows: Rows::empty(kind),
            },
        );
        Ok(())
    }

    async fn put_state(&self, path: &str, state: &CommitState) -> Result<(), LakeError> {
        let json = serde_json::to_vec_pretty(state).map_err(|e| LakeError::State {
            path: path.to_owned(),
            problem: e.to_string(),
        })?;
        self.lake.put(path, Bytes::from(json)).await
    }

    /// Writes one partition's buffered rows with the intent / data /
    /// commit steps of the module docs. On failure the rows stay buffered
    /// and the files written so far are remembered for deletion.
    async fn commit(&mut self, key: (Kind, u32)) -> Result<(), LakeError> {
        let Some(state) = self.partitions.get_mut(&key) else {
            return Ok(());
        };
        let Some((first, last)) = state.rows.offsets() else {
            return Ok(());
        };
        let (kind, partition) = key;
        let rows = Arc::new(std::mem::replace(&mut state.rows, Rows::empty(kind)));
        let topic = state.topic.clone();
        let compression = self.compression;
        let task_rows = Arc::clone(&rows);
        let encoded = tokio::task::spawn_blocking(move || {
            encode(kind, &topic, partition, &task_rows, compression)
        })
        .await;
        let outcome = match encoded {
            Ok(Ok(files)) => self.write_flush(key, first, last, files).await,
            Ok(Err(e)) => Err(e),
            Err(join) => Err(LakeError::Encode {
                path: layout::state_file(kind, partition),
                problem: join.to_string(),
            }),
        };
        let Some(state) = self.partitions.get_mut(&key) else {
            return outcome.map(drop);
        };
        match outcome {
            Ok(written) => {
                state.committed = Some(last);
                state.stale.clear();
                self.stats.commits += 1;
                self.stats.rows += rows.len() as u64;
                self.stats.files += written.0;
                self.stats.bytes += written.1;
                Ok(())
            }
            Err(e) => {
                // Put the rows back in front of anything buffered since.
                let rows = Arc::try_unwrap(rows).unwrap_or_else(|shared| (*shared).clone());
                let newer = std::mem::replace(&mut state.rows, rows);
                match (&mut state.rows, newer) {
                    (Rows::Readings(a), Rows::Readings(b)) => a.extend(b),
                    (Rows::Anomalies(a), Rows::Anomalies(b)) => a.extend(b),
                    _ => {}
                }
                Err(e)
            }
        }
    }

    /// Steps 1 to 3 for encoded files; returns (files, bytes) written.
    async fn write_flush(
        &mut self,
        key: (Kind, u32),
        first: u64,
        last: u64,
        files: Vec<(String, Bytes)>,
    ) -> Result<(u64, u64), LakeError> {
        let (kind, partition) = key;
        let state_path = layout::state_file(kind, partition);
        let Some(state) = self.partitions.get_mut(&key) else {
            return Ok((0, 0));
        };
        let new_names: BTreeSet<String> = files.iter().map(|(name, _)| name.clone()).collect();
        // From here on, any of these may exist until the flush commits.
        state.stale.extend(new_names.iter().cloned());
        let all_names: Vec<String> = state.stale.iter().cloned().collect();
        let stale: Vec<String> = state.stale.difference(&new_names).cloned().collect();
        let mut record = CommitState {
            version: STATE_VERSION,
            topic: state.topic.clone(),
            partition,
            committed: state.committed,
            pending: Some(Pending {
                first,
                last,
                files: all_names,
            }),
        };
        self.put_state(&state_path, &record).await?;

        let count = files.len() as u64;
        let bytes: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
        let lake = &self.lake;
        futures::stream::iter(files)
            .map(|(name, body)| async move { lake.put(&name, body).await })
            .buffer_unordered(CONCURRENT_PUTS)
            .try_collect::<Vec<()>>()
            .await?;
        for name in &stale {
            lake.delete(name).await?;
        }

        record.committed = Some(last);
        record.pending = None;
        self.put_state(&state_path, &record).await?;
        tracing::debug!(lake = %self.lake.display, topic = %record.topic, partition, first, last, files = count, bytes, "Lake flush committed.");
        Ok((count, bytes))
    }

    fn decode_into(&self, kind: Kind, record: &SinkRecord, rows: &mut Rows) -> Result<(), String> {
        let framed = framing::parse(&record.value, IdWidth::ContentId4)
            .map_err(|e| format!("not framed Avro: {e}"))?;
        match (kind, rows) {
            (Kind::Readings, Rows::Readings(rows)) => {
                let scored: ScoredReading = decode_whole(framed.datum)?;
                rows.push(ReadingRow::new(record.offset, record.timestamp_ms, scored));
            }
            (Kind::Anomalies, Rows::Anomalies(rows)) => {
                let event: AnomalyEvent = decode_whole(framed.datum)?;
                rows.push(AnomalyRow {
                    offset: record.offset,
                    appended_at: record.timestamp_ms,
                    event,
                });
            }
            _ => return Err("internal: rows of the other dataset".into()),
        }
        Ok(())
    }
}

/// Decodes a datum that must be exactly one `T`: bytes left over mean the
/// record is of another type (a datum of the other topic can decode as a
/// prefix), so it is refused rather than archived as nonsense.
fn decode_whole<T: AvroRecord>(datum: &[u8]) -> Result<T, String> {
    let mut state = DeserializerState::from_reader(std::io::Cursor::new(datum), T::schema());
    let value = T::deserialize(state.deserializer())
        .map_err(|e| format!("Avro datum does not decode as {}: {e}", T::NAME))?;
    let used = state.into_reader().into_inner().position();
    let left = (datum.len() as u64).saturating_sub(used);
    if left > 0 {
        return Err(format!(
            "{left} bytes left after a {} datum: not a {} record",
            T::NAME,
            T::NAME
        ));
    }
    Ok(value)
}

/// Groups rows by event-time partition, in partition order, and encodes
/// each group as one Parquet file named after its rows' offset range.
fn encode(
    kind: Kind,
    topic: &str,
    partition: u32,
    rows: &Rows,
    compression: Compression,
) -> Result<Vec<(String, Bytes)>, LakeError> {
    let provenance = Provenance { topic, partition };
    let mut out = Vec::new();
    macro_rules! per_group {
        ($rows:expr, $batch:path) => {{
            let mut groups: BTreeMap<TimePartition, Vec<_>> = BTreeMap::new();
            for row in $rows {
                groups
                    .entry(TimePartition::of(kind, row.event_time()))
                    .or_default()
                    .push(row);
            }
            for (time, group) in groups {
                let (Some(first), Some(last)) = (group.first(), group.last()) else {
                    continue;
                };
                let (first, last) = (first.offset, last.offset);
                let name = layout::data_file(kind, time, partition, first, last);
                let failed = |problem: String| LakeError::Encode {
                    path: name.clone(),
                    problem,
                };
                let batch = $batch(provenance, &group).map_err(|e| failed(e.to_string()))?;
                let props = encoder::writer_properties(compression, provenance, first, last);
                let bytes =
                    encoder::to_parquet(&batch, props).map_err(|e| failed(e.to_string()))?;
                out.push((name, Bytes::from(bytes)));
            }
        }};
    }
    match rows {
        Rows::Readings(rows) => per_group!(rows, encoder::readings_batch),
        Rows::Anomalies(rows) => per_group!(rows, encoder::anomalies_batch),
    }
    Ok(out)
}

impl Sink for LakeSink {
    fn name(&self) -> &str {
        "lake"
    }

    async fn recover(&mut self, topic: &str, partition: u32) -> Result<Option<u64>, SinkError> {
        let kind = self
            .kind_of(topic)
            .ok_or_else(|| SinkError::Permanent(self.unknown_topic(topic)))?;
        self.load(kind, topic, partition).await?;
        let committed = self
            .partitions
            .get(&(kind, partition))
            .and_then(|p| p.committed);
        tracing::info!(lake = %self.lake.display, topic, partition, committed, "Lake recovered.");
        Ok(committed)
    }

    async fn write(&mut self, batch: &[SinkRecord]) -> Result<(), SinkError> {
        // Commit full buffers first, so a write that fails has buffered
        // nothing of its batch: a batch the driver dead-letters after
        // failed retries is then not also archived.
        let full: Vec<(Kind, u32)> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.rows.len() >= self.max_buffered_rows)
            .map(|(k, _)| *k)
            .collect();
        for key in full {
            self.commit(key).await?;
        }
        let mut refused = Vec::new();
        for record in batch {
            let Some(kind) = self.kind_of(&record.topic) else {
                refused.push((record.offset, self.unknown_topic(&record.topic)));
                continue;
            };
            let key = (kind, record.partition);
            if !self.partitions.contains_key(&key) {
                // Not recovered by the driver: look at the lake anyway, so
                // a re-delivered overlap is still skipped.
                self.load(kind, &record.topic, record.partition).await?;
            }
            let Some(mut state) = self.partitions.remove(&key) else {
                continue;
            };
            if state.high_water().is_none_or(|h| record.offset > h)
                && let Err(problem) = self.decode_into(kind, record, &mut state.rows)
            {
                refused.push((record.offset, problem));
            }
            self.partitions.insert(key, state);
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(SinkError::Rejected(refused))
        }
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        let keys: Vec<(Kind, u32)> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.rows.len() > 0)
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.commit(key).await?;
        }
        Ok(())
    }
}
