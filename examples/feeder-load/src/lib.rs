//! Per-feeder load: a second, small pipeline on the Gridwatch runtime.
//!
//! Readings keyed by feeder go in; for every feeder and every tumbling
//! event-time window (default one minute), one [`FeederWindow`] comes out:
//! readings, summed power, and the voltage range. It uses the same builder,
//! checkpoints and exactly-once recovery as the grid pipeline, with a
//! native [`Chain`] instead of SmartModules and its own [`Router`].
//!
//! ```ignore
//! let running = Pipeline::builder(backend)
//!     .input(INPUT)
//!     .partitions(0..partitions)
//!     .chain(move |_| Ok(boxed(FeederLoad::new(window))))
//!     .router(FeederRouter)
//!     .checkpoints(store, ProcessorConfig { warm_window_ms: window + lateness, ..Default::default() })
//!     .run(shutdown)?;
//! ```
//!
//! Event time: a window closes when the partition's watermark (the newest
//! event time seen, minus the allowed lateness) passes its end. Readings for
//! a closed window are late; they are counted in the next output's
//! `late_dropped` rather than silently lost. State is the open windows, a
//! function of the last window + lateness of input, so replaying that much
//! after a crash rebuilds it exactly.

use std::collections::BTreeMap;

use bytes::Bytes;
use gridwatch_contracts::SensorReading;
use gridwatch_runtime::backend::InRecord;
use gridwatch_runtime::backend::OutRecord;
use gridwatch_runtime::chain::{Chain, ChainError};
use gridwatch_runtime::ingest::decode_own;
use gridwatch_runtime::processor::{Identified, Routed, Router};
use serde::{Deserialize, Serialize};

/// The input topic: framed Avro readings, partitioned by feeder.
pub const INPUT: &str = "feeder-readings";
/// The output topic: one JSON [`FeederWindow`] per feeder and window.
pub const OUTPUT: &str = "feeder-load";

/// The feeder a meter hangs off: `feeder-3-meter-17` → `feeder-3`.
pub fn feeder_of(meter_id: &str) -> &str {
    meter_id.split("-meter-").next().unwrap_or(meter_id)
}

/// One feeder's load over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeederWindow {
    pub feeder: String,
    /// Window start, epoch ms (inclusive).
    pub start_ms: i64,
    pub end_ms: i64,
    pub readings: u64,
    /// Σ voltage × current over the window's readings, in watts.
    pub power_w: f64,
    pub min_voltage: f64,
    pub max_voltage: f64,
    /// Input offset whose watermark closed the window: its source position.
    pub closed_by: u64,
    /// Late readings dropped since the previous output of this partition.
    pub late_dropped: u64,
}

#[derive(Debug, Clone, Copy)]
struct Open {
    readings: u64,
    power_w: f64,
    min_voltage: f64,
    max_voltage: f64,
}

/// The aggregation as a [`Chain`]: one output per input, holding the
/// windows that input closed (JSON array; empty bytes if none).
#[derive(Debug)]
pub struct FeederLoad {
    window_ms: i64,
    lateness_ms: i64,
    watermark: i64,
    late: u64,
    open: BTreeMap<(i64, String), Open>,
}

impl FeederLoad {
    pub fn new(window_ms: i64, lateness_ms: i64) -> Self {
        Self {
            window_ms: window_ms.max(1),
            lateness_ms: lateness_ms.max(0),
            watermark: i64::MIN,
            late: 0,
            open: BTreeMap::new(),
        }
    }

    /// Open windows; the state a checkpoint would otherwise have to save.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    fn add(&mut self, r: &SensorReading) {
        let start = r.timestamp.div_euclid(self.window_ms) * self.window_ms;
        if start + self.window_ms <= self.watermark {
            self.late += 1;
            return;
        }
        let w = self
            .open
            .entry((start, feeder_of(&r.meter_id).to_owned()))
            .or_insert(Open {
                readings: 0,
                power_w: 0.0,
                min_voltage: f64::INFINITY,
                max_voltage: f64::NEG_INFINITY,
            });
        w.readings += 1;
        w.power_w += r.voltage * r.current;
        w.min_voltage = w.min_voltage.min(r.voltage);
        w.max_voltage = w.max_voltage.max(r.voltage);
        self.watermark = self.watermark.max(r.timestamp - self.lateness_ms);
    }

    fn close(&mut self, offset: u64) -> Vec<FeederWindow> {
        let mut closed = Vec::new();
        while let Some(entry) = self.open.first_entry() {
            let (start, _) = *entry.key();
            if start + self.window_ms > self.watermark {
                break;
            }
            let ((start, feeder), w) = entry.remove_entry();
            closed.push(FeederWindow {
                feeder,
                start_ms: start,
                end_ms: start + self.window_ms,
                readings: w.readings,
                power_w: w.power_w,
                min_voltage: w.min_voltage,
                max_voltage: w.max_voltage,
                closed_by: offset,
                late_dropped: std::mem::take(&mut self.late),
            });
        }
        closed
    }
}

impl Chain for FeederLoad {
    fn process(&mut self, records: &[InRecord], _now_ms: i64) -> Result<Vec<Bytes>, ChainError> {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            // Undecodable input closes nothing; the grid pipeline's validate
            // module is where malformed readings are dead-lettered.
            if let Some(reading) = decode_own(&r.value) {
                self.add(&reading);
            }
            let closed = self.close(r.offset);
            out.push(if closed.is_empty() {
                Bytes::new()
            } else {
                Bytes::from(
                    serde_json::to_vec(&closed).map_err(|e| ChainError::Process {
                        offset: r.offset,
                        message: e.to_string(),
                    })?,
                )
            });
        }
        Ok(out)
    }
}

/// Sends each closed window to [`OUTPUT`], identified by feeder and start.
#[derive(Debug, Clone, Copy, Default)]
pub struct FeederRouter;

fn identity(w: &FeederWindow) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(w.feeder.as_bytes());
    h.update(&w.start_ms.to_le_bytes());
    h.digest()
}

impl Router for FeederRouter {
    fn outputs(&self) -> Vec<String> {
        vec![OUTPUT.to_owned()]
    }

    fn route(
        &self,
        _partition: u32,
        input: &InRecord,
        output: &[u8],
        out: &mut Vec<Routed>,
    ) -> Result<(), String> {
        if output.is_empty() {
            return Ok(());
        }
        let windows: Vec<FeederWindow> =
            serde_json::from_slice(output).map_err(|e| format!("not FeederWindows: {e}"))?;
        for w in windows {
            out.push(Routed {
                output: 0,
                identity: identity(&w),
                record: OutRecord {
                    key: Some(Bytes::from(w.feeder.clone())),
                    value: Bytes::from(serde_json::to_vec(&w).map_err(|e| e.to_string())?),
                    timestamp_ms: input.timestamp_ms,
                },
            });
        }
        Ok(())
    }

    fn identify(&self, _output: usize, value: &[u8]) -> Option<Identified> {
        let w: FeederWindow = serde_json::from_slice(value).ok()?;
        Some(Identified {
            source_offset: Some(w.closed_by),
            identity: identity(&w),
        })
    }
}

#[cfg(test)]
mod tests {
    use gridwatch_contracts::MeterStatus;

    use super::*;

    fn reading(meter: &str, ts: i64, v: f64) -> SensorReading {
        SensorReading {
            meter_id: meter.into(),
            timestamp: ts,
            voltage: v,
            current: 2.0,
            temperature: 20.0,
            status: MeterStatus::Ok,
        }
    }

    #[test]
    fn windows_close_on_the_watermark_and_late_readings_are_counted() {
        let mut f = FeederLoad::new(60_000, 5_000);
        f.add(&reading("feeder-1-meter-1", 1_000, 230.0));
        f.add(&reading("feeder-1-meter-2", 59_000, 240.0));
        f.add(&reading("feeder-2-meter-1", 30_000, 220.0));
        assert!(f.close(3).is_empty());
        // 64 s - 5 s lateness = 59 s: the first window is still open.
        f.add(&reading("feeder-1-meter-1", 64_000, 230.0));
        assert!(f.close(4).is_empty());
        f.add(&reading("feeder-1-meter-1", 65_000, 230.0));
        let closed = f.close(5);
        assert_eq!(closed.len(), 2);
        assert_eq!(closed[0].feeder, "feeder-1");
        assert_eq!(closed[0].readings, 2);
        assert_eq!(closed[0].power_w, 230.0 * 2.0 + 240.0 * 2.0);
        assert_eq!(
            (closed[0].min_voltage, closed[0].max_voltage),
            (230.0, 240.0)
        );
        assert_eq!(closed[1].feeder, "feeder-2");
        assert_eq!(closed[1].closed_by, 5);
        // A reading for the closed window is late.
        f.add(&reading("feeder-2-meter-1", 10_000, 220.0));
        f.add(&reading("feeder-1-meter-1", 130_000, 230.0));
        let closed = f.close(7);
        assert_eq!(closed[0].late_dropped, 1);
    }

    #[test]
    fn feeder_of_takes_the_prefix() {
        assert_eq!(feeder_of("feeder-3-meter-17"), "feeder-3");
        assert_eq!(feeder_of("standalone"), "standalone");
    }
}
