//! The CI short forms against the real `gridwatch` binary: a 20-second soak
//! (no loss, report well-formed), a 10-second end-to-end bench, and the
//! WASM-vs-native chain measurement on a small input. No timed assertions:
//! the figures are printed, the checks are about loss and shape.

use std::sync::Mutex;
use std::time::Duration;

use gridwatch_bench::{BenchOptions, SoakOptions, WasmOptions};
use gridwatch_tests::{modules, process};

/// One gridwatch at a time: the tests share two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn a_short_soak_loses_nothing() {
    let _one = serial();
    let mut opts = SoakOptions::new(process::binary());
    opts.child.modules_dir = Some(modules::wasm_dir().to_path_buf());
    opts.rate = 2_000.0;
    opts.duration = Duration::from_secs(20);
    opts.sample_every = Duration::from_secs(5);
    opts.clients = 2;
    opts.batch = 200;
    let report = gridwatch_bench::soak(&opts).expect("the soak runs");
    println!("{}", report.table());

    assert!(report.loss.ok, "loss: {:?}", report.loss);
    assert!(report.loss.sent > 0);
    assert_eq!(report.loss.output_records, report.loss.sent);
    assert!(
        report.samples.len() >= 3,
        "{} samples",
        report.samples.len()
    );
    assert!(report.samples.iter().all(|s| s.rss_bytes > 0));
    let json = serde_json::to_value(&report).expect("serialises");
    for key in [
        "samples",
        "loss",
        "degradation",
        "latency_ms",
        "peak_rss_bytes",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
    assert!(json["degradation"]["first_p99_ms"].is_number());
    let table = report.table();
    assert!(table.contains("no loss: PASS"), "{table}");
    assert!(table.contains("no degradation:"), "{table}");
}

#[test]
fn a_short_bench_reports_the_required_fields() {
    let _one = serial();
    let mut opts = BenchOptions::new(process::binary());
    opts.child.modules_dir = Some(modules::wasm_dir().to_path_buf());
    opts.duration = Duration::from_secs(10);
    opts.warmup = Duration::from_secs(2);
    opts.meters = 1_000;
    let report = gridwatch_bench::bench(&opts).expect("the bench runs");
    println!("{}", report.table());

    assert!(report.events > 0, "nothing processed: {report:?}");
    assert!(report.events_per_sec > 0.0);
    assert!(report.cpu_ns_per_event > 0.0);
    assert!(report.peak_rss_bytes >= report.rss_bytes && report.rss_bytes > 0);
    let json = serde_json::to_value(&report).expect("serialises");
    assert!(json["events_per_sec"].is_number(), "{json}");
    for p in ["p50", "p99", "p999"] {
        assert!(
            json["latency_ms"][p].is_number(),
            "latency_ms.{p} in {json}"
        );
    }
    assert!(
        json["peak_rss_bytes"].as_u64().is_some_and(|b| b > 0),
        "{json}"
    );
    assert!(json["cpu_ns_per_event"].is_number());
    let (p50, p99, p999) = (
        report.latency_ms.p50,
        report.latency_ms.p99,
        report.latency_ms.p999,
    );
    assert!(p50 <= p99 && p99 <= p999, "{p50} {p99} {p999}");
    assert!(report.table().contains("events/s"));
}

#[test]
fn wasm_only_measures_both_ways_on_the_same_input() {
    let _one = serial();
    let mut opts = WasmOptions::new(modules::wasm_dir());
    opts.events = 20_000;
    opts.meters = 100;
    opts.batch_sizes = vec![1_000];
    opts.rounds = 1;
    let report = gridwatch_bench::wasm_only(&opts).expect("the chain runs");
    println!("{}", report.table());
    assert_eq!(report.events, 20_000);
    assert!(report.events_per_sec > 0.0 && report.native_events_per_sec > 0.0);
    assert!(report.host_events_per_sec > 0.0);
    assert_eq!(report.rows.len(), 3);
    let json = serde_json::to_value(&report).expect("serialises");
    assert!(json["events_per_sec"].is_number() && json["native_events_per_sec"].is_number());
}

#[test]
fn bad_options_name_the_option() {
    let mut opts = SoakOptions::new("gridwatch");
    opts.rate = 0.0;
    let err = gridwatch_bench::soak(&opts).expect_err("a soak needs a rate");
    assert!(err.to_string().contains("rate"), "{err}");
    let mut opts = BenchOptions::new("gridwatch");
    opts.meters = 0;
    let err = gridwatch_bench::bench(&opts).expect_err("at least one meter");
    assert!(err.to_string().contains("meters"), "{err}");
}
