//! Server-side mode: the validate → detect chain running inside the SPU.
//!
//! [`ServerChainStream::open`] opens a consumer stream on one partition, from
//! an explicit offset, with a chain of SmartModules that are already
//! registered in the cluster under names (see [`crate::modules`]). Each
//! module gets its `init` params; `lookback` asks the SPU to replay recent
//! records of the topic through each module's `look_back` before the first
//! record is processed, which is how detect warms its windows.
//!
//! The stream yields the chain's output records. With Gridwatch's modules a
//! map chain yields one output per input, with the input's offset, so the
//! runtime checkpoints server-side output exactly like client-side output.
//!
//! # Reopening before the engine runs out of memory
//!
//! The SPU runs `fluvio-smartengine`, which never frees the buffers a module
//! hands its output back in (about 170 bytes a record with our modules), so
//! a chain instance traps when its store reaches its memory limit (1 GB by
//! default) after some 5.5 million records. Only a new stream gets a new
//! instance, so this stream counts the records it has yielded and reopens at
//! the next offset, with the same `lookback`, before the budget
//! (`reopen_after`) is spent:
//!
//! - after half the budget it reopens as soon as it has caught up with the
//!   partition's high watermark: there, `look_back` (which the SPU always
//!   takes from the end of the log) covers exactly the records before the
//!   next one, so the new instance has the state the old one had;
//! - at the full budget it reopens wherever it is. Behind the end of the
//!   log, `look_back` (by `last`) would warm with the newest records instead
//!   of those just before the resume offset; with `look_back` by age and a
//!   module that honours `look_back_through` (below) the warm-up is still
//!   exactly the records before the resume offset.
//!
//! The SPU takes `look_back` from the end of the log, so when a stream
//! (re)opens behind the end, the newest `end - resume` records would be
//! warmed and then processed again; and the SPU runs `look_back` after the
//! open request has returned, so records appended meanwhile are in it too.
//! [`ServerChainSpec::look_back_through`] names a module param that carries,
//! on every (re)open, the hash of the last record before the resume offset;
//! a module that honours it (warms only up to that record's last occurrence;
//! it cannot go by offset, as `look_back` hands modules batch-relative
//! offsets and timestamps) starts with exactly the state the replaced stream
//! had. Gridwatch's detect module honours `look_back_through` and
//! `gridwatch run` sets it.

use std::collections::BTreeMap;
use std::time::Duration;

use fluvio::consumer::{
    SmartModuleContextData, SmartModuleExtraParams, SmartModuleInvocation,
    SmartModuleInvocationWasm, SmartModuleKind,
};
use fluvio_smartmodule::dataplane::smartmodule::Lookback;
use futures::{FutureExt, StreamExt};
use gridwatch_runtime::backend::InRecord;

use crate::FluvioBackend;
use crate::backend::{RecordStream, in_record, open_stream};
use crate::error::FluvioBackendError;
use crate::offsets::PartitionOffsets;

/// One module of a server-side chain: its registered name and `init` params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedModule {
    /// The name it is registered under (`gridwatch-detect`), or its
    /// qualified form (`gridwatch/gridwatch-detect@0.2.0`) to pin a version.
    pub name: String,
    /// Params passed to the module's `init`.
    pub params: BTreeMap<String, String>,
}

impl NamedModule {
    /// A module with no params.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            params: BTreeMap::new(),
        }
    }

    /// Adds an `init` param.
    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(key.into(), value.into());
        self
    }
}

/// What the SPU replays through `look_back` when a chain starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookbackSpec {
    /// The last `n` records of the partition.
    Last(u64),
    /// Records appended within `age` of now (by append time), at most `last` of them when set.
    Age { age: Duration, last: Option<u64> },
    /// Up to `records` records just before the resume offset, appended
    /// within `age` of now. The SPU counts `last` from the end of the log,
    /// so the request asks for `(end - resume) + records` and the module
    /// skips the ones at or after the resume offset (`look_back_through`).
    ///
    /// Preferred over [`Self::Age`] alone: Fluvio 0.50's age-only scan walks
    /// the log backwards one batch at a time from `end - 2`, which skips a
    /// batch holding a single record (the newest one, often), so detect
    /// warmed one reading short after a swap. The `last` path reads forward.
    BeforeResume { age: Duration, records: u64 },
}

impl LookbackSpec {
    fn to_fluvio(self, from: u64, end: u64) -> Lookback {
        match self {
            Self::Last(n) => Lookback::last(n),
            Self::Age { age, last } => Lookback::age(age, last),
            Self::BeforeResume { age, records } => {
                Lookback::age(age, Some(end.saturating_sub(from).saturating_add(records)))
            }
        }
    }
}

/// A server-side chain: modules in order, the look-back, the reopen budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerChainSpec {
    pub modules: Vec<NamedModule>,
    /// Applied to every module that exports `look_back` (the SPU skips the others).
    pub lookback: Option<LookbackSpec>,
    /// Records through one chain instance before the stream is reopened
    /// (see the module docs). `fluvio.chain.reopen_after`.
    pub reopen_after: u64,
    /// A param naming, on every (re)open, the last record before the resume
    /// offset (the xxh3-64 of its value in hex, or `none` at offset 0), for
    /// modules that warm only up to it (see the module docs).
    pub look_back_through: Option<String>,
}

impl ServerChainSpec {
    /// The invocations the consumer request carries when it starts at
    /// `from` on a partition whose end (high watermark) is `end`; `marker`
    /// is the hash of the value at `from - 1` (`None` when `from` is 0).
    pub fn invocations(
        &self,
        from: u64,
        end: u64,
        marker: Option<u64>,
    ) -> Vec<SmartModuleInvocation> {
        let lookback = self.lookback.map(|l| l.to_fluvio(from, end));
        self.modules
            .iter()
            .map(|m| {
                let mut params = m.params.clone();
                if let Some(key) = &self.look_back_through {
                    let value = marker.map_or_else(|| "none".to_string(), |h| format!("{h:016x}"));
                    params.insert(key.clone(), value);
                }
                SmartModuleInvocation {
                    wasm: SmartModuleInvocationWasm::Predefined(m.name.clone()),
                    kind: SmartModuleKind::Generic(SmartModuleContextData::None),
                    params: SmartModuleExtraParams::new(params, lookback.clone()),
                    name: Some(m.name.clone()),
                }
            })
            .collect()
    }
}

/// The partition's end and the hash of the record before `from` (see
/// [`ServerChainSpec::look_back_through`]).
async fn resume_point(
    backend: &FluvioBackend,
    topic: &str,
    partition: u32,
    from: u64,
) -> Result<(u64, Option<u64>), FluvioBackendError> {
    let end = backend.offsets(topic, partition).await?.high_watermark;
    if from == 0 {
        return Ok((end, None));
    }
    let before = backend
        .fetch_inner(topic, partition, from - 1, 1, Duration::from_secs(10))
        .await?;
    let marker = before
        .iter()
        .find(|r| r.offset == from - 1)
        .map(|r| xxhash_rust::xxh3::xxh3_64(&r.value));
    Ok((end, marker))
}

/// Output of a server-side chain on one partition, from an explicit offset.
pub struct ServerChainStream {
    backend: FluvioBackend,
    topic: String,
    partition: u32,
    spec: ServerChainSpec,
    stream: RecordStream,
    /// The offset after the last record yielded.
    next: u64,
    /// Records through the current chain instance.
    since_open: u64,
    /// How many times the stream was reopened to renew the chain instance.
    pub reopens: u64,
}

impl std::fmt::Debug for ServerChainStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerChainStream")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("next", &self.next)
            .field("since_open", &self.since_open)
            .field("reopens", &self.reopens)
            .finish()
    }
}

impl ServerChainStream {
    /// Opens the chain on `topic`/`partition` from offset `from`.
    pub async fn open(
        backend: &FluvioBackend,
        topic: &str,
        partition: u32,
        from: u64,
        spec: ServerChainSpec,
    ) -> Result<Self, FluvioBackendError> {
        let (end, marker) = resume_point(backend, topic, partition, from).await?;
        let stream = open_stream(
            backend.client(),
            topic,
            partition,
            from,
            spec.invocations(from, end, marker),
        )
        .await?;
        tracing::debug!(
            topic,
            partition,
            from,
            modules = spec.modules.len(),
            "Server-side chain opened."
        );
        Ok(Self {
            backend: backend.clone(),
            topic: topic.to_string(),
            partition,
            spec,
            stream,
            next: from,
            since_open: 0,
            reopens: 0,
        })
    }

    /// The offset the next output will have.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The chain this stream runs.
    pub fn spec(&self) -> &ServerChainSpec {
        &self.spec
    }

    /// Records processed by the current chain instance.
    pub fn since_open(&self) -> u64 {
        self.since_open
    }

    /// Up to `max` outputs, waiting up to `wait` for the first. Reopens
    /// the stream (new chain instance, `look_back` re-warming) when its
    /// budget says so, before returning.
    pub async fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<InRecord>, FluvioBackendError> {
        let target = format!("{}/{}", self.topic, self.partition);
        let max = max.max(1);
        let mut out = Vec::new();
        let first = match self.stream.next().now_or_never() {
            Some(item) => item,
            None => match tokio::time::timeout(wait, self.stream.next()).await {
                Ok(item) => item,
                Err(_) => return Ok(out),
            },
        };
        self.push(first, &mut out, &target)?;
        while out.len() < max {
            match self.stream.next().now_or_never() {
                None => break,
                Some(item) => {
                    if let Err(e) = self.push(item, &mut out, &target) {
                        if out.is_empty() {
                            return Err(e);
                        }
                        break;
                    }
                }
            }
        }
        if let Some(last) = out.last() {
            self.next = last.offset + 1;
        }
        self.since_open += out.len() as u64;
        self.maybe_reopen().await?;
        Ok(out)
    }

    fn push(
        &self,
        item: Option<Result<fluvio::consumer::Record, fluvio::dataplane::link::ErrorCode>>,
        out: &mut Vec<InRecord>,
        target: &str,
    ) -> Result<(), FluvioBackendError> {
        match item {
            None => Err(FluvioBackendError::Cluster {
                op: "server-side chain",
                target: target.to_string(),
                message: "the SPU closed the stream".into(),
                retryable: true,
            }),
            Some(Err(code)) => Err(FluvioBackendError::code("server-side chain", target, &code)),
            Some(Ok(record)) => {
                let r = in_record(record);
                let expected = out.last().map_or(self.next, |l: &InRecord| l.offset + 1);
                if r.offset >= expected {
                    out.push(r);
                }
                Ok(())
            }
        }
    }

    async fn maybe_reopen(&mut self) -> Result<(), FluvioBackendError> {
        let budget = self.spec.reopen_after.max(1);
        if self.since_open < budget / 2 {
            return Ok(());
        }
        let PartitionOffsets { high_watermark, .. } =
            self.backend.offsets(&self.topic, self.partition).await?;
        let caught_up = self.next >= high_watermark;
        if caught_up || self.since_open >= budget {
            if !caught_up {
                tracing::warn!(
                    topic = %self.topic, partition = self.partition, position = self.next,
                    "Server-side chain reopening behind the end of the log (its engine budget is spent)."
                );
            }
            self.reopen().await?;
        }
        Ok(())
    }

    /// Replaces the chain instance: a new stream at the next offset.
    pub async fn reopen(&mut self) -> Result<(), FluvioBackendError> {
        let (end, marker) =
            resume_point(&self.backend, &self.topic, self.partition, self.next).await?;
        let stream = open_stream(
            self.backend.client(),
            &self.topic,
            self.partition,
            self.next,
            self.spec.invocations(self.next, end, marker),
        )
        .await?;
        self.stream = stream;
        tracing::info!(
            topic = %self.topic, partition = self.partition, position = self.next,
            records = self.since_open, "Server-side chain reopened to renew its engine instance."
        );
        self.since_open = 0;
        self.reopens += 1;
        Ok(())
    }

    /// Swaps the chain (e.g. a newly registered detect version) and reopens
    /// at the current position; the new modules warm through `look_back`.
    pub async fn replace_chain(&mut self, spec: ServerChainSpec) -> Result<(), FluvioBackendError> {
        let old = std::mem::replace(&mut self.spec, spec);
        if let Err(e) = self.reopen().await {
            self.spec = old;
            return Err(e);
        }
        Ok(())
    }
}

/// Opens a server-side chain: [`ServerChainStream::open`].
pub async fn open_server_chain(
    backend: &FluvioBackend,
    topic: &str,
    partition: u32,
    from: u64,
    spec: ServerChainSpec,
) -> Result<ServerChainStream, FluvioBackendError> {
    ServerChainStream::open(backend, topic, partition, from, spec).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocations_name_modules_and_carry_params_and_look_back() {
        let spec = ServerChainSpec {
            modules: vec![
                NamedModule::new("gridwatch-validate").param("schemas", "{}"),
                NamedModule::new("gridwatch/gridwatch-detect@0.2.0").param("threshold", "3"),
            ],
            lookback: Some(LookbackSpec::Age {
                age: Duration::from_secs(305),
                last: Some(100_000),
            }),
            reopen_after: 2_000_000,
            look_back_through: Some("look_back_through".into()),
        };
        let inv = spec.invocations(42, 50, Some(0xab));
        assert_eq!(inv.len(), 2);
        match &inv[1].wasm {
            SmartModuleInvocationWasm::Predefined(n) => {
                assert_eq!(n, "gridwatch/gridwatch-detect@0.2.0")
            }
            other => panic!("{other:?}"),
        }
        let p = &inv[1].params;
        assert_eq!(p.get("threshold").map(String::as_str), Some("3"));
        assert_eq!(
            p.get("look_back_through").map(String::as_str),
            Some("00000000000000ab")
        );
        let lb = p.lookback().expect("lookback");
        assert_eq!((lb.last, lb.age), (100_000, Some(Duration::from_secs(305))));
        let plain = ServerChainSpec {
            look_back_through: None,
            lookback: None,
            ..spec
        };
        let inv = plain.invocations(7, 7, None);
        assert!(inv[0].params.get("look_back_through").is_none());
        assert!(inv[0].params.lookback().is_none());
        // Before the resume offset: the records behind the end plus the budget.
        let before = ServerChainSpec {
            lookback: Some(LookbackSpec::BeforeResume {
                age: Duration::from_secs(300),
                records: 1_000,
            }),
            ..plain.clone()
        };
        let inv = before.invocations(40, 100, None);
        let lb = inv[1].params.lookback().expect("lookback");
        assert_eq!((lb.last, lb.age), (1_060, Some(Duration::from_secs(300))));
        let inv = plain.invocations(7, 7, None);
        assert!(inv[0].params.get("look_back_through").is_none());
        assert!(inv[0].params.lookback().is_none());
    }
}
