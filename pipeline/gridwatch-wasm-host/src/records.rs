//! Record batches in Fluvio's wire encoding, read and written in place.
//!
//! A SmartModule's input carries its records as the `fluvio-protocol`
//! encoding of `Vec<Record>` (a big-endian `u32` count, then each record
//! length-prefixed), and its output starts with the same encoding. The host
//! therefore never needs `Record` values between modules: it checks a guest's
//! output where it lies, copies it once, and hands the bytes to the next
//! module. That removes the per-record decode and re-encode (two allocations
//! per record and module) that `fluvio-smartengine` does.
//!
//! The byte-for-byte equality with `fluvio-smartengine` rests on one rule:
//! bytes are passed on unchanged only when decoding them with
//! `fluvio-protocol` and encoding them again would give the same bytes
//! ("canonical"). Anything else takes the slow path through the
//! `fluvio-protocol` types, so it ends up exactly as smartengine has it.

use std::io::Cursor;

use fluvio_smartmodule::Record;
use fluvio_smartmodule::dataplane::core::{Decoder, Encoder, EncoderVarInt};
use fluvio_smartmodule::dataplane::smartmodule::SmartModuleTransformRuntimeError;

use crate::abi::ABI_VERSION;
use crate::error::HostError;

/// Input records for a chain, already in the encoding the guests read.
///
/// Build it once and reuse it: [`Batch::clear`] keeps the buffer, so a
/// steady stream of batches allocates nothing on the host.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The `Vec<Record>` encoding: count, then the records.
    buf: Vec<u8>,
    count: u32,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// A batch whose buffer holds `bytes` bytes before it reallocates.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(4));
        buf.extend_from_slice(&0u32.to_be_bytes());
        Self { buf, count: 0 }
    }

    pub fn clear(&mut self) {
        self.buf.truncate(4);
        self.count = 0;
        self.write_count();
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a record with no key whose offset delta is its position in
    /// the batch, as a producer numbers the records of one batch.
    pub fn push(&mut self, value: &[u8]) {
        let offset_delta = i64::from(self.count);
        self.push_record(None, value, offset_delta, 0);
    }

    /// Appends a record with the given key and deltas (relative to the base
    /// offset and timestamp the batch is processed with).
    pub fn push_record(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        offset_delta: i64,
        timestamp_delta: i64,
    ) {
        // The same layout and varints `Record::encode` writes, without its
        // temporary buffer per record.
        let key_size = match key {
            Some(k) => 1 + data_size(k),
            None => 1,
        };
        let inner = 1
            + timestamp_delta.var_write_size()
            + offset_delta.var_write_size()
            + key_size
            + data_size(value)
            + 0i64.var_write_size();
        put_varint(&mut self.buf, inner as i64);
        self.buf.push(0); // attributes
        put_varint(&mut self.buf, timestamp_delta);
        put_varint(&mut self.buf, offset_delta);
        match key {
            Some(k) => {
                self.buf.push(1);
                put_data(&mut self.buf, k);
            }
            None => self.buf.push(0),
        }
        put_data(&mut self.buf, value);
        put_varint(&mut self.buf, 0); // headers
        self.count += 1;
        self.write_count();
    }

    /// Appends `fluvio-protocol` records as they are, attributes and headers
    /// included.
    pub fn extend_from_records(&mut self, records: &[Record]) -> Result<(), HostError> {
        for record in records {
            record
                .encode(&mut self.buf, ABI_VERSION)
                .map_err(|source| HostError::Codec {
                    what: "an input record",
                    source,
                })?;
            self.count += 1;
        }
        self.write_count();
        Ok(())
    }

    /// A batch of records of the `fluvio-protocol` type.
    pub fn from_records(records: &[Record]) -> Result<Self, HostError> {
        let mut batch = Self::new();
        batch.extend_from_records(records)?;
        Ok(batch)
    }

    /// The `Vec<Record>` encoding, as a SmartModule input carries it.
    pub fn encoded(&self) -> &[u8] {
        &self.buf
    }

    /// The records, borrowed.
    pub fn iter(&self) -> RecordIter<'_> {
        RecordIter::new(&self.buf, self.len())
    }

    fn write_count(&mut self) {
        if let Some(head) = self.buf.get_mut(..4) {
            head.copy_from_slice(&self.count.to_be_bytes());
        }
    }
}

/// What a chain produced for one batch: the last module's records, or, when
/// a module reported a record error, that module's records and its error (as
/// `fluvio-smartengine` returns them).
///
/// The records stay encoded; [`Output::iter`] borrows them and
/// [`Output::to_records`] decodes them.
#[derive(Debug, Clone)]
pub struct Output {
    pub(crate) buf: Vec<u8>,
    pub(crate) count: usize,
    pub(crate) base_offset: i64,
    pub(crate) base_timestamp: i64,
    pub(crate) error: Option<(String, SmartModuleTransformRuntimeError)>,
}

impl Default for Output {
    fn default() -> Self {
        Self {
            buf: 0u32.to_be_bytes().to_vec(),
            count: 0,
            base_offset: 0,
            base_timestamp: 0,
            error: None,
        }
    }
}

impl Output {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub fn base_timestamp(&self) -> i64 {
        self.base_timestamp
    }

    /// The record error a module reported, with the module's name. The chain
    /// stopped at that module, so the records are that module's output.
    pub fn error(&self) -> Option<(&str, &SmartModuleTransformRuntimeError)> {
        self.error.as_ref().map(|(m, e)| (m.as_str(), e))
    }

    /// The records, borrowed from the output buffer.
    pub fn iter(&self) -> RecordIter<'_> {
        RecordIter::new(&self.buf, self.count)
    }

    /// The `Vec<Record>` encoding of the records, ready for a Fluvio batch.
    pub fn encoded(&self) -> &[u8] {
        &self.buf
    }

    /// The records as `fluvio-protocol` values (allocates per record).
    pub fn to_records(&self) -> Result<Vec<Record>, HostError> {
        Vec::<Record>::decode_from(&mut Cursor::new(&self.buf), ABI_VERSION).map_err(|source| {
            HostError::Codec {
                what: "output records",
                source,
            }
        })
    }

    /// Empties the output (keeping its buffer), leaving a valid encoding of
    /// no records.
    pub(crate) fn reset(&mut self, base_offset: i64, base_timestamp: i64) {
        self.buf.clear();
        self.buf.extend_from_slice(&0u32.to_be_bytes());
        self.count = 0;
        self.base_offset = base_offset;
        self.base_timestamp = base_timestamp;
        self.error = None;
    }
}

/// One record, borrowed from an encoded batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub headers: i64,
}

/// Iterates the records of an encoded batch that the host has checked.
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    buf: &'a [u8],
    pos: usize,
    left: usize,
}

impl<'a> RecordIter<'a> {
    fn new(buf: &'a [u8], count: usize) -> Self {
        Self {
            buf,
            pos: 4,
            left: count,
        }
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = RecordRef<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Only buffers the host built or checked reach here, so a failure
        // cannot happen; ending the iteration is the safe answer if it did.
        match read_record(self.buf, &mut self.pos) {
            Ok((record, _)) => Some(record),
            Err(_) => {
                self.left = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

/// Why a guest's output could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    Truncated,
    VarintTooLong,
    BadBool(u8),
    BadLength(i64),
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated => write!(f, "the output ends in the middle of a record"),
            Self::VarintTooLong => write!(f, "a varint is longer than 10 bytes"),
            Self::BadBool(b) => write!(f, "{b} is not a valid option flag"),
            Self::BadLength(n) => write!(f, "a length of {n} does not fit the output"),
        }
    }
}

/// The result of checking a transform's output in guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scanned {
    /// Where the `Vec<Record>` encoding ends (the error option starts).
    pub end: usize,
    pub count: usize,
    /// Whether `fluvio-protocol` would re-encode the records to these bytes.
    pub canonical: bool,
    /// Whether a record error follows the records.
    pub has_error: bool,
}

/// Checks a `SmartModuleOutput` encoding without decoding it into values.
pub(crate) fn scan_output(buf: &[u8]) -> Result<Scanned, Malformed> {
    let head: [u8; 4] = buf
        .get(..4)
        .and_then(|h| h.try_into().ok())
        .ok_or(Malformed::Truncated)?;
    let declared = i32::from_be_bytes(head);
    // fluvio reads a negative count as an empty vector and writes 0 back.
    let mut canonical = declared >= 0;
    let count = usize::try_from(declared).unwrap_or(0);
    let mut pos = 4;
    for _ in 0..count {
        let (_, ok) = read_record(buf, &mut pos)?;
        canonical &= ok;
    }
    let has_error = match buf.get(pos) {
        Some(0) => false,
        Some(1) => true,
        Some(b) => return Err(Malformed::BadBool(*b)),
        None => return Err(Malformed::Truncated),
    };
    Ok(Scanned {
        end: pos,
        count,
        canonical,
        has_error,
    })
}

/// Reads one record the way `Record::decode` does. The flag says whether
/// `Record::encode` would write the same bytes back.
pub(crate) fn read_record<'a>(
    buf: &'a [u8],
    pos: &mut usize,
) -> Result<(RecordRef<'a>, bool), Malformed> {
    let (len, mut canonical) = read_varint(buf, pos)?;
    let start = *pos;
    let remaining = buf.len().saturating_sub(start);
    if len > remaining as i64 {
        return Err(Malformed::BadLength(len));
    }
    let attributes = read_u8(buf, pos)? as i8;
    let (timestamp_delta, ok_ts) = read_varint(buf, pos)?;
    let (offset_delta, ok_off) = read_varint(buf, pos)?;
    let key = match read_u8(buf, pos)? {
        0 => None,
        1 => {
            let (k, ok) = read_data(buf, pos)?;
            canonical &= ok;
            Some(k)
        }
        b => return Err(Malformed::BadBool(b)),
    };
    let (value, ok_value) = read_data(buf, pos)?;
    let (headers, ok_headers) = read_varint(buf, pos)?;
    // `Record::decode` does not skip to the declared end, so a length that
    // disagrees with the fields is only a canonical-form question.
    canonical &= ok_ts && ok_off && ok_value && ok_headers && (*pos - start) as i64 == len;
    Ok((
        RecordRef {
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            value,
            headers,
        },
        canonical,
    ))
}

fn read_u8(buf: &[u8], pos: &mut usize) -> Result<u8, Malformed> {
    let b = *buf.get(*pos).ok_or(Malformed::Truncated)?;
    *pos += 1;
    Ok(b)
}

/// A `RecordData`: varint length, then the bytes.
fn read_data<'a>(buf: &'a [u8], pos: &mut usize) -> Result<(&'a [u8], bool), Malformed> {
    let (len, canonical) = read_varint(buf, pos)?;
    let n = usize::try_from(len).map_err(|_| Malformed::BadLength(len))?;
    let end = pos
        .checked_add(n)
        .filter(|end| *end <= buf.len())
        .ok_or(Malformed::BadLength(len))?;
    let data = &buf[*pos..end];
    *pos = end;
    Ok((data, canonical))
}

/// Reads a zigzag varint with `fluvio-protocol`'s arithmetic. The flag is
/// set when the bytes are the minimal encoding of a value whose zigzag form
/// fits 32 bits: the range where fluvio's encoder (which mixes 32- and
/// 64-bit shifts) writes standard varints, so re-encoding is the identity.
fn read_varint(buf: &[u8], pos: &mut usize) -> Result<(i64, bool), Malformed> {
    let start = *pos;
    let mut raw: u64 = 0;
    let mut shift = 0u32;
    loop {
        let b = read_u8(buf, pos)?;
        if shift < 64 {
            raw |= u64::from(b & 0x7f) << shift;
        }
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
        if shift >= 70 {
            return Err(Malformed::VarintTooLong);
        }
    }
    let num = raw as i64;
    let value = (num >> 1) ^ -(num & 1);
    let used = *pos - start;
    let canonical = raw < (1 << 32) && used == leb128_len(raw);
    Ok((value, canonical))
}

fn leb128_len(mut raw: u64) -> usize {
    let mut n = 1;
    while raw >= 0x80 {
        raw >>= 7;
        n += 1;
    }
    n
}

fn data_size(bytes: &[u8]) -> usize {
    (bytes.len() as i64).var_write_size() + bytes.len()
}

fn put_varint(buf: &mut Vec<u8>, value: i64) {
    // Writing to a Vec cannot run out of room, the only error fluvio reports.
    let _ = value.encode_varint(buf);
}

fn put_data(buf: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(buf, bytes.len() as i64);
    buf.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use fluvio_smartmodule::dataplane::smartmodule::SmartModuleOutput;

    use super::*;

    fn sample_records() -> Vec<Record> {
        let mut records = Vec::new();
        for i in 0..300i64 {
            let value = vec![b'x'; (i as usize * 7) % 300];
            let mut r = if i % 3 == 0 {
                Record::new_key_value(format!("key-{i}"), value)
            } else {
                Record::new(value)
            };
            r.preamble.set_offset_delta(i * 20_000_003 % 5_000_000_000);
            r.preamble.set_timestamp_delta(-i * 977);
            records.push(r);
        }
        records
    }

    fn fluvio_encoding(records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        records
            .to_vec()
            .encode(&mut out, ABI_VERSION)
            .expect("encode");
        out
    }

    #[test]
    fn push_record_writes_what_fluvio_writes() {
        let records = sample_records();
        let mut batch = Batch::new();
        for r in &records {
            batch.push_record(
                r.key().map(|k| k.as_ref()),
                r.value().as_ref(),
                r.offset_delta(),
                r.timestamp_delta(),
            );
        }
        assert_eq!(batch.encoded(), fluvio_encoding(&records));
        assert_eq!(
            Batch::from_records(&records).expect("batch").encoded(),
            fluvio_encoding(&records)
        );
        let mut numbered = Batch::new();
        numbered.push(b"a");
        numbered.push(b"b");
        let offsets: Vec<i64> = numbered.iter().map(|r| r.offset_delta).collect();
        assert_eq!(offsets, [0, 1]);
        numbered.clear();
        assert_eq!(numbered.encoded(), fluvio_encoding(&[]));
    }

    #[test]
    fn scanning_reads_fluvio_output_and_knows_when_it_is_canonical() {
        // Small deltas: canonical, and the records read back as encoded.
        let small: Vec<Record> = sample_records()
            .into_iter()
            .map(|mut r| {
                r.preamble.set_offset_delta(r.offset_delta() % 100_000);
                r
            })
            .collect();
        let mut out = Vec::new();
        SmartModuleOutput::new(small.clone())
            .encode(&mut out, ABI_VERSION)
            .expect("encode");
        let scanned = scan_output(&out).expect("scan");
        assert_eq!(scanned.count, small.len());
        assert!(scanned.canonical);
        assert!(!scanned.has_error);
        assert_eq!(&out[..scanned.end], fluvio_encoding(&small).as_slice());
        let batch = Batch::from_records(&small).expect("batch");
        for (r, v) in batch.iter().zip(&small) {
            assert_eq!(r.value, v.value().as_ref());
            assert_eq!(r.key, v.key().map(|k| k.as_ref()));
            assert_eq!(r.offset_delta, v.offset_delta());
            assert_eq!(r.timestamp_delta, v.timestamp_delta());
        }

        // Whatever fluvio wrote (deltas past 2^31 included, where its varints
        // are lossy), "canonical" must mean decode + encode is the identity.
        let reencoded = |bytes: &[u8]| {
            let output = SmartModuleOutput::decode_from(&mut Cursor::new(bytes), ABI_VERSION)
                .expect("decode");
            fluvio_encoding(&output.successes)
        };
        let mut out = Vec::new();
        SmartModuleOutput::new(sample_records())
            .encode(&mut out, ABI_VERSION)
            .expect("encode");
        let scanned = scan_output(&out).expect("scan");
        if scanned.canonical {
            assert_eq!(&out[..scanned.end], reencoded(&out).as_slice());
        }

        // A padded varint decodes the same but is not what fluvio writes.
        let mut padded = fluvio_encoding(&[Record::new("v")]);
        padded[4] |= 0x80;
        padded.insert(5, 0);
        padded.push(0);
        let scanned = scan_output(&padded).expect("scan");
        assert!(!scanned.canonical);
        assert_ne!(&padded[..scanned.end], reencoded(&padded).as_slice());
    }

    #[test]
    fn scanning_rejects_what_fluvio_cannot_decode() {
        let good = fluvio_encoding(&[Record::new("value")]);
        for cut in 0..good.len() {
            assert!(scan_output(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_flag = good.clone();
        bad_flag.push(7);
        assert_eq!(scan_output(&bad_flag), Err(Malformed::BadBool(7)));
        let mut huge = good.clone();
        huge[9] = 0x7e; // the value's length
        huge.push(0);
        assert!(scan_output(&huge).is_err());
        let endless = [
            0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        assert_eq!(scan_output(&endless), Err(Malformed::VarintTooLong));
    }
}
