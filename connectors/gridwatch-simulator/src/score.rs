//! Scoring detection against the simulator's labels: precision and recall
//! per fault kind.
//!
//! A detection matches a label when they name the same meter and the label's
//! expected anomaly type, and their timestamps are within a tolerance. Each
//! label matches at most one detection and each detection at most one label
//! (a greedy pass in time order, which finds the most matches when every
//! window has the same width).
//!
//! - **Recall** of a kind: its labels that were matched, over its labels.
//!   Only kinds the z-score rule and status episodes can see have one:
//!   stuck values and malformed payloads (a validation matter) do not.
//! - **Precision** of a kind: its matched labels, over those plus the
//!   detections that matched nothing and are of a type the kind expects. A
//!   stray `VOLTAGE_SAG` thus counts against both `sag` and `feeder_sag`:
//!   it could have been either's.

use std::collections::HashMap;
use std::fmt;

use gridwatch_contracts::{AnomalyEvent, AnomalyType};
use serde::{Deserialize, Serialize};

use crate::model::{FaultKind, Label};

/// A detected anomaly, reduced to what matching needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detection {
    pub meter_id: String,
    /// Event time of the flagged reading, epoch ms.
    pub timestamp: i64,
    pub anomaly_type: AnomalyType,
}

impl From<&AnomalyEvent> for Detection {
    fn from(event: &AnomalyEvent) -> Self {
        Self {
            meter_id: event.original_event.meter_id.clone(),
            timestamp: event.original_event.timestamp,
            anomaly_type: event.anomaly_type,
        }
    }
}

/// How matching is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreOptions {
    /// Largest |detection time − label time| that still matches, ms.
    /// Default 5000: Gridwatch stamps anomalies with the reading's own
    /// time, but another detector may report a little later.
    pub tolerance_ms: i64,
    /// Labels and detections before this event time are left out, e.g.
    /// [`crate::Simulator::warmup_end_ms`], while the detector's windows
    /// hold too few readings for its z-scores to mean much.
    pub ignore_before: Option<i64>,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self {
            tolerance_ms: 5000,
            ignore_before: None,
        }
    }
}

/// The result for one fault kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindScore {
    pub kind: FaultKind,
    /// Labels of this kind.
    pub labels: u64,
    /// Labels matched by a detection (true positives).
    pub detected: u64,
    /// Unmatched detections of a type this kind expects.
    pub false_positives: u64,
}

fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

impl KindScore {
    /// Labels that no detection matched.
    pub fn missed(&self) -> u64 {
        self.labels - self.detected
    }

    /// `None` for kinds the detector is not expected to see, or without labels.
    pub fn recall(&self) -> Option<f64> {
        if !self.kind.detectable() {
            return None;
        }
        ratio(self.detected, self.labels)
    }

    /// `None` for kinds the detector is not expected to see, or when nothing
    /// of the kind's types was detected.
    pub fn precision(&self) -> Option<f64> {
        if !self.kind.detectable() {
            return None;
        }
        ratio(self.detected, self.detected + self.false_positives)
    }
}

/// Precision and recall per fault kind, and the detections nothing explains.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// One entry per kind that has labels or false positives, in
    /// [`FaultKind::ALL`] order.
    pub kinds: Vec<KindScore>,
    /// Detections considered (after `ignore_before`).
    pub detections: u64,
    /// Detections that matched a label.
    pub matched: u64,
    /// Detections that matched no label: false positives, or faults of a
    /// kind the simulator did not label.
    pub unmatched: Vec<Detection>,
}

impl Score {
    pub fn kind(&self, kind: FaultKind) -> Option<&KindScore> {
        self.kinds.iter().find(|k| k.kind == kind)
    }

    /// Matched detections over all detections.
    pub fn precision(&self) -> Option<f64> {
        ratio(self.matched, self.detections)
    }

    /// Matched labels over all labels of detectable kinds.
    pub fn recall(&self) -> Option<f64> {
        let detectable = self.kinds.iter().filter(|k| k.kind.detectable());
        let (hit, all) = detectable.fold((0, 0), |(h, a), k| (h + k.detected, a + k.labels));
        ratio(hit, all)
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{:.3}", x));
        writeln!(
            f,
            "{:<11} {:>7} {:>8} {:>6} {:>6} {:>9} {:>6}",
            "kind", "labels", "detected", "missed", "false+", "precision", "recall"
        )?;
        for k in &self.kinds {
            writeln!(
                f,
                "{:<11} {:>7} {:>8} {:>6} {:>6} {:>9} {:>6}",
                k.kind.as_str(),
                k.labels,
                k.detected,
                k.missed(),
                k.false_positives,
                pct(k.precision()),
                pct(k.recall())
            )?;
        }
        write!(
            f,
            "overall: {} detections, {} matched, precision {}, recall {}",
            self.detections,
            self.matched,
            pct(self.precision()),
            pct(self.recall())
        )
    }
}

/// Scores `detections` against `labels`.
pub fn score(labels: &[Label], detections: &[Detection], options: ScoreOptions) -> Score {
    let keep = |ts: i64| options.ignore_before.is_none_or(|from| ts >= from);
    let tolerance = options.tolerance_ms.max(0);

    // Candidates grouped by (meter, anomaly type), holding (time, index).
    type Groups<'a> = HashMap<(&'a str, AnomalyType), (Vec<(i64, usize)>, Vec<(i64, usize)>)>;
    let mut groups: Groups<'_> = HashMap::new();
    let mut label_counts: HashMap<FaultKind, u64> = HashMap::new();
    for (i, label) in labels.iter().enumerate().filter(|(_, l)| keep(l.timestamp)) {
        *label_counts.entry(label.kind).or_default() += 1;
        if let Some(kind) = label.expected.anomaly() {
            groups
                .entry((label.meter_id.as_str(), kind))
                .or_default()
                .0
                .push((label.timestamp, i));
        }
    }
    let mut considered = 0u64;
    for (j, d) in detections
        .iter()
        .enumerate()
        .filter(|(_, d)| keep(d.timestamp))
    {
        considered += 1;
        groups
            .entry((d.meter_id.as_str(), d.anomaly_type))
            .or_default()
            .1
            .push((d.timestamp, j));
    }

    let mut detected: HashMap<FaultKind, u64> = HashMap::new();
    let mut unmatched: Vec<usize> = Vec::new();
    for (mut group_labels, mut group_detections) in groups.into_values() {
        group_labels.sort_unstable();
        group_detections.sort_unstable();
        let (mut i, mut j) = (0, 0);
        while j < group_detections.len() {
            let (dt, dj) = group_detections[j];
            match group_labels.get(i) {
                Some(&(lt, _)) if lt < dt - tolerance => i += 1,
                Some(&(lt, li)) if lt <= dt + tolerance => {
                    *detected.entry(labels[li].kind).or_default() += 1;
                    i += 1;
                    j += 1;
                }
                _ => {
                    unmatched.push(dj);
                    j += 1;
                }
            }
        }
    }
    unmatched.sort_unstable();
    let unmatched: Vec<Detection> = unmatched
        .into_iter()
        .map(|j| detections[j].clone())
        .collect();

    let kinds = FaultKind::ALL
        .into_iter()
        .map(|kind| KindScore {
            kind,
            labels: label_counts.get(&kind).copied().unwrap_or(0),
            detected: detected.get(&kind).copied().unwrap_or(0),
            false_positives: unmatched
                .iter()
                .filter(|d| kind.expected_types().contains(&d.anomaly_type))
                .count() as u64,
        })
        .filter(|k| k.labels > 0 || k.false_positives > 0)
        .collect();
    Score {
        kinds,
        detections: considered,
        matched: considered - unmatched.len() as u64,
        unmatched,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Expected, Malformation};

    fn label(meter: &str, ts: i64, kind: FaultKind, expected: AnomalyType) -> Label {
        Label {
            meter_id: meter.into(),
            timestamp: ts,
            kind,
            expected: Expected::Anomaly(expected),
        }
    }

    fn detection(meter: &str, ts: i64, anomaly_type: AnomalyType) -> Detection {
        Detection {
            meter_id: meter.into(),
            timestamp: ts,
            anomaly_type,
        }
    }

    #[test]
    fn matches_by_meter_type_and_tolerance_one_to_one() {
        use AnomalyType::*;
        let labels = vec![
            label("a", 10_000, FaultKind::Surge, VoltageSurge),
            label("a", 60_000, FaultKind::Surge, VoltageSurge),
            label("b", 10_000, FaultKind::Sag, VoltageSag),
            label("c", 10_000, FaultKind::FeederSag, VoltageSag),
            Label {
                meter_id: "d".into(),
                timestamp: 5,
                kind: FaultKind::Stuck,
                expected: Expected::Undetectable,
            },
            Label {
                meter_id: "d".into(),
                timestamp: 7,
                kind: FaultKind::Malformed,
                expected: Expected::DeadLetter(Malformation::Binary),
            },
        ];
        let detections = vec![
            detection("a", 12_000, VoltageSurge), // within 5 s of the first surge
            detection("a", 13_000, VoltageSurge), // a second match for it: unmatched
            detection("a", 70_000, VoltageSurge), // 10 s late: unmatched, second surge missed
            detection("b", 10_000, VoltageSurge), // wrong type: unmatched, sag missed
            detection("c", 10_000, VoltageSag),
            detection("e", 1, CurrentHigh), // a type no kind expects
        ];
        let s = score(&labels, &detections, ScoreOptions::default());
        let surge = s.kind(FaultKind::Surge).unwrap();
        assert_eq!(
            (surge.labels, surge.detected, surge.false_positives),
            (2, 1, 3)
        );
        assert_eq!(surge.recall(), Some(0.5));
        assert_eq!(surge.precision(), Some(0.25));
        let sag = s.kind(FaultKind::Sag).unwrap();
        assert_eq!((sag.labels, sag.detected, sag.false_positives), (1, 0, 0));
        assert_eq!(sag.precision(), None);
        let feeder = s.kind(FaultKind::FeederSag).unwrap();
        assert_eq!(
            (feeder.recall(), feeder.precision()),
            (Some(1.0), Some(1.0))
        );
        let stuck = s.kind(FaultKind::Stuck).unwrap();
        assert_eq!((stuck.labels, stuck.recall()), (1, None));
        assert_eq!(s.kind(FaultKind::Malformed).unwrap().labels, 1);
        assert_eq!((s.detections, s.matched, s.unmatched.len()), (6, 2, 4));
        assert_eq!(s.recall(), Some(0.5));
        assert!(s.to_string().contains("surge"));
    }

    #[test]
    fn ignore_before_drops_early_labels_and_detections() {
        use AnomalyType::*;
        let labels = vec![label("a", 100, FaultKind::Sag, VoltageSag)];
        let detections = vec![
            detection("a", 100, VoltageSag),
            detection("a", 50, VoltageSurge),
        ];
        let s = score(
            &labels,
            &detections,
            ScoreOptions {
                tolerance_ms: 0,
                ignore_before: Some(101),
            },
        );
        assert!(s.kinds.is_empty());
        assert_eq!(s.detections, 0);
    }
}
