//! A smart-meter simulator: how a new user sees Gridwatch work within a
//! minute (`gridwatch run` uses it as the default source), and how we
//! load-test it.
//!
//! It simulates 1 to 1,000,000 meters on feeders (`feeder-<k>-meter-<n>`)
//! producing [`SensorReading`](gridwatch_contracts::SensorReading)s: 230 V
//! that sags along each feeder as its daily load curve peaks, current and
//! temperature that follow the load, and bounded noise. Into that it injects
//! faults at configured rates (surges, sags, feeder-wide sags, equipment
//! failures, degraded episodes, flapping sensors, stuck values, malformed
//! payloads) and labels each one with what Gridwatch should make of it, so
//! detection can be scored for precision and recall.
//!
//! The output is a pure function of the seed, the config and the start
//! time; the async driver only decides how fast it is pulled.
//!
//! # Modules
//! - [`config`]: `simulator.*` settings, defaults, validation, [`Pace`].
//! - [`model`]: [`SimEvent`], [`Label`], [`FaultKind`], [`Expected`], [`Malformation`].
//! - [`generator`]: [`Simulator`], the synchronous, deterministic generator.
//! - [`driver`]: [`Simulator::run`], the rate-limited async driver with backpressure.
//! - [`score`](mod@score): precision and recall of detections against labels.
//! - `grid`: load curves, feeders and meters: the fault-free physics.
//! - `faults`: when faults start and what they do to readings.
//! - `rng`: the seeded random stream.
//!
//! # Example
//! ```
//! use gridwatch_simulator::{SimEvent, Simulator, SimulatorConfig};
//!
//! let config = SimulatorConfig { meters: 10, feeders: 2, ..Default::default() };
//! let mut sim = Simulator::starting_at(config, 1_767_225_600_000).unwrap();
//! let batch = sim.next_batch(20);
//! assert_eq!(batch.len(), 20);
//! if let SimEvent::Reading(reading, None) = &batch[0] {
//!     assert_eq!(reading.meter_id, "feeder-0-meter-0");
//! }
//! ```

pub mod config;
pub mod driver;
mod faults;
pub mod generator;
mod grid;
pub mod model;
mod rng;
pub mod score;

pub use config::{FaultConfig, Pace, SimulatorConfig};
pub use driver::{RunStats, Stopped};
pub use generator::Simulator;
pub use model::{Expected, FaultKind, Label, Malformation, SimEvent};
pub use score::{Detection, KindScore, Score, ScoreOptions, score};

#[cfg(test)]
mod tests;
