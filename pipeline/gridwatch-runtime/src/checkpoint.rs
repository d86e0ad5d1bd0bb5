//! Durable checkpoints: what a processor has consumed and what it has written.
//!
//! A checkpoint is a small JSON file per processor, replaced atomically
//! (write a temporary file, fsync it, rename it over the old one, fsync the
//! directory), so a crash leaves either the old checkpoint or the new one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::chain::ChainSnapshot;

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
    /// Input offsets the chain failed on alone and that went to the dead
    /// letters instead: a rebuild of chain state skips them. Only those at
    /// or past `warm_from` are kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub poisoned: Vec<u64>,
}

/// A chain's state at an input offset, stored beside the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSnapshot {
    /// The chain has seen every input before this offset.
    pub input_offset: u64,
    pub chain: ChainSnapshot,
}

const SNAPSHOT_MAGIC: &[u8; 8] = b"GWSNAP01";

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

/// Reads a snapshot file; `None` on any damage (the caller then replays).
fn decode_snapshot(bytes: &[u8]) -> Option<StateSnapshot> {
    let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(8)?)?;
    if xxhash_rust::xxh3::xxh3_64(body).to_le_bytes() != sum {
        return None;
    }
    let mut at = body.strip_prefix(SNAPSHOT_MAGIC)?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, rest) = at.split_at_checked(n)?;
        at = rest;
        Some(head)
    };
    let input_offset = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let len = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let fingerprint = String::from_utf8(take(usize::try_from(len).ok()?)?.to_vec()).ok()?;
    let count = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let mut images = Vec::new();
    for _ in 0..count {
        let len = u64::from_le_bytes(take(8)?.try_into().ok()?);
        images.push(take(usize::try_from(len).ok()?)?.to_vec());
    }
    Some(StateSnapshot {
        input_offset,
        chain: ChainSnapshot {
            fingerprint,
            images,
        },
    })
}

/// Writes a snapshot file's bytes to `w` piece by piece, the memory images
/// straight from the snapshot: encoding them into one buffer first would
/// hold a second copy of every module's memory while the file is written.
fn write_snapshot(w: &mut impl Write, snapshot: &StateSnapshot) -> std::io::Result<()> {
    let mut sum = xxhash_rust::xxh3::Xxh3::new();
    let mut put = |bytes: &[u8]| {
        sum.update(bytes);
        w.write_all(bytes)
    };
    put(SNAPSHOT_MAGIC)?;
    put(&snapshot.input_offset.to_le_bytes())?;
    let fp = snapshot.chain.fingerprint.as_bytes();
    put(&(fp.len() as u64).to_le_bytes())?;
    put(fp)?;
    put(&(snapshot.chain.images.len() as u64).to_le_bytes())?;
    for image in &snapshot.chain.images {
        put(&(image.len() as u64).to_le_bytes())?;
        put(image)?;
    }
    w.write_all(&sum.digest().to_le_bytes())
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
        let bytes = serde_json::to_vec_pretty(checkpoint).unwrap_or_default();
        self.replace(&format!("{name}.json"), &bytes)
    }

    /// The last state snapshot of `name`. A damaged file is logged and
    /// treated as missing: recovery then rebuilds state by replay.
    pub fn load_snapshot(&self, name: &str) -> Result<Option<StateSnapshot>, CheckpointError> {
        let path = self.dir.join(format!("{name}.state"));
        match std::fs::read(&path) {
            Ok(bytes) => {
                let snapshot = decode_snapshot(&bytes);
                if snapshot.is_none() {
                    tracing::warn!(path = %path.display(), "State snapshot is damaged; state will be rebuilt by replay.");
                }
                Ok(snapshot)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CheckpointError::Io {
                op: "read",
                path,
                source,
            }),
        }
    }

    /// Replaces the state snapshot of `name` atomically and durably.
    pub fn save_snapshot(
        &self,
        name: &str,
        snapshot: &StateSnapshot,
    ) -> Result<(), CheckpointError> {
        self.replace_with(&format!("{name}.state"), |w| write_snapshot(w, snapshot))
    }

    /// Write a temporary file, fsync it, rename it over `file`, fsync the
    /// directory: a crash leaves the old contents or the new, never a mix.
    fn replace(&self, file: &str, bytes: &[u8]) -> Result<(), CheckpointError> {
        self.replace_with(file, |w| w.write_all(bytes))
    }

    /// [`CheckpointStore::replace`] with the contents written by `write`.
    fn replace_with(
        &self,
        file: &str,
        write: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> std::io::Result<()>,
    ) -> Result<(), CheckpointError> {
        let path = self.dir.join(file);
        let tmp = self.dir.join(format!(".{file}.tmp"));
        let io = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| CheckpointError::Io { op, path, source }
        };
        let file = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, &file);
        write(&mut w)
            .and_then(|()| w.flush())
            .map_err(io("write", &tmp))?;
        drop(w);
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
            poisoned: vec![9],
        };
        store.save("p0", &c).unwrap();
        store.save("p0", &c).unwrap();
        assert_eq!(store.load("p0").unwrap(), Some(c));
    }

    #[test]
    fn snapshots_round_trip_and_damage_reads_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        assert_eq!(store.load_snapshot("p0").unwrap(), None);
        let s = StateSnapshot {
            input_offset: 1234,
            chain: ChainSnapshot {
                fingerprint: "xxh3-128:ab".into(),
                images: vec![vec![1, 2, 3], vec![], vec![7; 70_000]],
            },
        };
        store.save_snapshot("p0", &s).unwrap();
        assert_eq!(store.load_snapshot("p0").unwrap(), Some(s));

        let path = dir.path().join("p0.state");
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(store.load_snapshot("p0").unwrap(), None, "a flipped bit");
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(store.load_snapshot("p0").unwrap(), None, "a torn file");
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
