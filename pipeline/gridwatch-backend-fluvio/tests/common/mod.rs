//! Shared by the cluster tests: which cluster, unique topic names, an
//! independent reader.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use fluvio::consumer::ConsumerConfigExt;
use fluvio::{Fluvio, Offset};
use futures::StreamExt;
use gridwatch_backend_fluvio::{FluvioBackend, FluvioConfig};

/// How to point the tests at a cluster, printed when they skip.
pub const HOW: &str = "set GRIDWATCH_TEST_FLUVIO_ENDPOINT=127.0.0.1:9003 (the SC of `fluvio cluster start --local`) or GRIDWATCH_TEST_FLUVIO_PROFILE=<profile in ~/.fluvio/config>";

/// The cluster the environment names, or `None` after printing why the test skips.
pub fn cluster(test: &str) -> Option<FluvioConfig> {
    if let Some(ep) = std::env::var("GRIDWATCH_TEST_FLUVIO_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty())
    {
        return Some(FluvioConfig::with_endpoint(ep));
    }
    if let Some(profile) = std::env::var("GRIDWATCH_TEST_FLUVIO_PROFILE")
        .ok()
        .filter(|v| !v.is_empty())
    {
        return Some(FluvioConfig::with_profile(profile));
    }
    println!("SKIPPED: {test}: no Fluvio cluster named; {HOW}");
    None
}

pub async fn connect(config: &FluvioConfig) -> FluvioBackend {
    FluvioBackend::connect(config)
        .await
        .unwrap_or_else(|e| panic!("connecting to the cluster the environment names ({HOW}): {e}"))
}

/// A topic name no other run uses (Fluvio names: lowercase, digits, '-').
pub fn topic(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "gwt-{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Reads `count` records of a partition from `from` with a plain fluvio
/// consumer: a check independent of the backend's cursors.
pub async fn read_with_plain_client(
    config: &FluvioConfig,
    topic: &str,
    partition: u32,
    from: u64,
    count: usize,
) -> Vec<(u64, Option<Vec<u8>>, Vec<u8>)> {
    let cluster = gridwatch_backend_fluvio::backend::cluster_config(config).unwrap();
    let fluvio = Fluvio::connect_with_config(&cluster).await.unwrap();
    let mut stream = fluvio
        .consumer_with_config(
            ConsumerConfigExt::builder()
                .topic(topic.to_string())
                .partition(partition)
                .offset_start(Offset::absolute(from as i64).unwrap())
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    while out.len() < count {
        let r = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("records arrive within 30s")
            .expect("stream open")
            .expect("record");
        out.push((
            r.offset as u64,
            r.key().map(<[u8]>::to_vec),
            r.value().to_vec(),
        ));
    }
    out
}
