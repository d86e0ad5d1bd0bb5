//! Per-meter state and the rule that turns a reading into a [`ScoredReading`].

use std::collections::HashMap;

use gridwatch_contracts::fast::{ReadingRef, ScoreRef};
use gridwatch_contracts::id::anomaly_id;
use gridwatch_contracts::{
    AnomalyEvent, AnomalyType, Disposition, FieldScore, MeterStatus, ScoredReading, SensorReading,
    Severity,
};

use crate::config::DetectorConfig;
use crate::stats::{Moments, RunningStats};
use crate::window::{MAX_FIELDS, Window};
use crate::{MIN_STDDEV, ScoredField};

/// The z-score detector for any number of meters.
///
/// Feed it readings in arrival order with [`Detector::process`]. It holds one
/// window per meter, evicts idle meters (so memory is bounded by the active
/// meters, not by every meter ever seen), and is deterministic: the same
/// input in the same order gives the same output, ids included.
#[derive(Debug)]
pub struct Detector {
    config: DetectorConfig,
    window_ms: i64,
    lateness_ms: i64,
    idle_ms: i64,
    /// foldhash rather than SipHash: one lookup per reading, where SipHash
    /// was a visible share of the per-reading cost.
    meters: HashMap<Box<str>, MeterState, foldhash::fast::RandomState>,
    /// The newest event time seen from any meter: the clock for eviction.
    watermark: i64,
    readings_since_sweep: usize,
    /// Reused for decoding a window when its sums are rebuilt, so the
    /// rebuild does not allocate once it has grown to the largest window.
    scratch: Vec<f64>,
}

/// One meter's window and episode state.
#[derive(Debug)]
struct MeterState {
    /// The readings in the window, oldest first: event time and the
    /// scored values, compactly encoded (see [`crate::window`]).
    window: Window,
    stats: Vec<RunningStats>,
    /// Newest event time seen from this meter; readings before it are late.
    newest: i64,
    /// Status of the newest in-order reading: the current episode.
    status: MeterStatus,
    /// A FAILURE episode has not yet been followed by an OK reading.
    awaiting_recovery: bool,
}

impl MeterState {
    fn new(fields: usize) -> Self {
        Self {
            window: Window::new(fields),
            stats: vec![RunningStats::default(); fields],
            newest: i64::MIN,
            status: MeterStatus::Ok,
            awaiting_recovery: false,
        }
    }

    fn len(&self) -> usize {
        self.window.len()
    }

    /// Drops readings older than `cutoff` (event time) from the window.
    /// `scratch` is reused to decode the window when the sums are rebuilt.
    fn evict_before(&mut self, cutoff: i64, scratch: &mut Vec<f64>) {
        let mut old = [0.0; MAX_FIELDS];
        while self.window.front_time().is_some_and(|ts| ts < cutoff) {
            self.window.pop_front(&mut old);
            let len = self.window.len();
            let mut rebuild = false;
            for (stats, &x) in self.stats.iter_mut().zip(&old) {
                rebuild |= stats.pop_front(x, len);
            }
            if rebuild {
                self.window.decode_columns(scratch);
                for (stats, column) in self.stats.iter_mut().zip(scratch.chunks_exact(len.max(1))) {
                    stats.rebuild(column.iter().copied());
                }
            }
        }
    }

    /// Adds a reading's values at its place in event-time order.
    fn insert(&mut self, ts: i64, values: &[f64]) {
        if self.window.back_time().is_none_or(|last| last <= ts) {
            self.window.push_back(ts, values);
            let len = self.window.len();
            for (stats, &x) in self.stats.iter_mut().zip(values) {
                stats.push_back(x, len);
            }
        } else {
            // A late reading within the allowed lateness: keep the window
            // sorted so eviction by time stays a pop from the front.
            self.window.insert_sorted(ts, values);
            for (stats, &x) in self.stats.iter_mut().zip(values) {
                stats.insert_middle(x);
            }
        }
    }

    fn moments(&self, field: usize) -> Moments {
        self.stats[field].moments(self.len())
    }
}

impl Detector {
    /// A detector with a validated config (see [`DetectorConfig::validate`]).
    pub fn new(config: DetectorConfig) -> Self {
        Self {
            window_ms: config.window_ms(),
            lateness_ms: config.lateness_ms(),
            idle_ms: config.idle_ms(),
            config,
            meters: HashMap::default(),
            watermark: i64::MIN,
            readings_since_sweep: 0,
            scratch: Vec::new(),
        }
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Meters currently held in memory.
    pub fn meters(&self) -> usize {
        self.meters.len()
    }

    /// Readings held across all windows.
    pub fn window_readings(&self) -> usize {
        self.meters.values().map(MeterState::len).sum()
    }

    /// Scores one reading and updates state.
    ///
    /// `source_offset` is the reading's position in its source partition (it
    /// feeds the anomaly ids); `detected_at` is the wall-clock time stamped on
    /// anomalies and is not part of their identity.
    pub fn process(
        &mut self,
        reading: &SensorReading,
        source_offset: i64,
        detected_at: i64,
    ) -> ScoredReading {
        let mut out = ScoredReading {
            reading: reading.clone(),
            source_offset,
            disposition: Disposition::Scored,
            scores: Vec::new(),
            anomalies: Vec::new(),
        };
        self.process_into(&mut out, detected_at);
        out
    }

    /// As [`Detector::process`], reading from and writing to `out`, whose
    /// `reading` and `source_offset` are the input. Reuses `out`'s vectors.
    pub fn process_into(&mut self, out: &mut ScoredReading, detected_at: i64) {
        let mut scores = Scores::default();
        std::mem::swap(&mut scores.anomalies, &mut out.anomalies);
        self.score(
            &ReadingRef::of(&out.reading),
            out.source_offset,
            detected_at,
            &mut scores,
        );
        out.disposition = scores.disposition;
        out.scores.clear();
        out.scores
            .extend(scores.fields().iter().map(FieldEvidence::to_field_score));
        out.anomalies = scores.anomalies;
    }

    /// The rule itself, on a borrowed reading: what [`Detector::process`]
    /// does, with the per-field evidence kept in `out` without allocating
    /// (anomalies, which are rare, are built in full).
    pub fn score(
        &mut self,
        reading: &ReadingRef<'_>,
        source_offset: i64,
        detected_at: i64,
        out: &mut Scores,
    ) {
        out.disposition = Disposition::Scored;
        out.len = 0;
        out.anomalies.clear();
        let ts = reading.timestamp;

        let k = self.config.fields.len();
        let mut values = [0.0f64; ScoredField::ALL.len()];
        for (slot, field) in values.iter_mut().zip(&self.config.fields) {
            *slot = field.value_of(reading);
        }
        let values = &values[..k];
        if values.iter().any(|v| !v.is_finite()) {
            out.disposition = Disposition::Invalid;
            return;
        }

        self.watermark = self.watermark.max(ts);
        self.maybe_sweep();
        let fields = &self.config.fields;
        let state = match self.meters.get_mut(reading.meter_id) {
            Some(state) => state,
            None => self
                .meters
                .entry(reading.meter_id.into())
                .or_insert_with(|| MeterState::new(k)),
        };

        let in_order = ts >= state.newest;
        // Saturating: a replacement upstream module may hand over any i64
        // timestamp, and detect must not panic (debug) or wrap (release) on it.
        if !in_order && state.newest.saturating_sub(ts) > self.lateness_ms {
            out.disposition = Disposition::Late;
            return;
        }

        let anomalies = &mut out.anomalies;
        let mut push = |kind: AnomalyType, severity: Severity, evidence: Option<Evidence>| {
            anomalies.push(AnomalyEvent {
                anomaly_id: anomaly_id(reading.meter_id, ts, source_offset, kind),
                anomaly_type: kind,
                severity,
                detected_at,
                original_event: reading.to_owned(),
                field: evidence.map(|e| e.field.name().to_string()),
                zscore: evidence.map(|e| e.z),
                window_mean: evidence.map(|e| e.mean),
                window_stddev: evidence.map(|e| e.stddev),
                window_count: evidence.map(|e| e.count),
                threshold: evidence.map(|_| self.config.threshold),
                window_ms: evidence.map(|_| self.window_ms),
            });
        };

        // Status episodes follow event time, so only in-order readings move them.
        if in_order {
            state.newest = ts;
            let previous = state.status;
            match reading.status {
                MeterStatus::Failure => {
                    state.awaiting_recovery = true;
                    if previous != MeterStatus::Failure {
                        push(AnomalyType::EquipmentFailure, Severity::Critical, None);
                    }
                }
                MeterStatus::Degraded if previous != MeterStatus::Degraded => {
                    push(AnomalyType::EquipmentDegraded, Severity::Warning, None);
                }
                MeterStatus::Ok if state.awaiting_recovery => {
                    state.awaiting_recovery = false;
                    push(AnomalyType::EquipmentRecovered, Severity::Info, None);
                }
                _ => {}
            }
            state.status = reading.status;
        }

        if reading.status == MeterStatus::Failure {
            // Measurements from a failed device are not trusted: neither
            // scored nor allowed to shape the baseline.
            out.disposition = Disposition::ExcludedFailure;
            return;
        }

        state.evict_before(ts.saturating_sub(self.window_ms), &mut self.scratch);
        let threshold = self.config.threshold;
        let min_samples = self.config.min_samples as usize;
        for (i, (&field, &x)) in fields.iter().zip(values).enumerate() {
            let m = state.moments(i);
            let z = match (m.mean, m.stddev) {
                (Some(mean), Some(sd)) if m.count >= min_samples && sd > MIN_STDDEV => {
                    Some((x - mean) / sd)
                }
                _ => None,
            };
            let anomalous = z.is_some_and(|z| z.abs() > threshold);
            if let (Some(z), true) = (z, anomalous) {
                let kind = if z > 0.0 { field.high() } else { field.low() };
                let severity = severity(z, threshold);
                push(
                    kind,
                    severity,
                    Some(Evidence {
                        field,
                        z,
                        mean: m.mean.unwrap_or_default(),
                        stddev: m.stddev.unwrap_or_default(),
                        count: i32::try_from(m.count).unwrap_or(i32::MAX),
                    }),
                );
            }
            out.evidence[out.len] = FieldEvidence {
                field,
                value: x,
                window_count: i32::try_from(m.count).unwrap_or(i32::MAX),
                window_mean: m.mean,
                window_stddev: m.stddev,
                zscore: z,
                anomalous,
            };
            out.len += 1;
        }
        // Every valid reading joins the baseline after it has been scored.
        state.insert(ts, values);
    }

    /// Frees idle meters. Runs once per as many readings as there are meters,
    /// so the sweep costs O(1) per reading amortised.
    fn maybe_sweep(&mut self) {
        self.readings_since_sweep += 1;
        if self.readings_since_sweep < self.meters.len().max(1024) {
            return;
        }
        self.readings_since_sweep = 0;
        let forget_before = self.watermark.saturating_sub(self.idle_ms);
        // A window whose newest reading is older than this can never be part
        // of a future baseline, assuming meter clocks agree within the lateness.
        let empty_before = self
            .watermark
            .saturating_sub(self.window_ms)
            .saturating_sub(self.lateness_ms);
        self.meters.retain(|_, state| {
            if state.newest < forget_before {
                return false;
            }
            if state.newest < empty_before && !state.window.is_empty() {
                state.window = Window::new(state.stats.len());
                for stats in &mut state.stats {
                    *stats = RunningStats::default();
                }
            }
            true
        });
    }
}

/// The evidence for one scored field: a [`FieldScore`] whose name is the
/// field's, not a `String`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldEvidence {
    pub field: ScoredField,
    pub value: f64,
    pub window_count: i32,
    pub window_mean: Option<f64>,
    pub window_stddev: Option<f64>,
    pub zscore: Option<f64>,
    pub anomalous: bool,
}

impl FieldEvidence {
    pub fn to_field_score(&self) -> FieldScore {
        FieldScore {
            field: self.field.name().to_string(),
            value: self.value,
            window_count: self.window_count,
            window_mean: self.window_mean,
            window_stddev: self.window_stddev,
            zscore: self.zscore,
            anomalous: self.anomalous,
        }
    }

    /// The same, borrowed, for `gridwatch_contracts::fast`.
    pub fn as_score_ref(&self) -> ScoreRef<'static> {
        ScoreRef {
            field: self.field.name(),
            value: self.value,
            window_count: self.window_count,
            window_mean: self.window_mean,
            window_stddev: self.window_stddev,
            zscore: self.zscore,
            anomalous: self.anomalous,
        }
    }
}

/// What [`Detector::score`] found for one reading. Reuse it across
/// readings: only anomalies allocate.
#[derive(Debug, Clone)]
pub struct Scores {
    pub disposition: Disposition,
    evidence: [FieldEvidence; ScoredField::ALL.len()],
    len: usize,
    pub anomalies: Vec<AnomalyEvent>,
}

impl Default for Scores {
    fn default() -> Self {
        Self {
            disposition: Disposition::Scored,
            evidence: [FieldEvidence {
                field: ScoredField::Voltage,
                value: 0.0,
                window_count: 0,
                window_mean: None,
                window_stddev: None,
                zscore: None,
                anomalous: false,
            }; ScoredField::ALL.len()],
            len: 0,
            anomalies: Vec::new(),
        }
    }
}

impl Scores {
    /// The scored fields, in the configured order.
    pub fn fields(&self) -> &[FieldEvidence] {
        &self.evidence[..self.len]
    }
}

#[derive(Debug, Clone, Copy)]
struct Evidence {
    field: ScoredField,
    z: f64,
    mean: f64,
    stddev: f64,
    count: i32,
}

/// |z| > T + 2 is CRITICAL, |z| > T + 1 is ERROR, otherwise WARNING.
pub fn severity(z: f64, threshold: f64) -> Severity {
    let a = z.abs();
    if a > threshold + 2.0 {
        Severity::Critical
    } else if a > threshold + 1.0 {
        Severity::Error
    } else {
        Severity::Warning
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use gridwatch_contracts::{AnomalyType as A, Severity as S};

    use super::*;

    fn reading(meter: &str, ts: i64, voltage: f64, status: MeterStatus) -> SensorReading {
        SensorReading {
            meter_id: meter.into(),
            timestamp: ts,
            voltage,
            current: 5.0,
            temperature: 20.0,
            status,
        }
    }

    fn ok(meter: &str, ts: i64, voltage: f64) -> SensorReading {
        reading(meter, ts, voltage, MeterStatus::Ok)
    }

    fn detector(min_samples: u32, window_s: u64) -> Detector {
        Detector::new(DetectorConfig {
            min_samples,
            window: Duration::from_secs(window_s),
            ..DetectorConfig::default()
        })
    }

    fn kinds(s: &ScoredReading) -> Vec<(A, S)> {
        s.anomalies
            .iter()
            .map(|a| (a.anomaly_type, a.severity))
            .collect()
    }

    /// A baseline of [-1, -1, 0, 1, 1]: mean exactly 0, sample stddev exactly 1.
    fn unit_baseline(d: &mut Detector) -> i64 {
        for (i, v) in [-1.0, -1.0, 0.0, 1.0, 1.0].into_iter().enumerate() {
            d.process(&ok("m", i as i64 * 1000, v), i as i64, 0);
        }
        5000
    }

    #[test]
    fn exactly_at_the_threshold_is_not_an_anomaly() {
        let mut d = detector(5, 300);
        let t = unit_baseline(&mut d);
        let s = d.process(&ok("m", t, 2.5), 5, 0);
        assert_eq!(s.scores[0].zscore, Some(2.5));
        assert!(!s.scores[0].anomalous && s.anomalies.is_empty());

        let mut d = detector(5, 300);
        unit_baseline(&mut d);
        let s = d.process(&ok("m", t, -2.500_000_1), 5, 0);
        assert_eq!(kinds(&s), vec![(A::VoltageSag, S::Warning)]);
        let a = &s.anomalies[0];
        assert_eq!(
            (a.window_mean, a.window_stddev, a.window_count),
            (Some(0.0), Some(1.0), Some(5))
        );
        assert_eq!((a.threshold, a.window_ms), (Some(2.5), Some(300_000)));
        assert_eq!(a.field.as_deref(), Some("voltage"));
    }

    #[test]
    fn severity_boundaries_are_strict() {
        assert_eq!(severity(3.5, 2.5), S::Warning);
        assert_eq!(severity(3.500_001, 2.5), S::Error);
        assert_eq!(severity(-4.5, 2.5), S::Error);
        assert_eq!(severity(-4.500_001, 2.5), S::Critical);
        let mut d = detector(5, 300);
        let t = unit_baseline(&mut d);
        let s = d.process(&ok("m", t, 9.0), 5, 0);
        assert_eq!(kinds(&s), vec![(A::VoltageSurge, S::Critical)]);
    }

    #[test]
    fn zero_variance_is_never_scored() {
        let mut d = detector(3, 300);
        for i in 0..20 {
            let s = d.process(&ok("flat", i * 1000, 231.7), i, 0);
            assert!(s.anomalies.is_empty());
            if i >= 2 {
                assert_eq!(s.scores[0].window_stddev, Some(0.0));
                assert_eq!(s.scores[0].zscore, None);
            }
        }
        // A step against a flat window is not scored either: stddev is 0.
        let s = d.process(&ok("flat", 20_000, 260.0), 20, 0);
        assert_eq!(s.scores[0].zscore, None);
        assert!(s.anomalies.is_empty());
        // Once the step is in the window, variance is real and readings score.
        let s = d.process(&ok("flat", 21_000, 231.7), 21, 0);
        assert!(s.scores[0].zscore.is_some());
    }

    #[test]
    fn fewer_than_min_samples_is_not_scored() {
        let mut d = detector(10, 300);
        for i in 0..10 {
            let s = d.process(&ok("m", i * 1000, 230.0 + (i % 2) as f64), i, 0);
            assert_eq!(s.scores[0].window_count, i as i32);
            assert_eq!(s.scores[0].zscore, None, "only {i} samples");
        }
        let s = d.process(&ok("m", 10_000, 500.0), 10, 0);
        assert_eq!(s.scores[0].window_count, 10);
        assert_eq!(kinds(&s), vec![(A::VoltageSurge, S::Critical)]);
    }

    #[test]
    fn window_includes_t_minus_w_and_excludes_older() {
        let mut d = detector(2, 10);
        d.process(&ok("m", 0, 1.0), 0, 0);
        d.process(&ok("m", 5_000, 2.0), 1, 0);
        let s = d.process(&ok("m", 10_000, 3.0), 2, 0);
        assert_eq!(
            s.scores[0].window_count, 2,
            "ts 0 is exactly t - W: included"
        );
        let s = d.process(&ok("m", 10_001, 3.0), 3, 0);
        assert_eq!(
            s.scores[0].window_count, 2,
            "ts 0 is now older than t - W: evicted"
        );
        assert_eq!(s.scores[0].window_mean, Some(2.5));
    }

    #[test]
    fn non_finite_values_are_invalid_and_leave_state_alone() {
        let mut d = detector(2, 300);
        d.process(&ok("m", 0, 1.0), 0, 0);
        d.process(&ok("m", 1000, 2.0), 1, 0);
        for (i, v) in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY]
            .into_iter()
            .enumerate()
        {
            let s = d.process(&ok("m", 2000 + i as i64, v), 2, 0);
            assert_eq!(s.disposition, Disposition::Invalid);
            assert!(s.anomalies.is_empty() && s.scores.is_empty());
        }
        let s = d.process(&ok("m", 3000, 1.5), 3, 0);
        assert_eq!(s.scores[0].window_count, 2);
    }

    #[test]
    fn status_episodes_give_failure_degraded_and_recovered_once_each() {
        use MeterStatus::{Degraded as D, Failure as F, Ok as O};
        let mut d = detector(2, 300);
        let statuses = [O, F, F, D, D, O, O, D, D, O, F, O, O];
        let mut got = Vec::new();
        for (i, st) in statuses.into_iter().enumerate() {
            let s = d.process(&reading("m", i as i64 * 1000, 230.0, st), i as i64, 0);
            if st == F {
                assert_eq!(s.disposition, Disposition::ExcludedFailure);
                assert!(s.scores.is_empty());
            }
            got.extend(kinds(&s).into_iter().map(|k| (i, k)));
        }
        assert_eq!(
            got,
            vec![
                (1, (A::EquipmentFailure, S::Critical)),
                (3, (A::EquipmentDegraded, S::Warning)),
                (5, (A::EquipmentRecovered, S::Info)),
                (7, (A::EquipmentDegraded, S::Warning)),
                (10, (A::EquipmentFailure, S::Critical)),
                (11, (A::EquipmentRecovered, S::Info)),
            ]
        );
    }

    #[test]
    fn failure_readings_do_not_enter_the_window() {
        let mut d = detector(2, 300);
        d.process(&ok("m", 0, 230.0), 0, 0);
        d.process(&reading("m", 1000, 0.0, MeterStatus::Failure), 1, 0);
        let s = d.process(&ok("m", 2000, 231.0), 2, 0);
        assert_eq!(s.scores[0].window_count, 1);
        assert_eq!(s.scores[0].window_mean, Some(230.0));
    }

    #[test]
    fn degraded_readings_are_scored_and_windowed() {
        let mut d = detector(5, 300);
        let t = unit_baseline(&mut d);
        let s = d.process(&reading("m", t, 10.0, MeterStatus::Degraded), 5, 0);
        assert_eq!(
            kinds(&s),
            vec![
                (A::EquipmentDegraded, S::Warning),
                (A::VoltageSurge, S::Critical)
            ]
        );
        let ids: Vec<_> = s.anomalies.iter().map(|a| &a.anomaly_id).collect();
        assert_ne!(ids[0], ids[1], "one reading, two anomalies, two ids");
        let s = d.process(&ok("m", t + 1000, 0.0), 6, 0);
        assert_eq!(s.scores[0].window_count, 6);
    }

    #[test]
    fn other_fields_score_with_their_own_types() {
        let mut d = Detector::new(DetectorConfig {
            min_samples: 5,
            fields: vec![ScoredField::Voltage, ScoredField::Temperature],
            ..DetectorConfig::default()
        });
        for (i, v) in [-1.0, -1.0, 0.0, 1.0, 1.0].into_iter().enumerate() {
            let mut r = ok("m", i as i64 * 1000, 230.0 + v);
            r.temperature = 20.0 + v;
            d.process(&r, i as i64, 0);
        }
        let mut r = ok("m", 5000, 230.0);
        r.temperature = 10.0;
        let s = d.process(&r, 5, 0);
        assert_eq!(kinds(&s), vec![(A::TemperatureLow, S::Critical)]);
        assert_eq!(s.scores.len(), 2);
        assert_eq!(s.anomalies[0].field.as_deref(), Some("temperature"));
    }

    #[test]
    fn late_readings_within_lateness_are_scored_later_ones_are_not() {
        let mut d = detector(2, 300);
        for i in 0..10 {
            d.process(&ok("m", 100_000 + i * 1000, 230.0 + (i % 3) as f64), i, 0);
        }
        // Newest is 109_000; 3 s late is within the default 5 s.
        let s = d.process(&ok("m", 106_000, 231.0), 10, 0);
        assert_eq!(s.disposition, Disposition::Scored);
        assert_eq!(s.scores[0].window_count, 10);
        let s = d.process(&ok("m", 110_000, 231.0), 11, 0);
        assert_eq!(s.scores[0].window_count, 11, "the late reading joined");
        // 10 s late: passed on as LATE, not scored, not windowed.
        let s = d.process(&ok("m", 100_000, 999.0), 12, 0);
        assert_eq!(s.disposition, Disposition::Late);
        assert!(s.anomalies.is_empty() && s.scores.is_empty());
        let s = d.process(&ok("m", 111_000, 231.0), 13, 0);
        assert_eq!(s.scores[0].window_count, 12);
    }

    #[test]
    fn late_status_readings_do_not_move_episodes() {
        let mut d = detector(2, 300);
        d.process(&ok("m", 10_000, 230.0), 0, 0);
        let s = d.process(&reading("m", 8_000, 230.0, MeterStatus::Failure), 1, 0);
        assert!(s.anomalies.is_empty());
        let s = d.process(&ok("m", 11_000, 230.0), 2, 0);
        assert!(
            s.anomalies.is_empty(),
            "no recovery without an in-order failure"
        );
    }

    #[test]
    fn idle_meters_are_evicted_and_memory_stays_bounded() {
        let mut d = detector(2, 60);
        // 5,000 meters report once, then go silent.
        for m in 0..5_000 {
            d.process(&ok(&format!("old-{m}"), 0, 230.0), m, 0);
        }
        assert_eq!(d.meters(), 5_000);
        // One meter keeps reporting for two hours of event time.
        for i in 0..7_200 {
            d.process(&ok("live", i * 1000, 230.0 + (i % 5) as f64), 5_000 + i, 0);
        }
        assert_eq!(d.meters(), 1, "silent meters forgotten after idle_timeout");
        assert!(d.window_readings() <= 61, "only the live window remains");
    }

    #[test]
    fn silent_meter_window_is_freed_but_episode_kept_until_idle_timeout() {
        let mut d = detector(2, 60);
        d.process(&reading("gappy", 0, 0.0, MeterStatus::Failure), 0, 0);
        d.process(&ok("gappy", 1_000, 230.0), 1, 0);
        d.process(&reading("gappy", 2_000, 0.0, MeterStatus::Failure), 2, 0);
        for i in 0..2_000 {
            d.process(
                &ok("other", 3_000 + i * 1000, 230.0 + (i % 3) as f64),
                3 + i,
                0,
            );
        }
        assert_eq!(
            d.window_readings(),
            61,
            "gappy's window freed, other's kept"
        );
        let s = d.process(&ok("gappy", 2_100_000, 230.0), 5_000, 0);
        assert_eq!(kinds(&s), vec![(A::EquipmentRecovered, S::Info)]);
        assert_eq!(s.scores[0].window_count, 0);
    }

    #[test]
    fn replays_are_deterministic() {
        let input: Vec<_> = (0..500)
            .map(|i| {
                ok(
                    &format!("m{}", i % 3),
                    i * 400,
                    230.0 + ((i * 37) % 11) as f64,
                )
            })
            .collect();
        let run = |detected_at| {
            let mut d = detector(5, 30);
            input
                .iter()
                .enumerate()
                .map(|(o, r)| d.process(r, o as i64, detected_at))
                .collect::<Vec<_>>()
        };
        let (a, b) = (run(1), run(2));
        assert!(a.iter().any(|s| !s.anomalies.is_empty()));
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.scores, y.scores);
            assert_eq!(x.anomalies.len(), y.anomalies.len());
            for (p, q) in x.anomalies.iter().zip(&y.anomalies) {
                assert!(p.eq_ignoring_detected_at(q));
            }
        }
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        // Found by fuzz/fuzz_targets/detect_map.rs: a reading far before its
        // meter's newest overflowed `newest - ts`. Such a reading is late.
        let mut d = detector(2, 300);
        d.process(&ok("m", i64::MAX, 230.0), 0, 0);
        let s = d.process(&ok("m", i64::MIN, 230.0), 1, 0);
        assert_eq!(s.disposition, Disposition::Late);
        let s = d.process(&ok("m", 6_582_955_728_264_977_243, 230.0), 2, 0);
        assert_eq!(s.disposition, Disposition::Late);
    }
}
