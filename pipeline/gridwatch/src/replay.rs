//! `gridwatch replay --from-lake DATE..DATE --detector FILE.wasm`: re-scores
//! history from the Parquet lake with another detector, into a separate
//! output, never into the live `anomalies` topic.
//!
//! The lake is read where `sinks.lake` writes it (a local directory or S3),
//! committed files only. The readings of each hour are sorted by event time
//! (then partition and offset) before they go through validate → the given
//! detector, so every meter's readings arrive in event-time order, as a
//! live run without late data would have seen them; readings that were late
//! live are scored in place here. An hour's files are held in memory at
//! once, never more.
//!
//! Records are framed as the `readings` topic holds them. The chain sees
//! them at consecutive replay positions (a batch's offsets must not go
//! backwards, and readings of several partitions interleave), and each
//! anomaly's id is then derived as the contract defines it
//! ([`gridwatch_contracts::id::anomaly_id`]) from the reading's original
//! `readings` offset, so the ids equal the live ones for the same detector
//! and params: a replay written to InfluxDB or compared with `anomalies`
//! lines up by id.
//!
//! Output: Parquet under `--out` (the lake's `anomalies/` layout and
//! columns, so the same queries work), or `--topic NAME` on the pipeline
//! (through a running instance's admin API, else the embedded log of the
//! data directory). The pipeline's own topics are refused.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use clap::Args;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::{AnomalyEvent, ChainRecord};
use gridwatch_lake::encoder::{self, AnomalyRow, Provenance};
use gridwatch_lake::layout::{self, Kind, TimePartition};
use gridwatch_lake::reader::{LakeReader, LakeReading, parse_date};
use gridwatch_runtime::backend::{InRecord, OutRecord, TopicBackend};
use gridwatch_runtime::chain::{Chain, WasmChain};
use gridwatch_runtime::processor::now_ms;
use gridwatch_runtime::topics::Topics;
use serde::Serialize;

use crate::cli::{ConfigArgs, TopicTarget};
use crate::config::AppConfig;
use crate::connector::AppendRequest;
use crate::modules;
use crate::score::OFFLINE_IDS;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// UTC dates of the lake to re-score, inclusive: FROM..TO (YYYY-MM-DD), or one date.
    #[arg(long = "from-lake", value_name = "DATE..DATE")]
    pub from_lake: String,
    /// The detect SmartModule (.wasm) to score with; the config's detector params apply.
    #[arg(long, value_name = "FILE.wasm")]
    pub detector: PathBuf,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Directory for the anomalies as Parquet (default: ./replay-<from>-<to>-<detector stem>).
    #[arg(long, conflicts_with = "topic")]
    pub out: Option<PathBuf>,
    /// Write the anomalies to this topic of the pipeline instead (created if
    /// missing; never `anomalies` or another of the pipeline's own topics).
    #[arg(long)]
    pub topic: Option<String>,
    /// Partitions of the --topic if it has to be created.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub partitions: u32,
    /// URL of the running instance for --topic (default: the configured
    /// `http.listen`; when none answers there, the data directory is opened).
    #[arg(long, env = "GRIDWATCH_URL")]
    pub url: Option<String>,
    /// Admin token for --topic (default: `admin.token` / `admin.token_file`).
    #[arg(long, env = "GRIDWATCH_ADMIN__TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Totals {
    files: u64,
    uncommitted_files: u64,
    readings: u64,
    scored: u64,
    anomalies: u64,
    dead_letters: u64,
}

/// Most readings per call into the chain.
const CHUNK: usize = 8192;

pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let config = args.config.load()?;
    let (from, to) = parse_range(&args.from_lake)?;
    let from_text = TimePartition {
        day: from,
        hour: None,
    }
    .date();
    let to_text = TimePartition {
        day: to,
        hour: None,
    }
    .date();

    // Everything that can be refused is refused before anything is written.
    let out_dir = match &args.topic {
        Some(topic) => {
            check_topic(topic)?;
            None
        }
        None => {
            let stem = args
                .detector
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "detector".into());
            let dir = args
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("replay-{from_text}-{to_text}-{stem}")));
            check_out_dir(&dir)?;
            Some(dir)
        }
    };
    let mut chain = build_chain(&config, &args.detector)?;
    let lake = open_lake(&config)?;
    let mut output = match out_dir {
        Some(dir) => Output::dir(dir)?,
        None => Output::topic(&config, &args, args.topic.as_deref().unwrap_or_default()).await?,
    };
    eprintln!(
        "replaying {from_text}..{to_text} from {} with {} into {}",
        lake.location(),
        args.detector.display(),
        output.describe()
    );

    let mut totals = Totals::default();
    let mut position = 0u64;
    let bar = std::io::stderr().is_terminal();
    let mut last_line = Instant::now();
    for day in from..=to {
        let date = TimePartition { day, hour: None }.date();
        let listed = lake
            .reading_files(day)
            .await
            .with_context(|| format!("listing the lake's readings of {date}"))?;
        totals.uncommitted_files += listed.uncommitted as u64;
        if listed.files.is_empty() {
            eprintln!("{date}: no committed readings in the lake");
            continue;
        }
        let day_files = listed.files.len();
        let mut by_hour: BTreeMap<u8, Vec<_>> = BTreeMap::new();
        for f in listed.files {
            by_hour.entry(f.hour).or_default().push(f);
        }
        let mut done_files = 0usize;
        for (hour, files) in by_hour {
            let mut rows: Vec<LakeReading> = Vec::new();
            for f in &files {
                rows.extend(lake.read(f).await?);
            }
            done_files += files.len();
            totals.files += files.len() as u64;
            // Event-time order; ties in a stable, reproducible order.
            rows.sort_by(|a, b| {
                (a.reading.timestamp, a.partition, a.reading_offset).cmp(&(
                    b.reading.timestamp,
                    b.partition,
                    b.reading_offset,
                ))
            });
            for chunk in rows.chunks(CHUNK) {
                let found = score(&mut chain, chunk, &mut position, &mut totals)
                    .with_context(|| format!("scoring {date} hour {hour:02}"))?;
                output.write(found).await?;
            }
            if bar || last_line.elapsed() >= Duration::from_secs(5) {
                let line = format!(
                    "{date} hour {hour:02}: {done_files}/{day_files} files; {} readings, {} anomalies, {} dead letters so far ({:.0} readings/s)",
                    totals.readings,
                    totals.anomalies,
                    totals.dead_letters,
                    totals.readings as f64 / started.elapsed().as_secs_f64().max(1e-9)
                );
                if bar {
                    let mut err = std::io::stderr().lock();
                    let _ = write!(err, "\r{line}\x1b[K");
                    let _ = err.flush();
                } else {
                    eprintln!("{line}");
                }
                last_line = Instant::now();
            }
        }
        if bar {
            eprintln!();
        }
    }
    let written = output
        .finish(&totals, &from_text, &to_text, &args.detector)
        .await?;
    let secs = started.elapsed().as_secs_f64();
    if totals.uncommitted_files > 0 {
        eprintln!(
            "skipped {} lake file(s) of flushes that have not committed",
            totals.uncommitted_files
        );
    }
    eprintln!(
        "replay {from_text}..{to_text}: {} readings from {} file(s), {} scored, {} anomalies, {} dead letters, in {secs:.1}s ({:.0} readings/s); {written}",
        totals.readings,
        totals.files,
        totals.scored,
        totals.anomalies,
        totals.dead_letters,
        totals.readings as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// `FROM..TO` or one date, as days since 1970-01-01.
fn parse_range(text: &str) -> anyhow::Result<(i64, i64)> {
    let refuse = |why: &str| {
        anyhow::anyhow!(
            "--from-lake {text:?} is not allowed: {why}; give DATE..DATE in UTC as YYYY-MM-DD, inclusive, the first not after the second (e.g. 2026-01-01..2026-01-07), or one date"
        )
    };
    let (a, b) = text.split_once("..").unwrap_or((text, text));
    let from = parse_date(a.trim()).ok_or_else(|| refuse(&format!("{a:?} is not a date")))?;
    let to = parse_date(b.trim()).ok_or_else(|| refuse(&format!("{b:?} is not a date")))?;
    if from > to {
        return Err(refuse("the range ends before it starts"));
    }
    Ok((from, to))
}

/// validate (the configured one) → the given detector, with the config's params.
fn build_chain(config: &AppConfig, detector: &Path) -> anyhow::Result<WasmChain> {
    let detect =
        std::fs::read(detector).with_context(|| format!("reading {}", detector.display()))?;
    if !detect.starts_with(b"\0asm") {
        anyhow::bail!(
            "{} is not a valid SmartModule: not a WebAssembly module (no \\0asm header); give the detect module's .wasm, e.g. target/wasm32-wasip1/release-lto/gridwatch_detect.wasm",
            detector.display()
        );
    }
    let (_, validate) = modules::load(&config.runtime.modules_dir, modules::VALIDATE)?;
    let spec = crate::app::chain_spec(config, OFFLINE_IDS, validate, detect);
    let engine = gridwatch_wasm_host::Engine::new().context("starting the WASM engine")?;
    let mut chain = WasmChain::new(&engine, &spec).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a valid SmartModule for the detect stage: {e:#}",
            detector.display()
        )
    })?;
    probe(&mut chain)
        .map_err(|why| anyhow::anyhow!("{} is not a detect module: {why}", detector.display()))?;
    Ok(chain)
}

/// Feeds one plausible reading through the chain, which a detector must
/// turn into a ScoredReading, then puts the chain back as it was built.
/// This catches a module that loads but is not a detector (validate given
/// twice, say) before it turns a whole lake into dead letters.
fn probe(chain: &mut WasmChain) -> Result<(), String> {
    let now = now_ms();
    let reading = gridwatch_contracts::SensorReading {
        meter_id: "gridwatch-replay-probe".into(),
        timestamp: now - 3_600_000,
        voltage: 230.0,
        current: 5.0,
        temperature: 20.0,
        status: gridwatch_contracts::MeterStatus::Ok,
    };
    let mut value = Vec::with_capacity(96);
    framing::write_header(&mut value, OFFLINE_IDS.reading, IdWidth::ContentId4);
    reading.encode_into(&mut value).map_err(|e| e.to_string())?;
    let record = InRecord {
        offset: 0,
        timestamp_ms: reading.timestamp,
        key: Some(Bytes::from_static(b"gridwatch-replay-probe")),
        value: Bytes::from(value),
    };
    let out = chain
        .process(std::slice::from_ref(&record), now)
        .map_err(|e| format!("it failed on a valid reading: {e}"))?;
    let verdict = match out.first().map(|b| ChainRecord::from_avro(b)) {
        Some(Ok(ChainRecord::Scored(_))) => Ok(()),
        Some(Ok(ChainRecord::DeadLetter(d))) => Err(format!(
            "given a valid reading it returned a dead letter (stage {}, {}: {})",
            d.stage, d.reason, d.message
        )),
        Some(Ok(ChainRecord::Reading(_))) => {
            Err("given a valid reading it returned the reading unscored".to_owned())
        }
        Some(Err(e)) => Err(format!("its output is not a ChainRecord: {e}")),
        None => Err("given a valid reading it returned nothing".to_owned()),
    };
    chain
        .reset()
        .map_err(|e| format!("the chain cannot be reset after the probe: {e}"))?;
    verdict
}

fn open_lake(config: &AppConfig) -> anyhow::Result<LakeReader> {
    let lake = config.sinks.lake.clone().ok_or_else(|| {
        anyhow::anyhow!("sinks.lake is off (null): replay reads the lake the pipeline writes; set sinks.lake.url to where it is")
    })?;
    let lake = lake.with_data_dir(&config.data_dir);
    if let Ok(gridwatch_lake::config::Destination::Local(dir)) = lake.destination("sinks.lake")
        && !dir.is_dir()
    {
        anyhow::bail!(
            "no lake at {} (sinks.lake.url); point --config or GRIDWATCH_SINKS__LAKE__URL at the lake",
            dir.display()
        );
    }
    LakeReader::open(&lake, "sinks.lake").context("opening the lake")
}

/// Scores readings in the order given; returns the anomalies with the
/// partition their reading came from.
fn score(
    chain: &mut WasmChain,
    rows: &[LakeReading],
    position: &mut u64,
    totals: &mut Totals,
) -> anyhow::Result<Vec<(u32, AnomalyEvent)>> {
    let mut records = Vec::with_capacity(rows.len());
    for r in rows {
        let mut value = Vec::with_capacity(96);
        framing::write_header(&mut value, OFFLINE_IDS.reading, IdWidth::ContentId4);
        r.reading.encode_into(&mut value)?;
        records.push(InRecord {
            offset: *position,
            timestamp_ms: r.reading.timestamp,
            key: Some(Bytes::from(r.reading.meter_id.clone().into_bytes())),
            value: Bytes::from(value),
        });
        *position += 1;
    }
    totals.readings += rows.len() as u64;
    let outputs = chain
        .process(&records, now_ms())
        .context("the SmartModule chain failed")?;
    // One output per input, in order (validate and detect map 1:1).
    let mut found = Vec::new();
    for (i, bytes) in outputs.iter().enumerate() {
        let (partition, offset) = rows
            .get(i)
            .map_or((0, 0), |r| (r.partition, r.reading_offset));
        match ChainRecord::from_avro(bytes).context("the chain's output")? {
            ChainRecord::Scored(s) => {
                totals.scored += 1;
                totals.anomalies += s.anomalies.len() as u64;
                found.extend(s.anomalies.into_iter().map(|mut a| {
                    a.anomaly_id = gridwatch_contracts::id::anomaly_id(
                        &a.original_event.meter_id,
                        a.original_event.timestamp,
                        offset,
                        a.anomaly_type,
                    );
                    (partition, a)
                }));
            }
            ChainRecord::DeadLetter(_) => totals.dead_letters += 1,
            ChainRecord::Reading(_) => anyhow::bail!(
                "the detector returned an unscored reading: it is not a detect module (it must turn ChainRecord readings into ScoredReadings)"
            ),
        }
    }
    Ok(found)
}

/// Refuses the pipeline's own topics (above all the live `anomalies`) and
/// names a topic could not have.
fn check_topic(name: &str) -> anyhow::Result<()> {
    let topics = Topics::default();
    if name == topics.anomalies {
        anyhow::bail!(
            "--topic {name:?} is the live anomalies topic; a replay never writes there. Give a new topic, e.g. --topic anomalies-replay"
        );
    }
    if [&topics.readings, &topics.scored, &topics.dead_letter].contains(&&name.to_owned()) {
        anyhow::bail!(
            "--topic {name:?} is one of the pipeline's own topics (readings, scored, anomalies, dead-letter); give a new topic, e.g. --topic anomalies-replay"
        );
    }
    if name.is_empty()
        || name.len() > 63
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        anyhow::bail!("--topic {name:?} is not allowed: 1 to 63 ASCII letters, digits and '-'");
    }
    Ok(())
}

/// A replay writes into a new or empty directory only.
fn check_out_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        if !empty {
            anyhow::bail!(
                "--out {} already exists and is not empty; a replay never overwrites one, so give another --out or remove it",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Where the anomalies go.
enum Output {
    Dir {
        dir: PathBuf,
        /// Anomalies not yet written, by UTC day of their reading.
        pending: BTreeMap<i64, Vec<AnomalyRow>>,
        buffered: usize,
        next_offset: u64,
        files: usize,
    },
    Topic {
        name: String,
        sink: TopicSink,
        schema_id: u64,
        partitions: u32,
        written: u64,
    },
}

/// Rows buffered before the directory output writes files.
const DIR_FLUSH_ROWS: usize = 100_000;

impl Output {
    fn dir(dir: PathBuf) -> anyhow::Result<Self> {
        check_out_dir(&dir)?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self::Dir {
            dir,
            pending: BTreeMap::new(),
            buffered: 0,
            next_offset: 0,
            files: 0,
        })
    }

    async fn topic(config: &AppConfig, args: &ReplayArgs, name: &str) -> anyhow::Result<Self> {
        check_topic(name)?;
        let target = TopicTarget {
            config: args.config.clone(),
            url: args.url.clone(),
            token: args.token.clone(),
        };
        let (sink, registry_base) = match crate::topic::connect(&target).await? {
            crate::topic::Target::Remote { client, base } => {
                let root = url::Url::parse(&format!("{base}/"))?;
                (TopicSink::Remote { client, base }, Some(root))
            }
            crate::topic::Target::Local { backend, _lock } => {
                (TopicSink::Local { backend, _lock }, None)
            }
        };
        let partitions = sink.ensure(name, args.partitions).await?;
        let schema_id = anomaly_schema_id(config, registry_base).await?;
        Ok(Self::Topic {
            name: name.to_owned(),
            sink,
            schema_id,
            partitions,
            written: 0,
        })
    }

    fn describe(&self) -> String {
        match self {
            Self::Dir { dir, .. } => dir.display().to_string(),
            Self::Topic { name, sink, .. } => format!("topic {name} ({})", sink.describe()),
        }
    }

    async fn write(&mut self, found: Vec<(u32, AnomalyEvent)>) -> anyhow::Result<()> {
        if found.is_empty() {
            return Ok(());
        }
        match self {
            Self::Dir {
                pending,
                buffered,
                next_offset,
                ..
            } => {
                let now = now_ms();
                for (_, event) in found {
                    let day =
                        TimePartition::of(Kind::Anomalies, event.original_event.timestamp).day;
                    pending.entry(day).or_default().push(AnomalyRow {
                        offset: *next_offset,
                        appended_at: now,
                        event,
                    });
                    *next_offset += 1;
                    *buffered += 1;
                }
                if *buffered >= DIR_FLUSH_ROWS {
                    self.flush_dir()?;
                }
                Ok(())
            }
            Self::Topic {
                name,
                sink,
                schema_id,
                partitions,
                written,
            } => {
                let mut by_partition: BTreeMap<u32, Vec<OutRecord>> = BTreeMap::new();
                for (partition, event) in found {
                    let mut value = Vec::with_capacity(256);
                    framing::write_header(&mut value, *schema_id, IdWidth::ContentId4);
                    event.encode_into(&mut value)?;
                    by_partition
                        .entry(partition % *partitions)
                        .or_default()
                        .push(OutRecord {
                            key: Some(Bytes::from(
                                event.original_event.meter_id.clone().into_bytes(),
                            )),
                            value: Bytes::from(value),
                            timestamp_ms: event.original_event.timestamp,
                        });
                }
                for (partition, records) in by_partition {
                    *written += records.len() as u64;
                    sink.append(name, partition, records).await?;
                }
                Ok(())
            }
        }
    }

    /// Writes the buffered anomalies of each day as one file.
    fn flush_dir(&mut self) -> anyhow::Result<()> {
        let Self::Dir {
            dir,
            pending,
            buffered,
            files,
            ..
        } = self
        else {
            return Ok(());
        };
        let provenance = Provenance {
            topic: "replay",
            partition: 0,
        };
        for (day, rows) in std::mem::take(pending) {
            let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
                continue;
            };
            let (first, last) = (first.offset, last.offset);
            let refs: Vec<&AnomalyRow> = rows.iter().collect();
            let batch = encoder::anomalies_batch(provenance, &refs)?;
            let properties = encoder::writer_properties(
                gridwatch_lake::Compression::Zstd,
                provenance,
                first,
                last,
            );
            let bytes = encoder::to_parquet(&batch, properties)?;
            let rel = layout::data_file(
                Kind::Anomalies,
                TimePartition { day, hour: None },
                0,
                first,
                last,
            );
            let path = dir.join(&rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let staged = path.with_extension("parquet.tmp");
            std::fs::write(&staged, &bytes)
                .with_context(|| format!("writing {}", staged.display()))?;
            std::fs::rename(&staged, &path)
                .with_context(|| format!("writing {}", path.display()))?;
            *files += 1;
        }
        *buffered = 0;
        Ok(())
    }

    /// Writes what is left and a description of the run; returns where it went.
    async fn finish(
        &mut self,
        totals: &Totals,
        from: &str,
        to: &str,
        detector: &Path,
    ) -> anyhow::Result<String> {
        self.flush_dir()?;
        match self {
            Self::Dir { dir, files, .. } => {
                let manifest = serde_json::json!({
                    "from": from,
                    "to": to,
                    "detector": detector.display().to_string(),
                    "totals": totals,
                    "finished_at_ms": now_ms(),
                });
                let path = dir.join("_replay.json");
                std::fs::write(&path, serde_json::to_vec_pretty(&manifest)?)
                    .with_context(|| format!("writing {}", path.display()))?;
                Ok(format!(
                    "anomalies in {} ({files} Parquet file(s) under anomalies/date=…/)",
                    dir.display()
                ))
            }
            Self::Topic {
                name,
                written,
                sink,
                ..
            } => Ok(format!(
                "{written} anomalies appended to topic {name} ({})",
                sink.describe()
            )),
        }
    }
}

/// A topic of the pipeline, through a running instance or the data directory.
enum TopicSink {
    Remote {
        client: reqwest::Client,
        base: String,
    },
    Local {
        backend: gridwatch_runtime::backend::embedded::EmbeddedBackend,
        _lock: std::fs::File,
    },
}

impl TopicSink {
    fn describe(&self) -> String {
        match self {
            Self::Remote { base, .. } => format!("through {base}"),
            Self::Local { .. } => "in the data directory".into(),
        }
    }

    /// Creates the topic if missing; returns its partitions.
    async fn ensure(&self, name: &str, partitions: u32) -> anyhow::Result<u32> {
        match self {
            Self::Remote { client, base } => {
                let resp = client
                    .post(format!("{base}/api/v1/topics"))
                    .json(&serde_json::json!({"name": name, "partitions": partitions}))
                    .send()
                    .await
                    .with_context(|| format!("creating topic {name} at {base}"))?;
                if !resp.status().is_success() {
                    anyhow::bail!(
                        "creating topic {name} at {base}: {} {}",
                        resp.status(),
                        resp.text().await.unwrap_or_default()
                    );
                }
                let info: serde_json::Value = resp.json().await?;
                Ok(info["partitions"]
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(partitions)
                    .max(1))
            }
            Self::Local { backend, .. } => {
                let info = backend.ensure_topic(name, partitions).await?;
                Ok(info.partitions.max(1))
            }
        }
    }

    async fn append(
        &self,
        name: &str,
        partition: u32,
        records: Vec<OutRecord>,
    ) -> anyhow::Result<()> {
        match self {
            Self::Remote { client, base } => {
                let body = AppendRequest::encode(&records);
                let url =
                    format!("{base}/api/v1/replay/topics/{name}/partitions/{partition}/records");
                let resp = client
                    .post(&url)
                    .json(&body)
                    .send()
                    .await
                    .with_context(|| format!("POST {url}"))?;
                if !resp.status().is_success() {
                    anyhow::bail!(
                        "POST {url}: {} {}",
                        resp.status(),
                        resp.text().await.unwrap_or_default()
                    );
                }
                Ok(())
            }
            Self::Local { backend, .. } => {
                backend.append(name, partition, records).await?;
                Ok(())
            }
        }
    }
}

/// The contentId of AnomalyEvent in the registry consumers of the topic use:
/// `registry.url`, else the embedded registry (of the running instance at
/// `instance`, or opened from the data directory).
async fn anomaly_schema_id(config: &AppConfig, instance: Option<url::Url>) -> anyhow::Result<u64> {
    let artifact = "io.gridwatch.AnomalyEvent";
    let mut server = None;
    let embedded = match (&config.registry.url, instance) {
        (Some(_), _) => None,
        (None, Some(url)) => Some(url),
        (None, None) => {
            let registry =
                gridwatch_registry::EmbeddedRegistry::open(config.data_dir.join("registry"))
                    .await
                    .context("opening the embedded schema registry")?;
            let app = axum::Router::new().nest(
                gridwatch_registry::V3_BASE_PATH,
                gridwatch_registry::router(registry),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            server = Some(tokio::spawn(
                async move { axum::serve(listener, app).await },
            ));
            Some(url::Url::parse(&format!("http://{addr}/"))?)
        }
    };
    let registry = gridwatch_registry::SchemaRegistry::connect(&config.registry, embedded)?;
    let ids = registry
        .start_up(&config.registry)
        .await
        .context("registering Gridwatch's schemas")?;
    if let Some(s) = server {
        s.abort();
    }
    ids.content_id(artifact)
        .with_context(|| format!("the registry returned no id for {artifact}"))
}

/// `POST /api/v1/replay/topics/{topic}/partitions/{p}/records` on `gridwatch
/// run`: appends a replay's anomalies to a topic of the running pipeline.
/// The pipeline's own topics are refused (their processors own them), so a
/// replay can never reach the live `anomalies`. Behind the admin token.
pub async fn append_output(
    State(state): State<std::sync::Arc<crate::http::AppState>>,
    UrlPath((topic, partition)): UrlPath<(String, u32)>,
    Json(req): Json<AppendRequest>,
) -> Response {
    let topics = Topics::default();
    let refused = [
        &topics.readings,
        &topics.scored,
        &topics.anomalies,
        &topics.dead_letter,
    ];
    if refused.contains(&&topic) {
        return (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({"error": format!("{topic:?} is one of the pipeline's own topics; replays write to a separate topic")})),
        )
            .into_response();
    }
    let records = match req.decode() {
        Ok(records) => records,
        Err(message) => return crate::connector::bad_request(message),
    };
    match state.backend.append(&topic, partition, records).await {
        Ok(range) => {
            Json(serde_json::json!({"first": range.start, "end": range.end})).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_inclusive_and_validated() {
        assert_eq!(
            parse_range("2026-01-01..2026-01-02").unwrap(),
            (20_454, 20_455)
        );
        assert_eq!(parse_range("2026-01-01").unwrap(), (20_454, 20_454));
        let e = parse_range("2026-01-02..2026-01-01")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ends before it starts") && e.contains("YYYY-MM-DD"),
            "{e}"
        );
        let e = parse_range("2026-02-30..2026-03-01")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"2026-02-30\" is not a date"), "{e}");
        assert!(parse_range("yesterday").is_err());
    }
}
