//! Heap bytes per meter held by a [`Detector`] with full 5-minute windows:
//! 1,000 meters × 300 readings (1/s) of simulator-like values, measured with
//! a counting global allocator (issue #10: 100k meters in ≤ 512 MB).
//!
//! `cargo run --release -p gridwatch-detector --example window_memory`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use gridwatch_contracts::MeterStatus;
use gridwatch_contracts::fast::ReadingRef;
use gridwatch_detector::{Detector, DetectorConfig, ScoredField, Scores};

include!("common/simlike.rs");

/// Live heap bytes (requested sizes, not the allocator's rounding).
static LIVE: AtomicIsize = AtomicIsize::new(0);

#[derive(Debug)]
struct Counting;

// A counting allocator cannot be written without `unsafe`; this is the only
// unsafe code in the crate, in an example, forwarding verbatim to `System`.
// SAFETY: forwards to `System` and only counts sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as for `GlobalAlloc::realloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const METERS: usize = 1_000;

/// Heap bytes per meter after `readings` readings per meter.
fn measure(label: &str, fields: Vec<ScoredField>, readings: i64) -> f64 {
    let ids: Vec<String> = (0..METERS).map(|m| format!("meter-{m:06}")).collect();
    let before = LIVE.load(Ordering::Relaxed);
    let mut detector = Detector::new(DetectorConfig {
        fields,
        window: Duration::from_secs(300),
        ..DetectorConfig::default()
    });
    let mut scores = Scores::default();
    let mut sim = SimLike::new(42);
    let t0 = 1_767_225_600_000;
    for i in 0..readings {
        for (m, id) in ids.iter().enumerate() {
            let (voltage, current, temperature) = sim.values();
            let reading = ReadingRef {
                meter_id: id,
                timestamp: t0 + i * 1000 + m as i64 % 1000,
                voltage,
                current,
                temperature,
                status: MeterStatus::Ok,
            };
            detector.score(&reading, i * METERS as i64 + m as i64, 0, &mut scores);
        }
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    let held = detector.window_readings();
    let per_meter = bytes as f64 / METERS as f64;
    println!(
        "{label}, {readings}/meter: {METERS} meters, {held} readings held: {bytes} heap bytes, \
         {per_meter:.0} B/meter, {:.1} B/reading, {:.2} GB at 100k meters",
        per_meter / (held as f64 / METERS as f64),
        per_meter * 100_000.0 / 1e9,
    );
    drop(detector);
    per_meter
}

fn main() {
    for (label, fields) in [
        ("voltage only (default)", vec![ScoredField::Voltage]),
        ("voltage+current+temperature", ScoredField::ALL.to_vec()),
    ] {
        let one = measure(label, fields.clone(), 1);
        let full = measure(label, fields, 300);
        println!(
            "{label}: {:.1} B per added reading (from 1 to 300 readings per meter)",
            (full - one) / 299.0
        );
    }
}
