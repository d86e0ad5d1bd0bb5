//! `gridwatch`: the grid anomaly pipeline and its command line.
//!
//! - `cli`: the command tree.
//! - `config`: layered YAML configuration with validation.
//! - `app`: `gridwatch run`, wiring the runtime, registry, sources and HTTP.
//! - `http`: the ingest, admin and metrics API.
//! - `topic`: `gridwatch topic list|create|consume`.
//! - `modules`: finding the SmartModules.

mod app;
mod cli;
mod config;
mod http;
mod modules;
mod topic;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
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
