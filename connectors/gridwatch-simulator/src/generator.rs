//! The synchronous generator: one deterministic stream of events.
//!
//! Event time advances in ticks of `interval`; in each tick every meter
//! reads once, meter `i` of `n` at `i / n` of the way through the tick, so
//! timestamps never go backwards and meters interleave. Everything random
//! comes from one seeded stream consumed in that order, which is why the
//! output does not depend on how callers batch or pace it.

use std::time::SystemTime;

use gridwatch_contracts::{ConfigError, MeterStatus, SensorReading};

use crate::config::SimulatorConfig;
use crate::faults::{Episode, FaultPlan, FeederSag};
use crate::grid::{self, Feeder, Site};
use crate::model::{Expected, FaultKind, Label, Malformation, SimEvent};
use crate::rng::Rand;

/// One simulated meter: its id (built once, cloned into each reading), its
/// place on the grid and its fault state.
#[derive(Debug, Clone)]
struct Meter {
    id: Box<str>,
    feeder: u32,
    site: Site,
    next_fault: u64,
    episode: Episode,
}

/// A deterministic smart-meter simulator.
///
/// Memory is O(meters): about 100 bytes each. It is also an endless
/// [`Iterator`] of [`SimEvent`]s (ending only at `max_events`).
#[derive(Debug, Clone)]
pub struct Simulator {
    config: SimulatorConfig,
    start_ms: i64,
    interval_ms: u64,
    noise_half_width: f64,
    rng: Rand,
    plan: FaultPlan,
    feeders: Vec<Feeder>,
    sags: Vec<FeederSag>,
    meters: Vec<Meter>,
    /// The tick and the meter the next reading belongs to.
    tick: u64,
    index: usize,
    tick_ms: i64,
    ambient: f64,
    /// Readings to go before the next malformed payload.
    until_malformed: u64,
    emitted: u64,
}

/// Wall-clock now, epoch ms.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Simulator {
    /// Validates `config` and builds the meters. The first reading's event
    /// time is `config.start`, or the wall clock now when it is `null`.
    pub fn new(config: SimulatorConfig) -> Result<Self, ConfigError> {
        let start_ms = match config.start {
            Some(start) => start
                .duration_since(SystemTime::UNIX_EPOCH)
                .ok()
                .and_then(|d| i64::try_from(d.as_millis()).ok())
                .ok_or_else(|| {
                    ConfigError::new(
                        "simulator.start",
                        format!("{start:?}"),
                        "a time after 1970-01-01T00:00:00Z, or null (now)",
                    )
                })?,
            None => now_ms(),
        };
        Self::starting_at(config, start_ms)
    }

    /// As [`Simulator::new`] with the first reading at `start_ms` (epoch
    /// ms), whatever `config.start` says: for tests and replays.
    pub fn starting_at(config: SimulatorConfig, start_ms: i64) -> Result<Self, ConfigError> {
        config.validate()?;
        let interval_ms = config.interval_ms();
        let mut rng = Rand::new(config.seed);
        let plan = FaultPlan::new(&config);
        let feeder_count = config.feeders;
        let feeders: Vec<Feeder> = (0..feeder_count)
            .map(|f| Feeder::new(f, config.nominal_voltage, interval_ms, &mut rng))
            .collect();
        let sags = (0..feeder_count)
            .map(|_| FeederSag::new(&plan, &mut rng))
            .collect();
        let n = u64::from(config.meters);
        let mut meters = Vec::with_capacity(config.meters as usize);
        for f in 0..feeder_count {
            // Contiguous blocks, each with at least one meter since feeders ≤ meters.
            let first = u64::from(f) * n / u64::from(feeder_count);
            let end = (u64::from(f) + 1) * n / u64::from(feeder_count);
            for k in 0..(end - first) {
                meters.push(Meter {
                    id: format!("feeder-{f}-meter-{k}").into_boxed_str(),
                    feeder: f,
                    site: Site::new(&mut rng),
                    next_fault: plan.first_meter_fault(&mut rng),
                    episode: Episode::Normal,
                });
            }
        }
        let warmup_readings = plan.warmup.saturating_mul(n);
        let until_malformed = plan.readings_to_malformed(warmup_readings, &mut rng);
        Ok(Self {
            noise_half_width: 3f64.sqrt() * config.voltage_noise,
            start_ms,
            interval_ms,
            rng,
            plan,
            feeders,
            sags,
            meters,
            tick: 0,
            index: 0,
            tick_ms: start_ms,
            ambient: 0.0,
            until_malformed,
            emitted: 0,
            config,
        })
    }

    pub fn config(&self) -> &SimulatorConfig {
        &self.config
    }

    /// Event time of the first reading, epoch ms.
    pub fn start_ms(&self) -> i64 {
        self.start_ms
    }

    /// Event time from which faults may be injected: before it the
    /// detector is still filling its windows, and a scorer should ignore
    /// what it flags (see [`crate::score::ScoreOptions::ignore_before`]).
    pub fn warmup_end_ms(&self) -> i64 {
        self.tick_start_ms(self.plan.warmup)
    }

    /// Event time of the next event, epoch ms.
    pub fn next_timestamp(&self) -> i64 {
        self.tick_start_ms(self.tick) + self.phase_ms(self.index)
    }

    /// Events produced so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Events left before `max_events`; `None` when there is no limit.
    pub fn remaining(&self) -> Option<u64> {
        self.config
            .max_events
            .map(|max| max.saturating_sub(self.emitted))
    }

    /// Every meter id, in the order meters report within a tick.
    pub fn meter_ids(&self) -> impl ExactSizeIterator<Item = &str> {
        self.meters.iter().map(|m| &*m.id)
    }

    fn tick_start_ms(&self, tick: u64) -> i64 {
        let offset = tick.saturating_mul(self.interval_ms);
        self.start_ms
            .saturating_add(i64::try_from(offset).unwrap_or(i64::MAX))
    }

    /// How far into its tick meter `index` reads, ms.
    fn phase_ms(&self, index: usize) -> i64 {
        let n = self.meters.len() as u64;
        // index < n ≤ 10^6 and interval ≤ 3.6·10^6, so this cannot overflow.
        ((index as u64 * self.interval_ms) / n) as i64
    }

    /// Moves the grid to the current tick: load, drift, feeder sags.
    fn begin_tick(&mut self) {
        self.tick_ms = self.tick_start_ms(self.tick);
        let hour = grid::hour_of_day(self.tick_ms);
        self.ambient = grid::ambient(hour);
        for (feeder, sag) in self.feeders.iter_mut().zip(&mut self.sags) {
            feeder.advance(hour, &mut self.rng);
            sag.advance(self.tick, &self.plan, &mut self.rng);
        }
    }

    /// Appends up to `n` events to `out` (fewer only at `max_events`) and
    /// returns how many. Reusing `out` keeps the only allocation per reading
    /// the meter id that `SensorReading` owns.
    pub fn fill(&mut self, out: &mut Vec<SimEvent>, n: usize) -> usize {
        let n = match self.remaining() {
            Some(left) => n.min(usize::try_from(left).unwrap_or(usize::MAX)),
            None => n,
        };
        out.reserve(n);
        for _ in 0..n {
            out.push(self.generate());
        }
        n
    }

    /// The next `n` events (fewer only at `max_events`).
    pub fn next_batch(&mut self, n: usize) -> Vec<SimEvent> {
        let mut out = Vec::new();
        self.fill(&mut out, n);
        out
    }

    /// The next event, ignoring `max_events`.
    fn generate(&mut self) -> SimEvent {
        if self.index == 0 {
            self.begin_tick();
        }
        let index = self.index;
        let timestamp = self.tick_ms + self.phase_ms(index);
        let tick = self.tick;
        let meter = &mut self.meters[index];
        let feeder = &self.feeders[meter.feeder as usize];
        let sag = self.sags[meter.feeder as usize].delta;

        let noise = self.rng.symmetric3();
        let clean = meter
            .site
            .values(feeder, self.ambient, noise, self.noise_half_width);
        // A meter's own fault waits out a feeder sag, so that one reading
        // carries one fault and one label.
        if meter.episode.is_normal() && tick >= meter.next_fault && sag == 0.0 {
            meter.episode = self.plan.start(&mut self.rng);
        }
        let was_normal = meter.episode.is_normal();
        let idle = meter.site.idle_temperature(self.ambient, noise[2]);
        let outcome = meter.episode.apply(clean, idle, sag, &mut self.rng);
        if outcome.ended {
            meter.next_fault = self.plan.next_meter_fault(tick, &mut self.rng);
        }
        let values = grid::quantise(outcome.values);
        let reading = SensorReading {
            meter_id: String::from(&*meter.id),
            timestamp,
            voltage: values.voltage,
            current: values.current,
            temperature: values.temperature,
            status: outcome.status,
        };

        // A malformed payload stands in for an ordinary reading; when one is
        // due on a faulty reading it waits for the next ordinary one.
        let event = if self.until_malformed > 0 {
            self.until_malformed -= 1;
            None
        } else if was_normal && outcome.label.is_none() && outcome.status == MeterStatus::Ok {
            let noise = self.rng.u64();
            let shape = Malformation::ALL[(noise % Malformation::ALL.len() as u64) as usize];
            let payload = shape.payload(&reading, noise >> 8);
            self.until_malformed = self.plan.readings_to_malformed(0, &mut self.rng);
            Some(SimEvent::Malformed(
                payload,
                Label {
                    meter_id: reading.meter_id.clone(),
                    timestamp,
                    kind: FaultKind::Malformed,
                    expected: Expected::DeadLetter(shape),
                },
            ))
        } else {
            None
        };
        let event = event.unwrap_or_else(|| {
            let label = outcome.label.map(|(kind, expected)| Label {
                meter_id: reading.meter_id.clone(),
                timestamp,
                kind,
                expected,
            });
            SimEvent::Reading(reading, label)
        });

        self.index += 1;
        if self.index == self.meters.len() {
            self.index = 0;
            self.tick += 1;
        }
        self.emitted += 1;
        event
    }
}

impl Iterator for Simulator {
    type Item = SimEvent;

    fn next(&mut self) -> Option<SimEvent> {
        if self.remaining() == Some(0) {
            return None;
        }
        Some(self.generate())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.remaining() {
            Some(left) => {
                let left = usize::try_from(left).unwrap_or(usize::MAX);
                (left, Some(left))
            }
            None => (usize::MAX, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_costs_well_under_a_hundred_bytes_of_state() {
        // Plus its id on the heap (about 32 bytes): a million meters ≈ 100 MB.
        assert!(
            std::mem::size_of::<Meter>() <= 72,
            "{}",
            std::mem::size_of::<Meter>()
        );
    }

    #[test]
    fn a_million_meters_run() {
        let config = SimulatorConfig {
            meters: 1_000_000,
            feeders: 10_000,
            ..Default::default()
        };
        let mut sim = Simulator::starting_at(config, 0).unwrap();
        assert_eq!(sim.meter_ids().len(), 1_000_000);
        let mut buf = Vec::with_capacity(50_000);
        let mut last = None;
        for _ in 0..20 {
            buf.clear();
            sim.fill(&mut buf, 50_000);
            last = buf.pop();
        }
        let Some(SimEvent::Reading(reading, _)) = last else {
            panic!("{last:?}")
        };
        // The last meter of the first tick reads just before its end.
        assert_eq!(reading.meter_id, "feeder-9999-meter-99");
        assert_eq!(reading.timestamp, 999);
        assert_eq!(sim.next_timestamp(), 1000);
    }
}
