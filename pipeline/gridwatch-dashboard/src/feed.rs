//! The live anomaly feed: the `anomalies` topic, followed from the tail and
//! pushed to a browser over Server-Sent Events.
//!
//! Each connection follows every partition with `fetch` + wait, so an
//! anomaly reaches the browser as soon as its append is durable, with no
//! polling interval. Every `anomaly` event carries, as its SSE id, a
//! [`Cursor`]: the next offset of every partition after it. The browser's
//! `EventSource` sends the last one back as `Last-Event-ID` when it
//! reconnects, and the feed resumes right there, so nothing is lost or
//! repeated across a reconnect (as long as the log still holds it).
//!
//! Event types: `hello` (first; its id is the starting cursor), `anomaly`
//! (data: the AnomalyEvent as JSON plus `partition`, `offset` and
//! `appended_ms`), `ack` (an acknowledgement someone made), `acks-lagged`
//! (acknowledgements were missed; refetch them).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::Event;
use futures::Stream;
use gridwatch_contracts::AnomalyEvent;
use gridwatch_contracts::codec::AvroRecord as _;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_runtime::backend::{BackendError, TopicBackend};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch};

use crate::acks::Ack;

/// How long one fetch waits for new anomalies before checking for shutdown.
const FETCH_WAIT: Duration = Duration::from_secs(5);
/// Most records one fetch returns.
const FETCH_MAX: usize = 500;

/// The next offset of every partition: where a feed resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub Vec<u64>);

/// A `Last-Event-ID` that is not a cursor.
#[derive(Debug, thiserror::Error)]
#[error(
    "Last-Event-ID = {value:?} is not allowed: a feed cursor, offsets per partition joined by '.' (e.g. \"12.0.7\")"
)]
pub struct CursorError {
    value: String,
}

impl Cursor {
    pub fn parse(text: &str) -> Result<Self, CursorError> {
        let err = || CursorError {
            value: text.chars().take(64).collect(),
        };
        if text.is_empty() || text.len() > 4096 {
            return Err(err());
        }
        text.split('.')
            .map(|o| o.parse::<u64>().map_err(|_| err()))
            .collect::<Result<Vec<_>, _>>()
            .map(Cursor)
    }

    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(self.0.len() * 4);
        for (i, o) in self.0.iter().enumerate() {
            if i > 0 {
                s.push('.');
            }
            s.push_str(&o.to_string());
        }
        s
    }
}

/// An anomaly as the browser gets it.
#[derive(Debug, Serialize)]
pub struct FeedAnomaly {
    #[serde(flatten)]
    pub event: AnomalyEvent,
    pub partition: u32,
    pub offset: u64,
    /// When ingest received the reading (the record's append timestamp).
    pub appended_ms: i64,
}

struct Item {
    partition: u32,
    offset: u64,
    json: String,
}

/// Starts following `topic` and returns the SSE events for one connection.
///
/// Without `resume`, each partition starts `backlog` records before its
/// tail. A resume offset outside the log is clamped to what the log holds.
pub async fn follow<B: TopicBackend>(
    backend: Arc<B>,
    topic: String,
    partitions: u32,
    resume: Option<Cursor>,
    backlog: u64,
    acks: broadcast::Receiver<Ack>,
    shutdown: watch::Receiver<bool>,
) -> Result<impl Stream<Item = Result<Event, Infallible>> + Send + 'static, BackendError> {
    let mut cursor = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        let start = backend.log_start(&topic, p).await?;
        let hw = backend.high_watermark(&topic, p).await?;
        let from = match resume.as_ref().and_then(|c| c.0.get(p as usize)) {
            Some(&o) => o.clamp(start, hw),
            None => hw.saturating_sub(backlog).max(start),
        };
        cursor.push(from);
    }
    let (tx, rx) = mpsc::channel::<Item>(1024);
    for (p, &from) in cursor.iter().enumerate() {
        tokio::spawn(follow_partition(
            backend.clone(),
            topic.clone(),
            p as u32,
            from,
            tx.clone(),
            shutdown.clone(),
        ));
    }
    drop(tx);

    struct State {
        rx: mpsc::Receiver<Item>,
        acks: broadcast::Receiver<Ack>,
        cursor: Cursor,
        shutdown: watch::Receiver<bool>,
        hello: bool,
        acks_open: bool,
    }
    let state = State {
        rx,
        acks,
        cursor: Cursor(cursor),
        shutdown,
        hello: false,
        acks_open: true,
    };
    Ok(futures::stream::unfold(state, |mut s| async move {
        if !s.hello {
            s.hello = true;
            let hello = Event::default()
                .event("hello")
                .id(s.cursor.encode())
                .retry(Duration::from_millis(500))
                .data(serde_json::json!({ "partitions": s.cursor.0.len() }).to_string());
            return Some((Ok(hello), s));
        }
        enum Next {
            Stop,
            Item(Option<Item>),
            Ack(Result<Ack, broadcast::error::RecvError>),
        }
        loop {
            let next = tokio::select! {
                biased;
                _ = s.shutdown.wait_for(|stop| *stop) => Next::Stop,
                item = s.rx.recv() => Next::Item(item),
                ack = s.acks.recv(), if s.acks_open => Next::Ack(ack),
            };
            let event = match next {
                Next::Stop | Next::Item(None) => return None,
                Next::Item(Some(item)) => {
                    if let Some(slot) = s.cursor.0.get_mut(item.partition as usize) {
                        *slot = item.offset + 1;
                    }
                    Event::default()
                        .event("anomaly")
                        .id(s.cursor.encode())
                        .data(item.json)
                }
                Next::Ack(Ok(ack)) => Event::default()
                    .event("ack")
                    .data(serde_json::to_string(&ack).unwrap_or_default()),
                Next::Ack(Err(broadcast::error::RecvError::Lagged(_))) => {
                    Event::default().event("acks-lagged").data("{}")
                }
                // The store is gone: acknowledgements are over, anomalies are not.
                Next::Ack(Err(broadcast::error::RecvError::Closed)) => {
                    s.acks_open = false;
                    continue;
                }
            };
            return Some((Ok(event), s));
        }
    }))
}

/// Follows one partition until the connection or the process goes away.
async fn follow_partition<B: TopicBackend>(
    backend: Arc<B>,
    topic: String,
    partition: u32,
    mut from: u64,
    tx: mpsc::Sender<Item>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let fetched = tokio::select! {
            _ = tx.closed() => return,
            _ = shutdown.wait_for(|stop| *stop) => return,
            r = backend.fetch(&topic, partition, from, FETCH_MAX, FETCH_WAIT) => r,
        };
        match fetched {
            Ok(records) => {
                for r in records {
                    from = r.offset + 1;
                    let Some(event) = decode(&r.value) else {
                        tracing::warn!(%topic, partition, offset = r.offset, "Record in the anomalies topic is not a framed AnomalyEvent; the dashboard skips it.");
                        continue;
                    };
                    let json = serde_json::to_string(&FeedAnomaly {
                        event,
                        partition,
                        offset: r.offset,
                        appended_ms: r.timestamp_ms,
                    })
                    .unwrap_or_default();
                    let item = Item {
                        partition,
                        offset: r.offset,
                        json,
                    };
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
            }
            Err(BackendError::OffsetOutOfRange { .. }) => {
                // Retention removed what this feed had not read yet.
                match backend.log_start(&topic, partition).await {
                    Ok(start) => from = from.max(start),
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, %topic, partition, "Dashboard feed fetch failed; retrying in 1 s.");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn decode(value: &[u8]) -> Option<AnomalyEvent> {
    let framed = framing::parse(value, IdWidth::ContentId4).ok()?;
    AnomalyEvent::from_avro(framed.datum).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_named() {
        let c = Cursor::parse("12.0.7").expect("cursor");
        assert_eq!(c, Cursor(vec![12, 0, 7]));
        assert_eq!(c.encode(), "12.0.7");
        for bad in ["", "1..2", "x", "1.-2"] {
            let e = Cursor::parse(bad).expect_err(bad);
            assert!(e.to_string().starts_with("Last-Event-ID = "), "{e}");
        }
    }
}
