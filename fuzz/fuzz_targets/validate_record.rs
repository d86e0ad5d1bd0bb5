//! validate's whole decision (`validate_record`) on arbitrary bytes, with
//! five writer schemas (the contract, a v2 evolution, and three whose types
//! do not match) under ids 41–45.
//!
//! Input: a flags byte (bit 0: legacy 8-byte global ids; bit 1: the next 8
//! bytes are "now", little-endian, else a fixed now), then the record.
#![no_main]

use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::model::reason;
use gridwatch_contracts::ChainRecord;
use gridwatch_fuzz::{NOW, assert_round_trips, config};
use libfuzzer_sys::fuzz_target;

const REASONS: [&str; 7] = [
    reason::UNPARSEABLE,
    reason::UNKNOWN_SCHEMA,
    reason::SCHEMA_MISMATCH,
    reason::NOT_FINITE,
    reason::OUT_OF_RANGE,
    reason::TIMESTAMP_OUT_OF_RANGE,
    reason::INVALID_METER_ID,
];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (now, record) = match rest.split_first_chunk::<8>() {
        Some((now, record)) if flags & 2 != 0 => (i64::from_le_bytes(*now), record),
        _ => (NOW, rest),
    };
    let config = config(flags & 1 != 0);
    let out = gridwatch_validator::validate_record(record, 7, config, now);
    match &out {
        ChainRecord::Reading(r) => {
            assert!(r.voltage.is_finite() && r.current.is_finite() && r.temperature.is_finite());
            assert!(!r.meter_id.trim().is_empty() && r.meter_id.len() <= config.max_meter_id_len);
            assert!(r.timestamp >= config.earliest_ms);
        }
        ChainRecord::DeadLetter(d) => {
            assert!(REASONS.contains(&d.reason.as_str()), "unknown reason {}", d.reason);
            assert_eq!(d.original, record, "the dead letter keeps the original bytes");
            assert_eq!(d.source_offset, Some(7));
        }
        ChainRecord::Scored(_) => panic!("validate never scores"),
    }
    // What the module hands on must be a valid ChainRecord datum.
    assert_round_trips(&out);
    let bytes = out.to_avro().expect("encodes");
    assert!(ChainRecord::from_avro(&bytes).is_ok());
});
