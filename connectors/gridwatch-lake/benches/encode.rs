//! Parquet encoding and sink throughput, against a baseline in the same run.
//!
//! - `decode/avro` (baseline): decoding the framed Avro records, which the
//!   sink must do anyway; the encode figures are read as ratios to it.
//! - `encode/{zstd,snappy}`: rows to one Parquet file.
//! - `sink/local`, `sink/s3s-fs`: `write` + `flush` of 10,000 scored
//!   readings through [`LakeSink`] into a temp directory and into a real
//!   s3s-fs on loopback (skipped, with a message, if s3s-fs is missing).
//!
//! Throughput is in events: `cargo bench -p gridwatch-lake`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gridwatch_connector::{Sink, SinkRecord};
use gridwatch_contracts::ScoredReading;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_lake::encoder::{self, Provenance, ReadingRow};
use gridwatch_lake::{Compression, LakeConfig, LakeSink};

#[path = "../tests/common/mod.rs"]
mod common;

const ROWS: u64 = 10_000;

fn rows() -> Vec<ReadingRow> {
    (0..ROWS)
        .map(|o| ReadingRow::new(o, 0, common::sample_scored(0, o)))
        .collect()
}

fn encoding(c: &mut Criterion) {
    let records: Vec<_> = (0..ROWS)
        .map(|o| common::scored_record("scored", 0, o))
        .collect();
    let rows = rows();
    let refs: Vec<&ReadingRow> = rows.iter().collect();
    let p = Provenance {
        topic: "scored",
        partition: 0,
    };
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(ROWS));
    group.bench_function("decode/avro (baseline)", |b| {
        b.iter(|| {
            for r in &records {
                let framed = framing::parse(&r.value, IdWidth::ContentId4).unwrap();
                black_box(ScoredReading::from_avro(framed.datum).unwrap());
            }
        })
    });
    for (name, compression) in [("zstd", Compression::Zstd), ("snappy", Compression::Snappy)] {
        group.bench_function(BenchmarkId::new("parquet", name), |b| {
            b.iter(|| {
                let batch = encoder::readings_batch(p, &refs).unwrap();
                let props = encoder::writer_properties(compression, p, 0, ROWS - 1);
                black_box(encoder::to_parquet(&batch, props).unwrap())
            })
        });
    }
    group.finish();
}

/// `write` + `flush` of `ROWS` fresh offsets per iteration: the prepared
/// records with their offsets moved on, so input encoding is not measured.
fn sink_round(
    rt: &tokio::runtime::Runtime,
    sink: &mut LakeSink,
    input: &[SinkRecord],
    next: &mut u64,
) {
    let records: Vec<SinkRecord> = input
        .iter()
        .map(|r| SinkRecord {
            offset: r.offset + *next,
            ..r.clone()
        })
        .collect();
    *next += ROWS;
    rt.block_on(async {
        for chunk in records.chunks(500) {
            sink.write(chunk).await.unwrap();
        }
        sink.flush().await.unwrap();
    });
}

fn sinks(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let input: Vec<SinkRecord> = (0..ROWS)
        .map(|o| common::scored_record("scored", 0, o))
        .collect();
    let mut group = c.benchmark_group("sink");
    group.throughput(Throughput::Elements(ROWS));
    group.sample_size(10);

    let dir = tempfile::tempdir().unwrap();
    let mut sink = LakeSink::new(&LakeConfig::local(dir.path())).unwrap();
    let mut next = 0;
    group.bench_function("local", |b| {
        b.iter(|| sink_round(&rt, &mut sink, &input, &mut next))
    });

    let server = rt.block_on(async {
        let installed = std::panic::AssertUnwindSafe(common::S3Server::start());
        futures::FutureExt::catch_unwind(installed).await.ok()
    });
    match &server {
        Some(server) => {
            let mut sink = LakeSink::new(&server.config("bench")).unwrap();
            let mut next = 0;
            group.bench_function("s3s-fs", |b| {
                b.iter(|| sink_round(&rt, &mut sink, &input, &mut next))
            });
        }
        None => eprintln!("sink/s3s-fs skipped: s3s-fs is not installed (scripts/setup-test-env)"),
    }
    group.finish();
    if let Some(server) = server {
        rt.block_on(server.stop());
    }
}

criterion_group!(benches, encoding, sinks);
criterion_main!(benches);
