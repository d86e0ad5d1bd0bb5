//! validate → detect throughput through this host next to
//! `fluvio-smartengine`, the same `.wasm` files on one core, in one run.
//!
//! Input is the golden readings, Apicurio-framed Avro, cycled, in batches of
//! 100, 1,000 and 10,000 prepared ahead (as an SPU hands batches over).
//! smartengine leaks every output buffer, so its chain is rebuilt every 1M
//! records outside the timed region; ours runs on one chain throughout.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fluvio_smartengine::{
    DEFAULT_SMARTENGINE_VERSION, SmartEngine, SmartModuleChainBuilder, SmartModuleChainInstance,
    SmartModuleConfig,
};
use fluvio_smartmodule::Record;
use fluvio_smartmodule::dataplane::smartmodule::SmartModuleInput;
use gridwatch_tests::inputs::{NOW, framed_inputs, schemas_param};
use gridwatch_tests::{golden, modules};
use gridwatch_wasm_host::{Batch, Chain, Engine, ModuleSpec, Output};

const RECYCLE_AFTER: u64 = 1_000_000;
const MODULES: [&str; 2] = ["gridwatch_validate", "gridwatch_detect"];

fn smartengine_chain(engine: &SmartEngine, wasm: &[Vec<u8>]) -> SmartModuleChainInstance {
    let mut builder = SmartModuleChainBuilder::default();
    for (name, bytes) in MODULES.iter().zip(wasm) {
        let config = SmartModuleConfig::builder()
            .smartmodule_names(vec![name.to_string()])
            .param("schemas", schemas_param())
            .build()
            .expect("config");
        builder.add_smart_module(config, bytes.clone());
    }
    builder.initialize(engine).expect("chain initialises")
}

fn host_chain(engine: &Engine, wasm: &[Vec<u8>]) -> Chain {
    let mut builder = engine.chain();
    for (name, bytes) in MODULES.iter().zip(wasm) {
        builder.add_module(
            ModuleSpec::wasm(*name, bytes.as_slice()).param("schemas", schemas_param()),
        );
    }
    builder.build().expect("chain initialises")
}

fn bench(c: &mut Criterion) {
    let inputs = framed_inputs(&golden::readings());
    let wasm: Vec<Vec<u8>> = MODULES.iter().map(|m| modules::module(m)).collect();
    let smartengine = SmartEngine::new();
    let host = Engine::new().expect("engine");
    let mut group = c.benchmark_group("host_validate_detect");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for batch in [100usize, 1_000, 10_000] {
        group.throughput(Throughput::Elements(batch as u64));
        let chunks: Vec<&[Vec<u8>]> = inputs.chunks(batch).filter(|c| c.len() == batch).collect();

        let inputs_se: Vec<SmartModuleInput> = chunks
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
            let mut instance = smartengine_chain(&smartengine, &wasm);
            let mut since_recycle = 0u64;
            let mut next = 0usize;
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    if since_recycle >= RECYCLE_AFTER {
                        instance = smartengine_chain(&smartengine, &wasm);
                        since_recycle = 0;
                    }
                    let input = inputs_se[next % inputs_se.len()].clone();
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

        // Record::new gives every record offset delta 0, as above.
        let batches: Vec<Batch> = chunks
            .iter()
            .map(|chunk| {
                let mut b = Batch::with_capacity(chunk.iter().map(|r| r.len() + 8).sum());
                for bytes in chunk.iter() {
                    b.push_record(None, bytes, 0, 0);
                }
                b
            })
            .collect();
        group.bench_function(BenchmarkId::new("gridwatch_host", batch), |b| {
            let mut chain = host_chain(&host, &wasm);
            let mut output = Output::default();
            let mut next = 0usize;
            b.iter(|| {
                let n = next % batches.len();
                next += 1;
                chain
                    .process_batch_into(&batches[n], (n * batch) as i64, NOW, &mut output)
                    .expect("chain runs");
                assert_eq!(output.len(), batch);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
