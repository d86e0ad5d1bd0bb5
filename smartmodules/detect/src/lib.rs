//! The `detect` SmartModule: scores readings and keeps per-meter state.
//!
//! Input records are `io.gridwatch.ChainRecord` datums from `validate`.
//! A `SensorReading` becomes a `ScoredReading` (evidence for each scored
//! field and zero or more anomalies); a `DeadLetter` passes through so the
//! runtime routes it; anything else becomes a dead letter of its own.
//!
//! Inside a Fluvio SPU, `look_back` replays the topic's recent raw readings
//! (Avro-framed or JSON, as produced) through the same rule to warm the
//! windows, which is why this module also takes validate's decoding params.

use std::sync::Mutex;

use fluvio_smartmodule::dataplane::smartmodule::SmartModuleExtraParams;
use fluvio_smartmodule::{RecordData, SmartModuleRecord, eyre, smartmodule};

/// The SmartModule ABI's result, kept apart from `std`'s.
type SmResult<T> = fluvio_smartmodule::Result<T>;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::model::reason;
use gridwatch_contracts::{ChainRecord, DeadLetter, ScoredReading};
use gridwatch_detector::{Detector, DetectorConfig};
use gridwatch_validator::{ValidateConfig, record_clock};

/// The stage name written into dead letters.
pub const STAGE: &str = "detect";

/// The init param bounding what `look_back` warms with (see [`DetectState::look_back_through`]).
pub const LOOK_BACK_THROUGH: &str = "look_back_through";

/// The rule plus what it needs to decode raw readings during look-back.
#[derive(Debug)]
pub struct DetectState {
    pub detector: Detector,
    pub decode: ValidateConfig,
    /// `look_back_through`: what `look_back` may warm with. The SPU takes
    /// `look_back` from the *end* of the log, not from before the offset the
    /// stream resumes at, and runs it after the open request returns, so it
    /// also delivers records that are scored next (appended since, or not yet
    /// read). Offsets cannot tell them apart (Fluvio 0.50 hands `look_back`
    /// batch-relative offsets and timestamps), so the runtime names the last
    /// record before the resume offset by the xxh3 hash of its value, and
    /// warming stops after its last occurrence.
    pub look_back_through: Through,
    /// Whether the marker record was seen.
    seen_marker: bool,
    /// Records after the latest marker: warmed only if another marker follows.
    behind: Vec<Vec<u8>>,
}

/// What `look_back` may warm with (the `look_back_through` param).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Through {
    /// Not set: every record (a caller that knows `look_back` ends at the resume offset).
    All,
    /// `none`: nothing; the stream starts at the beginning of the partition.
    Nothing,
    /// The records up to the last one whose value hashes (xxh3-64) to this.
    Marker(u64),
}

impl DetectState {
    /// Builds the state from init params, rejecting bad values.
    pub fn from_params<'a>(
        get: impl Fn(&str) -> Option<&'a str> + Copy,
    ) -> Result<Self, gridwatch_contracts::ConfigError> {
        let look_back_through = match get(LOOK_BACK_THROUGH) {
            None => Through::All,
            Some("none") => Through::Nothing,
            Some(text) => Through::Marker(u64::from_str_radix(text, 16).map_err(|_| {
                gridwatch_contracts::ConfigError::new(
                    LOOK_BACK_THROUGH,
                    text,
                    "none, or the xxh3-64 hash of a record value in hex",
                )
            })?),
        };
        Ok(Self {
            detector: Detector::new(DetectorConfig::from_params(get, "")?),
            decode: ValidateConfig::from_params(get)?,
            look_back_through,
            seen_marker: false,
            behind: Vec::new(),
        })
    }

    /// Handles one chain record: scores readings, passes dead letters on.
    pub fn process(&mut self, input: &[u8], source_offset: i64, now_ms: i64) -> ChainRecord {
        match ChainRecord::from_avro(input) {
            Ok(ChainRecord::Reading(reading)) => {
                let mut scored = ScoredReading {
                    reading,
                    source_offset,
                    disposition: gridwatch_contracts::Disposition::Scored,
                    scores: Vec::new(),
                    anomalies: Vec::new(),
                };
                self.detector.process_into(&mut scored, now_ms);
                ChainRecord::Scored(scored)
            }
            Ok(passthrough @ (ChainRecord::DeadLetter(_) | ChainRecord::Scored(_))) => passthrough,
            Err(e) => ChainRecord::DeadLetter(DeadLetter {
                reason: reason::UNPARSEABLE.to_string(),
                message: format!("detect expects io.gridwatch.ChainRecord from validate: {e}"),
                stage: STAGE.to_string(),
                source_topic: None,
                source_partition: None,
                source_offset: Some(source_offset),
                original: input.to_vec(),
                first_failed_at: now_ms,
                attempts: 1,
            }),
        }
    }

    /// Warms windows from a raw reading, as `look_back` delivers them.
    /// Records validate would refuse are skipped: they never reached detect.
    pub fn warm(&mut self, raw: &[u8], source_offset: i64, record_timestamp: i64) {
        let now = record_clock(record_timestamp);
        if let Ok(reading) = gridwatch_validator::validate(raw, &self.decode, now) {
            self.detector.process(&reading, source_offset, now);
        }
    }
}

impl DetectState {
    /// Warms from one `look_back` record, up to the last marker (see
    /// [`DetectState::look_back_through`]). Validate's clock is the wall
    /// clock, as when the record is scored: `look_back` timestamps are
    /// batch-relative.
    pub fn warm_look_back(&mut self, raw: &[u8]) {
        match self.look_back_through {
            Through::All => self.warm_now(raw),
            Through::Nothing => {}
            Through::Marker(marker) => {
                let is_marker = xxhash_rust::xxh3::xxh3_64(raw) == marker;
                if !self.seen_marker {
                    self.warm_now(raw);
                    self.seen_marker = is_marker;
                } else if is_marker {
                    for held in std::mem::take(&mut self.behind) {
                        self.warm_now(&held);
                    }
                    self.warm_now(raw);
                } else {
                    self.behind.push(raw.to_vec());
                }
            }
        }
    }

    fn warm_now(&mut self, raw: &[u8]) {
        let now = record_clock(0);
        if let Ok(reading) = gridwatch_validator::validate(raw, &self.decode, now) {
            self.detector.process(&reading, -1, now);
        }
    }

    /// Drops what `look_back` held after the last marker: those records are
    /// scored next.
    pub fn end_look_back(&mut self) {
        if !self.behind.is_empty() {
            self.behind = Vec::new();
        }
    }
}

/// Module state. WASM instances are single-threaded; the Mutex is what makes
/// a `static` safely mutable without `unsafe`.
static STATE: Mutex<Option<DetectState>> = Mutex::new(None);

fn with_state<T>(f: impl FnOnce(&mut DetectState) -> T) -> SmResult<T> {
    let mut guard = STATE.lock().map_err(|_| eyre!("detect state poisoned"))?;
    if guard.is_none() {
        *guard = Some(DetectState::from_params(|_| None).map_err(|e| eyre!("{e}"))?);
    }
    match guard.as_mut() {
        Some(state) => Ok(f(state)),
        None => Err(eyre!("detect state missing")),
    }
}

#[smartmodule(init)]
fn init(params: SmartModuleExtraParams) -> SmResult<()> {
    let state = DetectState::from_params(|key| params.get(key).map(String::as_str))
        .map_err(|e| eyre!("{e}"))?;
    *STATE.lock().map_err(|_| eyre!("detect state poisoned"))? = Some(state);
    Ok(())
}

#[smartmodule(look_back)]
pub fn look_back(record: &SmartModuleRecord) -> SmResult<()> {
    with_state(|s| s.warm_look_back(record.value().as_ref()))
}

#[smartmodule(map)]
pub fn map(record: &SmartModuleRecord) -> SmResult<(Option<RecordData>, RecordData)> {
    let now = record_clock(0);
    let out = with_state(|s| {
        s.end_look_back();
        s.process(record.value().as_ref(), record.offset(), now)
    })?;
    let key = match &out {
        ChainRecord::Scored(s) => Some(RecordData::from(s.reading.meter_id.as_bytes().to_vec())),
        _ => record.key().cloned(),
    };
    Ok((key, RecordData::from(out.to_avro()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(meter: &str, ts: i64) -> Vec<u8> {
        format!(
            r#"{{"meter_id":"{meter}","timestamp":{ts},"voltage":230.0,"current":5.0,"temperature":30.0,"status":"OK"}}"#
        )
        .into_bytes()
    }

    fn state(params: &[(&str, &str)]) -> DetectState {
        DetectState::from_params(|key| params.iter().find(|(k, _)| *k == key).map(|(_, v)| *v))
            .expect("valid params")
    }

    #[test]
    fn look_back_warms_through_the_last_marker_only() {
        let now = 1_700_000_000_000;
        let marker = raw("m-2", now);
        let hex = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&marker));
        let mut s = state(&[(LOOK_BACK_THROUGH, &hex)]);
        // m-3 and m-4 come after the marker: they are scored next, not warmed.
        for m in ["m-1", "m-2", "m-3", "m-4"] {
            s.warm_look_back(&raw(m, now));
        }
        s.end_look_back();
        assert_eq!(s.detector.meters(), 2);
        assert!(s.behind.is_empty());

        // A later copy of the marker moves the end to it.
        let mut s = state(&[(LOOK_BACK_THROUGH, &hex)]);
        for r in [
            raw("m-1", now),
            marker.clone(),
            raw("m-3", now),
            marker.clone(),
            raw("m-5", now),
        ] {
            s.warm_look_back(&r);
        }
        assert_eq!(s.detector.meters(), 3, "m-1, m-2 and m-3");

        let mut none = state(&[(LOOK_BACK_THROUGH, "none")]);
        none.warm_look_back(&raw("m-1", now));
        assert_eq!(none.detector.meters(), 0);

        let mut all = state(&[]);
        for m in ["m-1", "m-2", "m-3"] {
            all.warm_look_back(&raw(m, now));
        }
        assert_eq!(
            all.detector.meters(),
            3,
            "without the param every record warms"
        );
    }

    #[test]
    fn look_back_warms_readings_whatever_their_record_timestamp() {
        // Fluvio hands look_back batch-relative timestamps (a few ms after
        // 1970); validate must not call a 2026 reading "in the future".
        let mut s = state(&[]);
        s.warm_look_back(&raw("m-1", 1_767_229_365_000));
        assert_eq!(s.detector.meters(), 1);
    }

    #[test]
    fn a_bad_resume_offset_names_the_param() {
        let err = DetectState::from_params(|key| (key == LOOK_BACK_THROUGH).then_some("zz"))
            .expect_err("a marker is hex");
        assert!(err.to_string().contains(LOOK_BACK_THROUGH), "{err}");
    }
}
