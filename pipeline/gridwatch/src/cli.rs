//! The command tree. Binaries stay thin: each command calls into a module.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::AppConfig;

/// Real-time anomaly detection for power-grid sensor streams.
#[derive(Debug, Parser)]
#[command(name = "gridwatch", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline (embedded log, simulator, WASM chain, HTTP API).
    Run(RunArgs),
    /// Inspect and manage topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// List and hot-swap the SmartModules of a running instance.
    #[command(subcommand)]
    Modules(ModulesCommand),
    /// Inspect and replay the dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Send files (CSV, NDJSON, Avro, Parquet) to a running instance, keeping event time.
    Ingest(crate::file_ingest::IngestArgs),
    /// Score files offline with the validate → detect chain; anomalies as JSON lines.
    Score(crate::score::ScoreArgs),
    /// Run a sink as its own process from a Fluvio-format connector file.
    #[command(subcommand)]
    Connector(crate::connector::ConnectorCommand),
    /// Benchmark this binary end to end (or the validate → detect chain alone with --wasm-only).
    Bench(crate::bench::BenchArgs),
    /// Soak test: a fixed rate for a long time, sampled; checks no loss and no degradation.
    Soak(crate::bench::SoakArgs),
    /// Re-score history from the Parquet lake with another detector, into a separate output.
    Replay(crate::replay::ReplayArgs),
    /// Register Gridwatch's Avro schemas with the schema registry.
    #[command(subcommand)]
    Registry(crate::registry_cmd::RegistryCommand),
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters: position, stage, reason, source and message.
    List {
        #[command(flatten)]
        filter: DlqFilter,
        /// Show at most this many (the newest).
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: usize,
    },
    /// Show one dead letter in full, with its original bytes.
    Show {
        /// PARTITION@OFFSET, as `dlq list` prints it.
        position: String,
        #[command(flatten)]
        target: TopicTarget,
    },
    /// Re-deliver dead letters: sink failures to their sink, inputs to ingest.
    Replay {
        #[command(flatten)]
        filter: DlqFilter,
        /// Say what would be replayed, and replay nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Which dead letters a DLQ command acts on.
#[derive(Debug, Clone, Args)]
pub struct DlqFilter {
    /// Only this stage (`ingest`, `validate`, or a sink: `kafka`, `influxdb`, `lake`, `webhook`).
    #[arg(long)]
    pub stage: Option<String>,
    /// Only this reason code (`RETRIES_EXHAUSTED`, `OUT_OF_RANGE`, …).
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub target: TopicTarget,
}

#[derive(Debug, Subcommand)]
pub enum ModulesCommand {
    /// Show each module's name, version, hash and kind.
    List(AdminTarget),
    /// Replace a module in a running instance without stopping ingestion.
    Swap {
        /// Module to replace: `detect` or `validate`.
        name: String,
        /// The new `.wasm` file.
        file: PathBuf,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Register the built modules with the Fluvio cluster of `fluvio:` (as
    /// `fluvio smartmodule create` does), for server-side mode.
    Publish(PublishArgs),
}

/// `gridwatch modules publish`.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Register under this version instead of the one in SmartModule.toml.
    #[arg(long)]
    pub version: Option<String>,
    /// Directory holding `gridwatch-validate/SmartModule.toml` and
    /// `gridwatch-detect/SmartModule.toml` (or `validate/`, `detect/`).
    #[arg(long)]
    pub metadata_dir: Option<PathBuf>,
}

/// A running instance's admin API.
#[derive(Debug, Clone, Args)]
pub struct AdminTarget {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// URL of the running instance (default: the configured `http.listen`).
    #[arg(long, env = "GRIDWATCH_URL")]
    pub url: Option<String>,
    /// Admin token (default: `admin.token` / `admin.token_file` of the config).
    #[arg(long, env = "GRIDWATCH_ADMIN__TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Flags shared by commands that read the configuration.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// YAML configuration file (see config/default.yaml for every key).
    #[arg(long, short = 'c', env = "GRIDWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides `data_dir`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl ConfigArgs {
    /// Loads the layered config, flags last.
    pub fn load(&self) -> anyhow::Result<AppConfig> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let mut config = AppConfig::load(self.config.as_deref(), &env)?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        Ok(config)
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Address of the HTTP listener (overrides `http.listen`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Do not start the built-in simulator (overrides `simulator.enabled`).
    #[arg(long)]
    pub no_simulator: bool,
    /// Simulated meters (overrides `simulator.meters`).
    #[arg(long)]
    pub meters: Option<u32>,
    /// Simulated readings per second, 0 for flat out (overrides `simulator.rate`).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Detection threshold in standard deviations (overrides `detector.threshold`).
    #[arg(long)]
    pub threshold: Option<f64>,
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// List topics and their partitions.
    List(TopicTarget),
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Partitions.
        #[arg(long, short = 'p', default_value_t = 1)]
        partitions: u32,
        #[command(flatten)]
        target: TopicTarget,
    },
    /// Print a topic's records as JSON lines.
    Consume(ConsumeArgs),
}

/// Where topic commands act: a running instance, or a data directory.
#[derive(Debug, Clone, Args)]
pub struct TopicTarget {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// URL of a running instance (default: the configured `http.listen`).
    #[arg(long, env = "GRIDWATCH_URL")]
    pub url: Option<String>,
    /// Admin token (default: `admin.token` / `admin.token_file` of the config).
    #[arg(long, env = "GRIDWATCH_ADMIN__TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Start at the first record instead of the end.
    #[arg(long, short = 'B')]
    pub from_beginning: bool,
    /// Stop at the end instead of waiting for more.
    #[arg(long, short = 'd')]
    pub disable_continuous: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Only this partition.
    #[arg(long, short = 'p')]
    pub partition: Option<u32>,
    #[command(flatten)]
    pub target: TopicTarget,
}

/// How records are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The decoded record as plain JSON.
    Json,
    /// Avro's JSON encoding (unions tagged with their type).
    AvroJson,
    /// The raw value bytes, lossily as UTF-8.
    Raw,
}

impl Cli {
    /// The `log:` section of the config a command will load, read before
    /// logging starts; a config that does not load gives the defaults here
    /// and its error later, from the command itself.
    pub fn log_settings(&self) -> crate::config::LogSection {
        let config = match &self.command {
            Command::Run(args) => Some(&args.config),
            _ => None,
        };
        config
            .and_then(|c| c.load().ok())
            .map(|c| c.log)
            .or_else(|| {
                AppConfig::load(None, &std::env::vars().collect::<Vec<_>>())
                    .ok()
                    .map(|c| c.log)
            })
            .unwrap_or(crate::config::LogSection {
                format: crate::config::LogFormat::Text,
                level: "info".into(),
            })
    }
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => {
            let mut config = args.config.load()?;
            if let Some(listen) = args.listen {
                config.http.listen = listen;
            }
            if args.no_simulator {
                config.simulator.enabled = false;
            }
            if let Some(m) = args.meters {
                config.simulator.meters = m;
            }
            if let Some(r) = args.rate {
                config.simulator.rate = Some(r);
            }
            if let Some(t) = args.threshold {
                config.detector.threshold = t;
            }
            config.validate()?;
            crate::app::run(config).await
        }
        Command::Topic(cmd) => crate::topic::dispatch(cmd).await,
        Command::Modules(cmd) => crate::admin::modules(cmd).await,
        Command::Dlq(cmd) => crate::dlq::dispatch(cmd).await,
        Command::Ingest(args) => crate::file_ingest::run(args).await,
        Command::Score(args) => crate::score::run(args).await,
        Command::Connector(cmd) => crate::connector::dispatch(cmd).await,
        // The bench library blocks (HTTP clients, sleeps): off the async runtime.
        Command::Bench(args) => tokio::task::spawn_blocking(|| crate::bench::bench(args)).await?,
        Command::Soak(args) => tokio::task::spawn_blocking(|| crate::bench::soak(args)).await?,
        Command::Replay(args) => crate::replay::run(args).await,
        Command::Registry(cmd) => crate::registry_cmd::dispatch(cmd).await,
    }
}
