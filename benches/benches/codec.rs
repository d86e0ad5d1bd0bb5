//! Avro encode and decode of the records on the hot path, against the JSON
//! edge format in the same run (the baseline a reader knows).
//!
//! - `SensorReading`: what ingest writes and validate reads, per reading;
//! - `ScoredReading`: what detect writes and every sink reads, per reading
//!   (real ones: the golden readings scored by the native detector, so the
//!   evidence fields and the occasional anomaly are there).
//!
//! `cargo bench -p gridwatch-benches --bench codec`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::json::parse_reading;
use gridwatch_contracts::{ScoredReading, SensorReading};
use gridwatch_detector::{Detector, DetectorConfig};
use gridwatch_tests::golden;

const N: usize = 10_000;

fn bench(c: &mut Criterion) {
    let readings: Vec<SensorReading> = golden::readings().into_iter().take(N).collect();
    let mut detector = Detector::new(DetectorConfig::default());
    let scored: Vec<ScoredReading> = readings
        .iter()
        .enumerate()
        .map(|(i, r)| detector.process(r, i as i64, 0))
        .collect();
    let reading_avro: Vec<Vec<u8>> = readings
        .iter()
        .map(|r| r.to_avro().expect("avro"))
        .collect();
    let reading_json: Vec<Vec<u8>> = readings
        .iter()
        .map(|r| serde_json::to_vec(r).expect("json"))
        .collect();
    let scored_avro: Vec<Vec<u8>> = scored.iter().map(|s| s.to_avro().expect("avro")).collect();

    let mut group = c.benchmark_group("codec_sensor_reading");
    group
        .sample_size(20)
        .throughput(Throughput::Elements(N as u64));
    let mut buf = Vec::with_capacity(256);
    group.bench_function("avro_encode", |b| {
        b.iter(|| {
            for r in &readings {
                buf.clear();
                r.encode_into(&mut buf).expect("encode");
                black_box(&buf);
            }
        })
    });
    group.bench_function("avro_decode", |b| {
        b.iter(|| {
            for bytes in &reading_avro {
                black_box(SensorReading::from_avro(bytes).expect("decode"));
            }
        })
    });
    group.bench_function("json_parse_baseline", |b| {
        b.iter(|| {
            for bytes in &reading_json {
                black_box(parse_reading(bytes).expect("parse"));
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("codec_scored_reading");
    group
        .sample_size(20)
        .throughput(Throughput::Elements(N as u64));
    group.bench_function("avro_encode", |b| {
        b.iter(|| {
            for s in &scored {
                buf.clear();
                s.encode_into(&mut buf).expect("encode");
                black_box(&buf);
            }
        })
    });
    group.bench_function("avro_decode", |b| {
        b.iter(|| {
            for bytes in &scored_avro {
                black_box(ScoredReading::from_avro(bytes).expect("decode"));
            }
        })
    });
    group.bench_function("json_encode_baseline", |b| {
        b.iter(|| {
            for s in &scored {
                buf.clear();
                serde_json::to_writer(&mut buf, s).expect("json");
                black_box(&buf);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
