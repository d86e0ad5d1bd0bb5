//! Segment files: the `.log` file of frames, its sparse `.index` file, and
//! the recovery scan that validates one.
//!
//! A segment is named after the offset of its first record, zero-padded to 20
//! digits, so a directory listing sorts in offset order and finding the
//! segment for an offset needs no file to be opened.
//!
//! The index is written once, when a segment is sealed, so it never needs a
//! torn-write story of its own: it carries its own checksum and the length of
//! the log it describes, and any mismatch just means "scan the log instead".
//! The active segment's index lives in memory and is rebuilt by the recovery
//! scan that has to read that segment anyway.

use crate::error::{LogError, Result};
use crate::frame::{self, FrameMeta, HEADER_LEN};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Suffix of segment data files.
pub(crate) const LOG_SUFFIX: &str = "log";
/// Suffix of sealed segments' index files.
pub(crate) const INDEX_SUFFIX: &str = "index";
/// Suffix of files being written before an atomic rename.
pub(crate) const TMP_SUFFIX: &str = "tmp";
/// Magic bytes at the start of an index file.
const INDEX_MAGIC: &[u8; 4] = b"GWIX";
/// Index file format version.
const INDEX_VERSION: u32 = 1;
/// Bytes of the fixed index file header.
const INDEX_HEADER_LEN: usize = 44;
/// How much the recovery scan reads per system call.
const SCAN_CHUNK: usize = 1 << 20;

/// One open segment file, shared by the writer and any number of readers.
///
/// All I/O is positional (`pread`/`pwrite`), so readers and the writer never
/// contend on a file cursor, and a reader holding an `Arc` keeps reading a
/// segment even after retention unlinked it.
#[derive(Debug)]
pub(crate) struct SegmentFile {
    /// Offset of the first record in this segment.
    pub base_offset: u64,
    /// Path of the `.log` file.
    pub log_path: PathBuf,
    /// Path of the `.index` file (present only once sealed).
    pub index_path: PathBuf,
    /// The `.log` file, opened read-write.
    pub file: File,
}

/// One sparse index entry: the frame holding `offset` starts at byte `pos`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// Base offset of the frame.
    pub offset: u64,
    /// Byte position of the frame in the `.log` file.
    pub pos: u64,
}

/// What is known about a segment's contents: the published view readers
/// use, and the writer's private copy of the active segment.
#[derive(Debug, Clone)]
pub(crate) struct SegmentState {
    /// The file.
    pub file: Arc<SegmentFile>,
    /// Bytes of whole, valid frames.
    pub len: u64,
    /// The offset after the last record.
    pub end_offset: u64,
    /// Largest record timestamp, `i64::MIN` while empty.
    pub max_timestamp_ms: i64,
    /// Sparse index, sorted by offset.
    pub index: Vec<IndexEntry>,
    /// Byte position of the last indexed frame, to space entries out.
    pub last_indexed_pos: u64,
}

/// Path of the segment file with `base_offset` and `suffix` in `dir`.
pub(crate) fn segment_path(dir: &Path, base_offset: u64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}"))
}

/// Parses a `.log` file name back into its base offset.
pub(crate) fn parse_log_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(LOG_SUFFIX)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Flushes a directory so that a file created or renamed in it survives a
/// crash; without this a fresh segment can vanish even though its data was
/// fsynced.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io("fsync directory", dir, e))
}

impl SegmentFile {
    /// Opens an existing segment, or creates it when `create` is set.
    pub fn open(dir: &Path, base_offset: u64, create: bool) -> Result<SegmentFile> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(&log_path)
            .map_err(|e| LogError::io("open segment", &log_path, e))?;
        Ok(SegmentFile {
            base_offset,
            index_path: segment_path(dir, base_offset, INDEX_SUFFIX),
            log_path,
            file,
        })
    }

    /// Current length of the file on disk.
    pub fn file_len(&self) -> Result<u64> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| LogError::io("stat segment", &self.log_path, e))
    }

    /// Reads exactly `len` bytes at `pos`.
    pub fn read_exact_at(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, pos)
            .map_err(|e| LogError::io("read segment", &self.log_path, e))?;
        Ok(buf)
    }

    /// Writes all of `buf` at `pos`.
    pub fn write_all_at(&self, buf: &[u8], pos: u64) -> Result<()> {
        self.file
            .write_all_at(buf, pos)
            .map_err(|e| LogError::io("write segment", &self.log_path, e))
    }

    /// Makes the written data durable. `fdatasync` suffices: it also flushes
    /// the file size, which is the only metadata recovery depends on.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| LogError::io("fsync segment", &self.log_path, e))
    }

    /// Cuts the file at `len`, dropping a torn tail, and (when `durable`)
    /// makes the cut durable so a second crash cannot resurrect the garbage
    /// behind records appended after it.
    pub fn truncate(&self, len: u64, durable: bool) -> Result<()> {
        self.file
            .set_len(len)
            .and_then(|()| {
                if durable {
                    self.file.sync_all()
                } else {
                    Ok(())
                }
            })
            .map_err(|e| LogError::io("truncate segment", &self.log_path, e))
    }
}

impl SegmentState {
    /// The state of a segment that holds no frame yet.
    pub fn empty(file: Arc<SegmentFile>) -> SegmentState {
        SegmentState {
            end_offset: file.base_offset,
            file,
            len: 0,
            max_timestamp_ms: i64::MIN,
            index: Vec::new(),
            last_indexed_pos: 0,
        }
    }

    /// Accounts for one more frame written at the end of the segment,
    /// adding an index entry once `interval` bytes have passed since the last.
    pub fn push_frame(&mut self, meta: &FrameMeta, interval: u64) {
        if self.len > 0 && self.len - self.last_indexed_pos >= interval {
            self.index.push(IndexEntry {
                offset: meta.base_offset,
                pos: self.len,
            });
            self.last_indexed_pos = self.len;
        }
        self.len += meta.len;
        self.end_offset = meta.end_offset();
        self.max_timestamp_ms = self.max_timestamp_ms.max(meta.max_timestamp_ms);
    }

    /// Byte position of a frame at or before the one holding `offset`.
    pub fn lookup(&self, offset: u64) -> IndexEntry {
        let i = self.index.partition_point(|e| e.offset <= offset);
        match i.checked_sub(1).and_then(|i| self.index.get(i)) {
            Some(e) => *e,
            None => IndexEntry {
                offset: self.file.base_offset,
                pos: 0,
            },
        }
    }

    /// Writes the index file of a segment that will not grow any more.
    ///
    /// Written to a temporary name and renamed, so a crash leaves either no
    /// index (the segment gets scanned) or a complete one. The caller syncs
    /// the directory.
    pub fn write_index(&self, durable: bool) -> Result<()> {
        let mut buf = Vec::with_capacity(INDEX_HEADER_LEN + self.index.len() * 16 + 4);
        buf.extend_from_slice(INDEX_MAGIC);
        buf.extend_from_slice(&INDEX_VERSION.to_le_bytes());
        buf.extend_from_slice(&self.file.base_offset.to_le_bytes());
        buf.extend_from_slice(&self.len.to_le_bytes());
        buf.extend_from_slice(&self.end_offset.to_le_bytes());
        buf.extend_from_slice(&self.max_timestamp_ms.to_le_bytes());
        let count = u32::try_from(self.index.len()).unwrap_or(u32::MAX);
        buf.extend_from_slice(&count.to_le_bytes());
        for e in self.index.iter().take(count as usize) {
            buf.extend_from_slice(&e.offset.to_le_bytes());
            buf.extend_from_slice(&e.pos.to_le_bytes());
        }
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());

        let tmp = self.file.index_path.with_extension(TMP_SUFFIX);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            if durable {
                f.sync_all()?;
            }
            fs::rename(&tmp, &self.file.index_path)
        };
        write().map_err(|e| LogError::io("write index", &self.file.index_path, e))
    }

    /// Loads a sealed segment's state from its index file, or `None` when the
    /// index is missing or does not match the log (then the caller scans).
    pub fn load_index(file: Arc<SegmentFile>, file_len: u64) -> Result<Option<SegmentState>> {
        let buf = match fs::read(&file.index_path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LogError::io("read index", &file.index_path, e)),
        };
        Ok(
            parse_index(&buf, file.base_offset, file_len).map(|(len, end, max_ts, index)| {
                SegmentState {
                    last_indexed_pos: index.last().map_or(0, |e| e.pos),
                    file,
                    len,
                    end_offset: end,
                    max_timestamp_ms: max_ts,
                    index,
                }
            }),
        )
    }
}

/// Decodes an index file; any inconsistency yields `None`.
fn parse_index(
    buf: &[u8],
    base_offset: u64,
    file_len: u64,
) -> Option<(u64, u64, i64, Vec<IndexEntry>)> {
    let body_len = buf.len().checked_sub(4)?;
    if body_len < INDEX_HEADER_LEN || &buf[..4] != INDEX_MAGIC {
        return None;
    }
    let (body, crc) = buf.split_at(body_len);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(body.get(at..at + 8)?.try_into().ok()?))
    };
    let version = u32::from_le_bytes(body.get(4..8)?.try_into().ok()?);
    let count = u32::from_le_bytes(body.get(40..44)?.try_into().ok()?) as usize;
    if version != INDEX_VERSION
        || u64_at(8)? != base_offset
        || u64_at(16)? != file_len
        || body.len() != INDEX_HEADER_LEN + count * 16
    {
        return None;
    }
    let end_offset = u64_at(24)?;
    let max_ts = u64_at(32)? as i64;
    let index = (0..count)
        .map(|i| {
            let at = INDEX_HEADER_LEN + i * 16;
            Some(IndexEntry {
                offset: u64_at(at)?,
                pos: u64_at(at + 8)?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some((file_len, end_offset, max_ts, index))
}

/// Where and why a scan stopped before the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TornAt {
    /// Byte position of the first invalid frame.
    pub position: u64,
    /// Which check it failed.
    pub reason: &'static str,
}

/// Reads a segment from the start, verifying every frame, and returns the
/// state covering the longest prefix of whole batches, plus where that prefix
/// ends if it is not the end of the file.
///
/// A batch whose later frames are missing or damaged is dropped as a whole,
/// including its earlier, intact frames: its appender was never told it was
/// durable. Frames must carry consecutive offsets starting at the segment's
/// base, so a stale frame from an older file generation cannot sneak in.
pub(crate) fn scan(
    file: Arc<SegmentFile>,
    index_interval: u64,
) -> Result<(SegmentState, Option<TornAt>)> {
    let file_len = file.file_len()?;
    let mut state = SegmentState::empty(Arc::clone(&file));
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = 0u64;
    let mut pos = 0u64;
    let torn = |position, reason| Some(TornAt { position, reason });
    // Makes sure buf holds file[pos .. pos + n]; the caller checked the bounds.
    let fill = |buf: &mut Vec<u8>, buf_start: &mut u64, pos: u64, n: u64| -> Result<()> {
        if pos >= *buf_start && pos + n <= *buf_start + buf.len() as u64 {
            return Ok(());
        }
        let want = n.max(SCAN_CHUNK as u64).min(file_len - pos);
        *buf = file.read_exact_at(pos, want as usize)?;
        *buf_start = pos;
        Ok(())
    };
    // The state at the end of the last complete batch.
    let mut committed = Mark::of(&state);
    let stop = loop {
        if pos == file_len {
            break None;
        }
        if file_len - pos < HEADER_LEN as u64 {
            break torn(pos, "truncated frame header");
        }
        fill(&mut buf, &mut buf_start, pos, HEADER_LEN as u64)?;
        let at = (pos - buf_start) as usize;
        let header = match frame::Header::parse(&buf[at..]) {
            Ok(h) => h,
            Err(reason) => break torn(pos, reason),
        };
        let len = header.meta.len;
        if file_len - pos < len {
            break torn(pos, "truncated frame");
        }
        fill(&mut buf, &mut buf_start, pos, len)?;
        let at = (pos - buf_start) as usize;
        if let Err(reason) = header.verify(&buf[at..at + len as usize]) {
            break torn(pos, reason);
        }
        if header.meta.base_offset != state.end_offset {
            break torn(pos, "frame offset does not follow the previous frame");
        }
        state.push_frame(&header.meta, index_interval);
        pos += len;
        if !header.meta.continues {
            committed = Mark::of(&state);
        }
    };
    if state.len == committed.len {
        return Ok((state, stop));
    }
    committed.restore(&mut state);
    let reason = stop.map_or("batch incomplete at end of segment", |t| t.reason);
    Ok((state, torn(committed.len, reason)))
}

/// Enough of a `SegmentState` to roll it back to a batch boundary.
#[derive(Debug, Clone, Copy)]
struct Mark {
    len: u64,
    end_offset: u64,
    max_timestamp_ms: i64,
    index_len: usize,
    last_indexed_pos: u64,
}

impl Mark {
    fn of(s: &SegmentState) -> Mark {
        Mark {
            len: s.len,
            end_offset: s.end_offset,
            max_timestamp_ms: s.max_timestamp_ms,
            index_len: s.index.len(),
            last_indexed_pos: s.last_indexed_pos,
        }
    }

    fn restore(&self, s: &mut SegmentState) {
        s.len = self.len;
        s.end_offset = self.end_offset;
        s.max_timestamp_ms = self.max_timestamp_ms;
        s.index.truncate(self.index_len);
        s.last_indexed_pos = self.last_indexed_pos;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    #[test]
    fn log_names_sort_by_offset_and_parse_back() {
        let p = segment_path(Path::new("/d"), 42, LOG_SUFFIX);
        assert_eq!(p, Path::new("/d/00000000000000000042.log"));
        assert_eq!(parse_log_name("00000000000000000042.log"), Some(42));
        assert_eq!(parse_log_name("42.log"), None);
        assert_eq!(parse_log_name("00000000000000000042.index"), None);
    }

    #[test]
    fn index_file_round_trips_and_rejects_a_different_log_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = Arc::new(SegmentFile::open(dir.path(), 10, true).expect("create"));
        let mut state = SegmentState::empty(Arc::clone(&file));
        let mut buf = Vec::new();
        let mut frames = Vec::new();
        for i in 0..50u64 {
            let record = [Record::new(i as i64, &[7u8; 100])];
            frame::encode_batch(&mut buf, 10 + i, &record, 1 << 20, &mut frames);
        }
        frames.iter().for_each(|f| state.push_frame(f, 500));
        file.write_all_at(&buf, 0).expect("write");
        assert!(state.index.len() > 5);
        state.write_index(false).expect("write index");

        let loaded = SegmentState::load_index(Arc::clone(&file), state.len)
            .expect("read")
            .expect("valid");
        assert_eq!(loaded.index, state.index);
        assert_eq!(loaded.end_offset, 60);
        assert_eq!(loaded.max_timestamp_ms, 49);
        let stale = SegmentState::load_index(Arc::clone(&file), state.len + 1).expect("read");
        assert!(stale.is_none());

        let (scanned, torn) = scan(file, 500).expect("scan");
        assert_eq!(torn, None);
        assert_eq!(scanned.index, state.index);
        assert_eq!(scanned.len, state.len);
    }
}
