//! One partition: an ordered, durable sequence of records in segment files.
//!
//! # Group commit
//!
//! An fsync costs about as much for one record as for ten thousand, so
//! appends that arrive while one is being made durable are pooled into the
//! next one. Each appender encodes its frame into a shared pending buffer
//! under the `write` mutex, which is also where its offsets are assigned, so
//! buffer order is offset order. Then one of the waiting appenders becomes the
//! leader: it takes the whole buffer, writes it with one `pwrite` per
//! segment, fsyncs, publishes the new high watermark and wakes everyone. The
//! others sleep on a condition variable meanwhile, and the next batch piles
//! up behind the I/O. No thread exists besides the callers', so an idle
//! partition costs nothing and dropping it needs no shutdown.
//!
//! # What readers see
//!
//! Readers see only published data: whole frames that are durable (or merely
//! written, under [`Durability::None`]). The published state is a snapshot
//! of segment lengths behind an `RwLock` that readers hold only to pick a file
//! and a byte range, never across I/O. So a consumer can never read a record
//! that a crash would take back, and it never contends with the fsync.

use crate::config::{Durability, PartitionConfig};
use crate::error::{LogError, Result};
use crate::frame::{self, FrameMeta, HEADER_LEN, Header};
use crate::record::{Record, RecordView, now_ms};
use crate::segment::{
    self, INDEX_SUFFIX, LOG_SUFFIX, SegmentFile, SegmentState, TMP_SUFFIX, TornAt,
};
use bytes::Bytes;
use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::mem;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{
    Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
use std::time::{Duration, Instant};

/// Smallest chunk a read fetches per system call.
const MIN_READ_CHUNK: usize = 16 << 10;
/// Most a read fetches with its first system call: enough for a few frames,
/// cheap for a tailing consumer that wants the last handful of records.
const FIRST_READ_CHUNK: usize = 64 << 10;
/// Most a read fetches per system call (each read doubles the next), unless
/// one frame alone is larger.
const MAX_READ_CHUNK: usize = 1 << 20;

/// How much one [`Partition::read`] may return.
///
/// Both limits are soft in one direction: a read that can return anything
/// returns at least one record, even if that record alone exceeds
/// `max_bytes`, so an oversized record cannot stall a consumer forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Most records to return.
    pub max_records: usize,
    /// Most key plus value bytes to return.
    pub max_bytes: usize,
}

impl ReadLimits {
    /// Limits with both bounds given.
    pub fn new(max_records: usize, max_bytes: usize) -> Self {
        ReadLimits {
            max_records,
            max_bytes,
        }
    }
}

impl Default for ReadLimits {
    /// 1,000 records or 1 MiB, whichever comes first.
    fn default() -> Self {
        ReadLimits::new(1_000, 1 << 20)
    }
}

/// What recovery found when the partition was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Bytes cut from the end of the active segment because they did not form
    /// whole, valid frames: the tail of a write a crash interrupted.
    pub truncated_bytes: u64,
    /// The first invalid frame of the active segment, if any, and why.
    pub torn_at: Option<(PathBuf, u64, &'static str)>,
    /// Sealed segments whose index was missing or stale and had to be scanned.
    pub rebuilt_indexes: usize,
}

/// What one retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Whole segments removed.
    pub segments_deleted: usize,
    /// Their total size.
    pub bytes_deleted: u64,
}

impl RetentionOutcome {
    /// Adds another pass's outcome to this one.
    pub fn add(&mut self, other: RetentionOutcome) {
        self.segments_deleted += other.segments_deleted;
        self.bytes_deleted += other.bytes_deleted;
    }
}

/// Callback run after each advance of the high watermark.
type Listener = Arc<dyn Fn(u64) + Send + Sync>;

/// Encoded batches waiting for a flush.
#[derive(Debug, Default)]
struct Pending {
    /// Their frames, back to back, exactly as they go to disk.
    bytes: Vec<u8>,
    /// Each frame in `bytes`, in order.
    frames: Vec<FrameMeta>,
    /// Each batch: how many of `frames` it has and its size in bytes. A
    /// segment is only ever rolled between batches, so that no batch spans
    /// two files and recovery can drop a torn one whole.
    batches: Vec<(usize, u64)>,
}

impl Pending {
    fn clear(&mut self) {
        self.bytes.clear();
        self.frames.clear();
        self.batches.clear();
    }
}

/// Appenders' shared state: offset assignment and the group-commit buffer.
#[derive(Debug)]
struct WriteState {
    /// The offset the next appended record gets.
    next_offset: u64,
    /// Batches waiting for the next flush.
    pending: Pending,
    /// The emptied buffers of the previous flush, kept for their capacity.
    spare: Pending,
    /// A leader is writing; everyone else waits.
    flushing: bool,
    /// Every offset below this is durable and published.
    durable_offset: u64,
    /// Set when a failed flush could not be rolled back (or its leader
    /// panicked); refuses all later appends until the partition is reopened.
    poisoned: Option<String>,
    /// Bumped by every failed flush that was rolled back. A failed flush
    /// drops every batch not yet durable (its own and those queued behind
    /// it) and hands their offsets out again, so an appender tells from the
    /// generation it queued in whether its batch went down with one.
    generation: u64,
    /// For the latest failed flushes: (the generation it ended, the durable
    /// offset then, the error as text). Appenders of that generation whose
    /// batch ends at or below that offset were durable; the rest failed.
    failures: std::collections::VecDeque<(u64, u64, String, bool)>,
}

/// Failed flushes remembered for appenders still waiting on them; an
/// appender that slept through more than this many is told it failed.
const FAILURES_KEPT: usize = 64;

/// Why a flush failed, and whether the partition was put back as it was.
#[derive(Debug)]
struct FlushFailure {
    error: LogError,
    rolled_back: bool,
}

/// The writer's view of the active segment's tail before a flush, to put
/// back when the flush fails (the index only grows, so its length will do).
#[derive(Debug, Clone, Copy)]
struct Tail {
    len: u64,
    end_offset: u64,
    max_timestamp_ms: i64,
    index_len: usize,
    last_indexed_pos: u64,
}

impl Tail {
    fn of(s: &SegmentState) -> Tail {
        Tail {
            len: s.len,
            end_offset: s.end_offset,
            max_timestamp_ms: s.max_timestamp_ms,
            index_len: s.index.len(),
            last_indexed_pos: s.last_indexed_pos,
        }
    }
    fn restore(self, s: &mut SegmentState) {
        s.len = self.len;
        s.end_offset = self.end_offset;
        s.max_timestamp_ms = self.max_timestamp_ms;
        s.index.truncate(self.index_len);
        s.last_indexed_pos = self.last_indexed_pos;
    }
}

/// The published view readers work from.
#[derive(Debug)]
struct LogState {
    /// Segments in offset order; the last is the active one.
    segments: Vec<SegmentState>,
    /// The offset after the last durable record.
    high_watermark: u64,
}

/// An ordered, durable, append-only sequence of records.
///
/// Share it between threads behind an `Arc`: every method takes `&self`.
pub struct Partition {
    dir: PathBuf,
    config: PartitionConfig,
    write: Mutex<WriteState>,
    /// Signalled whenever `durable_offset` advances or the partition fails.
    durable: Condvar,
    /// The writer's private copy of the active segment; only the flush
    /// leader locks it, so it is never contended.
    io: Mutex<SegmentState>,
    log: RwLock<LogState>,
    /// Mirror of the published high watermark, for lock-free polling.
    high_watermark: AtomicU64,
    /// Flushes (group commits) made since open.
    flushes: AtomicU64,
    /// Makes the next fsync fail, to test what follows a failed fsync.
    #[cfg(test)]
    fail_next_sync: std::sync::atomic::AtomicBool,
    /// Makes the next segment write stop half-way with ENOSPC, as a full
    /// disk does, leaving a partial frame on disk.
    #[cfg(test)]
    fail_next_write: std::sync::atomic::AtomicBool,
    listeners: RwLock<Vec<Listener>>,
    recovery: RecoveryReport,
}

impl fmt::Debug for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partition")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .field("high_watermark", &self.high_watermark())
            .field("log_start_offset", &self.log_start_offset())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read_lock<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// If a flush leader unwinds, followers would wait forever for a flush that
/// never finishes; this guard fails them instead.
struct FlushGuard<'a> {
    partition: &'a Partition,
    armed: bool,
}

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut w = lock(&self.partition.write);
            w.flushing = false;
            w.poisoned
                .get_or_insert_with(|| "the flushing thread panicked".to_owned());
            self.partition.durable.notify_all();
        }
    }
}

impl Partition {
    /// Opens the partition in `dir`, creating it if needed, and recovers it.
    ///
    /// Sealed segments are trusted through their index files (and scanned
    /// when one is missing or stale); the active segment is always scanned
    /// frame by frame and cut at the first frame that is torn or fails its
    /// checksum. Corruption inside a sealed segment is an error rather than a
    /// cut, because everything after it was acknowledged as durable.
    pub fn open(dir: impl AsRef<Path>, config: PartitionConfig) -> Result<Partition> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| LogError::io("create directory", &dir, e))?;
        let bases = list_segments(&dir)?;
        let durable = config.durability == Durability::Fsync;
        let mut recovery = RecoveryReport::default();
        let mut segments: Vec<SegmentState> = Vec::with_capacity(bases.len().max(1));

        if bases.is_empty() {
            let file = SegmentFile::open(&dir, 0, true)?;
            if durable {
                segment::sync_dir(&dir)?;
            }
            segments.push(SegmentState::empty(Arc::new(file)));
        }
        let last = bases.len().saturating_sub(1);
        for (i, &base) in bases.iter().enumerate() {
            let file = Arc::new(SegmentFile::open(&dir, base, false)?);
            if let Some(prev) = segments.last()
                && prev.end_offset != base
            {
                return Err(LogError::OffsetGap {
                    path: file.log_path.clone(),
                    expected: prev.end_offset,
                    found: base,
                });
            }
            let state = if i < last {
                open_sealed(file, &config, &mut recovery)?
            } else {
                open_active(file, &config, &mut recovery)?
            };
            segments.push(state);
        }

        let active = segments.last().cloned().ok_or_else(|| LogError::Corrupt {
            path: dir.clone(),
            position: 0,
            reason: "partition has no segment after recovery",
        })?;
        let hw = active.end_offset;
        Ok(Partition {
            config,
            write: Mutex::new(WriteState {
                next_offset: hw,
                pending: Pending::default(),
                spare: Pending::default(),
                flushing: false,
                durable_offset: hw,
                poisoned: None,
                generation: 0,
                failures: std::collections::VecDeque::new(),
            }),
            durable: Condvar::new(),
            io: Mutex::new(active),
            log: RwLock::new(LogState {
                segments,
                high_watermark: hw,
            }),
            high_watermark: AtomicU64::new(hw),
            flushes: AtomicU64::new(0),
            #[cfg(test)]
            fail_next_sync: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            fail_next_write: std::sync::atomic::AtomicBool::new(false),
            listeners: RwLock::new(Vec::new()),
            recovery,
            dir,
        })
    }

    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The settings the partition was opened with.
    pub fn config(&self) -> &PartitionConfig {
        &self.config
    }

    /// What recovery found at open.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The offset the next record will get: every offset below it is durable
    /// and readable.
    pub fn high_watermark(&self) -> u64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// The oldest offset still stored; retention moves it forward.
    pub fn log_start_offset(&self) -> u64 {
        read_lock(&self.log)
            .segments
            .first()
            .map_or(0, |s| s.file.base_offset)
    }

    /// Bytes of published frames across all segments.
    pub fn size_bytes(&self) -> u64 {
        read_lock(&self.log).segments.iter().map(|s| s.len).sum()
    }

    /// Flushes (one `pwrite` run and one fsync each) made since open.
    /// Compared with the number of appends it shows how many appends each
    /// group commit absorbs.
    pub fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        read_lock(&self.log).segments.len()
    }

    /// Appends one record; see [`Partition::append_batch`].
    pub fn append(&self, record: Record<'_>) -> Result<u64> {
        self.append_batch(std::slice::from_ref(&record))
            .map(|r| r.start)
    }

    /// Appends `records` as one atomic batch and returns their offsets once
    /// they are durable.
    ///
    /// Blocks until an fsync covering the batch has completed (or, under
    /// [`Durability::None`], until it is written). Concurrent callers share
    /// fsyncs, so throughput grows with the number of appending threads while
    /// each one still gets a durable acknowledgement. After a crash the batch
    /// is either entirely present or entirely absent.
    ///
    /// An empty batch returns an empty range at the next offset without I/O.
    pub fn append_batch(&self, records: &[Record<'_>]) -> Result<Range<u64>> {
        let bytes = frame::batch_len(records);
        if bytes > self.config.max_batch_bytes {
            return Err(LogError::BatchTooLarge {
                bytes,
                limit: self.config.max_batch_bytes,
            });
        }
        let mut w = lock(&self.write);
        if let Some(cause) = &w.poisoned {
            return Err(self.poisoned(cause));
        }
        let base = w.next_offset;
        if records.is_empty() {
            return Ok(base..base);
        }
        let ws = &mut *w;
        let frames_before = ws.pending.frames.len();
        let len = frame::encode_batch(
            &mut ws.pending.bytes,
            base,
            records,
            self.config.frame_bytes,
            &mut ws.pending.frames,
        );
        let frames = ws.pending.frames.len() - frames_before;
        ws.pending.batches.push((frames, len));
        let end = base + records.len() as u64;
        ws.next_offset = end;
        let generation = ws.generation;

        loop {
            if w.generation != generation {
                // A flush failed since this batch was queued: it was durable
                // before that failure, or it was dropped with it.
                return match w.failures.iter().find(|f| f.0 == generation) {
                    Some(&(_, durable_then, ..)) if durable_then >= end => Ok(base..end),
                    Some((_, _, cause, retryable)) => Err(LogError::AppendFailed {
                        path: self.dir.clone(),
                        cause: cause.clone(),
                        retryable: *retryable,
                    }),
                    None => Err(LogError::AppendFailed {
                        path: self.dir.clone(),
                        cause: "an earlier flush failed".into(),
                        retryable: true,
                    }),
                };
            }
            if w.durable_offset >= end {
                return Ok(base..end);
            }
            if let Some(cause) = &w.poisoned {
                return Err(self.poisoned(cause));
            }
            if w.flushing {
                w = self.durable.wait(w).unwrap_or_else(PoisonError::into_inner);
                continue;
            }

            // Become the leader for everything pending, ours included.
            w.flushing = true;
            let spare = mem::take(&mut w.spare);
            let mut batch = mem::replace(&mut w.pending, spare);
            drop(w);

            let mut guard = FlushGuard {
                partition: self,
                armed: true,
            };
            let flushed = self.flush(&batch);
            guard.armed = false;
            drop(guard);

            batch.clear();
            w = lock(&self.write);
            w.spare = batch;
            w.flushing = false;
            let outcome = match flushed {
                Ok(flushed) => {
                    w.durable_offset = flushed.high_watermark;
                    Ok(flushed)
                }
                Err(failure) => {
                    let e = failure.error;
                    if failure.rolled_back {
                        // The log is as it was before this flush: drop every
                        // batch not durable (this flush's and those queued
                        // since, whose offsets followed them), hand their
                        // offsets out again, and fail their appenders.
                        let durable = w.durable_offset;
                        let failure = (w.generation, durable, e.to_string(), e.is_retryable());
                        w.failures.push_back(failure);
                        if w.failures.len() > FAILURES_KEPT {
                            w.failures.pop_front();
                        }
                        w.generation += 1;
                        w.pending.clear();
                        w.next_offset = durable;
                    } else {
                        w.poisoned = Some(e.to_string());
                    }
                    // The leader's own batch was in this flush: it gets the
                    // error itself, with its kind (StorageFull, …).
                    Err(e)
                }
            };
            self.durable.notify_all();
            drop(w);

            let flushed = outcome?;
            self.notify_listeners(flushed.high_watermark);
            if flushed.rolled {
                // Retention is due only when a segment was sealed. A failure
                // here does not undo the durable append; the periodic
                // `enforce_retention` call reports it.
                let _ = self.enforce_retention(now_ms());
            }
            w = lock(&self.write);
        }
    }

    fn poisoned(&self, cause: &str) -> LogError {
        LogError::Poisoned {
            path: self.dir.clone(),
            cause: cause.to_owned(),
        }
    }

    /// The leader's I/O: write the pending batches, rolling segments as they
    /// fill, make them durable, and publish them to readers.
    ///
    /// When a write or fsync fails (a full disk: ENOSPC, or EIO) before any
    /// segment was sealed, the active segment is cut back to its length
    /// before this flush (and that cut synced) and the writer's view of it
    /// restored, so the partition is exactly as it was and later appends can
    /// succeed once the cause is gone, without a restart. Re-writing
    /// everything after the cut also covers a failed fsync, after which the
    /// kernel may have dropped the dirty pages. Only when that cut fails too,
    /// or the flush had sealed a segment, is the partition poisoned until it
    /// is reopened (recovery then cuts the torn tail).
    fn flush(&self, pending: &Pending) -> std::result::Result<Flushed, FlushFailure> {
        let mut io = lock(&self.io);
        let before = Tail::of(&io);
        let mut sealed_any = false;
        match self.write_pending(pending, &mut io, &mut sealed_any) {
            Ok(flushed) => Ok(flushed),
            Err(error) if sealed_any => Err(FlushFailure {
                error,
                rolled_back: false,
            }),
            Err(error) => {
                let durable = self.config.durability == Durability::Fsync;
                match io.file.truncate(before.len, durable) {
                    Ok(()) => {
                        before.restore(&mut io);
                        Err(FlushFailure {
                            error,
                            rolled_back: true,
                        })
                    }
                    Err(cut) => Err(FlushFailure {
                        error: LogError::AppendFailed {
                            path: self.dir.clone(),
                            cause: format!(
                                "{error}; cutting off the partial write failed too: {cut}"
                            ),
                            retryable: false,
                        },
                        rolled_back: false,
                    }),
                }
            }
        }
    }

    fn write_pending(
        &self,
        pending: &Pending,
        io: &mut SegmentState,
        sealed_any: &mut bool,
    ) -> Result<Flushed> {
        let buf = &pending.bytes[..];
        let durable = self.config.durability == Durability::Fsync;
        let interval = self.config.index_interval_bytes;
        // Segments sealed during this flush, published together with the
        // active one so readers never see a half-rolled state.
        let mut sealed: Vec<SegmentState> = Vec::new();
        let mut run_start = 0usize; // start in `buf` of the bytes not yet written
        let mut run_pos = io.len; // where those bytes go in the active segment
        let mut cursor = 0usize;

        let mut frames = pending.frames.iter();
        for &(frame_count, batch_len) in &pending.batches {
            if io.len > 0 && io.len + batch_len > self.config.segment_bytes {
                io.file.write_all_at(&buf[run_start..cursor], run_pos)?;
                *sealed_any = true;
                let next = self.roll(io, durable)?;
                sealed.push(mem::replace(io, next));
                run_start = cursor;
                run_pos = 0;
            }
            for meta in frames.by_ref().take(frame_count) {
                io.push_frame(meta, interval);
                cursor += meta.len as usize;
            }
        }
        #[cfg(test)]
        if self.fail_next_write.swap(false, Ordering::Relaxed) {
            let half = run_start + (cursor - run_start) / 2;
            io.file.write_all_at(&buf[run_start..half], run_pos)?;
            let full = std::io::Error::new(ErrorKind::StorageFull, "injected: no space left");
            return Err(LogError::io("write segment", &io.file.log_path, full));
        }
        io.file.write_all_at(&buf[run_start..cursor], run_pos)?;
        #[cfg(test)]
        if self.fail_next_sync.swap(false, Ordering::Relaxed) {
            let injected = std::io::Error::other("injected fsync failure");
            return Err(LogError::io("fsync segment", &io.file.log_path, injected));
        }
        if durable {
            io.file.sync()?;
        }

        self.flushes.fetch_add(1, Ordering::Relaxed);
        let high_watermark = io.end_offset;
        let rolled = !sealed.is_empty();
        {
            let mut log = write_lock(&self.log);
            for s in sealed.iter().chain(std::iter::once(&*io)) {
                publish(&mut log, s);
            }
            log.high_watermark = high_watermark;
            self.high_watermark.store(high_watermark, Ordering::Release);
        }
        Ok(Flushed {
            high_watermark,
            rolled,
        })
    }

    /// Seals the full active segment and creates the next one.
    ///
    /// Order matters for recovery: the old segment is synced and indexed
    /// before the new file exists, so whenever a newer segment is on disk,
    /// every older one is complete.
    fn roll(&self, active: &SegmentState, durable: bool) -> Result<SegmentState> {
        if durable {
            active.file.sync()?;
        }
        active.write_index(durable)?;
        let next = SegmentFile::open(&self.dir, active.end_offset, true)?;
        if durable {
            segment::sync_dir(&self.dir)?;
        }
        Ok(SegmentState::empty(Arc::new(next)))
    }

    /// Runs `listener` with the new high watermark after every durable
    /// advance, on the appending thread that completed the flush.
    ///
    /// This is how an async layer awaits new data without a blocked thread:
    /// register a closure that wakes its tasks (e.g. `Notify::notify_waiters`).
    /// The closure must be quick and must not block.
    pub fn on_commit(&self, listener: impl Fn(u64) + Send + Sync + 'static) {
        write_lock(&self.listeners).push(Arc::new(listener));
    }

    fn notify_listeners(&self, high_watermark: u64) {
        let listeners = read_lock(&self.listeners).clone();
        for l in listeners {
            l(high_watermark);
        }
    }

    /// Blocks until the record at `offset` is readable (the high watermark
    /// passes it) or `timeout` elapses, and returns the high watermark.
    ///
    /// A tailing consumer calls this with its next offset instead of polling.
    /// Compare the result with `offset`: on timeout nothing new has arrived.
    pub fn wait_for_offset(&self, offset: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now().checked_add(timeout);
        let mut w = lock(&self.write);
        while w.durable_offset <= offset {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                break;
            }
            w = self
                .durable
                .wait_timeout(w, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        w.durable_offset
    }

    /// Reads records starting at `from`, up to `limits`.
    ///
    /// Returns an empty vector at the high watermark (nothing new yet) and
    /// [`LogError::OffsetOutOfRange`] below the log start (deleted by
    /// retention) or above the high watermark, so a consumer knows to reset.
    /// Every frame read is checksummed again, catching bit rot on the way out.
    pub fn read(&self, from: u64, limits: ReadLimits) -> Result<Vec<RecordView>> {
        let mut out = Vec::new();
        let mut cursor = ReadCursor {
            next: from,
            bytes: 0,
            records: 0,
            full: limits.max_records == 0,
        };
        while !cursor.full {
            let target = {
                let log = read_lock(&self.log);
                let hw = log.high_watermark;
                let log_start = log.segments.first().map_or(hw, |s| s.file.base_offset);
                if cursor.next < log_start || cursor.next > hw {
                    if out.is_empty() {
                        return Err(LogError::OffsetOutOfRange {
                            offset: cursor.next,
                            log_start,
                            high_watermark: hw,
                        });
                    }
                    // Retention overtook a read in progress: return what we have.
                    break;
                }
                if cursor.next == hw {
                    break;
                }
                let i = log
                    .segments
                    .partition_point(|s| s.file.base_offset <= cursor.next);
                let Some(seg) = i.checked_sub(1).and_then(|i| log.segments.get(i)) else {
                    break;
                };
                let start = seg.lookup(cursor.next).pos;
                (Arc::clone(&seg.file), start, seg.len, hw)
            };
            let (file, start, len, hw) = target;
            let before = cursor.next;
            self.read_segment(&file, start, len, limits, &mut cursor, &mut out)?;
            if cursor.next == before && !cursor.full {
                // The segment ended without reaching `next`: the published
                // lengths and offsets disagree.
                return Err(LogError::Corrupt {
                    path: file.log_path.clone(),
                    position: len,
                    reason: "segment ends before the offset its index promises",
                });
            }
            if cursor.next >= hw {
                break;
            }
        }
        Ok(out)
    }

    /// Decodes frames of one segment from byte `pos` up to `len`.
    fn read_segment(
        &self,
        file: &SegmentFile,
        mut pos: u64,
        len: u64,
        limits: ReadLimits,
        cursor: &mut ReadCursor,
        out: &mut Vec<RecordView>,
    ) -> Result<()> {
        let first = limits
            .max_bytes
            .saturating_add(HEADER_LEN)
            .clamp(MIN_READ_CHUNK, FIRST_READ_CHUNK);
        let mut chunks = Chunks {
            file,
            len,
            buf: Bytes::new(),
            start: 0,
            next_size: first as u64,
        };
        let corrupt = |position, reason| LogError::Corrupt {
            path: file.log_path.clone(),
            position,
            reason,
        };
        while pos < len && !cursor.full {
            if pos + HEADER_LEN as u64 > len {
                return Err(corrupt(pos, "truncated frame header"));
            }
            let head = chunks.get(pos, HEADER_LEN as u64)?;
            let header = Header::parse(&head).map_err(|r| corrupt(pos, r))?;
            let flen = header.meta.len;
            if pos + flen > len {
                return Err(corrupt(pos, "truncated frame"));
            }
            if header.meta.end_offset() <= cursor.next {
                // Before the requested offset: skip without checksumming.
                pos += flen;
                continue;
            }
            let frame = chunks.get(pos, flen)?;
            header.verify(&frame).map_err(|r| corrupt(pos, r))?;
            let before = out.len();
            let next = cursor.next;
            let mut want = |size: usize| cursor.admit(size, limits);
            let decoded = frame::decode_records(&frame, &header, next, out, &mut want);
            decoded.map_err(|r| corrupt(pos, r))?;
            match out.last() {
                Some(last) if out.len() > before => cursor.next = last.offset + 1,
                _ => {}
            }
            if cursor.full {
                break;
            }
            cursor.next = header.meta.end_offset();
            pos += flen;
        }
        Ok(())
    }

    /// Deletes whole old segments that fall outside the retention limits.
    ///
    /// A segment goes when the partition would still hold at least
    /// `retention_bytes` without it, or when its newest record is older than
    /// `retention_ms` before `now_ms`. Only a prefix of sealed segments is
    /// ever deleted, so offsets stay contiguous; the active segment is kept.
    /// Readers that already hold a deleted segment finish reading it.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome> {
        let (bytes_limit, age_limit) = (self.config.retention_bytes, self.config.retention_ms);
        if bytes_limit.is_none() && age_limit.is_none() {
            return Ok(RetentionOutcome::default());
        }
        let cutoff =
            age_limit.map(|ms| now_ms.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX)));
        let victims: Vec<SegmentState> = {
            let mut log = write_lock(&self.log);
            let mut total: u64 = log.segments.iter().map(|s| s.len).sum();
            let mut n = 0;
            while n + 1 < log.segments.len() {
                let s = &log.segments[n];
                let by_size = bytes_limit.is_some_and(|limit| total - s.len >= limit);
                let by_age = cutoff.is_some_and(|c| s.max_timestamp_ms < c);
                if !(by_size || by_age) {
                    break;
                }
                total -= s.len;
                n += 1;
            }
            log.segments.drain(..n).collect()
        };
        let mut outcome = RetentionOutcome::default();
        // Oldest first, index before log: a crash part-way leaves a
        // contiguous suffix of segments and at worst an orphan index file,
        // which open removes.
        for v in victims {
            remove_if_exists(&v.file.index_path)?;
            remove_if_exists(&v.file.log_path)?;
            outcome.segments_deleted += 1;
            outcome.bytes_deleted += v.len;
        }
        Ok(outcome)
    }
}

/// Makes the writer's view of segment `s` the readers' view.
///
/// Usually `s` is the active segment readers already know, and only its
/// length and new index entries are copied, not the whole index again.
fn publish(log: &mut LogState, s: &SegmentState) {
    match log.segments.last_mut() {
        Some(last) if last.file.base_offset == s.file.base_offset => {
            let known = last.index.len();
            last.index
                .extend_from_slice(s.index.get(known..).unwrap_or(&[]));
            last.len = s.len;
            last.end_offset = s.end_offset;
            last.max_timestamp_ms = s.max_timestamp_ms;
            last.last_indexed_pos = s.last_indexed_pos;
        }
        _ => log.segments.push(s.clone()),
    }
}

/// Result of one leader flush.
#[derive(Debug, Clone, Copy)]
struct Flushed {
    high_watermark: u64,
    rolled: bool,
}

/// A window of one segment file, refilled with growing reads.
#[derive(Debug)]
struct Chunks<'a> {
    file: &'a SegmentFile,
    /// Published length: nothing at or past it is read.
    len: u64,
    buf: Bytes,
    /// File position of `buf[0]`.
    start: u64,
    /// Size of the next read, doubling up to `MAX_READ_CHUNK`.
    next_size: u64,
}

impl Chunks<'_> {
    /// Bytes `pos..pos + n` (within the published length) as a slice of a
    /// shared buffer, reading from the file only when they are not buffered.
    fn get(&mut self, pos: u64, n: u64) -> Result<Bytes> {
        if pos < self.start || pos + n > self.start + self.buf.len() as u64 {
            let size = self.next_size.max(n).min(self.len - pos);
            self.buf = Bytes::from(self.file.read_exact_at(pos, size as usize)?);
            self.start = pos;
            self.next_size = (self.next_size * 2).min(MAX_READ_CHUNK as u64);
        }
        let at = (pos - self.start) as usize;
        Ok(self.buf.slice(at..at + n as usize))
    }
}

/// Progress of one read across segments.
#[derive(Debug)]
struct ReadCursor {
    /// The next offset to return.
    next: u64,
    /// Key and value bytes returned so far.
    bytes: usize,
    /// Records returned so far.
    records: usize,
    /// A limit was reached.
    full: bool,
}

impl ReadCursor {
    /// Whether one more record of `size` bytes fits, counting it if so.
    fn admit(&mut self, size: usize, limits: ReadLimits) -> bool {
        if self.records >= limits.max_records
            || (self.records > 0 && self.bytes.saturating_add(size) > limits.max_bytes)
        {
            self.full = true;
            return false;
        }
        self.bytes = self.bytes.saturating_add(size);
        self.records += 1;
        if self.records >= limits.max_records {
            // The quota is met: stop the outer loops without another read.
            self.full = true;
        }
        true
    }
}

/// Lists the base offsets of the `.log` files in `dir`, in order, and clears
/// leftovers of interrupted writes and deletions.
fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let entries = fs::read_dir(dir).map_err(|e| LogError::io("list directory", dir, e))?;
    let mut bases = Vec::new();
    let mut indexes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("list directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = segment::parse_log_name(name) {
            bases.push(base);
        } else if name.ends_with(&format!(".{INDEX_SUFFIX}")) {
            indexes.push(entry.path());
        } else if name.ends_with(&format!(".{TMP_SUFFIX}")) {
            remove_if_exists(&entry.path())?;
        }
    }
    bases.sort_unstable();
    for index in indexes {
        let log = index.with_extension(LOG_SUFFIX);
        if !log.exists() {
            remove_if_exists(&index)?;
        }
    }
    Ok(bases)
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(LogError::io("delete", path, e)),
        _ => Ok(()),
    }
}

/// Recovers a sealed segment: from its index if that matches the file,
/// otherwise by a full scan, which must find no damage.
fn open_sealed(
    file: Arc<SegmentFile>,
    config: &PartitionConfig,
    recovery: &mut RecoveryReport,
) -> Result<SegmentState> {
    let file_len = file.file_len()?;
    if let Some(state) = SegmentState::load_index(Arc::clone(&file), file_len)? {
        return Ok(state);
    }
    recovery.rebuilt_indexes += 1;
    let (state, torn) = segment::scan(Arc::clone(&file), config.index_interval_bytes)?;
    if let Some(TornAt { position, reason }) = torn {
        return Err(LogError::Corrupt {
            path: file.log_path.clone(),
            position,
            reason,
        });
    }
    if state.len > 0 {
        state.write_index(config.durability == Durability::Fsync)?;
    }
    Ok(state)
}

/// Recovers the active segment: scan everything, cut at the first bad frame.
fn open_active(
    file: Arc<SegmentFile>,
    config: &PartitionConfig,
    recovery: &mut RecoveryReport,
) -> Result<SegmentState> {
    // The active segment's index lives in memory; a file left by an
    // interrupted roll would be stale once the segment grows.
    remove_if_exists(&file.index_path)?;
    let (state, torn) = segment::scan(Arc::clone(&file), config.index_interval_bytes)?;
    if let Some(TornAt { position, reason }) = torn {
        let file_len = file.file_len()?;
        file.truncate(position, config.durability == Durability::Fsync)?;
        recovery.truncated_bytes = file_len - position;
        recovery.torn_at = Some((file.log_path.clone(), position, reason));
    }
    Ok(state)
}

#[cfg(test)]
#[path = "partition_tests.rs"]
mod tests;
