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
/// event time (plus late ones two hours back) and their anomalies, in
/// batches of 5,000 (the driver's default `batch_max`; each is committed as
/// it is written) and flushed every 10,000 events as the driver does, into
/// a real S3 server; pyarrow
/// then finds every row exactly once, in the date/hour folder of its UTC
/// event time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_events_land_once_in_their_event_time_partitions_on_s3() {
    const PER_PARTITION: u64 = 500_000;
    const BATCH: u64 = 5_000;
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

/// A crash in the middle of a commit (one data file cannot be written),
/// then a restart whose driver cuts its batches at other offsets: recovery
/// deletes what the broken commit wrote, and the replay archives each
/// reading once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_commit_is_rolled_back_and_replayed_with_other_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let config = LakeConfig::local(dir.path());
    let mut sink = LakeSink::new(&config).unwrap();
    assert_eq!(sink.recover("scored", 0).await.unwrap(), None);
    feed(&mut sink, "scored", 0, 0..100, 25, scored_record).await;

    // Offset 149 is two hours late and goes to its own file; block its name
    // with a directory so that put fails.
    let late = TimePartition::of(Kind::Readings, sample_scored(0, 149).reading.timestamp);
    let blocked = dir
        .path()
        .join(layout::data_file(Kind::Readings, late, 0, 149, 149));
    std::fs::create_dir_all(&blocked).unwrap();
    let on_time = TimePartition::of(Kind::Readings, sample_scored(0, 100).reading.timestamp);
    assert_ne!(late, on_time);
    let batch: Vec<_> = (100..150).map(|o| scored_record("scored", 0, o)).collect();
    let e = sink.write(&batch).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert_eq!(
        sink.buffered_rows(),
        0,
        "a failed batch stays buffered nowhere"
    );
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
        .join(layout::data_file(Kind::Readings, on_time, 0, 100, 148));
    assert!(!orphan.exists(), "recovery deletes {}", orphan.display());
    // Replay from an older checkpoint (50) in other chunks.
    let records: Vec<_> = (50..300).map(|o| scored_record("scored", 0, o)).collect();
    for chunk in records.chunks(33) {
        sink.write(chunk).await.unwrap();
    }
    sink.flush().await.unwrap();
    let reader = vec![dir.path().display().to_string()];
    once(offsets(&reader, "readings", 0).await, 0..300);
    let summary = lake_check("summary", &reader).await;
    assert_eq!(summary["readings"]["bad_partition"], 0, "{summary}");
}

/// The S3 server goes away and comes back later (issue #9): writes fail
/// as transient, so the driver's retry budget runs out and the batch is
/// dead-lettered with its reason, nothing of it buffered; the sink moves on
/// once S3 is back, and replaying the dead letters (a sink that did not
/// recover, as `gridwatch dlq replay` builds) fills the gap exactly once,
/// however often the replay and the live overlap are re-delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_dead_letters_batches_and_a_replay_fills_the_gap_once() {
    let server = S3Server::start().await;
    let config = server.config("outage");
    let reader = server.reader_args("outage");
    let mut sink = LakeSink::new(&config).unwrap();
    assert_eq!(sink.recover("scored", 0).await.unwrap(), None);
    feed(&mut sink, "scored", 0, 0..100, 50, scored_record).await;

    let (dir, port) = server.stop().await;
    let quick = RetryPolicy {
        initial_backoff: std::time::Duration::from_millis(5),
        max_backoff: std::time::Duration::from_millis(10),
        max_retries: 2,
        multiplier: 2.0,
    };
    let down: Vec<_> = (100..150).map(|o| scored_record("scored", 0, o)).collect();
    let out = deliver(&mut sink, &down, &quick).await;
    assert_eq!(out.written, 0, "{out:?}");
    assert_eq!(out.retries, 2);
    assert_eq!(out.dead_letters.len(), 50);
    assert!(
        out.dead_letters
            .iter()
            .all(|d| d.reason == "RETRIES_EXHAUSTED" && d.stage == "lake"),
        "{:?}",
        out.dead_letters[0]
    );
    assert!(
        out.dead_letters[0].message.contains("lake"),
        "the reason names the failure: {}",
        out.dead_letters[0].message
    );
    assert_eq!(sink.buffered_rows(), 0, "nothing of a failed batch is held");

    let server = S3Server::start_in(dir, port).await;
    // The sink moves on after the dead-lettered batch.
    feed(&mut sink, "scored", 0, 150..250, 50, scored_record).await;
    let mut got = offsets(&reader, "readings", 0).await;
    got.sort_unstable();
    assert_eq!(got, (0..100).chain(150..250).collect::<Vec<_>>());

    // The replay: the dead letters' records with their source positions.
    let replayed: Vec<SinkRecord> = out
        .dead_letters
        .iter()
        .map(|d| SinkRecord {
            topic: d.source_topic.clone().unwrap(),
            partition: d.source_partition.unwrap() as u32,
            offset: d.source_offset.unwrap() as u64,
            timestamp_ms: d.first_failed_at,
            key: None,
            value: bytes::Bytes::from(d.original.clone()),
        })
        .collect();
    let mut replay = LakeSink::replaying(&config).unwrap();
    replay.write(&replayed).await.unwrap();
    replay.flush().await.unwrap();
    // Again, by the same and by a new replaying sink, with the live
    // overlap re-delivered to both kinds: nothing is doubled.
    replay.write(&replayed).await.unwrap();
    let mut again = LakeSink::replaying(&config).unwrap();
    again.write(&replayed).await.unwrap();
    feed(&mut again, "scored", 0, 0..250, 40, scored_record).await;
    feed(&mut sink, "scored", 0, 100..250, 50, scored_record).await;
    let mut live = LakeSink::new(&config).unwrap();
    assert_eq!(live.recover("scored", 0).await.unwrap(), Some(249));
    live.write(&replayed).await.unwrap();
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

/// Every batch is committed by its `write`; one with more rows than
/// `max_buffered_rows` is committed in pieces cut at offsets, and recovery
/// reports the last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_max_buffered_rows_is_committed_in_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let config = LakeConfig {
        max_buffered_rows: 100,
        ..LakeConfig::local(dir.path())
    };
    let mut sink = LakeSink::new(&config).unwrap();
    feed(&mut sink, "scored", 0, 0..250, 250, scored_record).await;
    assert_eq!(sink.buffered_rows(), 0);
    assert_eq!(sink.stats().commits, 3, "{:?}", sink.stats());
    drop(sink);
    let mut sink = LakeSink::new(&config).unwrap();
    assert_eq!(sink.recover("scored", 0).await.unwrap(), Some(249));
    once(
        offsets(&[dir.path().display().to_string()], "readings", 0).await,
        0..250,
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

/// A replay that runs before the live sink has committed past the batch it
/// dead-lettered fills it all the same; a live sink that restarts and is
/// re-delivered that batch skips what the replay filled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_ahead_of_the_live_commit_is_not_doubled_by_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = LakeConfig::local(dir.path());
    let mut live = LakeSink::new(&config).unwrap();
    assert_eq!(live.recover("scored", 0).await.unwrap(), None);
    feed(&mut live, "scored", 0, 0..50, 50, scored_record).await;

    // The lake refuses the next commit: its state object cannot be replaced.
    let state = dir.path().join(layout::state_file(Kind::Readings, 0));
    let saved = std::fs::read(&state).unwrap();
    std::fs::remove_file(&state).unwrap();
    std::fs::create_dir(&state).unwrap();
    let quick = RetryPolicy {
        initial_backoff: std::time::Duration::from_millis(1),
        max_backoff: std::time::Duration::from_millis(2),
        max_retries: 1,
        multiplier: 2.0,
    };
    let batch: Vec<_> = (50..100).map(|o| scored_record("scored", 0, o)).collect();
    let out = deliver(&mut live, &batch, &quick).await;
    assert_eq!(out.dead_letters.len(), 50, "{out:?}");
    std::fs::remove_dir(&state).unwrap();
    std::fs::write(&state, saved).unwrap();
    drop(live); // a crash before the live sink commits past the gap

    let mut replay = LakeSink::replaying(&config).unwrap();
    replay.write(&batch).await.unwrap();
    replay.flush().await.unwrap();
    let reader = vec![dir.path().display().to_string()];
    once(offsets(&reader, "readings", 0).await, 0..100);

    // The restart re-delivers from the checkpoint before the gap.
    let mut live = LakeSink::new(&config).unwrap();
    assert_eq!(live.recover("scored", 0).await.unwrap(), Some(49));
    feed(&mut live, "scored", 0, 50..150, 25, scored_record).await;
    once(offsets(&reader, "readings", 0).await, 0..150);
    // A second replay finds everything in place.
    let mut again = LakeSink::replaying(&config).unwrap();
    again.write(&batch).await.unwrap();
    once(offsets(&reader, "readings", 0).await, 0..150);
}
