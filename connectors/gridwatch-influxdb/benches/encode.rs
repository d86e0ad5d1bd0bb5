//! Line-protocol encoding and gzip cost per anomaly.
//!
//! `cargo bench -p gridwatch-influxdb --bench encode`. The baseline in the
//! same run is decoding alone (framed Avro → `AnomalyEvent`), which every
//! sink pays; the encode group shows what line protocol adds on top, and
//! the gzip group compares level 1 (what the sink uses) with level 6.

use std::hint::black_box;
use std::io::Write as _;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flate2::Compression;
use flate2::write::GzEncoder;
use gridwatch_connector::testkit::anomaly_record;
use gridwatch_contracts::AnomalyEvent;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_influxdb::LineEncoder;

const N: u64 = 5000;

fn bench(c: &mut Criterion) {
    let records: Vec<_> = (0..N)
        .map(|o| anomaly_record("anomalies", 0, o, 1))
        .collect();
    let encoder = LineEncoder::new("anomalies");

    let mut group = c.benchmark_group("influxdb-encode");
    group.throughput(Throughput::Elements(N));
    group.bench_function("baseline: decode only", |b| {
        b.iter(|| {
            for r in &records {
                let framed = framing::parse(&r.value, IdWidth::ContentId4).unwrap();
                black_box(AnomalyEvent::from_avro(framed.datum).unwrap());
            }
        })
    });
    let mut body = Vec::with_capacity(2 << 20);
    group.bench_function("decode + line protocol", |b| {
        b.iter(|| {
            body.clear();
            for r in &records {
                encoder.encode_record(r, &mut body).unwrap();
            }
            black_box(body.len());
        })
    });
    group.finish();

    body.clear();
    for r in &records {
        encoder.encode_record(r, &mut body).unwrap();
    }
    let mut group = c.benchmark_group("influxdb-gzip");
    group.throughput(Throughput::Elements(N));
    for (name, level) in [
        ("level 1 (used)", Compression::fast()),
        ("level 6", Compression::default()),
    ] {
        let compressed = gzip(&body, level).len();
        println!(
            "gzip {name}: {} → {compressed} bytes for {N} points ({:.1}:1)",
            body.len(),
            body.len() as f64 / compressed as f64
        );
        group.bench_function(name, |b| b.iter(|| black_box(gzip(&body, level))));
    }
    group.finish();
}

fn gzip(body: &[u8], level: Compression) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), level);
    e.write_all(body).unwrap();
    e.finish().unwrap()
}

criterion_group!(benches, bench);
criterion_main!(benches);
