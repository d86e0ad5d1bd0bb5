//! Pipeline health over time: the metrics sampled every second (by
//! default) into a ring the health view charts.
//!
//! Rates are the change of the running totals over the sampling interval;
//! latency percentiles come from a [`LatencyTap`], so they cover exactly
//! that interval and do not disturb the status line's own percentiles.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridwatch_runtime::metrics::{LatencyTap, Metrics};
use gridwatch_runtime::processor::now_ms;
use serde::Serialize;
use tokio::sync::watch;

/// One sample of the pipeline's health.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// When, epoch ms.
    pub t_ms: i64,
    /// Readings accepted at ingest per second.
    pub ingest_rate: f64,
    /// Readings through validate → detect per second.
    pub processed_rate: f64,
    pub anomaly_rate: f64,
    /// Failed attempts per second in any stage (sinks' write errors and the like).
    pub error_rate: f64,
    /// Dead letters per second.
    pub dlq_rate: f64,
    /// Readings appended but not processed, over all partitions.
    pub lag: u64,
    /// Ingest→detect latency over the interval; absent when nothing was processed.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub processed_total: u64,
    pub anomalies_total: u64,
    pub dead_letters_total: u64,
}

/// The last samples, oldest first.
#[derive(Debug, Clone)]
pub struct HealthHistory {
    inner: Arc<Mutex<VecDeque<Sample>>>,
    keep: usize,
}

impl HealthHistory {
    pub fn new(keep: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(VecDeque::with_capacity(keep.min(100_000)))),
            keep: keep.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Sample>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, s: Sample) {
        let mut v = self.lock();
        v.push_back(s);
        while v.len() > self.keep {
            v.pop_front();
        }
    }

    /// Samples taken after `t_ms`.
    pub fn since(&self, t_ms: i64) -> Vec<Sample> {
        self.lock()
            .iter()
            .filter(|s| s.t_ms > t_ms)
            .copied()
            .collect()
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    ingested: u64,
    processed: u64,
    anomalies: u64,
    errors: u64,
    dead_letters: u64,
}

fn counts(m: &Metrics) -> Counts {
    let t = m.totals();
    Counts {
        ingested: t.ingested.load(Ordering::Relaxed),
        processed: t.processed.load(Ordering::Relaxed),
        anomalies: t.anomalies.load(Ordering::Relaxed),
        errors: t.errors.load(Ordering::Relaxed),
        dead_letters: t.dead_letters.load(Ordering::Relaxed),
    }
}

/// Takes one sample: the change since `last` over `elapsed`.
fn sample(m: &Metrics, tap: &LatencyTap, last: &mut Counts, elapsed: Duration) -> Sample {
    let now = counts(m);
    let secs = elapsed.as_secs_f64().max(1e-3);
    let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
    let latency = tap.take();
    let (p50, p99) = if latency.count > 0 {
        (Some(latency.p50), Some(latency.p99))
    } else {
        (None, None)
    };
    let s = Sample {
        t_ms: now_ms(),
        ingest_rate: rate(now.ingested, last.ingested),
        processed_rate: rate(now.processed, last.processed),
        anomaly_rate: rate(now.anomalies, last.anomalies),
        error_rate: rate(now.errors, last.errors),
        dlq_rate: rate(now.dead_letters, last.dead_letters),
        lag: m.lag(),
        p50_ms: p50,
        p99_ms: p99,
        processed_total: now.processed,
        anomalies_total: now.anomalies,
        dead_letters_total: now.dead_letters,
    };
    *last = now;
    s
}

/// Samples `metrics` every `every` into `history` until shutdown.
pub fn spawn_sampler(
    history: HealthHistory,
    metrics: Metrics,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let every = every.max(Duration::from_millis(100));
    let tap = metrics.latency_tap();
    tokio::spawn(async move {
        let mut last = counts(&metrics);
        let mut at = Instant::now();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let elapsed = at.elapsed();
            at = Instant::now();
            history.push(sample(&metrics, &tap, &mut last, elapsed));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_the_change_over_the_interval() {
        let m = Metrics::new();
        let tap = m.latency_tap();
        let mut last = counts(&m);
        m.ingested(100);
        m.processed(100);
        m.dead_letter("validate", "OUT_OF_RANGE");
        m.latencies([Duration::from_millis(2), Duration::from_millis(8)].into_iter());
        m.set_lag(1, 7);
        let s = sample(&m, &tap, &mut last, Duration::from_secs(2));
        assert_eq!(s.ingest_rate, 50.0);
        assert_eq!(s.processed_rate, 50.0);
        assert_eq!(s.dlq_rate, 0.5);
        assert_eq!(s.lag, 7);
        assert!(s.p99_ms.is_some_and(|p| (7.9..8.1).contains(&p)), "{s:?}");
        let s = sample(&m, &tap, &mut last, Duration::from_secs(1));
        assert_eq!(s.ingest_rate, 0.0);
        assert_eq!(s.p50_ms, None);
    }

    #[test]
    fn history_keeps_the_newest() {
        let h = HealthHistory::new(2);
        for t in 1..=3 {
            h.push(Sample {
                t_ms: t,
                ingest_rate: 0.0,
                processed_rate: 0.0,
                anomaly_rate: 0.0,
                error_rate: 0.0,
                dlq_rate: 0.0,
                lag: 0,
                p50_ms: None,
                p99_ms: None,
                processed_total: 0,
                anomalies_total: 0,
                dead_letters_total: 0,
            });
        }
        let all = h.since(i64::MIN);
        assert_eq!(all.iter().map(|s| s.t_ms).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(h.since(2).len(), 1);
    }
}
