//! `gridwatch soak`: a long run at a fixed rate (SC-001: 10,000 events/s for
//! an hour), sampled over time, with the two verdicts the issue asks for.
//!
//! - **No loss:** every reading the load generator sent was acknowledged,
//!   ingest counted exactly those, the processors processed all of them,
//!   the lag is zero after the drain, and the output topics hold one record
//!   (scored or dead letter) per reading — counted from the topics' high
//!   watermarks, not from the pipeline's own counters.
//! - **No degradation:** p99 ingest→detect latency over the last sixth of
//!   the run (the last 10 minutes of an hour) is within 20% of p99 over the
//!   first sixth. Latency is stamped in whole milliseconds by the runtime,
//!   so a difference within 1 ms also passes: smaller ones cannot be told
//!   apart from rounding.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gridwatch_contracts::ConfigError;
use serde::Serialize;

use crate::bench::{mib, wait};
use crate::child::{ChildOptions, Pipeline};
use crate::error::BenchError;
use crate::load::{Load, LoadOptions, LoadTotals};
use crate::probe::{Histogram, Percentiles, Probe};
use crate::table::Table;

/// Options of [`soak()`]; [`SoakOptions::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// The `gridwatch` executable and how to start it.
    pub child: ChildOptions,
    /// Readings per second. Default 10,000 (SC-001).
    pub rate: f64,
    /// Length of the run. Default 1 h.
    pub duration: Duration,
    /// Time between samples. Default 10 s (5 s below 2 minutes).
    pub sample_every: Duration,
    /// Simulated meters; `None` is `rate` meters, so each reports once a
    /// second and event time keeps step with the wall clock.
    pub meters: Option<u32>,
    /// Concurrent HTTP clients. Default 4.
    pub clients: usize,
    /// Readings per request. Default 500.
    pub batch: usize,
    /// The windows compared for degradation; `None` is a sixth of the run.
    pub compare_window: Option<Duration>,
    /// Longest wait for the pipeline to catch up after the load stops. Default 120 s.
    pub drain_timeout: Duration,
    /// One line on stderr per sample, so an hour-long run shows it is alive
    /// and how it is doing. Default off (the library's callers decide).
    pub progress: bool,
}

impl SoakOptions {
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            child: ChildOptions::new(binary),
            rate: 10_000.0,
            duration: Duration::from_secs(3600),
            sample_every: Duration::from_secs(10),
            meters: None,
            clients: 4,
            batch: 500,
            compare_window: None,
            drain_timeout: Duration::from_secs(120),
            progress: false,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(ConfigError::new(
                "rate",
                self.rate,
                "more than 0 readings/s (a soak runs at a fixed rate)",
            ));
        }
        if self.sample_every < Duration::from_secs(1) || self.sample_every > self.duration {
            return Err(ConfigError::new(
                "sample_every",
                humantime::format_duration(self.sample_every),
                "1s to the duration",
            ));
        }
        if self.duration < Duration::from_secs(3) {
            return Err(ConfigError::new(
                "duration",
                humantime::format_duration(self.duration),
                "at least 3s",
            ));
        }
        if let Some(m) = self.meters
            && !(1..=1_000_000).contains(&m)
        {
            return Err(ConfigError::new("meters", m, "1 to 1000000"));
        }
        Ok(())
    }

    fn meters(&self) -> u32 {
        self.meters
            .unwrap_or_else(|| self.rate.round().clamp(1.0, 1_000_000.0) as u32)
    }

    fn compare_window(&self) -> Duration {
        self.compare_window
            .unwrap_or(self.duration / 6)
            .max(self.sample_every)
    }
}

/// One point of the time series.
#[derive(Debug, Clone, Serialize)]
pub struct SoakSample {
    /// Seconds since the load started (end of the interval).
    pub t_s: f64,
    /// Readings acknowledged per second over the interval.
    pub sent_per_sec: f64,
    /// Readings processed per second over the interval.
    pub processed_per_sec: f64,
    /// Ingest→detect latency over the interval (Prometheus histogram).
    pub latency_ms: Percentiles,
    pub rss_bytes: u64,
    /// Unprocessed readings at the sample.
    pub lag: u64,
    /// CPU cores the gridwatch process kept busy over the interval.
    pub cpu_cores: f64,
}

/// The no-loss verdict and the counts behind it.
#[derive(Debug, Clone, Serialize)]
pub struct LossCheck {
    pub ok: bool,
    /// Readings in acknowledged requests.
    pub sent: u64,
    pub accepted_by_ingest: u64,
    /// Ingest's own count (`/api/v1/status` `ingested`).
    pub ingested: u64,
    pub processed: u64,
    /// Records in the `scored` and `dead-letter` topics (high watermarks).
    pub output_records: u64,
    pub lag_after_drain: u64,
    /// Seconds from stopping the load until everything was processed.
    pub drain_s: f64,
    /// What did not add up, if anything.
    pub problems: Vec<String>,
}

/// The no-degradation verdict.
#[derive(Debug, Clone, Serialize)]
pub struct DegradationCheck {
    pub ok: bool,
    pub window_s: f64,
    pub first_p99_ms: f64,
    pub last_p99_ms: f64,
    /// last / first.
    pub ratio: f64,
}

/// What [`soak()`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub target_rate: f64,
    pub meters: u32,
    pub duration_s: f64,
    /// Mean processed readings per second over the run.
    pub events_per_sec: f64,
    /// Ingest→detect latency over the whole run.
    pub latency_ms: Percentiles,
    pub peak_rss_bytes: u64,
    pub samples: Vec<SoakSample>,
    pub loss: LossCheck,
    pub degradation: DegradationCheck,
    pub load: LoadTotals,
    /// Both checks passed.
    pub passed: bool,
}

/// Runs the soak test and reports it. Fails only when it could not run;
/// loss and degradation are verdicts in the report.
pub fn soak(opts: &SoakOptions) -> Result<SoakReport, BenchError> {
    opts.validate()?;
    let meters = opts.meters();
    let mut child = opts.child.clone();
    child.args.push("--no-simulator".into());
    let mut pipeline = Pipeline::start(&child)?;
    let probe = Probe::new(pipeline.url())?;
    let base_hist = Histogram::latency(&probe.metrics()?);
    let load = Load::start(&LoadOptions {
        url: pipeline.url().to_string(),
        meters,
        rate: opts.rate,
        clients: opts.clients,
        batch: opts.batch,
        seed: 42,
    })?;
    let started = Instant::now();
    let mut hists = vec![(0.0f64, base_hist)];
    let mut samples = Vec::new();
    let (mut last_sent, mut last_processed) = (0u64, probe.status()?.processed);
    let mut last_cpu = pipeline.stats()?.cpu_ns;
    let mut last_at = started;
    while started.elapsed() < opts.duration {
        let left = opts.duration.saturating_sub(started.elapsed());
        if let Err(e) = wait(&mut pipeline, opts.sample_every.min(left)) {
            let _ = load.finish();
            return Err(e);
        }
        let now = Instant::now();
        let proc = pipeline.stats()?;
        let status = probe.status()?;
        let hist = Histogram::latency(&probe.metrics()?);
        let sent = load.totals().sent;
        let dt = (now - last_at).as_secs_f64().max(1e-9);
        let t_s = (now - started).as_secs_f64();
        let interval = hist.since(&hists.last().map(|h| h.1.clone()).unwrap_or_default());
        samples.push(SoakSample {
            t_s,
            sent_per_sec: sent.saturating_sub(last_sent) as f64 / dt,
            processed_per_sec: status.processed.saturating_sub(last_processed) as f64 / dt,
            latency_ms: interval.percentiles_ms().unwrap_or_default(),
            rss_bytes: proc.rss_bytes,
            lag: status.lag,
            cpu_cores: proc.cpu_ns.saturating_sub(last_cpu) as f64 / 1e9 / dt,
        });
        if opts.progress
            && let Some(x) = samples.last()
        {
            eprintln!(
                "soak {:>6.0}s/{:.0}s  sent {:>8.0}/s  processed {:>8.0}/s  p99 {:>7.1} ms  rss {:>5} MiB  lag {}",
                x.t_s,
                opts.duration.as_secs_f64(),
                x.sent_per_sec,
                x.processed_per_sec,
                x.latency_ms.p99,
                x.rss_bytes >> 20,
                x.lag
            );
        }
        hists.push((t_s, hist));
        (last_sent, last_processed, last_cpu, last_at) = (sent, status.processed, proc.cpu_ns, now);
    }
    let run_s = started.elapsed().as_secs_f64();
    let (totals, load_errors) = load.finish_counting()?;

    // Drain: the pipeline catches up with what was acknowledged.
    let drain_started = Instant::now();
    let mut status = probe.status()?;
    while (status.processed < status.ingested || status.lag > 0)
        && drain_started.elapsed() < opts.drain_timeout
    {
        pipeline.check_alive()?;
        std::thread::sleep(Duration::from_millis(200));
        status = probe.status()?;
    }
    let drain_s = drain_started.elapsed().as_secs_f64();
    let output_records = probe.topic_records("scored")? + probe.topic_records("dead-letter")?;
    let peak_rss_bytes = pipeline.stats()?.peak_rss_bytes;
    let final_hist = Histogram::latency(&probe.metrics()?);
    let _ = pipeline.stop();

    let mut problems = Vec::new();
    if totals.errors > 0 || totals.failed > 0 {
        problems.push(format!(
            "{} ingest errors, {} readings never acknowledged; first: {}",
            totals.errors,
            totals.failed,
            load_errors.first().map_or("-", String::as_str)
        ));
    }
    if totals.sent != totals.generated {
        problems.push(format!(
            "{} readings generated but {} acknowledged",
            totals.generated, totals.sent
        ));
    }
    if totals.accepted + totals.duplicates + totals.rejected != totals.sent {
        problems.push(format!(
            "ingest answered for {} of {} readings",
            totals.accepted + totals.duplicates + totals.rejected,
            totals.sent
        ));
    }
    if totals.rejected > 0 || totals.duplicates > 0 {
        problems.push(format!(
            "{} rejected and {} duplicates among unique, valid readings",
            totals.rejected, totals.duplicates
        ));
    }
    if status.ingested != totals.accepted {
        problems.push(format!(
            "ingest counted {} but acknowledged {}",
            status.ingested, totals.accepted
        ));
    }
    if status.processed != totals.accepted {
        problems.push(format!(
            "processed {} of {} accepted",
            status.processed, totals.accepted
        ));
    }
    if status.lag != 0 {
        problems.push(format!("lag {} after the drain", status.lag));
    }
    if output_records != totals.accepted {
        problems.push(format!(
            "the scored and dead-letter topics hold {output_records} records for {} accepted readings",
            totals.accepted
        ));
    }
    let loss = LossCheck {
        ok: problems.is_empty(),
        sent: totals.sent,
        accepted_by_ingest: totals.accepted,
        ingested: status.ingested,
        processed: status.processed,
        output_records,
        lag_after_drain: status.lag,
        drain_s,
        problems,
    };

    let window = opts.compare_window().as_secs_f64().min(run_s);
    let at = |t: f64| {
        hists
            .iter()
            .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()))
            .map(|h| h.1.clone())
            .unwrap_or_default()
    };
    let p99 = |h: Histogram| h.quantile(0.99).map_or(0.0, |s| s * 1000.0);
    let first_p99_ms = p99(at(window).since(&at(0.0)));
    let last_p99_ms = p99(at(run_s).since(&at(run_s - window)));
    let ratio = if first_p99_ms > 0.0 {
        last_p99_ms / first_p99_ms
    } else {
        f64::INFINITY
    };
    let degradation = DegradationCheck {
        ok: last_p99_ms <= first_p99_ms * 1.2 || last_p99_ms - first_p99_ms <= 1.0,
        window_s: window,
        first_p99_ms,
        last_p99_ms,
        ratio,
    };
    let whole = final_hist.since(&hists[0].1);
    Ok(SoakReport {
        target_rate: opts.rate,
        meters,
        duration_s: run_s,
        events_per_sec: totals.accepted as f64 / run_s,
        latency_ms: whole.percentiles_ms().unwrap_or_default(),
        peak_rss_bytes,
        passed: loss.ok && degradation.ok,
        samples,
        loss,
        degradation,
        load: totals,
    })
}

impl SoakReport {
    /// The time series and the verdicts as plain text.
    pub fn table(&self) -> String {
        let mut t = Table::new([
            "t (s)",
            "sent/s",
            "processed/s",
            "p50 ms",
            "p99 ms",
            "p999 ms",
            "RSS",
            "lag",
            "CPU cores",
        ]);
        for s in &self.samples {
            t.row([
                &format!("{:.0}", s.t_s),
                &format!("{:.0}", s.sent_per_sec),
                &format!("{:.0}", s.processed_per_sec),
                &format!("{:.2}", s.latency_ms.p50),
                &format!("{:.2}", s.latency_ms.p99),
                &format!("{:.2}", s.latency_ms.p999),
                &mib(s.rss_bytes),
                &s.lag.to_string(),
                &format!("{:.2}", s.cpu_cores),
            ]);
        }
        let mut out = format!(
            "gridwatch soak: {:.0} readings/s target, {} meters, {:.0} s\n\n",
            self.target_rate, self.meters, self.duration_s
        );
        out.push_str(&t.render());
        out.push_str(&format!(
            "\nthroughput {:.0} events/s; latency p50 {:.2} / p99 {:.2} / p999 {:.2} ms; peak RSS {}\n",
            self.events_per_sec,
            self.latency_ms.p50,
            self.latency_ms.p99,
            self.latency_ms.p999,
            mib(self.peak_rss_bytes)
        ));
        let l = &self.loss;
        out.push_str(&format!(
            "no loss: {} (sent {}, accepted {}, ingested {}, processed {}, in output topics {}, lag {}, drained in {:.1} s){}\n",
            if l.ok { "PASS" } else { "FAIL" },
            l.sent,
            l.accepted_by_ingest,
            l.ingested,
            l.processed,
            l.output_records,
            l.lag_after_drain,
            l.drain_s,
            if l.problems.is_empty() {
                String::new()
            } else {
                format!(": {}", l.problems.join("; "))
            }
        ));
        let d = &self.degradation;
        out.push_str(&format!(
            "no degradation: {} (p99 first {:.0} s: {:.2} ms, last {:.0} s: {:.2} ms, ratio {:.2}; allowed 1.20 or +1 ms)\n",
            if d.ok { "PASS" } else { "FAIL" },
            d.window_s,
            d.first_p99_ms,
            d.window_s,
            d.last_p99_ms,
            d.ratio
        ));
        out
    }
}
