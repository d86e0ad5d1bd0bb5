//! Durable checkpoints: what a processor has consumed and what it has written.
//!
//! A checkpoint is a small JSON file per processor, replaced atomically
//! (write a temporary file, fsync it, rename it over the old one, fsync the
//! directory), so a crash leaves either the old checkpoint or the new one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One processor's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Next input offset to process.
    pub input_offset: u64,
    /// Replaying inputs from here up to `input_offset` rebuilds the detector
    /// state exactly as it was (the state is a function of the last window).
    pub warm_from: u64,
    /// High watermark of each output partition when the checkpoint was taken.
    pub outputs: BTreeMap<String, u64>,
    /// Wall-clock time of the checkpoint, ms.
    pub taken_at_ms: i64,
}

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("could not {op} checkpoint {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint {path} is not valid JSON: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Checkpoints of named components in one directory.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
}

impl CheckpointStore {
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, CheckpointError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| CheckpointError::Io {
            op: "create directory for",
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// The last checkpoint of `name`, or `None` before the first one.
    pub fn load(&self, name: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        let path = self.path(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| CheckpointError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CheckpointError::Io {
                op: "read",
                path,
                source,
            }),
        }
    }

    /// Replaces the checkpoint of `name` atomically and durably.
    pub fn save(&self, name: &str, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let path = self.path(name);
        let tmp = self.dir.join(format!(".{name}.json.tmp"));
        let io = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| CheckpointError::Io { op, path, source }
        };
        let bytes = serde_json::to_vec_pretty(checkpoint).unwrap_or_default();
        let mut file = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        file.write_all(&bytes).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("fsync", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("rename into", &path))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync directory of", &path))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip_and_missing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path().join("ckpt")).unwrap();
        assert_eq!(store.load("p0").unwrap(), None);
        let c = Checkpoint {
            input_offset: 42,
            warm_from: 7,
            outputs: [("anomalies/0".to_string(), 3)].into(),
            taken_at_ms: 1,
        };
        store.save("p0", &c).unwrap();
        store.save("p0", &c).unwrap();
        assert_eq!(store.load("p0").unwrap(), Some(c));
    }

    #[test]
    fn corrupt_checkpoint_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("p1.json"), b"{not json").unwrap();
        let err = store.load("p1").unwrap_err().to_string();
        assert!(err.contains("p1.json"), "{err}");
    }
}
