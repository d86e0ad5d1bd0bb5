//! The on-disk frame: one checksummed batch of records.
//!
//! One `append_batch` call becomes exactly one frame, so a batch is durable
//! as a whole or not at all: recovery never keeps half of a producer's batch.
//! One checksum per frame (rather than per record) keeps the CPU cost of
//! framing flat as batches grow; CRC-32C runs in hardware on x86-64 and ARMv8.
//! All integers are little-endian. See the crate docs for the layout table.

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
}

impl FrameMeta {
    /// The offset after the last record of this frame.
    pub fn end_offset(&self) -> u64 {
        self.base_offset + u64::from(self.count)
    }
}

/// Size the frame for `records` would take, so an oversized batch is refused
/// before any byte is copied.
pub(crate) fn encoded_len(records: &[Record<'_>]) -> u64 {
    records.iter().fold(HEADER_LEN as u64, |acc, r| {
        acc + (RECORD_HEADER_LEN + r.key.map_or(0, <[u8]>::len) + r.value.len()) as u64
    })
}

/// Appends one frame holding `records` to `buf`.
///
/// The caller has checked `encoded_len` against the frame limit (which is far
/// below `u32::MAX`) and that `records` is not empty, so the length casts
/// below cannot truncate.
pub(crate) fn encode(buf: &mut Vec<u8>, base_offset: u64, records: &[Record<'_>]) -> FrameMeta {
    let start = buf.len();
    let len = encoded_len(records);
    buf.reserve(len as usize);
    let max_ts = records
        .iter()
        .map(|r| r.timestamp_ms)
        .max()
        .unwrap_or(i64::MIN);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&0u32.to_le_bytes()); // checksum, patched below
    buf.extend_from_slice(&[VERSION, 0, 0, 0]);
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
        let meta = encode(&mut buf, 40, &recs);
        assert_eq!(meta.len, encoded_len(&recs));
        assert_eq!(meta.max_timestamp_ms, 9);
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
    fn any_flipped_bit_is_detected() {
        let mut buf = Vec::new();
        encode(&mut buf, 0, &[Record::new(1, b"payload").with_key(b"key")]);
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
