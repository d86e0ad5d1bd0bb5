//! SensorReading's Avro decoder (serde_avro_fast) on arbitrary datums, with
//! the contract's own schema and with a compatible v2 writer schema.
//!
//! The body is [`gridwatch_fuzz::avro_sensor_reading`], shared with the stable CI run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gridwatch_fuzz::avro_sensor_reading(data));
