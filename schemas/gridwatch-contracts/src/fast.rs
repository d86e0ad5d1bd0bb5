//! Hand-written Avro for the chain's hot path: the readings validate hands
//! detect and the scored readings detect emits.
//!
//! [`crate::codec`] goes through serde and a schema walk for every datum,
//! and decodes into owned `String`s: most of the chain's time per reading
//! went there. These functions read and write the same bytes directly, and
//! borrow the meter id from the input. They cover only the shapes the chain
//! produces on its fast path; anything else (another writer schema, a dead
//! letter, a datum that does not parse exactly) is left to [`crate::codec`],
//! so the bytes never differ from what it writes. The tests below check that
//! byte for byte against `serde_avro_fast`.

use crate::model::{
    AnomalyEvent, Disposition, FieldScore, MeterStatus, ScoredReading, SensorReading,
};

/// A [`SensorReading`] whose meter id borrows the bytes it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadingRef<'a> {
    pub meter_id: &'a str,
    pub timestamp: i64,
    pub voltage: f64,
    pub current: f64,
    pub temperature: f64,
    pub status: MeterStatus,
}

impl<'a> ReadingRef<'a> {
    pub fn of(r: &'a SensorReading) -> Self {
        Self {
            meter_id: &r.meter_id,
            timestamp: r.timestamp,
            voltage: r.voltage,
            current: r.current,
            temperature: r.temperature,
            status: r.status,
        }
    }

    pub fn to_owned(&self) -> SensorReading {
        SensorReading {
            meter_id: self.meter_id.to_string(),
            timestamp: self.timestamp,
            voltage: self.voltage,
            current: self.current,
            temperature: self.temperature,
            status: self.status,
        }
    }
}

/// The union branches of `ChainRecord.avsc`, in schema order.
pub const CHAIN_READING: i64 = 0;
pub const CHAIN_SCORED: i64 = 1;
pub const CHAIN_DEAD_LETTER: i64 = 2;

/// Reads an Avro `long` (zigzag varint) at `*pos`.
#[inline(always)]
pub fn read_long(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut raw: u64 = 0;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if shift == 63 && b > 1 {
            return None; // past 64 bits
        }
        raw |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

fn read_f64(buf: &[u8], pos: &mut usize) -> Option<f64> {
    let bytes: [u8; 8] = buf.get(*pos..*pos + 8)?.try_into().ok()?;
    *pos += 8;
    Some(f64::from_le_bytes(bytes))
}

/// Decodes a `SensorReading` datum (the v1 schema, as writer) that fills
/// `buf` exactly. `None` for anything else, which the caller hands to the
/// serde codec so that errors read as they always did.
pub fn decode_reading(buf: &[u8]) -> Option<ReadingRef<'_>> {
    let mut pos = 0;
    let r = read_reading(buf, &mut pos)?;
    (pos == buf.len()).then_some(r)
}

/// Decodes a `ChainRecord` datum of the `SensorReading` branch that fills
/// `buf` exactly; `None` for other branches and anything malformed.
pub fn decode_chain_reading(buf: &[u8]) -> Option<ReadingRef<'_>> {
    let mut pos = 0;
    if read_long(buf, &mut pos)? != CHAIN_READING {
        return None;
    }
    let r = read_reading(buf, &mut pos)?;
    (pos == buf.len()).then_some(r)
}

fn read_reading<'a>(buf: &'a [u8], pos: &mut usize) -> Option<ReadingRef<'a>> {
    let meter_id = read_str(buf, pos)?;
    let timestamp = read_long(buf, pos)?;
    let voltage = read_f64(buf, pos)?;
    let current = read_f64(buf, pos)?;
    let temperature = read_f64(buf, pos)?;
    let status = match read_long(buf, pos)? {
        0 => MeterStatus::Ok,
        1 => MeterStatus::Degraded,
        2 => MeterStatus::Failure,
        _ => return None,
    };
    Some(ReadingRef {
        meter_id,
        timestamp,
        voltage,
        current,
        temperature,
        status,
    })
}

/// Appends an Avro `long` (or `int`).
#[inline(always)]
pub fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_long(out, s.len() as i64);
    put_bytes(out, s.as_bytes());
}

/// `extend_from_slice` for the short strings of a record. In WASM a copy
/// of unknown length is a `memory.copy`, which wasmtime runs as a call into
/// the host; copies of a fixed 8 bytes compile to a load and a store.
#[inline]
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() > 64 {
        out.extend_from_slice(bytes);
        return;
    }
    out.reserve(bytes.len());
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        out.extend_from_slice(&word);
    }
    for &b in chunks.remainder() {
        out.push(b);
    }
}

/// A `["null", "double"]` union.
fn put_opt_f64(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(2); // branch 1, zigzag
            put_f64(out, v);
        }
    }
}

fn status_index(s: MeterStatus) -> i64 {
    match s {
        MeterStatus::Ok => 0,
        MeterStatus::Degraded => 1,
        MeterStatus::Failure => 2,
    }
}

fn disposition_index(d: Disposition) -> i64 {
    match d {
        Disposition::Scored => 0,
        Disposition::ExcludedFailure => 1,
        Disposition::Late => 2,
        Disposition::Invalid => 3,
    }
}

/// Appends a `SensorReading` datum.
pub fn put_reading(out: &mut Vec<u8>, r: &ReadingRef<'_>) {
    put_str(out, r.meter_id);
    put_long(out, r.timestamp);
    put_f64(out, r.voltage);
    put_f64(out, r.current);
    put_f64(out, r.temperature);
    put_long(out, status_index(r.status));
}

/// Appends `ChainRecord::Reading(r)`.
pub fn put_chain_reading(out: &mut Vec<u8>, r: &ReadingRef<'_>) {
    put_long(out, CHAIN_READING);
    put_reading(out, r);
}

/// One [`FieldScore`], with the field's name borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreRef<'a> {
    pub field: &'a str,
    pub value: f64,
    pub window_count: i32,
    pub window_mean: Option<f64>,
    pub window_stddev: Option<f64>,
    pub zscore: Option<f64>,
    pub anomalous: bool,
}

impl<'a> ScoreRef<'a> {
    /// A placeholder for fixed-size arrays of scores; never encoded.
    pub const EMPTY: ScoreRef<'static> = ScoreRef {
        field: "",
        value: 0.0,
        window_count: 0,
        window_mean: None,
        window_stddev: None,
        zscore: None,
        anomalous: false,
    };

    pub fn of(s: &'a FieldScore) -> Self {
        Self {
            field: &s.field,
            value: s.value,
            window_count: s.window_count,
            window_mean: s.window_mean,
            window_stddev: s.window_stddev,
            zscore: s.zscore,
            anomalous: s.anomalous,
        }
    }
}

fn put_score(out: &mut Vec<u8>, s: &ScoreRef<'_>) {
    put_str(out, s.field);
    put_f64(out, s.value);
    put_long(out, i64::from(s.window_count));
    put_opt_f64(out, s.window_mean);
    put_opt_f64(out, s.window_stddev);
    put_opt_f64(out, s.zscore);
    out.push(u8::from(s.anomalous));
}

/// Appends `ChainRecord::Scored` for a reading, its scores and anomalies:
/// the bytes `ChainRecord::Scored(ScoredReading { .. }).encode_into` writes.
/// Anomalies are rare, so they go through the serde codec.
pub fn put_chain_scored(
    out: &mut Vec<u8>,
    reading: &ReadingRef<'_>,
    source_offset: i64,
    disposition: Disposition,
    scores: &[ScoreRef<'_>],
    anomalies: &[AnomalyEvent],
) -> Result<(), crate::CodecError> {
    use crate::codec::AvroRecord;
    put_long(out, CHAIN_SCORED);
    put_reading(out, reading);
    put_long(out, source_offset);
    put_long(out, disposition_index(disposition));
    if !scores.is_empty() {
        put_long(out, scores.len() as i64);
        for s in scores {
            put_score(out, s);
        }
    }
    out.push(0);
    if !anomalies.is_empty() {
        put_long(out, anomalies.len() as i64);
        for a in anomalies {
            a.encode_into(out)?;
        }
    }
    out.push(0);
    Ok(())
}

/// [`put_chain_scored`] for an owned [`ScoredReading`].
pub fn put_scored_reading(out: &mut Vec<u8>, s: &ScoredReading) -> Result<(), crate::CodecError> {
    let mut scores = [ScoreRef::EMPTY; 3];
    if s.scores.len() > scores.len() {
        use crate::codec::AvroRecord;
        return crate::ChainRecord::Scored(s.clone()).encode_into(out);
    }
    for (slot, score) in scores.iter_mut().zip(&s.scores) {
        *slot = ScoreRef::of(score);
    }
    put_chain_scored(
        out,
        &ReadingRef::of(&s.reading),
        s.source_offset,
        s.disposition,
        &scores[..s.scores.len()],
        &s.anomalies,
    )
}

/// A [`ScoredReading`] without anomalies, read where it lies: what the
/// router and the lake need from the chain's every output, without the
/// owned strings a serde decode allocates per field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredRef<'a> {
    pub reading: ReadingRef<'a>,
    pub source_offset: i64,
    pub disposition: Disposition,
    scores: [ScoreRef<'a>; 3],
    score_count: usize,
}

impl<'a> ScoredRef<'a> {
    /// The scores in the order detect wrote them.
    pub fn scores(&self) -> &[ScoreRef<'a>] {
        &self.scores[..self.score_count]
    }

    pub fn to_owned(&self) -> ScoredReading {
        ScoredReading {
            reading: self.reading.to_owned(),
            source_offset: self.source_offset,
            disposition: self.disposition,
            scores: self
                .scores()
                .iter()
                .map(|s| FieldScore {
                    field: s.field.to_string(),
                    value: s.value,
                    window_count: s.window_count,
                    window_mean: s.window_mean,
                    window_stddev: s.window_stddev,
                    zscore: s.zscore,
                    anomalous: s.anomalous,
                })
                .collect(),
            anomalies: Vec::new(),
        }
    }
}

/// Decodes a `ScoredReading` datum that fills `buf` exactly and carries no
/// anomalies (the common case). `None` for anything else, including more
/// than three scores or Avro's sized array blocks, which the caller hands
/// to the serde codec.
pub fn decode_scored_reading(buf: &[u8]) -> Option<ScoredRef<'_>> {
    let mut pos = 0;
    let s = read_scored(buf, &mut pos)?;
    (pos == buf.len()).then_some(s)
}

/// Decodes a `ChainRecord` datum of the `ScoredReading` branch without
/// anomalies that fills `buf` exactly. Also returns the branch's value,
/// which is a whole `ScoredReading` datum: the router frames it for the
/// `scored` topic as it is, without encoding it again.
pub fn decode_chain_scored(buf: &[u8]) -> Option<(ScoredRef<'_>, &[u8])> {
    let mut pos = 0;
    if read_long(buf, &mut pos)? != CHAIN_SCORED {
        return None;
    }
    let datum = &buf[pos..];
    let s = read_scored(buf, &mut pos)?;
    (pos == buf.len()).then_some((s, datum))
}

fn read_scored<'a>(buf: &'a [u8], pos: &mut usize) -> Option<ScoredRef<'a>> {
    let reading = read_reading(buf, pos)?;
    let source_offset = read_long(buf, pos)?;
    let disposition = match read_long(buf, pos)? {
        0 => Disposition::Scored,
        1 => Disposition::ExcludedFailure,
        2 => Disposition::Late,
        3 => Disposition::Invalid,
        _ => return None,
    };
    let mut scores = [ScoreRef::EMPTY; 3];
    let mut score_count = 0;
    loop {
        // A negative count is a block with its byte size: left to serde.
        let n = usize::try_from(read_long(buf, pos)?).ok()?;
        if n == 0 {
            break;
        }
        if n > scores.len() - score_count {
            return None;
        }
        for slot in &mut scores[score_count..score_count + n] {
            *slot = read_score(buf, pos)?;
        }
        score_count += n;
    }
    // Anomalies are rare; a reading with any goes through serde.
    if read_long(buf, pos)? != 0 {
        return None;
    }
    Some(ScoredRef {
        reading,
        source_offset,
        disposition,
        scores,
        score_count,
    })
}

fn read_str<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a str> {
    let len = usize::try_from(read_long(buf, pos)?).ok()?;
    let end = pos.checked_add(len)?;
    let s = std::str::from_utf8(buf.get(*pos..end)?).ok()?;
    *pos = end;
    Some(s)
}

fn read_opt_f64(buf: &[u8], pos: &mut usize) -> Option<Option<f64>> {
    match read_long(buf, pos)? {
        0 => Some(None),
        1 => Some(Some(read_f64(buf, pos)?)),
        _ => None,
    }
}

fn read_score<'a>(buf: &'a [u8], pos: &mut usize) -> Option<ScoreRef<'a>> {
    let field = read_str(buf, pos)?;
    let value = read_f64(buf, pos)?;
    let window_count = i32::try_from(read_long(buf, pos)?).ok()?;
    let window_mean = read_opt_f64(buf, pos)?;
    let window_stddev = read_opt_f64(buf, pos)?;
    let zscore = read_opt_f64(buf, pos)?;
    let anomalous = match buf.get(*pos)? {
        0 => false,
        1 => true,
        _ => return None,
    };
    *pos += 1;
    Some(ScoreRef {
        field,
        value,
        window_count,
        window_mean,
        window_stddev,
        zscore,
        anomalous,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::AvroRecord;
    use crate::model::*;

    fn reading(meter: &str, ts: i64, status: MeterStatus) -> SensorReading {
        SensorReading {
            meter_id: meter.into(),
            timestamp: ts,
            voltage: 231.5,
            current: -5.01,
            temperature: f64::NAN,
            status,
        }
    }

    fn anomaly(r: &SensorReading) -> AnomalyEvent {
        AnomalyEvent {
            anomaly_id: "a1".into(),
            anomaly_type: AnomalyType::VoltageSurge,
            severity: Severity::Critical,
            detected_at: 1_767_225_600_123,
            original_event: r.clone(),
            field: Some("voltage".into()),
            zscore: Some(5.2),
            window_mean: None,
            window_stddev: Some(0.3),
            window_count: Some(299),
            threshold: Some(2.5),
            window_ms: Some(300_000),
        }
    }

    fn readings() -> Vec<SensorReading> {
        let mut out = Vec::new();
        for (i, status) in [MeterStatus::Ok, MeterStatus::Degraded, MeterStatus::Failure]
            .into_iter()
            .enumerate()
        {
            for ts in [0, -1, 1, 63, 64, -65, 1_767_225_600_000, i64::MIN, i64::MAX] {
                out.push(reading(&"m".repeat(i * 70), ts, status));
                out.push(reading("feeder-ä-001", ts, status));
            }
        }
        out
    }

    #[test]
    fn readings_encode_and_decode_as_the_serde_codec_does() {
        for r in readings() {
            let serde = ChainRecord::Reading(r.clone()).to_avro().unwrap();
            let mut ours = Vec::new();
            put_chain_reading(&mut ours, &ReadingRef::of(&r));
            assert_eq!(ours, serde);
            let back = decode_chain_reading(&serde).expect("decodes");
            assert_eq!(back.to_owned().to_avro().unwrap(), r.to_avro().unwrap());
            let datum = r.to_avro().unwrap();
            let back = decode_reading(&datum).expect("decodes");
            assert_eq!(back.meter_id, r.meter_id);
            // Anything but an exact datum is left to the serde codec.
            for cut in 0..datum.len() {
                assert!(decode_reading(&datum[..cut]).is_none());
            }
            let mut longer = datum.clone();
            longer.push(0);
            assert!(decode_reading(&longer).is_none());
        }
        assert!(decode_chain_reading(&[2, 0]).is_none());
    }

    #[test]
    fn more_scores_than_the_detector_writes_are_left_to_serde() {
        let score = FieldScore {
            field: "f".into(),
            value: 1.0,
            window_count: 1,
            window_mean: None,
            window_stddev: None,
            zscore: None,
            anomalous: false,
        };
        let s = ScoredReading {
            reading: reading("m", 1, MeterStatus::Ok),
            source_offset: 7,
            disposition: Disposition::Scored,
            scores: vec![score; 4],
            anomalies: vec![],
        };
        assert!(decode_scored_reading(&s.to_avro().unwrap()).is_none());
        let chain = ChainRecord::Scored(s).to_avro().unwrap();
        assert!(decode_chain_scored(&chain).is_none());
    }

    #[test]
    fn scored_readings_encode_as_the_serde_codec_does() {
        let score = |field: &str, z: Option<f64>| FieldScore {
            field: field.into(),
            value: 230.25,
            window_count: 299,
            window_mean: z.map(|_| 230.0),
            window_stddev: Some(0.0),
            zscore: z,
            anomalous: z.is_some(),
        };
        for r in readings() {
            for (scores, anomalies) in [
                (vec![], vec![]),
                (vec![score("voltage", None)], vec![]),
                (
                    vec![
                        score("voltage", Some(-3.0)),
                        score("current", None),
                        score("temperature", Some(9.0)),
                    ],
                    vec![anomaly(&r), anomaly(&r)],
                ),
                (vec![], vec![anomaly(&r)]),
            ] {
                for disposition in [
                    Disposition::Scored,
                    Disposition::ExcludedFailure,
                    Disposition::Late,
                    Disposition::Invalid,
                ] {
                    let s = ScoredReading {
                        reading: r.clone(),
                        source_offset: r.timestamp / 3,
                        disposition,
                        scores: scores.clone(),
                        anomalies: anomalies.clone(),
                    };
                    let serde = ChainRecord::Scored(s.clone()).to_avro().unwrap();
                    let mut ours = Vec::new();
                    put_scored_reading(&mut ours, &s).unwrap();
                    assert_eq!(ours, serde);
                    // Read back: the same record, or left to serde when it
                    // carries anomalies.
                    let datum = s.to_avro().unwrap();
                    let fast = decode_scored_reading(&datum);
                    let chain = decode_chain_scored(&serde);
                    if s.anomalies.is_empty() {
                        let fast = fast.expect("decodes");
                        assert_eq!(fast.to_owned().to_avro().unwrap(), datum);
                        let (chain, inner) = chain.expect("decodes");
                        // NaN readings: compare encodings, not floats.
                        assert_eq!(chain.to_owned().to_avro().unwrap(), datum);
                        assert_eq!(inner, &datum[..]);
                        for cut in 0..datum.len() {
                            assert!(decode_scored_reading(&datum[..cut]).is_none());
                        }
                        let mut longer = datum.clone();
                        longer.push(0);
                        assert!(decode_scored_reading(&longer).is_none());
                    } else {
                        assert!(fast.is_none() && chain.is_none());
                    }
                }
            }
        }
    }
}
