//! The source loop: one task polls the broker connection, another batches
//! messages into ingest and acknowledges them once ingest returns.
//!
//! Two tasks because rumqttc's event loop must be polled continuously to
//! send keep-alives and acknowledgements, while an ingest may wait out
//! backpressure for as long as the pipeline needs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gridwatch_connector::{IngestTarget, Payload};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::config::MqttConfig;
use crate::session::{self, Client, Event, Loop, Message};
use crate::{MqttError, tls};

/// Counters a caller can read while the source runs: for metrics, and for
/// tests that wait for a state rather than for time.
#[derive(Debug, Default)]
pub struct MqttStats {
    /// Successful connects (CONNACK), the first included.
    pub connects: AtomicU64,
    /// Connections lost or refused.
    pub disconnects: AtomicU64,
    /// Subscribe acknowledgements in which the broker granted every filter.
    pub subscribed: AtomicU64,
    /// PUBLISH packets received, redeliveries included.
    pub received: AtomicU64,
    /// Of those, marked as redeliveries (DUP) by the broker.
    pub redelivered: AtomicU64,
    /// Payloads handed to a successful ingest.
    pub ingested: AtomicU64,
    /// Acknowledgements queued to the broker after ingest.
    pub acked: AtomicU64,
    /// Messages not acknowledged because their connection was gone by the
    /// time ingest returned; the broker redelivers them.
    pub ack_skipped: AtomicU64,
    /// Ingest attempts refused (backpressure or unavailable) and retried.
    pub ingest_retries: AtomicU64,
    /// Whether a connection is up now.
    pub connected: AtomicBool,
}

impl MqttStats {
    /// A relaxed read, for display and waits.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The MQTT source. Build it with [`MqttSource::new`], then [`run`](Self::run) it.
#[derive(Debug)]
pub struct MqttSource {
    config: MqttConfig,
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
    tls: Option<rumqttc::TlsConfiguration>,
    stats: Arc<MqttStats>,
}

/// A message with the connection it arrived on, so that an ack is never
/// sent on a later connection, where the broker may have reused its packet
/// id for a different message. The epoch moves on at every connect and
/// every disconnect. (A narrow race remains: an ack checked just before a
/// disconnect and queued just after it goes out on the next connection.
/// rumqttc drops acks queued before the disconnect.)
struct Received {
    message: Message,
    epoch: u64,
}

/// Capacity of rumqttc's request channel. Only acks (and the subscribe)
/// go through it, and there can be at most 65,535 unacknowledged messages
/// (packet ids are 16 bits), so an ack never waits for room; that rules
/// out a deadlock between the two tasks.
const REQUEST_CAPACITY: usize = u16::MAX as usize + 64;

impl MqttSource {
    /// Validates `config`, reads the password file and the TLS files.
    pub fn new(config: MqttConfig) -> Result<Self, MqttError> {
        config.validate("sources.mqtt")?;
        let broker = config.broker("sources.mqtt")?;
        let password = match (&config.password, &config.password_file) {
            (Some(p), _) => Some(p.expose().to_owned()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|source| MqttError::File {
                    key: "sources.mqtt.password_file",
                    path: path.clone(),
                    source,
                })?;
                Some(text.trim_end_matches(['\r', '\n']).to_owned())
            }
            (None, None) => None,
        };
        let credentials = config
            .username
            .clone()
            .map(|user| (user, password.unwrap_or_default()));
        let tls = if broker.tls {
            Some(tls::client_config(&config.tls)?)
        } else {
            None
        };
        Ok(Self {
            config,
            host: broker.host,
            port: broker.port,
            credentials,
            tls,
            stats: Arc::default(),
        })
    }

    /// Live counters; clone the `Arc` before `run` consumes the source.
    pub fn stats(&self) -> Arc<MqttStats> {
        Arc::clone(&self.stats)
    }

    /// Subscribes and ingests until `shutdown` turns true (or its sender is
    /// dropped). Connection failures are retried with backoff forever;
    /// only a refusal that retrying cannot fix (bad credentials, not
    /// authorized, every filter refused) ends the run with an error.
    ///
    /// On shutdown, a batch whose ingest already returned is acknowledged
    /// before disconnecting; one still waiting out backpressure is not,
    /// and the broker redelivers it to the next run.
    pub async fn run<T: IngestTarget>(
        self,
        target: Arc<T>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), MqttError> {
        let (client, eventloop) = session::session(session::Options {
            v5: self.config.protocol == crate::Protocol::V5,
            client_id: self.config.client_id.clone(),
            host: self.host.clone(),
            port: self.port,
            keep_alive: self.config.keep_alive,
            session_expiry_secs: u32::try_from(self.config.session_expiry.as_secs())
                .unwrap_or(u32::MAX),
            receive_maximum: self.config.receive_maximum,
            credentials: self.credentials.clone(),
            tls: self.tls.clone(),
            requests: REQUEST_CAPACITY,
        });
        let client = Arc::new(client);
        let epoch = Arc::new(AtomicU64::new(0));
        // Bounded, so a flood of QoS 0 messages (which the broker does not
        // hold back) pushes back on the TCP connection instead of memory.
        let (tx, rx) = mpsc::channel(self.config.max_batch.saturating_mul(2).max(64));
        let (stop_tx, stop_rx) = watch::channel(false);

        let poller = tokio::spawn(poll_loop(PollState {
            eventloop,
            client: Arc::clone(&client),
            topics: self.config.topics.clone(),
            qos: self.config.qos,
            reconnect: self.config.reconnect.clone(),
            epoch: Arc::clone(&epoch),
            stats: Arc::clone(&self.stats),
            tx,
            stop: stop_rx,
        }));

        let batcher = Batcher {
            client: Arc::clone(&client),
            target,
            epoch,
            stats: Arc::clone(&self.stats),
            max_batch: self.config.max_batch,
            reconnect: self.config.reconnect.clone(),
        };
        let mut poller = poller;
        let outcome = tokio::select! {
            // The poller only returns early on a permanent failure.
            result = &mut poller => {
                return match result {
                    Ok(r) => r,
                    Err(e) => Err(MqttError::Task(e.to_string())),
                };
            }
            outcome = batcher.run(rx, &mut shutdown) => outcome,
        };
        // Acks of the last batch are queued ahead of the DISCONNECT, so the
        // event loop sends them first.
        if let Err(e) = client.try_disconnect() {
            debug!(error = %e, "Disconnect request not queued.");
        }
        let _ = stop_tx.send(true);
        match poller.await {
            Ok(Ok(())) => {}
            // The batcher saw the channel close because the poller failed
            // (a refused login, say): that is the outcome, not a clean stop.
            Ok(Err(e)) if !*shutdown.borrow() => return Err(e),
            Ok(Err(e)) => warn!(error = %e, "MQTT connection ended with an error during shutdown."),
            Err(e) => warn!(error = %e, "MQTT poll task failed during shutdown."),
        }
        outcome
    }
}

struct PollState {
    eventloop: Loop,
    client: Arc<Client>,
    topics: Vec<String>,
    qos: u8,
    reconnect: crate::config::ReconnectConfig,
    epoch: Arc<AtomicU64>,
    stats: Arc<MqttStats>,
    tx: mpsc::Sender<Received>,
    stop: watch::Receiver<bool>,
}

/// How long shutdown waits for queued acks and the DISCONNECT to go out.
const DISCONNECT_GRACE: Duration = Duration::from_secs(3);

async fn poll_loop(mut s: PollState) -> Result<(), MqttError> {
    let mut backoff = s.reconnect.initial;
    let mut connected = false;
    let mut stopping: Option<tokio::time::Instant> = None;
    loop {
        if stopping.is_none() && *s.stop.borrow() {
            if !connected {
                return Ok(());
            }
            stopping = Some(tokio::time::Instant::now() + DISCONNECT_GRACE);
        }
        let event = if let Some(deadline) = stopping {
            match tokio::time::timeout_at(deadline, s.eventloop.poll()).await {
                Ok(event) => event,
                Err(_) => return Ok(()),
            }
        } else if connected {
            // Not raced against `stop`: a poll cancelled mid-write could
            // corrupt the stream. Shutdown queues a DISCONNECT, which wakes
            // this poll.
            s.eventloop.poll().await
        } else {
            tokio::select! {
                event = s.eventloop.poll() => event,
                _ = s.stop.changed() => return Ok(()),
            }
        };
        match event {
            Ok(Event::Connected { session_present }) => {
                connected = true;
                backoff = s.reconnect.initial;
                let epoch = s.epoch.fetch_add(1, Ordering::SeqCst) + 1;
                s.stats.connects.fetch_add(1, Ordering::Relaxed);
                s.stats.connected.store(true, Ordering::Relaxed);
                info!(epoch, session_present, "MQTT connected.");
                if stopping.is_none() {
                    // Subscribing again on a resumed session is harmless and
                    // picks up topics added to the config since.
                    if let Err(e) = s.client.try_subscribe(&s.topics, s.qos) {
                        warn!(error = %e, "MQTT subscribe not queued.");
                    }
                }
            }
            Ok(Event::Subscribed { granted }) => {
                let refused: Vec<&String> = s
                    .topics
                    .iter()
                    .zip(&granted)
                    .filter_map(|(t, g)| g.is_none().then_some(t))
                    .collect();
                if refused.len() == s.topics.len() {
                    return Err(MqttError::SubscribeRefused {
                        topics: s.topics.clone(),
                    });
                }
                if refused.is_empty() {
                    s.stats.subscribed.fetch_add(1, Ordering::Relaxed);
                    info!(topics = ?s.topics, ?granted, "MQTT subscribed.");
                } else {
                    warn!(?refused, "The broker refused some MQTT topic filters.");
                }
            }
            Ok(Event::Message(message)) => {
                s.stats.received.fetch_add(1, Ordering::Relaxed);
                if message.dup() {
                    s.stats.redelivered.fetch_add(1, Ordering::Relaxed);
                }
                let epoch = s.epoch.load(Ordering::SeqCst);
                if s.tx.send(Received { message, epoch }).await.is_err() {
                    // The batcher is gone: shutting down.
                    stopping.get_or_insert(tokio::time::Instant::now() + DISCONNECT_GRACE);
                }
            }
            Ok(Event::Disconnected) => return Ok(()),
            Ok(Event::Other) => {}
            Err(e) => {
                if connected {
                    s.stats.disconnects.fetch_add(1, Ordering::Relaxed);
                    // Messages of the lost connection must not be acked on
                    // any later one; the broker redelivers them instead.
                    s.epoch.fetch_add(1, Ordering::SeqCst);
                }
                connected = false;
                s.stats.connected.store(false, Ordering::Relaxed);
                if stopping.is_some() {
                    return Ok(());
                }
                if e.permanent {
                    return Err(MqttError::Refused(e.message));
                }
                warn!(error = %e.message, retry_in = ?backoff, "MQTT connection failed; reconnecting.");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = s.stop.changed() => return Ok(()),
                }
                backoff = (backoff * 2).min(s.reconnect.max);
            }
        }
    }
}

struct Batcher<T> {
    client: Arc<Client>,
    target: Arc<T>,
    epoch: Arc<AtomicU64>,
    stats: Arc<MqttStats>,
    max_batch: usize,
    reconnect: crate::config::ReconnectConfig,
}

impl<T: IngestTarget> Batcher<T> {
    async fn run(
        &self,
        mut rx: mpsc::Receiver<Received>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), MqttError> {
        let mut batch: Vec<Received> = Vec::with_capacity(self.max_batch);
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    continue;
                }
                first = rx.recv() => match first {
                    Some(first) => batch.push(first),
                    None => return Ok(()),
                },
            }
            // Whatever else has already arrived joins the batch; waiting for
            // more would only add latency.
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            if !self.ingest(&batch, shutdown).await {
                return Ok(());
            }
            self.ack(&batch).await;
            batch.clear();
        }
    }

    /// Ingests `batch`, retrying refusals with backoff. `false` when
    /// shutdown came first; nothing of the batch is acknowledged then.
    async fn ingest(&self, batch: &[Received], shutdown: &mut watch::Receiver<bool>) -> bool {
        let payloads: Vec<Payload> = batch
            .iter()
            .map(|r| Payload {
                bytes: r.message.payload(),
                origin: format!("mqtt:{}", r.message.topic()),
            })
            .collect();
        let mut backoff = self.reconnect.initial;
        loop {
            match self.target.ingest(payloads.clone()).await {
                Ok(outcome) => {
                    self.stats
                        .ingested
                        .fetch_add(payloads.len() as u64, Ordering::Relaxed);
                    debug!(
                        accepted = outcome.accepted,
                        rejected = outcome.rejected,
                        duplicates = outcome.duplicates,
                        "MQTT batch ingested."
                    );
                    return true;
                }
                Err(e) => {
                    self.stats.ingest_retries.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %e, messages = payloads.len(), retry_in = ?backoff,
                        "Ingest refused an MQTT batch; retrying it, unacknowledged.");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        changed = shutdown.changed() => {
                            if changed.is_err() || *shutdown.borrow() {
                                return false;
                            }
                        }
                    }
                    backoff = (backoff * 2).min(self.reconnect.max);
                }
            }
        }
    }

    async fn ack(&self, batch: &[Received]) {
        let current = self.epoch.load(Ordering::SeqCst);
        for r in batch.iter().filter(|r| r.message.needs_ack()) {
            if r.epoch != current {
                self.stats.ack_skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match self.client.ack(&r.message).await {
                Ok(()) => {
                    self.stats.acked.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    // Only when the event loop is gone (shutting down); the
                    // broker redelivers.
                    debug!(error = %e, "MQTT ack not queued.");
                }
            }
        }
    }
}
