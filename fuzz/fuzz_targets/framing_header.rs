//! The Apicurio / Confluent framing header parser, both id widths: what it
//! accepts must be exactly a header followed by the datum it returns.
//!
//! The body is [`gridwatch_fuzz::framing_header`], shared with the stable CI run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gridwatch_fuzz::framing_header(data));
