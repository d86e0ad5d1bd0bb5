//! Files written by independent writers (Python's csv and json, fastavro,
//! pyarrow) read back exactly: every reading, in order, event time intact,
//! and every bad record reported at its position.

use std::path::{Path, PathBuf};
use std::process::Command;

use gridwatch_contracts::SensorReading;
use gridwatch_files::{Format, ReadOptions, open};

/// The test venv's Python, if it has the writers.
fn python() -> Option<PathBuf> {
    let candidates = std::env::var_os("GRIDWATCH_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            std::env::var_os("HOME")
                .map(|h| Path::new(&h).join(".cache/gridwatch/venv/bin/python")),
        );
    for python in candidates {
        let ok = Command::new(&python)
            .args(["-c", "import fastavro, pyarrow"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(python);
        }
    }
    eprintln!(
        "SKIP: no Python with fastavro and pyarrow; run scripts/setup-test-env (venv at \
         $HOME/.cache/gridwatch/venv from tests/python/requirements.txt) or set GRIDWATCH_PYTHON"
    );
    None
}

struct Fixtures {
    dir: tempfile::TempDir,
    expected: serde_json::Value,
}

fn fixtures() -> Option<Fixtures> {
    let python = python()?;
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python)
        .arg(root.join("tests/python/write_fixtures.py"))
        .arg(dir.path())
        .arg(root.join("../../schemas/avro"))
        .output()
        .expect("run the fixture writer");
    assert!(
        out.status.success(),
        "write_fixtures.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected =
        serde_json::from_slice(&std::fs::read(dir.path().join("expected.json")).unwrap()).unwrap();
    Some(Fixtures { dir, expected })
}

fn check(fx: &Fixtures, name: &str, format: Format, batch_size: usize) {
    let path = fx.dir.path().join(name);
    let want: Vec<SensorReading> =
        serde_json::from_value(fx.expected[name]["readings"].clone()).unwrap();
    let want_errors: Vec<u64> =
        serde_json::from_value(fx.expected[name]["errors"].clone()).unwrap();
    let options = ReadOptions {
        batch_size,
        ..ReadOptions::default()
    };
    let reader = open(&path, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(reader.format(), format, "{name}");
    let progress = reader.progress();
    let total = std::fs::metadata(&path).unwrap().len();
    assert_eq!(progress.total_bytes(), total);
    let mut got = Vec::new();
    let mut errors = Vec::new();
    for batch in reader {
        let batch = batch.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            batch.readings.len() + batch.errors.len() <= batch_size,
            "{name}: a batch holds at most batch_size records"
        );
        assert!(!batch.is_empty());
        got.extend(batch.readings);
        errors.extend(batch.errors);
    }
    assert_eq!(got.len(), want.len(), "{name}: reading count");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        // The expected values went through serde_json, which (without its
        // float_roundtrip feature) may round the last bit differently.
        let close = |a: f64, b: f64| (a - b).abs() <= a.abs().max(b.abs()) * 4.0 * f64::EPSILON;
        assert!(
            g.meter_id == w.meter_id
                && g.timestamp == w.timestamp
                && g.status == w.status
                && close(g.voltage, w.voltage)
                && close(g.current, w.current)
                && close(g.temperature, w.temperature),
            "{name}: reading {i}: got {g:?}, want {w:?}"
        );
    }
    let error_records: Vec<u64> = errors.iter().map(|e| e.position.record).collect();
    assert_eq!(error_records, want_errors, "{name}: errors {errors:#?}");
    for e in &errors {
        assert!(!e.message.is_empty());
        let dl = e.to_dead_letter(&path, 1);
        assert_eq!(dl.stage, "ingest");
        assert_eq!(dl.source_offset, Some(e.position.record as i64));
    }
    assert_eq!(
        progress.bytes_read(),
        total,
        "{name}: progress ends at 100%"
    );
    assert_eq!(progress.readings(), want.len() as u64);
    assert_eq!(progress.errors(), want_errors.len() as u64);
}

#[test]
fn every_format_from_independent_writers_reads_back_exactly() {
    let Some(fx) = fixtures() else { return };
    for batch_size in [1, 64, 8192] {
        check(&fx, "readings.csv", Format::Csv, batch_size);
        check(&fx, "readings.ndjson", Format::Ndjson, batch_size);
        check(&fx, "readings.avro", Format::Avro, batch_size);
        check(&fx, "scored.avro", Format::Avro, batch_size);
        check(&fx, "anomalies.avro", Format::Avro, batch_size);
        check(&fx, "readings.parquet", Format::Parquet, batch_size);
        check(&fx, "lake-like.parquet", Format::Parquet, batch_size);
    }
}

#[test]
fn csv_errors_carry_line_and_reason() {
    let Some(fx) = fixtures() else { return };
    let path = fx.dir.path().join("readings.csv");
    let errors: Vec<_> = open(&path, &ReadOptions::default())
        .unwrap()
        .flat_map(|b| b.unwrap().errors)
        .collect();
    let first: Vec<_> = errors.iter().take(3).collect();
    // Header is line 1; readings 0..=100 are lines 2..=102.
    assert_eq!(first[0].position.line, Some(103));
    assert_eq!(first[0].reason, "SCHEMA_MISMATCH");
    assert!(first[0].message.contains("voltage"), "{}", first[0].message);
    assert_eq!(first[0].original, b"OK,bad-volt,1767225600000,high,1,1,");
    assert_eq!(first[1].reason, "TIMESTAMP_OUT_OF_RANGE");
    assert_eq!(first[2].reason, "SCHEMA_MISMATCH");
    assert!(first[2].message.contains("WEIRD"));
}

#[test]
fn misnamed_files_are_detected_by_magic_bytes() {
    let Some(fx) = fixtures() else { return };
    let renamed = fx.dir.path().join("actually-parquet.csv");
    std::fs::copy(fx.dir.path().join("readings.parquet"), &renamed).unwrap();
    assert_eq!(
        open(&renamed, &ReadOptions::default()).unwrap().format(),
        Format::Parquet
    );
    let renamed = fx.dir.path().join("actually-avro.data");
    std::fs::copy(fx.dir.path().join("readings.avro"), &renamed).unwrap();
    assert_eq!(
        open(&renamed, &ReadOptions::default()).unwrap().format(),
        Format::Avro
    );
}
