//! Readings at the edge in the forms producers send them: a JSON reading, a
//! single Avro datum with Apicurio framing, or an Avro object container file.
//!
//! Shared by `POST /api/v1/readings` and the MQTT and Kafka sources, so every
//! way in decodes the same bytes the same way and dead-letters the same
//! mistakes with the same reasons (the codes of
//! `gridwatch_contracts::model::reason`, as validate uses them).
//!
//! Framed Avro is decoded here, at the edge, rather than appended as it
//! came, because ingest drops re-sent readings by `(meter_id, timestamp)`
//! and so must see the reading. The writer schema comes from the registry by
//! the frame's contentId (any schema a producer registered, not only
//! Gridwatch's own), so producers may write older or newer compatible
//! versions. What is appended is always our own SensorReading framing.
//!
//! HTTP content types (the body's first bytes decide between the two Avro
//! forms, so a client that picks the "wrong" Avro type still works):
//!
//! | Content-Type | body |
//! |---|---|
//! | `application/vnd.apache.avro+binary`, `avro/binary`, `application/avro` | one framed datum: `0x00`, 4-byte big-endian contentId, the datum |
//! | `application/vnd.apache.avro.file`, `avro/file` | an Avro object container file (starts with `Obj\x01`) of SensorReading, or of records holding one (`reading`, `original_event`) |
//! | `application/octet-stream` | either, by its first bytes |

use std::collections::HashSet;
use std::sync::Mutex;

use bytes::Bytes;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::json::parse_reading;
use gridwatch_contracts::model::reason;
use gridwatch_contracts::{DeadLetter, SensorReading};
use gridwatch_registry::{RegistryError, SchemaId, SchemaRegistry};
use gridwatch_runtime::processor::now_ms;

/// The magic bytes of an Avro object container file.
pub const CONTAINER_MAGIC: &[u8; 4] = b"Obj\x01";

/// The most of a malformed body kept in its dead letter. A dead letter is
/// one record in the `dead-letter` topic; a whole 16 MiB body does not
/// belong there, and the first 64 KiB are enough to see what was sent.
pub const MAX_ORIGINAL: usize = 64 * 1024;

/// Most contentIds remembered as unknown, so that a producer sending
/// garbage with random ids does not cost a registry request per message.
const UNKNOWN_IDS_MAX: usize = 4096;

/// The registry could not be asked; nothing was decided, retry later.
#[derive(Debug, thiserror::Error)]
#[error("the schema registry is unavailable: {0}")]
pub struct Unavailable(#[from] RegistryError);

/// Either a reading, or the dead letter saying why the bytes are not one.
pub type Decoded = Result<SensorReading, Box<DeadLetter>>;

/// Which Avro form an HTTP body is in, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvroBody {
    /// A framed datum, unless the body starts with the container magic.
    Framed,
    /// A container file, or a framed datum if it starts with `0x00`.
    Container,
    /// Decided by the first bytes alone.
    Sniff,
}

impl AvroBody {
    /// The Avro form a (lower-cased, parameter-free) content type names.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        match content_type {
            "application/vnd.apache.avro+binary" | "avro/binary" | "application/avro" => {
                Some(Self::Framed)
            }
            "application/vnd.apache.avro.file" | "avro/file" => Some(Self::Container),
            "application/octet-stream" => Some(Self::Sniff),
            _ => None,
        }
    }
}

/// Decodes edge payloads into readings. One per process, shared.
pub struct EdgeDecoder {
    registry: SchemaRegistry,
    /// The contentId of our own SensorReading: decoded without a lookup.
    reading_id: u64,
    unknown: Mutex<HashSet<u64>>,
}

impl std::fmt::Debug for EdgeDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeDecoder")
            .field("reading_id", &self.reading_id)
            .finish_non_exhaustive()
    }
}

impl EdgeDecoder {
    pub fn new(registry: SchemaRegistry, reading_id: u64) -> Self {
        Self {
            registry,
            reading_id,
            unknown: Mutex::new(HashSet::new()),
        }
    }

    /// One source message: framed Avro when it starts with the magic byte
    /// `0x00` (JSON never does), else JSON.
    pub async fn payload(&self, bytes: &[u8], origin: &str) -> Result<Decoded, Unavailable> {
        if bytes.first() == Some(&framing::MAGIC) {
            return self.framed(bytes, origin).await;
        }
        Ok(parse_reading(bytes).map_err(|e| {
            Box::new(dead_letter(
                e.reason(),
                format!("{origin}: {e}"),
                bytes,
                origin,
                None,
            ))
        }))
    }

    /// One Apicurio-framed Avro datum (4-byte contentId).
    pub async fn framed(&self, bytes: &[u8], origin: &str) -> Result<Decoded, Unavailable> {
        let bad = |code: &str, message: String| {
            Ok(Err(Box::new(dead_letter(
                code,
                format!("{origin}: {message}"),
                bytes,
                origin,
                None,
            ))))
        };
        let framed = match framing::parse(bytes, IdWidth::ContentId4) {
            Ok(f) => f,
            Err(e) => return bad(reason::UNPARSEABLE, e.to_string()),
        };
        let decoded = if framed.schema_id == self.reading_id {
            SensorReading::from_avro(framed.datum)
        } else {
            if lock(&self.unknown).contains(&framed.schema_id) {
                return bad(
                    reason::UNKNOWN_SCHEMA,
                    format!("contentId {} is not in the registry", framed.schema_id),
                );
            }
            let schema = match self
                .registry
                .writer_schema(SchemaId::ContentId(framed.schema_id))
                .await
            {
                Ok(s) => s,
                Err(e) if e.is_retryable() => return Err(Unavailable(e)),
                Err(e) => {
                    let known_absent = matches!(e, RegistryError::NotFound { .. });
                    if known_absent {
                        let mut unknown = lock(&self.unknown);
                        if unknown.len() >= UNKNOWN_IDS_MAX {
                            unknown.clear();
                        }
                        unknown.insert(framed.schema_id);
                    }
                    return bad(
                        reason::UNKNOWN_SCHEMA,
                        format!("contentId {}: {e}", framed.schema_id),
                    );
                }
            };
            SensorReading::from_avro_with(framed.datum, &schema)
        };
        match decoded {
            Ok(r) => Ok(Ok(r)),
            Err(e) => bad(reason::SCHEMA_MISMATCH, e.to_string()),
        }
    }

    /// An HTTP body in one of the Avro forms: readings, and dead letters for
    /// what did not decode. `Err` only when the registry is unreachable.
    pub async fn http_body(
        &self,
        kind: AvroBody,
        body: Bytes,
    ) -> Result<(Vec<SensorReading>, Vec<DeadLetter>), Unavailable> {
        let container = match kind {
            AvroBody::Framed => body.starts_with(CONTAINER_MAGIC),
            AvroBody::Container => body.first() != Some(&framing::MAGIC),
            AvroBody::Sniff => body.starts_with(CONTAINER_MAGIC),
        };
        if container {
            return Ok(read_container(body).await);
        }
        Ok(match self.framed(&body, "http").await? {
            Ok(r) => (vec![r], Vec::new()),
            Err(d) => (Vec::new(), vec![*d]),
        })
    }
}

/// Reads an Avro container body with gridwatch-files (the same reader as
/// `gridwatch ingest` and `score`), through a temporary file, since the
/// readers stream from files. Records that do not map to a reading, and a
/// body that is not a container at all or breaks part-way, become dead
/// letters; the readings before a break are kept.
pub async fn read_container(body: Bytes) -> (Vec<SensorReading>, Vec<DeadLetter>) {
    let whole = body.clone();
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        use std::io::Write as _;
        let mut file = tempfile::Builder::new()
            .prefix("gridwatch-avro-")
            .suffix(".avro")
            .tempfile()?;
        file.write_all(&body)?;
        file.flush()?;
        let options = gridwatch_files::ReadOptions {
            format: Some(gridwatch_files::Format::Avro),
            ..Default::default()
        };
        let mut readings = Vec::new();
        let mut dead = Vec::new();
        match gridwatch_files::open(file.path(), &options) {
            Ok(reader) => {
                for batch in reader {
                    match batch {
                        Ok(b) => {
                            readings.extend(b.readings);
                            dead.extend(b.errors.iter().map(|e| {
                                dead_letter(
                                    e.reason,
                                    format!("Avro container {}: {}", e.position, e.message),
                                    &e.original,
                                    "http:avro-container",
                                    i64::try_from(e.position.record).ok(),
                                )
                            }));
                        }
                        Err(e) => dead.push(file_error(&e, &body, readings.len())),
                    }
                }
            }
            Err(e) => dead.push(file_error(&e, &body, 0)),
        }
        Ok((readings, dead))
    })
    .await;
    match read {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => (
            Vec::new(),
            vec![dead_letter(
                reason::UNPARSEABLE,
                format!("Avro container could not be buffered for reading: {e}"),
                &whole,
                "http:avro-container",
                None,
            )],
        ),
        Err(e) => (
            Vec::new(),
            vec![dead_letter(
                reason::UNPARSEABLE,
                format!("Avro container reader failed: {e}"),
                &whole,
                "http:avro-container",
                None,
            )],
        ),
    }
}

/// The dead letter for a container that cannot be read (on from `kept` readings).
fn file_error(e: &gridwatch_files::FileError, body: &[u8], kept: usize) -> DeadLetter {
    use gridwatch_files::FileError;
    let code = match e {
        FileError::Schema { .. } => reason::SCHEMA_MISMATCH,
        _ => reason::UNPARSEABLE,
    };
    // The temporary file's path means nothing to the sender; keep the detail.
    let detail = match e {
        FileError::Io { source, .. } => source.to_string(),
        FileError::UnknownFormat { detail, .. }
        | FileError::NotFormat { detail, .. }
        | FileError::Schema { detail, .. } => detail.clone(),
        FileError::Corrupt {
            position, detail, ..
        } => format!("corrupt at {position}: {detail}"),
    };
    dead_letter(
        code,
        format!("Avro container: {detail} ({kept} readings before this point were accepted)"),
        body,
        "http:avro-container",
        None,
    )
}

/// An ingest-stage dead letter. `original` is capped at [`MAX_ORIGINAL`].
pub fn dead_letter(
    code: &str,
    mut message: String,
    original: &[u8],
    origin: &str,
    offset: Option<i64>,
) -> DeadLetter {
    if original.len() > MAX_ORIGINAL {
        message.push_str(&format!(
            " (original truncated to its first {MAX_ORIGINAL} of {} bytes)",
            original.len()
        ));
    }
    DeadLetter {
        reason: code.to_owned(),
        message,
        stage: "ingest".into(),
        source_topic: Some(origin.to_owned()),
        source_partition: None,
        source_offset: offset,
        original: original[..original.len().min(MAX_ORIGINAL)].to_vec(),
        first_failed_at: now_ms(),
        attempts: 1,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            AvroBody::from_content_type("avro/binary"),
            Some(AvroBody::Framed)
        );
        assert_eq!(
            AvroBody::from_content_type("application/vnd.apache.avro.file"),
            Some(AvroBody::Container)
        );
        assert_eq!(AvroBody::from_content_type("application/json"), None);
    }

    #[tokio::test]
    async fn a_body_that_is_no_container_is_one_dead_letter() {
        let (ok, bad) = read_container(Bytes::from_static(b"Obj\x01garbage")).await;
        assert!(ok.is_empty());
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].reason, reason::UNPARSEABLE);
        assert_eq!(bad[0].original, b"Obj\x01garbage");
        assert!(
            !bad[0].message.contains("gridwatch-avro-"),
            "{}",
            bad[0].message
        );
    }
}
