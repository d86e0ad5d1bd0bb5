//! The JSON edge format: one reading, and the RFC 3339 timestamp helpers.
#![no_main]

use gridwatch_contracts::json::{format_rfc3339_millis, parse_reading, parse_rfc3339_millis};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(reading) = parse_reading(data) {
        // What was accepted serialises and parses back to the same reading
        // (floats compared by value: serde_json's default parser may differ
        // from the shortest representation by an ulp).
        let text = serde_json::to_vec(&reading).expect("a parsed reading serialises");
        let again = parse_reading(&text).expect("our own JSON parses");
        assert_eq!(again.meter_id, reading.meter_id);
        assert_eq!(again.timestamp, reading.timestamp);
        assert_eq!(again.status, reading.status);
        for (a, b) in [
            (again.voltage, reading.voltage),
            (again.current, reading.current),
            (again.temperature, reading.temperature),
        ] {
            assert!((a - b).abs() <= f64::EPSILON * b.abs(), "{a} vs {b}");
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(ms) = parse_rfc3339_millis(text)
    {
        let shown = format_rfc3339_millis(ms);
        assert_eq!(parse_rfc3339_millis(&shown), Some(ms), "{text:?} -> {shown}");
    }
    if let Ok(bytes) = <[u8; 8]>::try_from(data.get(..8).unwrap_or_default()) {
        let _ = format_rfc3339_millis(i64::from_le_bytes(bytes));
    }
});
