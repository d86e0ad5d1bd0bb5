//! The feeder-load pipeline end to end on the embedded log: correct
//! windows, and exactly once through a crash mid-stream.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use gridwatch_contracts::{MeterStatus, SensorReading};
use gridwatch_example_feeder_load::{
    FeederLoad, FeederRouter, FeederWindow, INPUT, OUTPUT, feeder_of,
};
use gridwatch_log::{LogOptions, TopicConfig};
use gridwatch_runtime::backend::embedded::EmbeddedBackend;
use gridwatch_runtime::backend::{InRecord, TopicBackend};
use gridwatch_runtime::chain::Chain;
use gridwatch_runtime::checkpoint::CheckpointStore;
use gridwatch_runtime::ingest::partition_of;
use gridwatch_runtime::pipeline::{Pipeline, RunningPipeline, boxed};
use gridwatch_runtime::processor::{ProcessorConfig, out};
use tokio::sync::watch;

const PARTITIONS: u32 = 2;
const WINDOW: i64 = 60_000;
const LATENESS: i64 = 5_000;
// A whole minute, so windows line up with the readings.
const T0: i64 = 1_779_999_960_000;

/// 6 feeders × 4 meters, one reading every 10 s, for `minutes` from `from_min`.
fn readings(from_min: i64, minutes: i64) -> Vec<SensorReading> {
    let mut out = Vec::new();
    for step in (from_min * 6)..((from_min + minutes) * 6) {
        for f in 0..6 {
            for m in 0..4 {
                out.push(SensorReading {
                    meter_id: format!("feeder-{f}-meter-{m}"),
                    timestamp: T0 + step * 10_000 + m * 7,
                    voltage: 225.0 + ((step * 7 + f * 3 + m) % 11) as f64,
                    current: 3.0 + (m as f64) / 2.0,
                    temperature: 20.0,
                    status: MeterStatus::Ok,
                });
            }
        }
    }
    out
}

async fn append(backend: &EmbeddedBackend, readings: &[SensorReading]) {
    for p in 0..PARTITIONS {
        let batch = readings
            .iter()
            .filter(|r| partition_of(feeder_of(&r.meter_id), PARTITIONS) == p)
            .map(|r| out(None, 1, r, r.timestamp))
            .collect::<Vec<_>>();
        backend.append(INPUT, p, batch).await.unwrap();
    }
}

fn start(
    dir: &std::path::Path,
    backend: Arc<EmbeddedBackend>,
) -> (RunningPipeline, watch::Sender<bool>) {
    let (tx, rx) = watch::channel(false);
    let running = Pipeline::builder(backend)
        .input(INPUT)
        .partitions(0..PARTITIONS)
        .chain(|_| Ok(boxed(FeederLoad::new(WINDOW, LATENESS))))
        .router(FeederRouter)
        .checkpoints(
            CheckpointStore::open(dir.join("checkpoints")).unwrap(),
            ProcessorConfig {
                batch_max: 40,
                checkpoint_events: 100,
                warm_window_ms: WINDOW + LATENESS,
                fetch_wait: Duration::from_millis(20),
                ..ProcessorConfig::default()
            },
        )
        .run(rx)
        .unwrap();
    (running, tx)
}

async fn written(backend: &EmbeddedBackend) -> Vec<FeederWindow> {
    let mut all = Vec::new();
    for p in 0..PARTITIONS {
        for r in backend
            .fetch(OUTPUT, p, 0, 100_000, Duration::ZERO)
            .await
            .unwrap()
        {
            all.push(serde_json::from_slice(&r.value).unwrap());
        }
    }
    all
}

/// What one uninterrupted run over each partition's whole input gives.
async fn expected(backend: &EmbeddedBackend) -> Vec<FeederWindow> {
    let mut all = Vec::new();
    for p in 0..PARTITIONS {
        let input: Vec<InRecord> = backend
            .fetch(INPUT, p, 0, 1_000_000, Duration::ZERO)
            .await
            .unwrap();
        let mut chain = FeederLoad::new(WINDOW, LATENESS);
        for output in chain.process(&input, 0).unwrap() {
            if !output.is_empty() {
                let windows: Vec<FeederWindow> = serde_json::from_slice(&output).unwrap();
                all.extend(windows);
            }
        }
    }
    all
}

async fn wait_for(backend: &EmbeddedBackend, n: usize) {
    for _ in 0..1_000 {
        if written(backend).await.len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn key(w: &FeederWindow) -> (String, i64) {
    (w.feeder.clone(), w.start_ms)
}

#[tokio::test]
async fn feeder_windows_are_exact_and_exactly_once_through_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(
        EmbeddedBackend::open(
            &dir.path().join("topics"),
            LogOptions::default(),
            TopicConfig::new(PARTITIONS),
        )
        .unwrap(),
    );
    backend.ensure_topic(INPUT, PARTITIONS).await.unwrap();
    backend.ensure_topic(OUTPUT, PARTITIONS).await.unwrap();

    // Three rounds: input arrives, the pipeline runs, and twice it crashes
    // (no final checkpoint) partway.
    for (round, (from, minutes)) in [(0, 7), (7, 6), (13, 5)].into_iter().enumerate() {
        append(&backend, &readings(from, minutes)).await;
        let want = expected(&backend).await.len();
        let (running, stop) = start(dir.path(), Arc::clone(&backend));
        if round < 2 {
            // Crash once some, but not all, of this round's windows are out.
            wait_for(&backend, want.saturating_sub(5)).await;
            running.abort();
        } else {
            wait_for(&backend, want).await;
            stop.send(true).unwrap();
            running.join().await.unwrap();
        }
        drop(stop);
    }
    // A last clean run picks up whatever the crashes left.
    let want = expected(&backend).await;
    let (running, stop) = start(dir.path(), Arc::clone(&backend));
    wait_for(&backend, want.len()).await;
    stop.send(true).unwrap();
    running.join().await.unwrap();

    let got = written(&backend).await;
    let mut seen = HashSet::new();
    for w in &got {
        assert!(seen.insert(key(w)), "window {:?} written twice", key(w));
    }
    assert_eq!(got.len(), want.len(), "every closed window exactly once");
    for w in &want {
        let g = got
            .iter()
            .find(|g| key(g) == key(w))
            .expect("window missing");
        assert_eq!(
            g,
            w,
            "window {:?} differs from an uninterrupted run",
            key(w)
        );
    }
    // 18 minutes of input, the last minute still open: 17 windows × 6 feeders.
    assert_eq!(want.len(), 17 * 6);
    assert!(want.iter().all(|w| w.readings == 24 && w.late_dropped == 0));
}
