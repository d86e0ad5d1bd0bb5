//! Server-side mode against a real cluster: the built validate and detect
//! modules registered through the admin API, run as a consumer SmartModule
//! chain inside the SPU, give exactly what the same chain gives in-process
//! (`gridwatch_runtime::chain::WasmChain`), including across the reopens
//! that renew the SPU's leaking engine instance.
//!
//! Each test skips (printing why) unless `GRIDWATCH_TEST_FLUVIO_ENDPOINT` or
//! `GRIDWATCH_TEST_FLUVIO_PROFILE` names a cluster.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gridwatch_backend_fluvio::modules::{delete_smartmodule, list_smartmodules};
use gridwatch_backend_fluvio::{
    FluvioBackend, FluvioBackendError, LookbackSpec, ModuleSource, NamedModule, RegisteredModule,
    ServerChainSpec, ServerChainStream, register_smartmodule,
};
use gridwatch_contracts::ChainRecord;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_runtime::backend::{InRecord, OutRecord, TopicBackend};
use gridwatch_runtime::chain::{Chain, ModuleSpec, WasmChain};
use gridwatch_tests::{golden, inputs, modules};

fn source(dir: &str, file: &str) -> ModuleSource {
    ModuleSource::new(
        modules::wasm_dir().join(format!("{file}.wasm")),
        modules::workspace_root()
            .join("smartmodules")
            .join(dir)
            .join("SmartModule.toml"),
    )
}

/// Registers both modules under a version private to this run, so parallel
/// runs and later tests never see each other's modules.
async fn register_both(b: &FluvioBackend, version: &str) -> (RegisteredModule, RegisteredModule) {
    let v = register_smartmodule(
        b.admin(),
        &source("validate", "gridwatch_validate").with_version(version),
    )
    .await
    .unwrap();
    let d = register_smartmodule(
        b.admin(),
        &source("detect", "gridwatch_detect").with_version(version),
    )
    .await
    .unwrap();
    (v, d)
}

fn run_version() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("0.1.0-t{}x{}", std::process::id(), nanos % 1_000_000_000)
}

fn chain_spec(
    v: &RegisteredModule,
    d: &RegisteredModule,
    lookback: Option<LookbackSpec>,
    reopen_after: u64,
) -> ServerChainSpec {
    ServerChainSpec {
        modules: vec![
            NamedModule::new(&v.qualified_name).param("schemas", inputs::schemas_param()),
            NamedModule::new(&d.qualified_name).param("schemas", inputs::schemas_param()),
        ],
        lookback,
        reopen_after,
        // As `gridwatch run` sets it: detect warms only up to the record
        // before each (re)open's resume offset, whatever else look_back sees.
        look_back_through: Some(detect_look_back_through()),
    }
}

/// The param name smartmodules/detect reads (`LOOK_BACK_THROUGH` there).
fn detect_look_back_through() -> String {
    "look_back_through".into()
}

/// The same chain in-process.
fn client_chain() -> WasmChain {
    let engine = gridwatch_wasm_host::Engine::new().unwrap();
    let params = vec![("schemas".to_string(), inputs::schemas_param().to_string())];
    WasmChain::new(
        &engine,
        &[
            ModuleSpec {
                name: "gridwatch-validate".into(),
                wasm: Bytes::from(modules::module("gridwatch_validate")),
                params: params.clone(),
            },
            ModuleSpec {
                name: "gridwatch-detect".into(),
                wasm: Bytes::from(modules::module("gridwatch_detect")),
                params,
            },
        ],
    )
    .unwrap()
}

/// A chain output with its run-dependent clock fields cleared.
fn normalise(bytes: &[u8]) -> ChainRecord {
    let mut r = ChainRecord::from_avro(bytes).expect("chain output is a ChainRecord");
    match &mut r {
        ChainRecord::Scored(s) => {
            for a in &mut s.anomalies {
                a.detected_at = 0;
            }
        }
        ChainRecord::DeadLetter(d) => d.first_failed_at = 0,
        ChainRecord::Reading(_) => {}
    }
    r
}

/// Opens the chain, waiting while the SPU learns of just-registered modules.
async fn open(
    b: &FluvioBackend,
    topic: &str,
    from: u64,
    spec: ServerChainSpec,
) -> ServerChainStream {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match ServerChainStream::open(b, topic, 0, from, spec.clone()).await {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("chain not open yet: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("opening the server-side chain: {e}"),
        }
    }
}

/// Reads `n` outputs, retrying the first read while the SPU syncs modules.
async fn read(
    stream: &mut ServerChainStream,
    b: &FluvioBackend,
    topic: &str,
    n: usize,
) -> Vec<InRecord> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} outputs after 120s",
            out.len()
        );
        match stream.next_batch(10_000, Duration::from_secs(2)).await {
            Ok(batch) => out.extend(batch),
            Err(FluvioBackendError::SmartModuleNotFound { name }) if out.is_empty() => {
                eprintln!("SPU does not know {name} yet; reopening");
                tokio::time::sleep(Duration::from_millis(250)).await;
                *stream = open(b, topic, stream.position(), stream_spec(stream)).await;
            }
            Err(e) => panic!("server-side chain failed: {e}"),
        }
    }
    out
}

fn stream_spec(s: &ServerChainStream) -> ServerChainSpec {
    s.spec().clone()
}

async fn append_readings(
    b: &FluvioBackend,
    topic: &str,
    values: &[Vec<u8>],
) -> std::ops::Range<u64> {
    let records = values
        .iter()
        .map(|v| OutRecord {
            key: None,
            value: Bytes::from(v.clone()),
            timestamp_ms: 0,
        })
        .collect();
    b.append(topic, 0, records).await.unwrap()
}

async fn fetch_all(b: &FluvioBackend, topic: &str, from: u64, to: u64) -> Vec<InRecord> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let got = b.fetch(topic, 0, at, 10_000, Duration::ZERO).await.unwrap();
        at = got.last().map_or(at, |r| r.offset + 1);
        out.extend(got);
    }
    out
}

/// Deletes a test's topic and the modules it registered.
async fn clean_up(b: &FluvioBackend, topic: &str, modules: &[&RegisteredModule]) {
    b.delete_topic(topic).await.unwrap();
    for m in modules {
        delete_smartmodule(b.admin(), &m.qualified_name)
            .await
            .unwrap();
    }
}

fn compare(server: &[InRecord], inputs: &[InRecord], client: &[Bytes]) {
    assert_eq!(server.len(), inputs.len());
    assert_eq!(client.len(), inputs.len());
    let mut anomalies = 0;
    let mut dead = 0;
    let mut differing = Vec::new();
    for ((s, i), c) in server.iter().zip(inputs).zip(client) {
        assert_eq!(s.offset, i.offset, "the chain keeps each input's offset");
        let (got, want) = (normalise(&s.value), normalise(c));
        match &want {
            ChainRecord::Scored(sc) => anomalies += sc.anomalies.len(),
            ChainRecord::DeadLetter(_) => dead += 1,
            ChainRecord::Reading(_) => {}
        }
        if got != want {
            differing.push(i.offset);
        }
    }
    if let (Some(first), Some(last)) = (differing.first(), differing.last()) {
        let late = server
            .iter()
            .filter(|s| matches!(normalise(&s.value), ChainRecord::Scored(ref sc) if sc.disposition == gridwatch_contracts::Disposition::Late))
            .count();
        let i = differing[0] as usize;
        panic!(
            "{} of {} outputs differ (offsets {first}..={last}; {late} server outputs LATE); first: server {:?} client {:?}",
            differing.len(),
            server.len(),
            normalise(&server[i].value),
            normalise(&client[i])
        );
    }
    eprintln!(
        "compared {} outputs: {anomalies} anomalies, {dead} dead letters, all equal",
        server.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_chain_equals_client_side_chain() {
    let Some(config) = common::cluster("server_side_chain_equals_client_side_chain") else {
        return;
    };
    let b = common::connect(&config).await;
    let (v, d) = register_both(&b, &run_version()).await;
    let t = common::topic("chain");
    b.ensure_topic(&t, 1).await.unwrap();

    // Golden readings, some as JSON and some garbage, so both decoders and
    // the dead-letter path run in the SPU.
    let readings = golden::readings();
    let values = inputs::mixed_inputs(&readings[..6_000]);
    let range = append_readings(&b, &t, &values).await;
    assert_eq!(range, 0..6_000);

    let mut stream = open(&b, &t, 0, chain_spec(&v, &d, None, u64::MAX)).await;
    let server = read(&mut stream, &b, &t, values.len()).await;
    assert_eq!(stream.reopens, 0);

    let input = fetch_all(&b, &t, 0, 6_000).await;
    let client = client_chain().process(&input, 1_767_300_000_000).unwrap();
    compare(&server, &input, &client);

    // Resuming from an explicit offset gives the outputs from there on
    // (state differs without warming, so only positions are compared).
    let mut resumed = open(&b, &t, 5_990, chain_spec(&v, &d, None, u64::MAX)).await;
    let tail = read(&mut resumed, &b, &t, 10).await;
    assert_eq!(
        tail.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (5_990..6_000).collect::<Vec<_>>()
    );
    clean_up(&b, &t, &[&v, &d]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopened_chain_rewarms_through_look_back_and_stays_equal() {
    let Some(config) = common::cluster("reopened_chain_rewarms_through_look_back_and_stays_equal")
    else {
        return;
    };
    let b = common::connect(&config).await;
    let (v, d) = register_both(&b, &run_version()).await;
    let t = common::topic("reopen");
    b.ensure_topic(&t, 1).await.unwrap();
    let readings = golden::readings();
    let values = inputs::framed_inputs(&readings[..4_000]);

    // A small budget forces a reopen after every chunk; look_back replays
    // the whole partition, up to the record before the resume offset
    // (`look_back_through`), so each new instance has the old one's state.
    let spec = chain_spec(&v, &d, Some(LookbackSpec::Last(1_000_000)), 1_200);
    // The stream opens on the empty topic (look_back replays nothing), then
    // each chunk is appended and read until the stream has caught up. The
    // SPU runs look_back when it receives the (re)open request, which the
    // client does not wait for, so the next chunk is appended only after a
    // pause: records appended in between would be warmed *and* processed
    // (see `server_side`'s docs on `look_back_through`).
    let quiesce = || tokio::time::sleep(Duration::from_secs(3));
    let mut stream = open(&b, &t, 0, spec).await;
    let mut server = Vec::new();
    for chunk in values.chunks(1_000) {
        quiesce().await;
        append_readings(&b, &t, chunk).await;
        server.extend(read(&mut stream, &b, &t, chunk.len()).await);
    }
    assert!(stream.reopens >= 3, "reopened {} times", stream.reopens);
    eprintln!(
        "the server-side chain was reopened {} times",
        stream.reopens
    );

    let input = fetch_all(&b, &t, 0, 4_000).await;
    let client = client_chain().process(&input, 1_767_300_000_000).unwrap();
    compare(&server, &input, &client);
    clean_up(&b, &t, &[&v, &d]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_register_replace_and_list() {
    let Some(config) = common::cluster("modules_register_replace_and_list") else {
        return;
    };
    let b = common::connect(&config).await;
    let version = run_version();
    let src = source("detect", "gridwatch_detect").with_version(&version);
    let first = register_smartmodule(b.admin(), &src).await.unwrap();
    assert!(!first.replaced);
    assert_eq!(first.name, "gridwatch-detect");
    assert_eq!(
        first.qualified_name,
        format!("gridwatch/gridwatch-detect@{version}")
    );
    assert_eq!(first.wasm_bytes, modules::module("gridwatch_detect").len());
    let again = register_smartmodule(b.admin(), &src).await.unwrap();
    assert!(again.replaced, "registering the same version replaces it");
    assert_eq!(again.key, first.key);
    // A new version sits next to the old one (a hot swap's target).
    let next = register_smartmodule(b.admin(), &src.clone().with_version(format!("{version}.2")))
        .await
        .unwrap();
    assert_ne!(next.key, first.key);
    let listed = list_smartmodules(b.admin()).await.unwrap();
    for m in [&first, &next] {
        assert!(
            listed
                .iter()
                .any(|(k, q)| *k == m.key && q.as_deref() == Some(m.qualified_name.as_str())),
            "{} missing from {listed:?}",
            m.key
        );
    }
    // A file that is not WASM is refused before anything reaches the cluster.
    let bogus = ModuleSource::new(PathBuf::from(file!()), src.metadata.clone());
    assert!(register_smartmodule(b.admin(), &bogus).await.is_err());
    delete_smartmodule(b.admin(), &first.qualified_name)
        .await
        .unwrap();
    delete_smartmodule(b.admin(), &next.qualified_name)
        .await
        .unwrap();
    let listed = list_smartmodules(b.admin()).await.unwrap();
    assert!(
        !listed
            .iter()
            .any(|(k, _)| *k == first.key || *k == next.key)
    );
}

/// The SPU's chain output carries no append time; `ServerChainBackend`
/// gives back the time this process appended each reading, so server-side
/// mode has an ingest→detect latency like the other modes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_chain_backend_gives_back_append_times() {
    let Some(config) = common::cluster("server_chain_backend_gives_back_append_times") else {
        return;
    };
    let b = common::connect(&config).await;
    let (v, d) = register_both(&b, &run_version()).await;
    let t = common::topic("clock");
    b.ensure_topic(&t, 1).await.unwrap();
    let readings = golden::readings();
    let values = inputs::framed_inputs(&readings[..500]);
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };

    // Two appends a moment apart, so each output must carry its own one's time.
    let before_first = now();
    let first = append_readings(&b, &t, &values[..250]).await;
    let after_first = now();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let before_second = now();
    let second = append_readings(&b, &t, &values[250..]).await;
    let after_second = now();

    // A raw chain stream shows what the SPU hands back.
    let mut raw = open(&b, &t, 0, chain_spec(&v, &d, None, u64::MAX)).await;
    let raw_out = read(&mut raw, &b, &t, values.len()).await;
    let stamped = raw_out.iter().filter(|r| r.timestamp_ms > 0).count();
    eprintln!(
        "the SPU's chain output: {stamped} of {} records carry an append time",
        raw_out.len()
    );

    let backend = gridwatch_backend_fluvio::ServerChainBackend::new(
        b.clone(),
        &t,
        chain_spec(&v, &d, None, u64::MAX),
    );
    let mut out: Vec<InRecord> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while out.len() < values.len() {
        assert!(Instant::now() < deadline, "only {} outputs", out.len());
        let from = out.last().map_or(0, |r| r.offset + 1);
        match backend
            .fetch(&t, 0, from, 10_000, Duration::from_secs(2))
            .await
        {
            Ok(batch) => out.extend(batch),
            Err(e) => {
                eprintln!("server-side fetch not ready yet: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    for r in &out {
        let (lo, hi) = if first.contains(&r.offset) {
            (before_first, after_first)
        } else {
            assert!(second.contains(&r.offset), "offset {}", r.offset);
            (before_second, after_second)
        };
        assert!(
            (lo..=hi).contains(&r.timestamp_ms),
            "offset {}: append time {} outside {lo}..={hi}",
            r.offset,
            r.timestamp_ms
        );
    }
    clean_up(&b, &t, &[&v, &d]).await;
}
