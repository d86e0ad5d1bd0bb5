//! `gridwatch bench`: one end-to-end run of the real pipeline.
//!
//! The child runs `gridwatch run` on a fresh data directory. Readings come
//! from its built-in simulator (flat out by default, as the issue asks:
//! simulator → ingest → durable log → validate/detect → output topics) or
//! from this process over HTTP. After a warm-up, two snapshots bracket the
//! measured window; everything reported is the difference between them,
//! except peak RSS, which is the process's high-water mark.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gridwatch_contracts::ConfigError;
use serde::Serialize;

use crate::child::{ChildOptions, Pipeline, ProcStats};
use crate::error::BenchError;
use crate::load::{Load, LoadOptions, LoadTotals};
use crate::probe::{self, Histogram, Percentiles, Probe, Status};
use crate::table::Table;

/// Where the readings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// gridwatch's built-in simulator, inside the measured process.
    Simulator,
    /// NDJSON POSTs from this process, over loopback HTTP.
    Http {
        /// Concurrent clients.
        clients: usize,
    },
}

/// Options of [`bench()`]; [`BenchOptions::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The `gridwatch` executable and how to start it.
    pub child: ChildOptions,
    /// The measured window. Default 30 s.
    pub duration: Duration,
    /// Time under load before the window opens. Default 5 s.
    pub warmup: Duration,
    /// Simulated meters. Default 10,000.
    pub meters: u32,
    /// Readings per second; 0 (the default) is flat out.
    pub rate: f64,
    /// Default: the built-in simulator.
    pub source: Source,
    /// Readings per HTTP request when the source is HTTP. Default 1,000.
    pub http_batch: usize,
    /// What the readings go through, for the report. Default [`PIPELINE`]
    /// (the embedded backend); the caller knows the child's configuration.
    pub pipeline: String,
}

impl BenchOptions {
    /// The defaults, for the given `gridwatch` executable.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            child: ChildOptions::new(binary),
            duration: Duration::from_secs(30),
            warmup: Duration::from_secs(5),
            meters: 10_000,
            rate: 0.0,
            source: Source::Simulator,
            http_batch: 1_000,
            pipeline: PIPELINE.to_string(),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.duration < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "duration",
                humantime::format_duration(self.duration),
                "at least 1s",
            ));
        }
        if !(1..=1_000_000).contains(&self.meters) {
            return Err(ConfigError::new("meters", self.meters, "1 to 1000000"));
        }
        if !(self.rate.is_finite() && self.rate >= 0.0) {
            return Err(ConfigError::new("rate", self.rate, "0 (flat out) or more"));
        }
        Ok(())
    }
}

/// What [`bench()`] measured. Serialises to the JSON `gridwatch bench
/// --json` prints: at least `events_per_sec`, `latency_ms` {p50, p99,
/// p999} and `peak_rss_bytes`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Always `end_to_end`.
    pub mode: &'static str,
    pub source: Source,
    pub meters: u32,
    /// The rate asked for; `None` is flat out.
    pub target_rate: Option<f64>,
    /// Length of the measured window, seconds.
    pub duration_s: f64,
    /// Readings through validate → detect with durable results, in the window.
    pub events: u64,
    pub events_per_sec: f64,
    /// Readings appended by ingest per second, in the window.
    pub ingested_per_sec: f64,
    /// Ingest→detect latency in the window, from the Prometheus histogram
    /// (`histogram_quantile`-style interpolation within buckets).
    pub latency_ms: Percentiles,
    /// Share of readings at or under 10 ms (exact: 10 ms is a bucket bound).
    pub latency_within_10ms: Option<f64>,
    /// The runtime's own HDR percentiles over the whole run (warm-up included).
    pub latency_hdr_ms: Percentiles,
    /// CPU time (user + system, all threads of the gridwatch process) per event.
    pub cpu_ns_per_event: f64,
    /// CPU cores the gridwatch process kept busy on average.
    pub cpu_cores: f64,
    /// Peak RSS of the gridwatch process (`VmHWM`), start-up included.
    pub peak_rss_bytes: u64,
    /// RSS at the end of the window.
    pub rss_bytes: u64,
    /// Meters the detectors hold, and their state size where exported.
    pub detector_meters: Option<u64>,
    pub detector_state_bytes: Option<u64>,
    /// Readings the Parquet lake sink wrote per second in the window, when
    /// it runs: a sink slower than the pipeline shows here, not in
    /// `events_per_sec`.
    pub lake_per_sec: Option<f64>,
    /// Unprocessed readings at the end of the window.
    pub lag: u64,
    pub anomalies: u64,
    pub dead_letters: u64,
    /// What the readings went through.
    pub pipeline: String,
    /// The load generator's counts, for the HTTP source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadTotals>,
    /// Start-up time of the child, until `/readyz`.
    pub ready_after_ms: u64,
}

/// The stages the end-to-end figures cover.
pub const PIPELINE: &str = "ingest → embedded durable log (fsync) → validate → detect (WASM) → scored/anomalies/dead-letter topics";

struct Snapshot {
    at: Instant,
    status: Status,
    latency: Histogram,
    proc: ProcStats,
    metrics: String,
}

fn snapshot(probe: &Probe, pipeline: &Pipeline) -> Result<Snapshot, BenchError> {
    let proc = pipeline.stats()?;
    let status = probe.status()?;
    let metrics = probe.metrics()?;
    Ok(Snapshot {
        at: Instant::now(),
        latency: Histogram::latency(&metrics),
        status,
        proc,
        metrics,
    })
}

/// Sleeps `d` in steps, failing early if the child dies.
pub(crate) fn wait(pipeline: &mut Pipeline, d: Duration) -> Result<(), BenchError> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        pipeline.check_alive()?;
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(250)));
    }
    Ok(())
}

/// Runs the end-to-end benchmark and reports it.
pub fn bench(opts: &BenchOptions) -> Result<BenchReport, BenchError> {
    opts.validate()?;
    let mut child = opts.child.clone();
    match opts.source {
        Source::Simulator => {
            child.args.extend([
                "--meters".into(),
                opts.meters.to_string(),
                "--rate".into(),
                opts.rate.to_string(),
            ]);
            // Only readings: the malformed-payload path has its own tests.
            child.env.push((
                "GRIDWATCH_SIMULATOR__FAULTS__MALFORMED_RATE".into(),
                "0".into(),
            ));
        }
        Source::Http { .. } => child.args.push("--no-simulator".into()),
    }
    let mut pipeline = Pipeline::start(&child)?;
    let probe = Probe::new(pipeline.url())?;
    let load = match opts.source {
        Source::Http { clients } => Some(Load::start(&LoadOptions {
            url: pipeline.url().to_string(),
            meters: opts.meters,
            rate: opts.rate,
            clients,
            batch: opts.http_batch,
            seed: 42,
        })?),
        Source::Simulator => None,
    };
    wait(&mut pipeline, opts.warmup)?;
    let a = snapshot(&probe, &pipeline)?;
    wait(&mut pipeline, opts.duration)?;
    let b = snapshot(&probe, &pipeline)?;
    let load = match load {
        Some(l) => Some(l.finish()?),
        None => None,
    };
    let ready_after_ms = pipeline.ready_after.as_millis() as u64;
    let _ = pipeline.stop();

    let secs = (b.at - a.at).as_secs_f64();
    let events = b.status.processed.saturating_sub(a.status.processed);
    let cpu_ns = b.proc.cpu_ns.saturating_sub(a.proc.cpu_ns);
    let window = b.latency.since(&a.latency);
    let (detector_meters, detector_state_bytes) = probe::detector_state(&b.metrics);
    let hdr = b.status.latency_ms;
    Ok(BenchReport {
        mode: "end_to_end",
        source: opts.source,
        meters: opts.meters,
        target_rate: (opts.rate > 0.0).then_some(opts.rate),
        duration_s: secs,
        events,
        events_per_sec: events as f64 / secs,
        ingested_per_sec: b.status.ingested.saturating_sub(a.status.ingested) as f64 / secs,
        latency_ms: window.percentiles_ms().unwrap_or_default(),
        latency_within_10ms: window.fraction_at_or_below(0.010),
        latency_hdr_ms: Percentiles {
            p50: hdr.p50,
            p99: hdr.p99,
            p999: hdr.p999,
        },
        cpu_ns_per_event: if events > 0 {
            cpu_ns as f64 / events as f64
        } else {
            0.0
        },
        cpu_cores: cpu_ns as f64 / 1e9 / secs,
        peak_rss_bytes: b.proc.peak_rss_bytes,
        rss_bytes: b.proc.rss_bytes,
        detector_meters,
        detector_state_bytes,
        lake_per_sec: probe::lake_written(&b.metrics)
            .zip(probe::lake_written(&a.metrics))
            .map(|(b, a)| (b - a).max(0.0) / secs),
        lag: b.status.lag,
        anomalies: b.status.anomalies.saturating_sub(a.status.anomalies),
        dead_letters: b.status.dead_letters.saturating_sub(a.status.dead_letters),
        pipeline: opts.pipeline.clone(),
        load,
        ready_after_ms,
    })
}

impl BenchReport {
    /// The report as a plain-text table.
    pub fn table(&self) -> String {
        let mut t = Table::new(["gridwatch bench (end to end)", ""]);
        let source = match self.source {
            Source::Simulator => "built-in simulator (in the measured process)".to_string(),
            Source::Http { clients } => format!("HTTP NDJSON, {clients} clients"),
        };
        t.row(["source", &source]);
        t.row(["pipeline", self.pipeline.as_str()]);
        t.row(["meters", &self.meters.to_string()]);
        t.row([
            "target rate",
            &self
                .target_rate
                .map_or("flat out".into(), |r| format!("{r:.0} events/s")),
        ]);
        t.row(["window", &format!("{:.1} s", self.duration_s)]);
        t.row(["events", &self.events.to_string()]);
        t.row(["events/s", &format!("{:.0}", self.events_per_sec)]);
        t.row([
            "latency p50 / p99 / p999",
            &format!(
                "{:.2} / {:.2} / {:.2} ms",
                self.latency_ms.p50, self.latency_ms.p99, self.latency_ms.p999
            ),
        ]);
        if let Some(f) = self.latency_within_10ms {
            t.row(["readings within 10 ms", &format!("{:.2} %", f * 100.0)]);
        }
        t.row([
            "latency (HDR, whole run)",
            &format!(
                "{:.1} / {:.1} / {:.1} ms",
                self.latency_hdr_ms.p50, self.latency_hdr_ms.p99, self.latency_hdr_ms.p999
            ),
        ]);
        t.row([
            "CPU per event",
            &format!(
                "{:.0} ns ({:.2} cores busy)",
                self.cpu_ns_per_event, self.cpu_cores
            ),
        ]);
        t.row(["peak RSS", &mib(self.peak_rss_bytes)]);
        t.row(["RSS at end", &mib(self.rss_bytes)]);
        if let Some(m) = self.detector_meters {
            t.row(["detector meters", &m.to_string()]);
        }
        if let Some(b) = self.detector_state_bytes {
            t.row(["detector state", &mib(b)]);
        }
        if let Some(r) = self.lake_per_sec {
            t.row(["lake sink", &format!("{r:.0} readings/s written")]);
        }
        t.row(["lag at end", &self.lag.to_string()]);
        t.row(["anomalies in window", &self.anomalies.to_string()]);
        t.row(["start-up", &format!("{} ms", self.ready_after_ms)]);
        t.render()
    }
}

pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
