//! The compliance harness every sink's tests run against its real server.
//!
//! It plays the runtime's driver through a crash: write and flush, "crash"
//! (drop the sink), build a new one, recover, and re-deliver an overlapping
//! range the way the driver does after restarting from an older checkpoint.
//! The destination, read back by the test's own independent client, must
//! then hold every source position exactly once.
//!
//! ```ignore
//! let report = Compliance::new("anomalies", content_id)
//!     .run(|| async { MySink::connect(&config).await.unwrap() },
//!          |topic, partition| async move { read_offsets_with_python(topic, partition) })
//!     .await
//!     .unwrap();
//! ```

use std::collections::BTreeMap;
use std::future::Future;

use bytes::Bytes;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::{AnomalyEvent, AnomalyType, MeterStatus, SensorReading, Severity};

use crate::deliver::deliver;
use crate::retry::RetryPolicy;
use crate::sink::{Sink, SinkRecord};

/// A compliance failure, saying which step broke the contract.
#[derive(Debug, thiserror::Error)]
#[error("sink compliance, step {step}: {problem}")]
pub struct ComplianceError {
    pub step: &'static str,
    pub problem: String,
}

/// What a run did, for the test's output.
#[derive(Debug, Clone, Default)]
pub struct ComplianceReport {
    pub records_written: usize,
    pub recovered_after_crash: Option<u64>,
    pub checked_positions: usize,
}

/// The harness. Records are framed Avro [`AnomalyEvent`]s unless
/// [`Compliance::with_records`] supplies another factory.
/// Makes the record at (topic, partition, offset).
type RecordFactory = Box<dyn Fn(&str, u32, u64) -> SinkRecord + Send + Sync>;

pub struct Compliance {
    topic: String,
    factory: RecordFactory,
    policy: RetryPolicy,
}

impl std::fmt::Debug for Compliance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compliance")
            .field("topic", &self.topic)
            .finish()
    }
}

impl Compliance {
    /// A harness writing anomalies of `topic`, framed with `content_id`.
    pub fn new(topic: &str, content_id: u64) -> Self {
        Self {
            topic: topic.to_owned(),
            factory: Box::new(move |topic, partition, offset| {
                anomaly_record(topic, partition, offset, content_id)
            }),
            policy: RetryPolicy::default(),
        }
    }

    /// Uses `factory(topic, partition, offset)` to make the records.
    pub fn with_records(
        mut self,
        factory: impl Fn(&str, u32, u64) -> SinkRecord + Send + Sync + 'static,
    ) -> Self {
        self.factory = Box::new(factory);
        self
    }

    fn records(&self, partition: u32, offsets: std::ops::Range<u64>) -> Vec<SinkRecord> {
        offsets
            .map(|o| (self.factory)(&self.topic, partition, o))
            .collect()
    }

    /// Runs the contract. `make` builds a sink against the (initially
    /// empty) destination; `read_back(topic, partition)` returns the source
    /// offsets the destination holds for that partition, one entry per copy,
    /// read with a client independent of the sink.
    pub async fn run<S, M, MF, R, RF>(
        &self,
        make: M,
        read_back: R,
    ) -> Result<ComplianceReport, ComplianceError>
    where
        S: Sink,
        M: Fn() -> MF,
        MF: Future<Output = S>,
        R: Fn(String, u32) -> RF,
        RF: Future<Output = Vec<u64>>,
    {
        let mut report = ComplianceReport::default();
        let fail = |step, problem: String| ComplianceError { step, problem };

        // 1. A fresh destination has nothing to recover.
        let mut sink = make().await;
        let recovered = sink
            .recover(&self.topic, 0)
            .await
            .map_err(|e| fail("recover on an empty destination", e.to_string()))?;
        if recovered.is_some() {
            return Err(fail(
                "recover on an empty destination",
                format!("returned {recovered:?}, expected None"),
            ));
        }

        // 2. Two batches on partition 0 and one on partition 1, flushed.
        for batch in [
            self.records(0, 0..60),
            self.records(0, 60..100),
            self.records(1, 0..25),
        ] {
            let out = deliver(&mut sink, &batch, &self.policy).await;
            if !out.dead_letters.is_empty() {
                return Err(fail(
                    "write",
                    format!(
                        "{} dead letters: {:?}",
                        out.dead_letters.len(),
                        out.dead_letters[0]
                    ),
                ));
            }
            report.records_written += out.written;
        }
        sink.flush()
            .await
            .map_err(|e| fail("flush", e.to_string()))?;
        check_once(&read_back, &self.topic, 0, 0..100, "after the first flush").await?;
        check_once(&read_back, &self.topic, 1, 0..25, "after the first flush").await?;

        // 3. Written but never flushed/checkpointed, then a crash.
        let out = deliver(&mut sink, &self.records(0, 100..120), &self.policy).await;
        report.records_written += out.written;
        drop(sink);

        // 4. Restart from an older checkpoint (offset 50): recover, skip
        //    what the sink says it has, re-deliver the overlap.
        let mut sink = make().await;
        let recovered = sink
            .recover(&self.topic, 0)
            .await
            .map_err(|e| fail("recover after a crash", e.to_string()))?;
        if let Some(r) = recovered
            && r < 99
        {
            return Err(fail(
                "recover after a crash",
                format!("returned {r}, but offsets up to 99 were flushed"),
            ));
        }
        report.recovered_after_crash = recovered;
        let resume = recovered.map_or(50, |r| r + 1).max(50);
        for chunk in self.records(0, resume..150).chunks(33) {
            let out = deliver(&mut sink, chunk, &self.policy).await;
            if !out.dead_letters.is_empty() {
                return Err(fail("re-delivery", format!("{:?}", out.dead_letters[0])));
            }
            report.records_written += out.written;
        }
        sink.flush()
            .await
            .map_err(|e| fail("flush after re-delivery", e.to_string()))?;
        // 5. An empty batch and an empty flush are no-ops.
        let out = deliver(&mut sink, &[], &self.policy).await;
        if out.written != 0 || !out.dead_letters.is_empty() {
            return Err(fail("empty batch", format!("{out:?}")));
        }
        sink.flush()
            .await
            .map_err(|e| fail("empty flush", e.to_string()))?;

        check_once(
            &read_back,
            &self.topic,
            0,
            0..150,
            "after crash and re-delivery",
        )
        .await?;
        check_once(
            &read_back,
            &self.topic,
            1,
            0..25,
            "after crash and re-delivery",
        )
        .await?;
        report.checked_positions = 175;
        Ok(report)
    }
}

async fn check_once<R, RF>(
    read_back: &R,
    topic: &str,
    partition: u32,
    want: std::ops::Range<u64>,
    step: &'static str,
) -> Result<(), ComplianceError>
where
    R: Fn(String, u32) -> RF,
    RF: Future<Output = Vec<u64>>,
{
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for offset in read_back(topic.to_owned(), partition).await {
        *counts.entry(offset).or_default() += 1;
    }
    let missing: Vec<u64> = want.clone().filter(|o| !counts.contains_key(o)).collect();
    let twice: Vec<(u64, usize)> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(o, n)| (*o, *n))
        .collect();
    let extra: Vec<u64> = counts
        .keys()
        .filter(|o| !want.contains(o))
        .copied()
        .collect();
    if missing.is_empty() && twice.is_empty() && extra.is_empty() {
        return Ok(());
    }
    Err(ComplianceError {
        step,
        problem: format!(
            "partition {partition}: missing {} (first {:?}), duplicated {} (first {:?}), unexpected {} (first {:?})",
            missing.len(),
            missing.first(),
            twice.len(),
            twice.first(),
            extra.len(),
            extra.first()
        ),
    })
}

/// A framed Avro anomaly whose identity follows from its position, as the
/// pipeline's are: the harness's default record.
pub fn anomaly_record(topic: &str, partition: u32, offset: u64, content_id: u64) -> SinkRecord {
    let event = sample_anomaly(partition, offset);
    let mut value = Vec::with_capacity(256);
    framing::write_header(&mut value, content_id, IdWidth::ContentId4);
    event
        .encode_into(&mut value)
        .expect("a sample anomaly always encodes");
    SinkRecord {
        topic: topic.to_owned(),
        partition,
        offset,
        timestamp_ms: event.detected_at,
        key: Some(Bytes::from(event.original_event.meter_id.clone())),
        value: Bytes::from(value),
    }
}

/// The anomaly behind [`anomaly_record`]: distinct meter, time and id per
/// position, spread over two UTC days so date partitioning is exercised.
pub fn sample_anomaly(partition: u32, offset: u64) -> AnomalyEvent {
    // 2026-03-01T23:00:00Z, then one minute per offset: crosses midnight.
    let timestamp = 1_772_406_000_000 + offset as i64 * 60_000;
    let meter_id = format!("meter-{partition}-{:04}", offset % 37);
    let original_event = SensorReading {
        meter_id: meter_id.clone(),
        timestamp,
        voltage: 250.0 + (offset % 10) as f64,
        current: 5.0,
        temperature: 20.0,
        status: MeterStatus::Ok,
    };
    let anomaly_type = AnomalyType::VoltageSurge;
    AnomalyEvent {
        anomaly_id: gridwatch_contracts::id::anomaly_id(
            &meter_id,
            timestamp,
            offset as i64,
            anomaly_type,
        ),
        anomaly_type,
        severity: if offset.is_multiple_of(5) {
            Severity::Critical
        } else {
            Severity::Warning
        },
        detected_at: timestamp + 3,
        original_event,
        field: Some("voltage".into()),
        zscore: Some(3.0 + (offset % 7) as f64 / 10.0),
        window_mean: Some(230.0),
        window_stddev: Some(4.0),
        window_count: Some(300),
        threshold: Some(2.5),
        window_ms: Some(300_000),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::sink::SinkError;

    type Store = Arc<Mutex<BTreeMap<(u32, u64), usize>>>;

    /// An in-memory destination, idempotent or not, with or without recover.
    struct Memory {
        store: Store,
        idempotent: bool,
        recovers: bool,
    }

    impl Sink for Memory {
        fn name(&self) -> &str {
            "memory"
        }
        async fn recover(
            &mut self,
            _topic: &str,
            partition: u32,
        ) -> Result<Option<u64>, SinkError> {
            if !self.recovers {
                return Ok(None);
            }
            let store = self.store.lock().unwrap();
            Ok(store
                .keys()
                .filter(|(p, _)| *p == partition)
                .map(|(_, o)| *o)
                .max())
        }
        async fn write(&mut self, batch: &[SinkRecord]) -> Result<(), SinkError> {
            let mut store = self.store.lock().unwrap();
            for r in batch {
                let n = store.entry((r.partition, r.offset)).or_default();
                *n = if self.idempotent { 1 } else { *n + 1 };
            }
            Ok(())
        }
    }

    async fn run(idempotent: bool, recovers: bool) -> Result<ComplianceReport, ComplianceError> {
        let store: Store = Arc::default();
        let s2 = Arc::clone(&store);
        Compliance::new("anomalies", 7)
            .run(
                || {
                    let store = Arc::clone(&store);
                    async move {
                        Memory {
                            store,
                            idempotent,
                            recovers,
                        }
                    }
                },
                move |_topic, partition| {
                    let store = Arc::clone(&s2);
                    async move {
                        let store = store.lock().unwrap();
                        store
                            .iter()
                            .filter(|((p, _), _)| *p == partition)
                            .flat_map(|((_, o), n)| std::iter::repeat_n(*o, *n))
                            .collect()
                    }
                },
            )
            .await
    }

    #[tokio::test]
    async fn idempotent_sinks_pass() {
        let report = run(true, false).await.unwrap();
        assert_eq!(report.checked_positions, 175);
        assert_eq!(report.recovered_after_crash, None);
    }

    #[tokio::test]
    async fn append_only_sinks_pass_when_they_recover() {
        let report = run(false, true).await.unwrap();
        assert_eq!(report.recovered_after_crash, Some(119));
    }

    #[tokio::test]
    async fn append_only_sinks_without_recovery_fail_with_duplicates() {
        let e = run(false, false).await.unwrap_err();
        assert_eq!(e.step, "after crash and re-delivery");
        assert!(e.problem.contains("duplicated 70"), "{e}");
    }

    #[test]
    fn sample_records_decode_and_cross_midnight() {
        let r = anomaly_record("anomalies", 1, 100, 9);
        let framed = framing::parse(&r.value, IdWidth::ContentId4).unwrap();
        assert_eq!(framed.schema_id, 9);
        let event = AnomalyEvent::from_avro(framed.datum).unwrap();
        assert_eq!(event, sample_anomaly(1, 100));
        let day = |o| sample_anomaly(0, o).original_event.timestamp / 86_400_000;
        assert_ne!(day(0), day(100));
    }
}
