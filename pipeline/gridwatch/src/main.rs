//! `gridwatch`: the grid anomaly pipeline and its command line.
//!
//! - `cli`: the command tree.
//! - `config`: layered YAML configuration with validation.
//! - `app`: `gridwatch run`, wiring the runtime, registry, sources and HTTP.
//! - `backend`: the topic backend chosen by `backend:` (embedded or Fluvio).
//! - `http`: the ingest, admin and metrics API.
//! - `admin`: `gridwatch modules …`, a client of the admin API.
//! - `dlq`: `gridwatch dlq list|show|replay`.
//! - `topic`: `gridwatch topic list|create|consume`.
//! - `modules`: finding the SmartModules; `swap`: hot-swapping them.
//! - `sinks`: the sinks `gridwatch run` attaches from `sinks.*`.
//! - `connector`: `gridwatch connector run`, one sink as its own process.
//! - `payloads`: JSON, framed Avro and Avro container payloads at the edge.
//! - `sources`: the MQTT and Kafka sources `gridwatch run` starts from `sources.*`.
//! - `file_ingest`, `score`: `gridwatch ingest FILE…` and `gridwatch score FILE…`.
//! - `replay`: `gridwatch replay --from-lake`; `registry_cmd`: `gridwatch registry register`.
//! - `bench`: `gridwatch bench` and `gridwatch soak`, over the `gridwatch-bench` library.

mod admin;
mod app;
mod backend;
mod bench;
mod cli;
mod config;
mod connector;
mod dlq;
mod file_ingest;
mod http;
mod modules;
mod payloads;
mod publish;
mod registry_cmd;
mod replay;
mod score;
mod sinks;
mod sources;
mod swap;
mod topic;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    init_logging(&cli.log_settings());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, as `log.format` and `log.level` say (`RUST_LOG`
/// wins over the level; `GRIDWATCH_LOG_FORMAT=json` still selects JSON).
fn init_logging(log: &config::LogSection) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = log.format == config::LogFormat::Json
        || std::env::var("GRIDWATCH_LOG_FORMAT").is_ok_and(|v| v == "json");
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
