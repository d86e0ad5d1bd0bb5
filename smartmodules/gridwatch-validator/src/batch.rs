//! A SmartModule `map` export that works on the batch in place.
//!
//! `#[smartmodule(map)]` decodes every input record into a `Record` (a copy
//! of its key and value each), calls the function, and encodes a fresh
//! `Record` per output: several allocations per record and module, most of
//! the chain's cost once the rule itself is cheap. [`run_map`] speaks the
//! same ABI (`SmartModuleInput` in, `SmartModuleOutput` out, at the version
//! the host asks for) but reads the records where they lie and writes the
//! output records straight into the output buffer, with one scratch buffer
//! for the values. The output is byte for byte what the macro's code
//! writes: each input record keeps its attributes, deltas and headers and
//! gets the new key and value. Input whose records are not in the canonical
//! form (what `fluvio-protocol` would re-encode them to) takes the macro's
//! own path through `Record` values, so nothing depends on the difference.
//!
//! Native builds use it too (tests, benches), so the modules' batch path is
//! checked without WASM.

use std::borrow::Cow;
use std::io::Cursor;

use fluvio_smartmodule::dataplane::core::{Decoder, Encoder, EncoderVarInt, Version};
use fluvio_smartmodule::dataplane::record::{Record, RecordData};
use fluvio_smartmodule::dataplane::smartmodule::{
    SmartModuleInput, SmartModuleKind, SmartModuleOutput, SmartModuleTransformErrorStatus,
    SmartModuleTransformRuntimeError,
};
use fluvio_smartmodule::{SMARTMODULE_TIMESTAMPS_VERSION, SmartModuleRecord};

/// One input record, borrowed from the batch.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub headers: i64,
}

/// What the batch as a whole carries.
#[derive(Debug, Clone, Copy)]
pub struct BatchInfo {
    pub base_offset: i64,
    pub base_timestamp: i64,
}

impl BatchInfo {
    /// `SmartModuleRecord::offset` of a record.
    pub fn offset(&self, r: &RecordView<'_>) -> i64 {
        self.base_offset.wrapping_add(r.offset_delta)
    }

    /// `SmartModuleRecord::timestamp` of a record.
    pub fn timestamp(&self, r: &RecordView<'_>) -> i64 {
        self.base_timestamp.wrapping_add(r.timestamp_delta)
    }
}

/// The output record's key: the input's, or a new one.
#[derive(Debug)]
pub enum OutKey<'a> {
    Keep,
    Set(Cow<'a, [u8]>),
}

/// What the macro's `map` function returns for a record.
pub type MapResult = fluvio_smartmodule::Result<(Option<RecordData>, RecordData)>;

/// Runs a map over an encoded `SmartModuleInput` and returns the encoded
/// `SmartModuleOutput` and its record count, or the (negative) status the
/// macro's code would return.
///
/// `start` is called once per batch before any record (the clock, a lock);
/// `fast` writes a record's value onto the buffer and says what its key is.
/// `slow` is the module's per-record map function (what
/// `#[smartmodule(map)]` would wrap), used for input not in canonical form.
pub fn run_map<S>(
    input: &[u8],
    version: Version,
    state: &mut S,
    mut fast: impl for<'a> FnMut(
        &mut S,
        &BatchInfo,
        &RecordView<'a>,
        &mut Vec<u8>,
    ) -> fluvio_smartmodule::Result<OutKey<'a>>,
    slow: impl FnMut(&mut S, &SmartModuleRecord) -> MapResult,
) -> Result<(Vec<u8>, i32), i32> {
    let Some((info, raw)) = split_input(input, version).filter(|(_, raw)| canonical(raw)) else {
        let mut smartmodule_input = SmartModuleInput::default();
        if Decoder::decode(&mut smartmodule_input, &mut Cursor::new(input), version).is_err() {
            return Err(SmartModuleTransformErrorStatus::DecodingBaseInput as i32);
        }
        return run_slow(smartmodule_input, version, state, slow);
    };
    let count = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
    // detect's scored readings are about 3x its input: room for that up
    // front saves the copies of growing a megabyte-sized buffer twice.
    let mut out = Vec::with_capacity(raw.len() * 4 + 16);
    out.extend_from_slice(&0u32.to_be_bytes());
    let mut value = Vec::with_capacity(256);
    let mut pos = 4;
    let mut written = 0u32;
    let mut error = None;
    for _ in 0..count {
        let Some(record) = read_record(raw, &mut pos) else {
            // `canonical` read every record already.
            return Err(SmartModuleTransformErrorStatus::DecodingBaseInput as i32);
        };
        value.clear();
        match fast(state, &info, &record, &mut value) {
            Ok(key) => {
                let key: Option<&[u8]> = match &key {
                    OutKey::Keep => record.key,
                    OutKey::Set(k) => Some(k.as_ref()),
                };
                put_record(&mut out, &record, key, &value);
                written += 1;
            }
            Err(err) => {
                error = Some(runtime_error(&record, info.base_offset, err));
                break;
            }
        }
    }
    out[..4].copy_from_slice(&written.to_be_bytes());
    let encoded = match &error {
        None => {
            out.push(0);
            Ok(())
        }
        Some(e) => {
            out.push(1);
            e.encode(&mut out, version)
        }
    };
    if encoded.is_err() {
        return Err(SmartModuleTransformErrorStatus::EncodingOutput as i32);
    }
    Ok((out, written as i32))
}

/// Where the records lie in an encoded `SmartModuleInput`, without copying
/// them: `fluvio-protocol` decodes the records' `Vec<u8>` a byte at a time,
/// which was the largest single cost in the modules. The fields around the
/// records (base offset, the deprecated params, base timestamp) are decoded
/// by `fluvio-protocol` from a copy with the records left out.
fn split_input(input: &[u8], version: Version) -> Option<(BatchInfo, &[u8])> {
    if version != SMARTMODULE_TIMESTAMPS_VERSION {
        return None;
    }
    let head = input.get(..RAW_AT)?;
    let len = i32::from_be_bytes(input.get(RAW_AT..RAW_AT + 4)?.try_into().ok()?);
    let end = (RAW_AT + 4).checked_add(usize::try_from(len).ok()?)?;
    let raw = input.get(RAW_AT + 4..end)?;
    let tail = &input[end..];
    let mut frame = Vec::with_capacity(head.len() + 4 + tail.len());
    frame.extend_from_slice(head);
    frame.extend_from_slice(&0i32.to_be_bytes());
    frame.extend_from_slice(tail);
    let mut decoded = SmartModuleInput::default();
    let mut cursor = Cursor::new(frame.as_slice());
    Decoder::decode(&mut decoded, &mut cursor, version).ok()?;
    // Something after the input is not what the host sends: leave it.
    (cursor.position() as usize == frame.len()).then_some(())?;
    let info = BatchInfo {
        base_offset: decoded.base_offset(),
        base_timestamp: decoded.base_timestamp(),
    };
    Some((info, raw))
}

/// The records' `Vec<u8>` follows the `i64` base offset.
const RAW_AT: usize = 8;

/// What the macro's generated code does, for input the fast path leaves.
fn run_slow<S>(
    input: SmartModuleInput,
    version: Version,
    state: &mut S,
    mut map: impl FnMut(&mut S, &SmartModuleRecord) -> MapResult,
) -> Result<(Vec<u8>, i32), i32> {
    let base_offset = input.base_offset();
    let Ok(records) = input.try_into_smartmodule_records(version) else {
        return Err(SmartModuleTransformErrorStatus::DecodingBaseInput as i32);
    };
    let mut output = SmartModuleOutput {
        successes: Vec::with_capacity(records.len()),
        error: None,
    };
    for mut record in records {
        match map(state, &record) {
            Ok((key, value)) => {
                record.key = key;
                record.value = value;
                output.successes.push(record.into());
            }
            Err(err) => {
                output.error = Some(SmartModuleTransformRuntimeError::new(
                    &record.into(),
                    base_offset,
                    SmartModuleKind::Map,
                    err,
                ));
                break;
            }
        }
    }
    let mut out = Vec::new();
    if Encoder::encode(&output, &mut out, version).is_err() {
        return Err(SmartModuleTransformErrorStatus::EncodingOutput as i32);
    }
    Ok((out, output.successes.len() as i32))
}

/// The macro's error for a record, from the record as it came in.
fn runtime_error(
    r: &RecordView<'_>,
    base_offset: i64,
    err: fluvio_smartmodule::Error,
) -> SmartModuleTransformRuntimeError {
    let mut record = Record::new(RecordData::from(r.value.to_vec()));
    record.key = r.key.map(|k| RecordData::from(k.to_vec()));
    record.preamble.set_offset_delta(r.offset_delta);
    record.preamble.set_timestamp_delta(r.timestamp_delta);
    SmartModuleTransformRuntimeError::new(&record, base_offset, SmartModuleKind::Map, err)
}

/// Appends a record in `Record::encode`'s layout.
fn put_record(out: &mut Vec<u8>, r: &RecordView<'_>, key: Option<&[u8]>, value: &[u8]) {
    let key_size = key.map_or(1, |k| 1 + data_size(k));
    let inner = 1
        + r.timestamp_delta.var_write_size()
        + r.offset_delta.var_write_size()
        + key_size
        + data_size(value)
        + r.headers.var_write_size();
    put_varint(out, inner as i64);
    out.push(r.attributes as u8);
    put_varint(out, r.timestamp_delta);
    put_varint(out, r.offset_delta);
    match key {
        Some(k) => {
            out.push(1);
            put_data(out, k);
        }
        None => out.push(0),
    }
    put_data(out, value);
    put_varint(out, r.headers);
}

#[inline(always)]
fn data_size(bytes: &[u8]) -> usize {
    var_size(bytes.len() as i64) + bytes.len()
}

/// `var_write_size`, computed directly where `fluvio-protocol` writes
/// standard varints (zigzag value under 2³²).
#[inline(always)]
fn var_size(v: i64) -> usize {
    let z = zigzag(v);
    if z >= 1 << 32 {
        return v.var_write_size();
    }
    let bits = 64 - (z | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[inline(always)]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// `encode_varint`, written directly in the same range as [`var_size`].
#[inline(always)]
fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = zigzag(v);
    if z >= 1 << 32 {
        // Writing to a Vec cannot fail.
        let _ = v.encode_varint(out);
        return;
    }
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[inline(always)]
fn put_data(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as i64);
    gridwatch_contracts::fast::put_bytes(out, bytes);
}

/// Whether `raw` is a `Vec<Record>` encoding that `fluvio-protocol` would
/// decode and re-encode to the same bytes, with nothing after it.
fn canonical(raw: &[u8]) -> bool {
    let Some(head) = raw.get(..4) else {
        return false;
    };
    let declared = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let Ok(count) = usize::try_from(declared) else {
        return false;
    };
    let mut pos = 4;
    for _ in 0..count {
        if read_record(raw, &mut pos).is_none() {
            return false;
        }
    }
    pos == raw.len()
}

/// Reads one record, `None` unless it is in canonical form.
fn read_record<'a>(buf: &'a [u8], pos: &mut usize) -> Option<RecordView<'a>> {
    let len = read_varint(buf, pos)?;
    let start = *pos;
    let attributes = *buf.get(*pos)? as i8;
    *pos += 1;
    let timestamp_delta = read_varint(buf, pos)?;
    let offset_delta = read_varint(buf, pos)?;
    let key = match *buf.get(*pos)? {
        0 => {
            *pos += 1;
            None
        }
        1 => {
            *pos += 1;
            Some(read_data(buf, pos)?)
        }
        _ => return None,
    };
    let value = read_data(buf, pos)?;
    let headers = read_varint(buf, pos)?;
    ((*pos - start) as i64 == len).then_some(RecordView {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
    })
}

#[inline(always)]
fn read_data<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = usize::try_from(read_varint(buf, pos)?).ok()?;
    let end = pos.checked_add(len)?;
    let data = buf.get(*pos..end)?;
    *pos = end;
    Some(data)
}

/// A zigzag varint in its minimal form whose zigzag value fits 32 bits:
/// the range where `fluvio-protocol`'s encoder writes standard varints.
#[inline(always)]
fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut raw: u64 = 0;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        raw |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            // A final zero byte after others is padding: not minimal.
            if b == 0 && shift > 0 {
                return None;
            }
            break;
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
    if raw >= 1 << 32 {
        return None;
    }
    let num = raw as i64;
    Some((num >> 1) ^ -(num & 1))
}

#[cfg(test)]
mod tests {
    use fluvio_smartmodule::eyre;

    use super::*;

    fn sample(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| {
                let value = vec![b'v'; (i * 37) % 300];
                let mut r = if i % 3 == 0 {
                    Record::new_key_value(format!("key-{i}"), value)
                } else {
                    Record::new(value)
                };
                r.preamble.set_offset_delta(i as i64 * 7);
                r.preamble.set_timestamp_delta(-(i as i64) * 977);
                r
            })
            .collect()
    }

    fn input(records: Vec<Record>) -> Vec<u8> {
        let mut input = SmartModuleInput::try_from_records(records, SMARTMODULE_TIMESTAMPS_VERSION)
            .expect("input");
        input.set_base_offset(1_000);
        input.set_base_timestamp(1_767_225_600_000);
        let mut bytes = Vec::new();
        input
            .encode(&mut bytes, SMARTMODULE_TIMESTAMPS_VERSION)
            .expect("encode");
        bytes
    }

    /// The same logic in the macro's per-record shape and the batch shape.
    fn slow(_: &mut (), record: &SmartModuleRecord) -> MapResult {
        if record.value().len() == 296 {
            return Err(eyre!("record at {} refused", record.offset()));
        }
        let value = format!("{}@{}", record.value().len(), record.timestamp());
        let key = (record.offset() % 2 == 0).then(|| RecordData::from(value.clone().into_bytes()));
        Ok((
            key.or_else(|| record.key().cloned()),
            RecordData::from(value.into_bytes()),
        ))
    }

    fn fast<'a>(
        _: &mut (),
        info: &BatchInfo,
        r: &RecordView<'a>,
        out: &mut Vec<u8>,
    ) -> fluvio_smartmodule::Result<OutKey<'a>> {
        if r.value.len() == 296 {
            return Err(eyre!("record at {} refused", info.offset(r)));
        }
        out.extend_from_slice(format!("{}@{}", r.value.len(), info.timestamp(r)).as_bytes());
        Ok(if info.offset(r) % 2 == 0 {
            OutKey::Set(Cow::Owned(out.clone()))
        } else {
            OutKey::Keep
        })
    }

    #[test]
    fn the_batch_path_writes_what_the_macro_path_writes() {
        for n in [0, 1, 7, 300] {
            let bytes = input(sample(n));
            let version = SMARTMODULE_TIMESTAMPS_VERSION;
            let ours = run_map(&bytes, version, &mut (), fast, slow).expect("fast");
            let mut decoded = SmartModuleInput::default();
            decoded
                .decode(&mut Cursor::new(&bytes), version)
                .expect("decode");
            let theirs = run_slow(decoded, version, &mut (), slow).expect("slow");
            assert_eq!(ours.1, theirs.1, "{n} records");
            // The error's hint may carry a backtrace (RUST_BACKTRACE in
            // tests), which differs between the two paths; the rest may not.
            let decode = |bytes: &[u8]| {
                let mut out = SmartModuleOutput::default();
                out.decode(&mut Cursor::new(bytes), version)
                    .expect("decode");
                let error = out.error.take().map(|mut e| {
                    e.hint = e.hint.lines().next().unwrap_or_default().to_string();
                    e
                });
                let mut successes = Vec::new();
                out.successes
                    .encode(&mut successes, version)
                    .expect("encode");
                (successes, error)
            };
            assert_eq!(decode(&ours.0), decode(&theirs.0), "{n} records");
            if n < 300 {
                assert_eq!(ours.0, theirs.0, "{n} records, byte for byte");
            }
        }
    }

    #[test]
    fn varints_are_written_as_fluvio_writes_them() {
        let mut values = vec![0i64, 1, -1, 63, 64, -64, -65, i64::MAX, i64::MIN];
        for shift in 0..63 {
            let v = 1i64 << shift;
            values.extend([v, v - 1, v + 1, -v, -v - 1, -v + 1]);
        }
        for v in values {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            put_varint(&mut ours, v);
            v.encode_varint(&mut theirs).expect("encode");
            assert_eq!(ours, theirs, "{v}");
            assert_eq!(var_size(v), v.var_write_size(), "{v}");
        }
    }

    #[test]
    fn non_canonical_input_takes_the_macro_path() {
        // A record whose length varint is padded.
        let mut raw = Vec::new();
        vec![Record::new("abc")]
            .encode(&mut raw, SMARTMODULE_TIMESTAMPS_VERSION)
            .expect("encode");
        raw[4] |= 0x80;
        raw.insert(5, 0);
        assert!(!canonical(&raw));
        let mut bytes = Vec::new();
        SmartModuleInput::new(raw, 5, 1)
            .encode(&mut bytes, SMARTMODULE_TIMESTAMPS_VERSION)
            .expect("encode");
        let (out, n) = run_map(&bytes, SMARTMODULE_TIMESTAMPS_VERSION, &mut (), fast, slow)
            .expect("slow path");
        assert_eq!(n, 1);
        assert!(!out.is_empty());
    }
}
