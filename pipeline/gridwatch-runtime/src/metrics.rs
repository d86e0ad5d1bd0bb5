//! The pipeline's metrics: OpenTelemetry instruments exported for
//! Prometheus, plus plain counters the status line and tests read directly.
//!
//! Metric names are constants here and nowhere else; the dashboards are
//! checked against them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;

/// Events entering or leaving a stage (`stage`, `direction`).
pub const EVENTS: &str = "gridwatch_events";
/// Anomalies written to the anomalies topic (`severity`, `type`).
pub const ANOMALIES: &str = "gridwatch_anomalies";
/// Dead letters written (`stage`, `reason`).
pub const DEAD_LETTERS: &str = "gridwatch_dead_letters";
/// Re-sent readings recognised and dropped at ingest.
pub const DUPLICATES: &str = "gridwatch_duplicates";
/// Receipt of a reading to its scored result being durably appended.
pub const INGEST_TO_DETECT_LATENCY: &str = "gridwatch_ingest_to_detect_latency";
/// Records per batch handed to a stage (`stage`).
pub const BATCH_SIZE: &str = "gridwatch_batch_size";
/// Time a producer spent blocked by backpressure (`stage`).
pub const BACKPRESSURE_WAIT: &str = "gridwatch_backpressure_wait";
/// Time to take a checkpoint.
pub const CHECKPOINT_DURATION: &str = "gridwatch_checkpoint_duration";
/// Readings not yet processed (`partition`).
pub const CONSUMER_LAG: &str = "gridwatch_consumer_lag";
/// Seconds since the last checkpoint (`partition`).
pub const CHECKPOINT_AGE: &str = "gridwatch_checkpoint_age";

/// Latency buckets in seconds: fine below 10 ms, where the targets are.
const LATENCY_BOUNDS: [f64; 16] = [
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
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
    anomalies: Counter<u64>,
    dead_letters: Counter<u64>,
    duplicates: Counter<u64>,
    latency: Histogram<f64>,
    batch_size: Histogram<u64>,
    backpressure: Histogram<f64>,
    checkpoint: Histogram<f64>,
    /// Plain totals for the status line and tests.
    pub totals: Totals,
    latency_us: Mutex<hdrhistogram::Histogram<u64>>,
    lag: Mutex<Vec<u64>>,
    checkpoint_at: Mutex<Vec<i64>>,
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

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
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
        let inner = Inner {
            events: meter
                .u64_counter(EVENTS)
                .with_description("Events into or out of a stage")
                .build(),
            anomalies: meter
                .u64_counter(ANOMALIES)
                .with_description("Anomalies detected")
                .build(),
            dead_letters: meter
                .u64_counter(DEAD_LETTERS)
                .with_description("Events routed to the dead-letter queue")
                .build(),
            duplicates: meter
                .u64_counter(DUPLICATES)
                .with_description("Re-sent readings dropped at ingest")
                .build(),
            latency: meter
                .f64_histogram(INGEST_TO_DETECT_LATENCY)
                .with_unit("s")
                .with_description("From receiving a reading to its scored result being durable")
                .with_boundaries(LATENCY_BOUNDS.to_vec())
                .build(),
            batch_size: meter
                .u64_histogram(BATCH_SIZE)
                .with_description("Records per batch")
                .with_boundaries(vec![1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0])
                .build(),
            backpressure: meter
                .f64_histogram(BACKPRESSURE_WAIT)
                .with_unit("s")
                .with_description("Time producers waited for downstream capacity")
                .build(),
            checkpoint: meter
                .f64_histogram(CHECKPOINT_DURATION)
                .with_unit("s")
                .with_description("Time to write a checkpoint")
                .build(),
            totals: Totals::default(),
            // Constant, valid bounds: 1 µs to 60 s at 3 significant digits.
            latency_us: Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)
                    .expect("constant histogram bounds are valid"),
            ),
            lag: Mutex::new(Vec::new()),
            checkpoint_at: Mutex::new(Vec::new()),
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

    pub fn ingested(&self, n: u64) {
        self.inner.totals.ingested.fetch_add(n, Ordering::Relaxed);
        self.inner.events.add(
            n,
            &[
                KeyValue::new("stage", "ingest"),
                KeyValue::new("direction", "out"),
            ],
        );
    }

    pub fn processed(&self, n: u64) {
        self.inner.totals.processed.fetch_add(n, Ordering::Relaxed);
        self.inner.events.add(
            n,
            &[
                KeyValue::new("stage", "detect"),
                KeyValue::new("direction", "out"),
            ],
        );
        self.inner
            .batch_size
            .record(n, &[KeyValue::new("stage", "detect")]);
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
        }
    }

    /// Records one batch's ingest→detect latencies, taking the percentile
    /// lock once per batch rather than once per reading.
    pub fn latencies(&self, each: impl Iterator<Item = Duration>) {
        let Ok(mut h) = self.inner.latency_us.lock() else {
            return;
        };
        for d in each {
            self.inner.latency.record(d.as_secs_f64(), &[]);
            let _ = h.record(d.as_micros().clamp(1, 60_000_000) as u64);
        }
    }

    pub fn backpressure_wait(&self, stage: &'static str, d: Duration) {
        self.inner
            .backpressure
            .record(d.as_secs_f64(), &[KeyValue::new("stage", stage)]);
    }

    pub fn checkpoint_taken(&self, partition: u32, took: Duration, at_ms: i64) {
        self.inner
            .totals
            .checkpoints
            .fetch_add(1, Ordering::Relaxed);
        self.inner.checkpoint.record(took.as_secs_f64(), &[]);
        if let Ok(mut v) = self.inner.checkpoint_at.lock() {
            let i = partition as usize;
            if v.len() <= i {
                v.resize(i + 1, 0);
            }
            v[i] = at_ms;
        }
    }

    pub fn set_lag(&self, partition: u32, lag: u64) {
        if let Ok(mut v) = self.inner.lag.lock() {
            let i = partition as usize;
            if v.len() <= i {
                v.resize(i + 1, 0);
            }
            v[i] = lag;
        }
    }

    /// Total lag over partitions.
    pub fn lag(&self) -> u64 {
        self.inner.lag.lock().map(|v| v.iter().sum()).unwrap_or(0)
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

    /// The Prometheus text exposition, with gauges refreshed.
    pub fn render(&self, now_ms: i64) -> String {
        use prometheus::Encoder as _;
        let mut families = self.inner.registry.gather();
        families.extend(self.gauges(now_ms));
        let mut out = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    fn gauges(&self, now_ms: i64) -> Vec<prometheus::proto::MetricFamily> {
        let lag = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(CONSUMER_LAG, "Readings appended but not yet processed"),
            &["partition"],
        );
        let age = prometheus::GaugeVec::new(
            prometheus::Opts::new(
                format!("{CHECKPOINT_AGE}_seconds"),
                "Seconds since the last checkpoint",
            ),
            &["partition"],
        );
        let mut out = Vec::new();
        if let Ok(lag) = lag {
            for (p, v) in self
                .inner
                .lag
                .lock()
                .map(|v| v.clone())
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                lag.with_label_values(&[p.to_string()]).set(*v as i64);
            }
            out.extend(prometheus::core::Collector::collect(&lag));
        }
        if let Ok(age) = age {
            for (p, at) in self
                .inner
                .checkpoint_at
                .lock()
                .map(|v| v.clone())
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                if *at > 0 {
                    age.with_label_values(&[p.to_string()])
                        .set((now_ms - at) as f64 / 1000.0);
                }
            }
            out.extend(prometheus::core::Collector::collect(&age));
        }
        out
    }
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
