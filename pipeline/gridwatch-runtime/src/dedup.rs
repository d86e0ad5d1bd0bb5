//! Recognising re-sent readings.
//!
//! A reading is identified by (`meter_id`, `timestamp`). A client that
//! re-sends after a crash or a time-out must not have a reading scored,
//! archived or alerted twice, so ingest drops readings it has already
//! appended. The horizon is bounded: per meter, timestamps within
//! `horizon_ms` of the meter's newest are remembered (the detector window
//! plus the allowed lateness; anything older is late for the detector
//! anyway). The set is rebuilt after a crash from the log's recent records.

//!
//! Memory matters here: a meter sending once a second keeps about 330
//! timestamps, and 100,000 meters are a target deployment. Each meter's
//! timestamps are held sorted as varint gaps between neighbours, about two
//! bytes for a one-second gap where an `i64` takes eight, in a buffer that
//! grows by a quarter rather than doubling. In-order readings, nearly all
//! of them, are an append; only late ones and removals walk the gaps.

use std::collections::{HashMap, VecDeque};

/// Seen (meter, timestamp) pairs within a horizon.
#[derive(Debug)]
pub struct Dedup {
    horizon_ms: i64,
    /// foldhash: one lookup per reading on ingest's path.
    meters: HashMap<Box<str>, Seen, foldhash::fast::RandomState>,
    /// Insertions since the last sweep of silent meters.
    since_sweep: usize,
    newest: i64,
}

impl Dedup {
    pub fn new(horizon_ms: i64) -> Self {
        Self {
            horizon_ms,
            meters: HashMap::default(),
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
        if !seen.insert(ts) {
            return false;
        }
        // Saturating: ingest sees timestamps before validate bounds them,
        // and one near i64::MIN must not overflow (found by
        // tests/tests/bad_input.rs, json-timestamp-i64-min.ndjson).
        seen.evict_before(seen.newest.saturating_sub(self.horizon_ms));
        true
    }

    /// Forgets a pair whose append failed, so a retry is not called a duplicate.
    pub fn remove(&mut self, meter: &str, ts: i64) {
        if let Some(seen) = self.meters.get_mut(meter) {
            seen.remove(ts);
        }
    }

    /// Pairs remembered, for the state-size metric.
    pub fn len(&self) -> usize {
        self.meters.values().map(|s| s.count).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.meters.is_empty()
    }

    /// Bytes of gap buffers held, for tests and the memory figures.
    pub fn gap_bytes(&self) -> usize {
        self.meters.values().map(|s| s.gaps.capacity()).sum()
    }

    fn maybe_sweep(&mut self) {
        self.since_sweep += 1;
        if self.since_sweep < self.meters.len().max(4096) {
            return;
        }
        self.since_sweep = 0;
        let cutoff = self.newest.saturating_sub(self.horizon_ms);
        self.meters
            .retain(|_, seen| seen.count > 0 && seen.newest >= cutoff);
    }
}

/// One meter's timestamps, sorted: the oldest, the newest, and the gaps
/// between neighbours as unsigned LEB128 varints (gaps are differences of
/// sorted `i64`s, so they fit a `u64`; arithmetic wraps to cover the
/// whole range).
#[derive(Debug, Default)]
struct Seen {
    oldest: i64,
    newest: i64,
    count: usize,
    gaps: VecDeque<u8>,
}

impl Seen {
    /// False when `ts` is already held.
    fn insert(&mut self, ts: i64) -> bool {
        if self.count == 0 {
            *self = Self {
                oldest: ts,
                newest: ts,
                count: 1,
                gaps: std::mem::take(&mut self.gaps),
            };
            self.gaps.clear();
            return true;
        }
        if ts > self.newest {
            self.push_gap(ts.wrapping_sub(self.newest) as u64);
            self.newest = ts;
            self.count += 1;
            return true;
        }
        if ts < self.oldest {
            let mut first = Vec::with_capacity(10);
            put_varint(&mut first, self.oldest.wrapping_sub(ts) as u64);
            for (i, b) in first.into_iter().enumerate() {
                self.gaps.insert(i, b);
            }
            self.oldest = ts;
            self.count += 1;
            return true;
        }
        // Late, or a duplicate: find the neighbours around `ts`.
        let mut at = 0;
        let mut t = self.oldest;
        loop {
            if t == ts {
                return false;
            }
            let start = at;
            let Some(gap) = read_varint(&self.gaps, &mut at) else {
                return false; // unreachable: oldest ≤ ts < newest
            };
            let next = t.wrapping_add(gap as i64);
            if next > ts {
                let mut split = Vec::with_capacity(20);
                put_varint(&mut split, ts.wrapping_sub(t) as u64);
                put_varint(&mut split, next.wrapping_sub(ts) as u64);
                self.gaps.drain(start..at);
                for (i, b) in split.into_iter().enumerate() {
                    self.gaps.insert(start + i, b);
                }
                self.count += 1;
                return true;
            }
            t = next;
        }
    }

    fn remove(&mut self, ts: i64) {
        if self.count == 0 || ts < self.oldest || ts > self.newest {
            return;
        }
        if self.count == 1 {
            self.count = 0;
            self.gaps.clear();
            return;
        }
        let mut at = 0;
        let mut t = self.oldest;
        let mut prev: Option<(usize, i64)> = None; // (start of the gap into t, t's predecessor)
        loop {
            if t == ts {
                let start = at;
                let next = read_varint(&self.gaps, &mut at).map(|g| t.wrapping_add(g as i64));
                match (prev, next) {
                    // The oldest: its gap to the next goes.
                    (None, Some(next)) => {
                        self.gaps.drain(start..at);
                        self.oldest = next;
                    }
                    // The newest: the gap into it goes.
                    (Some((gap_start, before)), None) => {
                        self.gaps.truncate(gap_start);
                        self.newest = before;
                    }
                    // In between: two gaps become one.
                    (Some((gap_start, before)), Some(next)) => {
                        let mut merged = Vec::with_capacity(10);
                        put_varint(&mut merged, next.wrapping_sub(before) as u64);
                        self.gaps.drain(gap_start..at);
                        for (i, b) in merged.into_iter().enumerate() {
                            self.gaps.insert(gap_start + i, b);
                        }
                    }
                    (None, None) => return,
                }
                self.count -= 1;
                return;
            }
            let start = at;
            let Some(gap) = read_varint(&self.gaps, &mut at) else {
                return;
            };
            prev = Some((start, t));
            t = t.wrapping_add(gap as i64);
            if t > ts {
                return; // not held
            }
        }
    }

    /// Drops timestamps before `cutoff`. The newest always stays, as in the
    /// sorted list this replaced; a silent meter goes with the sweep.
    fn evict_before(&mut self, cutoff: i64) {
        while self.count > 1 && self.oldest < cutoff {
            let mut at = 0;
            let Some(gap) = read_varint(&self.gaps, &mut at) else {
                return;
            };
            self.gaps.drain(..at);
            self.oldest = self.oldest.wrapping_add(gap as i64);
            self.count -= 1;
        }
    }

    #[cfg(test)]
    fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        let mut at = 0;
        let mut t = self.oldest;
        let mut left = self.count;
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            let out = t;
            left -= 1;
            if left > 0 {
                t = t.wrapping_add(read_varint(&self.gaps, &mut at)? as i64);
            }
            Some(out)
        })
    }

    fn push_gap(&mut self, gap: u64) {
        if self.gaps.len() + 10 > self.gaps.capacity() {
            // A quarter more, not double: a full window's worth stays
            // within 25% of what it needs.
            self.gaps.reserve_exact(self.gaps.len() / 4 + 16);
        }
        let mut z = gap;
        while z >= 0x80 {
            self.gaps.push_back((z as u8) | 0x80);
            z >>= 7;
        }
        self.gaps.push_back(z as u8);
    }
}

fn put_varint(out: &mut Vec<u8>, mut z: u64) {
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn read_varint(buf: &VecDeque<u8>, at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = *buf.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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

    /// The sorted list the gaps replaced, as the model.
    #[derive(Default)]
    struct Model {
        meters: HashMap<String, VecDeque<i64>>,
    }

    impl Model {
        fn insert(&mut self, horizon: i64, meter: &str, ts: i64) -> bool {
            let seen = self.meters.entry(meter.into()).or_default();
            let at = seen.partition_point(|&t| t < ts);
            if seen.get(at) == Some(&ts) {
                return false;
            }
            seen.insert(at, ts);
            let cutoff = seen.back().unwrap().saturating_sub(horizon);
            while seen.len() > 1 && seen.front().is_some_and(|&t| t < cutoff) {
                seen.pop_front();
            }
            true
        }

        fn remove(&mut self, meter: &str, ts: i64) {
            if let Some(seen) = self.meters.get_mut(meter)
                && let Ok(at) = seen.binary_search(&ts)
            {
                seen.remove(at);
            }
        }
    }

    fn timestamp() -> impl Strategy<Value = i64> {
        prop_oneof![
            0i64..40_000,
            (0i64..40).prop_map(|s| s * 1000),
            Just(i64::MIN),
            Just(i64::MAX),
            Just(i64::MIN + 1),
            any::<i64>(),
        ]
    }

    proptest! {
        #[test]
        fn gaps_hold_what_a_sorted_list_holds(
            ops in proptest::collection::vec((0u8..4, 0usize..3, timestamp()), 1..400),
            horizon in prop_oneof![Just(10_000i64), Just(i64::MAX), 0i64..100],
        ) {
            let mut d = Dedup::new(horizon);
            let mut model = Model::default();
            for (op, meter, ts) in ops {
                let meter = ["a", "b", "c"][meter];
                if op == 0 {
                    d.remove(meter, ts);
                    model.remove(meter, ts);
                } else {
                    prop_assert_eq!(d.insert(meter, ts), model.insert(horizon, meter, ts));
                }
                let held: Vec<i64> = d.meters.get(meter).map(|s| s.iter().collect()).unwrap_or_default();
                let want: Vec<i64> = model.meters.get(meter).map(|s| s.iter().copied().collect()).unwrap_or_default();
                prop_assert_eq!(held, want);
            }
        }
    }

    #[test]
    fn a_full_horizon_takes_about_two_bytes_a_reading() {
        let mut d = Dedup::new(330_000);
        for m in 0..1000 {
            for s in 0..400i64 {
                d.insert(&format!("m{m}"), 1_767_225_600_000 + s * 1000);
            }
        }
        let per_meter = d.gap_bytes() / 1000;
        assert_eq!(d.len(), 1000 * 331);
        assert!(
            per_meter < 331 * 2 * 5 / 4 + 32,
            "{per_meter} bytes per meter"
        );
        println!("{per_meter} bytes of gaps per meter for 331 timestamps");
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
