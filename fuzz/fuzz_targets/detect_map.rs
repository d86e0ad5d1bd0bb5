//! detect's map (`DetectState::process`) and look-back warm-up over a
//! sequence of records on one state: arbitrary ChainRecord bytes, and
//! well-formed readings with arbitrary values, times and statuses, so the
//! windows, episodes and eviction see hostile streams as well as decoders.
//!
//! The body is [`gridwatch_fuzz::detect_map`], shared with the stable CI
//! run (which reads the same structured input from bytes with `arbitrary`).
#![no_main]

use gridwatch_fuzz::DetectInput;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: DetectInput| gridwatch_fuzz::detect_map(input));
