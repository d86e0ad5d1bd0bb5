//! Damaged and hostile files: every one ends in record errors or a
//! `FileError`, never a panic, and what was readable before the damage is
//! returned.

use std::io::Write;
use std::sync::Arc;

use apache_avro::types::{Record, Value};
use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use gridwatch_contracts::schema;
use gridwatch_files::{Batch, FileError, ReadOptions, open};

fn read_all(path: &std::path::Path) -> (Vec<Batch>, Option<FileError>) {
    let mut batches = Vec::new();
    let reader = match open(path, &ReadOptions::default()) {
        Ok(r) => r,
        Err(e) => return (batches, Some(e)),
    };
    for b in reader {
        match b {
            Ok(b) => batches.push(b),
            Err(e) => return (batches, Some(e)),
        }
    }
    (batches, None)
}

fn count(batches: &[Batch]) -> (usize, usize) {
    batches.iter().fold((0, 0), |(r, e), b| {
        (r + b.readings.len(), e + b.errors.len())
    })
}

fn avro_file(n: usize) -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(schema::SENSOR_READING).unwrap();
    let mut writer = apache_avro::Writer::with_codec(&schema, Vec::new(), apache_avro::Codec::Null);
    for i in 0..n {
        let mut r = Record::new(&schema).unwrap();
        r.put("meter_id", format!("m-{i}"));
        r.put("timestamp", Value::TimestampMillis(1_000 + i as i64));
        r.put("voltage", 230.0);
        r.put("current", 1.0);
        r.put("temperature", 20.0);
        r.put("status", Value::Enum(1, "DEGRADED".into()));
        writer.append(r).unwrap();
        if i % 100 == 99 {
            writer.flush().unwrap();
        }
    }
    writer.into_inner().unwrap()
}

#[test]
fn avro_reads_and_a_truncated_avro_file_ends_in_a_corrupt_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = avro_file(1000);
    let whole = dir.path().join("whole.avro");
    std::fs::write(&whole, &bytes).unwrap();
    let (batches, err) = read_all(&whole);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(count(&batches), (1000, 0));
    let first = &batches[0].readings[0];
    assert_eq!(first.timestamp, 1_000);
    assert_eq!(first.status, gridwatch_contracts::MeterStatus::Degraded);

    let cut = dir.path().join("cut.avro");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let (batches, err) = read_all(&cut);
    let (readings, _) = count(&batches);
    assert!((600..1000).contains(&readings), "{readings} {err:?}");
    assert!(matches!(err, Some(FileError::Corrupt { .. })), "{err:?}");

    let header_only = dir.path().join("header.avro");
    std::fs::write(&header_only, &bytes[..20]).unwrap();
    assert!(read_all(&header_only).1.is_some());
}

#[test]
fn avro_of_another_record_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let schema = apache_avro::Schema::parse_str(
        r#"{"type":"record","name":"Other","fields":[{"name":"x","type":"int"}]}"#,
    )
    .unwrap();
    let mut w = apache_avro::Writer::new(&schema, Vec::new());
    let mut r = Record::new(&schema).unwrap();
    r.put("x", 1);
    w.append(r).unwrap();
    let path = dir.path().join("other.avro");
    std::fs::write(&path, w.into_inner().unwrap()).unwrap();
    let err = open(&path, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("neither a SensorReading"), "{err}");
}

fn parquet_file(n: usize) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("meter_id", DataType::Utf8, true),
        Field::new("timestamp", DataType::Int64, true),
        Field::new("voltage", DataType::Float64, true),
        Field::new("current", DataType::Float64, true),
        Field::new("temperature", DataType::Float64, true),
    ]));
    let mut out = Vec::new();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(100))
        .build();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(&mut out, schema.clone(), Some(props)).unwrap();
    let ids: Vec<String> = (0..n).map(|i| format!("m-{i}")).collect();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(Int64Array::from_iter_values(0..n as i64)),
            Arc::new(Float64Array::from(vec![230.0; n])),
            Arc::new(Float64Array::from(vec![1.0; n])),
            Arc::new(Float64Array::from(vec![20.0; n])),
        ],
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    out
}

#[test]
fn parquet_without_status_reads_and_damaged_parquet_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = parquet_file(1000);
    let whole = dir.path().join("whole.parquet");
    std::fs::write(&whole, &bytes).unwrap();
    let (batches, err) = read_all(&whole);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(count(&batches), (1000, 0));

    // Cut off the footer: not readable at all.
    let cut = dir.path().join("cut.parquet");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        read_all(&cut).1,
        Some(FileError::NotFormat { .. })
    ));

    // Corrupt the data pages but keep the footer: errors, no panic.
    let mut mangled = bytes.clone();
    for b in &mut mangled[8..bytes.len() / 2] {
        *b = b.wrapping_mul(31).wrapping_add(7);
    }
    let bad = dir.path().join("mangled.parquet");
    std::fs::write(&bad, &mangled).unwrap();
    let _ = read_all(&bad);
}

#[test]
fn parquet_missing_a_column_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "meter_id",
        DataType::Utf8,
        false,
    )]));
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema.clone(), None).unwrap();
    w.write(&RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["m"]))]).unwrap())
        .unwrap();
    w.close().unwrap();
    let path = dir.path().join("narrow.parquet");
    std::fs::write(&path, out).unwrap();
    let err = open(&path, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no `timestamp` column"), "{err}");
}

#[test]
fn garbage_text_becomes_record_errors_and_long_lines_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.ndjson");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(
        f,
        r#"{{"meter_id":"m","timestamp":1,"voltage":1,"current":1,"temperature":1}}"#
    )
    .unwrap();
    f.write_all(&[0xff, 0xfe, 0x00, b'\n']).unwrap();
    f.write_all(&vec![b'x'; 3 << 20]).unwrap();
    f.write_all(b"\n").unwrap();
    // No trailing newline on the last line.
    write!(
        f,
        r#"{{"meter_id":"n","timestamp":"2026-01-01T00:00:00Z","voltage":1,"current":1,"temperature":1}}"#
    )
    .unwrap();
    drop(f);
    let (batches, err) = read_all(&path);
    assert!(err.is_none());
    let readings: Vec<_> = batches.iter().flat_map(|b| &b.readings).collect();
    let errors: Vec<_> = batches.iter().flat_map(|b| &b.errors).collect();
    assert_eq!(readings.len(), 2);
    assert_eq!(readings[1].timestamp, 1_767_225_600_000);
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].position.line, Some(2));
    assert_eq!(errors[1].position.line, Some(3));
    assert!(
        errors[1].message.contains("longer than"),
        "{}",
        errors[1].message
    );
    assert!(errors[1].original.len() <= gridwatch_files::MAX_ORIGINAL);

    let csv = dir.path().join("broken.csv");
    std::fs::write(
        &csv,
        b"meter_id,timestamp,voltage,current,temperature\nm,1,1,1,1\n\xff\xfe,\x00,1\nm,\"unterminated,1,1,1\n",
    )
    .unwrap();
    let (batches, err) = read_all(&csv);
    assert!(err.is_none(), "{err:?}");
    let (r, e) = count(&batches);
    assert_eq!(r, 1);
    assert_eq!(e, 2);

    let headerless = dir.path().join("headerless.csv");
    std::fs::write(&headerless, b"m,1,1,1,1\n").unwrap();
    let err = open(&headerless, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no `meter_id` column"), "{err}");

    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, b"").unwrap();
    assert!(open(&empty, &ReadOptions::default()).is_err());
    let empty = dir.path().join("empty.ndjson");
    std::fs::write(&empty, b"").unwrap();
    assert_eq!(read_all(&empty).0.len(), 0);
}

#[test]
fn a_large_file_streams_in_bounded_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.ndjson");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let n = 200_000;
    for i in 0..n {
        writeln!(
            f,
            r#"{{"meter_id":"m-{}","timestamp":{i},"voltage":230,"current":1,"temperature":20}}"#,
            i % 1000
        )
        .unwrap();
    }
    drop(f);
    let options = ReadOptions {
        batch_size: 1000,
        ..ReadOptions::default()
    };
    let reader = open(&path, &options).unwrap();
    let progress = reader.progress();
    let mut seen = 0u64;
    let mut last_fraction = 0.0;
    for b in reader {
        let b = b.unwrap();
        assert!(b.readings.len() <= 1000);
        // Event time is kept as written, in order.
        assert_eq!(b.readings[0].timestamp, seen as i64);
        seen += b.readings.len() as u64;
        let f = progress.fraction();
        assert!(f >= last_fraction && f <= 1.0);
        last_fraction = f;
    }
    assert_eq!(seen, n);
    assert_eq!(progress.fraction(), 1.0);
}
