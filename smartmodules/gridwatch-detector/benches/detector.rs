//! Per-reading cost of [`Detector::score`] with full windows: 1,000 meters,
//! 5-minute windows at 1 reading/s (300 held per meter), simulator-like
//! values, in order, as the detect module calls it. Scoring voltage only
//! (the default) and all three fields, and voltage with every tenth reading
//! late (inserted mid-window).
//!
//! Compare before/after a change with criterion baselines:
//! `cargo bench -p gridwatch-detector --bench detector -- --save-baseline before`,
//! then `-- --baseline before`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gridwatch_contracts::MeterStatus;
use gridwatch_contracts::fast::ReadingRef;
use gridwatch_detector::{Detector, DetectorConfig, ScoredField, Scores};

include!("../examples/common/simlike.rs");

const METERS: usize = 1_000;
/// Readings generated per meter: a 300-reading warm-up, then the timed part.
const READINGS: usize = 1_300;

struct Input {
    ids: Vec<String>,
    values: Vec<(f64, f64, f64)>,
}

fn input() -> Input {
    let mut sim = SimLike::new(7);
    Input {
        ids: (0..METERS).map(|m| format!("meter-{m:06}")).collect(),
        values: (0..METERS * READINGS).map(|_| sim.values()).collect(),
    }
}

/// Reading `n`; with `late`, every 10th reading of a meter arrives 2.5 s
/// late (within the default 5 s lateness), so it is inserted mid-window.
fn reading(input: &Input, n: usize, late: bool) -> ReadingRef<'_> {
    let (i, m) = (n / METERS, n % METERS);
    let delay = if late && i % 10 == 5 { 2500 } else { 0 };
    let (voltage, current, temperature) = input.values[n];
    ReadingRef {
        meter_id: &input.ids[m],
        timestamp: 1_767_225_600_000 + i as i64 * 1000 + m as i64 - delay,
        voltage,
        current,
        temperature,
        status: MeterStatus::Ok,
    }
}

fn bench(c: &mut Criterion) {
    let input = input();
    let warm = 300 * METERS;
    let mut group = c.benchmark_group("detector");
    group.throughput(Throughput::Elements(1));
    for (name, fields, late) in [
        ("voltage", vec![ScoredField::Voltage], false),
        ("three_fields", ScoredField::ALL.to_vec(), false),
        ("voltage_10pct_late", vec![ScoredField::Voltage], true),
    ] {
        let config = DetectorConfig {
            fields,
            window: Duration::from_secs(300),
            ..DetectorConfig::default()
        };
        let fresh = || {
            let mut d = Detector::new(config.clone());
            let mut s = Scores::default();
            for n in 0..warm {
                d.score(&reading(&input, n, late), n as i64, 0, &mut s);
            }
            d
        };
        let mut detector = fresh();
        let mut scores = Scores::default();
        let mut n = warm;
        group.bench_function(name, |b| {
            // The rebuild at the end of the input is kept out of the timing.
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    if n == input.values.len() {
                        detector = fresh();
                        n = warm;
                    }
                    let chunk = left.min((input.values.len() - n) as u64);
                    let start = Instant::now();
                    for _ in 0..chunk {
                        detector.score(&reading(&input, n, late), n as i64, 0, &mut scores);
                        black_box(scores.fields().len());
                        n += 1;
                    }
                    elapsed += start.elapsed();
                    left -= chunk;
                }
                elapsed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
