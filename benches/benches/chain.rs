//! validate → detect throughput: WASM in `fluvio-smartengine` (the engine
//! Fluvio's SPU runs) next to the same crates run natively, on one core.
//!
//! Input is the golden readings, Apicurio-framed Avro, cycled. The engine
//! never frees the guest's output buffers (see the runtime issue), so the
//! chain is rebuilt every 1M records, outside the timed region.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fluvio_smartengine::{
    DEFAULT_SMARTENGINE_VERSION, SmartEngine, SmartModuleChainBuilder, SmartModuleChainInstance,
    SmartModuleConfig,
};
use fluvio_smartmodule::Record;
use fluvio_smartmodule::dataplane::smartmodule::SmartModuleInput;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_detect::DetectState;
use gridwatch_tests::inputs::{NOW, framed_inputs, schemas_param};
use gridwatch_tests::{golden, modules};
use gridwatch_validator::{ValidateConfig, validate_record};

const RECYCLE_AFTER: u64 = 1_000_000;

fn chain(engine: &SmartEngine) -> SmartModuleChainInstance {
    let mut builder = SmartModuleChainBuilder::default();
    for name in ["gridwatch_validate", "gridwatch_detect"] {
        let config = SmartModuleConfig::builder()
            .smartmodule_names(vec![name.to_string()])
            .param("schemas", schemas_param())
            .build()
            .expect("config");
        builder.add_smart_module(config, modules::module(name));
    }
    builder.initialize(engine).expect("chain initialises")
}

fn bench(c: &mut Criterion) {
    let inputs = framed_inputs(&golden::readings());
    let engine = SmartEngine::new();
    let mut group = c.benchmark_group("validate_detect");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for batch in [100usize, 1_000, 10_000] {
        group.throughput(Throughput::Elements(batch as u64));
        // Batches are prepared ahead, as the SPU hands the engine encoded batches.
        let batches: Vec<SmartModuleInput> = inputs
            .chunks(batch)
            .filter(|c| c.len() == batch)
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

        group.bench_function(BenchmarkId::new("wasm_smartengine", batch), |b| {
            let mut instance = chain(&engine);
            let mut since_recycle = 0u64;
            let mut next = 0usize;
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    if since_recycle >= RECYCLE_AFTER {
                        instance = chain(&engine);
                        since_recycle = 0;
                    }
                    let input = batches[next % batches.len()].clone();
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

        let get = gridwatch_tests::inputs::schemas_only;
        let validate = ValidateConfig::from_params(get).expect("params");
        group.bench_function(BenchmarkId::new("native", batch), |b| {
            let mut state = DetectState::from_params(get).expect("state");
            let mut next = 0usize;
            b.iter(|| {
                // The same work the modules do: decode, validate, encode the
                // chain record, decode it, score, encode the output.
                let start = (next * batch) % (inputs.len() - batch);
                next += 1;
                for (i, bytes) in inputs[start..start + batch].iter().enumerate() {
                    let offset = (start + i) as i64;
                    let validated = validate_record(bytes, offset, &validate, NOW)
                        .to_avro()
                        .expect("avro");
                    let out = state
                        .process(&validated, offset, NOW)
                        .to_avro()
                        .expect("avro");
                    std::hint::black_box(out);
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
