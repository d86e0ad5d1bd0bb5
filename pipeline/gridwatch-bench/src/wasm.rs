//! `gridwatch bench --wasm-only`: validate → detect alone, on one core.
//!
//! Three ways over the same readings (simulator output, Apicurio-framed
//! Avro as the `readings` topic holds it), each from fresh state:
//!
//! - **wasm_chain**: [`WasmChain`], what a processor runs, including its
//!   per-batch encoding and the copy of each output into `Bytes`;
//! - **wasm_host**: the host alone ([`gridwatch_wasm_host::Chain`]) on a
//!   batch encoded ahead, so the runtime wrapper's share can be told apart;
//! - **native**: the same crates (`gridwatch-validator`, `gridwatch-detect`)
//!   compiled natively, doing the same work the modules do (decode,
//!   validate, encode the chain record, decode it, score, encode), the
//!   ceiling.
//!
//! The ways are interleaved over several rounds and the best round of each
//! is reported, so a busy neighbour on a shared machine hurts all alike.
//! "One core" is measured as the measuring thread's own CPU time
//! (`/proc/thread-self/schedstat`), so time the thread spent descheduled on
//! a busy machine does not count; wall-clock rates are reported beside.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::{ConfigError, SensorReading, schema};
use gridwatch_detect::DetectState;
use gridwatch_runtime::backend::InRecord;
use gridwatch_runtime::chain::{Chain as _, ModuleSpec, WasmChain};
use gridwatch_simulator::{FaultConfig, SimEvent, Simulator, SimulatorConfig};
use gridwatch_validator::{ValidateConfig, validate_into, validate_record};
use serde::Serialize;

use crate::error::BenchError;
use crate::table::Table;

/// The schema id the readings are framed with.
const SCHEMA_ID: u64 = 1;
/// Event time of the first reading: 2026-01-01T00:00:00Z.
const START_MS: i64 = 1_767_225_600_000;

/// Options of [`wasm_only()`].
#[derive(Debug, Clone)]
pub struct WasmOptions {
    /// Directory of `gridwatch_validate.wasm` and `gridwatch_detect.wasm`.
    pub modules_dir: PathBuf,
    /// Readings per round. Default 1,000,000.
    pub events: usize,
    /// Simulated meters. Default 1,000 (with 1 s readings a 5-minute
    /// window is full after 300,000 readings).
    pub meters: u32,
    /// Records per call into the chain. Default 1,000 and 10,000.
    pub batch_sizes: Vec<usize>,
    /// Rounds per way and batch size; the best is reported. Default 3.
    pub rounds: usize,
}

impl WasmOptions {
    pub fn new(modules_dir: impl Into<PathBuf>) -> Self {
        Self {
            modules_dir: modules_dir.into(),
            events: 1_000_000,
            meters: 1_000,
            batch_sizes: vec![1_000, 10_000],
            rounds: 3,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1_000..=50_000_000).contains(&self.events) {
            return Err(ConfigError::new("events", self.events, "1000 to 50000000"));
        }
        if !(1..=1_000_000).contains(&self.meters) {
            return Err(ConfigError::new("meters", self.meters, "1 to 1000000"));
        }
        if self.batch_sizes.is_empty()
            || self.batch_sizes.iter().any(|b| !(1..=100_000).contains(b))
        {
            return Err(ConfigError::new(
                "batch_sizes",
                format!("{:?}", self.batch_sizes),
                "one or more of 1 to 100000",
            ));
        }
        if !(1..=20).contains(&self.rounds) {
            return Err(ConfigError::new("rounds", self.rounds, "1 to 20"));
        }
        Ok(())
    }
}

/// One way at one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct WasmRow {
    pub way: &'static str,
    pub batch: usize,
    /// Per second of the thread's CPU time.
    pub events_per_sec: f64,
    /// Per second of wall-clock time.
    pub wall_events_per_sec: f64,
    /// Of native at the same batch size.
    pub of_native: f64,
}

/// What [`wasm_only()`] measured. `events_per_sec` and
/// `native_events_per_sec` are at the largest batch size.
#[derive(Debug, Clone, Serialize)]
pub struct WasmReport {
    /// Always `wasm_only`.
    pub mode: &'static str,
    /// validate → detect through [`WasmChain`], per second of one core's CPU time.
    pub events_per_sec: f64,
    /// The same per second of wall-clock time.
    pub wall_events_per_sec: f64,
    /// The same crates natively, one core.
    pub native_events_per_sec: f64,
    /// The host alone, without the runtime's wrapper.
    pub host_events_per_sec: f64,
    /// events_per_sec / native_events_per_sec.
    pub ratio_to_native: f64,
    pub events: usize,
    pub meters: u32,
    pub rounds: usize,
    /// Anomalies (all kinds) the native way found in one round.
    pub anomalies: u64,
    pub rows: Vec<WasmRow>,
}

/// The `schemas` param: SensorReading v1 under [`SCHEMA_ID`].
fn schemas_param() -> String {
    serde_json::json!({ SCHEMA_ID.to_string(): schema::SENSOR_READING }).to_string()
}

/// Simulator readings, without malformed payloads.
pub fn readings(meters: u32, n: usize) -> Result<Vec<SensorReading>, BenchError> {
    let config = SimulatorConfig {
        meters,
        feeders: meters.clamp(1, 10),
        faults: FaultConfig {
            malformed_rate: 0.0,
            ..FaultConfig::default()
        },
        ..SimulatorConfig::default()
    };
    let mut sim = Simulator::starting_at(config, START_MS)?;
    let mut out = Vec::with_capacity(n);
    let mut events = Vec::with_capacity(10_000);
    while out.len() < n {
        events.clear();
        sim.fill(&mut events, 10_000.min(n - out.len()));
        out.extend(events.drain(..).filter_map(|e| match e {
            SimEvent::Reading(r, _) => Some(r),
            SimEvent::Malformed(..) => None,
        }));
    }
    Ok(out)
}

fn framed(r: &SensorReading) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    framing::write_header(&mut out, SCHEMA_ID, IdWidth::ContentId4);
    let _ = r.encode_into(&mut out);
    out
}

fn module(dir: &Path, name: &str) -> Result<Bytes, BenchError> {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path)
        .map(Bytes::from)
        .map_err(BenchError::io(path))
}

/// Measures validate → detect in WASM and natively; see the module docs.
pub fn wasm_only(opts: &WasmOptions) -> Result<WasmReport, BenchError> {
    opts.validate()?;
    let readings = readings(opts.meters, opts.events)?;
    let newest = readings
        .iter()
        .map(|r| r.timestamp)
        .max()
        .unwrap_or(START_MS);
    // The modules' clock: a minute after the newest reading, as if live.
    let now = newest + 60_000;
    let inputs: Vec<Bytes> = readings.iter().map(|r| Bytes::from(framed(r))).collect();
    drop(readings);
    let schemas = schemas_param();
    let spec = vec![
        ModuleSpec {
            name: "gridwatch-validate".into(),
            wasm: module(&opts.modules_dir, "gridwatch_validate")?,
            params: vec![("schemas".into(), schemas.clone())],
        },
        ModuleSpec {
            name: "gridwatch-detect".into(),
            wasm: module(&opts.modules_dir, "gridwatch_detect")?,
            params: vec![("schemas".into(), schemas.clone())],
        },
    ];
    let engine = gridwatch_wasm_host::Engine::new()?;
    let get = |key: &str| (key == "schemas").then_some(schemas.as_str());
    let validate = ValidateConfig::from_params(get)?;

    let mut rows = Vec::new();
    let mut anomalies = 0;
    for &batch in &opts.batch_sizes {
        let records: Vec<Vec<InRecord>> = inputs
            .chunks(batch)
            .enumerate()
            .map(|(n, chunk)| {
                chunk
                    .iter()
                    .enumerate()
                    .map(|(i, v)| InRecord {
                        offset: (n * batch + i) as u64,
                        timestamp_ms: now,
                        key: None,
                        value: v.clone(),
                    })
                    .collect()
            })
            .collect();
        let batches: Vec<gridwatch_wasm_host::Batch> = inputs
            .chunks(batch)
            .map(|chunk| {
                let mut b = gridwatch_wasm_host::Batch::with_capacity(
                    chunk.iter().map(|r| r.len() + 8).sum(),
                );
                for (i, v) in chunk.iter().enumerate() {
                    b.push_record(None, v, i as i64, 0);
                }
                b
            })
            .collect();
        let mut best_chain = Best::default();
        let mut best_host = Best::default();
        let mut best_native = Best::default();
        for _ in 0..opts.rounds {
            // WasmChain, as a processor runs it.
            let mut chain = WasmChain::new(&engine, &spec)?;
            let started = Clock::start();
            for b in &records {
                std::hint::black_box(chain.process(b, now)?);
            }
            best_chain.keep(started.stop());

            // The host alone, batches encoded ahead.
            let mut host = build_host(&engine, &spec)?;
            let mut output = gridwatch_wasm_host::Output::default();
            let started = Clock::start();
            for (n, b) in batches.iter().enumerate() {
                host.process_batch_into(b, (n * batch) as i64, now, &mut output)?;
                std::hint::black_box(output.len());
            }
            best_host.keep(started.stop());

            // Natively: the same work, the same crates, as the modules do
            // it (the chain record and the output written into reused
            // buffers), without the batch framing and the WASM boundary.
            let mut state = DetectState::from_params(get)?;
            let (mut validated, mut scored) = (Vec::with_capacity(256), Vec::with_capacity(512));
            let started = Clock::start();
            for (offset, bytes) in inputs.iter().enumerate() {
                let offset = offset as i64;
                validated.clear();
                let _ = validate_into(bytes, offset, &validate, now, &mut validated);
                scored.clear();
                let key = state.process_into(&validated, offset, now, &mut scored);
                std::hint::black_box((&key, &scored));
            }
            best_native.keep(started.stop());
            anomalies = count_anomalies(&inputs, &validate, get, now)?;
        }
        let rate = |d: Duration| inputs.len() as f64 / d.as_secs_f64().max(1e-9);
        let native = rate(best_native.cpu);
        for (way, best) in [
            ("wasm_chain", best_chain),
            ("wasm_host", best_host),
            ("native", best_native),
        ] {
            rows.push(WasmRow {
                way,
                batch,
                events_per_sec: rate(best.cpu),
                wall_events_per_sec: rate(best.wall),
                of_native: rate(best.cpu) / native,
            });
        }
    }
    let largest = opts.batch_sizes.iter().copied().max().unwrap_or(0);
    let pick = |way: &str| {
        rows.iter()
            .find(|r| r.way == way && r.batch == largest)
            .map_or(0.0, |r| r.events_per_sec)
    };
    let (wasm, native) = (pick("wasm_chain"), pick("native"));
    let wall = rows
        .iter()
        .find(|r| r.way == "wasm_chain" && r.batch == largest)
        .map_or(0.0, |r| r.wall_events_per_sec);
    Ok(WasmReport {
        mode: "wasm_only",
        events_per_sec: wasm,
        wall_events_per_sec: wall,
        native_events_per_sec: native,
        host_events_per_sec: pick("wasm_host"),
        ratio_to_native: wasm / native,
        events: inputs.len(),
        meters: opts.meters,
        rounds: opts.rounds,
        anomalies,
        rows,
    })
}

/// Anomalies (all kinds) in one pass over the inputs, outside the timing.
fn count_anomalies<'a>(
    inputs: &[Bytes],
    validate: &ValidateConfig,
    get: impl Fn(&str) -> Option<&'a str> + Copy,
    now: i64,
) -> Result<u64, BenchError> {
    let mut state = DetectState::from_params(get)?;
    let mut count = 0;
    for (offset, bytes) in inputs.iter().enumerate() {
        let offset = offset as i64;
        let validated = validate_record(bytes, offset, validate, now)
            .to_avro()
            .unwrap_or_default();
        if let gridwatch_contracts::ChainRecord::Scored(s) = state.process(&validated, offset, now)
        {
            count += s.anomalies.len() as u64;
        }
    }
    Ok(count)
}

/// The fastest round of a way, by CPU time, with its wall time.
#[derive(Debug, Clone, Copy)]
struct Best {
    cpu: Duration,
    wall: Duration,
}

impl Default for Best {
    fn default() -> Self {
        Self {
            cpu: Duration::MAX,
            wall: Duration::MAX,
        }
    }
}

impl Best {
    fn keep(&mut self, (cpu, wall): (Duration, Duration)) {
        if cpu < self.cpu {
            *self = Self { cpu, wall };
        }
    }
}

/// The calling thread's CPU time and the wall clock, started together.
struct Clock {
    cpu_ns: Option<u64>,
    wall: Instant,
}

impl Clock {
    fn start() -> Self {
        Self {
            cpu_ns: thread_cpu_ns(),
            wall: Instant::now(),
        }
    }

    /// (CPU time, wall time) since start; CPU falls back to wall where
    /// `/proc/thread-self/schedstat` is missing.
    fn stop(self) -> (Duration, Duration) {
        let wall = self.wall.elapsed();
        let cpu = match (self.cpu_ns, thread_cpu_ns()) {
            (Some(a), Some(b)) => Duration::from_nanos(b.saturating_sub(a)),
            _ => wall,
        };
        (cpu, wall)
    }
}

/// Nanoseconds this thread has run on a CPU (first field of schedstat).
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn build_host(
    engine: &gridwatch_wasm_host::Engine,
    spec: &[ModuleSpec],
) -> Result<gridwatch_wasm_host::Chain, BenchError> {
    let mut builder = engine.chain();
    for m in spec {
        let mut s = gridwatch_wasm_host::ModuleSpec::wasm(m.name.clone(), m.wasm.to_vec());
        for (k, v) in &m.params {
            s = s.param(k.clone(), v.clone());
        }
        builder = builder.module(s);
    }
    Ok(builder.build()?)
}

impl WasmReport {
    pub fn table(&self) -> String {
        let mut t = Table::new([
            "validate → detect",
            "batch",
            "events/s (1 core)",
            "of native",
        ]);
        for r in &self.rows {
            t.row([
                r.way,
                &r.batch.to_string(),
                &format!("{:.0}", r.events_per_sec),
                &format!("{:.0} %", r.of_native * 100.0),
            ]);
        }
        format!(
            "gridwatch bench --wasm-only: {} readings of {} meters, best of {} rounds\n\n{}",
            self.events,
            self.meters,
            self.rounds,
            t.render()
        )
    }
}
