//! validate → detect throughput, three ways in one run so their ratios come
//! from the same machine state:
//!
//! - `smartengine`: the `.wasm` modules in `fluvio-smartengine` 0.50.1, the
//!   engine Fluvio's SPU runs (what `fluvio consume --smartmodule` uses);
//! - `gridwatch_host`: the same `.wasm` files through
//!   `gridwatch_runtime::chain::WasmChain` on Gridwatch's wasmtime host,
//!   exactly what a processor runs (batch encoding and output copies included);
//! - `native`: the same crates compiled natively, doing the same work the
//!   modules do (decode, validate, encode the chain record, decode it, score,
//!   encode the output): the ceiling.
//!
//! Input is the golden readings, Apicurio-framed Avro, repeated in
//! [`CYCLES`] copies shifted forward in time so meters keep moving forward
//! (cycling the same timestamps would make every later reading "late" and
//! skip scoring). When a way reaches the end of the input its state is
//! rebuilt outside the timed region, and smartengine's chain is rebuilt
//! every 1M records anyway because it never frees its output buffers.
//!
//! `cargo bench -p gridwatch-benches --bench chain`; `scripts/bench` runs it
//! with short measurement times and prints the ratios.

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fluvio_smartengine::{
    DEFAULT_SMARTENGINE_VERSION, SmartEngine, SmartModuleChainBuilder, SmartModuleChainInstance,
    SmartModuleConfig,
};
use fluvio_smartmodule::Record;
use fluvio_smartmodule::dataplane::smartmodule::SmartModuleInput;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_detect::DetectState;
use gridwatch_runtime::backend::InRecord;
use gridwatch_runtime::chain::{Chain as _, ModuleSpec, WasmChain};
use gridwatch_tests::inputs::{NOW, framed_avro, schemas_only, schemas_param};
use gridwatch_tests::{golden, modules};
use gridwatch_validator::{ValidateConfig, validate_record};

const RECYCLE_AFTER: u64 = 1_000_000;
/// Copies of the golden set, each two hours (its span) later than the last.
const CYCLES: i64 = 8;
const MODULES: [&str; 2] = ["gridwatch_validate", "gridwatch_detect"];

fn inputs() -> Vec<Vec<u8>> {
    let readings = golden::readings();
    let first = readings.iter().map(|r| r.timestamp).min().unwrap_or(0);
    let last = readings.iter().map(|r| r.timestamp).max().unwrap_or(0);
    let span = last - first + 1000;
    (0..CYCLES)
        .flat_map(|c| {
            readings.iter().map(move |r| {
                let mut r = r.clone();
                r.timestamp += c * span;
                framed_avro(&r)
            })
        })
        .collect()
}

fn smartengine_chain(engine: &SmartEngine) -> SmartModuleChainInstance {
    let mut builder = SmartModuleChainBuilder::default();
    for name in MODULES {
        let config = SmartModuleConfig::builder()
            .smartmodule_names(vec![name.to_string()])
            .param("schemas", schemas_param())
            .build()
            .expect("config");
        builder.add_smart_module(config, modules::module(name));
    }
    builder.initialize(engine).expect("chain initialises")
}

fn host_chain(engine: &gridwatch_wasm_host::Engine) -> WasmChain {
    let spec: Vec<ModuleSpec> = MODULES
        .iter()
        .map(|name| ModuleSpec {
            name: name.to_string(),
            wasm: Bytes::from(modules::module(name)),
            params: vec![("schemas".into(), schemas_param().to_string())],
        })
        .collect();
    WasmChain::new(engine, &spec).expect("chain initialises")
}

fn bench(c: &mut Criterion) {
    let inputs = inputs();
    let smartengine = SmartEngine::new();
    let host = gridwatch_wasm_host::Engine::new().expect("engine");
    let mut group = c.benchmark_group("validate_detect");
    group.sample_size(10);
    for batch in [100usize, 1_000, 10_000] {
        group.throughput(Throughput::Elements(batch as u64));
        let chunks: Vec<&[Vec<u8>]> = inputs.chunks(batch).filter(|c| c.len() == batch).collect();

        // Batches are prepared ahead, as the SPU hands the engine encoded batches.
        let se_inputs: Vec<SmartModuleInput> = chunks
            .iter()
            .enumerate()
            .map(|(n, chunk)| {
                let records = chunk.iter().map(|b| Record::new(b.clone())).collect();
                let mut input =
                    SmartModuleInput::try_from_records(records, DEFAULT_SMARTENGINE_VERSION)
                        .expect("input");
                input.set_base_offset((n * batch) as i64);
                input.set_base_timestamp(NOW);
                input
            })
            .collect();
        group.bench_function(BenchmarkId::new("smartengine", batch), |b| {
            let mut instance = smartengine_chain(&smartengine);
            let mut since_recycle = 0u64;
            let mut next = 0usize;
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    if since_recycle >= RECYCLE_AFTER || next == se_inputs.len() {
                        instance = smartengine_chain(&smartengine);
                        since_recycle = 0;
                        next %= se_inputs.len();
                    }
                    let input = se_inputs[next].clone();
                    next += 1;
                    let start = Instant::now();
                    let out = instance.process(input).expect("chain runs");
                    elapsed += start.elapsed();
                    assert_eq!(out.successes.len(), batch);
                    since_recycle += batch as u64;
                }
                elapsed
            });
        });

        // The processor hands WasmChain the records it fetched from the log.
        let host_inputs: Vec<Vec<InRecord>> = chunks
            .iter()
            .enumerate()
            .map(|(n, chunk)| {
                chunk
                    .iter()
                    .enumerate()
                    .map(|(i, v)| InRecord {
                        offset: (n * batch + i) as u64,
                        timestamp_ms: NOW,
                        key: None,
                        value: Bytes::from(v.clone()),
                    })
                    .collect()
            })
            .collect();
        group.bench_function(BenchmarkId::new("gridwatch_host", batch), |b| {
            let mut chain = host_chain(&host);
            let mut next = 0usize;
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    if next == host_inputs.len() {
                        chain = host_chain(&host);
                        next = 0;
                    }
                    let start = Instant::now();
                    let out = chain.process(&host_inputs[next], NOW).expect("chain runs");
                    elapsed += start.elapsed();
                    assert_eq!(out.len(), batch);
                    next += 1;
                }
                elapsed
            });
        });

        let validate = ValidateConfig::from_params(schemas_only).expect("params");
        group.bench_function(BenchmarkId::new("native", batch), |b| {
            let mut state = DetectState::from_params(schemas_only).expect("state");
            let mut next = 0usize;
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    if next == chunks.len() {
                        state = DetectState::from_params(schemas_only).expect("state");
                        next = 0;
                    }
                    let start = Instant::now();
                    for (i, bytes) in chunks[next].iter().enumerate() {
                        let offset = (next * batch + i) as i64;
                        let validated = validate_record(bytes, offset, &validate, NOW)
                            .to_avro()
                            .expect("avro");
                        let out = state
                            .process(&validated, offset, NOW)
                            .to_avro()
                            .expect("avro");
                        std::hint::black_box(out);
                    }
                    elapsed += start.elapsed();
                    next += 1;
                }
                elapsed
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
