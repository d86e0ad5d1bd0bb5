//! Recognising re-sent readings.
//!
//! A reading is identified by (`meter_id`, `timestamp`). A client that
//! re-sends after a crash or a time-out must not have a reading scored,
//! archived or alerted twice, so ingest drops readings it has already
//! appended. The horizon is bounded: per meter, timestamps within
//! `horizon_ms` of the meter's newest are remembered (the detector window
//! plus the allowed lateness; anything older is late for the detector
//! anyway). The set is rebuilt after a crash from the log's recent records.

use std::collections::{HashMap, VecDeque};

/// Seen (meter, timestamp) pairs within a horizon.
#[derive(Debug)]
pub struct Dedup {
    horizon_ms: i64,
    meters: HashMap<Box<str>, VecDeque<i64>>,
    /// Insertions since the last sweep of silent meters.
    since_sweep: usize,
    newest: i64,
}

impl Dedup {
    pub fn new(horizon_ms: i64) -> Self {
        Self {
            horizon_ms,
            meters: HashMap::new(),
            since_sweep: 0,
            newest: i64::MIN,
        }
    }

    /// Records the pair; false when it was already there (a duplicate).
    pub fn insert(&mut self, meter: &str, ts: i64) -> bool {
        self.newest = self.newest.max(ts);
        self.maybe_sweep();
        let seen = match self.meters.get_mut(meter) {
            Some(seen) => seen,
            None => self.meters.entry(meter.into()).or_default(),
        };
        // Keep the per-meter list sorted; readings mostly arrive in order.
        let at = seen.partition_point(|&t| t < ts);
        if seen.get(at) == Some(&ts) {
            return false;
        }
        seen.insert(at, ts);
        if let Some(&newest) = seen.back() {
            // Saturating: ingest sees timestamps before validate bounds
            // them, and one near i64::MIN must not overflow (found by
            // tests/tests/bad_input.rs, json-timestamp-i64-min.ndjson).
            let cutoff = newest.saturating_sub(self.horizon_ms);
            while seen.front().is_some_and(|&t| t < cutoff) {
                seen.pop_front();
            }
        }
        true
    }

    /// Forgets a pair whose append failed, so a retry is not called a duplicate.
    pub fn remove(&mut self, meter: &str, ts: i64) {
        if let Some(seen) = self.meters.get_mut(meter)
            && let Ok(at) = seen.binary_search(&ts)
        {
            seen.remove(at);
        }
    }

    /// Pairs remembered, for the state-size metric.
    pub fn len(&self) -> usize {
        self.meters.values().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.meters.is_empty()
    }

    fn maybe_sweep(&mut self) {
        self.since_sweep += 1;
        if self.since_sweep < self.meters.len().max(4096) {
            return;
        }
        self.since_sweep = 0;
        let cutoff = self.newest.saturating_sub(self.horizon_ms);
        self.meters
            .retain(|_, seen| seen.back().is_some_and(|&t| t >= cutoff));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_within_the_horizon_are_caught() {
        let mut d = Dedup::new(10_000);
        assert!(d.insert("m", 1_000));
        assert!(d.insert("m", 2_000));
        assert!(!d.insert("m", 1_000));
        assert!(d.insert("n", 1_000), "other meter");
        assert!(d.insert("m", 1_500), "out of order but new");
        assert!(!d.insert("m", 1_500));
        d.remove("m", 1_500);
        assert!(d.insert("m", 1_500), "removed after a failed append");
    }

    #[test]
    fn memory_is_bounded_by_the_horizon() {
        let mut d = Dedup::new(300_000);
        for i in 0..100_000 {
            d.insert("m", i * 1000);
        }
        assert!(d.len() <= 301);
        for m in 0..10_000 {
            d.insert(&format!("old{m}"), 0);
        }
        for i in 0..20_000 {
            d.insert("m", 200_000_000 + i * 1000);
        }
        assert_eq!(d.meters.len(), 1, "silent meters swept");
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        let mut d = Dedup::new(10_000);
        assert!(d.insert("m", i64::MIN));
        assert!(!d.insert("m", i64::MIN));
        assert!(d.insert("m", i64::MAX));
        for i in 0..5000 {
            d.insert(&format!("sweep-{i}"), i64::MIN + i);
        }
    }
}
