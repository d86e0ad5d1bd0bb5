//! The v2 write path (`/api/v2/write?org=&bucket=&precision=ms`, token
//! auth) against a real server that accepts it: VictoriaMetrics (Debian's
//! `victoria-metrics`), read back through its export API.
//!
//! VictoriaMetrics maps a point to one series per numeric field, named
//! `{measurement}_{field}`, with the tags as labels; it keeps no string
//! fields, so `anomaly_id` is checked against InfluxDB 1.x instead
//! (tests/influxdb_v1.rs).

mod common;

use std::collections::BTreeMap;

use common::VictoriaMetrics;
use gridwatch_connector::testkit::{anomaly_record, sample_anomaly};
use gridwatch_connector::{RetryPolicy, deliver};
use gridwatch_influxdb::{InfluxDbConfig, InfluxDbSink};

/// (labels, values, timestamps) of every series of `metric`.
async fn series(
    vm: &VictoriaMetrics,
    metric: &str,
) -> Vec<(BTreeMap<String, String>, Vec<f64>, Vec<i64>)> {
    let mut out: Vec<_> = vm
        .export(&format!("{{__name__=\"{metric}\"}}"))
        .await
        .into_iter()
        .map(|s| {
            let labels: BTreeMap<String, String> = s["metric"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| *k != "__name__")
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            let values = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let times = s["timestamps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            (labels, values, times)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_writes_arrive_with_tags_values_and_event_times() {
    let Some(vm) = VictoriaMetrics::start().await else {
        return;
    };
    let base = vm.url("");
    let config = InfluxDbConfig::v2(base, "gridwatch", "anomalies", "test-token");
    let mut sink = InfluxDbSink::new(&config).unwrap();
    let batch: Vec<_> = (0..74)
        .map(|o| anomaly_record("anomalies", 0, o, 1))
        .collect();
    let out = deliver(&mut sink, &batch, &RetryPolicy::default()).await;
    assert_eq!(out.written, 74, "{:?}", out.dead_letters.first());

    // One point per record: source_offset o at the reading's event time.
    let offsets = series(&vm, "anomalies_source_offset").await;
    let mut seen = BTreeMap::new();
    for (labels, values, times) in &offsets {
        assert_eq!(
            labels.keys().map(String::as_str).collect::<Vec<_>>(),
            ["anomaly_type", "meter_id", "severity"]
        );
        for (v, t) in values.iter().zip(times) {
            let o = *v as u64;
            let e = sample_anomaly(0, o);
            assert_eq!(*t, e.original_event.timestamp, "offset {o}");
            assert_eq!(labels["meter_id"], e.original_event.meter_id);
            assert_eq!(labels["severity"], e.severity.as_str());
            assert_eq!(labels["anomaly_type"], "VOLTAGE_SURGE");
            assert!(seen.insert(o, *t).is_none(), "offset {o} twice");
        }
    }
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (0..74).collect::<Vec<_>>()
    );

    // The evidence fields came through as numbers.
    let zscores = series(&vm, "anomalies_zscore").await;
    let mut z_by_time = BTreeMap::new();
    for (_, values, times) in &zscores {
        z_by_time.extend(times.iter().copied().zip(values.iter().copied()));
    }
    for o in 0..74 {
        let e = sample_anomaly(0, o);
        assert_eq!(z_by_time[&e.original_event.timestamp], e.zscore.unwrap());
    }
    for field in [
        "voltage",
        "current",
        "temperature",
        "window_mean",
        "window_stddev",
        "threshold",
        "window_count",
        "source_partition",
    ] {
        let n: usize = series(&vm, &format!("anomalies_{field}"))
            .await
            .iter()
            .map(|s| s.1.len())
            .sum();
        assert_eq!(n, 74, "{field}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_with_token_file_small_batches_and_no_gzip() {
    let Some(vm) = VictoriaMetrics::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "file-token\n").unwrap();
    let mut config = InfluxDbConfig::v2(vm.url(""), "gridwatch", "anomalies", "x");
    config.token = None;
    config.token_file = Some(token_file);
    config.batch_size = 10;
    config.gzip = false;
    let mut sink = InfluxDbSink::new(&config).unwrap();
    let batch: Vec<_> = (0..35)
        .map(|o| anomaly_record("anomalies", 3, o, 1))
        .collect();
    let out = deliver(&mut sink, &batch, &RetryPolicy::default()).await;
    assert_eq!(out.written, 35);
    let n: usize = series(&vm, "anomalies_source_partition")
        .await
        .iter()
        .flat_map(|s| s.1.iter())
        .filter(|v| **v == 3.0)
        .count();
    assert_eq!(n, 35);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_against_a_closed_port_is_transient_then_dead_lettered() {
    let port = common::free_port();
    let config = InfluxDbConfig::v2(
        format!("http://127.0.0.1:{port}").parse().unwrap(),
        "o",
        "b",
        "t",
    );
    let mut sink = InfluxDbSink::new(&config).unwrap();
    let policy = RetryPolicy {
        initial_backoff: std::time::Duration::from_millis(5),
        max_retries: 2,
        ..RetryPolicy::default()
    };
    let out = deliver(&mut sink, &[anomaly_record("anomalies", 0, 0, 1)], &policy).await;
    assert_eq!(out.retries, 2);
    assert_eq!(out.dead_letters.len(), 1);
    let d = &out.dead_letters[0];
    assert_eq!(
        d.reason,
        gridwatch_contracts::model::reason::RETRIES_EXHAUSTED
    );
    assert!(
        d.message.contains("onnect"),
        "the cause is named: {}",
        d.message
    );
}
