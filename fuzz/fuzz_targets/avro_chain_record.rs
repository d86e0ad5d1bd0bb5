//! The ChainRecord union decoder (what detect and the runtime read between
//! modules), and the DeadLetter, ScoredReading and AnomalyEvent records it
//! and the topics carry, on arbitrary datums.
#![no_main]

use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::{AnomalyEvent, ChainRecord, DeadLetter, ScoredReading};
use gridwatch_fuzz::assert_round_trips;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = ChainRecord::from_avro(data) {
        assert_round_trips(&record);
    }
    if let Ok(d) = DeadLetter::from_avro(data) {
        assert_round_trips(&d);
    }
    if let Ok(s) = ScoredReading::from_avro(data) {
        assert_round_trips(&s);
    }
    if let Ok(a) = AnomalyEvent::from_avro(data) {
        assert_round_trips(&a);
    }
});
