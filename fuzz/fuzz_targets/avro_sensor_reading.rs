//! SensorReading's Avro decoder (serde_avro_fast) on arbitrary datums, with
//! the contract's own schema and with a compatible v2 writer schema.
#![no_main]

use gridwatch_contracts::SensorReading;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_fuzz::{assert_round_trips, config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(reading) = SensorReading::from_avro(data) {
        assert_round_trips(&reading);
    }
    if let Some(v2) = config(false).schemas.get(&42)
        && let Ok(reading) = SensorReading::from_avro_with(data, v2)
    {
        assert_round_trips(&reading);
    }
});
