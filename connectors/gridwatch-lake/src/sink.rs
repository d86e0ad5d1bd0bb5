//! [`LakeSink`]: the [`Sink`] that archives `scored` and `anomalies`.
//!
//! # Exactly once: the commit protocol
//!
//! Each delivered batch is committed in [`Sink::write`], one Parquet file
//! per topic partition and event-time partition it touches, so that a
//! batch the lake cannot take (S3 down past the `retry` budget) fails its
//! write and the driver dead-letters it with the reason, as for every other
//! sink, instead of holding its position until the lake is back. (A flush
//! at the checkpoint cannot be dead-lettered: the rows it would write were
//! acknowledged by earlier writes.) [`Sink::flush`] commits whatever is
//! still buffered, which is normally nothing. A commit of one topic partition covering
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
//! # Gaps and replays
//!
//! A commit records in the state the **holes** below it: offsets since the
//! previous commit that are not in the lake (a dead-lettered batch, a
//! refused record). `gridwatch dlq replay` re-delivers dead letters to a
//! sink built with [`LakeSink::replaying`], which writes each as a
//! **fill**: a `…-fill.parquet` file committed with the same intent / data
//! / commit steps against `_lake/state/<dataset>/p<partition>.fills.json`,
//! which lists the filled offsets. It takes an offset at or below the live
//! `committed` only if it is a hole (any other is already in the lake, say
//! a dead letter the live sink wrote after all when it was re-delivered
//! after a crash), one above it as well (the live sink gave it up and has
//! not committed since), and never one already filled; the live sink skips
//! filled offsets. So each offset is in the lake once however often a
//! replay runs. Only the replaying sink writes the fill state, and it never
//! writes the live commit state, so the two cannot overwrite each other;
//! fill files have their own names, so the live sink's clean-up of a failed
//! commit's files cannot delete one.
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
use gridwatch_contracts::fast;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::{AnomalyEvent, ScoredReading};
use serde_avro_fast::de::DeserializerState;

use crate::config::{Compression, LakeConfig};
use crate::encoder::{self, AnomalyRow, Provenance, ReadingRow};
use crate::error::LakeError;
use crate::layout::{self, CommitState, FillState, Kind, Pending, STATE_VERSION, TimePartition};
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
    /// Built by [`LakeSink::replaying`]: every record it takes is a fill.
    replay: bool,
}

#[derive(Debug)]
struct PartitionState {
    topic: String,
    committed: Option<u64>,
    /// Files an earlier failed attempt of the buffered flush may have
    /// written; deleted once a later attempt commits.
    stale: BTreeSet<String>,
    rows: Rows,
    /// Ranges at or below `committed` not in the lake (see the module docs).
    holes: Vec<[u64; 2]>,
    /// Ranges of `holes` that replays filled.
    filled: Vec<[u64; 2]>,
    /// Rows for holes, buffered for the next fill commit.
    fill_rows: Rows,
    /// As `stale`, for fill commits.
    fill_stale: BTreeSet<String>,
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
    /// Every row's offset, sorted.
    fn all_offsets(&self) -> Vec<u64> {
        let mut out: Vec<u64> = match self {
            Self::Readings(r) => r.iter().map(|r| r.offset).collect(),
            Self::Anomalies(r) => r.iter().map(|r| r.offset).collect(),
        };
        out.sort_unstable();
        out
    }
    fn append(&mut self, newer: Rows) {
        match (self, newer) {
            (Self::Readings(a), Self::Readings(b)) => a.extend(b),
            (Self::Anomalies(a), Self::Anomalies(b)) => a.extend(b),
            _ => {}
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
            replay: false,
        })
    }

    /// A sink for `gridwatch dlq replay`: it writes only fills (see the
    /// module docs), never the live commit state, so it can run next to the
    /// live sink. A dead letter whose offset is at or below what the live
    /// sink committed is written only if it is a hole (else it is already in
    /// the lake and skipped); one above it (the live sink has not committed
    /// since it gave the batch up) is written as a fill too, and the live
    /// sink skips filled offsets should it ever see them again.
    pub fn replaying(config: &LakeConfig) -> Result<Self, LakeError> {
        let mut sink = Self::new(config)?;
        sink.replay = true;
        Ok(sink)
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
        let fills = self.load_fills(kind, topic, partition).await?;
        self.partitions.insert(
            (kind, partition),
            PartitionState {
                topic: topic.to_owned(),
                committed: state.committed,
                stale: BTreeSet::new(),
                rows: Rows::empty(kind),
                holes: state.holes,
                filled: fills.filled,
                fill_rows: Rows::empty(kind),
                fill_stale: BTreeSet::new(),
            },
        );
        Ok(())
    }

    /// Reads a partition's fill state, rolling back a fill that never
    /// committed.
    async fn load_fills(
        &self,
        kind: Kind,
        topic: &str,
        partition: u32,
    ) -> Result<FillState, LakeError> {
        let path = layout::fill_state_file(kind, partition);
        let Some(bytes) = self.lake.get(&path).await? else {
            return Ok(FillState {
                version: STATE_VERSION,
                topic: topic.to_owned(),
                partition,
                ..FillState::default()
            });
        };
        let mut state: FillState =
            serde_json::from_slice(&bytes).map_err(|e| LakeError::State {
                path: path.clone(),
                problem: e.to_string(),
            })?;
        if state.version != STATE_VERSION || state.topic != topic {
            return Err(LakeError::State {
                path,
                problem: format!(
                    "version {} of topic {:?}; this sink writes version {STATE_VERSION} of {topic:?}",
                    state.version, state.topic
                ),
            });
        }
        if let Some(pending) = state.pending.take() {
            tracing::warn!(lake = %self.lake.display, topic, partition, files = pending.files.len(), "Rolling back a lake fill that did not commit.");
            for file in &pending.files {
                self.lake.delete(file).await?;
            }
            self.put_json(&path, &state).await?;
        }
        Ok(state)
    }

    async fn put_state(&self, path: &str, state: &CommitState) -> Result<(), LakeError> {
        self.put_json(path, state).await
    }

    async fn put_json<T: serde::Serialize>(&self, path: &str, state: &T) -> Result<(), LakeError> {
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
        // What this commit leaves out of the lake since the last one.
        let from = state.committed.map_or(0, |c| c + 1);
        let mut holes = state.holes.clone();
        layout::add_ranges(&mut holes, layout::gaps(from, last, &rows.all_offsets()));
        let topic = state.topic.clone();
        let compression = self.compression;
        let task_rows = Arc::clone(&rows);
        let encoded = tokio::task::spawn_blocking(move || {
            encode(kind, &topic, partition, &task_rows, compression, false)
        })
        .await;
        let outcome = match encoded {
            Ok(Ok(files)) => {
                self.write_flush(key, first, last, files, holes.clone())
                    .await
            }
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
                state.holes = holes;
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
                state.rows.append(newer);
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
        holes: Vec<[u64; 2]>,
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
            holes: state.holes.clone(),
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
        record.holes = holes;
        self.put_state(&state_path, &record).await?;
        tracing::debug!(lake = %self.lake.display, topic = %record.topic, partition, first, last, files = count, bytes, "Lake flush committed.");
        Ok((count, bytes))
    }

    /// Commits one partition's buffered fill rows (holes a replay
    /// re-delivered) with the intent / data / commit steps against its fill
    /// state. On failure the rows stay buffered, as for [`Self::commit`].
    async fn commit_fills(&mut self, key: (Kind, u32)) -> Result<(), LakeError> {
        let (kind, partition) = key;
        let Some(state) = self.partitions.get_mut(&key) else {
            return Ok(());
        };
        if state.fill_rows.len() == 0 {
            return Ok(());
        }
        let rows = std::mem::replace(&mut state.fill_rows, Rows::empty(kind));
        let offsets = rows.all_offsets();
        let (Some(&first), Some(&last)) = (offsets.first(), offsets.last()) else {
            return Ok(());
        };
        let topic = state.topic.clone();
        let compression = self.compression;
        let rows = Arc::new(rows);
        let task_rows = Arc::clone(&rows);
        let encoded = tokio::task::spawn_blocking(move || {
            encode(kind, &topic, partition, &task_rows, compression, true)
        })
        .await
        .map_err(|join| LakeError::Encode {
            path: layout::fill_state_file(kind, partition),
            problem: join.to_string(),
        })
        .and_then(|r| r);
        let outcome = match encoded {
            Ok(files) => self.write_fill(key, first, last, &offsets, files).await,
            Err(e) => Err(e),
        };
        let Some(state) = self.partitions.get_mut(&key) else {
            return outcome;
        };
        match outcome {
            Ok(()) => {
                layout::add_ranges(&mut state.filled, offsets.iter().map(|&o| [o, o]));
                state.fill_stale.clear();
                self.stats.commits += 1;
                self.stats.rows += rows.len() as u64;
                Ok(())
            }
            Err(e) => {
                let rows = Arc::try_unwrap(rows).unwrap_or_else(|shared| (*shared).clone());
                let newer = std::mem::replace(&mut state.fill_rows, rows);
                state.fill_rows.append(newer);
                Err(e)
            }
        }
    }

    async fn write_fill(
        &mut self,
        key: (Kind, u32),
        first: u64,
        last: u64,
        offsets: &[u64],
        files: Vec<(String, Bytes)>,
    ) -> Result<(), LakeError> {
        let (kind, partition) = key;
        let path = layout::fill_state_file(kind, partition);
        let Some(state) = self.partitions.get_mut(&key) else {
            return Ok(());
        };
        let new_names: BTreeSet<String> = files.iter().map(|(name, _)| name.clone()).collect();
        state.fill_stale.extend(new_names.iter().cloned());
        let stale: Vec<String> = state.fill_stale.difference(&new_names).cloned().collect();
        let mut record = FillState {
            version: STATE_VERSION,
            topic: state.topic.clone(),
            partition,
            filled: state.filled.clone(),
            pending: Some(Pending {
                first,
                last,
                files: state.fill_stale.iter().cloned().collect(),
            }),
        };
        self.put_json(&path, &record).await?;
        let lake = &self.lake;
        futures::stream::iter(files)
            .map(|(name, body)| async move { lake.put(&name, body).await })
            .buffer_unordered(CONCURRENT_PUTS)
            .try_collect::<Vec<()>>()
            .await?;
        for name in &stale {
            lake.delete(name).await?;
        }
        layout::add_ranges(&mut record.filled, offsets.iter().map(|&o| [o, o]));
        record.pending = None;
        self.put_json(&path, &record).await?;
        tracing::info!(lake = %self.lake.display, topic = %record.topic, partition, first, last, rows = offsets.len(), "Lake holes filled.");
        Ok(())
    }

    /// Decodes a batch into the buffers (new offsets as rows, holes as
    /// fills, the rest skipped as already in the lake) and commits what it
    /// buffered. Returns the records refused for good.
    async fn write_through(
        &mut self,
        batch: &[SinkRecord],
    ) -> Result<Vec<(u64, String)>, LakeError> {
        let mut refused = Vec::new();
        let mut touched = BTreeSet::new();
        // Offsets taken as fills by this call (a batch may repeat one).
        let mut filling: std::collections::HashSet<(Kind, u32, u64)> = Default::default();
        for record in batch {
            let Some(kind) = self.kind_of(&record.topic) else {
                refused.push((record.offset, self.unknown_topic(&record.topic)));
                continue;
            };
            let key = (kind, record.partition);
            if !self.partitions.contains_key(&key) {
                // Not recovered by the driver (a replay, a test): look at
                // the lake anyway, so overlaps are skipped and holes known.
                self.load(kind, &record.topic, record.partition).await?;
            }
            let Some(mut state) = self.partitions.remove(&key) else {
                continue;
            };
            let o = record.offset;
            let filled = layout::in_ranges(&state.filled, o)
                || filling.contains(&(kind, record.partition, o));
            let decoded = if filled {
                Ok(()) // a replay put it there already
            } else if self.replay {
                if state.committed.is_none_or(|c| o > c) || layout::in_ranges(&state.holes, o) {
                    filling.insert((kind, record.partition, o));
                    self.decode_into(kind, record, &mut state.fill_rows)
                } else {
                    Ok(()) // at or below the live commit and not a hole: in the lake
                }
            } else if state.high_water().is_none_or(|h| o > h) {
                self.decode_into(kind, record, &mut state.rows)
            } else {
                Ok(()) // a re-delivered overlap
            };
            if let Err(problem) = decoded {
                refused.push((record.offset, problem));
            }
            let full = state.rows.len() >= self.max_buffered_rows;
            let full_fills = state.fill_rows.len() >= self.max_buffered_rows;
            self.partitions.insert(key, state);
            touched.insert(key);
            if full {
                self.commit(key).await?;
            }
            if full_fills {
                self.commit_fills(key).await?;
            }
        }
        for key in touched {
            self.commit(key).await?;
            self.commit_fills(key).await?;
        }
        Ok(refused)
    }

    /// Drops every buffered row, after a failed write: the driver
    /// re-delivers or dead-letters the batch, so nothing of it may stay.
    fn drop_buffers(&mut self) {
        for ((kind, _), p) in self.partitions.iter_mut() {
            p.rows = Rows::empty(*kind);
            p.fill_rows = Rows::empty(*kind);
        }
    }

    fn decode_into(&self, kind: Kind, record: &SinkRecord, rows: &mut Rows) -> Result<(), String> {
        let framed = framing::parse(&record.value, IdWidth::ContentId4)
            .map_err(|e| format!("not framed Avro: {e}"))?;
        match (kind, rows) {
            (Kind::Readings, Rows::Readings(rows)) => {
                let row = match fast::decode_scored_reading(framed.datum) {
                    Some(scored) => {
                        ReadingRow::from_ref(record.offset, record.timestamp_ms, &scored)
                    }
                    None => {
                        let scored: ScoredReading = decode_whole(framed.datum)?;
                        ReadingRow::new(record.offset, record.timestamp_ms, scored)
                    }
                };
                rows.push(row);
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
    fill: bool,
) -> Result<Vec<(String, Bytes)>, LakeError> {
    let name_of = if fill {
        layout::fill_file
    } else {
        layout::data_file
    };
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
                let name = name_of(kind, time, partition, first, last);
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
        match self.write_through(batch).await {
            Ok(refused) if refused.is_empty() => Ok(()),
            Ok(refused) => Err(SinkError::Rejected(refused)),
            Err(e) => {
                // Nothing of a failed batch stays buffered: the driver
                // retries it or dead-letters it, and a dead-lettered batch
                // must not be archived later as well.
                self.drop_buffers();
                Err(e.into())
            }
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
        let keys: Vec<(Kind, u32)> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.fill_rows.len() > 0)
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.commit_fills(key).await?;
        }
        Ok(())
    }
}
