//! The JSON bodies of each [`Template`].
//!
//! Every shape carries the anomaly id, so a receiver that deduplicates by it
//! (PagerDuty's `dedup_key`, Alertmanager's label set) turns the sink's
//! at-least-once delivery into one alert per anomaly.

use gridwatch_connector::SinkRecord;
use gridwatch_contracts::{AnomalyEvent, Severity};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::Template;

/// An anomaly to alert on, with where it came from.
#[derive(Debug, Clone)]
pub struct Alert<'a> {
    pub record: &'a SinkRecord,
    pub event: AnomalyEvent,
}

/// The `source` object: the record's position in its topic, its identity.
fn source(record: &SinkRecord) -> Value {
    json!({
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
    })
}

/// The generic body: the anomaly's contract fields plus `source`.
pub fn generic(alert: &Alert<'_>) -> Value {
    let mut value = serde_json::to_value(&alert.event).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("source".into(), source(alert.record));
    }
    value
}

/// Slack incoming webhook body.
pub fn slack(alert: &Alert<'_>) -> Value {
    json!({ "text": summary(&alert.event) })
}

/// PagerDuty Events API v2 `trigger` event.
pub fn pagerduty(alert: &Alert<'_>, routing_key: &str) -> Value {
    let e = &alert.event;
    let mut summary = summary(e);
    // PagerDuty truncates summaries at 1024 characters; do it ourselves so
    // the id at the end survives in custom_details at least.
    if summary.chars().count() > 1024 {
        summary = summary.chars().take(1023).collect::<String>() + "…";
    }
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": e.anomaly_id,
        "payload": {
            "summary": summary,
            "source": e.original_event.meter_id,
            "severity": lower(e.severity),
            "timestamp": rfc3339(e.original_event.timestamp),
            "component": e.field.as_deref().unwrap_or("status"),
            "group": "gridwatch",
            "class": e.anomaly_type.as_str(),
            "custom_details": generic(alert),
        },
    })
}

/// Alertmanager API v2 body for a batch: an array of postable alerts.
pub fn alertmanager(alerts: &[Alert<'_>]) -> Value {
    Value::Array(
        alerts
            .iter()
            .map(|a| {
                let e = &a.event;
                json!({
                    "labels": {
                        "alertname": "GridwatchAnomaly",
                        "anomaly_type": e.anomaly_type.as_str(),
                        "severity": lower(e.severity),
                        "meter_id": e.original_event.meter_id,
                        "anomaly_id": e.anomaly_id,
                    },
                    "annotations": {
                        "summary": summary(e),
                        "source_topic": a.record.topic,
                        "source_partition": a.record.partition.to_string(),
                        "source_offset": a.record.offset.to_string(),
                    },
                    "startsAt": rfc3339(e.original_event.timestamp),
                })
            })
            .collect(),
    )
}

/// Renders the requests for a batch of alerts, in order: each with the
/// source offsets it carries and its body.
pub fn render(
    template: Template,
    routing_key: Option<&str>,
    alerts: &[Alert<'_>],
) -> Vec<(Vec<u64>, Value)> {
    let each = |f: &dyn Fn(&Alert<'_>) -> Value| {
        alerts
            .iter()
            .map(|a| (vec![a.record.offset], f(a)))
            .collect()
    };
    match template {
        Template::Generic => each(&generic),
        Template::Slack => each(&slack),
        Template::Pagerduty => each(&|a| pagerduty(a, routing_key.unwrap_or_default())),
        Template::Alertmanager if alerts.is_empty() => Vec::new(),
        Template::Alertmanager => vec![(
            alerts.iter().map(|a| a.record.offset).collect(),
            alertmanager(alerts),
        )],
    }
}

/// One line a person reads first: what, where, when, how far off.
pub fn summary(e: &AnomalyEvent) -> String {
    let r = &e.original_event;
    let mut s = format!(
        "{} {} on meter {} at {}",
        e.severity.as_str(),
        e.anomaly_type.as_str(),
        r.meter_id,
        rfc3339(r.timestamp)
    );
    let reading = match e.field.as_deref() {
        Some("voltage") => Some(("voltage", r.voltage, "V")),
        Some("current") => Some(("current", r.current, "A")),
        Some("temperature") => Some(("temperature", r.temperature, "°C")),
        _ => None,
    };
    if let Some((name, value, unit)) = reading {
        s.push_str(&format!(": {name} {value} {unit}"));
        if let (Some(z), Some(mean), Some(sd)) = (e.zscore, e.window_mean, e.window_stddev) {
            s.push_str(&format!(" (z = {z:.2}; window {mean:.2} ± {sd:.2}"));
            if let Some(t) = e.threshold {
                s.push_str(&format!(", threshold {t}σ"));
            }
            s.push(')');
        }
    } else {
        s.push_str(&format!(": status {}", r.status.as_str()));
    }
    s.push_str(&format!(" [anomaly {}]", e.anomaly_id));
    s
}

fn lower(s: Severity) -> String {
    s.as_str().to_ascii_lowercase()
}

/// Epoch ms as RFC 3339 UTC; an out-of-range time falls back to the number.
fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use gridwatch_connector::testkit::{anomaly_record, sample_anomaly};
    use gridwatch_contracts::{AnomalyType, MeterStatus};

    use super::*;

    fn alert(record: &SinkRecord) -> Alert<'_> {
        Alert {
            record,
            event: sample_anomaly(record.partition, record.offset),
        }
    }

    #[test]
    fn generic_is_the_anomaly_plus_its_source() {
        let r = anomaly_record("anomalies", 1, 5, 3);
        let v = generic(&alert(&r));
        let e = sample_anomaly(1, 5);
        assert_eq!(v["anomaly_id"], e.anomaly_id);
        assert_eq!(v["severity"], "CRITICAL");
        assert_eq!(v["anomaly_type"], "VOLTAGE_SURGE");
        assert_eq!(v["original_event"]["meter_id"], "meter-1-0005");
        assert_eq!(v["original_event"]["timestamp"], e.original_event.timestamp);
        assert_eq!(v["zscore"], 3.5);
        assert_eq!(
            v["source"],
            json!({"topic":"anomalies","partition":1,"offset":5})
        );
    }

    #[test]
    fn summaries_read_well_for_scored_and_status_anomalies() {
        let e = sample_anomaly(0, 5);
        assert_eq!(
            summary(&e),
            format!(
                "CRITICAL VOLTAGE_SURGE on meter meter-0-0005 at 2026-03-01T23:05:00Z: \
                 voltage 255 V (z = 3.50; window 230.00 ± 4.00, threshold 2.5σ) [anomaly {}]",
                e.anomaly_id
            )
        );
        let mut e = sample_anomaly(0, 0);
        e.anomaly_type = AnomalyType::EquipmentFailure;
        e.field = None;
        e.original_event.status = MeterStatus::Failure;
        assert!(summary(&e).contains(
            "EQUIPMENT_FAILURE on meter meter-0-0000 at 2026-03-01T23:00:00Z: status FAILURE"
        ));
    }

    #[test]
    fn pagerduty_is_an_events_v2_trigger_deduplicated_by_anomaly_id() {
        let r = anomaly_record("anomalies", 0, 10, 3);
        let a = alert(&r);
        let v = pagerduty(&a, "RK");
        assert_eq!(v["routing_key"], "RK");
        assert_eq!(v["event_action"], "trigger");
        assert_eq!(v["dedup_key"], a.event.anomaly_id);
        assert_eq!(v["payload"]["severity"], "critical");
        assert_eq!(v["payload"]["source"], "meter-0-0010");
        assert_eq!(v["payload"]["timestamp"], "2026-03-01T23:10:00Z");
        assert_eq!(v["payload"]["class"], "VOLTAGE_SURGE");
        assert_eq!(v["payload"]["custom_details"]["source"]["offset"], 10);
    }

    #[test]
    fn alertmanager_batches_alerts_with_labels_and_annotations() {
        let records: Vec<_> = [0, 5].map(|o| anomaly_record("anomalies", 0, o, 3)).into();
        let alerts: Vec<_> = records.iter().map(alert).collect();
        let requests = render(Template::Alertmanager, None, &alerts);
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].0, vec![0, 5]);
        let v = &requests[0].1;
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(v[1]["labels"]["alertname"], "GridwatchAnomaly");
        assert_eq!(v[1]["labels"]["severity"], "critical");
        assert_eq!(v[1]["labels"]["anomaly_id"], alerts[1].event.anomaly_id);
        assert_eq!(v[1]["annotations"]["source_offset"], "5");
        assert_eq!(v[1]["startsAt"], "2026-03-01T23:05:00Z");
        assert!(render(Template::Alertmanager, None, &[]).is_empty());
        assert_eq!(render(Template::Slack, None, &alerts).len(), 2);
    }
}
