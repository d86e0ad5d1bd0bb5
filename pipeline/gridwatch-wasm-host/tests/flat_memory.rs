//! A long-lived validate → detect chain keeps its memory flat: the guests'
//! linear memory and the host's RSS after 2M records and after 20M differ by
//! less than a few MB. (In `fluvio-smartengine` the same chain grows by about
//! 83 MB per 500,000 records and traps after about 5.5M.)
//!
//! `GRIDWATCH_FLAT_MEMORY_RECORDS` sets the record count (default 20M).
//!
//! The input is 50 meters reading once a second, with noise, spikes and
//! status episodes, so detect scores every reading against sliding windows,
//! as in production. A template of 100,000 framed-Avro readings is encoded
//! once; each pass over it moves the timestamps forward in place (the Avro
//! long keeps its 6-byte varint length), so event time keeps advancing
//! without re-encoding, and the batches get advancing base offsets.

mod common;

use std::time::{Duration, Instant};

use common::{gridwatch_chain, rss_bytes};
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::{ChainRecord, MeterStatus, SensorReading};
use gridwatch_tests::inputs::framed_avro;
use gridwatch_wasm_host::{Batch, Output};

const METERS: usize = 50;
const BATCH: usize = 10_000;
const TEMPLATE: usize = 100_000;
const CHECKPOINT: u64 = 2_000_000;
const DEFAULT_RECORDS: u64 = 20_000_000;
/// 2026-01-01, the first reading's event time.
const T0: i64 = 1_767_225_600_000;
/// The Avro long of a timestamp between 2^34 and 2^41 ms (1970+6 months to
/// 2039) is a 6-byte varint.
const TS_VARINT_LEN: usize = 6;

/// One encoded reading and where its timestamp sits in it.
struct Templated {
    bytes: Vec<u8>,
    ts_at: usize,
    ts: i64,
}

fn template() -> Vec<Templated> {
    let ids: Vec<String> = (0..METERS).map(|m| format!("meter-{m:03}")).collect();
    (0..TEMPLATE)
        .map(|k| {
            let meter = k % METERS;
            let second = (k / METERS) as i64;
            // Deterministic noise in [-1.5, 1.5] V, a surge now and then.
            let noise = ((k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f64
                / (1u64 << 24) as f64
                * 3.0
                - 1.5;
            let surge = if k % 1999 == 0 { 25.0 } else { 0.0 };
            let status = match (meter, second % 900) {
                (7, 500..=505) => MeterStatus::Failure,
                (11, 100..=110) => MeterStatus::Degraded,
                _ => MeterStatus::Ok,
            };
            let reading = SensorReading {
                meter_id: ids[meter].clone(),
                timestamp: T0 + second * 1000,
                voltage: 230.0 + noise + surge,
                current: 5.0 + noise / 10.0,
                temperature: 35.0 + noise,
                status,
            };
            let bytes = framed_avro(&reading);
            // Framing header (5), the id's length (1 byte), the id.
            let ts_at = 5 + 1 + reading.meter_id.len();
            assert_eq!(
                read_zigzag(&bytes[ts_at..ts_at + TS_VARINT_LEN]),
                Some(reading.timestamp)
            );
            Templated {
                bytes,
                ts_at,
                ts: reading.timestamp,
            }
        })
        .collect()
}

fn read_zigzag(bytes: &[u8]) -> Option<i64> {
    let mut raw = 0u64;
    for (i, b) in bytes.iter().enumerate() {
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (i + 1 == bytes.len()).then_some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    None
}

fn write_zigzag(out: &mut [u8], value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    for (i, b) in out.iter_mut().enumerate() {
        let last = i + 1 == TS_VARINT_LEN;
        *b = (raw & 0x7f) as u8 | if last { 0 } else { 0x80 };
        raw >>= 7;
    }
    debug_assert_eq!(raw, 0, "the timestamp left the 6-byte range");
}

#[derive(Debug, Clone, Copy)]
struct Checkpoint {
    records: u64,
    guest: usize,
    rss: usize,
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Readings detect scored (had a baseline), and anomalies, in one output.
fn scored_and_anomalies(output: &Output) -> (usize, usize) {
    output
        .iter()
        .filter_map(|r| match ChainRecord::from_avro(r.value) {
            Ok(ChainRecord::Scored(s)) => Some((
                usize::from(s.scores.iter().any(|x| x.zscore.is_some())),
                s.anomalies.len(),
            )),
            _ => None,
        })
        .fold((0, 0), |(a, b), (x, y)| (a + x, b + y))
}

#[test]
fn memory_stays_flat_over_twenty_million_records() {
    let total: u64 = std::env::var("GRIDWATCH_FLAT_MEMORY_RECORDS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(DEFAULT_RECORDS)
        .max(BATCH as u64 * 2);
    let batches = total.div_ceil(BATCH as u64);
    let checkpoint_every = CHECKPOINT.min((batches / 10).max(1) * BATCH as u64);

    let mut template = template();
    let span_ms = (TEMPLATE / METERS) as i64 * 1000;
    let mut chain = gridwatch_chain(&[]).build().expect("chain");
    let mut batch = Batch::with_capacity(BATCH * 80);
    let mut output = Output::default();
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    let mut in_chain = Duration::ZERO;
    let started = Instant::now();
    let (mut scored, mut anomalies) = (0, 0);

    for n in 0..batches {
        let first = (n as usize * BATCH) % TEMPLATE;
        let pass = (n as usize * BATCH / TEMPLATE) as i64;
        batch.clear();
        let mut newest = 0;
        for t in &mut template[first..first + BATCH] {
            let ts = t.ts + pass * span_ms;
            write_zigzag(&mut t.bytes[t.ts_at..t.ts_at + TS_VARINT_LEN], ts);
            batch.push(&t.bytes);
            newest = ts;
        }
        let base_offset = n as i64 * BATCH as i64;
        let start = Instant::now();
        chain
            .process_batch_into(&batch, base_offset, newest, &mut output)
            .expect("the chain keeps running");
        in_chain += start.elapsed();
        assert_eq!(output.len(), BATCH);
        assert!(output.error().is_none(), "{:?}", output.error());

        let done = (n + 1) * BATCH as u64;
        if done.is_multiple_of(checkpoint_every) || n + 1 == batches {
            let (s, a) = scored_and_anomalies(&output);
            scored += s;
            anomalies += a;
            let checkpoint = Checkpoint {
                records: done,
                guest: chain.memory_size(),
                rss: rss_bytes().unwrap_or(0),
            };
            let per_module: Vec<String> = chain
                .modules()
                .map(|m| format!("{} {:.1} MiB", m.name, mib(m.memory_bytes)))
                .collect();
            println!(
                "{:>11} records: guest memory {:.1} MiB ({}), host RSS {:.1} MiB, {:.0} records/s in the chain",
                checkpoint.records,
                mib(checkpoint.guest),
                per_module.join(", "),
                mib(checkpoint.rss),
                done as f64 / in_chain.as_secs_f64(),
            );
            checkpoints.push(checkpoint);
        }
    }
    let wall = started.elapsed();
    let processed = batches * BATCH as u64;
    println!(
        "{processed} records in {:.1} s: {:.0} records/s in the chain, {:.0} records/s including input preparation",
        wall.as_secs_f64(),
        processed as f64 / in_chain.as_secs_f64(),
        processed as f64 / wall.as_secs_f64(),
    );

    // The workload was the real one: readings were scored, anomalies found.
    assert!(scored > BATCH, "only {scored} scored readings sampled");
    assert!(anomalies > 0, "no anomalies in the sampled batches");

    let first = checkpoints.first().copied().expect("a checkpoint");
    let last = checkpoints.last().copied().expect("a checkpoint");
    let guest_growth = last.guest.saturating_sub(first.guest);
    let rss_growth = last.rss.saturating_sub(first.rss);
    println!(
        "from {} to {} records: guest memory +{:.2} MiB, host RSS +{:.2} MiB",
        first.records,
        last.records,
        mib(guest_growth),
        mib(rss_growth)
    );
    assert!(
        guest_growth <= 2 * 1024 * 1024,
        "guest memory grew by {guest_growth} bytes"
    );
    assert!(
        rss_growth <= 8 * 1024 * 1024,
        "host RSS grew by {rss_growth} bytes"
    );
}
