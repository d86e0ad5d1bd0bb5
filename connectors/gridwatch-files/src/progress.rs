//! Progress of one file: bytes read of the file's size, and records so far.
//!
//! A cheap clonable handle over atomics, so the CLI can draw a progress bar
//! from another thread while a reader runs.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
struct Counters {
    bytes: AtomicU64,
    total: AtomicU64,
    readings: AtomicU64,
    errors: AtomicU64,
}

/// Shared progress counters of one file.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<Counters>);

impl Progress {
    pub(crate) fn new(total: u64) -> Self {
        let p = Self::default();
        p.0.total.store(total, Ordering::Relaxed);
        p
    }

    /// Bytes read so far, never more than [`total_bytes`](Self::total_bytes).
    /// Parquet reads its footer first, so the count can jump at the start.
    pub fn bytes_read(&self) -> u64 {
        self.0.bytes.load(Ordering::Relaxed).min(self.total_bytes())
    }

    /// The file's size when it was opened.
    pub fn total_bytes(&self) -> u64 {
        self.0.total.load(Ordering::Relaxed)
    }

    /// Readings returned so far.
    pub fn readings(&self) -> u64 {
        self.0.readings.load(Ordering::Relaxed)
    }

    /// Records that did not parse so far.
    pub fn errors(&self) -> u64 {
        self.0.errors.load(Ordering::Relaxed)
    }

    /// Bytes read as a fraction of the total, 0.0 to 1.0.
    pub fn fraction(&self) -> f64 {
        match self.total_bytes() {
            0 => 1.0,
            total => self.bytes_read() as f64 / total as f64,
        }
    }

    pub(crate) fn add_bytes(&self, n: u64) {
        self.0.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_records(&self, readings: u64, errors: u64) {
        self.0.readings.fetch_add(readings, Ordering::Relaxed);
        self.0.errors.fetch_add(errors, Ordering::Relaxed);
    }

    /// Marks the whole file read.
    pub(crate) fn finish(&self) {
        let total = self.total_bytes();
        self.0.bytes.fetch_max(total, Ordering::Relaxed);
    }
}

/// A reader that counts the bytes it reads into a [`Progress`].
#[derive(Debug)]
pub struct Counting<R> {
    inner: R,
    progress: Progress,
}

impl<R> Counting<R> {
    pub(crate) fn new(inner: R, progress: Progress) -> Self {
        Self { inner, progress }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add_bytes(n as u64);
        Ok(n)
    }
}
