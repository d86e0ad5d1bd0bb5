//! `gridwatch bench` and `gridwatch soak`: flag parsing only. The measuring
//! lives in the `gridwatch-bench` library, which drives this very executable
//! (`std::env::current_exe()`) as a `gridwatch run` child, so what is
//! measured is what ships and the library needs no dependency on this crate.
//!
//! The library uses blocking HTTP clients and sleeps, so [`bench`] and
//! [`soak`] must run outside the async runtime (`spawn_blocking`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use gridwatch_bench::{BenchOptions, ChildOptions, SoakOptions, Source, WasmOptions};

/// Where the child comes from and how it is configured.
#[derive(Debug, Clone, Args)]
pub struct BenchTarget {
    /// YAML configuration for the measured `gridwatch run` (e.g. `sinks.*`
    /// to include InfluxDB or Kafka in the pipeline).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Directory of gridwatch_validate.wasm and gridwatch_detect.wasm
    /// (default: the same lookup as `gridwatch run`).
    #[arg(long, env = "GRIDWATCH_RUNTIME__MODULES_DIR")]
    pub modules_dir: Option<PathBuf>,
    /// Echo the measured process's output to stderr.
    #[arg(long)]
    pub echo: bool,
}

impl BenchTarget {
    fn child(&self) -> anyhow::Result<ChildOptions> {
        let exe = std::env::current_exe().context("finding the gridwatch executable")?;
        let mut child = ChildOptions::new(exe);
        child.modules_dir = self.modules_dir.clone();
        child.echo = self.echo;
        if let Some(config) = &self.config {
            child.args = vec!["--config".into(), config.display().to_string()];
        }
        Ok(child)
    }

    /// What the measured `gridwatch run` will put readings through: its
    /// backend and where the chain runs, read from the same config file and
    /// environment the child gets, so a report can't claim the wrong one.
    fn pipeline(&self) -> anyhow::Result<String> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let config = crate::config::AppConfig::load(self.config.as_deref(), &env)
            .context("reading the configuration the measured gridwatch will run with")?;
        let outputs = "scored/anomalies/dead-letter topics";
        Ok(match config.backend {
            crate::backend::BackendKind::Embedded => gridwatch_bench::bench::PIPELINE.to_string(),
            crate::backend::BackendKind::Fluvio => {
                let cluster = config
                    .fluvio
                    .endpoint
                    .clone()
                    .or_else(|| {
                        config
                            .fluvio
                            .profile
                            .clone()
                            .map(|p| format!("profile {p}"))
                    })
                    .unwrap_or_else(|| "the current profile".into());
                match config.fluvio.chain.mode {
                    gridwatch_backend_fluvio::ChainMode::Server => format!(
                        "ingest → Fluvio topic ({cluster}) → validate → detect (SmartModules in the SPU) → {outputs}"
                    ),
                    gridwatch_backend_fluvio::ChainMode::Client => format!(
                        "ingest → Fluvio topic ({cluster}) → validate → detect (WASM, in-process) → {outputs}"
                    ),
                }
            }
        })
    }

    /// The modules directory for `--wasm-only`: the flag, else the first
    /// directory of `gridwatch run`'s lookup that holds both modules.
    fn modules_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.modules_dir {
            return Ok(dir.clone());
        }
        let dirs = crate::modules::candidates(Path::new(""));
        dirs.iter()
            .find(|d| {
                d.join(crate::modules::VALIDATE).is_file() && d.join(crate::modules::DETECT).is_file()
            })
            .cloned()
            .with_context(|| {
                format!(
                    "the SmartModules are not in {}; build them with scripts/build-modules or pass --modules-dir",
                    dirs.iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

/// `gridwatch bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Measured window.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Load before the window opens.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Measure validate → detect alone on one core: WASM against native.
    #[arg(long)]
    pub wasm_only: bool,
    /// Simulated meters (default 10000; 1000 with --wasm-only).
    #[arg(long)]
    pub meters: Option<u32>,
    /// Readings per second, 0 for flat out.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Feed it over HTTP from this many clients instead of the built-in simulator.
    #[arg(long)]
    pub http: Option<usize>,
    /// Readings per round with --wasm-only.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    #[command(flatten)]
    pub target: BenchTarget,
}

/// `gridwatch soak`.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Readings per second.
    #[arg(long, default_value_t = 10_000.0)]
    pub rate: f64,
    /// Length of the run.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Time between samples (default 10s; 5s for runs under 2 minutes).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub sample_every: Option<Duration>,
    /// Simulated meters (default: the rate, one reading per meter per second).
    #[arg(long)]
    pub meters: Option<u32>,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: BenchTarget,
}

/// Runs `gridwatch bench` (blocking).
pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    if args.wasm_only {
        let mut opts = WasmOptions::new(args.target.modules_dir()?);
        opts.events = args.events;
        if let Some(m) = args.meters {
            opts.meters = m;
        }
        let report = gridwatch_bench::wasm_only(&opts)?;
        return print(args.json, &report, report.table());
    }
    let mut opts = BenchOptions::new("");
    opts.child = args.target.child()?;
    opts.pipeline = args.target.pipeline()?;
    opts.duration = args.duration;
    opts.warmup = args.warmup;
    if let Some(m) = args.meters {
        opts.meters = m;
    }
    opts.rate = args.rate;
    if let Some(clients) = args.http {
        opts.source = Source::Http { clients };
    }
    let report = gridwatch_bench::bench(&opts)?;
    print(args.json, &report, report.table())
}

/// Runs `gridwatch soak` (blocking); fails when either verdict fails.
pub fn soak(args: SoakArgs) -> anyhow::Result<()> {
    let mut opts = SoakOptions::new("");
    opts.child = args.target.child()?;
    opts.rate = args.rate;
    opts.duration = args.duration;
    opts.sample_every = args
        .sample_every
        .unwrap_or(if args.duration < Duration::from_secs(120) {
            Duration::from_secs(5)
        } else {
            Duration::from_secs(10)
        });
    opts.meters = args.meters;
    opts.clients = args.clients;
    opts.progress = true;
    let report = gridwatch_bench::soak(&opts)?;
    print(args.json, &report, report.table())?;
    anyhow::ensure!(
        report.passed,
        "the soak test failed its checks (no loss: {}, no degradation: {}){}",
        report.loss.ok,
        report.degradation.ok,
        // Ingest errors (a full disk, say) come first among the problems.
        report
            .loss
            .problems
            .first()
            .map(|p| format!(": {p}"))
            .unwrap_or_default()
    );
    Ok(())
}

fn print(json: bool, report: &impl serde::Serialize, table: String) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{table}");
    }
    Ok(())
}
