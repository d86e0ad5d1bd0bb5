//! Flat-out generation throughput, readings per second on one core, for a
//! small and a large fleet (the large one does not fit in cache, so it
//! measures the O(meters) state's memory traffic too).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gridwatch_simulator::{Simulator, SimulatorConfig};

const BATCH: usize = 100_000;

fn generate(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulator");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.measurement_time(Duration::from_secs(5));
    for meters in [1_000u32, 100_000] {
        let config = SimulatorConfig {
            meters,
            feeders: (meters / 100).max(1),
            rate: None,
            ..Default::default()
        };
        let mut sim = Simulator::starting_at(config, 1_767_225_600_000)
            .unwrap_or_else(|e| panic!("bench config: {e}"));
        // Past the warm-up, so faults are part of what is measured.
        let mut buf = Vec::with_capacity(BATCH);
        while sim.next_timestamp() < sim.warmup_end_ms() {
            buf.clear();
            sim.fill(&mut buf, BATCH);
        }
        group.bench_function(BenchmarkId::new("fill", meters), |b| {
            b.iter(|| {
                buf.clear();
                black_box(sim.fill(&mut buf, BATCH));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, generate);
criterion_main!(benches);
