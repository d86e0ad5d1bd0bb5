//! The lake against real destinations, read back with pyarrow: a million
//! events into a real S3 server, crashes and outages in the middle of a
//! flush, refused records, and byte-identical replays.

mod common;

use std::time::Instant;

use common::{S3Server, lake_check, offsets, sample_scored, scored_record};
use gridwatch_connector::{RetryPolicy, Sink, SinkError, SinkRecord, deliver};
use gridwatch_lake::layout::{self, Kind, TimePartition};
use gridwatch_lake::{LakeConfig, LakeSink};

/// Writes `range` of `partition` in batches of `batch`, flushing after
/// every `flush_every` records.
async fn feed(
    sink: &mut LakeSink,
    topic: &str,
    partition: u32,
    range: std::ops::Range<u64>,
    batch: usize,
    make: fn(&str, u32, u64) -> SinkRecord,
) {
    let records: Vec<_> = range.map(|o| make(topic, partition, o)).collect();
    for chunk in records.chunks(batch) {
        sink.write(chunk).await.expect("write");
    }
}

fn once(mut got: Vec<u64>, want: std::ops::Range<u64>) {
    got.sort_unstable();
    let want: Vec<u64> = want.collect();
    if got != want {
        let mut seen = std::collections::BTreeMap::<u64, usize>::new();
        for o in &got {
            *seen.entry(*o).or_default() += 1;
        }
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
        let missing: Vec<_> = want
            .iter()
            .filter(|o| !seen.contains_key(o))
            .take(5)
            .collect();
        panic!(
            "{} rows, want {}: duplicated {twice:?}…, missing {missing:?}…",
            got.len(),
            want.len()
        );
    }
}

/// US3's acceptance check: a million scored readings over four days of
/// event time (plus late ones two hours back) and their anomalies, flushed
/// every 10,000 events as the driver does, into a real S3 server; pyarrow
/// then finds every row exactly once, in the date/hour folder of its UTC
/// event time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_events_land_once_in_their_event_time_partitions_on_s3() {
    const PER_PARTITION: u64 = 500_000;
    const BATCH: u64 = 1_000;
    const CHECKPOINT: u64 = 10_000;
    let server = S3Server::start().await;
    let mut sink = LakeSink::new(&server.config("million")).expect("lake opens");
    for p in 0..2 {
        assert_eq!(sink.recover("scored", p).await.unwrap(), None);
    }

    let started = Instant::now();
    let mut since_flush = 0;
    let mut anomalies = [0u64; 2];
    for start in (0..PER_PARTITION).step_by(BATCH as usize) {
        for p in 0..2u32 {
            let batch: Vec<SinkRecord> = (start..start + BATCH)
                .map(|o| scored_record("scored", p, o))
                .collect();
            sink.write(&batch).await.expect("write");
            // The anomalies the readings raised, on their own topic.
            let raised: Vec<SinkRecord> = (start..start + BATCH)
                .filter(|o| !sample_scored(p, *o).anomalies.is_empty())
                .map(|_| {
                    let offset = anomalies[p as usize];
                    anomalies[p as usize] += 1;
                    common::anomaly_record("anomalies", p, offset)
                })
                .collect();
            sink.write(&raised).await.expect("write anomalies");
            since_flush += BATCH;
        }
        if since_flush >= CHECKPOINT {
            sink.flush().await.expect("flush");
            since_flush = 0;
        }
    }
    sink.flush().await.expect("last flush");
    let elapsed = started.elapsed();
    let stats = sink.stats();
    let events = 2 * PER_PARTITION + anomalies.iter().sum::<u64>();
    eprintln!(
        "lake → s3s-fs: {events} events in {:.1} s = {:.0} events/s (test build, incl. Avro \
         encoding of the inputs); {} files, {} commits, {:.1} MB",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        stats.files,
        stats.commits,
        stats.bytes as f64 / 1e6
    );
    assert_eq!(stats.rows, events);

    let summary = lake_check("summary", &server.reader_args("million")).await;
    eprintln!("pyarrow: {summary}");
    let readings = &summary["readings"];
    assert_eq!(readings["rows"], 2 * PER_PARTITION, "{summary}");
    assert_eq!(readings["duplicated"], 0, "{summary}");
    assert_eq!(readings["bad_partition"], 0, "{summary}");
    assert_eq!(readings["per_partition"]["0"], PER_PARTITION);
    assert_eq!(readings["per_partition"]["1"], PER_PARTITION);
    let anomaly_rows = &summary["anomalies"];
    assert_eq!(
        anomaly_rows["rows"],
        anomalies[0] + anomalies[1],
        "{summary}"
    );
    assert_eq!(anomaly_rows["duplicated"], 0, "{summary}");
    assert_eq!(anomaly_rows["bad_partition"], 0, "{summary}");
    // Four days of hourly folders at least.
    assert!(readings["files"].as_u64().unwrap() >= 96, "{summary}");
    server.stop().await;
}

/// A crash in the middle of a flush (one data file cannot be written),
/// then a restart whose driver cuts its flushes at other offsets: recovery
/// deletes what the broken flush wrote, and the replay archives each
/// reading once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_flush_is_rolled_back_and_replayed_with_other_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let config = LakeConfig::local(dir.path());
    let mut sink = LakeSink::new(&config).unwrap();
    assert_eq!(sink.recover("scored", 0).await.unwrap(), None);
    feed(&mut sink, "scored", 0, 0..100, 25, scored_record).await;
    sink.flush().await.unwrap();

    // Offsets 149, 199, 249 and 299 are two hours late and go to their own
    // file; block its name with a directory so that put fails.
    let late = TimePartition::of(Kind::Readings, sample_scored(0, 149).reading.timestamp);
    let blocked = dir
        .path()
        .join(layout::data_file(Kind::Readings, late, 0, 149, 299));
    std::fs::create_dir_all(&blocked).unwrap();
    let on_time = TimePartition::of(Kind::Readings, sample_scored(0, 100).reading.timestamp);
    assert_ne!(late, on_time);
    feed(&mut sink, "scored", 0, 100..300, 50, scored_record).await;
    let e = sink.flush().await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    drop(sink); // the crash

    std::fs::remove_dir_all(&blocked).unwrap();
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join(layout::state_file(Kind::Readings, 0))).unwrap(),
    )
    .unwrap();
    assert_eq!(state["committed"], 99, "{state}");
    assert_eq!(state["pending"]["first"], 100, "{state}");

    let mut sink = LakeSink::new(&config).unwrap();
    assert_eq!(sink.recover("scored", 0).await.unwrap(), Some(99));
    let orphan = dir
        .path()
        .join(layout::data_file(Kind::Readings, on_time, 0, 100, 298));
    assert!(!orphan.exists(), "recovery deletes {}", orphan.display());
    // Replay from an older checkpoint (50) in other chunks and flushes.
    let records: Vec<_> = (50..300).map(|o| scored_record("scored", 0, o)).collect();
    for (i, chunk) in records.chunks(33).enumerate() {
        sink.write(chunk).await.unwrap();
        if i % 2 == 1 {
            sink.flush().await.unwrap();
        }
    }
    sink.flush().await.unwrap();
    let reader = vec![dir.path().display().to_string()];
    once(offsets(&reader, "readings", 0).await, 0..300);
    let summary = lake_check("summary", &reader).await;
    assert_eq!(summary["readings"]["bad_partition"], 0, "{summary}");
}

/// The S3 server goes away between a write and its flush and comes back
/// later: the failed flush is retried with more rows, and the lake holds
/// each one once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_during_a_flush_loses_and_duplicates_nothing() {
    let server = S3Server::start().await;
    let config = server.config("outage");
    let reader = server.reader_args("outage");
    let mut sink = LakeSink::new(&config).unwrap();
    assert_eq!(sink.recover("scored", 0).await.unwrap(), None);
    feed(&mut sink, "scored", 0, 0..100, 50, scored_record).await;
    sink.flush().await.unwrap();

    let (dir, port) = server.stop().await;
    feed(&mut sink, "scored", 0, 100..200, 50, scored_record).await;
    let e = sink.flush().await.unwrap_err();
    assert!(
        e.is_transient(),
        "an unreachable lake is worth retrying: {e}"
    );
    feed(&mut sink, "scored", 0, 200..250, 50, scored_record).await;
    // Re-delivered overlap while the lake is down: skipped, not doubled.
    feed(&mut sink, "scored", 0, 150..250, 50, scored_record).await;

    let server = S3Server::start_in(dir, port).await;
    sink.flush().await.unwrap();
    once(offsets(&reader, "readings", 0).await, 0..250);
    drop(sink);
    let mut sink = LakeSink::new(&config).unwrap();
    assert_eq!(sink.recover("scored", 0).await.unwrap(), Some(249));
    server.stop().await;
}

/// Undecodable records and records of other topics go to the dead-letter
/// queue with their positions; the rest of the batch is archived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_records_are_dead_lettered_and_the_rest_archived() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = LakeSink::new(&LakeConfig::local(dir.path())).unwrap();
    let mut batch: Vec<_> = (0..10).map(|o| scored_record("scored", 0, o)).collect();
    batch[3].value = bytes::Bytes::from_static(b"{\"not\": \"avro\"}");
    batch[5].value = common::anomaly_record("scored", 0, 5).value; // the other record type
    batch[6].value.truncate(9);
    let mut foreign = scored_record("dead-letter", 0, 10);
    foreign.partition = 0;
    let out = deliver(&mut sink, &batch, &RetryPolicy::default()).await;
    assert_eq!(out.written, 7, "{out:?}");
    let refused: Vec<_> = out
        .dead_letters
        .iter()
        .map(|d| d.source_offset.unwrap())
        .collect();
    assert_eq!(refused, [3, 5, 6]);
    assert!(
        out.dead_letters[0].message.contains("not framed Avro"),
        "{:?}",
        out.dead_letters[0]
    );
    let Err(SinkError::Rejected(r)) = sink.write(&[foreign]).await else {
        panic!("a record of another topic is refused")
    };
    assert!(r[0].1.contains("\"dead-letter\""), "{r:?}");
    assert!(sink.recover("dead-letter", 0).await.is_err());
    sink.flush().await.unwrap();
    let mut got = offsets(&[dir.path().display().to_string()], "readings", 0).await;
    got.sort_unstable();
    assert_eq!(got, [0, 1, 2, 4, 7, 8, 9]);
}

/// A replay with the same flush boundaries rewrites byte-identical
/// objects, and the default compression and snappy both read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_write_byte_identical_files() {
    let mut listings = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = LakeSink::new(&LakeConfig::local(dir.path())).unwrap();
        feed(&mut sink, "scored", 0, 0..500, 100, scored_record).await;
        sink.flush().await.unwrap();
        feed(&mut sink, "anomalies", 2, 0..40, 40, common::anomaly_record).await;
        sink.flush().await.unwrap();
        let mut files = Vec::new();
        for dataset in ["readings", "anomalies"] {
            let mut stack = vec![dir.path().join(dataset)];
            while let Some(d) = stack.pop() {
                for entry in std::fs::read_dir(d).unwrap() {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        stack.push(path);
                    } else {
                        let rel = path.strip_prefix(dir.path()).unwrap().to_owned();
                        files.push((rel, std::fs::read(&path).unwrap()));
                    }
                }
            }
        }
        files.sort();
        listings.push((files, dir));
    }
    assert!(listings[0].0.len() >= 3, "{:?}", listings[0].0.len());
    assert_eq!(listings[0].0, listings[1].0);

    let dir = tempfile::tempdir().unwrap();
    let config = LakeConfig {
        compression: gridwatch_lake::Compression::Snappy,
        ..LakeConfig::local(dir.path())
    };
    let mut sink = LakeSink::new(&config).unwrap();
    feed(&mut sink, "scored", 1, 0..300, 100, scored_record).await;
    sink.flush().await.unwrap();
    once(
        offsets(&[dir.path().display().to_string()], "readings", 1).await,
        0..300,
    );
}

/// A buffer that reaches `max_buffered_rows` is committed during `write`,
/// cut at an offset, and recovery reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_buffers_commit_before_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = LakeConfig {
        max_buffered_rows: 100,
        ..LakeConfig::local(dir.path())
    };
    let mut sink = LakeSink::new(&config).unwrap();
    feed(&mut sink, "scored", 0, 0..250, 50, scored_record).await;
    assert!(sink.buffered_rows() <= 100, "{}", sink.buffered_rows());
    drop(sink);
    let mut sink = LakeSink::new(&config).unwrap();
    assert_eq!(sink.recover("scored", 0).await.unwrap(), Some(199));
    once(
        offsets(&[dir.path().display().to_string()], "readings", 0).await,
        0..200,
    );
}

/// Offsets of one topic cannot silently continue another's: a lake written
/// from `scored` refuses a sink that now reads `scored-v2` into readings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_refuses_offsets_of_another_topic() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = LakeSink::new(&LakeConfig::local(dir.path())).unwrap();
    feed(&mut sink, "scored", 0, 0..10, 10, scored_record).await;
    sink.flush().await.unwrap();
    let config = LakeConfig {
        readings_topic: "scored-v2".into(),
        ..LakeConfig::local(dir.path())
    };
    let mut sink = LakeSink::new(&config).unwrap();
    let e = sink.recover("scored-v2", 0).await.unwrap_err();
    assert!(!e.is_transient());
    assert!(
        e.to_string().contains("written from topic \"scored\""),
        "{e}"
    );
}
