//! Throughput of the embedded log with 100-byte records.
//!
//! All cases run in one process on the same disk so that they can be
//! compared: durable (fsync) appends in batches of 1,000 and 10,000 from one
//! producer, the same from four producers sharing fsyncs through group
//! commit, the no-fsync path as a baseline, and reads of 10,000 records.
//!
//! Run with `cargo bench -p gridwatch-log`. The data directory is a temporary
//! folder on the same file system as the target directory, so that fsync
//! costs what it costs in production rather than on a tmpfs.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gridwatch_log::{Durability, LogOptions, Partition, PartitionConfig, ReadLimits, Record};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Size of each record's value, the size the project's target is stated in.
const RECORD_BYTES: usize = 100;
/// Keeps a long benchmark from filling the disk; retention deletes whole
/// segments as the log rolls, as it would in production.
const RETENTION_BYTES: u64 = 512 << 20;

fn bench_dir() -> tempfile::TempDir {
    // Next to `target/`, i.e. on the real disk, not in a RAM-backed /tmp.
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-data");
    let made = std::fs::create_dir_all(&base).and_then(|()| tempfile::tempdir_in(&base));
    made.unwrap_or_else(|e| panic!("cannot create a bench directory under {base:?}: {e}"))
}

fn open(dir: &tempfile::TempDir, name: &str, durability: Durability) -> Partition {
    let options = LogOptions {
        durability,
        ..LogOptions::default()
    };
    let config = PartitionConfig {
        retention_bytes: Some(RETENTION_BYTES),
        ..PartitionConfig::new(&gridwatch_log::TopicConfig::new(1), &options)
    };
    Partition::open(dir.path().join(name), config)
        .unwrap_or_else(|e| panic!("cannot open partition {name}: {e}"))
}

fn records(payload: &[u8], n: usize) -> Vec<Record<'_>> {
    (0..n)
        .map(|i| Record::new(1_700_000_000_000 + i as i64, payload))
        .collect()
}

fn append(c: &mut Criterion) {
    let dir = bench_dir();
    let payload = vec![0x5a_u8; RECORD_BYTES];
    let mut group = c.benchmark_group("append");
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));

    for (durability, label) in [(Durability::Fsync, "fsync"), (Durability::None, "no_fsync")] {
        for batch in [1_000usize, 10_000] {
            let p = open(&dir, &format!("{label}-{batch}"), durability);
            let recs = records(&payload, batch);
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(
                BenchmarkId::new(format!("{label}/1_producer"), batch),
                |b| b.iter(|| black_box(p.append_batch(&recs).expect("append"))),
            );
        }
    }

    // Four producers on one partition: the case group commit exists for.
    for batch in [1_000usize, 10_000] {
        let producers = 4;
        let p = Arc::new(open(&dir, &format!("group-{batch}"), Durability::Fsync));
        group.throughput(Throughput::Elements((batch * producers) as u64));
        group.bench_function(BenchmarkId::new("fsync/4_producers", batch), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                thread::scope(|s| {
                    for _ in 0..producers {
                        let p = Arc::clone(&p);
                        let payload = &payload;
                        s.spawn(move || {
                            let recs = records(payload, batch);
                            for _ in 0..iters {
                                black_box(p.append_batch(&recs).expect("append"));
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    let dir = bench_dir();
    let payload = vec![0x5a_u8; RECORD_BYTES];
    let p = open(&dir, "read", Durability::None);
    let total = 2_000_000u64;
    let recs = records(&payload, 10_000);
    while p.high_watermark() < total {
        p.append_batch(&recs).expect("fill");
    }
    let mut group = c.benchmark_group("read");
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for batch in [100usize, 10_000] {
        group.throughput(Throughput::Elements(batch as u64));
        let mut next = 0u64;
        group.bench_function(BenchmarkId::new("sequential", batch), |b| {
            b.iter(|| {
                if next + batch as u64 > total {
                    next = 0;
                }
                let got = p
                    .read(next, ReadLimits::new(batch, usize::MAX))
                    .expect("read");
                next += got.len() as u64;
                black_box(got)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, append, read);
criterion_main!(benches);
