//! validate's whole decision (`validate_record`) on arbitrary bytes, with
//! five writer schemas (the contract, a v2 evolution, and three whose types
//! do not match) under ids 41–45.
//!
//! Input: a flags byte (bit 0: legacy 8-byte global ids; bit 1: the next 8
//! bytes are "now", little-endian, else a fixed now), then the record.
//!
//! The body is [`gridwatch_fuzz::validate_record_target`], shared with the stable CI run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gridwatch_fuzz::validate_record_target(data));
