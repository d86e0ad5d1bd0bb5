//! The async driver: hands batches to a sink at a paced rate.
//!
//! The sink is awaited before the next batch is made, so a pipeline that
//! applies backpressure slows the simulator down; nothing is dropped and at
//! most one batch exists at a time. Pacing works in ticks of about 10 ms
//! (one batch a tick at high rates, so a million events per second costs a
//! hundred wake-ups), and only on `tokio::time`, so tests can pause time.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Pace;
use crate::generator::Simulator;
use crate::model::SimEvent;

/// The shortest sleep between batches when pacing.
pub const TICK: Duration = Duration::from_millis(10);
/// The most events handed to the sink at once.
pub const MAX_BATCH: usize = 8192;
/// How far a slow sink may put the driver behind schedule before the debt is
/// forgiven: after backpressure eases it catches up this much, not the hour
/// it may have lost, so the rate stays a ceiling.
pub const MAX_CATCH_UP: Duration = Duration::from_millis(100);

/// Why [`Simulator::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The shutdown future completed.
    Shutdown,
    /// `max_events` were produced.
    Limit,
}

/// What a run produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunStats {
    pub events: u64,
    pub batches: u64,
    pub stopped: Stopped,
}

impl Pace {
    /// Events per second, `None` for flat out.
    fn per_second(self, sim: &Simulator) -> Option<f64> {
        match self {
            Pace::FlatOut => None,
            Pace::Rate(rate) if rate > 0.0 && rate.is_finite() => Some(rate),
            Pace::Rate(_) => None,
            Pace::RealTime => {
                let config = sim.config();
                Some(f64::from(config.meters) * 1000.0 / config.interval_ms().max(1) as f64)
            }
        }
    }
}

impl Simulator {
    /// Produces events into `sink` at `pace` until `shutdown` completes or
    /// `max_events` is reached; a sink error ends the run and is returned.
    ///
    /// Shutdown is honoured between batches, so a batch handed to the sink
    /// is never abandoned half-way; a sink that can block for long should
    /// watch the same signal. The events are exactly those of the
    /// synchronous generator, in order, whatever the pace.
    pub async fn run<S, Fut, E>(
        &mut self,
        pace: Pace,
        mut sink: S,
        shutdown: impl Future<Output = ()>,
    ) -> Result<RunStats, E>
    where
        S: FnMut(Vec<SimEvent>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        tokio::pin!(shutdown);
        let rate = pace.per_second(self);
        let origin = Instant::now();
        // Events the schedule has accounted for since `origin`.
        let mut scheduled: u64 = 0;
        let mut stats = RunStats {
            events: 0,
            batches: 0,
            stopped: Stopped::Shutdown,
        };
        loop {
            // Between batches: stop if asked, and let other tasks run even
            // when a flat-out sink never has to wait.
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = tokio::task::yield_now() => {}
            }
            let due = match rate {
                None => MAX_BATCH as u64,
                Some(rate) => {
                    let allowed = (rate * origin.elapsed().as_secs_f64()) as u64;
                    let most = ((rate * MAX_CATCH_UP.as_secs_f64()) as u64).max(1);
                    if allowed.saturating_sub(scheduled) > most {
                        scheduled = allowed - most;
                    }
                    allowed.saturating_sub(scheduled)
                }
            };
            if due == 0 {
                let rate = rate.unwrap_or(f64::INFINITY);
                // Sleep a tick, or until the next event is due at low rates.
                let next = Duration::from_secs_f64(((scheduled + 1) as f64 / rate).min(1e9));
                let soonest = Instant::now() + TICK;
                let wake = origin.checked_add(next).map_or(soonest, |t| t.max(soonest));
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep_until(wake) => {}
                }
                continue;
            }
            let batch = self.next_batch(due.min(MAX_BATCH as u64) as usize);
            if batch.is_empty() {
                stats.stopped = Stopped::Limit;
                break;
            }
            let n = batch.len() as u64;
            sink(batch).await?;
            stats.events += n;
            stats.batches += 1;
            scheduled += n;
            if self.remaining() == Some(0) {
                stats.stopped = Stopped::Limit;
                break;
            }
        }
        Ok(stats)
    }
}
