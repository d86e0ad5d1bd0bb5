//! Tests of one partition: appends, reads, group commit, recovery, retention
//! and tailing.

use super::*;
use crate::frame;
use std::collections::HashSet;
use std::sync::mpsc;
use std::thread;

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn config(segment_bytes: u64, durability: Durability) -> PartitionConfig {
    PartitionConfig {
        segment_bytes,
        durability,
        index_interval_bytes: 256,
        ..PartitionConfig::default()
    }
}

/// A value that says which offset it should end up at.
fn value(i: u64) -> Vec<u8> {
    format!("reading-{i:06}-{}", "v".repeat((i % 7) as usize)).into_bytes()
}

/// Appends `n` records in batches of `batch`, with timestamp `ts` and keys on
/// even offsets.
fn fill(p: &Partition, n: u64, batch: u64, ts: i64) -> Result<()> {
    let start = p.high_watermark();
    let mut i = start;
    while i < start + n {
        let end = (i + batch).min(start + n);
        let values: Vec<Vec<u8>> = (i..end).map(value).collect();
        let keys: Vec<Vec<u8>> = (i..end)
            .map(|o| format!("meter-{o}").into_bytes())
            .collect();
        let records: Vec<Record<'_>> = (i..end)
            .map(|o| {
                let k = (o - i) as usize;
                let r = Record::new(ts, &values[k]);
                if o.is_multiple_of(2) {
                    r.with_key(&keys[k])
                } else {
                    r
                }
            })
            .collect();
        assert_eq!(p.append_batch(&records)?, i..end);
        i = end;
    }
    Ok(())
}

fn check_record(r: &RecordView, offset: u64) {
    assert_eq!(r.offset, offset);
    assert_eq!(r.value, value(offset), "value at offset {offset}");
    if offset.is_multiple_of(2) {
        assert_eq!(r.key.as_deref(), Some(format!("meter-{offset}").as_bytes()));
    } else {
        assert_eq!(r.key, None);
    }
}

fn read_all(p: &Partition, from: u64) -> Result<Vec<RecordView>> {
    let mut out = Vec::new();
    let mut next = from;
    while next < p.high_watermark() {
        let batch = p.read(next, ReadLimits::new(10_000, usize::MAX))?;
        let Some(last) = batch.last() else { break };
        next = last.offset + 1;
        out.extend(batch);
    }
    Ok(out)
}

#[test]
fn appended_records_read_back_with_keys_timestamps_and_offsets() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = Partition::open(dir.path(), config(1 << 20, Durability::Fsync))?;
    assert_eq!((p.log_start_offset(), p.high_watermark()), (0, 0));
    assert_eq!(p.append(Record::new(42, b"first"))?, 0);
    fill(&p, 99, 10, 7)?;
    assert_eq!(p.high_watermark(), 100);
    let all = p.read(0, ReadLimits::new(1_000, usize::MAX))?;
    assert_eq!(all.len(), 100);
    assert_eq!(
        (&all[0].value[..], all[0].timestamp_ms),
        (&b"first"[..], 42)
    );
    for r in &all[1..] {
        check_record(r, r.offset);
        assert_eq!(r.timestamp_ms, 7);
    }
    assert_eq!(p.append_batch(&[])?, 100..100);
    Ok(())
}

#[test]
fn reads_respect_record_and_byte_limits_but_always_make_progress() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = Partition::open(dir.path(), config(1 << 20, Durability::None))?;
    fill(&p, 50, 50, 0)?;
    let three = p.read(10, ReadLimits::new(3, usize::MAX))?;
    assert_eq!(
        three.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [10, 11, 12]
    );
    let one_byte = p.read(20, ReadLimits::new(100, 1))?;
    assert_eq!(
        one_byte.len(),
        1,
        "a too-small byte limit still returns one record"
    );
    let size = |o: u64| {
        value(o).len()
            + if o.is_multiple_of(2) {
                format!("meter-{o}").len()
            } else {
                0
            }
    };
    let budget = size(30) + size(31) + size(32);
    let by_bytes = p.read(30, ReadLimits::new(100, budget))?;
    assert_eq!(by_bytes.len(), 3);
    assert!(p.read(0, ReadLimits::new(0, 100))?.is_empty());
    Ok(())
}

#[test]
fn reading_at_the_high_watermark_is_empty_and_beyond_it_is_out_of_range() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = Partition::open(dir.path(), config(1 << 20, Durability::None))?;
    fill(&p, 5, 5, 0)?;
    assert!(p.read(5, ReadLimits::default())?.is_empty());
    match p.read(6, ReadLimits::default()) {
        Err(LogError::OffsetOutOfRange {
            offset: 6,
            log_start: 0,
            high_watermark: 5,
        }) => Ok(()),
        other => Err(format!("expected OffsetOutOfRange, got {other:?}").into()),
    }
}

#[test]
fn an_oversized_batch_is_refused_without_using_offsets() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cfg = PartitionConfig {
        max_batch_bytes: 1_000,
        ..config(1 << 20, Durability::None)
    };
    let p = Partition::open(dir.path(), cfg)?;
    let big = vec![0u8; 2_000];
    let err = p.append(Record::new(0, &big)).expect_err("too large");
    assert!(matches!(err, LogError::BatchTooLarge { limit: 1_000, .. }));
    assert!(!err.is_retryable());
    assert_eq!(p.append(Record::new(0, b"small"))?, 0);
    Ok(())
}

#[test]
fn concurrent_writers_get_unique_contiguous_offsets_and_share_fsyncs() -> TestResult {
    let dir = tempfile::tempdir()?;
    // Small segments so that rolls happen in the middle of group commits.
    let p = Arc::new(Partition::open(
        dir.path(),
        config(16 << 10, Durability::Fsync),
    )?);
    let threads = 8u64;
    let appends_per_thread = 60u64;
    let (tx, rx) = mpsc::channel();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let p = Arc::clone(&p);
            let tx = tx.clone();
            thread::spawn(move || -> Result<()> {
                for i in 0..appends_per_thread {
                    let n = 1 + ((t + i) % 5) as usize;
                    let values: Vec<Vec<u8>> = (0..n)
                        .map(|k| format!("t{t}-a{i}-r{k}").into_bytes())
                        .collect();
                    let records: Vec<Record<'_>> =
                        values.iter().map(|v| Record::new(0, v)).collect();
                    let range = p.append_batch(&records)?;
                    // Durable means readable, the moment append returns.
                    assert!(p.high_watermark() >= range.end);
                    let _ = tx.send((range, values));
                }
                Ok(())
            })
        })
        .collect();
    drop(tx);
    for h in handles {
        h.join().map_err(|_| "writer panicked")??;
    }
    let mut acks: Vec<(Range<u64>, Vec<Vec<u8>>)> = rx.iter().collect();
    acks.sort_by_key(|(r, _)| r.start);
    let mut expected = 0;
    for (range, values) in &acks {
        assert_eq!(
            range.start, expected,
            "offsets must be contiguous and unique"
        );
        assert_eq!(range.end - range.start, values.len() as u64);
        expected = range.end;
    }
    assert_eq!(p.high_watermark(), expected);

    let appends = threads * appends_per_thread;
    assert!(
        p.flush_count() < appends,
        "{} flushes for {appends} appends: no group commit happened",
        p.flush_count()
    );
    assert!(p.segment_count() > 2, "the test should cross segment rolls");

    let back = read_all(&p, 0)?;
    let want: Vec<&Vec<u8>> = acks.iter().flat_map(|(_, v)| v).collect();
    assert_eq!(back.len(), want.len());
    for (i, (r, v)) in back.iter().zip(want).enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(&r.value[..], &v[..]);
    }
    Ok(())
}

#[test]
fn reads_from_every_offset_cross_segment_boundaries() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = Partition::open(dir.path(), config(2_000, Durability::None))?;
    fill(&p, 300, 7, 0)?;
    assert!(p.segment_count() > 5);
    for from in 0..300 {
        let got = p.read(from, ReadLimits::new(25, usize::MAX))?;
        assert_eq!(got.len() as u64, 25.min(300 - from), "read from {from}");
        for (k, r) in got.iter().enumerate() {
            check_record(r, from + k as u64);
        }
    }
    Ok(())
}

#[test]
fn reopening_keeps_offsets_and_uses_the_index_files() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cfg = config(2_000, Durability::Fsync);
    {
        let p = Partition::open(dir.path(), cfg)?;
        fill(&p, 200, 10, 0)?;
    }
    let segments;
    {
        let p = Partition::open(dir.path(), cfg)?;
        assert_eq!(p.recovery(), &RecoveryReport::default());
        assert_eq!(p.high_watermark(), 200);
        segments = p.segment_count();
        assert!(segments > 3);
        fill(&p, 50, 10, 0)?;
        let all = read_all(&p, 0)?;
        assert_eq!(all.len(), 250);
        all.iter().for_each(|r| check_record(r, r.offset));
    }
    // A lost index is rebuilt by scanning, with the same answers.
    fs::remove_file(segment::segment_path(dir.path(), 0, INDEX_SUFFIX))?;
    let p = Partition::open(dir.path(), cfg)?;
    assert_eq!(p.recovery().rebuilt_indexes, 1);
    assert_eq!(p.high_watermark(), 250);
    assert!(p.segment_count() >= segments);
    read_all(&p, 0)?
        .iter()
        .for_each(|r| check_record(r, r.offset));
    assert!(segment::segment_path(dir.path(), 0, INDEX_SUFFIX).exists());
    Ok(())
}

/// Frame boundaries (byte positions and end offsets) of one segment file.
fn frame_bounds(bytes: &[u8]) -> Vec<(usize, u64)> {
    let mut bounds = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let h = frame::Header::parse(&bytes[pos..]).expect("valid frame");
        pos += h.meta.len as usize;
        bounds.push((pos, h.meta.end_offset()));
    }
    bounds
}

#[test]
fn recovery_cuts_a_torn_tail_at_every_byte_of_the_last_frames() -> TestResult {
    let src = tempfile::tempdir()?;
    // Recovery does not depend on durability; skipping fsync keeps the
    // hundreds of reopens fast.
    let cfg = config(1 << 20, Durability::None);
    {
        let p = Partition::open(src.path(), cfg)?;
        fill(&p, 12, 4, 0)?; // three frames of four records
        fill(&p, 1, 1, 0)?; // and a frame of one
    }
    let log_name = segment::segment_path(src.path(), 0, LOG_SUFFIX);
    let original = fs::read(&log_name)?;
    let bounds = frame_bounds(&original);
    assert_eq!(bounds.len(), 4);

    let dir = tempfile::tempdir()?;
    let path = segment::segment_path(dir.path(), 0, LOG_SUFFIX);
    // Every cut inside the last two frames, and the full file.
    for cut in bounds[1].0..=original.len() {
        fs::write(&path, &original[..cut])?;
        let (valid_len, hw) = bounds
            .iter()
            .rev()
            .find(|(end, _)| *end <= cut)
            .copied()
            .unwrap_or((0, 0));
        let p = Partition::open(dir.path(), cfg)?;
        assert_eq!(p.high_watermark(), hw, "cut at {cut}");
        assert_eq!(p.recovery().truncated_bytes, (cut - valid_len) as u64);
        assert_eq!(fs::metadata(&path)?.len(), valid_len as u64);
        let back = read_all(&p, 0)?;
        assert_eq!(back.len() as u64, hw);
        back.iter().for_each(|r| check_record(r, r.offset));
        // The cut is clean: writing continues at the recovered offset.
        assert_eq!(p.append(Record::new(0, &value(hw)))?, hw);
        assert_eq!(p.read(hw, ReadLimits::default())?[0].value, value(hw));
    }
    Ok(())
}

#[test]
fn recovery_drops_garbage_and_a_corrupt_last_frame() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cfg = config(1 << 20, Durability::Fsync);
    {
        let p = Partition::open(dir.path(), cfg)?;
        fill(&p, 30, 10, 0)?;
    }
    let path = segment::segment_path(dir.path(), 0, LOG_SUFFIX);
    let original = fs::read(&path)?;
    let bounds = frame_bounds(&original);

    // Garbage after the last frame: zeros (a preallocated or half-flushed
    // page) and random-looking bytes.
    for junk in [
        vec![0u8; 100],
        (0..200u32).map(|i| (i * 37 % 251) as u8).collect(),
    ] {
        let mut bytes = original.clone();
        bytes.extend_from_slice(&junk);
        fs::write(&path, &bytes)?;
        let p = Partition::open(dir.path(), cfg)?;
        assert_eq!(p.high_watermark(), 30);
        assert_eq!(p.recovery().truncated_bytes, junk.len() as u64);
    }

    // One flipped byte in the middle of the last frame loses that frame only.
    let mut bytes = original.clone();
    let mid = (bounds[1].0 + bounds[2].0) / 2;
    bytes[mid] ^= 0x40;
    fs::write(&path, &bytes)?;
    let p = Partition::open(dir.path(), cfg)?;
    assert_eq!(p.high_watermark(), 20);
    let torn = p
        .recovery()
        .torn_at
        .clone()
        .ok_or("no torn frame reported")?;
    assert_eq!((torn.1, torn.2), (bounds[1].0 as u64, "checksum mismatch"));
    assert_eq!(read_all(&p, 0)?.len(), 20);
    Ok(())
}

#[test]
fn a_corrupt_sealed_segment_is_an_error_not_a_silent_cut() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cfg = config(1_000, Durability::None);
    {
        let p = Partition::open(dir.path(), cfg)?;
        fill(&p, 100, 5, 0)?;
    }
    let first = segment::segment_path(dir.path(), 0, LOG_SUFFIX);
    let mut bytes = fs::read(&first)?;
    bytes[40] ^= 1;
    fs::write(&first, &bytes)?;
    // The index still matches the file length, so open trusts it and the
    // damage is found by the reader's checksum.
    let p = Partition::open(dir.path(), cfg)?;
    assert!(matches!(
        p.read(0, ReadLimits::default()),
        Err(LogError::Corrupt { .. })
    ));
    drop(p);
    // Without the index, open scans and refuses.
    fs::remove_file(segment::segment_path(dir.path(), 0, INDEX_SUFFIX))?;
    match Partition::open(dir.path(), cfg) {
        Err(LogError::Corrupt {
            path, position: 0, ..
        }) if path == first => Ok(()),
        other => Err(format!("expected Corrupt, got {other:?}").into()),
    }
}

#[test]
fn a_missing_middle_segment_is_reported_as_a_gap() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cfg = config(1_000, Durability::None);
    {
        let p = Partition::open(dir.path(), cfg)?;
        fill(&p, 100, 5, 0)?;
    }
    let mut logs: Vec<_> = fs::read_dir(dir.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == LOG_SUFFIX))
        .collect();
    logs.sort();
    fs::remove_file(&logs[1])?;
    assert!(matches!(
        Partition::open(dir.path(), cfg),
        Err(LogError::OffsetGap { .. })
    ));
    Ok(())
}

#[test]
fn retention_by_size_keeps_at_least_the_limit_and_deletes_whole_segments() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cfg = PartitionConfig {
        retention_bytes: Some(5_000),
        ..config(1_000, Durability::None)
    };
    let p = Partition::open(dir.path(), cfg)?;
    fill(&p, 400, 4, now_ms())?;
    // Retention ran at each roll; the active segment grew since, so one more
    // pass may delete a segment, and a second one finds nothing left to do.
    p.enforce_retention(now_ms())?;
    assert_eq!(p.enforce_retention(now_ms())?, RetentionOutcome::default());
    let size = p.size_bytes();
    assert!((5_000..7_000).contains(&size), "size {size}");
    let start = p.log_start_offset();
    assert!(start > 0);
    assert!(matches!(
        p.read(start - 1, ReadLimits::default()),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    let rest = read_all(&p, start)?;
    assert_eq!(rest.len() as u64, 400 - start);
    rest.iter().for_each(|r| check_record(r, r.offset));
    let files = fs::read_dir(dir.path())?.count();
    assert_eq!(
        files,
        2 * p.segment_count() - 1,
        "sealed: log + index, active: log"
    );
    // Offsets survive a reopen after retention.
    drop(p);
    let p = Partition::open(dir.path(), cfg)?;
    assert_eq!((p.log_start_offset(), p.high_watermark()), (start, 400));
    Ok(())
}

#[test]
fn retention_by_age_deletes_only_segments_whose_newest_record_is_old() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cfg = PartitionConfig {
        retention_ms: Some(60_000),
        ..config(1_000, Durability::None)
    };
    let p = Partition::open(dir.path(), cfg)?;
    // Timestamps in the past relative to the wall clock would be deleted by
    // the automatic pass at each roll; use ones far in the future, and pass
    // `now` explicitly.
    let future = now_ms() + 10 * 365 * 86_400_000;
    fill(&p, 100, 5, future)?;
    let old_end = p.high_watermark();
    fill(&p, 100, 5, future + 120_000)?;
    let before = p.segment_count();
    let out = p.enforce_retention(future + 100_000)?;
    assert!(out.segments_deleted > 0);
    assert!(p.segment_count() < before);
    let start = p.log_start_offset();
    assert!(
        start > 0 && start <= old_end,
        "start {start}, old data ended at {old_end}"
    );
    assert!(read_all(&p, start)?.iter().all(|r| r.offset >= start));
    // Nothing newer than the cutoff goes.
    let out = p.enforce_retention(future + 150_000)?;
    assert_eq!(out.segments_deleted, 0);
    Ok(())
}

#[test]
fn a_tailing_reader_is_woken_by_an_append() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = Arc::new(Partition::open(
        dir.path(),
        config(1 << 20, Durability::Fsync),
    )?);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_by_listener = Arc::clone(&seen);
    p.on_commit(move |hw| lock(&seen_by_listener).push(hw));

    // Nothing arrives: the wait times out and reports the current mark.
    let t = Instant::now();
    assert_eq!(p.wait_for_offset(0, Duration::from_millis(30)), 0);
    assert!(t.elapsed() >= Duration::from_millis(30));

    let reader = {
        let p = Arc::clone(&p);
        thread::spawn(move || -> Result<(u64, Duration, Vec<RecordView>)> {
            let t = Instant::now();
            let hw = p.wait_for_offset(0, Duration::from_secs(10));
            let elapsed = t.elapsed();
            Ok((hw, elapsed, p.read(0, ReadLimits::default())?))
        })
    };
    thread::sleep(Duration::from_millis(50));
    fill(&p, 3, 3, 0)?;
    let (hw, elapsed, records) = reader.join().map_err(|_| "reader panicked")??;
    assert_eq!(hw, 3);
    assert!(elapsed < Duration::from_secs(5), "woken after {elapsed:?}");
    assert_eq!(records.len(), 3);
    assert_eq!(*lock(&seen), vec![3]);
    Ok(())
}

#[test]
fn many_tailing_readers_each_see_every_record_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = Arc::new(Partition::open(
        dir.path(),
        config(4_000, Durability::None),
    )?);
    let total = 500u64;
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let p = Arc::clone(&p);
            thread::spawn(move || -> Result<HashSet<u64>> {
                let mut seen = HashSet::new();
                let mut next = 0;
                while next < total {
                    p.wait_for_offset(next, Duration::from_secs(5));
                    for r in p.read(next, ReadLimits::new(17, usize::MAX))? {
                        check_record(&r, r.offset);
                        assert!(seen.insert(r.offset), "offset {} twice", r.offset);
                        next = r.offset + 1;
                    }
                }
                Ok(seen)
            })
        })
        .collect();
    fill(&p, total, 3, 0)?;
    for r in readers {
        let seen = r.join().map_err(|_| "reader panicked")??;
        assert_eq!(seen.len() as u64, total);
    }
    Ok(())
}

#[test]
fn leftovers_of_an_interrupted_roll_or_deletion_are_cleaned_up() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cfg = config(1_000, Durability::Fsync);
    let hw;
    {
        let p = Partition::open(dir.path(), cfg)?;
        fill(&p, 60, 5, 0)?;
        hw = p.high_watermark();
    }
    // A crash right after a roll leaves an empty newest segment; one during
    // an index write leaves a temporary file; one during retention an index
    // without its log.
    fs::write(segment::segment_path(dir.path(), hw, LOG_SUFFIX), b"")?;
    let tmp = segment::segment_path(dir.path(), 0, TMP_SUFFIX);
    fs::write(&tmp, b"half an index")?;
    let orphan = segment::segment_path(dir.path(), 99_999, INDEX_SUFFIX);
    fs::write(&orphan, b"GWIX")?;
    let p = Partition::open(dir.path(), cfg)?;
    assert_eq!(p.high_watermark(), hw);
    assert!(!tmp.exists() && !orphan.exists());
    fill(&p, 1, 1, 0)?;
    read_all(&p, 0)?
        .iter()
        .for_each(|r| check_record(r, r.offset));
    Ok(())
}

#[test]
fn readers_racing_retention_see_only_valid_records_or_a_reset() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cfg = PartitionConfig {
        retention_bytes: Some(1),
        ..config(1_000, Durability::None)
    };
    let p = Arc::new(Partition::open(dir.path(), cfg)?);
    let total = 2_000;
    let reader = {
        let p = Arc::clone(&p);
        thread::spawn(move || -> Result<(u64, u64)> {
            let (mut next, mut resets) = (0, 0);
            while next < total {
                match p.read(next, ReadLimits::new(50, usize::MAX)) {
                    Ok(batch) => {
                        for r in batch {
                            check_record(&r, r.offset);
                            next = r.offset + 1;
                        }
                    }
                    // Retention overtook the reader: reset, as a consumer would.
                    Err(LogError::OffsetOutOfRange { log_start, .. }) if log_start > next => {
                        next = log_start;
                        resets += 1;
                    }
                    Err(e) => return Err(e),
                }
                p.wait_for_offset(next, Duration::from_millis(100));
            }
            Ok((next, resets))
        })
    };
    fill(&p, total, 4, 0)?;
    let (next, _resets) = reader.join().map_err(|_| "reader panicked")??;
    assert_eq!(next, total);
    assert!(p.log_start_offset() > 0);
    Ok(())
}

/// Frames of one segment file: (end position, end offset, continues).
fn frames_of(bytes: &[u8]) -> Vec<(usize, u64, bool)> {
    let mut frames = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let h = frame::Header::parse(&bytes[pos..]).expect("valid frame");
        pos += h.meta.len as usize;
        frames.push((pos, h.meta.end_offset(), h.meta.continues));
    }
    frames
}

#[test]
fn a_batch_split_over_several_frames_is_recovered_whole_or_not_at_all() -> TestResult {
    let src = tempfile::tempdir()?;
    let cfg = PartitionConfig {
        frame_bytes: 120, // two or three small records per frame
        ..config(1 << 20, Durability::None)
    };
    {
        let p = Partition::open(src.path(), cfg)?;
        fill(&p, 8, 8, 0)?;
        fill(&p, 8, 8, 0)?;
    }
    let original = fs::read(segment::segment_path(src.path(), 0, LOG_SUFFIX))?;
    let frames = frames_of(&original);
    let first_batch_end = frames
        .iter()
        .find(|f| !f.2)
        .map(|f| f.0)
        .ok_or("no batch end")?;
    assert!(frames.len() >= 6, "batches should span several frames");
    assert_eq!(frames.iter().filter(|f| !f.2).count(), 2);

    let dir = tempfile::tempdir()?;
    let path = segment::segment_path(dir.path(), 0, LOG_SUFFIX);
    for cut in first_batch_end..=original.len() {
        fs::write(&path, &original[..cut])?;
        let p = Partition::open(dir.path(), cfg)?;
        let whole = cut == original.len();
        assert_eq!(
            p.high_watermark(),
            if whole { 16 } else { 8 },
            "cut at {cut}"
        );
        let valid = if whole { cut } else { first_batch_end };
        assert_eq!(fs::metadata(&path)?.len(), valid as u64);
        read_all(&p, 0)?
            .iter()
            .for_each(|r| check_record(r, r.offset));
    }
    // Damage in the first frame of the second batch drops its intact later
    // frames too.
    let mut bytes = original.clone();
    bytes[first_batch_end + 40] ^= 0x01;
    fs::write(&path, &bytes)?;
    let p = Partition::open(dir.path(), cfg)?;
    assert_eq!(p.high_watermark(), 8);
    assert_eq!(
        p.recovery().torn_at.as_ref().map(|t| (t.1, t.2)),
        Some((first_batch_end as u64, "checksum mismatch"))
    );
    Ok(())
}

#[test]
fn segments_roll_only_between_batches() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cfg = PartitionConfig {
        frame_bytes: 120,
        ..config(500, Durability::None)
    };
    let p = Partition::open(dir.path(), cfg)?;
    fill(&p, 200, 9, 0)?;
    let mut logs: Vec<_> = fs::read_dir(dir.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == LOG_SUFFIX))
        .collect();
    logs.sort();
    assert!(logs.len() > 3);
    for log in &logs {
        let frames = frames_of(&fs::read(log)?);
        assert!(
            frames.last().is_none_or(|f| !f.2),
            "{log:?} ends inside a batch"
        );
    }
    // Reads from inside multi-frame batches work too.
    for from in (0..200).step_by(7) {
        let got = p.read(from, ReadLimits::new(3, usize::MAX))?;
        assert_eq!(got[0].offset, from);
        got.iter().for_each(|r| check_record(r, r.offset));
    }
    Ok(())
}

/// Length on disk of the active segment's `.log` file.
fn active_file_len(p: &Partition) -> u64 {
    lock(&p.io).file.file_len().expect("segment length")
}

#[test]
fn a_failed_fsync_is_rolled_back_and_later_appends_succeed_without_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cfg = config(1 << 20, Durability::Fsync);
    let p = Partition::open(dir.path(), cfg)?;
    fill(&p, 10, 5, 0)?;
    let len_before = active_file_len(&p);
    p.fail_next_sync.store(true, Ordering::Relaxed);
    let err = p.append(Record::new(0, b"lost")).expect_err("fsync failed");
    assert!(
        matches!(
            err,
            LogError::Io {
                op: "fsync segment",
                ..
            }
        ),
        "{err}"
    );
    // The kernel may have dropped the dirty pages: the written frame is cut
    // off (and rewritten by the next append), not trusted.
    assert_eq!(
        active_file_len(&p),
        len_before,
        "the failed frame is cut off"
    );
    assert_eq!(p.high_watermark(), 10);
    // The next append succeeds at the offset the failed one had.
    fill(&p, 5, 2, 0)?;
    let all = read_all(&p, 0)?;
    assert_eq!(all.len(), 15);
    all.iter().for_each(|r| check_record(r, r.offset));
    drop(p);
    let p = Partition::open(dir.path(), cfg)?;
    assert_eq!(p.high_watermark(), 15);
    read_all(&p, 0)?
        .iter()
        .for_each(|r| check_record(r, r.offset));
    Ok(())
}

/// A full disk (ENOSPC) half-way through a write leaves a partial frame on
/// disk: it is cut off, the appender gets a retryable StorageFull error,
/// and appends succeed again once there is room, with no restart; readers
/// and recovery see exactly the acknowledged records.
#[test]
fn a_partial_write_on_a_full_disk_is_cut_off_and_appends_resume() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cfg = config(1 << 20, Durability::Fsync);
    let p = Partition::open(dir.path(), cfg)?;
    fill(&p, 10, 5, 0)?;
    let len_before = active_file_len(&p);
    let index_before = lock(&p.io).index.len();
    p.fail_next_write.store(true, Ordering::Relaxed);
    let big: Vec<Vec<u8>> = (0..200).map(|i| vec![b'x'; 100 + i]).collect();
    let records: Vec<Record<'_>> = big.iter().map(|v| Record::new(0, v)).collect();
    let err = p.append_batch(&records).expect_err("the disk is full");
    match &err {
        LogError::Io { op, source, .. } => {
            assert_eq!(*op, "write segment");
            assert_eq!(source.kind(), ErrorKind::StorageFull);
        }
        other => return Err(format!("expected an I/O error, got {other:?}").into()),
    }
    assert!(err.is_retryable(), "a full disk may pass: {err}");
    assert!(err.to_string().contains("no space left"), "{err}");
    assert_eq!(
        active_file_len(&p),
        len_before,
        "the partial frame is cut off"
    );
    assert_eq!(
        lock(&p.io).index.len(),
        index_before,
        "the index is rolled back"
    );
    assert_eq!(p.high_watermark(), 10);
    // Room again: appends resume at offset 10, several times over.
    fill(&p, 30, 7, 0)?;
    assert_eq!(p.high_watermark(), 40);
    let all = read_all(&p, 0)?;
    assert_eq!(all.len(), 40);
    all.iter().for_each(|r| check_record(r, r.offset));
    drop(p);
    let p = Partition::open(dir.path(), cfg)?;
    assert_eq!(p.high_watermark(), 40);
    assert_eq!(p.recovery().truncated_bytes, 0, "nothing torn to cut");
    read_all(&p, 0)?
        .iter()
        .for_each(|r| check_record(r, r.offset));
    Ok(())
}

/// Appenders whose batches were queued behind a failed flush fail with it
/// (their offsets are handed out again), and say why.
#[test]
fn batches_queued_behind_a_failed_flush_fail_with_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = Arc::new(Partition::open(
        dir.path(),
        config(1 << 20, Durability::Fsync),
    )?);
    fill(&p, 4, 4, 0)?;
    // Hold the writer's lock so the next leader blocks inside its flush
    // while other batches queue behind it.
    let io = lock(&p.io);
    p.fail_next_write.store(true, Ordering::Relaxed);
    let leader = {
        let p = Arc::clone(&p);
        thread::spawn(move || p.append(Record::new(0, b"leader")))
    };
    loop {
        let w = lock(&p.write);
        if w.flushing && w.pending.batches.is_empty() {
            break;
        }
        drop(w);
        thread::yield_now();
    }
    let follower = {
        let p = Arc::clone(&p);
        thread::spawn(move || p.append(Record::new(0, b"follower")))
    };
    loop {
        if !lock(&p.write).pending.batches.is_empty() {
            break;
        }
        thread::yield_now();
    }
    drop(io);
    let leader = leader.join().expect("leader");
    let follower = follower.join().expect("follower");
    assert!(
        matches!(&leader, Err(LogError::Io { source, .. }) if source.kind() == ErrorKind::StorageFull),
        "{leader:?}"
    );
    match &follower {
        Err(
            e @ LogError::AppendFailed {
                retryable: true, ..
            },
        ) => {
            assert!(e.to_string().contains("no space left"), "{e}");
        }
        other => return Err(format!("expected AppendFailed, got {other:?}").into()),
    }
    assert_eq!(p.append(Record::new(0, b"later"))?, 4);
    assert_eq!(p.high_watermark(), 5);
    Ok(())
}
