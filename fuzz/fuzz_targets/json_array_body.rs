//! The ingest API's JSON-array body parser: each element is a reading or a
//! dead letter; a body that is not an array is one dead letter with it all.
//!
//! The body is [`gridwatch_fuzz::json_array_body`], shared with the stable CI run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gridwatch_fuzz::json_array_body(data));
