//! The on-disk frame: a checksummed run of records.
//!
//! One `append_batch` call becomes one or more frames of about `frame_bytes`
//! each. All but the last carry the "continues" flag, and recovery keeps or
//! drops the frames of one batch together, so a batch is durable as a whole
//! or not at all. Splitting keeps what a reader must load and checksum to get
//! at one record small, however large the producer's batches are. One
//! checksum per frame (rather than per record) keeps the CPU cost of framing
//! flat; CRC-32C runs in hardware on x86-64 and ARMv8. All integers are
//! little-endian. See the crate docs for the layout table.

use crate::record::{Record, RecordView};
use bytes::Bytes;

/// Bytes in the fixed frame header.
pub(crate) const HEADER_LEN: usize = 32;
/// Bytes in the fixed part of each record inside a frame.
pub(crate) const RECORD_HEADER_LEN: usize = 16;
/// Format version written in byte 8 of every frame.
pub(crate) const VERSION: u8 = 1;
/// Key length that encodes "no key".
const NO_KEY: i32 = -1;
/// Flag bit: the next frame belongs to the same batch.
const FLAG_CONTINUES: u8 = 1;

/// What the writer and the index need to know about a frame without
/// decoding it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameMeta {
    /// Total bytes of the frame, header included.
    pub len: u64,
    /// Offset of the first record.
    pub base_offset: u64,
    /// Number of records.
    pub count: u32,
    /// Largest record timestamp in the frame.
    pub max_timestamp_ms: i64,
    /// The next frame belongs to the same batch.
    pub continues: bool,
}

impl FrameMeta {
    /// The offset after the last record of this frame.
    pub fn end_offset(&self) -> u64 {
        self.base_offset + u64::from(self.count)
    }
}

/// Bytes one record takes inside a frame.
fn record_len(r: &Record<'_>) -> u64 {
    (RECORD_HEADER_LEN + r.key.map_or(0, <[u8]>::len) + r.value.len()) as u64
}

/// Size of `records` as a single frame: a lower bound of their encoded size,
/// so an oversized batch is refused before any byte is copied.
pub(crate) fn batch_len(records: &[Record<'_>]) -> u64 {
    records
        .iter()
        .fold(HEADER_LEN as u64, |acc, r| acc + record_len(r))
}

/// Appends `records` to `buf` as one batch of frames of about `frame_bytes`
/// each (a record larger than that gets a frame of its own), pushes each
/// frame's metadata to `frames`, and returns the bytes added.
///
/// The caller has checked `batch_len` against a limit below `u32::MAX`, so no
/// length cast below can truncate.
pub(crate) fn encode_batch(
    buf: &mut Vec<u8>,
    base_offset: u64,
    records: &[Record<'_>],
    frame_bytes: u64,
    frames: &mut Vec<FrameMeta>,
) -> u64 {
    let before = buf.len();
    let mut start = 0;
    while start < records.len() {
        let mut len = HEADER_LEN as u64;
        let mut end = start;
        while let Some(r) = records.get(end) {
            let add = record_len(r);
            if end > start && len + add > frame_bytes {
                break;
            }
            len += add;
            end += 1;
        }
        let continues = end < records.len();
        let base = base_offset + start as u64;
        frames.push(encode(buf, base, &records[start..end], len, continues));
        start = end;
    }
    (buf.len() - before) as u64
}

/// Appends one frame of `len` bytes holding `records` (not empty) to `buf`.
fn encode(
    buf: &mut Vec<u8>,
    base_offset: u64,
    records: &[Record<'_>],
    len: u64,
    continues: bool,
) -> FrameMeta {
    let start = buf.len();
    buf.reserve(len as usize);
    let max_ts = records
        .iter()
        .map(|r| r.timestamp_ms)
        .max()
        .unwrap_or(i64::MIN);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&0u32.to_le_bytes()); // checksum, patched below
    let flags = if continues { FLAG_CONTINUES } else { 0 };
    buf.extend_from_slice(&[VERSION, flags, 0, 0]);
    buf.extend_from_slice(&(records.len() as u32).to_le_bytes());
    buf.extend_from_slice(&base_offset.to_le_bytes());
    buf.extend_from_slice(&max_ts.to_le_bytes());
    for r in records {
        buf.extend_from_slice(&r.timestamp_ms.to_le_bytes());
        let key_len = r.key.map_or(NO_KEY, |k| k.len() as i32);
        buf.extend_from_slice(&key_len.to_le_bytes());
        buf.extend_from_slice(&(r.value.len() as u32).to_le_bytes());
        if let Some(k) = r.key {
            buf.extend_from_slice(k);
        }
        buf.extend_from_slice(r.value);
    }
    let crc = crc32c::crc32c(&buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    FrameMeta {
        len,
        base_offset,
        count: records.len() as u32,
        max_timestamp_ms: max_ts,
        continues,
    }
}

/// The fixed header of a frame, parsed but not yet checksummed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub meta: FrameMeta,
    crc: u32,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl Header {
    /// Parses and sanity-checks the header at the start of `b`.
    ///
    /// The frame length is deliberately not checked against the configured
    /// batch limit: a limit lowered between runs must not turn valid frames
    /// into "torn" ones that recovery would cut. Callers bound the length by
    /// the bytes actually present before reading the frame.
    pub fn parse(b: &[u8]) -> Result<Header, &'static str> {
        if b.len() < HEADER_LEN {
            return Err("truncated frame header");
        }
        let len = u64::from(u32_at(b, 0));
        let crc = u32_at(b, 4);
        if b[8] != VERSION {
            return Err("unknown frame version");
        }
        if b[9] & !FLAG_CONTINUES != 0 || b[10] != 0 || b[11] != 0 {
            return Err("unknown frame flags");
        }
        let count = u32_at(b, 12);
        if count == 0 {
            return Err("frame holds no records");
        }
        let min_len = HEADER_LEN as u64 + u64::from(count) * RECORD_HEADER_LEN as u64;
        if len < min_len {
            return Err("frame length too small for its record count");
        }
        Ok(Header {
            meta: FrameMeta {
                len,
                base_offset: u64_at(b, 16),
                count,
                max_timestamp_ms: u64_at(b, 24) as i64,
                continues: b[9] & FLAG_CONTINUES != 0,
            },
            crc,
        })
    }

    /// Checks the checksum of the whole frame `frame` (header included).
    pub fn verify(&self, frame: &[u8]) -> Result<(), &'static str> {
        if frame.len() as u64 != self.meta.len {
            return Err("truncated frame");
        }
        if crc32c::crc32c(&frame[8..]) != self.crc {
            return Err("checksum mismatch");
        }
        Ok(())
    }
}

/// Decodes the records of a verified frame, keeping those with offset at
/// least `from`, and stops once `want` returns false.
///
/// `want` sees each record's key+value size before it is pushed, which is how
/// the reader enforces its byte and record limits without a second pass.
pub(crate) fn decode_records(
    frame: &Bytes,
    header: &Header,
    from: u64,
    out: &mut Vec<RecordView>,
    want: &mut dyn FnMut(usize) -> bool,
) -> Result<(), &'static str> {
    let b = &frame[..];
    let mut pos = HEADER_LEN;
    for i in 0..header.meta.count {
        if b.len() < pos + RECORD_HEADER_LEN {
            return Err("record header past end of frame");
        }
        let timestamp_ms = u64_at(b, pos) as i64;
        let key_len = u32_at(b, pos + 8) as i32;
        let value_len = u32_at(b, pos + 12) as usize;
        pos += RECORD_HEADER_LEN;
        let key_bytes = if key_len == NO_KEY {
            0
        } else if key_len < 0 {
            return Err("negative key length");
        } else {
            key_len as usize
        };
        let end = pos + key_bytes + value_len;
        if end > b.len() {
            return Err("record body past end of frame");
        }
        let offset = header.meta.base_offset + u64::from(i);
        if offset >= from {
            if !want(key_bytes + value_len) {
                return Ok(());
            }
            let key = (key_len != NO_KEY).then(|| frame.slice(pos..pos + key_bytes));
            out.push(RecordView {
                offset,
                timestamp_ms,
                key,
                value: frame.slice(pos + key_bytes..end),
            });
        }
        pos = end;
    }
    if pos != b.len() {
        return Err("trailing bytes after the last record");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_round_trips_keys_values_and_timestamps() {
        let recs = [
            Record::new(5, b"alpha").with_key(b"k1"),
            Record::new(9, b""),
            Record::new(-3, b"gamma").with_key(b""),
        ];
        let mut buf = vec![0xAA; 3]; // frames are appended after existing bytes
        let mut frames = Vec::new();
        let len = encode_batch(&mut buf, 40, &recs, 1 << 20, &mut frames);
        assert_eq!(frames.len(), 1);
        let meta = frames[0];
        assert_eq!((meta.len, len), (batch_len(&recs), batch_len(&recs)));
        assert_eq!((meta.max_timestamp_ms, meta.continues), (9, false));
        let frame = Bytes::copy_from_slice(&buf[3..]);
        let h = Header::parse(&frame).expect("header");
        assert_eq!(h.meta, meta);
        h.verify(&frame).expect("checksum");
        let mut out = Vec::new();
        decode_records(&frame, &h, 41, &mut out, &mut |_| true).expect("decode");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].offset, 41);
        assert_eq!(out[0].key, None);
        assert_eq!(out[1].key.as_deref(), Some(&b""[..]));
        assert_eq!(&out[1].value[..], b"gamma");
        assert_eq!(out[1].timestamp_ms, -3);
    }

    #[test]
    fn a_large_batch_is_split_into_continuing_frames_with_consecutive_offsets() {
        let value = [1u8; 30];
        let recs: Vec<Record<'_>> = (0..10).map(|i| Record::new(i, &value)).collect();
        let mut buf = Vec::new();
        let mut frames = Vec::new();
        // Room for two 46-byte records after the 32-byte header.
        let len = encode_batch(&mut buf, 100, &recs, 32 + 2 * 46, &mut frames);
        assert_eq!(len, buf.len() as u64);
        let shape: Vec<_> = frames
            .iter()
            .map(|f| (f.base_offset, f.count, f.continues))
            .collect();
        assert_eq!(
            shape,
            [
                (100, 2, true),
                (102, 2, true),
                (104, 2, true),
                (106, 2, true),
                (108, 2, false)
            ]
        );
        // A record larger than the target still gets a frame.
        frames.clear();
        encode_batch(&mut buf, 0, &recs[..1], 10, &mut frames);
        assert_eq!((frames[0].count, frames[0].continues), (1, false));
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let mut buf = Vec::new();
        let recs = [Record::new(1, b"payload").with_key(b"key")];
        encode_batch(&mut buf, 0, &recs, 1 << 20, &mut Vec::new());
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[i] ^= 1 << bit;
                let ok = Header::parse(&bad).and_then(|h| h.verify(&bad));
                assert!(ok.is_err(), "flip of bit {bit} in byte {i} went unnoticed");
            }
        }
    }
}
