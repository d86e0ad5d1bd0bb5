//! `gridwatch score FILE… [--config FILE]`: the validate → detect chain
//! over files, with no server, printing the anomalies as JSON lines.
//!
//! The same SmartModules as `gridwatch run` (or `--detector FILE.wasm`),
//! initialised with the same params from the same configuration, fed the
//! same bytes the `readings` topic would hold (SensorReading, Apicurio
//! framing), so what it prints is what the pipeline would detect. Records go
//! through in file order on one chain; the detector keeps its windows per
//! meter, so that equals the per-partition order of a live run. Source
//! offsets (and so `anomaly_id`s) are positions in the concatenated input.
//!
//! stdout carries only anomalies, one `AnomalyEvent` JSON object per line,
//! for `jq` and for checking against other implementations; the summary,
//! unreadable records and (with `--dead-letters`) validate's rejections go
//! to stderr.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::{ChainRecord, SensorReading};
use gridwatch_files::ReadOptions;
use gridwatch_runtime::backend::InRecord;
use gridwatch_runtime::chain::{Chain, WasmChain};
use gridwatch_runtime::processor::now_ms;
use gridwatch_runtime::topics::SchemaIds;

use crate::cli::ConfigArgs;
use crate::file_ingest::FileFormat;
use crate::modules;

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Files to score: CSV, NDJSON, Avro container or Parquet, in this order.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// A detect module to use instead of the configured one.
    #[arg(long)]
    pub detector: Option<PathBuf>,
    /// Read every file as this format instead of detecting it.
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// Also print validate's rejections (dead letters) as JSON lines on stderr.
    #[arg(long)]
    pub dead_letters: bool,
}

/// The registry ids offline scoring frames with; any fixed values do, as
/// validate is given the schema under the same id.
pub(crate) const OFFLINE_IDS: SchemaIds = SchemaIds {
    reading: 1,
    scored: 4,
    anomaly: 2,
    dead_letter: 3,
};

/// What a scoring run saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct ScoreTotals {
    pub readings: u64,
    pub unreadable: u64,
    pub scored: u64,
    pub anomalies: u64,
    pub dead_letters: u64,
}

pub async fn run(args: ScoreArgs) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || score(&args)).await?
}

fn score(args: &ScoreArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let (_, validate) = modules::load(&config.runtime.modules_dir, modules::VALIDATE)?;
    let detect = match &args.detector {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => modules::load(&config.runtime.modules_dir, modules::DETECT)?.1,
    };
    let spec = crate::app::chain_spec(&config, OFFLINE_IDS, validate, detect);
    let engine = gridwatch_wasm_host::Engine::new().context("starting the WASM engine")?;
    let mut chain = WasmChain::new(&engine, &spec).context("initialising the chain")?;
    let options = ReadOptions {
        batch_size: config.runtime.batch_max.min(50_000),
        format: args.format.map(Into::into),
        ..Default::default()
    };
    let started = Instant::now();
    let mut totals = ScoreTotals::default();
    let mut offset = 0u64;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for path in &args.files {
        let reader = gridwatch_files::open(path, &options)
            .with_context(|| format!("opening {}", path.display()))?;
        for batch in reader {
            let batch = batch.with_context(|| format!("reading {}", path.display()))?;
            for e in &batch.errors {
                eprintln!("{}: {e}", path.display());
            }
            totals.unreadable += batch.errors.len() as u64;
            totals.readings += batch.readings.len() as u64;
            let records = frame(&batch.readings, &mut offset)?;
            let outputs = chain
                .process(&records, now_ms())
                .context("the SmartModule chain failed")?;
            for bytes in outputs {
                match ChainRecord::from_avro(&bytes).context("the chain's output")? {
                    ChainRecord::Scored(s) => {
                        totals.scored += 1;
                        for a in &s.anomalies {
                            totals.anomalies += 1;
                            serde_json::to_writer(&mut out, a)?;
                            std::io::Write::write_all(&mut out, b"\n")?;
                        }
                    }
                    ChainRecord::DeadLetter(d) => {
                        totals.dead_letters += 1;
                        if args.dead_letters {
                            eprintln!("{}", serde_json::to_string(&d)?);
                        }
                    }
                    ChainRecord::Reading(_) => {
                        anyhow::bail!("the chain returned an unscored reading; is detect missing?")
                    }
                }
            }
        }
    }
    std::io::Write::flush(&mut out)?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "scored {} of {} readings from {} file(s): {} anomalies, {} rejected by validate, {} unreadable records; {:.0} readings/s",
        totals.scored,
        totals.readings,
        args.files.len(),
        totals.anomalies,
        totals.dead_letters,
        totals.unreadable,
        totals.readings as f64 / secs
    );
    Ok(())
}

/// Readings as the `readings` topic holds them, at consecutive offsets.
fn frame(readings: &[SensorReading], offset: &mut u64) -> anyhow::Result<Vec<InRecord>> {
    readings
        .iter()
        .map(|r| {
            let mut value = Vec::with_capacity(96);
            framing::write_header(&mut value, OFFLINE_IDS.reading, IdWidth::ContentId4);
            r.encode_into(&mut value)?;
            let record = InRecord {
                offset: *offset,
                timestamp_ms: r.timestamp,
                key: Some(Bytes::from(r.meter_id.clone().into_bytes())),
                value: Bytes::from(value),
            };
            *offset += 1;
            Ok(record)
        })
        .collect()
}
