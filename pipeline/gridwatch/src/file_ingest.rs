//! `gridwatch ingest FILE…`: replay and backfill files into a running
//! instance over its ingest API.
//!
//! Files are read with gridwatch-files (CSV, NDJSON, Avro container,
//! Parquet, the lake's own output included), streamed in batches, and each
//! batch is POSTed as NDJSON with the readings' own timestamps, so event
//! time is preserved and the detector scores history as it happened. A
//! batch is sent again while the instance answers 503 or 429 (backpressure,
//! rate limit), honouring `Retry-After`; ingest's dedup makes re-sending a
//! whole file harmless. Records the reader cannot turn into a reading are
//! reported with their position and reason, and forwarded as their own line
//! so they land in the dead-letter queue too: never a silent drop.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use gridwatch_files::{Batch, Format, ReadOptions};
use tokio::sync::mpsc;

use crate::cli::ConfigArgs;

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Files to send: CSV, NDJSON, Avro container or Parquet (by magic bytes, then extension).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// URL of the running instance (default: the configured `http.listen`).
    #[arg(long, env = "GRIDWATCH_URL")]
    pub url: Option<String>,
    /// Ingest token (default: `http.ingest_token` / `http.ingest_token_file` of the config).
    #[arg(long, env = "GRIDWATCH_INGEST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Readings per request.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch: u32,
    /// Read every file as this format instead of detecting it.
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// No progress bar; one summary line per file.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// A file format, for `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    Csv,
    Ndjson,
    Avro,
    Parquet,
}

impl From<FileFormat> for Format {
    fn from(f: FileFormat) -> Self {
        match f {
            FileFormat::Csv => Format::Csv,
            FileFormat::Ndjson => Format::Ndjson,
            FileFormat::Avro => Format::Avro,
            FileFormat::Parquet => Format::Parquet,
        }
    }
}

/// Totals over one file, as the instance answered.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    readings: u64,
    unreadable: u64,
    accepted: u64,
    rejected: u64,
    duplicates: u64,
}

/// How many unreadable records are described one by one before only counting.
const DESCRIBE_ERRORS: u64 = 10;

pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.http.listen));
    let endpoint = format!("{}/api/v1/readings", base.trim_end_matches('/'));
    let token = match &args.token {
        Some(t) => Some(t.clone()),
        None => crate::config::resolve_secret(
            "http.ingest",
            &config.http.ingest_token,
            &config.http.ingest_token_file,
        )?
        .map(|s| s.expose().to_owned()),
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()?;
    let options = ReadOptions {
        batch_size: args.batch as usize,
        format: args.format.map(Into::into),
        ..Default::default()
    };
    let bar = !args.quiet && std::io::stderr().is_terminal();
    let mut all = Totals::default();
    let started = Instant::now();
    for path in &args.files {
        let t = send_file(path, &options, &client, &endpoint, token.as_deref(), bar).await?;
        all.readings += t.readings;
        all.unreadable += t.unreadable;
        all.accepted += t.accepted;
        all.rejected += t.rejected;
        all.duplicates += t.duplicates;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "ingested {} file(s) into {base}: {} readings read, {} accepted, {} duplicates, {} rejected (dead-lettered), {} unreadable records; {:.0} readings/s",
        args.files.len(),
        all.readings,
        all.accepted,
        all.duplicates,
        all.rejected,
        all.unreadable,
        all.readings as f64 / secs
    );
    Ok(())
}

async fn send_file(
    path: &std::path::Path,
    options: &ReadOptions,
    client: &reqwest::Client,
    endpoint: &str,
    token: Option<&str>,
    bar: bool,
) -> anyhow::Result<Totals> {
    let reader = gridwatch_files::open(path, options)
        .with_context(|| format!("opening {}", path.display()))?;
    let progress = reader.progress();
    let format = reader.format();
    // The reader blocks on file I/O: it runs on its own thread, two
    // batches ahead of the sender at most.
    let (tx, mut rx) = mpsc::channel::<Result<Batch, gridwatch_files::FileError>>(2);
    let reading = tokio::task::spawn_blocking(move || {
        for batch in reader {
            if tx.blocking_send(batch).is_err() {
                return;
            }
        }
    });
    let mut totals = Totals::default();
    let started = Instant::now();
    let mut drawn = Instant::now() - Duration::from_secs(1);
    let name = path.display().to_string();
    while let Some(batch) = rx.recv().await {
        let batch = batch.with_context(|| format!("reading {name}"))?;
        let mut body = String::with_capacity(batch.readings.len() * 120);
        for r in &batch.readings {
            body.push_str(&serde_json::to_string(r)?);
            body.push('\n');
        }
        for e in &batch.errors {
            if totals.unreadable < DESCRIBE_ERRORS {
                eprintln!("{name}: {e}");
            }
            totals.unreadable += 1;
            // Forwarded as its own line, so the instance dead-letters it
            // with the bytes; a line break inside would split it.
            let line: String = String::from_utf8_lossy(&e.original)
                .chars()
                .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
                .collect();
            body.push_str(if line.trim().is_empty() {
                "\"\""
            } else {
                &line
            });
            body.push('\n');
        }
        totals.readings += batch.readings.len() as u64;
        let answer = post(client, endpoint, token, body).await?;
        totals.accepted += answer["accepted"].as_u64().unwrap_or(0);
        totals.rejected += answer["rejected"].as_u64().unwrap_or(0);
        totals.duplicates += answer["duplicates"].as_u64().unwrap_or(0);
        if bar && drawn.elapsed() >= Duration::from_millis(200) {
            draw(&name, &progress, totals.readings, started.elapsed());
            drawn = Instant::now();
        }
    }
    reading.await.context("the file reader stopped")?;
    if totals.unreadable > DESCRIBE_ERRORS {
        eprintln!(
            "{name}: … {} more unreadable records",
            totals.unreadable - DESCRIBE_ERRORS
        );
    }
    if bar {
        draw(&name, &progress, totals.readings, started.elapsed());
        eprintln!();
    }
    println!(
        "{name} ({format}): {} readings, {} accepted, {} duplicates, {} rejected, {} unreadable",
        totals.readings, totals.accepted, totals.duplicates, totals.rejected, totals.unreadable
    );
    Ok(totals)
}

/// POSTs one NDJSON batch, retrying while the instance says to (503, 429).
async fn post(
    client: &reqwest::Client,
    endpoint: &str,
    token: Option<&str>,
    body: String,
) -> anyhow::Result<serde_json::Value> {
    let mut waited = Duration::ZERO;
    loop {
        let mut request = client
            .post(endpoint)
            .header("content-type", "application/x-ndjson")
            .body(body.clone());
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("POST {endpoint}"))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response.json().await?);
        }
        if status.as_u16() == 503 || status.as_u16() == 429 {
            let retry = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(Duration::from_millis(500), Duration::from_secs);
            // Backpressure is the pipeline catching up: wait as long as it
            // takes, but say so now and then.
            waited += retry;
            if waited.as_secs() % 30 < retry.as_secs().max(1) && waited.as_secs() >= 30 {
                eprintln!("the instance is behind ({status}); still waiting after {waited:?}");
            }
            tokio::time::sleep(retry).await;
            continue;
        }
        let text = response.text().await.unwrap_or_default();
        anyhow::bail!("POST {endpoint} answered {status}: {text}");
    }
}

/// One progress line on stderr, redrawn in place.
fn draw(name: &str, p: &gridwatch_files::Progress, readings: u64, elapsed: Duration) {
    const WIDTH: usize = 30;
    let fraction = p.fraction().clamp(0.0, 1.0);
    let filled = (fraction * WIDTH as f64).round() as usize;
    let rate = readings as f64 / elapsed.as_secs_f64().max(1e-9);
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r{name} [{}{}] {:>3.0}% {:.1}/{:.1} MB {readings} readings {rate:.0}/s ",
        "=".repeat(filled),
        " ".repeat(WIDTH - filled),
        fraction * 100.0,
        p.bytes_read() as f64 / 1e6,
        p.total_bytes() as f64 / 1e6,
    );
    let _ = err.flush();
}
