//! Sink throughput into a real `influxd` (1.x) started on loopback: events/s
//! from framed Avro records to points acknowledged by the server, through
//! the same `deliver` loop the runtime uses, gzip on and off.
//!
//! ```sh
//! cargo bench -p gridwatch-influxdb --bench throughput            # 200,000 events per run
//! GRIDWATCH_INFLUX_BENCH_EVENTS=1000000 cargo bench -p gridwatch-influxdb --bench throughput
//! ```
//!
//! It prints a rate rather than asserting one (no timed assertions), and
//! checks with InfluxQL that every event arrived. The server shares the
//! machine's cores with the sink, so this is a floor for a remote server.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::{Influxd, InfluxdOptions};
use gridwatch_connector::testkit::anomaly_record;
use gridwatch_connector::{RetryPolicy, deliver};
use gridwatch_influxdb::{InfluxDbConfig, InfluxDbSink};

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent;
    // only measure under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let events: u64 = std::env::var("GRIDWATCH_INFLUX_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(events));
}

async fn run(events: u64) {
    let Some(server) = Influxd::start(InfluxdOptions::default()).await else {
        return;
    };
    // The driver's batches are checkpoint-sized chunks; 5,000 is also the
    // sink's default request size.
    let batch = 5000u64;
    let records: Vec<_> = (0..events)
        .map(|o| anomaly_record("anomalies", 0, o, 1))
        .collect();
    println!(
        "influxdb sink throughput: {events} events in batches of {batch}, influxd 1.x on loopback"
    );
    for (name, gzip) in [("gzip", true), ("plain", false)] {
        let db = format!("bench_{name}");
        server.create_database(&db).await;
        let mut config = InfluxDbConfig::v1(server.base(), &db);
        config.gzip = gzip;
        let mut sink = InfluxDbSink::new(&config).expect("a sink");
        let policy = RetryPolicy::default();
        let started = Instant::now();
        let mut written = 0;
        for chunk in records.chunks(batch as usize) {
            let out = deliver(&mut sink, chunk, &policy).await;
            assert!(
                out.dead_letters.is_empty(),
                "{:?}",
                out.dead_letters.first()
            );
            written += out.written;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let rows = server
            .select(&db, "SELECT count(source_offset) FROM anomalies")
            .await;
        let stored = rows.first().and_then(|r| r["count"].as_u64()).unwrap_or(0);
        assert_eq!(stored, events, "every event stored");
        println!(
            "  {name:>5}: {written} events in {elapsed:.2} s = {:.0} events/s (all {stored} read back)",
            written as f64 / elapsed
        );
    }
}
