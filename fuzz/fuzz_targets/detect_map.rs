//! detect's map (`DetectState::process`) and look-back warm-up over a
//! sequence of records on one state: arbitrary ChainRecord bytes, and
//! well-formed readings with arbitrary values, times and statuses, so the
//! windows, episodes and eviction see hostile streams as well as decoders.
#![no_main]

use arbitrary::Arbitrary;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::{ChainRecord, MeterStatus, SensorReading};
use gridwatch_detect::DetectState;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Op {
    /// Bytes as they arrive from the previous module.
    Raw(Vec<u8>),
    /// A reading that decodes, with any values.
    Reading {
        meter: u8,
        timestamp: i64,
        voltage: f64,
        current: f64,
        temperature: f64,
        status: u8,
        now: i64,
    },
    /// A raw topic record replayed by look-back.
    Warm(Vec<u8>, i64),
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// detect's init params, as strings, so their parsing is fuzzed too.
    window: Option<String>,
    threshold: Option<String>,
    min_samples: Option<String>,
    allowed_lateness: Option<String>,
    idle_timeout: Option<String>,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let get = |key: &str| match key {
        "window" => input.window.as_deref(),
        "threshold" => input.threshold.as_deref(),
        "min_samples" => input.min_samples.as_deref(),
        "allowed_lateness" => input.allowed_lateness.as_deref(),
        "idle_timeout" => input.idle_timeout.as_deref(),
        _ => None,
    };
    let Ok(mut state) = DetectState::from_params(get) else {
        return;
    };
    for (offset, op) in input.ops.iter().enumerate() {
        let offset = offset as i64;
        let out = match op {
            Op::Raw(bytes) => state.process(bytes, offset, gridwatch_fuzz::NOW),
            Op::Reading {
                meter,
                timestamp,
                voltage,
                current,
                temperature,
                status,
                now,
            } => {
                let reading = SensorReading {
                    meter_id: format!("m-{}", meter % 8),
                    timestamp: *timestamp,
                    voltage: *voltage,
                    current: *current,
                    temperature: *temperature,
                    status: match status % 3 {
                        0 => MeterStatus::Ok,
                        1 => MeterStatus::Degraded,
                        _ => MeterStatus::Failure,
                    },
                };
                let bytes = ChainRecord::Reading(reading).to_avro().expect("encodes");
                state.process(&bytes, offset, *now)
            }
            Op::Warm(bytes, ts) => {
                state.warm(bytes, offset, *ts);
                continue;
            }
        };
        out.to_avro().expect("detect's output encodes");
    }
});
