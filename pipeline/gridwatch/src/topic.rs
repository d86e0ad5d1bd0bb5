//! `gridwatch topic list|create|consume`, against a running instance (over
//! its admin API) or directly on a data directory when nothing runs there.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::{AnomalyEvent, DeadLetter, ScoredReading, SensorReading, schema};
use gridwatch_runtime::backend::TopicBackend;
use gridwatch_runtime::backend::embedded::EmbeddedBackend;

use crate::cli::{ConsumeArgs, Format, TopicCommand, TopicTarget};
use crate::http::FetchResponse;

/// Where a topic command goes.
pub(crate) enum Target {
    Remote {
        client: reqwest::Client,
        base: String,
    },
    Local {
        backend: EmbeddedBackend,
        _lock: std::fs::File,
    },
}

pub(crate) async fn connect(target: &TopicTarget) -> anyhow::Result<Target> {
    let config = target.config.load()?;
    // The admin API wants the token when one is configured.
    let token = match &target.token {
        Some(t) => Some(t.clone()),
        None => config.admin.resolve()?.map(|s| s.expose().to_owned()),
    };
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
            .context("the admin token is not a valid header value")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .default_headers(headers)
        .build()?;
    let explicit = target.url.is_some();
    let base = target
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.http.listen))
        .trim_end_matches('/')
        .to_string();
    let alive = client
        .get(format!("{base}/healthz"))
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    if alive {
        return Ok(Target::Remote { client, base });
    }
    if explicit {
        anyhow::bail!("no gridwatch answers at {base}");
    }
    let lock = crate::app::lock_data_dir(&config)?;
    Ok(Target::Local {
        backend: crate::app::open_backend(&config)?,
        _lock: lock,
    })
}

pub async fn dispatch(cmd: TopicCommand) -> anyhow::Result<()> {
    match cmd {
        TopicCommand::List(target) => {
            let topics = match connect(&target).await? {
                Target::Remote { client, base } => client
                    .get(format!("{base}/api/v1/topics"))
                    .send()
                    .await?
                    .error_for_status()?
                    .json::<Vec<serde_json::Value>>()
                    .await?
                    .into_iter()
                    .map(|t| {
                        (
                            t["name"].as_str().unwrap_or("").to_string(),
                            t["partitions"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect::<Vec<_>>(),
                Target::Local { backend, .. } => backend
                    .list_topics()
                    .await?
                    .into_iter()
                    .map(|t| (t.name, u64::from(t.partitions)))
                    .collect(),
            };
            println!("{:<24} PARTITIONS", "NAME");
            for (name, partitions) in topics {
                println!("{name:<24} {partitions}");
            }
            Ok(())
        }
        TopicCommand::Create {
            name,
            partitions,
            target,
        } => {
            match connect(&target).await? {
                Target::Remote { client, base } => {
                    client
                        .post(format!("{base}/api/v1/topics"))
                        .json(&serde_json::json!({"name": name, "partitions": partitions}))
                        .send()
                        .await?
                        .error_for_status()?;
                }
                Target::Local { backend, .. } => {
                    backend.ensure_topic(&name, partitions).await?;
                }
            }
            println!("topic \"{name}\" created");
            Ok(())
        }
        TopicCommand::Consume(args) => consume(args).await,
    }
}

pub(crate) struct Fetched {
    pub(crate) records: Vec<(u64, Vec<u8>)>,
    pub(crate) high_watermark: u64,
    pub(crate) log_start: u64,
}

pub(crate) async fn fetch(
    target: &Target,
    topic: &str,
    partition: u32,
    offset: Option<u64>,
    wait: Duration,
) -> anyhow::Result<Fetched> {
    match target {
        Target::Remote { client, base } => {
            let mut url = format!(
                "{base}/api/v1/topics/{topic}/partitions/{partition}/records?max=1000&wait_ms={}",
                wait.as_millis()
            );
            if let Some(o) = offset {
                url.push_str(&format!("&offset={o}"));
            }
            let resp = client.get(url).send().await?;
            if !resp.status().is_success() {
                anyhow::bail!("{}", resp.text().await.unwrap_or_default());
            }
            let body: FetchResponse = resp.json().await?;
            let b64 = base64::engine::general_purpose::STANDARD;
            Ok(Fetched {
                high_watermark: body.high_watermark,
                log_start: body.log_start,
                records: body
                    .records
                    .into_iter()
                    .map(|r| Ok((r.offset, b64.decode(r.value)?)))
                    .collect::<Result<_, base64::DecodeError>>()?,
            })
        }
        Target::Local { backend, .. } => {
            let hw = backend.high_watermark(topic, partition).await?;
            let start = backend.log_start(topic, partition).await?;
            let from = offset.unwrap_or(hw).max(start);
            let records = backend.fetch(topic, partition, from, 1000, wait).await?;
            Ok(Fetched {
                high_watermark: backend.high_watermark(topic, partition).await?,
                log_start: start,
                records: records
                    .into_iter()
                    .map(|r| (r.offset, r.value.to_vec()))
                    .collect(),
            })
        }
    }
}

pub(crate) async fn partitions_of(target: &Target, topic: &str) -> anyhow::Result<u32> {
    let n = match target {
        Target::Remote { client, base } => client
            .get(format!("{base}/api/v1/topics"))
            .send()
            .await?
            .json::<Vec<serde_json::Value>>()
            .await?
            .iter()
            .find(|t| t["name"] == topic)
            .and_then(|t| t["partitions"].as_u64())
            .map(|n| n as u32),
        Target::Local { backend, .. } => backend
            .list_topics()
            .await?
            .into_iter()
            .find(|t| t.name == topic)
            .map(|t| t.partitions),
    };
    n.with_context(|| format!("topic {topic:?} does not exist"))
}

async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let target = connect(&args.target).await?;
    let partitions: Vec<u32> = match args.partition {
        Some(p) => vec![p],
        None => (0..partitions_of(&target, &args.topic).await?).collect(),
    };
    let mut next: Vec<Option<u64>> = vec![args.from_beginning.then_some(0); partitions.len()];
    let mut done = vec![false; partitions.len()];
    let stdout = std::io::stdout();
    loop {
        let mut any = false;
        for (i, &p) in partitions.iter().enumerate() {
            if done[i] {
                continue;
            }
            let wait = if args.disable_continuous {
                Duration::ZERO
            } else {
                Duration::from_millis(200)
            };
            let fetched = fetch(&target, &args.topic, p, next[i], wait).await?;
            let mut out = stdout.lock();
            for (offset, value) in &fetched.records {
                writeln!(out, "{}", render(&args.topic, value, args.format))?;
                next[i] = Some(offset + 1);
                any = true;
            }
            out.flush()?;
            let position = next[i]
                .unwrap_or(fetched.high_watermark)
                .max(fetched.log_start);
            if next[i].is_none() {
                next[i] = Some(position);
            }
            if args.disable_continuous
                && fetched.records.is_empty()
                && position >= fetched.high_watermark
            {
                done[i] = true;
            }
        }
        if done.iter().all(|d| *d) {
            return Ok(());
        }
        if !any && args.disable_continuous {
            continue;
        }
    }
}

/// One record as a line of output.
fn render(topic: &str, value: &[u8], format: Format) -> String {
    if format == Format::Raw {
        return String::from_utf8_lossy(value).into_owned();
    }
    let Ok(framed) = framing::parse(value, IdWidth::ContentId4) else {
        return serde_json::json!({ "undecodable": String::from_utf8_lossy(value) }).to_string();
    };
    let schema_text = match topic {
        "readings" => schema::SENSOR_READING,
        "scored" => schema::SCORED_READING,
        "anomalies" => schema::ANOMALY_EVENT,
        "dead-letter" => schema::DEAD_LETTER,
        _ => return String::from_utf8_lossy(value).into_owned(),
    };
    if format == Format::AvroJson {
        return apache_avro::Schema::parse_str(schema_text)
            .ok()
            .and_then(|s| apache_avro::from_avro_datum(&s, &mut &framed.datum[..], None).ok())
            .and_then(|v| serde_json::Value::try_from(v).ok())
            .map(|v| v.to_string())
            .unwrap_or_else(|| "{\"undecodable\": true}".into());
    }
    let json = match topic {
        "readings" => SensorReading::from_avro(framed.datum)
            .ok()
            .and_then(|r| serde_json::to_string(&r).ok()),
        "scored" => ScoredReading::from_avro(framed.datum)
            .ok()
            .and_then(|r| serde_json::to_string(&r).ok()),
        "anomalies" => AnomalyEvent::from_avro(framed.datum)
            .ok()
            .and_then(|r| serde_json::to_string(&r).ok()),
        _ => DeadLetter::from_avro(framed.datum)
            .ok()
            .and_then(|r| serde_json::to_string(&r).ok()),
    };
    json.unwrap_or_else(|| "{\"undecodable\": true}".into())
}
