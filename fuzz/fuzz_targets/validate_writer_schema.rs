//! validate's `schemas` param (writer schemas as the registry hands them
//! over) and decoding with whatever writer schema parses.
//!
//! Input: the schema text, a NUL byte, then an Avro datum. The text is used
//! both as the whole `schemas` param and as the one schema under id 1.
//!
//! The body is [`gridwatch_fuzz::validate_writer_schema`], shared with the stable CI run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gridwatch_fuzz::validate_writer_schema(data));
