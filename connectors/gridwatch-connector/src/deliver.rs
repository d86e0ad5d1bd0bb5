//! Delivering one batch to a sink under the retry policy.
//!
//! This is the part of the sink driver that does not depend on where the
//! records come from, so the runtime's driver and the compliance harness
//! run the same code.

use std::time::{SystemTime, UNIX_EPOCH};

use gridwatch_contracts::DeadLetter;
use gridwatch_contracts::model::reason;

use crate::retry::{RetryPolicy, entropy};
use crate::sink::{Sink, SinkError, SinkRecord};

/// What became of a batch.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Delivered {
    /// Records the sink took.
    pub written: usize,
    /// Retries spent (not counting the first attempt).
    pub retries: u32,
    /// Records the sink could not take, ready for the dead-letter topic.
    pub dead_letters: Vec<DeadLetter>,
}

/// Writes `batch` to `sink`, retrying transient failures under `policy`.
///
/// Never fails: whatever the sink cannot take comes back as dead letters
/// (reason [`reason::RETRIES_EXHAUSTED`] or [`reason::PERMANENT_SINK_ERROR`])
/// carrying the error, the source position and the original bytes, so the
/// caller can append them to the DLQ and move on. Retries are logged.
pub async fn deliver<S: Sink>(
    sink: &mut S,
    batch: &[SinkRecord],
    policy: &RetryPolicy,
) -> Delivered {
    let mut out = Delivered::default();
    if batch.is_empty() {
        return out;
    }
    let first_failed_at = now_ms();
    let mut attempt = 0u32;
    loop {
        let error = match sink.write(batch).await {
            Ok(()) => {
                out.written = batch.len();
                return out;
            }
            Err(error) => error,
        };
        attempt += 1;
        match error {
            SinkError::Transient(message) if out.retries < policy.max_retries => {
                let delay = policy.delay(out.retries, entropy(u64::from(attempt)));
                tracing::warn!(
                    sink = sink.name(),
                    attempt,
                    retry_in_ms = delay.as_millis() as u64,
                    first_offset = batch[0].offset,
                    records = batch.len(),
                    error = %message,
                    "Sink write failed; retrying."
                );
                out.retries += 1;
                tokio::time::sleep(delay).await;
            }
            SinkError::Transient(message) => {
                out.dead_letters = dead_letters(
                    sink.name(),
                    batch.iter(),
                    reason::RETRIES_EXHAUSTED,
                    &format!("gave up after {attempt} attempts: {message}"),
                    first_failed_at,
                    attempt,
                );
                return out;
            }
            SinkError::Permanent(message) => {
                out.dead_letters = dead_letters(
                    sink.name(),
                    batch.iter(),
                    reason::PERMANENT_SINK_ERROR,
                    &message,
                    first_failed_at,
                    attempt,
                );
                return out;
            }
            SinkError::Rejected(refused) => {
                for (offset, message) in &refused {
                    out.dead_letters.extend(dead_letters(
                        sink.name(),
                        batch.iter().filter(|r| r.offset == *offset),
                        reason::PERMANENT_SINK_ERROR,
                        message,
                        first_failed_at,
                        attempt,
                    ));
                }
                out.written = batch.len() - out.dead_letters.len();
                return out;
            }
        }
    }
}

fn dead_letters<'a>(
    stage: &str,
    records: impl Iterator<Item = &'a SinkRecord>,
    reason: &str,
    message: &str,
    first_failed_at: i64,
    attempts: u32,
) -> Vec<DeadLetter> {
    records
        .map(|r| {
            tracing::error!(
                stage,
                reason,
                source_topic = %r.topic,
                source_partition = r.partition,
                source_offset = r.offset,
                error = message,
                "Dead-lettered."
            );
            DeadLetter {
                reason: reason.to_owned(),
                message: message.to_owned(),
                stage: stage.to_owned(),
                source_topic: Some(r.topic.clone()),
                source_partition: Some(r.partition as i32),
                source_offset: Some(r.offset as i64),
                original: r.value.to_vec(),
                first_failed_at,
                attempts: attempts as i32,
            }
        })
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    /// A sink whose answers are scripted, to drive every branch.
    struct Scripted {
        answers: VecDeque<Result<(), SinkError>>,
        calls: u32,
    }

    impl Sink for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        async fn write(&mut self, _batch: &[SinkRecord]) -> Result<(), SinkError> {
            self.calls += 1;
            self.answers.pop_front().unwrap_or(Ok(()))
        }
    }

    fn batch(n: u64) -> Vec<SinkRecord> {
        (0..n)
            .map(|offset| SinkRecord {
                topic: "anomalies".into(),
                partition: 1,
                offset: 10 + offset,
                timestamp_ms: 0,
                key: None,
                value: Bytes::from(vec![offset as u8; 3]),
            })
            .collect()
    }

    fn scripted(answers: Vec<Result<(), SinkError>>) -> Scripted {
        Scripted {
            answers: answers.into(),
            calls: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_then_succeed() {
        let mut sink = scripted(vec![
            Err(SinkError::Transient("refused".into())),
            Err(SinkError::Transient("refused".into())),
        ]);
        let started = tokio::time::Instant::now();
        let out = deliver(&mut sink, &batch(4), &RetryPolicy::default()).await;
        assert_eq!(out.written, 4);
        assert_eq!(out.retries, 2);
        assert!(out.dead_letters.is_empty());
        assert_eq!(sink.calls, 3);
        // 100 ms then 200 ms nominal, each at least half.
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test(start_paused = true)]
    async fn exhausted_retries_dead_letter_every_record_with_its_position() {
        let mut sink = scripted(vec![Err(SinkError::Transient("down".into())); 10]);
        let out = deliver(&mut sink, &batch(3), &RetryPolicy::default()).await;
        assert_eq!(sink.calls, 4, "1 attempt + 3 retries");
        assert_eq!(out.written, 0);
        assert_eq!(out.retries, 3);
        assert_eq!(out.dead_letters.len(), 3);
        let d = &out.dead_letters[2];
        assert_eq!(d.reason, reason::RETRIES_EXHAUSTED);
        assert_eq!(d.stage, "scripted");
        assert_eq!(d.source_topic.as_deref(), Some("anomalies"));
        assert_eq!(d.source_partition, Some(1));
        assert_eq!(d.source_offset, Some(12));
        assert_eq!(d.original, vec![2u8; 3]);
        assert_eq!(d.attempts, 4);
        assert!(d.message.contains("down"), "{}", d.message);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_skip_the_retries() {
        let mut sink = scripted(vec![Err(SinkError::Permanent("HTTP 400".into()))]);
        let out = deliver(&mut sink, &batch(2), &RetryPolicy::default()).await;
        assert_eq!(sink.calls, 1);
        assert_eq!(out.retries, 0);
        assert_eq!(out.dead_letters.len(), 2);
        assert!(
            out.dead_letters
                .iter()
                .all(|d| d.reason == reason::PERMANENT_SINK_ERROR && d.attempts == 1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rejected_records_alone_are_dead_lettered() {
        let mut sink = scripted(vec![Err(SinkError::Rejected(vec![(11, "too big".into())]))]);
        let out = deliver(&mut sink, &batch(3), &RetryPolicy::default()).await;
        assert_eq!(out.written, 2);
        assert_eq!(out.dead_letters.len(), 1);
        assert_eq!(out.dead_letters[0].source_offset, Some(11));
        assert_eq!(out.dead_letters[0].message, "too big");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_retries_means_one_attempt() {
        let mut sink = scripted(vec![Err(SinkError::Transient("x".into()))]);
        let policy = RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        };
        let out = deliver(&mut sink, &batch(1), &policy).await;
        assert_eq!(sink.calls, 1);
        assert_eq!(out.dead_letters.len(), 1);
    }
}
