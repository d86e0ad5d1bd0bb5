//! Issue #9 item 1 (SC-004) across every sink: under load, kill -9 the real
//! `gridwatch run` at random points at least five times, with the Parquet
//! lake on a real S3 server (s3s-fs), the Kafka bridge into a real broker
//! (Tansu) and InfluxDB 1.x all configured. A client keeps sending and
//! re-sends whatever was not acknowledged. After the final restart and a
//! drain, with independent readers:
//!
//! - every acknowledged reading is in the lake exactly once (pyarrow);
//! - every expected anomaly (the native detector on the same stream) is
//!   exactly once in the `anomalies` topic, in Kafka (confluent-kafka +
//!   fastavro, schema from the registry) and in InfluxDB (InfluxQL).
//!
//! The RTO of each restart (spawn to `/readyz` 200) is printed. The kill
//! points are random; `GRIDWATCH_CRASH_SEED` repeats a run, and the seed is
//! printed. `GRIDWATCH_CRASH_KILLS` sets the number of kills (default 5).

mod chaos;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chaos::{
    Restartable, Rng, S3_ACCESS_KEY, S3_SECRET_KEY, create_topic, exactly_once, expected,
    influx_anomalies, kafka_anomalies, lake_keys, readings, start_client, topic_anomalies,
    wait_drained,
};
use gridwatch_tests::process::Gridwatch;
use gridwatch_tests::servers::{Influxd, python_clients_missing};

const METERS: usize = 12;
const PER_METER: usize = 600;
const BATCH: usize = 120;
const BUCKET: &str = "crash-lake";
const DB: &str = "gridwatch";
const KAFKA_TOPIC: &str = "grid-anomalies";

#[test]
fn kill_9_under_load_keeps_every_sink_exactly_once() {
    const TEST: &str = "kill_9_under_load_keeps_every_sink_exactly_once";
    if let Some(why) = python_clients_missing() {
        println!("SKIPPED {TEST}: {why}");
        return;
    }
    let tansu = match Restartable::tansu() {
        Ok(t) => t,
        Err(why) => return println!("SKIPPED {TEST}: {why}"),
    };
    let s3 = match Restartable::s3(BUCKET) {
        Ok(s) => s,
        Err(why) => return println!("SKIPPED {TEST}: {why}"),
    };
    let influx = match Influxd::start() {
        Ok(i) => i,
        Err(why) => return println!("SKIPPED {TEST}: {why}"),
    };
    create_topic(&tansu.bootstrap(), KAFKA_TOPIC, 2);
    influx.create_database(DB);

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("gridwatch.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
runtime:
  checkpoint_events: 700
sinks:
  checkpoint_events: 300
  checkpoint_interval: 1s
  kafka:
    brokers: ["{bootstrap}"]
    topic: {KAFKA_TOPIC}
  influxdb:
    url: "{influx}"
    api: v1
    database: {DB}
  lake:
    url: "s3://{BUCKET}/grid"
    endpoint: "{endpoint}"
    access_key_id: {S3_ACCESS_KEY}
    secret_access_key: {S3_SECRET_KEY}
    path_style: true
"#,
            bootstrap = tansu.bootstrap(),
            influx = influx.url(),
            endpoint = s3.endpoint(),
        ),
    )
    .expect("config written");
    let config = config.to_string_lossy().into_owned();
    let args = ["--no-simulator", "--config", config.as_str()];

    let all = Arc::new(readings(METERS, PER_METER));
    let want = expected(&all);
    assert!(!want.is_empty());
    let batches = all.len().div_ceil(BATCH);
    let kills: usize = std::env::var("GRIDWATCH_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(5)
        .clamp(1, batches / 2);
    let (mut rng, seed) = Rng::from_env();
    // Kill after a random number of acknowledged batches, then a random
    // delay, so the kill lands mid-request, mid-processing or mid-flush.
    let mut points: Vec<usize> = Vec::new();
    while points.len() < kills {
        let p = rng.range(3, batches as u64 - 3) as usize;
        if !points.contains(&p) {
            points.push(p);
        }
    }
    points.sort_unstable();
    println!("crash_sinks: seed {seed} (GRIDWATCH_CRASH_SEED), kill after batches {points:?}");

    let mut gw = Gridwatch::start(&data, &args, &[]);
    println!("first start: ready after {:?}", gw.ready_after);
    let url = Arc::new(Mutex::new(gw.url.clone()));
    let (counts, client) = start_client(url.clone(), all.clone(), BATCH, Duration::from_millis(30));
    let mut rto = Vec::new();
    for &point in &points {
        let deadline = Instant::now() + Duration::from_secs(600);
        while counts.acked.load(Ordering::Acquire) < point * BATCH {
            assert!(Instant::now() < deadline, "the client stalled");
            assert!(!client.is_finished(), "the client stopped early");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.range(0, 400)));
        let pid = gw.child.id();
        gw.kill9();
        gw = Gridwatch::start(&data, &args, &[]);
        println!(
            "kill -9 of pid {pid} after {} acknowledged readings; restarted, RTO (spawn to /readyz 200) {:?}",
            counts.acked.load(Ordering::Acquire),
            gw.ready_after
        );
        rto.push(gw.ready_after);
        *url.lock().expect("url lock") = gw.url.clone();
    }
    client.join().expect("the client finishes");
    assert!(counts.done.load(Ordering::Acquire));
    assert_eq!(counts.acked.load(Ordering::Acquire), all.len());

    wait_drained(
        &gw,
        &[
            "kafka/anomalies",
            "influxdb/anomalies",
            "lake/scored",
            "lake/anomalies",
        ],
        2,
    );
    // Kafka while the embedded registry is up (the reader resolves the
    // schema by the frame's content id).
    let registry = format!("{}/apis/registry/v3", gw.url);
    let kafka = kafka_anomalies(&tansu.bootstrap(), KAFKA_TOPIC, &registry);
    let influx_got = influx_anomalies(&influx, DB);
    gw.stop();
    let topic = topic_anomalies(&data);
    let lake = lake_keys(
        &format!("s3://{BUCKET}/grid"),
        Some((&s3.endpoint(), S3_ACCESS_KEY, S3_SECRET_KEY)),
    );
    let want_readings = all
        .iter()
        .map(|r| (r.meter_id.clone(), r.timestamp))
        .collect();

    println!(
        "crash_sinks: {} readings acknowledged ({} re-sent requests, {} duplicates dropped), {} anomalies expected, {} kills; \
         RTO per restart: {:?}; lake {} Parquet files",
        all.len(),
        counts.resends.load(Ordering::Relaxed),
        counts.duplicates.load(Ordering::Relaxed),
        want.len(),
        rto.len(),
        rto,
        lake.files
    );
    let results = [
        exactly_once("lake readings", &lake.readings, &want_readings),
        exactly_once("lake anomalies", &lake.anomalies, &want),
        exactly_once("anomalies topic", &topic, &want),
        exactly_once("Kafka", &kafka, &want),
        exactly_once("InfluxDB", &influx_got, &want),
    ];
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "after {} kills (seed {seed}):\n{}",
        rto.len(),
        failures
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
