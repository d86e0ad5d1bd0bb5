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

/// The rule plus what it needs to decode raw readings during look-back.
#[derive(Debug)]
pub struct DetectState {
    pub detector: Detector,
    pub decode: ValidateConfig,
}

impl DetectState {
    /// Builds the state from init params, rejecting bad values.
    pub fn from_params<'a>(
        get: impl Fn(&str) -> Option<&'a str> + Copy,
    ) -> Result<Self, gridwatch_contracts::ConfigError> {
        Ok(Self {
            detector: Detector::new(DetectorConfig::from_params(get, "")?),
            decode: ValidateConfig::from_params(get)?,
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
    with_state(|s| s.warm(record.value().as_ref(), record.offset(), record.timestamp()))
}

#[smartmodule(map)]
pub fn map(record: &SmartModuleRecord) -> SmResult<(Option<RecordData>, RecordData)> {
    let now = record_clock(0);
    let out = with_state(|s| s.process(record.value().as_ref(), record.offset(), now))?;
    let key = match &out {
        ChainRecord::Scored(s) => Some(RecordData::from(s.reading.meter_id.as_bytes().to_vec())),
        _ => record.key().cloned(),
    };
    Ok((key, RecordData::from(out.to_avro()?)))
}
