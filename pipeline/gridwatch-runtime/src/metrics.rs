//! The pipeline's metrics: OpenTelemetry instruments exported for
//! Prometheus, plus plain counters the status line, the built-in dashboard
//! and tests read directly.
//!
//! Metric names are constants here and nowhere else. Each constant is the
//! name of the metric family as `/metrics` shows it (what PromQL, the
//! Grafana dashboards and the built-in dashboard use), following the
//! Prometheus conventions: `_total` on counters, the base unit (`_seconds`,
//! `_bytes`) before it. The OpenTelemetry instrument behind each gets the
//! name without those suffixes and the unit as metadata; the
//! `opentelemetry-prometheus` exporter adds them back, and
//! `every_constant_is_exported` checks that the round trip holds.
//!
//! Labels: `stage` is `ingest`, `validate`, `detect`, or a sink's name
//! (`influxdb`, `kafka`, `lake`, `webhook`, …); `partition` is the input
//! partition.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _, ObservableGauge};
use opentelemetry_sdk::metrics::SdkMeterProvider;

// --- Per stage ----------------------------------------------------------

/// Events into (`direction="in"`) or out of (`direction="out"`) a stage
/// (`stage`, `direction`). `rate()` of it is the stage's throughput.
pub const EVENTS: &str = "gridwatch_events_total";
/// Failed attempts in a stage (`stage`, `kind` = `retryable` | `permanent`).
pub const STAGE_ERRORS: &str = "gridwatch_stage_errors_total";
/// Retries of a failed attempt, under the shared retry policy (`stage`).
pub const STAGE_RETRIES: &str = "gridwatch_stage_retries_total";
/// Dead letters written (`stage`, `reason`).
pub const DEAD_LETTERS: &str = "gridwatch_dead_letters_total";
/// Records per batch handed to a stage (`stage`).
pub const BATCH_RECORDS: &str = "gridwatch_batch_records";
/// Records waiting in front of a stage (`stage`). For `detect` this is the
/// consumer lag summed over partitions; sinks report their buffers.
pub const QUEUE_DEPTH: &str = "gridwatch_queue_depth_records";
/// Distribution of the time one producer call waited for downstream room (`stage`).
pub const BACKPRESSURE_WAIT: &str = "gridwatch_backpressure_wait_seconds";
/// Total time producers spent blocked by backpressure (`stage`); its
/// `rate()` is the fraction of time a producer was blocked.
pub const BACKPRESSURE_BLOCKED: &str = "gridwatch_backpressure_blocked_seconds_total";
/// Time a stage took for one batch (`stage`).
pub const STAGE_DURATION: &str = "gridwatch_stage_duration_seconds";

// --- End to end and pipeline-wide ----------------------------------------

/// Receipt of a reading to its scored result being durably appended.
pub const INGEST_TO_DETECT_LATENCY: &str = "gridwatch_ingest_to_detect_latency_seconds";
/// Anomalies written to the anomalies topic (`severity`, `type`).
pub const ANOMALIES: &str = "gridwatch_anomalies_total";
/// Re-sent readings recognised and dropped at ingest.
pub const DUPLICATES: &str = "gridwatch_duplicates_total";
/// Checkpoints taken (`partition`).
pub const CHECKPOINTS: &str = "gridwatch_checkpoints_total";
/// Time to take a checkpoint.
pub const CHECKPOINT_DURATION: &str = "gridwatch_checkpoint_duration_seconds";
/// Seconds since a partition's last checkpoint (`partition`).
pub const CHECKPOINT_AGE: &str = "gridwatch_checkpoint_age_seconds";
/// Readings appended but not yet processed (`partition`).
pub const CONSUMER_LAG: &str = "gridwatch_consumer_lag_records";
/// Detector module swaps (`module`, `outcome` = `applied` | `rejected` | `rolled_back`).
pub const HOT_SWAPS: &str = "gridwatch_hot_swaps_total";
/// Meters whose state the detector holds (`partition`).
pub const DETECTOR_METERS: &str = "gridwatch_detector_meters";
/// Bytes of detector state, where a detector can tell (`partition`).
pub const DETECTOR_STATE: &str = "gridwatch_detector_state_bytes";

/// Every exported family name, for checks of dashboards and exposition.
pub const ALL: &[&str] = &[
    EVENTS,
    STAGE_ERRORS,
    STAGE_RETRIES,
    DEAD_LETTERS,
    BATCH_RECORDS,
    QUEUE_DEPTH,
    BACKPRESSURE_WAIT,
    BACKPRESSURE_BLOCKED,
    STAGE_DURATION,
    INGEST_TO_DETECT_LATENCY,
    ANOMALIES,
    DUPLICATES,
    CHECKPOINTS,
    CHECKPOINT_DURATION,
    CHECKPOINT_AGE,
    CONSUMER_LAG,
    HOT_SWAPS,
    DETECTOR_METERS,
    DETECTOR_STATE,
];

/// The series names PromQL may use for a family: histograms add
/// `_bucket`, `_sum` and `_count`.
pub fn series_names() -> Vec<String> {
    let mut out = Vec::new();
    for name in ALL {
        out.push((*name).to_string());
        if [
            BATCH_RECORDS,
            BACKPRESSURE_WAIT,
            STAGE_DURATION,
            INGEST_TO_DETECT_LATENCY,
            CHECKPOINT_DURATION,
        ]
        .contains(name)
        {
            for suffix in ["_bucket", "_sum", "_count"] {
                out.push(format!("{name}{suffix}"));
            }
        }
    }
    out
}

/// Latency buckets in seconds: fine below 10 ms, where the targets are.
const LATENCY_BOUNDS: [f64; 16] = [
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// Buckets for waits and checkpoints: 1 ms to a minute.
const WAIT_BOUNDS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 10.0, 60.0,
];

/// Instruments and counters shared by every stage.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: prometheus::Registry,
    _provider: SdkMeterProvider,
    events: Counter<u64>,
    stage_errors: Counter<u64>,
    stage_retries: Counter<u64>,
    anomalies: Counter<u64>,
    dead_letters: Counter<u64>,
    duplicates: Counter<u64>,
    checkpoints: Counter<u64>,
    hot_swaps: Counter<u64>,
    blocked: Counter<f64>,
    latency: Histogram<f64>,
    stage_duration: Histogram<f64>,
    batch_records: Histogram<u64>,
    backpressure: Histogram<f64>,
    checkpoint: Histogram<f64>,
    _gauges: Vec<ObservableGauge<f64>>,
    gauges: Arc<GaugeState>,
    /// Plain totals for the status line and tests.
    totals: Totals,
    latency_us: Mutex<hdrhistogram::Histogram<u64>>,
    taps: Mutex<Vec<Weak<Mutex<hdrhistogram::Histogram<u64>>>>>,
}

/// What the observable gauges report; written by the pipeline, read at scrape.
#[derive(Debug, Default)]
struct GaugeState {
    lag: Mutex<Vec<u64>>,
    checkpoint_at: Mutex<Vec<i64>>,
    detector_meters: Mutex<Vec<Option<u64>>>,
    detector_bytes: Mutex<Vec<Option<u64>>>,
    queue_depth: Mutex<Vec<(String, u64)>>,
    /// The clock checkpoint ages are measured against; 0 means the wall clock.
    now_ms: AtomicI64,
}

/// Running totals, cheap to read.
#[derive(Debug, Default)]
pub struct Totals {
    pub ingested: AtomicU64,
    pub processed: AtomicU64,
    pub anomalies: AtomicU64,
    pub dead_letters: AtomicU64,
    pub duplicates: AtomicU64,
    pub checkpoints: AtomicU64,
    /// Failed attempts in any stage.
    pub errors: AtomicU64,
    pub retries: AtomicU64,
    pub hot_swaps: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("totals", &self.inner.totals)
            .finish()
    }
}

/// A snapshot of latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub count: u64,
}

/// Ingest→detect percentiles over intervals of the reader's choosing,
/// independent of every other reader (the status line resets its own).
#[derive(Debug, Clone)]
pub struct LatencyTap {
    hist: Arc<Mutex<hdrhistogram::Histogram<u64>>>,
}

impl LatencyTap {
    /// Percentiles since the last `take` (or since the tap was made), then resets.
    pub fn take(&self) -> LatencyMs {
        let Ok(mut h) = self.hist.lock() else {
            return LatencyMs::default();
        };
        let out = latency_of(&h);
        h.reset();
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Splits an exported name into the instrument name and unit the exporter
/// turns back into it.
fn instrument(prom: &'static str) -> (&'static str, Option<&'static str>) {
    let base = prom.strip_suffix("_total").unwrap_or(prom);
    if let Some(b) = base.strip_suffix("_seconds") {
        (b, Some("s"))
    } else if let Some(b) = base.strip_suffix("_bytes") {
        (b, Some("By"))
    } else {
        (base, None)
    }
}

fn u64_counter(meter: &Meter, prom: &'static str, help: &'static str) -> Counter<u64> {
    let (name, unit) = instrument(prom);
    let b = meter.u64_counter(name).with_description(help);
    match unit {
        Some(u) => b.with_unit(u).build(),
        None => b.build(),
    }
}

fn f64_histogram(
    meter: &Meter,
    prom: &'static str,
    help: &'static str,
    bounds: &[f64],
) -> Histogram<f64> {
    let (name, unit) = instrument(prom);
    let b = meter
        .f64_histogram(name)
        .with_description(help)
        .with_boundaries(bounds.to_vec());
    match unit {
        Some(u) => b.with_unit(u).build(),
        None => b.build(),
    }
}

fn hdr() -> hdrhistogram::Histogram<u64> {
    // Constant, valid bounds: 1 µs to 60 s at 3 significant digits.
    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)
        .expect("constant histogram bounds are valid")
}

fn set_at<T: Clone + Default>(v: &Mutex<Vec<T>>, i: u32, value: T) {
    if let Ok(mut v) = v.lock() {
        let i = i as usize;
        if v.len() <= i {
            v.resize(i + 1, T::default());
        }
        v[i] = value;
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = prometheus::Registry::new();
        // One instrumentation scope, so its otel_scope_* labels would only
        // add noise to every series.
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .scope_info_enabled(false)
            .build();
        let mut provider = SdkMeterProvider::builder();
        match exporter {
            Ok(exporter) => provider = provider.with_reader(exporter),
            Err(e) => {
                tracing::warn!(error = %e, "Prometheus exporter unavailable; /metrics will be empty.")
            }
        }
        let provider = provider.build();
        let meter = provider.meter("gridwatch");
        let gauges = Arc::new(GaugeState::default());
        let inner = Inner {
            events: u64_counter(&meter, EVENTS, "Events into or out of a stage"),
            stage_errors: u64_counter(&meter, STAGE_ERRORS, "Failed attempts in a stage"),
            stage_retries: u64_counter(&meter, STAGE_RETRIES, "Retries of failed attempts"),
            anomalies: u64_counter(&meter, ANOMALIES, "Anomalies detected"),
            dead_letters: u64_counter(
                &meter,
                DEAD_LETTERS,
                "Events routed to the dead-letter queue",
            ),
            duplicates: u64_counter(&meter, DUPLICATES, "Re-sent readings dropped at ingest"),
            checkpoints: u64_counter(&meter, CHECKPOINTS, "Checkpoints taken"),
            hot_swaps: u64_counter(&meter, HOT_SWAPS, "Detector module swaps"),
            blocked: {
                let (name, unit) = instrument(BACKPRESSURE_BLOCKED);
                meter
                    .f64_counter(name)
                    .with_unit(unit.unwrap_or("s"))
                    .with_description("Time producers spent blocked by backpressure")
                    .build()
            },
            latency: f64_histogram(
                &meter,
                INGEST_TO_DETECT_LATENCY,
                "From receiving a reading to its scored result being durable",
                &LATENCY_BOUNDS,
            ),
            stage_duration: f64_histogram(
                &meter,
                STAGE_DURATION,
                "Time a stage took for one batch",
                &LATENCY_BOUNDS,
            ),
            batch_records: meter
                .u64_histogram(instrument(BATCH_RECORDS).0)
                .with_description("Records per batch")
                .with_boundaries(vec![1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0])
                .build(),
            backpressure: f64_histogram(
                &meter,
                BACKPRESSURE_WAIT,
                "Time one producer call waited for downstream capacity",
                &WAIT_BOUNDS,
            ),
            checkpoint: f64_histogram(
                &meter,
                CHECKPOINT_DURATION,
                "Time to write a checkpoint",
                &WAIT_BOUNDS,
            ),
            _gauges: observable_gauges(&meter, &gauges),
            gauges,
            totals: Totals::default(),
            latency_us: Mutex::new(hdr()),
            taps: Mutex::new(Vec::new()),
            registry,
            _provider: provider,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    pub fn totals(&self) -> &Totals {
        &self.inner.totals
    }

    fn stage_events(&self, stage: &str, direction: &'static str, n: u64) {
        if n > 0 {
            self.inner.events.add(
                n,
                &[
                    KeyValue::new("stage", stage.to_string()),
                    KeyValue::new("direction", direction),
                ],
            );
        }
    }

    /// Readings accepted at ingest and appended to `readings`.
    pub fn ingested(&self, n: u64) {
        self.inner.totals.ingested.fetch_add(n, Ordering::Relaxed);
        self.stage_events("ingest", "in", n);
        self.stage_events("ingest", "out", n);
    }

    /// One batch of `n` readings went through the chain and its results are
    /// durable: `n` into validate, `n` results out of detect (scored or
    /// dead-lettered; dead letters are also counted by stage in
    /// [`DEAD_LETTERS`]).
    pub fn processed(&self, n: u64) {
        self.inner.totals.processed.fetch_add(n, Ordering::Relaxed);
        self.stage_events("validate", "in", n);
        self.stage_events("detect", "out", n);
        self.inner
            .batch_records
            .record(n, &[KeyValue::new("stage", "detect")]);
    }

    /// A batch through any stage: records in and out, and how long it took.
    /// For sinks (`stage` = the sink's name) and for stages timed apart
    /// (`validate`, `detect`, `append`).
    pub fn stage_batch(&self, stage: &str, records_in: u64, records_out: u64, took: Duration) {
        self.stage_events(stage, "in", records_in);
        self.stage_events(stage, "out", records_out);
        let attrs = [KeyValue::new("stage", stage.to_string())];
        self.inner.batch_records.record(records_in, &attrs);
        self.inner.stage_duration.record(took.as_secs_f64(), &attrs);
    }

    /// How long `stage` took for one batch, for stages whose events are
    /// already counted elsewhere (`ingest` by [`Self::ingested`], the chain
    /// by [`Self::processed`]), so they are not counted twice.
    pub fn stage_duration(&self, stage: &str, took: Duration) {
        self.inner.stage_duration.record(
            took.as_secs_f64(),
            &[KeyValue::new("stage", stage.to_string())],
        );
    }

    /// A failed attempt in `stage`; `retryable` says whether the retry
    /// policy may try again.
    pub fn stage_error(&self, stage: &str, retryable: bool) {
        self.inner.totals.errors.fetch_add(1, Ordering::Relaxed);
        self.inner.stage_errors.add(
            1,
            &[
                KeyValue::new("stage", stage.to_string()),
                KeyValue::new("kind", if retryable { "retryable" } else { "permanent" }),
            ],
        );
    }

    /// A retry the shared retry policy made in `stage`.
    pub fn stage_retry(&self, stage: &str) {
        self.inner.totals.retries.fetch_add(1, Ordering::Relaxed);
        self.inner
            .stage_retries
            .add(1, &[KeyValue::new("stage", stage.to_string())]);
    }

    /// Records waiting in a stage's own buffer (sinks); `detect`'s queue is
    /// the consumer lag and is reported by itself.
    pub fn set_queue_depth(&self, stage: &str, depth: u64) {
        if let Ok(mut v) = self.inner.gauges.queue_depth.lock() {
            match v.iter_mut().find(|(s, _)| s == stage) {
                Some(entry) => entry.1 = depth,
                None => v.push((stage.to_string(), depth)),
            }
        }
    }

    pub fn anomaly(&self, severity: &'static str, kind: &'static str) {
        self.inner.totals.anomalies.fetch_add(1, Ordering::Relaxed);
        self.inner.anomalies.add(
            1,
            &[
                KeyValue::new("severity", severity),
                KeyValue::new("type", kind),
            ],
        );
    }

    pub fn dead_letter(&self, stage: &str, reason: &str) {
        self.inner
            .totals
            .dead_letters
            .fetch_add(1, Ordering::Relaxed);
        if stage == "ingest" {
            // Unparseable at the edge: it came in, and went nowhere but the DLQ.
            self.stage_events("ingest", "in", 1);
        }
        self.inner.dead_letters.add(
            1,
            &[
                KeyValue::new("stage", stage.to_string()),
                KeyValue::new("reason", reason.to_string()),
            ],
        );
    }

    pub fn duplicates(&self, n: u64) {
        if n > 0 {
            self.inner.totals.duplicates.fetch_add(n, Ordering::Relaxed);
            self.inner.duplicates.add(n, &[]);
            self.stage_events("ingest", "in", n);
        }
    }

    /// Records one batch's ingest→detect latencies, taking each percentile
    /// lock once per batch rather than once per reading.
    pub fn latencies(&self, each: impl Iterator<Item = Duration>) {
        let Ok(mut h) = self.inner.latency_us.lock() else {
            return;
        };
        let taps: Vec<_> = self
            .inner
            .taps
            .lock()
            .map(|t| t.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default();
        let mut taps: Vec<_> = taps.iter().filter_map(|t| t.lock().ok()).collect();
        for d in each {
            self.inner.latency.record(d.as_secs_f64(), &[]);
            let us = d.as_micros().clamp(1, 60_000_000) as u64;
            let _ = h.record(us);
            for t in &mut taps {
                let _ = t.record(us);
            }
        }
    }

    /// A reader of ingest→detect percentiles with its own intervals.
    pub fn latency_tap(&self) -> LatencyTap {
        let hist = Arc::new(Mutex::new(hdr()));
        if let Ok(mut taps) = self.inner.taps.lock() {
            taps.retain(|t| t.strong_count() > 0);
            taps.push(Arc::downgrade(&hist));
        }
        LatencyTap { hist }
    }

    /// One producer call's wait for downstream room.
    pub fn backpressure_wait(&self, stage: &'static str, d: Duration) {
        let attrs = [KeyValue::new("stage", stage)];
        self.inner.backpressure.record(d.as_secs_f64(), &attrs);
        self.inner.blocked.add(d.as_secs_f64(), &attrs);
    }

    pub fn checkpoint_taken(&self, partition: u32, took: Duration, at_ms: i64) {
        self.inner
            .totals
            .checkpoints
            .fetch_add(1, Ordering::Relaxed);
        self.inner
            .checkpoints
            .add(1, &[KeyValue::new("partition", i64::from(partition))]);
        self.inner.checkpoint.record(took.as_secs_f64(), &[]);
        set_at(&self.inner.gauges.checkpoint_at, partition, at_ms);
    }

    pub fn set_lag(&self, partition: u32, lag: u64) {
        set_at(&self.inner.gauges.lag, partition, lag);
    }

    /// A detector module swap: `outcome` is `applied`, `rejected` (the new
    /// module failed to load or init; the old one keeps running) or
    /// `rolled_back`.
    pub fn hot_swap(&self, module: &str, outcome: &'static str) {
        self.inner.totals.hot_swaps.fetch_add(1, Ordering::Relaxed);
        self.inner.hot_swaps.add(
            1,
            &[
                KeyValue::new("module", module.to_string()),
                KeyValue::new("outcome", outcome),
            ],
        );
    }

    /// How many meters the detector holds state for on a partition, and
    /// (where known) how many bytes that state takes.
    pub fn set_detector_state(&self, partition: u32, meters: Option<u64>, bytes: Option<u64>) {
        set_at(&self.inner.gauges.detector_meters, partition, meters);
        set_at(&self.inner.gauges.detector_bytes, partition, bytes);
    }

    /// Total lag over partitions.
    pub fn lag(&self) -> u64 {
        self.inner
            .gauges
            .lag
            .lock()
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }

    /// Lag per partition.
    pub fn lag_by_partition(&self) -> Vec<u64> {
        self.inner
            .gauges
            .lag
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// Percentiles since the last reset, then resets (for interval reports).
    pub fn take_latency(&self) -> LatencyMs {
        let Ok(mut h) = self.inner.latency_us.lock() else {
            return LatencyMs::default();
        };
        let out = latency_of(&h);
        h.reset();
        out
    }

    /// Percentiles since start (or the last `take_latency`), without resetting.
    pub fn peek_latency(&self) -> LatencyMs {
        self.inner
            .latency_us
            .lock()
            .map(|h| latency_of(&h))
            .unwrap_or_default()
    }

    /// The Prometheus text exposition; checkpoint ages are measured against `now_ms`.
    pub fn render(&self, now_ms: i64) -> String {
        use prometheus::Encoder as _;
        self.inner.gauges.now_ms.store(now_ms, Ordering::Relaxed);
        let families = self.inner.registry.gather();
        let mut out = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The gauges, observed at scrape time from [`GaugeState`].
fn observable_gauges(meter: &Meter, state: &Arc<GaugeState>) -> Vec<ObservableGauge<f64>> {
    let per_partition = |v: &[u64], obs: &dyn opentelemetry::metrics::AsyncInstrument<f64>| {
        for (p, value) in v.iter().enumerate() {
            obs.observe(*value as f64, &[KeyValue::new("partition", p as i64)]);
        }
    };
    let lag = {
        let s = Arc::clone(state);
        meter
            .f64_observable_gauge(instrument(CONSUMER_LAG).0)
            .with_description("Readings appended but not yet processed")
            .with_callback(move |obs| {
                per_partition(&s.lag.lock().map(|v| v.clone()).unwrap_or_default(), obs)
            })
            .build()
    };
    let age = {
        let s = Arc::clone(state);
        let (name, unit) = instrument(CHECKPOINT_AGE);
        meter
            .f64_observable_gauge(name)
            .with_unit(unit.unwrap_or("s"))
            .with_description("Seconds since the last checkpoint")
            .with_callback(move |obs| {
                let now = match s.now_ms.load(Ordering::Relaxed) {
                    0 => crate::processor::now_ms(),
                    n => n,
                };
                let at = s
                    .checkpoint_at
                    .lock()
                    .map(|v| v.clone())
                    .unwrap_or_default();
                for (p, at) in at.iter().enumerate() {
                    if *at > 0 {
                        obs.observe(
                            (now - at).max(0) as f64 / 1000.0,
                            &[KeyValue::new("partition", p as i64)],
                        );
                    }
                }
            })
            .build()
    };
    let queue = {
        let s = Arc::clone(state);
        meter
            .f64_observable_gauge(instrument(QUEUE_DEPTH).0)
            .with_description("Records waiting in front of a stage")
            .with_callback(move |obs| {
                let lag: u64 = s.lag.lock().map(|v| v.iter().sum()).unwrap_or(0);
                obs.observe(lag as f64, &[KeyValue::new("stage", "detect")]);
                for (stage, depth) in s.queue_depth.lock().map(|v| v.clone()).unwrap_or_default() {
                    obs.observe(depth as f64, &[KeyValue::new("stage", stage)]);
                }
            })
            .build()
    };
    let optional = |v: &Mutex<Vec<Option<u64>>>,
                    obs: &dyn opentelemetry::metrics::AsyncInstrument<f64>| {
        for (p, value) in v
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if let Some(value) = value {
                obs.observe(*value as f64, &[KeyValue::new("partition", p as i64)]);
            }
        }
    };
    let meters = {
        let s = Arc::clone(state);
        meter
            .f64_observable_gauge(instrument(DETECTOR_METERS).0)
            .with_description("Meters whose state the detector holds")
            .with_callback(move |obs| optional(&s.detector_meters, obs))
            .build()
    };
    let bytes = {
        let s = Arc::clone(state);
        let (name, unit) = instrument(DETECTOR_STATE);
        meter
            .f64_observable_gauge(name)
            .with_unit(unit.unwrap_or("By"))
            .with_description("Bytes of detector state")
            .with_callback(move |obs| optional(&s.detector_bytes, obs))
            .build()
    };
    vec![lag, age, queue, meters, bytes]
}

fn latency_of(h: &hdrhistogram::Histogram<u64>) -> LatencyMs {
    let ms = |us: u64| us as f64 / 1000.0;
    LatencyMs {
        p50: ms(h.value_at_quantile(0.5)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        count: h.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Families present in an exposition, by their `# TYPE` lines.
    fn families(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some((it.next()?.to_string(), it.next()?.to_string()))
            })
            .collect()
    }

    fn record_everything(m: &Metrics) {
        m.ingested(10);
        m.duplicates(1);
        m.processed(10);
        m.stage_batch("influxdb", 3, 3, Duration::from_millis(2));
        m.stage_duration("detect", Duration::from_millis(1));
        m.stage_error("influxdb", true);
        m.stage_retry("influxdb");
        m.set_queue_depth("influxdb", 7);
        m.anomaly("CRITICAL", "VOLTAGE_SURGE");
        m.dead_letter("validate", "OUT_OF_RANGE");
        m.latencies([Duration::from_millis(3)].into_iter());
        m.backpressure_wait("ingest", Duration::from_millis(5));
        m.checkpoint_taken(0, Duration::from_millis(1), 1_000);
        m.set_lag(0, 4);
        m.hot_swap("gridwatch-detect", "applied");
        m.set_detector_state(0, Some(12), Some(4096));
    }

    #[test]
    fn every_constant_is_exported() {
        let m = Metrics::new();
        record_everything(&m);
        let text = m.render(3_500);
        let found = families(&text);
        for name in ALL {
            assert!(
                found.iter().any(|(f, _)| f == name),
                "{name} missing from the exposition:\n{text}"
            );
        }
        for (family, kind) in &found {
            assert!(
                ALL.contains(&family.as_str()),
                "{family} is exported but has no constant"
            );
            match kind.as_str() {
                "counter" => assert!(family.ends_with("_total"), "{family}"),
                _ => assert!(!family.ends_with("_total"), "{family} is a {kind}"),
            }
        }
        assert!(
            text.contains("gridwatch_checkpoint_age_seconds{partition=\"0\"} 2.5"),
            "{text}"
        );
        assert!(text.contains("gridwatch_queue_depth_records{stage=\"detect\"} 4"));
        assert!(!text.contains("otel_scope"), "{text}");
    }

    #[test]
    fn taps_are_independent_of_the_status_line() {
        let m = Metrics::new();
        let tap = m.latency_tap();
        m.latencies([Duration::from_millis(2), Duration::from_millis(4)].into_iter());
        assert_eq!(m.take_latency().count, 2);
        let t = tap.take();
        assert_eq!(t.count, 2);
        assert!((3.9..4.1).contains(&t.p99), "{t:?}");
        assert_eq!(tap.take().count, 0);
        drop(tap);
        m.latencies([Duration::from_millis(1)].into_iter());
        assert_eq!(m.inner.taps.lock().map(|t| t.len()).unwrap_or(0), 1);
        let _ = m.latency_tap();
        assert_eq!(m.inner.taps.lock().map(|t| t.len()).unwrap_or(0), 1);
    }

    #[test]
    fn series_names_cover_histogram_parts() {
        let names = series_names();
        assert!(names.contains(&"gridwatch_ingest_to_detect_latency_seconds_bucket".to_string()));
        assert!(names.contains(&"gridwatch_events_total".to_string()));
    }
}
