//! The shared sink compliance harness (write, flush, crash, recover,
//! re-deliver an overlap) against a local directory and a real S3 server,
//! for both archived topics, read back with pyarrow.

mod common;

use common::{S3Server, anomaly_record, offsets, scored_record};
use gridwatch_connector::testkit::{Compliance, ComplianceReport};
use gridwatch_lake::{LakeConfig, LakeSink};

async fn run(
    harness: Compliance,
    dataset: &'static str,
    config: LakeConfig,
    reader: Vec<String>,
) -> ComplianceReport {
    harness
        .run(
            || {
                let config = config.clone();
                async move { LakeSink::new(&config).expect("lake opens") }
            },
            move |_topic, partition| {
                let reader = reader.clone();
                async move { offsets(&reader, dataset, partition).await }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn scored() -> Compliance {
    Compliance::new("scored", common::CONTENT_ID).with_records(scored_record)
}

fn anomalies() -> Compliance {
    Compliance::new("anomalies", common::CONTENT_ID).with_records(anomaly_record)
}

async fn local(harness: Compliance, dataset: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        harness,
        dataset,
        LakeConfig::local(dir.path()),
        vec![dir.path().display().to_string()],
    )
    .await;
    assert_eq!(report.checked_positions, 175);
    // Each write commits (so a failed one can be dead-lettered), so even
    // the rows written after the last flush survive the crash; the lake
    // says what it has.
    assert_eq!(report.recovered_after_crash, Some(119));
}

async fn s3(harness: Compliance, dataset: &'static str) {
    let server = S3Server::start().await;
    let report = run(
        harness,
        dataset,
        server.config("compliance"),
        server.reader_args("compliance"),
    )
    .await;
    assert_eq!(report.checked_positions, 175);
    assert_eq!(report.recovered_after_crash, Some(119));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_directory_scored_readings() {
    local(scored(), "readings").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_directory_anomalies() {
    local(anomalies(), "anomalies").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_server_scored_readings() {
    s3(scored(), "readings").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_server_anomalies() {
    s3(anomalies(), "anomalies").await;
}
