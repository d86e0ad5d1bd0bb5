//! `gridwatch-bench`: the same bench and soak commands as `gridwatch bench`
//! and `gridwatch soak` (for a `gridwatch` binary given by path), plus
//! `dump`, the peer baselines' input. Only parses flags.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use gridwatch_bench::{BenchOptions, ChildOptions, SoakOptions, Source, WasmOptions};

/// Benchmarks and soak tests of a real `gridwatch run`.
#[derive(Debug, Parser)]
#[command(name = "gridwatch-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct Target {
    /// The gridwatch executable (default: `gridwatch` beside this one).
    #[arg(long, env = "GRIDWATCH_BIN")]
    binary: Option<PathBuf>,
    /// Directory of the SmartModules' .wasm files (default: gridwatch's own lookup;
    /// for --wasm-only, target/wasm32-wasip1/release-lto).
    #[arg(long, env = "GRIDWATCH_RUNTIME__MODULES_DIR")]
    modules_dir: Option<PathBuf>,
    /// Echo the child's output.
    #[arg(long)]
    echo: bool,
}

impl Target {
    fn child(&self) -> anyhow::Result<ChildOptions> {
        let binary = match &self.binary {
            Some(b) => b.clone(),
            None => std::env::current_exe()?.with_file_name("gridwatch"),
        };
        let mut c = ChildOptions::new(binary);
        c.modules_dir = self.modules_dir.clone();
        c.echo = self.echo;
        Ok(c)
    }

    fn modules_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.modules_dir {
            return Ok(d.clone());
        }
        let exe = std::env::current_exe()?;
        let target = exe
            .parent()
            .and_then(|p| p.parent())
            .context("no target directory above the executable")?;
        Ok(target.join("wasm32-wasip1/release-lto"))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// End-to-end benchmark (or the validate+detect chain alone with --wasm-only).
    Bench {
        /// Measured window.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Load before the window opens.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        warmup: Duration,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Measure validate → detect alone: WASM vs native, one core.
        #[arg(long)]
        wasm_only: bool,
        /// Simulated meters (default 10000; 1000 with --wasm-only).
        #[arg(long)]
        meters: Option<u32>,
        /// Readings per second, 0 for flat out.
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Load over HTTP from this many clients instead of the built-in simulator.
        #[arg(long)]
        http: Option<usize>,
        /// Readings per round with --wasm-only.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        #[command(flatten)]
        target: Target,
    },
    /// Soak test: a fixed rate for a long time, sampled; checks no loss, no degradation.
    Soak {
        #[arg(long, default_value_t = 10_000.0)]
        rate: f64,
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Time between samples (default 10s; 5s for runs under 2 minutes).
        #[arg(long, value_parser = humantime::parse_duration)]
        sample_every: Option<Duration>,
        /// Simulated meters (default: rate, one reading per meter per second).
        #[arg(long)]
        meters: Option<u32>,
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Write simulator readings as NDJSON (the peer baselines' input).
    Dump {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        #[arg(long, default_value_t = 1_000)]
        meters: u32,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Bench {
            duration,
            warmup,
            json,
            wasm_only,
            meters,
            rate,
            http,
            events,
            target,
        } => {
            if wasm_only {
                let mut opts = WasmOptions::new(target.modules_dir()?);
                opts.events = events;
                opts.meters = meters.unwrap_or(opts.meters);
                let report = gridwatch_bench::wasm_only(&opts)?;
                print(json, &report, report.table())
            } else {
                let mut opts = BenchOptions::new("");
                opts.child = target.child()?;
                opts.duration = duration;
                opts.warmup = warmup;
                opts.meters = meters.unwrap_or(opts.meters);
                opts.rate = rate;
                if let Some(clients) = http {
                    opts.source = Source::Http { clients };
                }
                let report = gridwatch_bench::bench(&opts)?;
                print(json, &report, report.table())
            }
        }
        Command::Soak {
            rate,
            duration,
            sample_every,
            meters,
            clients,
            json,
            target,
        } => {
            let mut opts = SoakOptions::new("");
            opts.child = target.child()?;
            opts.rate = rate;
            opts.duration = duration;
            opts.sample_every = sample_every.unwrap_or(if duration < Duration::from_secs(120) {
                Duration::from_secs(5)
            } else {
                Duration::from_secs(10)
            });
            opts.meters = meters;
            opts.clients = clients;
            let report = gridwatch_bench::soak(&opts)?;
            print(json, &report, report.table())?;
            if !report.passed {
                anyhow::bail!("the soak test failed its checks");
            }
            Ok(())
        }
        Command::Dump {
            out,
            events,
            meters,
        } => {
            let report = gridwatch_bench::dump::dump(&out, events, meters)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}

fn print(json: bool, report: &impl serde::Serialize, table: String) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{table}");
    }
    Ok(())
}
