//! `gridwatch dlq list|show|replay`: inspecting and replaying dead letters.
//!
//! The DLQ is the durable `dead-letter` topic, read like any topic: from a
//! running instance's admin API, or from the data directory when nothing
//! runs there. Replay re-delivers:
//! - a dead letter from a sink (`stage` = the sink's name) to that sink,
//!   built from the same `sinks.*` config, with the record's original source
//!   position, so the sink's exactly-once contract holds;
//! - an input that failed at ingest or validate (a reading that has since
//!   become acceptable, say after widening `validate.*`) to the ingest API
//!   of the running instance, as a new reading.
//!
//! Replayed dead letters are remembered in `<data_dir>/dlq-replayed.json`,
//! so running replay twice does not deliver anything twice.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use gridwatch_connector::{RetryPolicy, Sink, SinkRecord, deliver};
use gridwatch_contracts::DeadLetter;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use serde::{Deserialize, Serialize};

use crate::cli::{DlqCommand, DlqFilter};
use crate::topic::{Target, connect, fetch, partitions_of};

const TOPIC: &str = "dead-letter";

/// One dead letter with its own position in the DLQ.
struct Entry {
    partition: u32,
    offset: u64,
    letter: DeadLetter,
}

async fn read_all(target: &Target, filter: &DlqFilter) -> anyhow::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for partition in 0..partitions_of(target, TOPIC).await? {
        let mut at = Some(0);
        loop {
            let fetched = fetch(target, TOPIC, partition, at, Duration::ZERO).await?;
            let Some((last, _)) = fetched.records.last() else {
                break;
            };
            at = Some(last + 1);
            for (offset, value) in fetched.records {
                let letter = framing::parse(&value, IdWidth::ContentId4)
                    .ok()
                    .and_then(|f| DeadLetter::from_avro(f.datum).ok())
                    .with_context(|| format!("dead-letter {partition}@{offset} does not decode"))?;
                if filter.stage.as_ref().is_some_and(|s| *s != letter.stage)
                    || filter.reason.as_ref().is_some_and(|r| *r != letter.reason)
                {
                    continue;
                }
                out.push(Entry {
                    partition,
                    offset,
                    letter,
                });
            }
            if at >= Some(fetched.high_watermark) {
                break;
            }
        }
    }
    Ok(out)
}

fn source(d: &DeadLetter) -> String {
    match (&d.source_topic, d.source_partition, d.source_offset) {
        (Some(t), Some(p), Some(o)) => format!("{t}/{p}@{o}"),
        _ => "-".into(),
    }
}

/// The JSON `dlq show` prints: the dead letter, with the original bytes as
/// base64 and, when they are text, as text.
#[derive(Serialize)]
struct Shown<'a> {
    partition: u32,
    offset: u64,
    reason: &'a str,
    stage: &'a str,
    message: &'a str,
    source: String,
    first_failed_at: i64,
    attempts: i32,
    original_base64: String,
    original_text: Option<&'a str>,
}

#[derive(Default, Serialize, Deserialize)]
struct Replayed {
    /// (partition, offset) of every dead letter already replayed.
    done: BTreeSet<(u32, u64)>,
}

fn replayed_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("dlq-replayed.json")
}

pub async fn dispatch(cmd: DlqCommand) -> anyhow::Result<()> {
    match cmd {
        DlqCommand::List { filter, limit } => {
            let target = connect(&filter.target).await?;
            let entries = read_all(&target, &filter).await?;
            println!(
                "{:<12} {:<10} {:<24} {:<22} MESSAGE",
                "DLQ", "STAGE", "REASON", "SOURCE"
            );
            let shown = entries.len().saturating_sub(limit);
            for e in &entries[shown..] {
                let mut message = e.letter.message.replace('\n', " ");
                message.truncate(80);
                println!(
                    "{:<12} {:<10} {:<24} {:<22} {message}",
                    format!("{}@{}", e.partition, e.offset),
                    e.letter.stage,
                    e.letter.reason,
                    source(&e.letter),
                );
            }
            eprintln!(
                "{} dead letters ({} shown)",
                entries.len(),
                entries.len() - shown
            );
            Ok(())
        }
        DlqCommand::Show { position, target } => {
            let (p, o) = position
                .split_once('@')
                .and_then(|(p, o)| Some((p.parse::<u32>().ok()?, o.parse::<u64>().ok()?)))
                .context("give the position as PARTITION@OFFSET, as `dlq list` prints it")?;
            let target = connect(&target).await?;
            let fetched = fetch(&target, TOPIC, p, Some(o), Duration::ZERO).await?;
            let value = fetched
                .records
                .into_iter()
                .find(|(offset, _)| *offset == o)
                .map(|(_, v)| v)
                .with_context(|| format!("no dead letter at {p}@{o}"))?;
            let letter = framing::parse(&value, IdWidth::ContentId4)
                .ok()
                .and_then(|f| DeadLetter::from_avro(f.datum).ok())
                .context("the record does not decode as a DeadLetter")?;
            use base64::Engine as _;
            let shown = Shown {
                partition: p,
                offset: o,
                reason: &letter.reason,
                stage: &letter.stage,
                message: &letter.message,
                source: source(&letter),
                first_failed_at: letter.first_failed_at,
                attempts: letter.attempts,
                original_base64: base64::engine::general_purpose::STANDARD.encode(&letter.original),
                original_text: std::str::from_utf8(&letter.original).ok(),
            };
            println!("{}", serde_json::to_string_pretty(&shown)?);
            Ok(())
        }
        DlqCommand::Replay { filter, dry_run } => replay(filter, dry_run).await,
    }
}

async fn replay(filter: DlqFilter, dry_run: bool) -> anyhow::Result<()> {
    let config = filter.target.config.load()?;
    let target = connect(&filter.target).await?;
    let entries = read_all(&target, &filter).await?;
    let path = replayed_path(&config.data_dir);
    let mut replayed: Replayed = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not valid JSON", path.display()))?,
        Err(_) => Replayed::default(),
    };
    let pending: Vec<&Entry> = entries
        .iter()
        .filter(|e| !replayed.done.contains(&(e.partition, e.offset)))
        .collect();
    eprintln!(
        "{} dead letters match, {} not yet replayed{}",
        entries.len(),
        pending.len(),
        if dry_run { " (dry run)" } else { "" }
    );
    let mut by_stage: std::collections::BTreeMap<&str, Vec<&Entry>> = Default::default();
    for e in pending {
        by_stage.entry(e.letter.stage.as_str()).or_default().push(e);
    }
    let mut failed = 0usize;
    for (stage, letters) in by_stage {
        if dry_run {
            println!("{stage}: would replay {}", letters.len());
            continue;
        }
        let outcome = match stage {
            "ingest" | "validate" | "detect" => reingest(&target, &letters).await,
            sink => redeliver(&config, sink, &letters).await,
        };
        match outcome {
            Ok(done) => {
                println!("{stage}: replayed {} of {}", done.len(), letters.len());
                failed += letters.len() - done.len();
                replayed.done.extend(done);
            }
            Err(e) => {
                println!("{stage}: not replayed: {e:#}");
                failed += letters.len();
            }
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&replayed)?)?;
        std::fs::rename(&tmp, &path)?;
    }
    if failed > 0 {
        anyhow::bail!("{failed} dead letters were not replayed; they stay in the DLQ");
    }
    Ok(())
}

/// Re-delivers sink dead letters to the sink they failed in.
async fn redeliver(
    config: &crate::config::AppConfig,
    sink: &str,
    letters: &[&Entry],
) -> anyhow::Result<Vec<(u32, u64)>> {
    let records: Vec<SinkRecord> = letters
        .iter()
        .filter_map(|e| {
            Some(SinkRecord {
                topic: e.letter.source_topic.clone()?,
                partition: e.letter.source_partition? as u32,
                offset: e.letter.source_offset? as u64,
                timestamp_ms: e.letter.first_failed_at,
                key: meter_key(&e.letter),
                value: Bytes::from(e.letter.original.clone()),
            })
        })
        .collect();
    let sinks = &config.sinks;
    let policy = RetryPolicy::default();
    let written = match sink {
        "kafka" => {
            let c = sinks
                .kafka
                .as_ref()
                .context("sinks.kafka is not configured")?;
            let mut s = gridwatch_kafka::KafkaSink::connect(c).await?;
            send(&mut s, &records, &policy).await?
        }
        "influxdb" => {
            let c = sinks
                .influxdb
                .as_ref()
                .context("sinks.influxdb is not configured")?;
            let mut s = gridwatch_influxdb::InfluxDbSink::new(c)?;
            send(&mut s, &records, &policy).await?
        }
        "webhook" => {
            let c = sinks
                .webhook
                .as_ref()
                .context("sinks.webhook is not configured")?;
            let mut s = gridwatch_webhook::WebhookSink::new(c)?;
            send(&mut s, &records, &policy).await?
        }
        "lake" => {
            let c = sinks.lake.as_ref().context("sinks.lake is off")?;
            let c = c.clone().with_data_dir(&config.data_dir);
            // Fills the gaps the live sink recorded, never its commit state.
            let mut s = gridwatch_lake::LakeSink::replaying(&c)?;
            send(&mut s, &records, &policy).await?
        }
        other => anyhow::bail!("no sink called {other:?} (kafka, influxdb, webhook, lake)"),
    };
    Ok(letters
        .iter()
        .filter(|e| {
            e.letter.source_offset.is_some_and(|o| {
                written.contains(&(e.letter.source_partition.unwrap_or(-1) as u32, o as u64))
            })
        })
        .map(|e| (e.partition, e.offset))
        .collect())
}

/// The key the record had in its topic: the `meter_id` of the anomaly or
/// scored reading it holds (the Kafka bridge keys by it, so a replayed
/// anomaly lands on its meter's partition like the others). The dead
/// letter itself keeps only the value.
fn meter_key(letter: &DeadLetter) -> Option<Bytes> {
    let framed = framing::parse(&letter.original, IdWidth::ContentId4).ok()?;
    let topics = gridwatch_runtime::topics::Topics::default();
    let topic = letter.source_topic.as_deref()?;
    let meter = if topic == topics.anomalies {
        gridwatch_contracts::AnomalyEvent::from_avro(framed.datum)
            .ok()?
            .original_event
            .meter_id
    } else if topic == topics.scored {
        gridwatch_contracts::ScoredReading::from_avro(framed.datum)
            .ok()?
            .reading
            .meter_id
    } else {
        return None;
    };
    Some(Bytes::from(meter))
}

/// Delivers per source partition, in offset order, and flushes; returns
/// the (partition, offset) positions the sink took.
async fn send<S: Sink>(
    sink: &mut S,
    records: &[SinkRecord],
    policy: &RetryPolicy,
) -> anyhow::Result<BTreeSet<(u32, u64)>> {
    let mut sorted = records.to_vec();
    sorted.sort_by_key(|r| (r.topic.clone(), r.partition, r.offset));
    let mut taken = BTreeSet::new();
    for group in sorted.chunk_by(|a, b| a.topic == b.topic && a.partition == b.partition) {
        let out = deliver(sink, group, policy).await;
        let refused: BTreeSet<u64> = out
            .dead_letters
            .iter()
            .filter_map(|d| d.source_offset.map(|o| o as u64))
            .collect();
        for r in group {
            if !refused.contains(&r.offset) {
                taken.insert((r.partition, r.offset));
            }
        }
        if let Some(first) = out.dead_letters.first() {
            eprintln!("  {} still refused: {}", refused.len(), first.message);
        }
    }
    sink.flush()
        .await
        .map_err(|e| anyhow::anyhow!("flush: {e}"))?;
    Ok(taken)
}

/// Sends inputs that failed at ingest or validate back through the running
/// instance's ingest API. JSON originals go as NDJSON; others are reported.
async fn reingest(target: &Target, letters: &[&Entry]) -> anyhow::Result<Vec<(u32, u64)>> {
    let Target::Remote { client, base } = target else {
        anyhow::bail!("re-ingesting needs a running instance (start gridwatch run, or pass --url)");
    };
    let (json, other): (Vec<&&Entry>, Vec<&&Entry>) = letters.iter().partition(|e| {
        std::str::from_utf8(&e.letter.original).is_ok_and(|t| t.trim_start().starts_with('{'))
    });
    if !other.is_empty() {
        eprintln!(
            "  {} are binary (Avro) payloads; re-ingest them with `gridwatch ingest` once Avro ingest is on",
            other.len()
        );
    }
    if json.is_empty() {
        return Ok(Vec::new());
    }
    let body = json
        .iter()
        .map(|e| String::from_utf8_lossy(&e.letter.original).replace('\n', " "))
        .collect::<Vec<_>>()
        .join("\n");
    let response = client
        .post(format!("{base}/api/v1/readings"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let answer: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("ingest answered {status}: {answer}");
    }
    eprintln!("  ingest answered {answer}");
    // Lines that are still malformed are dead-lettered again, with a new
    // position; the old ones count as replayed either way.
    Ok(json.iter().map(|e| (e.partition, e.offset)).collect())
}
