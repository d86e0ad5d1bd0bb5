//! [`InfluxDbSink`]: batch → line protocol → gzip → one request per
//! `batch_size` points.
//!
//! # Exactly once
//!
//! InfluxDB cannot say which source offsets it holds cheaply, so
//! [`Sink::recover`] answers `None` and the sink relies on idempotence
//! instead: a point is identified by its series (measurement and tags) and
//! its event-time timestamp, so re-writing a batch after a crash or a retry
//! overwrites the same points (see [`crate::encoder`]). For the same reason
//! a batch is retried whole even when some of its requests got through.
//!
//! # Failures
//!
//! - No answer, a timeout, 429 or a 5xx: [`SinkError::Transient`]; the
//!   shared retry policy retries the batch, then dead-letters it.
//! - 401/403/404 and other 4xx (wrong database, bucket, org, credentials):
//!   the request and every later one in the batch would fail alike, so the
//!   whole batch is [`SinkError::Permanent`] (or [`SinkError::Rejected`]
//!   with those records, if some requests of the batch were written).
//! - 400 naming bad lines (a parse error, a field type conflict) or 413:
//!   the server refused something in the request, and 1.x may have written
//!   the rest ("partial write"). The sink splits the request in halves and
//!   re-sends each, down to single points, so only the points the server
//!   refuses are dead-lettered ([`SinkError::Rejected`]) and the others are
//!   written; re-sending points that were already written is harmless. The
//!   cost is about 2·k·log2(n) extra requests for k bad points in n.
//! - A record that is not a framed Avro `AnomalyEvent`, or whose tags have
//!   no line-protocol spelling: refused before sending
//!   ([`SinkError::Rejected`]), the rest of the batch is written.
//!
//! # Flush
//!
//! A write returns when the server has answered 204, by which point InfluxDB
//! has the points in its write-ahead log, so [`Sink::flush`] has nothing to
//! do.

use std::ops::Range;

use gridwatch_connector::{Sink, SinkError, SinkRecord};

use crate::InfluxDbError;
use crate::config::InfluxDbConfig;
use crate::encoder::LineEncoder;
use crate::service::{Failure, Writer};

/// Writes anomaly records to InfluxDB. Build with [`InfluxDbSink::new`].
#[derive(Debug)]
pub struct InfluxDbSink {
    writer: Writer,
    encoder: LineEncoder,
    batch_size: usize,
    /// The batch's line protocol, reused between batches.
    body: Vec<u8>,
    /// Each encoded record: its source offset and its bytes in `body`.
    lines: Vec<(u64, Range<usize>)>,
}

impl InfluxDbSink {
    /// Builds the sink: validates `config` (keys named under
    /// `sinks.influxdb`), reads `token_file` and `tls.ca_cert`, and
    /// prepares the HTTP client. It does not contact the server: a server
    /// that is down at start-up is a transient failure of the first write,
    /// not a reason to refuse to start.
    pub fn new(config: &InfluxDbConfig) -> Result<Self, InfluxDbError> {
        config.validate("sinks.influxdb")?;
        let writer = Writer::new(config)?;
        tracing::info!(url = %writer.url(), api = ?config.api, "InfluxDB sink configured.");
        Ok(Self {
            writer,
            encoder: LineEncoder::new(&config.measurement),
            batch_size: config.batch_size,
            body: Vec::new(),
            lines: Vec::new(),
        })
    }

    /// The bytes of lines `range` (indices into `self.lines`), contiguous in `body`.
    fn body_of(&self, range: &Range<usize>) -> &[u8] {
        let start = self.lines[range.start].1.start;
        let end = self.lines[range.end - 1].1.end;
        &self.body[start..end]
    }
}

impl Sink for InfluxDbSink {
    fn name(&self) -> &str {
        "influxdb"
    }

    async fn write(&mut self, batch: &[SinkRecord]) -> Result<(), SinkError> {
        self.body.clear();
        self.lines.clear();
        let mut refused: Vec<(u64, String)> = Vec::new();
        for record in batch {
            let start = self.body.len();
            match self.encoder.encode_record(record, &mut self.body) {
                Ok(()) => self.lines.push((record.offset, start..self.body.len())),
                Err(e) => refused.push((record.offset, format!("not written to InfluxDB: {e}"))),
            }
        }
        let encode_refusals = refused.len();

        // Requests to make, as ranges of `lines`; popped from the end, so
        // pushed in reverse to go in offset order.
        let mut todo: Vec<Range<usize>> = (0..self.lines.len())
            .step_by(self.batch_size)
            .map(|s| s..(s + self.batch_size).min(self.lines.len()))
            .rev()
            .collect();
        let mut request_wide: Option<String> = None;
        while let Some(range) = todo.pop() {
            match self.writer.write(self.body_of(&range)).await {
                Ok(()) => {}
                Err(Failure::Transient(m)) => return Err(SinkError::Transient(m)),
                Err(Failure::Lines(m)) if range.len() > 1 => {
                    tracing::warn!(
                        first_offset = self.lines[range.start].0,
                        points = range.len(),
                        error = %m,
                        "InfluxDB refused lines of a request; splitting it to find them."
                    );
                    let mid = range.start + range.len() / 2;
                    todo.push(mid..range.end);
                    todo.push(range.start..mid);
                }
                Err(Failure::Lines(m)) => refused.push((self.lines[range.start].0, m)),
                Err(Failure::Permanent(m)) => {
                    // Not about the lines: every request left would get the same answer.
                    for r in std::iter::once(range).chain(todo.drain(..).rev()) {
                        refused.extend(self.lines[r].iter().map(|(o, _)| (*o, m.clone())));
                    }
                    request_wide = Some(m);
                }
            }
        }
        match request_wide {
            Some(m) if encode_refusals == 0 && refused.len() == batch.len() => {
                Err(SinkError::Permanent(m))
            }
            _ if refused.is_empty() => Ok(()),
            _ => {
                refused.sort_by_key(|(o, _)| *o);
                Err(SinkError::Rejected(refused))
            }
        }
    }
}
