//! `gridwatch run`: the whole pipeline in one process, on the embedded
//! defaults or on a Fluvio cluster.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use gridwatch_backend_fluvio::{
    ChainMode, FluvioBackend, LookbackSpec, NamedModule, ServerChainBackend, ServerChainSpec,
};
use gridwatch_contracts::schema;
use gridwatch_log::{LogOptions, TopicConfig};
use gridwatch_registry::{EmbeddedRegistry, SchemaRegistry};
use gridwatch_runtime::backend::TopicBackend;
use gridwatch_runtime::backend::embedded::EmbeddedBackend;
use gridwatch_runtime::chain::{ModuleSpec, Passthrough, WasmChain};
use gridwatch_runtime::checkpoint::CheckpointStore;
use gridwatch_runtime::grid::GridRouter;
use gridwatch_runtime::ingest::{Ingest, IngestConfig};
use gridwatch_runtime::metrics::Metrics;
use gridwatch_runtime::pipeline::{Pipeline, boxed};
use gridwatch_runtime::processor::{Processor, ProcessorConfig, Progress};
use gridwatch_runtime::sink::DeadLetterTopic;
use gridwatch_runtime::topics::{SchemaIds, Topics};
use tokio::sync::watch;

use crate::backend::{AnyBackend, BackendKind};
use crate::config::AppConfig;
use crate::http::{self, AppState};
use crate::modules;
use crate::swap::ModuleManager;

/// Name of the lock file that keeps two processes off one data directory.
pub const LOCK_FILE: &str = "LOCK";

/// Takes the data directory's lock, or says who holds it.
pub fn lock_data_dir(config: &AppConfig) -> anyhow::Result<File> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let path = config.data_dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(_) => anyhow::bail!(
            "data directory {} is in use by a running gridwatch; stop it, or talk to it with --url",
            config.data_dir.display()
        ),
    }
}

/// Opens the embedded topic log of a data directory.
pub fn open_backend(config: &AppConfig) -> anyhow::Result<EmbeddedBackend> {
    let mut topics = TopicConfig::new(config.runtime.partitions);
    // The lake is the archive; topics keep a week by default.
    topics.retention_ms = Some(7 * 86_400_000);
    EmbeddedBackend::open(
        &config.data_dir.join("topics"),
        LogOptions::default(),
        topics,
    )
    .context("opening the embedded topic log")
}

/// The backends of one run: the one everything reads raw records from,
/// the processors' one (which differs in Fluvio's server-side mode), the
/// Fluvio client when there is one, and the partitions this instance owns.
struct Backends {
    shared: Arc<AnyBackend>,
    fluvio: Option<FluvioBackend>,
    partitions: u32,
    owned: Vec<u32>,
}

async fn open_backends(config: &AppConfig) -> anyhow::Result<Backends> {
    match config.backend {
        BackendKind::Embedded => Ok(Backends {
            shared: Arc::new(AnyBackend::Embedded(open_backend(config)?)),
            fluvio: None,
            partitions: config.runtime.partitions,
            owned: (0..config.runtime.partitions).collect(),
        }),
        BackendKind::Fluvio => {
            let fluvio = FluvioBackend::connect(&config.fluvio)
                .await
                .context("connecting to the Fluvio cluster (fluvio.profile / fluvio.endpoint)")?;
            let partitions = config.fluvio.partitions_for(config.runtime.partitions);
            let owned = config.fluvio.owned_partitions(partitions);
            Ok(Backends {
                shared: Arc::new(AnyBackend::Fluvio(fluvio.clone())),
                fluvio: Some(fluvio),
                partitions,
                owned,
            })
        }
    }
}

pub async fn run(config: AppConfig) -> anyhow::Result<()> {
    let started = Instant::now();
    let _lock = lock_data_dir(&config)?;
    let Backends {
        shared: backend,
        fluvio,
        partitions,
        owned,
    } = open_backends(&config).await?;
    let server_side = fluvio.is_some() && config.fluvio.chain.mode == ChainMode::Server;
    let metrics = Metrics::new();
    let topics = Topics::default();
    for name in topics.all() {
        let info = backend.ensure_topic(name, partitions).await?;
        if info.partitions != partitions {
            anyhow::bail!(
                "topic {name} has {} partitions but runtime.partitions is {partitions}; repartitioning an existing data directory is not supported",
                info.partitions
            );
        }
    }

    // The listener first: the embedded registry is served on it, and
    // start-up registers the schemas through it like any client would.
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding http.listen {}", config.http.listen))?;
    let addr = listener.local_addr()?;
    let registry = EmbeddedRegistry::open(config.data_dir.join("registry"))
        .await
        .context("opening the embedded schema registry")?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // Partitions another instance processes never hold ingest back here:
    // their progress reads as "caught up" and "ready".
    let progress: Vec<Arc<Progress>> = (0..partitions)
        .map(|p| {
            let progress = Progress::default();
            if !owned.contains(&p) {
                progress.position.store(u64::MAX, Ordering::Release);
                progress.ready.store(true, Ordering::Release);
            }
            Arc::new(progress)
        })
        .collect();
    let state = Arc::new(AppState::new(
        metrics.clone(),
        progress.clone(),
        backend.clone(),
        config.clone(),
    ));
    // The built-in dashboard at `/`, following the anomalies topic.
    let dashboard = gridwatch_dashboard::Dashboard::start(
        backend.clone(),
        metrics.clone(),
        gridwatch_dashboard::DashboardConfig::new(&topics.anomalies, partitions, &config.data_dir),
        shutdown_rx.clone(),
    )
    .context("starting the dashboard")?;
    let server = {
        let router =
            http::router(state.clone(), registry).merge(gridwatch_dashboard::router(dashboard));
        let mut rx = shutdown_rx.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await
        })
    };
    println!(
        "Gridwatch HTTP endpoint listening on http://{addr} (ingest: POST /api/v1/readings, metrics: /metrics)"
    );
    println!("Dashboard: http://{addr}/");

    let embedded_url = url::Url::parse(&format!("http://{addr}/"))?;
    let schema_registry = SchemaRegistry::connect(&config.registry, Some(embedded_url))?;
    let registered = schema_registry
        .start_up(&config.registry)
        .await
        .context("registering Gridwatch's schemas")?;
    let id = |artifact: &str| {
        registered
            .content_id(artifact)
            .with_context(|| format!("registry did not return an id for {artifact}"))
    };
    let ids = SchemaIds {
        reading: id("io.gridwatch.SensorReading")?,
        scored: id("io.gridwatch.ScoredReading")?,
        anomaly: id("io.gridwatch.AnomalyEvent")?,
        dead_letter: id("io.gridwatch.DeadLetter")?,
    };
    tracing::info!(?ids, "Schemas registered.");
    let decoder = Arc::new(crate::payloads::EdgeDecoder::new(
        schema_registry.clone(),
        ids.reading,
    ));
    state.set_decoder(decoder.clone());

    // The chain: validate → detect, with params from the config. A module
    // hot-swapped earlier (saved under the data directory) wins over the
    // built one.
    let active_dir = config.data_dir.join("modules").join("active");
    let (validate_source, validate_wasm) = load_module(&config, &active_dir, modules::VALIDATE)?;
    let (detect_source, detect_wasm) = load_module(&config, &active_dir, modules::DETECT)?;
    tracing::info!(validate = %validate_source, detect = %detect_source, "SmartModules loaded.");
    let spec = chain_spec(&config, ids, validate_wasm, detect_wasm);

    let warm_window_ms =
        (config.detector.window + config.detector.allowed_lateness).as_millis() as i64;
    let store = CheckpointStore::open(config.data_dir.join("checkpoints"))?;
    let mut processor_config = ProcessorConfig {
        batch_max: config.runtime.batch_max,
        checkpoint_events: config.runtime.checkpoint_events,
        checkpoint_interval: config.runtime.checkpoint_interval,
        warm_window_ms,
        snapshot_interval: Some(config.runtime.snapshot_interval).filter(|d| !d.is_zero()),
        ..ProcessorConfig::default()
    };
    // Server-side, the SPU holds the chain's state and re-warms it through
    // look_back; the processor has nothing to replay or snapshot.
    let mut server_backend = None;
    let processor_backend = match (&fluvio, server_side) {
        (Some(fluvio), true) => {
            processor_config.warm_window_ms = 0;
            processor_config.snapshot_interval = None;
            let server_spec = server_chain_spec(&config, &spec, warm_window_ms);
            println!(
                "Chain runs in the Fluvio SPU: {} (look_back {} ms, reopened every {} records)",
                server_spec
                    .modules
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" → "),
                warm_window_ms,
                server_spec.reopen_after
            );
            let server = ServerChainBackend::new(fluvio.clone(), &topics.readings, server_spec);
            server_backend = Some(server.clone());
            Arc::new(AnyBackend::FluvioServer(server))
        }
        _ => backend.clone(),
    };
    // Compiled modules are kept under the data directory, so a restart
    // (the RTO) instantiates them instead of compiling them again.
    let engine = gridwatch_wasm_host::Engine::with_config(gridwatch_wasm_host::EngineConfig {
        disk_cache: Some(config.data_dir.join("modules").join("compiled")),
        ..gridwatch_wasm_host::EngineConfig::default()
    })
    .context("starting the WASM engine")?;

    // The grid pipeline, declared in one place: readings → validate →
    // detect → scored / anomalies / dead-letter, then the sinks.
    let chains = {
        let (engine, spec) = (engine.clone(), spec.clone());
        move |_partition| {
            if server_side {
                Ok(boxed(Passthrough))
            } else {
                WasmChain::new(&engine, &spec).map(boxed)
            }
        }
    };
    let pipeline = Pipeline::builder(processor_backend)
        .input(&topics.readings)
        .partitions(owned.iter().copied())
        .chain(chains)
        .router(GridRouter::new(topics.clone(), ids, metrics.clone()))
        .checkpoints(store.clone(), processor_config)
        .metrics(metrics.clone())
        .progress(progress.clone())
        .dead_letters(DeadLetterTopic {
            topic: topics.dead_letter.clone(),
            schema_id: ids.dead_letter,
        });
    let pipeline = crate::sinks::attach(pipeline, &config, &topics)?;
    let running = pipeline.run(shutdown_rx.clone())?;
    // Dedup remembers this instance's partitions; another instance's start
    // past their end.
    let mut warm_from = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        warm_from.push(if owned.contains(&p) {
            store
                .load(&Processor::<AnyBackend, WasmChain>::checkpoint_name(p))?
                .unwrap_or_default()
                .warm_from
        } else {
            backend.high_watermark(&topics.readings, p).await?
        });
    }

    let mut manager = ModuleManager::new(
        engine,
        running.handle(),
        metrics.clone(),
        active_dir,
        vec![
            (spec[0].clone(), validate_source),
            (spec[1].clone(), detect_source),
        ],
    );
    if let (Some(backend), Some(fluvio)) = (server_backend, fluvio.clone()) {
        match crate::publish::chain_metadata(None) {
            Ok(metadata) => {
                manager = manager.with_server_side(crate::swap::ServerSide {
                    backend,
                    fluvio,
                    metadata,
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "Hot-swap in the SPU is off: the modules' SmartModule.toml was not found.");
                manager = manager.refuse_swaps(format!(
                    "the chain runs in the Fluvio SPU and the modules' SmartModule.toml was not found ({e:#}); publish with `gridwatch modules publish --version …` and set fluvio.chain.detect instead"
                ));
            }
        }
    }
    let manager = Arc::new(manager);
    state.set_modules(manager.clone());

    let ingest = Arc::new(Ingest::new(
        backend.clone(),
        topics.clone(),
        ids,
        IngestConfig {
            max_lag: config.runtime.max_lag,
            backpressure_timeout: config.runtime.backpressure_timeout,
            dedup_horizon_ms: warm_window_ms,
        },
        progress.clone(),
        metrics.clone(),
    ));
    let remembered = ingest.rebuild_dedup(&warm_from).await?;
    tracing::info!(remembered, "Dedup horizon rebuilt from the log.");
    state.set_ingest(ingest.clone());

    let mut tasks = Vec::new();
    let watch_dir = config.runtime.modules_watch_dir(&config.data_dir);
    tasks.push(tokio::spawn(crate::swap::watch_dir(
        manager,
        watch_dir.clone(),
        Duration::from_secs(1),
        shutdown_rx.clone(),
    )));
    println!(
        "Hot-swap: PUT /api/v1/modules/detect, `gridwatch modules swap detect FILE`, or drop detect.wasm into {}",
        watch_dir.display()
    );
    if config.simulator.enabled {
        tasks.push(crate::app::simulator::spawn(
            &config,
            ingest.clone(),
            shutdown_rx.clone(),
        ));
        println!(
            "Simulator on: {} meters at {} readings/s (turn off with --no-simulator or simulator.enabled: false)",
            config.simulator.meters,
            match config.simulator.rate {
                Some(r) if r > 0.0 => r.to_string(),
                _ => "max".into(),
            }
        );
    } else {
        println!("Simulator off: send readings to POST http://{addr}/api/v1/readings");
    }
    tasks.extend(crate::sources::spawn(
        &config,
        ingest.clone(),
        decoder,
        shutdown_rx.clone(),
    )?);
    if config.runtime.status_interval > Duration::ZERO {
        tasks.push(tokio::spawn(status_line(
            metrics.clone(),
            config.runtime.status_interval,
            shutdown_rx.clone(),
        )));
    }

    // Ready once every processor has recovered.
    let wait_ready = async {
        while !progress.iter().all(|p| p.ready.load(Ordering::Acquire)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        _ = wait_ready => {
            println!("Pipeline ready in {} ms.", started.elapsed().as_millis());
        }
        _ = tokio::signal::ctrl_c() => {
            let _ = shutdown_tx.send(true);
        }
    }

    let signal = async {
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r,
                _ = term.recv() => Ok(()),
            }
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await
    };
    if !*shutdown_tx.borrow() {
        signal.await.context("waiting for Ctrl-C")?;
    }
    println!("Shutting down: flushing and checkpointing…");
    let _ = shutdown_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    running.join().await.context("pipeline")?;
    let _ = server.await;
    println!("Stopped cleanly.");
    Ok(())
}

/// The validate → detect chain as the SPU runs it: the modules registered
/// under `fluvio.chain.*` names, with the same `init` params as in-process,
/// warming detect through `look_back` over the detector window.
fn server_chain_spec(
    config: &AppConfig,
    spec: &[ModuleSpec],
    warm_window_ms: i64,
) -> ServerChainSpec {
    let names = [&config.fluvio.chain.validate, &config.fluvio.chain.detect];
    ServerChainSpec {
        modules: names
            .iter()
            .zip(spec)
            .map(|(name, m)| NamedModule {
                name: (*name).clone(),
                params: m.params.iter().cloned().collect(),
            })
            .collect(),
        lookback: Some(LookbackSpec::BeforeResume {
            age: Duration::from_millis(warm_window_ms.max(0) as u64),
            records: config.fluvio.chain.look_back_records,
        }),
        reopen_after: config.fluvio.chain.reopen_after,
        // detect warms only up to the last record before the resume offset:
        // `look_back` also hands it records that are scored next (the name
        // is `LOOK_BACK_THROUGH` in smartmodules/detect).
        look_back_through: Some("look_back_through".to_string()),
    }
}

/// Reads a module: the hot-swapped copy under the data directory if there
/// is one, else the configured or built one. Returns where it came from.
fn load_module(
    config: &AppConfig,
    active_dir: &std::path::Path,
    file: &str,
) -> anyhow::Result<(String, Vec<u8>)> {
    let active = active_dir.join(file);
    if active.is_file() {
        let bytes =
            std::fs::read(&active).with_context(|| format!("reading {}", active.display()))?;
        return Ok((format!("{} (hot-swapped)", active.display()), bytes));
    }
    let (path, bytes) = modules::load(&config.runtime.modules_dir, file)?;
    Ok((path.display().to_string(), bytes))
}

/// The validate → detect chain with its params from the config.
pub fn chain_spec(
    config: &AppConfig,
    ids: SchemaIds,
    validate_wasm: Vec<u8>,
    detect_wasm: Vec<u8>,
) -> Vec<ModuleSpec> {
    let schemas_param =
        serde_json::json!({ ids.reading.to_string(): schema::SENSOR_READING }).to_string();
    let mut validate_params = config.validate.to_params();
    validate_params.push(("schemas".into(), schemas_param.clone()));
    let mut detect_params: Vec<(String, String)> = config
        .detector
        .to_params()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    detect_params.push(("schemas".into(), schemas_param));
    vec![
        ModuleSpec {
            name: "gridwatch-validate".into(),
            wasm: Bytes::from(validate_wasm),
            params: validate_params,
        },
        ModuleSpec {
            name: "gridwatch-detect".into(),
            wasm: Bytes::from(detect_wasm),
            params: detect_params,
        },
    ]
}

/// Prints one line every interval: events/s, anomalies, dead letters, lag.
async fn status_line(metrics: Metrics, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut last = 0u64;
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let t = metrics.totals();
        let processed = t.processed.load(Ordering::Relaxed);
        let rate = (processed - last) as f64 / every.as_secs_f64();
        last = processed;
        let latency = metrics.take_latency();
        println!(
            "[status] {rate:.0} events/s | processed {processed} | anomalies {} | dead letters {} | duplicates {} | lag {} | p50 {:.1} ms p99 {:.1} ms",
            t.anomalies.load(Ordering::Relaxed),
            t.dead_letters.load(Ordering::Relaxed),
            t.duplicates.load(Ordering::Relaxed),
            metrics.lag(),
            latency.p50,
            latency.p99,
        );
    }
}

pub mod simulator {
    //! Drives the simulator into ingest. Backpressure makes the sink wait,
    //! and so the simulator slows down; nothing is dropped.

    use std::sync::Arc;
    use std::time::Duration;

    use crate::backend::AnyBackend;
    use gridwatch_runtime::ingest::{Ingest, IngestError};
    use gridwatch_simulator::{SimEvent, Simulator};
    use tokio::sync::watch;
    use tokio::task::JoinHandle;

    use crate::config::AppConfig;

    pub fn spawn(
        config: &AppConfig,
        ingest: Arc<Ingest<AnyBackend>>,
        shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let sim_config = config.simulator.clone();
        tokio::spawn(async move {
            let mut sim = match Simulator::new(sim_config.clone()) {
                Ok(sim) => sim,
                Err(e) => {
                    tracing::error!(error = %e, "Simulator not started.");
                    return;
                }
            };
            let pace = sim_config.pace();
            let stop = {
                let mut rx = shutdown.clone();
                async move {
                    let _ = rx.wait_for(|s| *s).await;
                }
            };
            // Generating the next batch overlaps with making this one
            // durable: delivery waits on the log's fsync, generation need
            // not. Batches stay in order, one delivery at a time.
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<SimEvent>>(2);
            let delivery = tokio::spawn(async move {
                while let Some(events) = rx.recv().await {
                    deliver(&ingest, events, shutdown.clone()).await?;
                }
                Ok::<(), IngestError>(())
            });
            let sink = |events: Vec<SimEvent>| {
                let tx = tx.clone();
                async move {
                    tx.send(events)
                        .await
                        .map_err(|_| "delivery into ingest stopped".to_string())
                }
            };
            let generated = sim.run(pace, sink, stop).await;
            drop(tx);
            match delivery.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "Simulator stopped: ingest failed."),
                Err(e) => tracing::error!(error = %e, "Simulator delivery task failed."),
            }
            match generated {
                Ok(stats) => tracing::info!(events = stats.events, "Simulator stopped."),
                Err(e) => tracing::error!(error = %e, "Simulator stopped on an error."),
            }
        })
    }

    /// Hands a batch to ingest, waiting out backpressure until shutdown.
    async fn deliver(
        ingest: &Ingest<AnyBackend>,
        events: Vec<SimEvent>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), IngestError> {
        let mut readings = Vec::with_capacity(events.len());
        let mut malformed = Vec::new();
        for event in events {
            match event {
                SimEvent::Reading(r, _) => readings.push(r),
                SimEvent::Malformed(bytes, label) => malformed.push((label.meter_id, bytes)),
            }
        }
        // Malformed payloads go into the topic as a broken producer would
        // write them, so validate dead-letters them with a reason.
        for (meter, bytes) in malformed {
            ingest.append_raw(&meter, bytes).await?;
        }
        loop {
            match ingest.ingest(&readings, Vec::new()).await {
                Err(IngestError::Backpressure { .. }) if !*shutdown.borrow() => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(IngestError::Backpressure { .. }) => return Ok(()),
                other => return other.map(|_| ()),
            }
        }
    }
}
