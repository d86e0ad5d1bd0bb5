//! FR-007 / issue 9 item 3: malformed input never crashes the pipeline and
//! always lands in the `dead-letter` topic with a reason and its bytes.
//!
//! Every case in `tests/corpus/bad-input/` (see its `manifest.json` and
//! `generate.py`) goes to a real `gridwatch run --no-simulator`:
//!
//! - JSON cases through `POST /api/v1/readings`, each between two valid
//!   readings in the same request, which must still be accepted and scored;
//! - Avro cases straight into the `readings` topic, as a producer writing to
//!   the topic would: the HTTP API takes only JSON today (Avro bodies get
//!   415). The process is stopped for that, the records appended to its log,
//!   and the process started again, so these cases also cross a restart.
//!
//! Then the `dead-letter` topic, read over the admin API and decoded here,
//! must hold exactly one dead letter per case, with the manifest's reason and
//! stage and the original bytes (for readings refused by validate after
//! ingest re-encoded them, the framed Avro whose meter_id is the case's).
//! An oversized body must get 413 and leave no trace.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::{DeadLetter, ScoredReading, SensorReading};
use gridwatch_tests::modules::workspace_root;
use gridwatch_tests::process::Gridwatch;
use serde_json::Value;

/// Small enough that a 413 costs little, large enough for the 3 MB case.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// 2026-01-01T00:00:00Z: the valid readings' base time.
const TS: i64 = 1_767_225_600_000;
/// How long to wait for the pipeline to process what it acknowledged. Not a
/// performance bound: only a guard against waiting for ever on a bug.
const PATIENCE: Duration = Duration::from_secs(300);
const PARTITIONS: u32 = 2;

struct Case {
    file: String,
    transport: String,
    bytes: Vec<u8>,
    /// (reason, stage), or None for "no dead letter".
    expect: Option<(String, String)>,
    registered_frame: bool,
    wrap: bool,
}

fn corpus_dir() -> PathBuf {
    workspace_root().join("tests/corpus/bad-input")
}

fn load_corpus() -> Vec<Case> {
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(corpus_dir().join("manifest.json")).expect("manifest.json"),
    )
    .expect("manifest.json is JSON");
    manifest["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|c| {
            // A case the pipeline cannot pass yet is named with its bug, and
            // skipped loudly rather than silently dropped from the corpus.
            let Some(bug) = c.get("known_issue").and_then(Value::as_str) else {
                return true;
            };
            println!(
                "SKIPPED case {}: known issue, not yet fixed: {bug}",
                c["file"].as_str().unwrap_or("?")
            );
            false
        })
        .map(|c| {
            let file = c["file"].as_str().expect("file").to_string();
            let mut bytes = std::fs::read(corpus_dir().join(&file)).expect("case file");
            if let Some(x) = c.get("expand") {
                let token = x["token"].as_str().expect("token").as_bytes();
                let fill = x["byte"].as_str().expect("byte").as_bytes()[0];
                let times = x["times"].as_u64().expect("times") as usize;
                let at = bytes
                    .windows(token.len())
                    .position(|w| w == token)
                    .expect("expand token in the file");
                bytes.splice(at..at + token.len(), std::iter::repeat_n(fill, times));
            }
            Case {
                transport: c["transport"].as_str().expect("transport").to_string(),
                expect: c["expect"].as_object().map(|e| {
                    (
                        e["reason"].as_str().expect("reason").to_string(),
                        e["stage"].as_str().expect("stage").to_string(),
                    )
                }),
                registered_frame: c["frame"].as_str() == Some("registered"),
                wrap: c["wrap"].as_bool().unwrap_or(false),
                file,
                bytes,
            }
        })
        .collect()
}

fn valid_json(meter: &str, i: usize) -> String {
    format!(
        r#"{{"meter_id":"{meter}","timestamp":{},"voltage":230.5,"current":5.0,"temperature":21.0}}"#,
        TS + i as i64 * 1000
    )
}

/// The records of every partition of a topic, from the start, over the admin API.
fn fetch_all(gw: &Gridwatch, topic: &str) -> Vec<Vec<u8>> {
    let client = reqwest::blocking::Client::new();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        let mut offset = 0u64;
        loop {
            let body: Value = client
                .get(format!(
                    "{}/api/v1/topics/{topic}/partitions/{p}/records?offset={offset}&max=1000",
                    gw.url
                ))
                .timeout(Duration::from_secs(60))
                .send()
                .and_then(|r| r.error_for_status())
                .and_then(|r| r.json())
                .unwrap_or_else(|e| panic!("fetching {topic}/{p}: {e}"));
            let records = body["records"].as_array().expect("records");
            for r in records {
                out.push(
                    b64.decode(r["value"].as_str().expect("value"))
                        .expect("base64"),
                );
                offset = r["offset"].as_u64().expect("offset") + 1;
            }
            if records.is_empty() || offset >= body["high_watermark"].as_u64().unwrap_or(0) {
                break;
            }
        }
    }
    out
}

fn decode<T: AvroRecord>(framed: &[u8]) -> (u64, T) {
    let f = framing::parse(framed, IdWidth::ContentId4).expect("topics hold framed Avro");
    let value = T::from_avro(f.datum).expect("topics hold contract records");
    (f.schema_id, value)
}

fn dead_letters(gw: &Gridwatch) -> Vec<DeadLetter> {
    fetch_all(gw, "dead-letter")
        .iter()
        .map(|v| decode::<DeadLetter>(v).1)
        .collect()
}

fn assert_alive(gw: &mut Gridwatch, after: &str) {
    if let Ok(Some(status)) = gw.child.try_wait() {
        panic!("gridwatch exited ({status}) after {after}");
    }
}

/// Waits until `done` holds; after [`PATIENCE`] notes `what` in `failures`
/// and carries on, so the final report shows what did arrive.
fn wait_for(
    gw: &mut Gridwatch,
    what: &str,
    failures: &mut Vec<String>,
    mut done: impl FnMut(&Gridwatch) -> bool,
) {
    let started = Instant::now();
    while !done(gw) {
        assert_alive(gw, what);
        if started.elapsed() > PATIENCE {
            failures.push(format!("gave up waiting for {what} after {PATIENCE:?}"));
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How the dead letter of a case is recognised.
enum Original {
    /// The exact bytes.
    Exact(Vec<u8>),
    /// Framed Avro written by ingest, decoding to a reading with this meter_id.
    Reencoded { meter_id: String },
}

struct Expected {
    file: String,
    reason: String,
    stage: String,
    original: Original,
}

#[test]
fn every_bad_input_is_dead_lettered_with_its_reason_and_bytes_and_nothing_crashes() {
    let cases = load_corpus();
    assert!(cases.len() >= 40, "the corpus has {} cases", cases.len());
    // Build the binary and modules first: `Gridwatch::start` counts its
    // start-up time from before the build, which can be minutes on a busy machine.
    gridwatch_tests::process::binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let max_body = MAX_BODY.to_string();
    let env = [("GRIDWATCH_HTTP__MAX_BODY_BYTES", max_body.as_str())];
    let mut gw = Gridwatch::start(&data, &["--no-simulator"], &env);
    let client = reqwest::blocking::Client::new();
    let mut expected = Vec::new();
    let mut valid_meters = Vec::new();
    // Everything that is wrong, reported together at the end.
    let mut failures = Vec::new();

    // --- JSON over HTTP ----------------------------------------------------
    for (i, case) in cases.iter().enumerate() {
        let (content_type, body, valid) = match case.transport.as_str() {
            "topic" => continue,
            "ndjson" if case.expect.is_some() => {
                let (a, b) = (format!("ok-{i}-a"), format!("ok-{i}-b"));
                let mut body = valid_json(&a, i).into_bytes();
                body.push(b'\n');
                body.extend_from_slice(&case.bytes);
                body.push(b'\n');
                body.extend_from_slice(valid_json(&b, i).as_bytes());
                ("application/x-ndjson", body, vec![a, b])
            }
            "ndjson" => ("application/x-ndjson", case.bytes.clone(), vec![]),
            "json-array" if case.wrap => {
                let (a, b) = (format!("ok-{i}-a"), format!("ok-{i}-b"));
                let mut body = format!("[{},", valid_json(&a, i)).into_bytes();
                body.extend_from_slice(&case.bytes);
                body.extend_from_slice(format!(",{}]", valid_json(&b, i)).as_bytes());
                ("application/json", body, vec![a, b])
            }
            "json-array" => ("application/json", case.bytes.clone(), vec![]),
            other => panic!("{}: unknown transport {other}", case.file),
        };
        let resp = client
            .post(format!("{}/api/v1/readings", gw.url))
            .header("content-type", content_type)
            .body(body)
            .timeout(Duration::from_secs(60))
            .send()
            .unwrap_or_else(|e| panic!("{}: no answer: {e}", case.file));
        assert_eq!(resp.status().as_u16(), 200, "{}", case.file);
        let outcome: Value = resp.json().expect("JSON outcome");
        assert_alive(&mut gw, &case.file);
        // Ingest refuses what does not parse; validate refuses the rest later,
        // so those still count as accepted here.
        let at_ingest = case.expect.as_ref().is_some_and(|(_, s)| s == "ingest");
        let want_accepted = valid.len() + usize::from(case.expect.is_some() && !at_ingest);
        if outcome["accepted"].as_u64() != Some(want_accepted as u64)
            || outcome["rejected"].as_u64() != Some(u64::from(at_ingest))
        {
            failures.push(format!(
                "{}: answer {outcome}, want accepted {want_accepted}, rejected {}",
                case.file,
                u64::from(at_ingest)
            ));
        }
        valid_meters.extend(valid);
        if let Some((reason, stage)) = &case.expect {
            let original = if at_ingest {
                Original::Exact(case.bytes.clone())
            } else {
                let v: Value =
                    serde_json::from_slice(&case.bytes).expect("validate cases are JSON");
                Original::Reencoded {
                    meter_id: v["meter_id"].as_str().expect("meter_id").to_string(),
                }
            };
            expected.push(Expected {
                file: case.file.clone(),
                reason: reason.clone(),
                stage: stage.clone(),
                original,
            });
        }
    }

    // --- An oversized body: 413, nothing ingested, nothing dead-lettered ----
    let line = valid_json("oversized-meter", 0);
    let mut huge = String::with_capacity(MAX_BODY + line.len() + 1);
    while huge.len() <= MAX_BODY {
        huge.push_str(&line);
        huge.push('\n');
    }
    let resp = client
        .post(format!("{}/api/v1/readings", gw.url))
        .header("content-type", "application/x-ndjson")
        .body(huge)
        .timeout(Duration::from_secs(60))
        .send()
        .expect("an answer to the oversized body");
    assert_eq!(resp.status().as_u16(), 413, "oversized body");
    assert_alive(&mut gw, "the oversized body");

    let http_expected = expected.len();
    wait_for(
        &mut gw,
        "the JSON cases' dead letters",
        &mut failures,
        |gw| dead_letters(gw).len() >= http_expected,
    );
    wait_for(
        &mut gw,
        "the valid readings to be scored",
        &mut failures,
        |gw| {
            let scored: Vec<String> = fetch_all(gw, "scored")
                .iter()
                .map(|v| decode::<ScoredReading>(v).1.reading.meter_id)
                .collect();
            valid_meters.iter().all(|m| scored.contains(m))
        },
    );
    // The id the registry gave SensorReading, as ingest framed the readings.
    let readings = fetch_all(&gw, "readings");
    let (reading_id, _) = decode::<SensorReading>(readings.first().expect("readings"));
    assert!(
        readings
            .iter()
            .all(|r| !r.windows(15).any(|w| w == b"oversized-meter")),
        "nothing of the oversized body was ingested"
    );
    gw.stop();

    // --- Avro straight into the readings topic --------------------------------
    {
        let log = gridwatch_log::Log::open(data.join("topics"), Default::default())
            .expect("the stopped instance's log opens");
        for (i, case) in cases.iter().enumerate() {
            if case.transport != "topic" {
                continue;
            }
            let mut bytes = case.bytes.clone();
            if case.registered_frame {
                bytes[1..5].copy_from_slice(&(reading_id as u32).to_be_bytes());
            }
            let p = (i as u32) % PARTITIONS;
            let now = gridwatch_log::now_ms();
            log.partition("readings", p)
                .expect("readings partition")
                .append(gridwatch_log::Record::new(now, &bytes).with_key(b"bad-input"))
                .expect("append");
            let (reason, stage) = case
                .expect
                .clone()
                .expect("topic cases expect a dead letter");
            expected.push(Expected {
                file: case.file.clone(),
                reason,
                stage,
                original: Original::Exact(bytes),
            });
        }
    }
    let mut gw = Gridwatch::start(&data, &["--no-simulator"], &env);
    let total = expected.len();
    wait_for(&mut gw, "every case's dead letter", &mut failures, |gw| {
        dead_letters(gw).len() >= total
    });
    assert_alive(&mut gw, "processing the topic cases");

    // --- Every case: one dead letter, the right reason, stage and bytes -----
    let letters = dead_letters(&gw);
    let mut used = vec![false; letters.len()];
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &expected {
        let found = letters.iter().enumerate().find(|(i, d)| {
            !used[*i]
                && match &e.original {
                    Original::Exact(bytes) => d.original == *bytes,
                    Original::Reencoded { meter_id } => {
                        framing::parse(&d.original, IdWidth::ContentId4).is_ok_and(|f| {
                            f.schema_id == reading_id
                                && SensorReading::from_avro(f.datum)
                                    .is_ok_and(|r| r.meter_id == *meter_id)
                        })
                    }
                }
        });
        let Some((i, d)) = found else {
            failures.push(format!("{}: no dead letter carries its bytes", e.file));
            continue;
        };
        used[i] = true;
        *by_reason.entry(e.reason.as_str()).or_default() += 1;
        if d.reason != e.reason || d.stage != e.stage {
            failures.push(format!(
                "{}: got {} at {} ({}), want {} at {}",
                e.file, d.reason, d.stage, d.message, e.reason, e.stage
            ));
        }
        if d.stage == "validate" && d.source_topic.as_deref() != Some("readings") {
            failures.push(format!("{}: source topic {:?}", e.file, d.source_topic));
        }
    }
    let extra: Vec<String> = letters
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(d, _)| format!("{} at {}: {}", d.reason, d.stage, d.message))
        .collect();
    if !extra.is_empty() {
        failures.push(format!("unexpected dead letters: {extra:?}"));
    }
    println!(
        "{} cases, {} dead letters checked, by reason: {by_reason:?}",
        cases.len(),
        expected.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    gw.stop();
}
