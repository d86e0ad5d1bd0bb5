//! Acknowledgements: an operator marks an anomaly as seen and handled.
//!
//! They live in one small JSON file in the data directory, rewritten
//! atomically (write a temporary file, fsync, rename) on every
//! acknowledgement, so a restart keeps them. The store holds at most
//! [`MAX_ACKS`] entries; past that the oldest acknowledgements are dropped
//! (their anomalies are long out of the operator's view by then). An
//! acknowledgement is broadcast to every open feed so all browsers update.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Most acknowledgements kept; older ones are dropped first.
pub const MAX_ACKS: usize = 10_000;
/// Longest accepted anomaly id, `by` or `note` (bytes).
pub const MAX_FIELD: usize = 512;

/// One acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub anomaly_id: String,
    /// Who acknowledged, as the operator typed it.
    pub by: Option<String>,
    pub note: Option<String>,
    /// When, epoch ms.
    pub at_ms: i64,
}

/// What went wrong acknowledging.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    #[error("{field} = {value:?} is not allowed: {allowed}")]
    Invalid {
        field: &'static str,
        value: String,
        allowed: &'static str,
    },
    #[error("acknowledgements file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("acknowledgements file {path} is not valid JSON: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The acknowledgements, in memory and on disk.
#[derive(Debug, Clone)]
pub struct AckStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    acks: Mutex<VecDeque<Ack>>,
    /// Serialises file writes so a later state never loses to an earlier one.
    write: tokio::sync::Mutex<()>,
    tx: broadcast::Sender<Ack>,
}

impl AckStore {
    /// Loads the file if it exists.
    pub fn open(path: PathBuf) -> Result<Self, AckError> {
        let acks: VecDeque<Ack> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| AckError::Corrupt {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => VecDeque::new(),
            Err(source) => return Err(AckError::Io { path, source }),
        };
        let (tx, _) = broadcast::channel(1024);
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                acks: Mutex::new(acks),
                write: tokio::sync::Mutex::new(()),
                tx,
            }),
        })
    }

    /// Every acknowledgement, oldest first.
    pub fn all(&self) -> Vec<Ack> {
        self.lock().iter().cloned().collect()
    }

    /// New acknowledgements as they are made.
    pub fn subscribe(&self) -> broadcast::Receiver<Ack> {
        self.inner.tx.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Ack>> {
        self.inner.acks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an acknowledgement durably; acknowledging again replaces the
    /// earlier one (the latest operator and note win).
    pub async fn acknowledge(
        &self,
        anomaly_id: &str,
        by: Option<String>,
        note: Option<String>,
    ) -> Result<Ack, AckError> {
        check_id(anomaly_id)?;
        for (field, value) in [("by", &by), ("note", &note)] {
            if let Some(v) = value
                && (v.len() > MAX_FIELD || v.chars().any(char::is_control))
            {
                return Err(AckError::Invalid {
                    field,
                    value: v.chars().take(64).collect(),
                    allowed: "at most 512 bytes without control characters",
                });
            }
        }
        let ack = Ack {
            anomaly_id: anomaly_id.to_string(),
            by,
            note,
            at_ms: gridwatch_runtime::processor::now_ms(),
        };
        let _guard = self.inner.write.lock().await;
        let snapshot = {
            let mut acks = self.lock();
            acks.retain(|a| a.anomaly_id != ack.anomaly_id);
            acks.push_back(ack.clone());
            while acks.len() > MAX_ACKS {
                acks.pop_front();
            }
            serde_json::to_vec(&*acks).unwrap_or_default()
        };
        let path = self.inner.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &snapshot))
            .await
            .map_err(|e| AckError::Io {
                path: self.inner.path.clone(),
                source: std::io::Error::other(e.to_string()),
            })??;
        let _ = self.inner.tx.send(ack.clone());
        Ok(ack)
    }
}

/// Anomaly ids are hex strings; accept what an id could plausibly be and
/// nothing that could confuse a file or a log line.
fn check_id(id: &str) -> Result<(), AckError> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(AckError::Invalid {
            field: "anomaly_id",
            value: id.chars().take(64).collect(),
            allowed: "1 to 128 characters of A-Z, a-z, 0-9, '-' and '_'",
        });
    }
    Ok(())
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), AckError> {
    use std::io::Write as _;
    let io = |source| AckError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn acks_survive_a_reopen_and_replace_earlier_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dashboard/acks.json");
        let store = AckStore::open(path.clone()).expect("open");
        let mut rx = store.subscribe();
        store
            .acknowledge("abc123", Some("ana".into()), None)
            .await
            .expect("ack");
        store
            .acknowledge("abc123", Some("bo".into()), Some("crew sent".into()))
            .await
            .expect("ack again");
        store.acknowledge("def456", None, None).await.expect("ack");
        assert_eq!(
            rx.recv().await.expect("broadcast").by.as_deref(),
            Some("ana")
        );

        let reopened = AckStore::open(path).expect("reopen");
        let all = reopened.all();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].anomaly_id, "abc123");
        assert_eq!(all[0].note.as_deref(), Some("crew sent"));
        assert_eq!(all[1].anomaly_id, "def456");
    }

    #[tokio::test]
    async fn bad_ids_and_fields_are_refused_with_the_field_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AckStore::open(dir.path().join("acks.json")).expect("open");
        let err = store
            .acknowledge("../etc", None, None)
            .await
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "anomaly_id = \"../etc\" is not allowed: 1 to 128 characters of A-Z, a-z, 0-9, '-' and '_'"
        );
        let err = store
            .acknowledge("a1", Some("x\ny".into()), None)
            .await
            .expect_err("refused");
        assert!(err.to_string().starts_with("by = "), "{err}");
        assert!(store.all().is_empty());
    }

    #[tokio::test]
    async fn the_store_is_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AckStore::open(dir.path().join("acks.json")).expect("open");
        {
            let mut acks = store.lock();
            for i in 0..MAX_ACKS {
                acks.push_back(Ack {
                    anomaly_id: format!("old{i}"),
                    by: None,
                    note: None,
                    at_ms: 0,
                });
            }
        }
        store.acknowledge("newest", None, None).await.expect("ack");
        let all = store.all();
        assert_eq!(all.len(), MAX_ACKS);
        assert_eq!(all[0].anomaly_id, "old1");
        assert_eq!(all[MAX_ACKS - 1].anomaly_id, "newest");
    }

    #[test]
    fn a_corrupt_file_is_reported_not_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("acks.json");
        std::fs::write(&path, b"{not json").expect("write");
        let err = AckStore::open(path).expect_err("corrupt");
        assert!(err.to_string().contains("is not valid JSON"), "{err}");
    }
}
