//! Where everything goes in the lake: data file names, event-time
//! partitions, and the per-partition commit state.
//!
//! ```text
//! <root>/readings/date=2026-03-01/hour=23/part-p0-00000000000000000000-00000000000000000059.parquet
//! <root>/anomalies/date=2026-03-01/part-p0-00000000000000000000-00000000000000000059.parquet
//! <root>/_lake/state/readings/p0.json
//! ```
//!
//! A data file holds the rows of one flush of one topic partition that fall
//! in one event-time partition; its name is that partition number and the
//! first and last source offsets of its rows, zero-padded so names sort by
//! offset. Readers skip `_lake/` (names starting with `_` are hidden to
//! Hive-style readers: Spark, DuckDB, pyarrow).

use serde::{Deserialize, Serialize};

/// The two datasets of the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Every processed reading with the detector's evidence, by hour.
    Readings,
    /// Every anomaly, by day.
    Anomalies,
}

impl Kind {
    /// The dataset's top-level folder.
    pub fn dir(self) -> &'static str {
        match self {
            Self::Readings => "readings",
            Self::Anomalies => "anomalies",
        }
    }
}

/// An event-time partition: the UTC day, and the hour for readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimePartition {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// 0 to 23 for readings; `None` for anomalies, which are daily.
    pub hour: Option<u8>,
}

const MS_PER_DAY: i64 = 86_400_000;
const MS_PER_HOUR: i64 = 3_600_000;

impl TimePartition {
    /// The partition of an event at `event_time_ms` (epoch ms, UTC).
    /// Total over all of `i64`: times before 1970 fall on earlier days.
    pub fn of(kind: Kind, event_time_ms: i64) -> Self {
        let day = event_time_ms.div_euclid(MS_PER_DAY);
        let hour = match kind {
            Kind::Readings => Some((event_time_ms.rem_euclid(MS_PER_DAY) / MS_PER_HOUR) as u8),
            Kind::Anomalies => None,
        };
        Self { day, hour }
    }

    /// `YYYY-MM-DD`, the proleptic Gregorian date of [`Self::day`].
    pub fn date(&self) -> String {
        let (y, m, d) = civil_from_days(self.day);
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// `date=YYYY-MM-DD` or `date=YYYY-MM-DD/hour=HH`.
    pub fn dirs(&self) -> String {
        match self.hour {
            Some(h) => format!("date={}/hour={h:02}", self.date()),
            None => format!("date={}", self.date()),
        }
    }
}

/// The path (relative to the lake root) of a data file.
pub fn data_file(
    kind: Kind,
    partition: TimePartition,
    topic_partition: u32,
    first: u64,
    last: u64,
) -> String {
    format!(
        "{}/{}/part-p{topic_partition}-{first:020}-{last:020}.parquet",
        kind.dir(),
        partition.dirs()
    )
}

/// The path of a data file written by a replay that fills a gap (see
/// [`CommitState::holes`]): the same as [`data_file`] with a `-fill`
/// suffix, so it can never share a name with a file a failed live commit
/// left behind (which the live sink deletes later).
pub fn fill_file(
    kind: Kind,
    partition: TimePartition,
    topic_partition: u32,
    first: u64,
    last: u64,
) -> String {
    format!(
        "{}/{}/part-p{topic_partition}-{first:020}-{last:020}-fill.parquet",
        kind.dir(),
        partition.dirs()
    )
}

/// The path of a topic partition's fill state ([`FillState`]).
pub fn fill_state_file(kind: Kind, topic_partition: u32) -> String {
    format!("_lake/state/{}/p{topic_partition}.fills.json", kind.dir())
}

/// The path (relative to the lake root) of a topic partition's commit state.
pub fn state_file(kind: Kind, topic_partition: u32) -> String {
    format!("_lake/state/{}/p{topic_partition}.json", kind.dir())
}

/// What is committed for one topic partition, and what a flush under way
/// may have left behind: the commit record of the protocol in
/// [`crate::sink`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitState {
    /// Format version; readers refuse versions they do not know.
    pub version: u32,
    /// The source topic the files of this state came from.
    pub topic: String,
    pub partition: u32,
    /// The highest source offset whose rows are all in the lake.
    pub committed: Option<u64>,
    /// A flush that started but has not committed: its files may exist,
    /// in part, and are deleted by recovery.
    pub pending: Option<Pending>,
    /// Offset ranges (inclusive) at or below `committed` whose rows are not
    /// in the lake: batches the sink dead-lettered after its retries (the
    /// lake was down), records it refused, offsets before the first one it
    /// saw. Only these may be filled later by `gridwatch dlq replay`; any
    /// other offset at or below `committed` is already in the lake and is
    /// skipped, which is what keeps a replay exactly-once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holes: Vec<[u64; 2]>,
}

/// What replays have filled of a partition's [`CommitState::holes`]. Kept
/// in its own object, written only by the sink doing the replay, so a
/// replay running next to the live sink never overwrites the live commit
/// state (nor the other way round).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FillState {
    pub version: u32,
    pub topic: String,
    pub partition: u32,
    /// Offset ranges (inclusive) of holes that replays have filled.
    pub filled: Vec<[u64; 2]>,
    /// A fill under way, rolled back by recovery as for [`CommitState`].
    pub pending: Option<Pending>,
}

/// Whether `offset` lies in one of the sorted, disjoint inclusive `ranges`.
pub fn in_ranges(ranges: &[[u64; 2]], offset: u64) -> bool {
    let i = ranges.partition_point(|r| r[1] < offset);
    ranges.get(i).is_some_and(|r| r[0] <= offset)
}

/// Adds the inclusive ranges `new` to the sorted, disjoint inclusive
/// `ranges`, merging overlaps and neighbours, so the list stays as short as
/// the gaps are few.
pub fn add_ranges(ranges: &mut Vec<[u64; 2]>, new: impl IntoIterator<Item = [u64; 2]>) {
    let mut all: Vec<[u64; 2]> = std::mem::take(ranges);
    all.extend(new.into_iter().filter(|r| r[0] <= r[1]));
    all.sort_unstable();
    for r in all {
        match ranges.last_mut() {
            Some(last) if r[0] <= last[1].saturating_add(1) => last[1] = last[1].max(r[1]),
            _ => ranges.push(r),
        }
    }
}

/// The inclusive ranges of `from..=to` not among the sorted `offsets`.
pub fn gaps(from: u64, to: u64, offsets: &[u64]) -> Vec<[u64; 2]> {
    let mut out = Vec::new();
    let mut next = from;
    for &o in offsets {
        if o > to {
            break;
        }
        if o > next {
            out.push([next, o - 1]);
        }
        next = next.max(o.saturating_add(1));
    }
    if next <= to && next >= from {
        out.push([next, to]);
    }
    out
}

/// The intent of one flush, written before its first data file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    pub first: u64,
    pub last: u64,
    /// Every data file this flush (or an earlier failed attempt of it) may
    /// have written, relative to the lake root.
    pub files: Vec<String>,
}

/// The state format this crate writes.
pub const STATE_VERSION: u32 = 1;

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (y, m, d).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_follow_utc_event_time() {
        // 2026-03-01T23:59:59.999Z and one millisecond later.
        let before = 1_772_409_599_999;
        let p = TimePartition::of(Kind::Readings, before);
        assert_eq!(p.dirs(), "date=2026-03-01/hour=23");
        let p = TimePartition::of(Kind::Readings, before + 1);
        assert_eq!(p.dirs(), "date=2026-03-02/hour=00");
        let p = TimePartition::of(Kind::Anomalies, before + 1);
        assert_eq!(p.dirs(), "date=2026-03-02");
        assert_eq!(
            TimePartition::of(Kind::Readings, 0).dirs(),
            "date=1970-01-01/hour=00"
        );
        assert_eq!(
            TimePartition::of(Kind::Readings, -1).dirs(),
            "date=1969-12-31/hour=23"
        );
        // Leap day.
        assert_eq!(
            TimePartition::of(Kind::Anomalies, 951_782_400_000).dirs(),
            "date=2000-02-29"
        );
        // No panic at the extremes.
        let _ = TimePartition::of(Kind::Readings, i64::MIN).dirs();
        let _ = TimePartition::of(Kind::Readings, i64::MAX).dirs();
    }

    #[test]
    fn civil_dates_match_a_day_by_day_walk() {
        // Every day from 1900 to 2200 against a naive calendar walk.
        let (mut y, mut m, mut d) = (1900i64, 1u32, 1u32);
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let days_in = |y: i64, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        for day in -25_567..84_000 {
            assert_eq!(civil_from_days(day), (y, m, d), "day {day}");
            d += 1;
            if d > days_in(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn file_names_sort_by_offset_and_name_their_range() {
        let p = TimePartition::of(Kind::Readings, 1_772_406_000_000);
        let a = data_file(Kind::Readings, p, 3, 9, 120);
        let b = data_file(Kind::Readings, p, 3, 121, 1_000_000);
        assert_eq!(
            a,
            "readings/date=2026-03-01/hour=23/part-p3-00000000000000000009-00000000000000000120.parquet"
        );
        assert!(a < b);
        assert_eq!(
            state_file(Kind::Anomalies, 3),
            "_lake/state/anomalies/p3.json"
        );
    }
}
