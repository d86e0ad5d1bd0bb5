//! The webhook sink against a real HTTP receiver on loopback: an axum
//! server started by each test that records every request and answers as
//! scripted by its path:
//!
//! - `/ok`: 200;
//! - `/script/503,200,400`: the n-th request gets the n-th status, 200 after
//!   the list;
//! - `/reject-odd`: 400 for an alert whose source offset is odd.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use gridwatch_connector::testkit::{Compliance, anomaly_record, sample_anomaly};
use gridwatch_connector::{RetryPolicy, SinkRecord, deliver};
use gridwatch_contracts::Severity;
use gridwatch_contracts::model::reason;
use gridwatch_webhook::{Secret, Template, WebhookConfig, WebhookSink};
use serde_json::Value;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Value,
    status: u16,
}

#[derive(Clone, Default)]
struct Receiver {
    requests: Arc<Mutex<Vec<Received>>>,
    counters: Arc<Mutex<HashMap<String, usize>>>,
}

impl Receiver {
    /// Starts the receiver; returns its base URL.
    async fn start() -> (Self, String) {
        let receiver = Self::default();
        let app = Router::new()
            .route("/{*path}", post(handle))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, format!("http://{addr}"))
    }

    fn all(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }

    /// Bodies the receiver accepted (2xx).
    fn accepted(&self) -> Vec<Value> {
        self.all()
            .into_iter()
            .filter(|r| r.status < 300)
            .map(|r| r.body)
            .collect()
    }
}

async fn handle(
    State(receiver): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = {
        let mut counters = receiver.counters.lock().unwrap();
        let n = counters.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    let status = if let Some(script) = path.strip_prefix("script/") {
        script
            .split(',')
            .nth(n - 1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(200)
    } else if path == "reject-odd" {
        if body["source"]["offset"].as_u64().unwrap_or(0) % 2 == 1 {
            400
        } else {
            200
        }
    } else {
        200
    };
    receiver.requests.lock().unwrap().push(Received {
        path,
        headers,
        body,
        status,
    });
    StatusCode::from_u16(status).unwrap()
}

fn records(offsets: std::ops::Range<u64>) -> Vec<SinkRecord> {
    offsets
        .map(|o| anomaly_record("anomalies", 0, o, 1))
        .collect()
}

fn config(url: &str) -> WebhookConfig {
    WebhookConfig::new(url.parse().unwrap())
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        ..RetryPolicy::default()
    }
}

fn offsets(bodies: &[Value]) -> Vec<u64> {
    bodies
        .iter()
        .map(|b| b["source"]["offset"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn critical_anomalies_are_posted_as_json_with_headers_and_token() {
    let (receiver, base) = Receiver::start().await;
    let mut c = config(&format!("{base}/ok"));
    c.token = Some(Secret::new("tok-123"));
    c.headers.insert("X-Api-Key".into(), Secret::new("key-456"));
    let mut sink = WebhookSink::new(&c).unwrap();
    assert!(!format!("{sink:?}").contains("tok-123") && !format!("{sink:?}").contains("key-456"));

    // Offsets divisible by 5 are CRITICAL, the rest WARNING.
    let out = deliver(&mut sink, &records(0..20), &RetryPolicy::default()).await;
    assert_eq!(
        (out.written, out.retries, out.dead_letters.len()),
        (20, 0, 0)
    );
    let all = receiver.all();
    assert_eq!(all.len(), 4);
    for (r, o) in all.iter().zip([0, 5, 10, 15]) {
        let e = sample_anomaly(0, o);
        assert_eq!(r.path, "ok");
        assert_eq!(r.headers["authorization"], "Bearer tok-123");
        assert_eq!(r.headers["x-api-key"], "key-456");
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.body["anomaly_id"], e.anomaly_id);
        assert_eq!(r.body["severity"], "CRITICAL");
        assert_eq!(r.body["anomaly_type"], "VOLTAGE_SURGE");
        assert_eq!(
            r.body["original_event"]["meter_id"],
            e.original_event.meter_id
        );
        assert_eq!(
            r.body["original_event"]["timestamp"],
            e.original_event.timestamp
        );
        assert_eq!(r.body["zscore"], e.zscore.unwrap());
        assert_eq!(r.body["source"]["topic"], "anomalies");
        assert_eq!(r.body["source"]["offset"], o);
    }
}

#[tokio::test]
async fn min_severity_is_configurable() {
    let (receiver, base) = Receiver::start().await;
    let mut c = config(&format!("{base}/ok"));
    c.min_severity = Severity::Warning;
    let mut sink = WebhookSink::new(&c).unwrap();
    let out = deliver(&mut sink, &records(0..20), &RetryPolicy::default()).await;
    assert_eq!(out.written, 20);
    assert_eq!(offsets(&receiver.accepted()), (0..20).collect::<Vec<_>>());
}

#[tokio::test]
async fn slack_pagerduty_and_alertmanager_shapes() {
    let (receiver, base) = Receiver::start().await;

    let mut c = config(&format!("{base}/slack"));
    c.template = Template::Slack;
    let mut sink = WebhookSink::new(&c).unwrap();
    deliver(&mut sink, &records(0..6), &RetryPolicy::default()).await;

    let mut c = config(&format!("{base}/pagerduty"));
    c.template = Template::Pagerduty;
    c.routing_key = Some(Secret::new("R0UTING"));
    let mut sink = WebhookSink::new(&c).unwrap();
    deliver(&mut sink, &records(0..6), &RetryPolicy::default()).await;

    let mut c = config(&format!("{base}/api/v2/alerts"));
    c.template = Template::Alertmanager;
    let mut sink = WebhookSink::new(&c).unwrap();
    deliver(&mut sink, &records(0..20), &RetryPolicy::default()).await;

    let by_path: BTreeMap<String, Vec<Value>> =
        receiver
            .all()
            .into_iter()
            .fold(BTreeMap::new(), |mut m, r| {
                m.entry(r.path).or_default().push(r.body);
                m
            });

    let slack = &by_path["slack"];
    assert_eq!(slack.len(), 2);
    let obj = slack[0].as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["text"]);
    let text = slack[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "CRITICAL VOLTAGE_SURGE on meter meter-0-0000 at 2026-03-01T23:00:00Z: voltage 250 V"
        ),
        "{text}"
    );

    let pd = &by_path["pagerduty"];
    assert_eq!(pd.len(), 2);
    let e = sample_anomaly(0, 5);
    assert_eq!(pd[1]["routing_key"], "R0UTING");
    assert_eq!(pd[1]["event_action"], "trigger");
    assert_eq!(pd[1]["dedup_key"], e.anomaly_id);
    assert_eq!(pd[1]["payload"]["severity"], "critical");
    assert_eq!(pd[1]["payload"]["source"], "meter-0-0005");
    assert_eq!(pd[1]["payload"]["timestamp"], "2026-03-01T23:05:00Z");
    assert!(
        pd[1]["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("VOLTAGE_SURGE")
    );

    let am = &by_path["api/v2/alerts"];
    assert_eq!(am.len(), 1, "one request per batch");
    let alerts = am[0].as_array().unwrap();
    assert_eq!(alerts.len(), 4);
    let e = sample_anomaly(0, 15);
    assert_eq!(alerts[3]["labels"]["alertname"], "GridwatchAnomaly");
    assert_eq!(alerts[3]["labels"]["severity"], "critical");
    assert_eq!(alerts[3]["labels"]["meter_id"], "meter-0-0015");
    assert_eq!(alerts[3]["labels"]["anomaly_id"], e.anomaly_id);
    assert_eq!(alerts[3]["startsAt"], "2026-03-01T23:15:00Z");
    assert!(
        alerts[3]["annotations"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("CRITICAL")
    );
}

#[tokio::test]
async fn a_503_is_retried_and_nothing_is_sent_twice() {
    let (receiver, base) = Receiver::start().await;
    // First alert refused twice.
    let mut sink = WebhookSink::new(&config(&format!("{base}/script/503,503"))).unwrap();
    let out = deliver(&mut sink, &records(0..20), &quick()).await;
    assert_eq!(
        (out.written, out.retries, out.dead_letters.len()),
        (20, 2, 0)
    );
    assert_eq!(offsets(&receiver.accepted()), [0, 5, 10, 15]);

    // The second alert of the batch refused: the retry does not re-send the first.
    let mut sink = WebhookSink::new(&config(&format!("{base}/script/200,503"))).unwrap();
    let out = deliver(&mut sink, &records(0..20), &quick()).await;
    assert_eq!((out.written, out.retries), (20, 1));
    let script: Vec<_> = receiver
        .all()
        .into_iter()
        .filter(|r| r.path == "script/200,503")
        .map(|r| (r.body["source"]["offset"].as_u64().unwrap(), r.status))
        .collect();
    assert_eq!(script, [(0, 200), (5, 503), (5, 200), (10, 200), (15, 200)]);
}

#[tokio::test]
async fn exhausted_retries_dead_letter_the_batch() {
    let (_receiver, base) = Receiver::start().await;
    let mut sink =
        WebhookSink::new(&config(&format!("{base}/script/503,503,503,503,503"))).unwrap();
    let out = deliver(&mut sink, &records(0..3), &quick()).await;
    assert_eq!((out.written, out.retries), (0, 3));
    assert_eq!(out.dead_letters.len(), 3);
    for d in &out.dead_letters {
        assert_eq!(d.reason, reason::RETRIES_EXHAUSTED);
        assert_eq!(d.attempts, 4);
        assert_eq!(d.stage, "webhook");
        assert!(d.message.contains("HTTP 503"), "{}", d.message);
    }
}

#[tokio::test]
async fn a_400_goes_to_the_dlq_at_once_and_only_for_the_refused_alert() {
    let (receiver, base) = Receiver::start().await;
    let mut sink = WebhookSink::new(&config(&format!("{base}/script/400"))).unwrap();
    let out = deliver(&mut sink, &records(0..5), &quick()).await;
    assert_eq!((out.written, out.retries), (4, 0));
    assert_eq!(out.dead_letters.len(), 1);
    let d = &out.dead_letters[0];
    assert_eq!(d.source_offset, Some(0));
    assert_eq!(d.reason, reason::PERMANENT_SINK_ERROR);
    assert_eq!(d.attempts, 1);
    assert!(d.message.starts_with("HTTP 400"), "{}", d.message);
    assert_eq!(receiver.all().len(), 1, "no retry");

    let mut c = config(&format!("{base}/reject-odd"));
    c.min_severity = Severity::Info;
    let mut sink = WebhookSink::new(&c).unwrap();
    let mut batch = records(0..8);
    batch[6].value = Bytes::from_static(b"garbage");
    let out = deliver(&mut sink, &batch, &quick()).await;
    let dead: Vec<_> = out
        .dead_letters
        .iter()
        .map(|d| d.source_offset.unwrap())
        .collect();
    assert_eq!(dead, [1, 3, 5, 6, 7]);
    assert!(
        out.dead_letters[3]
            .message
            .starts_with("not an anomaly record")
    );
    assert_eq!(out.written, 3);
}

/// A webhook is at least once; with a receiver that deduplicates by the
/// key PagerDuty uses (`dedup_key` = anomaly id), the harness sees every
/// position once. The raw request count shows the re-sent overlap.
#[tokio::test]
async fn compliance_at_a_deduplicating_receiver() {
    let (receiver, base) = Receiver::start().await;
    let mut c = config(&format!("{base}/pd"));
    c.template = Template::Pagerduty;
    c.routing_key = Some(Secret::new("rk"));
    c.min_severity = Severity::Info;
    let report = Compliance::new("anomalies", 1)
        .run(
            || {
                let c = c.clone();
                async move { WebhookSink::new(&c).unwrap() }
            },
            |_topic, partition| {
                let receiver = receiver.clone();
                async move {
                    let mut incidents: BTreeMap<String, (u32, u64)> = BTreeMap::new();
                    for body in receiver.accepted() {
                        let source = &body["payload"]["custom_details"]["source"];
                        incidents.insert(
                            body["dedup_key"].as_str().unwrap().to_owned(),
                            (
                                source["partition"].as_u64().unwrap() as u32,
                                source["offset"].as_u64().unwrap(),
                            ),
                        );
                    }
                    incidents
                        .values()
                        .filter(|(p, _)| *p == partition)
                        .map(|(_, o)| *o)
                        .collect()
                }
            },
        )
        .await
        .unwrap();
    assert_eq!(report.checked_positions, 175);
    // 175 positions, and 50..120 of partition 0 sent again after the "crash".
    assert_eq!(receiver.accepted().len(), 175 + 70);
}
