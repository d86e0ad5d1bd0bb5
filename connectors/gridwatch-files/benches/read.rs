//! Read throughput per format (readings/s), against a baseline in the same
//! run: reading the NDJSON file's bytes and counting lines, which is what
//! any reader pays for I/O alone.
//!
//! `cargo bench -p gridwatch-files --bench read`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use apache_avro::types::{Record, Value};
use arrow_array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gridwatch_files::{ReadOptions, open};

const N: usize = 100_000;

fn row(i: usize) -> (String, i64, f64, f64, f64, &'static str) {
    (
        format!("meter-{:06}", i % 10_000),
        1_767_225_600_000 + i as i64 * 1000,
        230.0 + (i % 100) as f64 / 8.0,
        1.0 + (i % 13) as f64 * 0.37,
        15.0 + (i % 21) as f64 * 0.5,
        ["OK", "DEGRADED", "FAILURE"][i % 3],
    )
}

fn write_files(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let csv = dir.join("r.csv");
    let mut w = csv::Writer::from_path(&csv).unwrap();
    w.write_record([
        "meter_id",
        "timestamp",
        "voltage",
        "current",
        "temperature",
        "status",
    ])
    .unwrap();
    for i in 0..N {
        let (m, t, v, c, te, s) = row(i);
        w.write_record([
            m,
            t.to_string(),
            v.to_string(),
            c.to_string(),
            te.to_string(),
            s.into(),
        ])
        .unwrap();
    }
    w.flush().unwrap();

    let ndjson = dir.join("r.ndjson");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&ndjson).unwrap());
    for i in 0..N {
        let (m, t, v, c, te, s) = row(i);
        writeln!(
            f,
            r#"{{"meter_id":"{m}","timestamp":{t},"voltage":{v},"current":{c},"temperature":{te},"status":"{s}"}}"#
        )
        .unwrap();
    }
    f.flush().unwrap();

    let avro = dir.join("r.avro");
    let schema =
        apache_avro::Schema::parse_str(gridwatch_contracts::schema::SENSOR_READING).unwrap();
    let mut w = apache_avro::Writer::with_codec(
        &schema,
        std::fs::File::create(&avro).unwrap(),
        apache_avro::Codec::Deflate(Default::default()),
    );
    for i in 0..N {
        let (m, t, v, c, te, s) = row(i);
        let mut r = Record::new(&schema).unwrap();
        r.put("meter_id", m);
        r.put("timestamp", Value::TimestampMillis(t));
        r.put("voltage", v);
        r.put("current", c);
        r.put("temperature", te);
        r.put("status", Value::Enum((i % 3) as u32, s.into()));
        w.append(r).unwrap();
    }
    w.flush().unwrap();

    let parquet = dir.join("r.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("meter_id", DataType::Utf8, false),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("voltage", DataType::Float64, false),
        Field::new("current", DataType::Float64, false),
        Field::new("temperature", DataType::Float64, false),
        Field::new("status", DataType::Utf8, false),
    ]));
    let rows: Vec<_> = (0..N).map(row).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0))),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.1))
                    .with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.3))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.4))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.5))),
        ],
    )
    .unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&parquet).unwrap(),
        schema,
        Some(props),
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();

    vec![
        ("csv", csv),
        ("ndjson", ndjson),
        ("avro", avro),
        ("parquet", parquet),
    ]
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let files = write_files(dir.path());
    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    let ndjson = files[1].1.clone();
    g.bench_function("baseline_bytes_and_lines", |b| {
        b.iter(|| {
            let bytes = std::fs::read(&ndjson).unwrap();
            bytes.iter().filter(|&&b| b == b'\n').count()
        })
    });
    for (name, path) in &files {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut n = 0;
                for batch in open(path, &ReadOptions::default()).unwrap() {
                    n += batch.unwrap().readings.len();
                }
                assert_eq!(n, N);
                n
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
