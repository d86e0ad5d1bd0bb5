//! A meter's window of readings, stored compactly and losslessly.
//!
//! Issue #10: 100,000 meters with 5-minute windows at 1 reading/s must fit in
//! 512 MB. Two `VecDeque`s (times and values) held 8 bytes per time and per
//! value, and grew by doubling, so a detector with full windows held 28–42
//! bytes per reading (8.5–12.7 KB per meter, one or three scored fields,
//! measured by `examples/window_memory.rs`). Meter readings are short
//! decimals taken at regular intervals, so deltas between neighbours are
//! small integers; with this encoding the same run holds 4.5–9.1 bytes per
//! reading (1.35–2.74 KB per meter, map and per-meter overhead included).
//!
//! # Encoding
//! The oldest reading (the *front*) is held decoded in the struct, so the
//! eviction test and `pop_front` need no decoding beyond the one record that
//! becomes the new front. Every later reading is one record in a byte buffer:
//!
//! - **time**: the change of the time step, `zigzag(dtᵢ − dtᵢ₋₁)` as a varint
//!   (`dtᵢ = tᵢ − tᵢ₋₁`, all wrapping, so any `i64` times round-trip; readings
//!   at a steady rate cost one byte);
//! - **each field**: if the value `v` is a decimal with at most three places
//!   — exactly, meaning `(q as f64) / 1000.0` gives back `v`'s bits for
//!   `q = round(v × 1000)`, `|q| < 2⁵¹` — the change `d` of `q` from the
//!   field's previous decimal value, as the varint `zigzag(d / m) << 2 | tag`
//!   where `m` (1, 10 or 100, tag 0–2) is the largest that divides `d`, so
//!   0.1 V steps cost no more than units. Anything else (0.1 + 0.2, −0.0,
//!   subnormals, huge values) is the value's raw bits as a varint between two
//!   bytes `3`. Either way the decoded value has the same bits as the
//!   stored one, so scores computed from the window are unchanged.
//!
//! Every byte of the buffer belongs to a varint, and a record is a fixed
//! number of them, so records can be read backwards too (a varint's last
//! byte is the only one below 0x80), and the deltas undone from the newest
//! reading's coder state. Readings arriving in order (the common case) are
//! appended; a late reading (bounded by `allowed_lateness`) walks back from
//! the newest to its place and re-encodes only the readings after it, so it
//! costs O(readings newer than it), not O(window).
//!
//! # Capacity
//! Popping advances a head offset; the live bytes are moved to the start of
//! the buffer only when an append finds no room at its end for the longest
//! possible record. The buffer is then sized to 1.25× what it holds plus that
//! room (grown when less than 1/8 would be free, so a move of `n` bytes
//! happens at most once per `n/8` bytes appended: O(1) amortised), and shrunk
//! when it is over twice that. So a full window costs its encoded size plus
//! about 12–25%, and a steady stream allocates nothing (shrinking is lazy: it
//! happens at the next move).

use crate::ScoredField;

/// The most fields a reading can have scored.
pub(crate) const MAX_FIELDS: usize = ScoredField::ALL.len();

/// Values are stored as multiples of 10⁻³ when that is exact.
const SCALE: f64 = 1000.0;
/// Adding and removing this rounds an `f64` below 2⁵¹ in magnitude to the
/// nearest integer (ties to even) in two additions: `f64::round` is a libm
/// call on some targets.
const ROUNDER: f64 = 6_755_399_441_055_744.0; // 1.5 × 2⁵²
/// `|q|` bound for the decimal form: the rounding trick is exact below it, and
/// deltas of two such `q` cannot overflow.
const MAX_Q: f64 = 2_251_799_813_685_248.0; // 2⁵¹
/// The token of a value stored as its raw bits, before and after them.
const RAW: u8 = 3;
/// The divisor for each decimal tag.
const STEP: [i64; 3] = [1, 10, 100];
/// Longest record of `k` fields: a 10-byte time varint and up to 12 bytes
/// per field.
fn record_max(k: usize) -> usize {
    10 + 12 * k
}
/// Bytes of moved records kept on the stack during a late insert.
const MOVED_ON_STACK: usize = 256;

/// One meter's readings in event-time order, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Window {
    /// Records of every reading after the front; live from `head`.
    bytes: Vec<u8>,
    head: usize,
    /// Readings held, the front included.
    len: usize,
    /// Fields per reading.
    k: usize,
    /// The front reading, decoded, and the coder state after it: its time
    /// step and each field's last decimal value.
    front: Cursor,
    front_values: [f64; MAX_FIELDS],
    /// The coder state after the newest reading, for appending.
    back: Cursor,
}

/// The coder state between two records.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Cursor {
    time: i64,
    step: u64,
    q: [i64; MAX_FIELDS],
}

impl Window {
    /// An empty window for readings of `k` fields (at most [`MAX_FIELDS`]).
    pub(crate) fn new(k: usize) -> Self {
        Self {
            k: k.min(MAX_FIELDS),
            ..Self::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The oldest reading's time.
    pub(crate) fn front_time(&self) -> Option<i64> {
        (self.len > 0).then_some(self.front.time)
    }

    /// The newest reading's time.
    pub(crate) fn back_time(&self) -> Option<i64> {
        (self.len > 0).then_some(self.back.time)
    }

    /// Heap bytes reserved (for tests and measurements).
    #[cfg(test)]
    pub(crate) fn capacity_bytes(&self) -> usize {
        self.bytes.capacity()
    }

    /// Appends a reading no older than the newest one. `values` holds the
    /// window's `k` fields (extra ones are ignored, missing ones are 0).
    pub(crate) fn push_back(&mut self, time: i64, values: &[f64]) {
        if self.len == 0 {
            let mut front = Cursor {
                time,
                ..Cursor::default()
            };
            for (i, &v) in values.iter().take(self.k).enumerate() {
                self.front_values[i] = v;
                if let Some(q) = decimal(v) {
                    front.q[i] = q;
                }
            }
            self.front = front;
            self.back = front;
            self.len = 1;
            return;
        }
        // Room for the longest record, so the pushes below never reallocate.
        self.make_room(record_max(self.k));
        let step = (time as u64).wrapping_sub(self.back.time as u64);
        put_varint(
            &mut self.bytes,
            zigzag(step.wrapping_sub(self.back.step) as i64),
        );
        self.back.time = time;
        self.back.step = step;
        for i in 0..self.k {
            let v = values.get(i).copied().unwrap_or_default();
            put_value(&mut self.bytes, v, &mut self.back.q[i]);
        }
        self.len += 1;
    }

    /// Removes the oldest reading, writing its values to `out`; returns its
    /// time, or `None` when the window is empty.
    pub(crate) fn pop_front(&mut self, out: &mut [f64; MAX_FIELDS]) -> Option<i64> {
        if self.len == 0 {
            return None;
        }
        let time = self.front.time;
        *out = self.front_values;
        self.len -= 1;
        if self.len == 0 {
            self.bytes.clear();
            self.head = 0;
            return Some(time);
        }
        let mut pos = self.head;
        self.front
            .decode(&self.bytes, &mut pos, self.k, &mut self.front_values);
        self.head = pos;
        if self.head == self.bytes.len() {
            // Only the front is left: start the buffer over for free.
            self.bytes.clear();
            self.head = 0;
        }
        Some(time)
    }

    /// Inserts a reading at its place in time order, after any readings with
    /// the same time. For late readings: it walks back from the newest
    /// reading and re-encodes only the readings newer than this one.
    pub(crate) fn insert_sorted(&mut self, time: i64, values: &[f64]) {
        if self.back_time().is_none_or(|last| last <= time) {
            self.push_back(time, values);
            return;
        }
        if time < self.front.time {
            self.insert_front(time, values);
            return;
        }
        // Walk back to the coder state after the newest reading that stays.
        let (mut state, mut end, mut moved) = (self.back, self.bytes.len(), 0);
        while state.time > time && end > self.head {
            state.undo(&self.bytes, self.head, &mut end, self.k);
            moved += 1;
        }
        // The moved readings' bytes, decoded again from `state` below.
        let mut on_stack = [0u8; MOVED_ON_STACK];
        let tail = &self.bytes[end..];
        let heap;
        let tail: &[u8] = if tail.len() <= MOVED_ON_STACK {
            on_stack[..tail.len()].copy_from_slice(tail);
            &on_stack[..tail.len()]
        } else {
            heap = tail.to_vec();
            &heap
        };
        self.bytes.truncate(end);
        self.back = state;
        self.len -= moved;
        self.push_back(time, values);
        let (mut pos, mut values) = (0, [0.0; MAX_FIELDS]);
        for _ in 0..moved {
            state.decode(tail, &mut pos, self.k, &mut values);
            self.push_back(state.time, &values[..self.k]);
        }
    }

    /// Inserts a reading older than every other: re-encodes the window.
    fn insert_front(&mut self, time: i64, values: &[f64]) {
        let old: Vec<(i64, [f64; MAX_FIELDS])> = self.iter().collect();
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes.clear();
        *self = Self {
            bytes,
            ..Self::new(self.k)
        };
        self.push_back(time, values);
        for (t, v) in old {
            self.push_back(t, &v[..self.k]);
        }
    }

    /// The readings, oldest first: `(time, values)`, with `values[..k]` set.
    pub(crate) fn iter(&self) -> Iter<'_> {
        Iter {
            bytes: &self.bytes[self.head..],
            pos: 0,
            k: self.k,
            left: self.len,
            state: self.front,
            values: self.front_values,
            first: true,
        }
    }

    /// The values of field `field`, oldest first.
    #[cfg(test)]
    pub(crate) fn field(&self, field: usize) -> impl Iterator<Item = f64> + Clone + '_ {
        self.iter().map(move |(_, v)| v[field.min(MAX_FIELDS - 1)])
    }

    /// Decodes every field into `out`, field by field: field `i` is
    /// `out[i * len..(i + 1) * len]`. One pass, for rebuilding sums.
    pub(crate) fn decode_columns(&self, out: &mut Vec<f64>) {
        let n = self.len;
        out.clear();
        out.resize(n * self.k, 0.0);
        for (j, (_, v)) in self.iter().enumerate() {
            for (i, &x) in v.iter().take(self.k).enumerate() {
                out[i * n + j] = x;
            }
        }
    }

    /// Ensures `need` more bytes fit at the end (see the module doc).
    fn make_room(&mut self, need: usize) {
        let cap = self.bytes.capacity();
        if self.bytes.len() + need <= cap {
            return;
        }
        let used = self.bytes.len() - self.head;
        if self.head > 0 {
            self.bytes.copy_within(self.head.., 0);
            self.bytes.truncate(used);
            self.head = 0;
        }
        let target = used + need;
        let roomy = target + target / 4 + 16;
        if cap < target + used / 8 {
            self.bytes.reserve_exact(roomy - used);
        } else if cap > 2 * roomy {
            self.bytes.shrink_to(roomy);
        }
    }
}

impl Cursor {
    /// Decodes the record at `*pos` (the one after the reading this state
    /// describes), moving to the state after it.
    #[inline]
    fn decode(&mut self, bytes: &[u8], pos: &mut usize, k: usize, values: &mut [f64; MAX_FIELDS]) {
        let dstep = unzigzag(get_varint(bytes, pos));
        self.step = self.step.wrapping_add(dstep as u64);
        self.time = (self.time as u64).wrapping_add(self.step) as i64;
        for (q, v) in self.q.iter_mut().zip(values.iter_mut()).take(k) {
            let token = get_varint(bytes, pos);
            let tag = (token & 3) as usize;
            if let Some(&m) = STEP.get(tag) {
                *q = q.wrapping_add(unzigzag(token >> 2).wrapping_mul(m));
                *v = *q as f64 / SCALE;
            } else {
                *v = f64::from_bits(get_varint(bytes, pos));
                *pos += 1; // the closing RAW
            }
        }
    }
}

impl Cursor {
    /// Steps back over the record ending at `*end` (whose state this is),
    /// to the state after the record before it. `floor` is where the live
    /// bytes start.
    fn undo(&mut self, bytes: &[u8], floor: usize, end: &mut usize, k: usize) {
        for q in self.q[..k].iter_mut().rev() {
            let token = get_varint_back(bytes, floor, end);
            if let Some(&m) = STEP.get((token & 3) as usize) {
                *q = q.wrapping_sub(unzigzag(token >> 2).wrapping_mul(m));
            } else {
                get_varint_back(bytes, floor, end); // the bits
                get_varint_back(bytes, floor, end); // the opening RAW
            }
        }
        let dstep = unzigzag(get_varint_back(bytes, floor, end));
        self.time = (self.time as u64).wrapping_sub(self.step) as i64;
        self.step = self.step.wrapping_sub(dstep as u64);
    }
}

/// The readings of a [`Window`], oldest first.
#[derive(Debug, Clone)]
pub(crate) struct Iter<'a> {
    bytes: &'a [u8],
    pos: usize,
    k: usize,
    left: usize,
    state: Cursor,
    values: [f64; MAX_FIELDS],
    first: bool,
}

impl Iterator for Iter<'_> {
    type Item = (i64, [f64; MAX_FIELDS]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        if self.first {
            self.first = false;
        } else {
            self.state
                .decode(self.bytes, &mut self.pos, self.k, &mut self.values);
        }
        Some((self.state.time, self.values))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// `v × 1000` as an integer, when dividing it by 1000 gives back `v` exactly.
#[inline]
fn decimal(v: f64) -> Option<i64> {
    let y = v * SCALE;
    // NaN passes this test and fails the bit comparison below.
    if y.abs() >= MAX_Q {
        return None;
    }
    let q = ((y + ROUNDER) - ROUNDER) as i64;
    ((q as f64 / SCALE).to_bits() == v.to_bits()).then_some(q)
}

/// Encodes `v` against its field's last decimal value `base`, updating it.
#[inline]
fn put_value(out: &mut Vec<u8>, v: f64, base: &mut i64) {
    match decimal(v) {
        Some(q) => {
            let d = q - *base;
            *base = q;
            // Constant divisors: a division by STEP[tag] would be a real `idiv`.
            let (m, tag) = if d % 100 == 0 {
                (d / 100, 2)
            } else if d % 10 == 0 {
                (d / 10, 1)
            } else {
                (d, 0)
            };
            put_varint(out, (zigzag(m) << 2) | tag);
        }
        None => {
            out.push(RAW);
            put_varint(out, v.to_bits());
            out.push(RAW);
        }
    }
}

#[inline]
fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

#[inline]
fn unzigzag(x: u64) -> i64 {
    ((x >> 1) as i64) ^ -((x & 1) as i64)
}

#[inline]
fn put_varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push(x as u8 | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

/// Reads the varint that ends just before `*end`, moving `*end` to its
/// first byte; never reads below `floor`.
#[inline]
fn get_varint_back(bytes: &[u8], floor: usize, end: &mut usize) -> u64 {
    let mut start = end.saturating_sub(1).max(floor);
    while start > floor && bytes.get(start - 1).is_some_and(|b| b & 0x80 != 0) {
        start -= 1;
    }
    *end = start;
    get_varint(bytes, &mut start)
}

/// Reads a varint written by [`put_varint`]. The buffer is only ever written
/// by this module; a truncated one reads as zeros rather than panicking.
#[inline]
fn get_varint(bytes: &[u8], pos: &mut usize) -> u64 {
    // Fast path: most varints here are one or two bytes.
    if let Some(&b0) = bytes.get(*pos) {
        if b0 < 0x80 {
            *pos += 1;
            return u64::from(b0);
        }
        if let Some(&b1) = bytes.get(*pos + 1)
            && b1 < 0x80
        {
            *pos += 2;
            return u64::from(b0 & 0x7f) | u64::from(b1) << 7;
        }
    }
    let mut x = 0u64;
    let mut shift = 0u32;
    loop {
        let byte = bytes.get(*pos).copied().unwrap_or(0);
        *pos += 1;
        if shift < 64 {
            x |= u64::from(byte & 0x7f) << shift;
        }
        if byte < 0x80 {
            return x;
        }
        shift += 7;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use proptest::prelude::*;

    use super::*;

    /// The window as it was: a plain deque of (time, values).
    type Model = VecDeque<(i64, Vec<f64>)>;

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    fn check(w: &Window, model: &Model, k: usize) {
        assert_eq!(w.len(), model.len());
        assert_eq!(w.is_empty(), model.is_empty());
        assert_eq!(w.front_time(), model.front().map(|r| r.0));
        assert_eq!(w.back_time(), model.back().map(|r| r.0));
        let got: Vec<(i64, Vec<u64>)> = w.iter().map(|(t, v)| (t, bits(&v[..k]))).collect();
        let want: Vec<(i64, Vec<u64>)> = model.iter().map(|(t, v)| (*t, bits(v))).collect();
        assert_eq!(got, want);
        for i in 0..k {
            let column: Vec<u64> = w.field(i).map(f64::to_bits).collect();
            let want: Vec<u64> = model.iter().map(|r| r.1[i].to_bits()).collect();
            assert_eq!(column, want, "field {i}");
        }
        let mut columns = vec![1.0; 3];
        w.decode_columns(&mut columns);
        assert_eq!(columns.len(), model.len() * k);
        for (j, (_, v)) in model.iter().enumerate() {
            for (i, x) in v.iter().enumerate() {
                assert_eq!(columns[i * model.len() + j].to_bits(), x.to_bits());
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(i64, Vec<f64>),
        /// A reading this far before the newest one.
        Late(u64, Vec<f64>),
        Pop,
    }

    /// Values of every kind the encoder distinguishes.
    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            // Short decimals, as meters send.
            (-2_000_000i64..2_000_000, 0u32..4).prop_map(|(n, p)| n as f64 / 10f64.powi(p as i32)),
            (220_000i64..240_000).prop_map(|n| n as f64 / 1000.0),
            (2200i64..2400).prop_map(|n| n as f64 / 10.0),
            Just(0.1 + 0.2),
            Just(-0.0),
            Just(0.0),
            Just(f64::MIN_POSITIVE / 8.0),
            Just(-f64::MIN_POSITIVE / 3.0),
            Just(f64::MAX),
            Just(f64::MIN),
            Just(2_251_799_813_685.248),
            Just(-2_251_799_813_685.247),
            Just(9.007_199_254_740_993e15),
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            (-1.0e4f64..1.0e4),
        ]
    }

    fn op(k: usize) -> impl Strategy<Value = Op> {
        let values = || proptest::collection::vec(value(), k);
        prop_oneof![
            6 => (prop_oneof![
                0i64..3,
                Just(1000),
                999i64..1002,
                0i64..i64::MAX,
                Just(i64::MAX),
            ], values()).prop_map(|(dt, v)| Op::Push(dt, v)),
            1 => (prop_oneof![0u64..5000, any::<u64>()], values()).prop_map(|(d, v)| Op::Late(d, v)),
            3 => Just(Op::Pop),
        ]
    }

    fn run(k: usize, start: i64, ops: &[Op]) {
        let mut w = Window::new(k);
        let mut model = Model::new();
        for op in ops {
            match op {
                Op::Push(dt, v) => {
                    let t = model.back().map_or(start, |r| r.0.saturating_add(*dt));
                    w.push_back(t, v);
                    model.push_back((t, v.clone()));
                }
                Op::Late(d, v) => {
                    let newest = model.back().map_or(start, |r| r.0);
                    let t = newest.saturating_sub_unsigned(*d);
                    w.insert_sorted(t, v);
                    let at = model.partition_point(|r| r.0 <= t);
                    model.insert(at, (t, v.clone()));
                }
                Op::Pop => {
                    let mut out = [f64::NAN; MAX_FIELDS];
                    let got = w.pop_front(&mut out);
                    let want = model.pop_front();
                    assert_eq!(got, want.as_ref().map(|r| r.0));
                    if let Some((_, v)) = want {
                        assert_eq!(bits(&out[..k]), bits(&v));
                    }
                }
            }
            check(&w, &model, k);
        }
    }

    proptest! {
        #[test]
        fn matches_a_deque(
            k in 1usize..=3,
            start in prop_oneof![Just(i64::MIN), Just(0i64), any::<i64>(), Just(1_767_225_600_000)],
            ops in proptest::collection::vec(op(3), 0..200),
        ) {
            let ops: Vec<Op> = ops.into_iter().map(|o| match o {
                Op::Push(t, v) => Op::Push(t, v[..k].to_vec()),
                Op::Late(d, v) => Op::Late(d, v[..k].to_vec()),
                Op::Pop => Op::Pop,
            }).collect();
            run(k, start, &ops);
        }
    }

    #[test]
    fn extreme_times_round_trip() {
        let v = vec![230.0];
        run(
            1,
            i64::MIN,
            &[
                Op::Push(0, v.clone()),
                Op::Push(i64::MAX, v.clone()),
                Op::Push(i64::MAX, v.clone()),
                Op::Push(i64::MAX, v.clone()),
                Op::Late(u64::MAX, v.clone()),
                Op::Pop,
                Op::Push(0, v.clone()),
                Op::Pop,
                Op::Pop,
                Op::Pop,
                Op::Pop,
                Op::Pop,
            ],
        );
    }

    #[test]
    fn non_decimal_values_keep_their_bits() {
        let values = [
            0.1 + 0.2,
            -0.0,
            0.0,
            5e-324,
            -2.2e-308,
            f64::MAX,
            f64::MIN,
            1.0e300,
            0.1,
            230.1,
            -0.001,
        ];
        for (i, &v) in values.iter().enumerate() {
            let exact = decimal(v).is_some();
            let want = matches!(i, 2 | 8 | 9 | 10);
            assert_eq!(exact, want, "{v:e} stored as a decimal: {exact}");
        }
        let ops: Vec<Op> = values.iter().map(|&v| Op::Push(1000, vec![v])).collect();
        run(1, 0, &ops);
    }

    /// A full window of simulator-like readings is a few bytes per reading,
    /// and a steady stream through it neither reallocates nor lets the
    /// buffer grow past 1.25× its contents plus slack.
    #[test]
    fn steady_windows_are_small_and_stop_allocating() {
        let mut w = Window::new(3);
        let mut x = 12345u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % 61) as f64 - 30.0
        };
        let mut t = 1_767_225_600_000;
        let mut reading = |t: &mut i64| {
            *t += 1000;
            let v = [
                (2300.0 + next()) / 10.0,
                (5000.0 + next()) / 1000.0,
                (2100.0 + next()) / 100.0,
            ];
            (*t, v)
        };
        for _ in 0..300 {
            let (t, v) = reading(&mut t);
            w.push_back(t, &v);
        }
        let used = w.bytes.len() - w.head;
        assert!(used <= 300 * 6, "{used} bytes for 300 readings");
        let mut caps = std::collections::BTreeSet::new();
        let mut out = [0.0; MAX_FIELDS];
        for i in 0..30_000 {
            w.pop_front(&mut out);
            let (t, v) = reading(&mut t);
            w.push_back(t, &v);
            if i >= 1000 {
                caps.insert(w.capacity_bytes());
            }
        }
        let used = w.bytes.len() - w.head;
        let cap = w.capacity_bytes();
        assert!(caps.len() <= 2, "capacity kept changing: {caps:?}");
        assert!(cap <= used * 3 / 2 + 64, "{cap} bytes reserved for {used}");
        // Emptying keeps the buffer; a new window replaces it (see maybe_sweep).
        while w.pop_front(&mut out).is_some() {}
        assert!(w.is_empty() && w.iter().next().is_none());
    }

    /// Shrinking is lazy: the buffer is resized when an append reaches its
    /// end, so once per capacity's worth of appends.
    #[test]
    fn a_shrinking_window_gives_memory_back() {
        let mut w = Window::new(1);
        let mut out = [0.0; MAX_FIELDS];
        for i in 0..10_000 {
            w.push_back(i * 1000, &[i as f64 / 3.0]);
        }
        let big = w.capacity_bytes();
        let mut i = 10_000;
        while w.len() > 100 {
            w.pop_front(&mut out);
            w.pop_front(&mut out);
            w.push_back(i * 1000, &[i as f64 / 3.0]);
            i += 1;
        }
        for _ in 0..big / 5 {
            w.pop_front(&mut out);
            w.push_back(i * 1000, &[i as f64 / 3.0]);
            i += 1;
        }
        assert!(
            w.capacity_bytes() * 10 < big,
            "{} of {big} bytes kept for {} readings",
            w.capacity_bytes(),
            w.len()
        );
    }
}
