//! When this process appended which offsets: the ingest time of records
//! whose server-side chain output lost it.
//!
//! The runtime's ingest→detect latency is "now minus the record's append
//! time". A plain Fluvio read carries that time (the producer stamps each
//! batch), but the SPU's SmartModule output batches carry none: the SPU
//! builds a fresh batch for a chain's output and never sets its
//! `first_timestamp` (Fluvio 0.50, `fluvio-spu/src/smartengine/batch.rs`).
//! Output records do keep their input's offset, though, so the instance that
//! appended a reading can look its append time up again by offset.
//!
//! Only this process's own appends are known. Readings another instance or
//! another producer wrote stay without a time and out of the latency
//! histogram, as before; for a single instance (the benchmarks, `gridwatch
//! run` on one machine) every reading is covered. The clock keeps the most
//! recent [`RANGES_PER_PARTITION`] appends of each partition, one entry per
//! `append` call, so its memory is bounded however long the stream runs.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Mutex;

/// Appends remembered per partition. An `append` call is one entry whatever
/// its record count, so at the ingest API's batch sizes this spans minutes,
/// far longer than a record waits to be read back.
pub const RANGES_PER_PARTITION: usize = 16_384;

/// One append: its offsets and the wall-clock time it was sent, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Appended {
    start: u64,
    end: u64,
    time_ms: i64,
}

/// Append times of recent offsets, per (topic, partition).
#[derive(Debug, Default)]
pub struct AppendClock {
    partitions: Mutex<HashMap<(String, u32), VecDeque<Appended>>>,
}

impl AppendClock {
    /// Remembers that `offsets` of `topic`/`partition` were sent at `time_ms`.
    pub fn note(&self, topic: &str, partition: u32, offsets: Range<u64>, time_ms: i64) {
        if offsets.is_empty() {
            return;
        }
        let mut map = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let ranges = map.entry((topic.to_string(), partition)).or_default();
        // A partition rewritten from scratch (topic deleted and recreated)
        // starts again at a lower offset: what came before no longer applies.
        if ranges.back().is_some_and(|last| last.end > offsets.start) {
            ranges.clear();
        }
        if ranges.len() == RANGES_PER_PARTITION {
            ranges.pop_front();
        }
        ranges.push_back(Appended {
            start: offsets.start,
            end: offsets.end,
            time_ms,
        });
    }

    /// Fills in `time_ms` for each `(offset, time_ms)` of one partition that
    /// has none (≤ 0) and that this process appended. Offsets ascend within a
    /// call, so one forward walk serves the whole batch.
    pub fn fill<'a>(
        &self,
        topic: &str,
        partition: u32,
        records: impl Iterator<Item = (u64, &'a mut i64)>,
    ) {
        let map = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let Some(ranges) = map.get(&(topic.to_string(), partition)) else {
            return;
        };
        let mut at = None;
        for (offset, time) in records {
            if *time > 0 {
                continue;
            }
            let i = match at {
                Some(i) if ranges.get(i).is_some_and(|r: &Appended| r.start <= offset) => {
                    i + ranges.range(i..).take_while(|r| r.end <= offset).count()
                }
                _ => ranges.partition_point(|r| r.end <= offset),
            };
            at = Some(i);
            if let Some(r) = ranges.get(i).filter(|r| r.start <= offset) {
                *time = r.time_ms;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(clock: &AppendClock, offsets: &[u64]) -> Vec<i64> {
        let mut records: Vec<(u64, i64)> = offsets.iter().map(|&o| (o, -1)).collect();
        clock.fill("readings", 0, records.iter_mut().map(|(o, t)| (*o, t)));
        records.into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn offsets_get_the_time_of_the_append_that_wrote_them() {
        let clock = AppendClock::default();
        clock.note("readings", 0, 0..3, 100);
        clock.note("readings", 0, 3..4, 200);
        // 4..10 was written by someone else.
        clock.note("readings", 0, 10..12, 300);
        assert_eq!(
            filled(&clock, &[0, 2, 3, 5, 10, 11, 12]),
            vec![100, 100, 200, -1, 300, 300, -1]
        );
        // Starting mid-way and out of order still finds each one.
        assert_eq!(filled(&clock, &[11]), vec![300]);
        assert_eq!(filled(&clock, &[11, 1]), vec![300, 100]);
    }

    #[test]
    fn records_that_kept_their_time_and_other_partitions_are_untouched() {
        let clock = AppendClock::default();
        clock.note("readings", 0, 0..5, 100);
        let mut records = [(1u64, 42i64), (2, 0)];
        clock.fill("readings", 0, records.iter_mut().map(|(o, t)| (*o, t)));
        assert_eq!(records, [(1, 42), (2, 100)]);
        let mut other = [(1u64, -1i64)];
        clock.fill("readings", 1, other.iter_mut().map(|(o, t)| (*o, t)));
        clock.fill("anomalies", 0, other.iter_mut().map(|(o, t)| (*o, t)));
        assert_eq!(other, [(1, -1)]);
    }

    #[test]
    fn memory_is_bounded_and_a_recreated_partition_starts_afresh() {
        let clock = AppendClock::default();
        for i in 0..(RANGES_PER_PARTITION as u64 + 10) {
            clock.note("readings", 0, i * 2..i * 2 + 2, i as i64 + 1);
        }
        assert_eq!(filled(&clock, &[0, 19]), vec![-1, -1]);
        assert_eq!(filled(&clock, &[20]), vec![11]);
        clock.note("readings", 0, 0..1, 7);
        assert_eq!(filled(&clock, &[0, 20]), vec![7, -1]);
    }
}
