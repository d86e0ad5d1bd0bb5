//! The ChainRecord union decoder (what detect and the runtime read between
//! modules), and the DeadLetter, ScoredReading and AnomalyEvent records it
//! and the topics carry, on arbitrary datums.
//!
//! The body is [`gridwatch_fuzz::avro_chain_record`], shared with the stable CI run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gridwatch_fuzz::avro_chain_record(data));
