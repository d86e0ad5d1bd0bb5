//! The JSON edge format: one reading, and the RFC 3339 timestamp helpers.
//!
//! The body is [`gridwatch_fuzz::json_reading`], shared with the stable CI run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gridwatch_fuzz::json_reading(data));
