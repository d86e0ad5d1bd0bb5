//! The grid pipeline's topology: how the validate → detect chain's output
//! becomes the `scored`, `anomalies` and `dead-letter` topics.
//!
//! Every chain output is a [`ChainRecord`]: `Scored` (every processed
//! reading, with its anomalies) or `DeadLetter` (why validate refused it).
//! Identities, used to skip what a crashed run already wrote:
//! - a scored reading: its source offset;
//! - an anomaly: its `anomaly_id`, itself derived from the source offset;
//! - a dead letter: its source offset.

use bytes::Bytes;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::fast;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::{AnomalyEvent, ChainRecord, DeadLetter, ScoredReading};
use xxhash_rust::xxh3::xxh3_64;

use crate::backend::InRecord;
use crate::metrics::Metrics;
use crate::processor::{Identified, Routed, Router, framed, out};
use crate::topics::{SchemaIds, Topics};

const SCORED: usize = 0;
const ANOMALIES: usize = 1;
const DEAD_LETTER: usize = 2;

/// Routes [`ChainRecord`]s to the grid pipeline's three output topics.
#[derive(Debug, Clone)]
pub struct GridRouter {
    topics: Topics,
    ids: SchemaIds,
    metrics: Metrics,
}

impl GridRouter {
    pub fn new(topics: Topics, ids: SchemaIds, metrics: Metrics) -> Self {
        Self {
            topics,
            ids,
            metrics,
        }
    }
}

fn offset_identity(offset: u64) -> u64 {
    offset
}

fn anomaly_identity(anomaly_id: &str) -> u64 {
    xxh3_64(anomaly_id.as_bytes())
}

impl Router for GridRouter {
    fn outputs(&self) -> Vec<String> {
        self.topics.outputs().map(str::to_owned).to_vec()
    }

    fn route(
        &self,
        partition: u32,
        input: &InRecord,
        output: &[u8],
        out_: &mut Vec<Routed>,
    ) -> Result<(), String> {
        // Nearly every output is a scored reading without anomalies. Its
        // union branch is already the `scored` topic's datum, so it is
        // framed as it lies instead of decoded and encoded again; the
        // serde path below takes the rest.
        if let Some((scored, datum)) = fast::decode_chain_scored(output) {
            let key = Bytes::copy_from_slice(scored.reading.meter_id.as_bytes());
            out_.push(Routed {
                output: SCORED,
                identity: offset_identity(input.offset),
                record: framed(Some(key), self.ids.scored, datum, input.timestamp_ms),
            });
            return Ok(());
        }
        let record =
            ChainRecord::from_avro(output).map_err(|e| format!("not a ChainRecord: {e}"))?;
        match record {
            ChainRecord::Scored(s) => {
                let key = Some(Bytes::from(s.reading.meter_id.clone().into_bytes()));
                for a in &s.anomalies {
                    self.metrics
                        .anomaly(a.severity.as_str(), a.anomaly_type.as_str());
                    out_.push(Routed {
                        output: ANOMALIES,
                        identity: anomaly_identity(&a.anomaly_id),
                        record: out(key.clone(), self.ids.anomaly, a, input.timestamp_ms),
                    });
                }
                out_.push(Routed {
                    output: SCORED,
                    identity: offset_identity(input.offset),
                    record: out(key, self.ids.scored, &s, input.timestamp_ms),
                });
            }
            ChainRecord::DeadLetter(mut d) => {
                d.source_topic = Some(self.topics.readings.clone());
                d.source_partition = Some(partition as i32);
                d.source_offset = Some(input.offset as i64);
                tracing::warn!(
                    stage = %d.stage, reason = %d.reason, topic = %self.topics.readings,
                    partition, offset = input.offset, bytes = d.original.len(),
                    message = %d.message,
                    "Event dead-lettered."
                );
                self.metrics.dead_letter(&d.stage, &d.reason);
                out_.push(Routed {
                    output: DEAD_LETTER,
                    identity: offset_identity(input.offset),
                    record: out(
                        input.key.clone(),
                        self.ids.dead_letter,
                        &d,
                        input.timestamp_ms,
                    ),
                });
            }
            ChainRecord::Reading(_) => {
                return Err("the chain returned an unscored reading; is detect missing?".into());
            }
        }
        Ok(())
    }

    fn dead_letter(&self, partition: u32, input: &InRecord, message: &str) -> Option<Routed> {
        let d = DeadLetter {
            reason: gridwatch_contracts::model::reason::CHAIN_FAILED.to_string(),
            message: message.to_string(),
            stage: "detect".to_string(),
            source_topic: Some(self.topics.readings.clone()),
            source_partition: Some(partition as i32),
            source_offset: Some(input.offset as i64),
            original: input.value.to_vec(),
            first_failed_at: crate::processor::now_ms(),
            attempts: 1,
        };
        self.metrics.dead_letter(&d.stage, &d.reason);
        Some(Routed {
            output: DEAD_LETTER,
            identity: offset_identity(input.offset),
            record: out(
                input.key.clone(),
                self.ids.dead_letter,
                &d,
                input.timestamp_ms,
            ),
        })
    }

    fn identify(&self, output: usize, value: &[u8]) -> Option<Identified> {
        let framed = framing::parse(value, IdWidth::ContentId4).ok()?;
        match output {
            SCORED => {
                let s = ScoredReading::from_avro(framed.datum).ok()?;
                let o = s.source_offset as u64;
                Some(Identified {
                    source_offset: Some(o),
                    identity: offset_identity(o),
                })
            }
            ANOMALIES => {
                let a = AnomalyEvent::from_avro(framed.datum).ok()?;
                Some(Identified {
                    source_offset: None,
                    identity: anomaly_identity(&a.anomaly_id),
                })
            }
            DEAD_LETTER => {
                let d = DeadLetter::from_avro(framed.datum).ok()?;
                // Sinks' dead letters share the topic; only the chain's own
                // (from the input topic) are this processor's outputs.
                if d.source_topic.as_deref() != Some(self.topics.readings.as_str()) {
                    return None;
                }
                let o = d.source_offset? as u64;
                Some(Identified {
                    source_offset: Some(o),
                    identity: offset_identity(o),
                })
            }
            _ => None,
        }
    }
}
