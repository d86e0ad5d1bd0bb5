//! Fault injection: when faults start, what each does to a meter's readings,
//! and the label each reading gets.
//!
//! Faults are scheduled, not rolled for on every reading: each meter keeps
//! the tick of its next fault, drawn from an exponential wait after the
//! previous fault's quiet gap. That costs one comparison per reading, and
//! the gap guarantees the detector sees every fault against a clean
//! baseline (a fault inside the window would inflate its variance and hide
//! the next one).

use gridwatch_contracts::{AnomalyType, MeterStatus};

use crate::config::SimulatorConfig;
use crate::grid::{Frozen, Values};
use crate::model::{Expected, FaultKind};
use crate::rng::Rand;

/// The per-meter fault kinds, in the order of [`FaultPlan::cumulative`].
const METER_KINDS: [FaultKind; 6] = [
    FaultKind::Surge,
    FaultKind::Sag,
    FaultKind::Failure,
    FaultKind::Degraded,
    FaultKind::Flapping,
    FaultKind::Stuck,
];

/// Flapping: cycles per episode and readings per state (ranges).
const FLAP_CYCLES: (u32, u32) = (3, 6);
const FLAP_READINGS: (u32, u32) = (1, 3);

/// The config turned into ticks (one reading of every meter) and volts.
#[derive(Debug, Clone)]
pub(crate) struct FaultPlan {
    /// Running sums of the per-meter kinds' rates, for picking a kind.
    cumulative: [f64; 6],
    /// Mean exponential wait in ticks after a meter's gap; infinite with no
    /// per-meter faults.
    meter_wait: f64,
    feeder_wait: f64,
    gap: u64,
    pub(crate) warmup: u64,
    /// Spike sizes in volts.
    magnitude: (f64, f64),
    spike_max: u32,
    failure: f64,
    degraded: f64,
    stuck: f64,
    /// Probability that a reading is replaced by a malformed payload.
    malformed: f64,
}

fn ticks(d: std::time::Duration, interval_ms: u64) -> f64 {
    d.as_millis() as f64 / interval_ms as f64
}

impl FaultPlan {
    pub(crate) fn new(config: &SimulatorConfig) -> Self {
        let f = &config.faults;
        let interval_ms = config.interval_ms().max(1);
        let per_hour_to_per_tick = interval_ms as f64 / 3_600_000.0;
        let gap = ticks(f.gap, interval_ms);
        // Rates count whole cycles (episode, gap, wait), so the wait is what
        // is left of the mean cycle once the episode and the gap are served.
        // The 1.5 ticks are the tick that ends an episode and the rounding
        // down of the wait.
        let wait = |rate_per_hour: f64, episode_ticks: f64| {
            if rate_per_hour <= 0.0 {
                return f64::INFINITY;
            }
            let cycle = 1.0 / (rate_per_hour * per_hour_to_per_tick);
            (cycle - episode_ticks - gap - 1.5).max(0.0)
        };
        let (meter_rate, mean_episode) = f.mean_episode(config.interval);
        let spike_ticks = f64::from(f.spike_max_readings + 1) / 2.0;
        let rates = [
            f.surge_rate,
            f.sag_rate,
            f.failure_rate,
            f.degraded_rate,
            f.flapping_rate,
            f.stuck_rate,
        ];
        let mut cumulative = [0.0; 6];
        let mut sum = 0.0;
        for (slot, rate) in cumulative.iter_mut().zip(rates) {
            sum += rate;
            *slot = sum;
        }
        let sigma = config.voltage_noise;
        Self {
            cumulative,
            meter_wait: wait(meter_rate, ticks(mean_episode, interval_ms)),
            feeder_wait: wait(f.feeder_sag_rate, spike_ticks),
            gap: gap.round() as u64,
            warmup: ticks(f.warmup, interval_ms).round() as u64,
            magnitude: (f.magnitude_min * sigma, f.magnitude_max * sigma),
            spike_max: f.spike_max_readings,
            failure: ticks(f.failure_duration, interval_ms),
            degraded: ticks(f.degraded_duration, interval_ms),
            stuck: ticks(f.stuck_duration, interval_ms),
            malformed: (f.malformed_rate * per_hour_to_per_tick).min(1.0),
        }
    }

    /// The tick of the next fault on a meter (or feeder) whose last one
    /// ended at `end` (or, at start, whose warm-up ends at `end`).
    fn next(&self, end: u64, gap: u64, wait: f64, rng: &mut Rand) -> u64 {
        if wait.is_infinite() {
            return u64::MAX;
        }
        // Drawn even for a zero mean, so the stream's order does not depend on it.
        let drawn = rng.exponential(wait);
        let wait = if drawn < 1e18 { drawn as u64 } else { u64::MAX };
        end.saturating_add(gap)
            .saturating_add(1)
            .saturating_add(wait)
    }

    pub(crate) fn first_meter_fault(&self, rng: &mut Rand) -> u64 {
        self.next(self.warmup, 0, self.meter_wait, rng)
    }

    pub(crate) fn next_meter_fault(&self, end: u64, rng: &mut Rand) -> u64 {
        self.next(end, self.gap, self.meter_wait, rng)
    }

    pub(crate) fn first_feeder_sag(&self, rng: &mut Rand) -> u64 {
        self.next(self.warmup, 0, self.feeder_wait, rng)
    }

    /// Readings until the next malformed payload (geometric), counted from
    /// `after` readings from now.
    pub(crate) fn readings_to_malformed(&self, after: u64, rng: &mut Rand) -> u64 {
        if self.malformed <= 0.0 {
            return u64::MAX;
        }
        let u = rng.unit();
        if self.malformed >= 1.0 {
            return after;
        }
        let n = ((1.0 - u).ln() / (1.0 - self.malformed).ln()).floor();
        if n < 1e18 {
            after.saturating_add(n as u64)
        } else {
            u64::MAX
        }
    }

    fn magnitude(&self, rng: &mut Rand) -> f64 {
        rng.range(self.magnitude.0, self.magnitude.1)
    }

    /// A duration around `mean` ticks (half to one and a half times), at least one.
    fn length(mean: f64, rng: &mut Rand) -> u32 {
        let n = (mean * rng.range(0.5, 1.5)).round();
        if n < 1.0 {
            1
        } else if n > f64::from(u32::MAX) {
            u32::MAX
        } else {
            n as u32
        }
    }

    /// Starts a per-meter fault of a kind chosen in proportion to the rates.
    pub(crate) fn start(&self, rng: &mut Rand) -> Episode {
        let total = self.cumulative[5];
        let pick = rng.unit() * total;
        let index = self.cumulative.iter().position(|&c| pick < c).unwrap_or(5);
        match METER_KINDS[index] {
            FaultKind::Surge | FaultKind::Sag => {
                let sign = if index == 0 { 1.0 } else { -1.0 };
                Episode::Spike {
                    surge: index == 0,
                    left: rng.between(1, self.spike_max),
                    delta: sign * self.magnitude(rng),
                }
            }
            FaultKind::Failure => Episode::Failure {
                left: Self::length(self.failure, rng),
                onset: true,
            },
            FaultKind::Degraded => Episode::Degraded {
                left: Self::length(self.degraded, rng),
                onset: true,
            },
            FaultKind::Flapping => Episode::Flapping {
                cycles: rng.between(FLAP_CYCLES.0, FLAP_CYCLES.1),
                left: rng.between(FLAP_READINGS.0, FLAP_READINGS.1),
                failing: true,
                onset: true,
            },
            _ => Episode::Stuck {
                left: Self::length(self.stuck, rng),
                frozen: None,
            },
        }
    }
}

/// What a fault is doing to one meter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Episode {
    Normal,
    /// A surge (`delta > 0`) or a sag for `left` more readings, each labelled.
    Spike {
        surge: bool,
        left: u32,
        delta: f64,
    },
    /// `left` more FAILURE readings, then one labelled recovery reading.
    Failure {
        left: u32,
        onset: bool,
    },
    /// `left` more DEGRADED readings.
    Degraded {
        left: u32,
        onset: bool,
    },
    /// Toggling FAILURE and OK: `left` more readings in the current state,
    /// then `cycles` more changes back to OK.
    Flapping {
        cycles: u32,
        left: u32,
        failing: bool,
        onset: bool,
    },
    /// Repeating `frozen` (the first reading's values) for `left` more readings.
    Stuck {
        left: u32,
        frozen: Option<Frozen>,
    },
}

/// One reading as a fault leaves it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) values: Values,
    pub(crate) status: MeterStatus,
    pub(crate) label: Option<(FaultKind, Expected)>,
    /// The episode ended with this reading.
    pub(crate) ended: bool,
}

fn anomaly(kind: FaultKind, anomaly: AnomalyType) -> Option<(FaultKind, Expected)> {
    Some((kind, Expected::Anomaly(anomaly)))
}

/// What a failed meter reports: nothing flows, the enclosure cools to ambient.
fn dead(idle_temperature: f64) -> Values {
    Values {
        voltage: 0.0,
        current: 0.0,
        temperature: idle_temperature,
    }
}

impl Episode {
    /// Applies the episode to a reading whose fault-free values are `clean`,
    /// while its feeder is sagging by `feeder_sag` volts (0 when not), and
    /// moves the episode on by one reading.
    #[inline]
    pub(crate) fn apply(
        &mut self,
        clean: Values,
        idle_temperature: f64,
        feeder_sag: f64,
        rng: &mut Rand,
    ) -> Outcome {
        let mut out = Outcome {
            values: clean,
            status: MeterStatus::Ok,
            label: None,
            ended: false,
        };
        // A feeder sag reaches meters whose values are their own; a dead,
        // frozen or already spiking meter does not show it.
        let feeder_sag_applies = |out: &mut Outcome| {
            if feeder_sag != 0.0 {
                out.values.voltage += feeder_sag;
                out.label = anomaly(FaultKind::FeederSag, AnomalyType::VoltageSag);
            }
        };
        match self {
            Self::Normal => feeder_sag_applies(&mut out),
            Self::Spike { surge, left, delta } => {
                out.values.voltage += *delta;
                out.label = if *surge {
                    anomaly(FaultKind::Surge, AnomalyType::VoltageSurge)
                } else {
                    anomaly(FaultKind::Sag, AnomalyType::VoltageSag)
                };
                *left -= 1;
                out.ended = *left == 0;
            }
            Self::Failure { left, onset } => {
                if *left == 0 {
                    out.label = anomaly(FaultKind::Failure, AnomalyType::EquipmentRecovered);
                    out.ended = true;
                } else {
                    out.values = dead(idle_temperature);
                    out.status = MeterStatus::Failure;
                    if *onset {
                        out.label = anomaly(FaultKind::Failure, AnomalyType::EquipmentFailure);
                        *onset = false;
                    }
                    *left -= 1;
                }
            }
            Self::Degraded { left, onset } => {
                out.status = MeterStatus::Degraded;
                feeder_sag_applies(&mut out);
                if *onset {
                    out.label = anomaly(FaultKind::Degraded, AnomalyType::EquipmentDegraded);
                    *onset = false;
                }
                *left -= 1;
                out.ended = *left == 0;
            }
            Self::Flapping {
                cycles,
                left,
                failing,
                onset,
            } => {
                if *failing {
                    out.values = dead(idle_temperature);
                    out.status = MeterStatus::Failure;
                }
                if *onset {
                    let kind = if *failing {
                        AnomalyType::EquipmentFailure
                    } else {
                        AnomalyType::EquipmentRecovered
                    };
                    out.label = anomaly(FaultKind::Flapping, kind);
                    *onset = false;
                }
                *left -= 1;
                if *left == 0 {
                    if !*failing {
                        *cycles -= 1;
                    }
                    if *cycles == 0 {
                        out.ended = true;
                    } else {
                        *failing = !*failing;
                        *onset = true;
                        *left = rng.between(FLAP_READINGS.0, FLAP_READINGS.1);
                    }
                }
            }
            Self::Stuck { left, frozen } => match frozen {
                Some(values) => {
                    out.values = values.values();
                    *left -= 1;
                    out.ended = *left == 0;
                }
                None => {
                    // The sensor freezes on this reading; the label marks
                    // where, though no anomaly is expected.
                    *frozen = Some(Frozen::new(clean));
                    out.label = Some((FaultKind::Stuck, Expected::Undetectable));
                }
            },
        }
        if out.ended {
            *self = Self::Normal;
        }
        out
    }

    pub(crate) fn is_normal(&self) -> bool {
        matches!(self, Self::Normal)
    }
}

/// A feeder's sag schedule and its current sag.
#[derive(Debug, Clone)]
pub(crate) struct FeederSag {
    next: u64,
    left: u32,
    /// Volts added to every affected meter's voltage this tick (negative).
    pub(crate) delta: f64,
}

impl FeederSag {
    pub(crate) fn new(plan: &FaultPlan, rng: &mut Rand) -> Self {
        Self {
            next: plan.first_feeder_sag(rng),
            left: 0,
            delta: 0.0,
        }
    }

    /// Moves the schedule to tick `tick`: ends a finished sag, starts a due one.
    pub(crate) fn advance(&mut self, tick: u64, plan: &FaultPlan, rng: &mut Rand) {
        if self.left > 0 {
            self.left -= 1;
            if self.left == 0 {
                self.delta = 0.0;
                self.next = plan.next(tick, plan.gap, plan.feeder_wait, rng);
            }
        }
        if self.left == 0 && tick >= self.next {
            self.left = rng.between(1, plan.spike_max);
            self.delta = -plan.magnitude(rng);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean() -> Values {
        Values {
            voltage: 230.0,
            current: 10.0,
            temperature: 20.0,
        }
    }

    fn run(mut episode: Episode, rng: &mut Rand) -> Vec<Outcome> {
        let mut out = Vec::new();
        while out.last().is_none_or(|o: &Outcome| !o.ended) {
            out.push(episode.apply(clean(), 15.0, 0.0, rng));
            assert!(out.len() < 10_000);
        }
        assert!(episode.is_normal());
        out
    }

    #[test]
    fn a_failure_is_labelled_at_its_first_reading_and_at_recovery() {
        let mut rng = Rand::new(1);
        let out = run(
            Episode::Failure {
                left: 3,
                onset: true,
            },
            &mut rng,
        );
        assert_eq!(out.len(), 4);
        assert!(
            out[..3]
                .iter()
                .all(|o| o.status == MeterStatus::Failure && o.values.voltage == 0.0)
        );
        assert_eq!(
            out[0].label,
            anomaly(FaultKind::Failure, AnomalyType::EquipmentFailure)
        );
        assert_eq!(out[1].label, None);
        assert_eq!(out[3].status, MeterStatus::Ok);
        assert_eq!(
            out[3].label,
            anomaly(FaultKind::Failure, AnomalyType::EquipmentRecovered)
        );
    }

    #[test]
    fn flapping_labels_every_change_and_ends_ok() {
        let mut rng = Rand::new(2);
        let out = run(
            Episode::Flapping {
                cycles: 3,
                left: 1,
                failing: true,
                onset: true,
            },
            &mut rng,
        );
        let mut failures = 0;
        let mut recoveries = 0;
        let mut previous = MeterStatus::Ok;
        for o in &out {
            let changed = o.status != previous;
            assert_eq!(o.label.is_some(), changed, "{out:?}");
            match o.label {
                Some((_, Expected::Anomaly(AnomalyType::EquipmentFailure))) => failures += 1,
                Some((_, Expected::Anomaly(AnomalyType::EquipmentRecovered))) => recoveries += 1,
                _ => {}
            }
            previous = o.status;
        }
        assert_eq!((failures, recoveries), (3, 3));
        assert_eq!(out.last().map(|o| o.status), Some(MeterStatus::Ok));
    }

    #[test]
    fn a_stuck_sensor_repeats_its_first_reading() {
        let mut rng = Rand::new(3);
        let mut episode = Episode::Stuck {
            left: 2,
            frozen: None,
        };
        let first = episode.apply(clean(), 15.0, 0.0, &mut rng);
        assert_eq!(
            first.label,
            Some((FaultKind::Stuck, Expected::Undetectable))
        );
        let moved = Values {
            voltage: 231.5,
            ..clean()
        };
        let second = episode.apply(moved, 15.0, -20.0, &mut rng);
        assert_eq!(second.values, crate::grid::quantise(clean()));
        assert_eq!(second.label, None);
        assert!(!second.ended);
        assert!(episode.apply(moved, 15.0, 0.0, &mut rng).ended);
    }

    #[test]
    fn feeder_sags_reach_normal_and_degraded_meters_only() {
        let mut rng = Rand::new(4);
        let o = Episode::Normal.apply(clean(), 15.0, -12.0, &mut rng);
        assert_eq!(o.values.voltage, 218.0);
        assert_eq!(
            o.label,
            anomaly(FaultKind::FeederSag, AnomalyType::VoltageSag)
        );
        let mut degraded = Episode::Degraded {
            left: 5,
            onset: false,
        };
        let o = degraded.apply(clean(), 15.0, -12.0, &mut rng);
        assert_eq!((o.values.voltage, o.status), (218.0, MeterStatus::Degraded));
        let mut failed = Episode::Failure {
            left: 5,
            onset: false,
        };
        let o = failed.apply(clean(), 15.0, -12.0, &mut rng);
        assert_eq!((o.values.voltage, o.label), (0.0, None));
    }
}
