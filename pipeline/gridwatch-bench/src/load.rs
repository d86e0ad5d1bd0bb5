//! HTTP load: simulator readings as NDJSON, POSTed to `/api/v1/readings` by
//! several concurrent clients, paced to a rate or flat out.
//!
//! One generator thread makes request bodies (the simulator is
//! deterministic and cheap) and hands them to the clients over a bounded
//! queue, so a slow pipeline slows the generator down instead of piling up
//! memory. A 503 for backpressure is retried with the same body after a
//! pause, as a well-behaved producer would; every reading is counted once,
//! when its request is answered. Any other failure (a 503 because the log
//! could not store the readings, e.g. a full disk; another status; a
//! connection error) is an ingest error: counted, the first one printed
//! with its reason at once, retried a few times, then given up and counted
//! as failed, so a broken pipeline shows in the report instead of stalling
//! the load silently.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gridwatch_contracts::ConfigError;
use gridwatch_simulator::{FaultConfig, SimEvent, Simulator, SimulatorConfig};
use serde::{Deserialize, Serialize};

use crate::error::BenchError;

/// How to load a gridwatch over HTTP.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `http://host:port` of the gridwatch.
    pub url: String,
    /// Simulated meters. At `rate` = `meters` readings/s event time keeps
    /// step with the wall clock.
    pub meters: u32,
    /// Readings per second across all clients; 0 is flat out.
    pub rate: f64,
    /// Concurrent HTTP clients.
    pub clients: usize,
    /// Readings per request.
    pub batch: usize,
    /// Simulator seed.
    pub seed: u64,
}

impl LoadOptions {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.rate.is_finite() && self.rate >= 0.0) {
            return Err(ConfigError::new("rate", self.rate, "0 (flat out) or more"));
        }
        if !(1..=256).contains(&self.clients) {
            return Err(ConfigError::new("clients", self.clients, "1 to 256"));
        }
        if !(1..=100_000).contains(&self.batch) {
            return Err(ConfigError::new("batch", self.batch, "1 to 100000"));
        }
        Ok(())
    }
}

/// Readings counted by the load generator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LoadTotals {
    /// Readings generated and queued for sending.
    pub generated: u64,
    /// Readings in requests that were answered 200.
    pub sent: u64,
    /// Of those, accepted by ingest (appended durably).
    pub accepted: u64,
    /// Of those, recognised as duplicates.
    pub duplicates: u64,
    /// Of those, rejected as unparseable.
    pub rejected: u64,
    /// Requests retried after a 503 (backpressure).
    pub retries: u64,
    /// Readings in requests that failed for good (never answered 200).
    pub failed: u64,
    /// Ingest errors: answers other than 200 and backpressure, and
    /// requests that got no answer, counting every attempt.
    pub errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    generated: AtomicU64,
    sent: AtomicU64,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    retries: AtomicU64,
    failed: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn totals(&self) -> LoadTotals {
        LoadTotals {
            generated: self.generated.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// What ingest answers.
#[derive(Debug, Deserialize)]
struct Outcome {
    accepted: u64,
    rejected: u64,
    duplicates: u64,
}

/// A running load; [`Load::finish`] stops it and waits for every queued request.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    threads: Vec<JoinHandle<()>>,
    errors: Arc<Mutex<Vec<String>>>,
}

/// Consecutive failures (other than 503) after which a request is given up.
const MAX_ATTEMPTS: u32 = 5;

impl Load {
    /// Starts the generator and the clients.
    pub fn start(opts: &LoadOptions) -> Result<Self, BenchError> {
        opts.validate()?;
        let config = SimulatorConfig {
            meters: opts.meters,
            feeders: opts.meters.clamp(1, 10),
            rate: None,
            seed: opts.seed,
            // Only readings go over HTTP; malformed bytes are the bad-input tests' job.
            faults: FaultConfig {
                malformed_rate: 0.0,
                ..FaultConfig::default()
            },
            ..SimulatorConfig::default()
        };
        let mut sim = Simulator::new(config)?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let errors = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::sync_channel::<(Vec<u8>, u64)>(opts.clients * 2);
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::new();
        {
            let (stop, counters) = (stop.clone(), counters.clone());
            let (rate, batch) = (opts.rate, opts.batch);
            threads.push(std::thread::spawn(move || {
                let started = Instant::now();
                let mut events = Vec::with_capacity(batch);
                let mut made = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if rate > 0.0 {
                        let due = started + Duration::from_secs_f64(made as f64 / rate);
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep((due - now).min(Duration::from_millis(100)));
                            continue;
                        }
                    }
                    events.clear();
                    sim.fill(&mut events, batch);
                    let mut body = Vec::with_capacity(batch * 140);
                    let mut n = 0u64;
                    for e in &events {
                        if let SimEvent::Reading(r, _) = e
                            && serde_json::to_writer(&mut body, r).is_ok()
                        {
                            body.push(b'\n');
                            n += 1;
                        }
                    }
                    made += n;
                    counters.generated.fetch_add(n, Ordering::Relaxed);
                    if tx.send((body, n)).is_err() {
                        break;
                    }
                }
            }));
        }
        for _ in 0..opts.clients {
            let (rx, counters, errors) = (rx.clone(), counters.clone(), errors.clone());
            let url = format!("{}/api/v1/readings", opts.url.trim_end_matches('/'));
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .map_err(BenchError::http("building a client"))?;
            threads.push(std::thread::spawn(move || {
                loop {
                    let next = rx.lock().ok().and_then(|rx| rx.recv().ok());
                    let Some((body, n)) = next else { break };
                    post(&client, &url, body, n, &counters, &errors);
                }
            }));
        }
        Ok(Self {
            stop,
            counters,
            threads,
            errors,
        })
    }

    /// Counts so far.
    pub fn totals(&self) -> LoadTotals {
        self.counters.totals()
    }

    /// The first ingest errors (at most five), with their reasons.
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Stops generating, sends what is queued, and returns the final counts,
    /// failing if any reading was never acknowledged.
    pub fn finish(self) -> Result<LoadTotals, BenchError> {
        let (totals, errors) = self.finish_counting()?;
        if totals.failed > 0 {
            return Err(BenchError::Load(format!(
                "{} readings were never acknowledged ({} ingest errors): {}",
                totals.failed,
                totals.errors,
                errors.join("; ")
            )));
        }
        Ok(totals)
    }

    /// As [`Load::finish`], but readings that were never acknowledged are
    /// only counted (`failed`), with the first ingest errors alongside, for
    /// a report that gives its verdict rather than stopping short.
    pub fn finish_counting(self) -> Result<(LoadTotals, Vec<String>), BenchError> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join()
                .map_err(|_| BenchError::Load("a load thread panicked".into()))?;
        }
        let errors = self.errors.lock().map(|e| e.clone()).unwrap_or_default();
        Ok((self.counters.totals(), errors))
    }
}

fn post(
    client: &reqwest::blocking::Client,
    url: &str,
    body: Vec<u8>,
    n: u64,
    counters: &Counters,
    errors: &Mutex<Vec<String>>,
) {
    let mut failures = 0;
    loop {
        let result = client
            .post(url)
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send();
        let error = match result {
            Ok(r) if r.status().is_success() => match r.json::<Outcome>() {
                Ok(o) => {
                    counters.sent.fetch_add(n, Ordering::Relaxed);
                    counters.accepted.fetch_add(o.accepted, Ordering::Relaxed);
                    counters
                        .duplicates
                        .fetch_add(o.duplicates, Ordering::Relaxed);
                    counters.rejected.fetch_add(o.rejected, Ordering::Relaxed);
                    return;
                }
                Err(e) => format!("unreadable ingest answer: {e}"),
            },
            Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                let reason = problem(r);
                if is_backpressure(&reason) {
                    // The pipeline asks producers to wait.
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                // Unavailable for another reason: the log could not store
                // the readings (a full disk), or the pipeline is starting.
                format!("HTTP 503: {reason}")
            }
            Ok(r) => {
                let status = r.status();
                format!("HTTP {status}: {}", problem(r))
            }
            Err(e) => e.to_string(),
        };
        let seen = counters.errors.fetch_add(1, Ordering::Relaxed);
        if seen == 0 {
            eprintln!("load: ingest error (retried, then its readings count as failed): {error}");
        }
        if let Ok(mut e) = errors.lock()
            && e.len() < 5
            && !e.contains(&error)
        {
            e.push(error);
        }
        failures += 1;
        if failures >= MAX_ATTEMPTS {
            counters.failed.fetch_add(n, Ordering::Relaxed);
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The reason in an error answer (`{"error": "…"}`), else its body.
fn problem(r: reqwest::blocking::Response) -> String {
    let body = r.text().unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or(body)
}

/// Whether a 503's reason is backpressure (retry, it is not an error)
/// rather than a failure.
fn is_backpressure(reason: &str) -> bool {
    reason.contains("behind")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_backpressure_503s_are_waited_out() {
        assert!(is_backpressure("the pipeline is behind; retry later"));
        assert!(!is_backpressure(
            "the readings were not stored: embedded log: No space left on device (os error 28)"
        ));
        assert!(!is_backpressure("starting up"));
    }
}
