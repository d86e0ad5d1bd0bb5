//! The Fluvio backend against a real cluster: topics, appends, reads from
//! explicit offsets, waiting reads, and two instances splitting partitions.
//!
//! Each test skips (printing why) unless `GRIDWATCH_TEST_FLUVIO_ENDPOINT` or
//! `GRIDWATCH_TEST_FLUVIO_PROFILE` names a cluster.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use gridwatch_backend_fluvio::{FluvioBackend, FluvioConfig};
use gridwatch_runtime::backend::{BackendError, OutRecord, TopicBackend};

fn rec(key: Option<&str>, value: String) -> OutRecord {
    OutRecord {
        key: key.map(|k| Bytes::from(k.to_string())),
        value: Bytes::from(value),
        timestamp_ms: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_topic_is_idempotent_and_listed() {
    let Some(config) = common::cluster("ensure_topic_is_idempotent_and_listed") else {
        return;
    };
    let b = common::connect(&config).await;
    let t = common::topic("ensure");
    assert_eq!(b.ensure_topic(&t, 2).await.unwrap().partitions, 2);
    assert_eq!(
        b.ensure_topic(&t, 5).await.unwrap().partitions,
        2,
        "an existing topic keeps its partitions"
    );
    // A second connection (another instance) sees the same topic and does not recreate it.
    let other = common::connect(&config).await;
    assert_eq!(other.ensure_topic(&t, 3).await.unwrap().partitions, 2);
    let listed = b.list_topics().await.unwrap();
    assert!(
        listed.iter().any(|i| i.name == t && i.partitions == 2),
        "{listed:?}"
    );
    assert_eq!(b.high_watermark(&t, 1).await.unwrap(), 0);
    assert_eq!(b.log_start(&t, 1).await.unwrap(), 0);
    assert!(matches!(
        b.high_watermark(&t, 2).await,
        Err(BackendError::NoSuchPartition { partition: 2, .. })
    ));
    assert!(matches!(
        b.high_watermark("gwt-no-such-topic", 0).await,
        Err(BackendError::NoSuchTopic { .. })
    ));
    // `fluvio.partitions` overrides what the runtime asks for.
    let fixed = FluvioConfig {
        partitions: Some(3),
        ..config.clone()
    };
    let b3 = common::connect(&fixed).await;
    let t3 = common::topic("ensure3");
    assert_eq!(b3.ensure_topic(&t3, 1).await.unwrap().partitions, 3);
    b.delete_topic(&t).await.unwrap();
    b.delete_topic(&t3).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_then_fetch_round_trips_with_offsets() {
    let Some(config) = common::cluster("append_then_fetch_round_trips_with_offsets") else {
        return;
    };
    let b = common::connect(&config).await;
    let t = common::topic("roundtrip");
    b.ensure_topic(&t, 2).await.unwrap();

    let first = (0..3)
        .map(|i| rec(Some("meter-1"), format!("v{i}")))
        .collect();
    assert_eq!(b.append(&t, 1, first).await.unwrap(), 0..3);
    let second = vec![rec(None, "v3".into()), rec(Some("meter-2"), "v4".into())];
    assert_eq!(b.append(&t, 1, second).await.unwrap(), 3..5);
    assert_eq!(b.append(&t, 1, Vec::new()).await.unwrap(), 5..5);
    assert_eq!(b.high_watermark(&t, 1).await.unwrap(), 5);
    assert_eq!(
        b.high_watermark(&t, 0).await.unwrap(),
        0,
        "partition 0 untouched"
    );

    let got = b.fetch(&t, 1, 0, 100, Duration::ZERO).await.unwrap();
    type Seen<'a> = (u64, Option<&'a [u8]>, &'a [u8]);
    let seen: Vec<Seen<'_>> = got
        .iter()
        .map(|r| (r.offset, r.key.as_deref(), &r.value[..]))
        .collect();
    assert_eq!(
        seen,
        vec![
            (0, Some(&b"meter-1"[..]), &b"v0"[..]),
            (1, Some(&b"meter-1"[..]), &b"v1"[..]),
            (2, Some(&b"meter-1"[..]), &b"v2"[..]),
            (3, None, &b"v3"[..]),
            (4, Some(&b"meter-2"[..]), &b"v4"[..]),
        ]
    );
    assert!(
        got.iter().all(|r| r.timestamp_ms > 1_700_000_000_000),
        "append time is stamped"
    );
    // From the middle, and with a limit.
    let mid = b.fetch(&t, 1, 3, 1, Duration::ZERO).await.unwrap();
    assert_eq!(mid.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![3]);
    // At the end: nothing, after the wait.
    assert!(
        b.fetch(&t, 1, 5, 10, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
    // Past the end is out of range, as in the embedded log.
    assert!(matches!(
        b.fetch(&t, 1, 9, 10, Duration::ZERO).await,
        Err(BackendError::OffsetOutOfRange { offset: 9, .. })
    ));
    assert!(matches!(
        b.fetch("gwt-no-such-topic", 0, 0, 1, Duration::ZERO).await,
        Err(BackendError::NoSuchTopic { .. })
    ));

    // An independent client reads exactly what the backend says it wrote.
    let plain = common::read_with_plain_client(&config, &t, 1, 0, 5).await;
    assert_eq!(
        plain
            .iter()
            .map(|(o, k, v)| (*o, k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect::<Vec<_>>(),
        vec![
            (0, Some(b"meter-1".to_vec()), "v0".into()),
            (1, Some(b"meter-1".to_vec()), "v1".into()),
            (2, Some(b"meter-1".to_vec()), "v2".into()),
            (3, None, "v3".into()),
            (4, Some(b"meter-2".to_vec()), "v4".into()),
        ]
    );
    b.delete_topic(&t).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_concurrent_appends_get_contiguous_offsets() {
    let Some(config) = common::cluster("large_concurrent_appends_get_contiguous_offsets") else {
        return;
    };
    let b = common::connect(&config).await;
    let t = common::topic("concurrent");
    b.ensure_topic(&t, 1).await.unwrap();
    // Several writers at once, batches bigger than one producer batch.
    let mut tasks = Vec::new();
    for w in 0..4 {
        let b = b.clone();
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let mut ranges = Vec::new();
            for round in 0..5 {
                let records = (0..2_000)
                    .map(|i| rec(None, format!("w{w}-r{round}-{i:05}-{}", "x".repeat(200))))
                    .collect();
                ranges.push((w, round, b.append(&t, 0, records).await.unwrap()));
            }
            ranges
        }));
    }
    let mut ranges = Vec::new();
    for task in tasks {
        ranges.extend(task.await.unwrap());
    }
    ranges.sort_by_key(|(_, _, r)| r.start);
    let mut next = 0;
    for (_, _, r) in &ranges {
        assert_eq!(r.start, next, "ranges tile the log: {ranges:?}");
        assert_eq!(r.end - r.start, 2_000);
        next = r.end;
    }
    assert_eq!(b.high_watermark(&t, 0).await.unwrap(), 40_000);
    // Each range holds exactly its writer's records, in order.
    let mut at = 0;
    let mut all = Vec::new();
    while at < 40_000 {
        let got = b.fetch(&t, 0, at, 10_000, Duration::ZERO).await.unwrap();
        assert!(
            !got.is_empty(),
            "records below the high watermark are returned at {at}"
        );
        assert_eq!(got[0].offset, at);
        at = got.last().unwrap().offset + 1;
        all.extend(got);
    }
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.offset, i as u64, "reads are dense and in order");
    }
    for (w, round, r) in &ranges {
        for (i, off) in r.clone().enumerate() {
            let v = String::from_utf8_lossy(&all[off as usize].value).into_owned();
            assert!(
                v.starts_with(&format!("w{w}-r{round}-{i:05}-")),
                "offset {off}: {v}"
            );
        }
    }
    b.delete_topic(&t).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_waits_for_records_appended_later() {
    let Some(config) = common::cluster("fetch_waits_for_records_appended_later") else {
        return;
    };
    let b = common::connect(&config).await;
    let t = common::topic("wait");
    b.ensure_topic(&t, 1).await.unwrap();
    b.append(&t, 0, vec![rec(None, "a".into())]).await.unwrap();
    let waiter = {
        let b = b.clone();
        let t = t.clone();
        tokio::spawn(async move { b.fetch(&t, 0, 1, 10, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "the read waits while there is nothing new"
    );
    // Appended through another connection, as another instance would.
    let writer = common::connect(&config).await;
    assert_eq!(
        writer
            .append(&t, 0, vec![rec(None, "b".into())])
            .await
            .unwrap(),
        1..2
    );
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].offset, &got[0].value[..]), (1, &b"b"[..]));
    // The continued read (the processor's next call) waits again, then wakes.
    let waiter = {
        let b = b.clone();
        let t = t.clone();
        tokio::spawn(async move { b.fetch(&t, 0, 2, 10, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    writer
        .append(&t, 0, vec![rec(None, "c".into())])
        .await
        .unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert_eq!((got[0].offset, &got[0].value[..]), (2, &b"c"[..]));
    b.delete_topic(&t).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_resume_at_explicit_offsets() {
    let Some(config) = common::cluster("reads_resume_at_explicit_offsets") else {
        return;
    };
    let b = common::connect(&config).await;
    let t = common::topic("resume");
    b.ensure_topic(&t, 1).await.unwrap();
    let records = (0..100).map(|i| rec(None, format!("r{i}"))).collect();
    assert_eq!(b.append(&t, 0, records).await.unwrap(), 0..100);
    let offsets =
        |v: &[gridwatch_runtime::backend::InRecord]| v.iter().map(|r| r.offset).collect::<Vec<_>>();

    // A processor reads in batches from its position...
    let a = b.fetch(&t, 0, 0, 30, Duration::ZERO).await.unwrap();
    assert_eq!(offsets(&a), (0..30).collect::<Vec<_>>());
    let c = b.fetch(&t, 0, 30, 30, Duration::ZERO).await.unwrap();
    assert_eq!(offsets(&c), (30..60).collect::<Vec<_>>());
    // ...restarts (a new connection) at its checkpoint...
    let restarted = common::connect(&config).await;
    let d = restarted
        .fetch(&t, 0, 57, 1000, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(offsets(&d), (57..100).collect::<Vec<_>>());
    assert_eq!(String::from_utf8_lossy(&d[0].value), "r57");
    // ...and jumps back (recovery's warm-up) without disturbing the live cursor.
    let e = restarted.fetch(&t, 0, 10, 5, Duration::ZERO).await.unwrap();
    assert_eq!(offsets(&e), (10..15).collect::<Vec<_>>());
    let f = restarted.fetch(&t, 0, 15, 5, Duration::ZERO).await.unwrap();
    assert_eq!(offsets(&f), (15..20).collect::<Vec<_>>());
    restarted
        .append(&t, 0, vec![rec(None, "r100".into())])
        .await
        .unwrap();
    let g = restarted
        .fetch(&t, 0, 100, 5, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(offsets(&g), vec![100]);
    b.delete_topic(&t).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_split_two_partitions_and_read_every_record_once() {
    let Some(config) =
        common::cluster("two_instances_split_two_partitions_and_read_every_record_once")
    else {
        return;
    };
    let t = common::topic("split");
    let instance = |i: u32| FluvioConfig {
        instance: Some(i),
        instances: 2,
        ..config.clone()
    };
    let (c0, c1) = (instance(0), instance(1));
    let (b0, b1) = (common::connect(&c0).await, common::connect(&c1).await);
    // Both start together and both ensure the topic.
    let (i0, i1) = tokio::join!(b0.ensure_topic(&t, 2), b1.ensure_topic(&t, 2));
    let total = i0.unwrap().partitions;
    assert_eq!((total, i1.unwrap().partitions), (2, 2));
    assert_eq!(c0.owned_partitions(total), vec![0]);
    assert_eq!(c1.owned_partitions(total), vec![1]);

    // Readings keyed by meter, partitioned by meter as ingest does.
    let producer = common::connect(&config).await;
    let mut sent: BTreeMap<String, u32> = BTreeMap::new();
    for p in 0..total {
        let records: Vec<OutRecord> = (0..500)
            .filter(|m| m % 2 == p)
            .flat_map(|m| (0..5).map(move |k| (m, k)))
            .map(|(m, k)| {
                rec(
                    Some(&format!("meter-{m}")),
                    format!("meter-{m}/reading-{k}"),
                )
            })
            .collect();
        for r in &records {
            sent.insert(String::from_utf8_lossy(&r.value).into_owned(), p);
        }
        producer.append(&t, p, records).await.unwrap();
    }

    // Each instance reads the partitions it owns, in batches, until caught up.
    async fn drain(b: FluvioBackend, c: FluvioConfig, t: String, total: u32) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        for p in c.owned_partitions(total) {
            let hw = b.high_watermark(&t, p).await.unwrap();
            let mut at = 0;
            while at < hw {
                let got = b
                    .fetch(&t, p, at, 97, Duration::from_millis(200))
                    .await
                    .unwrap();
                for r in &got {
                    out.push((p, String::from_utf8_lossy(&r.value).into_owned()));
                }
                at = got.last().map_or(at, |r| r.offset + 1);
            }
        }
        out
    }
    let (r0, r1) = tokio::join!(
        drain(b0.clone(), c0, t.clone(), total),
        drain(b1.clone(), c1, t.clone(), total)
    );
    let mut read: BTreeMap<String, u32> = BTreeMap::new();
    for (p, v) in r0.iter().chain(&r1) {
        assert!(read.insert(v.clone(), *p).is_none(), "{v} read twice");
    }
    assert_eq!(
        read, sent,
        "every record read exactly once, from its own partition"
    );
    assert!(r0.iter().all(|(p, _)| *p == 0) && r1.iter().all(|(p, _)| *p == 1));
    // Each meter's readings all landed on one instance.
    let meter = |v: &str| v.split('/').next().unwrap_or("").to_string();
    let m0: std::collections::BTreeSet<_> = r0.iter().map(|(_, v)| meter(v)).collect();
    let m1: std::collections::BTreeSet<_> = r1.iter().map(|(_, v)| meter(v)).collect();
    assert!(m0.is_disjoint(&m1));
    assert_eq!(m0.len() + m1.len(), 500);
    b0.delete_topic(&t).await.unwrap();
}
