//! The built-in dashboard in a real headless browser: Debian's `chromium`
//! driven by `playwright-core` from npm (both installed by
//! scripts/setup.d/30-observability.sh), against a `gridwatch run
//! --no-simulator` started here.
//!
//! tests/browser/dashboard.cjs injects anomalies through `POST
//! /api/v1/readings` and times each one from the POST's response to its row
//! in the page (SC-002: 250 ms; the figures are printed, not asserted),
//! checks the filters, meters in trouble and acknowledgement, watches the
//! health charts redraw, and saves both views as
//! `target/test-artifacts/dashboard-{operator,health}.png`. This test then
//! checks, with its own HTTP client, that the acknowledgement was persisted
//! across a restart and that the SSE feed resumes from a cursor without loss.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use gridwatch_tests::modules::workspace_root;
use gridwatch_tests::process::Gridwatch;

/// Node, playwright-core and Chromium, or why the test cannot run.
fn browser_tools() -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    let modules = PathBuf::from(home).join(".cache/gridwatch/node/node_modules");
    if !modules.join("playwright-core/package.json").is_file() {
        return Err(format!(
            "playwright-core is not installed in {}",
            modules.display()
        ));
    }
    let chromium = std::env::var_os("GRIDWATCH_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        return Err(format!("{} is not installed", chromium.display()));
    }
    let node = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("node"))
        .find(|p| p.is_file())
        .ok_or("node is not on PATH")?;
    Ok((node, modules, chromium))
}

/// Reads SSE `anomaly` events from `url` (after `cursor`) until `count`
/// arrived; returns (event id, anomaly id) pairs.
fn read_feed(url: &str, cursor: &str, count: usize) -> Vec<(String, String)> {
    let response = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
        .get(format!("{url}/api/v1/dashboard/anomalies"))
        .header("last-event-id", cursor)
        .send()
        .and_then(|r| r.error_for_status())
        .expect("the feed answers");
    let mut out = Vec::new();
    let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
    for line in BufReader::new(response).lines() {
        let line = line.expect("feed line");
        if line.is_empty() {
            if event == "anomaly" {
                let v: serde_json::Value = serde_json::from_str(&data).expect("anomaly JSON");
                out.push((
                    id.clone(),
                    v["anomaly_id"].as_str().unwrap_or_default().to_string(),
                ));
                if out.len() == count {
                    break;
                }
            }
            event.clear();
            data.clear();
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    out
}

#[test]
fn operators_see_injected_anomalies_live_and_admins_see_health() {
    let (node, modules, chromium) = match browser_tools() {
        Ok(t) => t,
        Err(why) => {
            println!("SKIPPED: {why}; scripts/setup-test-env installs the browser test's tools");
            return;
        }
    };
    let samples: usize = std::env::var("GRIDWATCH_BROWSER_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let root = workspace_root();
    let artifacts = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    for view in ["operator", "health"] {
        let _ = std::fs::remove_file(artifacts.join(format!("dashboard-{view}.png")));
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gridwatch::start(dir.path(), &["--no-simulator"], &[]);
    let out = Command::new(node)
        .arg(root.join("tests/browser/dashboard.cjs"))
        .env("NODE_PATH", &modules)
        .env("GRIDWATCH_URL", &gw.url)
        .env("CHROMIUM", &chromium)
        .env("ARTIFACTS", &artifacts)
        .env("SAMPLES", samples.to_string())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the browser script's result is not JSON ({e}):\n{stdout}"));

    assert_eq!(r["baseline_accepted"], samples * 12, "{r}");
    assert_eq!(r["surges_accepted"], samples, "{r}");
    assert_eq!(
        r["appeared"], samples,
        "every injected anomaly must show in the page: {r}"
    );
    assert_eq!(r["checks"]["meter_filter"], true, "{r}");
    assert_eq!(r["checks"]["severity_filter"], true, "{r}");
    assert_eq!(r["checks"]["ack_clears_trouble"], true, "{r}");
    assert!(r["checks"]["trouble"].as_u64() >= Some(1), "{r}");
    assert!(
        r["health"]["updates"].as_u64() >= Some(2),
        "the health view redraws from new samples: {r}"
    );
    assert!(
        r["health"]["paths_drawn"].as_u64() >= Some(4),
        "health charts drawn: {r}"
    );
    assert_eq!(
        r["external_requests"],
        serde_json::json!([]),
        "no CDN: the page loads nothing from elsewhere"
    );
    assert_eq!(r["console_errors"], serde_json::json!([]), "{r}");
    for view in ["operator", "health"] {
        let png = std::fs::read(artifacts.join(format!("dashboard-{view}.png")))
            .expect("screenshot written");
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{view} screenshot"
        );
    }

    let ms = |k: &str, q: &str| r[k][q].as_f64().unwrap_or(f64::NAN);
    println!(
        "detection→screen over {samples} injected anomalies (from the POST's response):\n  \
         row in DOM: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, min {:.1} ms\n  \
         painted (next frame): p50 {:.1} ms, p99 {:.1} ms\n  \
         ingest POST round trip: p50 {:.1} ms, p99 {:.1} ms\n  \
         target p99 < 50 ms, spec limit 250 ms (reported, not asserted)\n  \
         health view: {} redraws in 9 s, largest gap {} ms\n  \
         screenshots: {}",
        ms("dom_ms", "p50"),
        ms("dom_ms", "p99"),
        ms("dom_ms", "max"),
        ms("dom_ms", "min"),
        ms("frame_ms", "p50"),
        ms("frame_ms", "p99"),
        ms("post_ms", "p50"),
        ms("post_ms", "p99"),
        r["health"]["updates"],
        r["health"]["max_gap_ms"],
        artifacts.display(),
    );

    // The feed is durable: from cursor 0.0 every anomaly arrives in order,
    // and resuming from any event's id gives exactly the rest.
    let total = gw.status()["anomalies"].as_u64().expect("anomalies") as usize;
    assert!(total > samples, "surges plus the equipment anomalies");
    let everything = read_feed(&gw.url, "0.0", total);
    assert_eq!(everything.len(), total);
    let k = total / 2;
    let rest = read_feed(&gw.url, &everything[k].0, total - k - 1);
    let expected: Vec<_> = everything[k + 1..].iter().map(|e| e.1.clone()).collect();
    let mut got: Vec<_> = rest.iter().map(|e| e.1.clone()).collect();
    let mut want = expected.clone();
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "resuming at event {k} gives exactly the anomalies after it"
    );

    // The acknowledgement is durable and visible to an independent client.
    let acked = r["acked_id"].as_str().expect("acked id").to_string();
    gw.stop();
    let gw = Gridwatch::start(dir.path(), &["--no-simulator"], &[]);
    let acks: serde_json::Value =
        reqwest::blocking::get(format!("{}/api/v1/dashboard/acks", gw.url))
            .and_then(|r| r.json())
            .expect("acks");
    let ack = acks
        .as_array()
        .and_then(|a| a.iter().find(|a| a["anomaly_id"] == acked.as_str()))
        .unwrap_or_else(|| panic!("{acked} acknowledged before the restart: {acks}"));
    assert_eq!(ack["by"], "browser-test");
    gw.stop();
}
