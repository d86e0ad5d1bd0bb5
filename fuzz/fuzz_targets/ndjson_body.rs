//! The ingest API's NDJSON body parser: every non-blank line is either a
//! reading or a dead letter carrying exactly that line.
//!
//! The body is [`gridwatch_fuzz::ndjson_body`], shared with the stable CI run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gridwatch_fuzz::ndjson_body(data));
