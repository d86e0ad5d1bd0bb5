//! Append + fetch through the `TopicBackend` trait: the Fluvio backend next
//! to the embedded log (its baseline), in the same run.
//!
//! - `append_fetch/<backend>`: one iteration appends 1,000 records of 120
//!   bytes to a partition (durable when `append` returns: fsync for the
//!   embedded log, the SPU's committed acknowledgement for Fluvio), then
//!   reads them back through `fetch` from the offsets `append` returned.
//! - then a latency probe per backend: 2,000 single-record appends, each
//!   read back by a second reader already waiting in `fetch`; prints p50 and
//!   p99 of append-to-delivered, and the ratio of Fluvio to embedded.
//!
//! The Fluvio half runs when `GRIDWATCH_TEST_FLUVIO_ENDPOINT` or
//! `GRIDWATCH_TEST_FLUVIO_PROFILE` names a cluster, and prints SKIPPED otherwise.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use gridwatch_backend_fluvio::{FluvioBackend, FluvioConfig};
use gridwatch_log::{LogOptions, TopicConfig};
use gridwatch_runtime::backend::embedded::EmbeddedBackend;
use gridwatch_runtime::backend::{OutRecord, TopicBackend};
use hdrhistogram::Histogram;

const BATCH: usize = 1_000;
const RECORD_BYTES: usize = 120;
const PROBES: usize = 2_000;

fn batch(round: u64) -> Vec<OutRecord> {
    (0..BATCH)
        .map(|i| {
            let mut v = format!("r{round}-{i}-").into_bytes();
            v.resize(RECORD_BYTES, b'x');
            OutRecord {
                key: Some(Bytes::from(format!("meter-{}", i % 100))),
                value: Bytes::from(v),
                timestamp_ms: 0,
            }
        })
        .collect()
}

async fn append_fetch<B: TopicBackend>(b: &B, topic: &str, round: u64) {
    let range = b.append(topic, 0, batch(round)).await.expect("append");
    let mut at = range.start;
    while at < range.end {
        let got = b
            .fetch(topic, 0, at, BATCH, Duration::from_secs(5))
            .await
            .expect("fetch");
        at = got.last().map_or(at, |r| r.offset + 1);
    }
}

fn cluster() -> Option<FluvioConfig> {
    if let Ok(ep) = std::env::var("GRIDWATCH_TEST_FLUVIO_ENDPOINT")
        && !ep.is_empty()
    {
        return Some(FluvioConfig::with_endpoint(ep));
    }
    if let Ok(p) = std::env::var("GRIDWATCH_TEST_FLUVIO_PROFILE")
        && !p.is_empty()
    {
        return Some(FluvioConfig::with_profile(p));
    }
    println!(
        "SKIPPED: the Fluvio half of this benchmark: set GRIDWATCH_TEST_FLUVIO_ENDPOINT=127.0.0.1:9003 (or GRIDWATCH_TEST_FLUVIO_PROFILE) to a running cluster"
    );
    None
}

fn topic_name() -> String {
    format!("gwbench-{}", std::process::id())
}

/// p50 and p99 of append-then-delivered, in microseconds.
async fn latency<B: TopicBackend + Clone>(b: &B, topic: &str) -> (u64, u64) {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut at = b.high_watermark(topic, 0).await.expect("hw");
    for i in 0..PROBES {
        let reader = {
            let b = b.clone();
            let topic = topic.to_string();
            tokio::spawn(async move { b.fetch(&topic, 0, at, 1, Duration::from_secs(10)).await })
        };
        // Let the reader park on its wait before the append.
        tokio::task::yield_now().await;
        let started = Instant::now();
        let mut record = batch(i as u64);
        record.truncate(1);
        b.append(topic, 0, record).await.expect("append");
        let got = reader.await.expect("join").expect("fetch");
        let took = started.elapsed();
        assert_eq!(got.len(), 1, "probe {i} delivered");
        at += 1;
        let _ = hist.record(took.as_micros().max(1) as u64);
    }
    (hist.value_at_quantile(0.5), hist.value_at_quantile(0.99))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(2));

    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = EmbeddedBackend::open(dir.path(), LogOptions::default(), TopicConfig::new(1))
        .expect("embedded log");
    let fluvio = cluster().map(|config| {
        rt.block_on(async {
            let b = FluvioBackend::connect(&config).await.expect("connect");
            b.ensure_topic(&topic_name(), 1).await.expect("topic");
            Arc::new(b)
        })
    });
    rt.block_on(embedded.ensure_topic(&topic_name(), 1))
        .expect("topic");

    let mut group = c.benchmark_group("append_fetch");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut round = 0u64;
    group.bench_function("embedded", |bench| {
        bench.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    round += 1;
                    append_fetch(&embedded, &topic_name(), round).await;
                }
                start.elapsed()
            })
        })
    });
    if let Some(f) = &fluvio {
        group.bench_function("fluvio", |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        round += 1;
                        append_fetch(f.as_ref(), &topic_name(), round).await;
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();

    let (e50, e99) = rt.block_on(latency(&embedded, &topic_name()));
    println!("latency/embedded: append-to-delivered p50 {e50} us, p99 {e99} us ({PROBES} probes)");
    if let Some(f) = &fluvio {
        let b = f.as_ref().clone();
        let (f50, f99) = rt.block_on(latency(&b, &topic_name()));
        println!(
            "latency/fluvio:   append-to-delivered p50 {f50} us, p99 {f99} us ({PROBES} probes)"
        );
        println!(
            "latency ratio fluvio/embedded: p50 {:.2}x, p99 {:.2}x",
            f50 as f64 / e50.max(1) as f64,
            f99 as f64 / e99.max(1) as f64
        );
        rt.block_on(async {
            let _ = b.delete_topic(&topic_name()).await;
        });
    }
    c.final_summary();
}
