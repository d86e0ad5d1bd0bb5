//! Running mean and sample variance over a sliding window, O(1) amortised.
//!
//! Sums are kept relative to a shift `k` (the window's mean at the last
//! rebuild), which avoids the catastrophic cancellation of raw sums of
//! squares around large means such as 230 V. Two things still erode them:
//! rounding error accumulates as values are added and removed, and a window
//! whose level moves far from `k` relative to its spread (a step from
//! −6,480 to 9,968 with a spread of 0.2) cancels in `s2 − s1²/n`. So the sums
//! are rebuilt exactly from the window after as many removals as the window
//! holds, and sooner when `s2` exceeds the centred sum of squares by more
//! than [`CANCELLATION_RATIO`] (but at most once per eighth of the window, so
//! a pathological stream cannot make every reading O(n)). Both cost O(n) once
//! per Θ(n) removals, O(1) amortised, and keep results within about 1e-10
//! relative of a two-pass computation.
//!
//! A window whose values are all bit-identical has a variance of exactly
//! zero. Rather than trust the sums to cancel to zero, the run of identical
//! values at the tail is tracked, so zero variance is detected exactly.

/// How many times larger than the centred sum of squares `s2` may grow
/// before a rebuild: each factor of two costs one bit of the variance's
/// precision, so 2¹⁰ keeps over 40 of its 52 bits.
const CANCELLATION_RATIO: f64 = 1024.0;

/// Mean and sample standard deviation of the window, when defined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    pub count: usize,
    pub mean: Option<f64>,
    /// `None` with fewer than two values. Exactly `0.0` when all values are equal.
    pub stddev: Option<f64>,
}

/// Shifted running sums for one field of one meter's window.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunningStats {
    shift: f64,
    /// Σ (x − shift)
    s1: f64,
    /// Σ (x − shift)²
    s2: f64,
    removals_since_rebuild: usize,
    /// The value of the trailing run of identical values, and how many of the
    /// window's newest values belong to it.
    run_value: f64,
    run_len: usize,
}

impl RunningStats {
    /// Adds `x` as the newest value of a window that now holds `len` values.
    pub(crate) fn push_back(&mut self, x: f64, len_after: usize) {
        if len_after == 1 {
            *self = Self {
                shift: x,
                run_value: x,
                run_len: 1,
                ..Self::default()
            };
            return;
        }
        let d = x - self.shift;
        self.s1 += d;
        self.s2 += d * d;
        if x.to_bits() == self.run_value.to_bits() {
            self.run_len += 1;
        } else {
            self.run_value = x;
            self.run_len = 1;
        }
    }

    /// Adds `x` somewhere other than the tail (a late reading). The run of
    /// identical tail values is then unknown, so it is reset conservatively:
    /// zero variance will be found again by the sums or the next rebuild.
    pub(crate) fn insert_middle(&mut self, x: f64) {
        let d = x - self.shift;
        self.s1 += d;
        self.s2 += d * d;
        if x.to_bits() != self.run_value.to_bits() {
            self.run_len = 0;
        }
    }

    /// Removes the oldest value `x`; `len_after` values remain. Returns true
    /// when the caller should [`RunningStats::rebuild`].
    pub(crate) fn pop_front(&mut self, x: f64, len_after: usize) -> bool {
        if len_after == 0 {
            *self = Self::default();
            return false;
        }
        let d = x - self.shift;
        self.s1 -= d;
        self.s2 -= d * d;
        self.run_len = self.run_len.min(len_after);
        self.removals_since_rebuild += 1;
        if self.removals_since_rebuild >= len_after {
            return true;
        }
        // An all-equal window is answered exactly from the run, whatever the
        // sums say, so its (zero) centred sum never forces a rebuild.
        let cancelling = self.run_len < len_after && {
            let centred = self.s2 - self.s1 * self.s1 / len_after as f64;
            centred * CANCELLATION_RATIO < self.s2
        };
        cancelling && self.removals_since_rebuild * 8 >= len_after
    }

    /// Recomputes the sums exactly from the window's values, oldest first.
    pub(crate) fn rebuild(&mut self, values: impl Iterator<Item = f64> + Clone) {
        let mut last = None;
        let mut run = 0usize;
        for v in values.clone() {
            if last.map(f64::to_bits) == Some(v.to_bits()) {
                run += 1;
            } else {
                run = 1;
            }
            last = Some(v);
        }
        let Some(last) = last else {
            *self = Self::default();
            return;
        };
        let (mut sum, mut n) = (0.0, 0usize);
        for v in values.clone() {
            sum += v;
            n += 1;
        }
        // Centring on the mean makes s1 ≈ 0 and s2 the centred sum itself,
        // so nothing cancels until the window's level moves again. A mean
        // that overflows (values near f64::MAX) falls back to a window value.
        let mean = sum / n as f64;
        let shift = if mean.is_finite() { mean } else { last };
        let (mut s1, mut s2) = (0.0, 0.0);
        for v in values {
            let d = v - shift;
            s1 += d;
            s2 += d * d;
        }
        *self = Self {
            shift,
            s1,
            s2,
            removals_since_rebuild: 0,
            run_value: last,
            run_len: run,
        };
    }

    /// Mean and sample standard deviation of a window holding `n` values.
    pub(crate) fn moments(&self, n: usize) -> Moments {
        if n == 0 {
            return Moments {
                count: 0,
                mean: None,
                stddev: None,
            };
        }
        let nf = n as f64;
        if self.run_len >= n {
            // Every value equals run_value: exact, no rounding.
            return Moments {
                count: n,
                mean: Some(self.run_value),
                stddev: (n >= 2).then_some(0.0),
            };
        }
        let mean = self.shift + self.s1 / nf;
        let stddev = (n >= 2).then(|| {
            let var = (self.s2 - self.s1 * self.s1 / nf) / (nf - 1.0);
            var.max(0.0).sqrt()
        });
        Moments {
            count: n,
            mean: Some(mean),
            stddev,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use proptest::prelude::*;

    use super::*;

    fn two_pass(values: &VecDeque<f64>) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var.sqrt())
    }

    /// Drives RunningStats as the detector does: push, then pop the oldest
    /// once the window is over `cap`, rebuilding when asked.
    fn check_sliding(values: &[f64], cap: usize) {
        let mut window = VecDeque::new();
        let mut stats = RunningStats::default();
        for &v in values {
            window.push_back(v);
            stats.push_back(v, window.len());
            while window.len() > cap {
                let old = window.pop_front().unwrap();
                if stats.pop_front(old, window.len()) {
                    stats.rebuild(window.iter().copied());
                }
            }
            if window.len() >= 2 {
                let (mean, sd) = two_pass(&window);
                let m = stats.moments(window.len());
                let got_mean = m.mean.unwrap();
                let got_sd = m.stddev.unwrap();
                // Relative to the scale that z depends on: a mean near zero
                // has no meaningful relative error of its own.
                assert!(
                    (got_mean - mean).abs() <= 1e-9 * (mean.abs() + sd),
                    "mean {got_mean} vs {mean}"
                );
                let flat = window.iter().all(|x| x.to_bits() == window[0].to_bits());
                if flat {
                    // Two-pass leaves rounding residue (mean ≠ x); ours is exact.
                    assert_eq!(got_sd, 0.0, "exact zero variance");
                    assert!(sd < 1e-9);
                } else {
                    assert!((got_sd - sd).abs() <= 1e-9 * sd, "sd {got_sd} vs {sd}");
                }
            }
        }
    }

    #[test]
    fn flat_then_step_then_flat_is_exactly_zero_when_flat() {
        let mut values = vec![231.7; 50];
        values.extend(std::iter::repeat_n(232.3, 80));
        check_sliding(&values, 30);
    }

    #[test]
    fn large_offset_small_noise_stays_accurate() {
        let values: Vec<f64> = (0..20_000)
            .map(|i| 1.0e6 + ((i * 7919) % 1000) as f64 * 1e-3 + (i as f64) * 1e-4)
            .collect();
        check_sliding(&values, 300);
    }

    /// CI found this: a small window (cap 2) whose level jumps by ~10⁴
    /// between readings, then holds two values 0.2 apart. A shift left
    /// behind at the old level made `s2 − s1²/n` cancel to 5e-8 relative.
    #[test]
    fn level_jumps_in_small_windows_do_not_cancel() {
        let levels = [
            -1501.04, 315.01, 3877.41, 7876.63, -7646.51, 3260.25, -4311.28, 698.12, 1819.73,
            -6480.78, 638.40,
        ];
        for cap in [2, 3, 5, 17] {
            let mut values = Vec::new();
            for (i, level) in levels.iter().cycle().take(200).enumerate() {
                values.push(*level);
                if i % 3 == 0 {
                    values.extend([9967.997925049924, 9968.209463245566]);
                }
            }
            check_sliding(&values, cap);
        }
    }

    proptest! {
        #[test]
        fn sliding_moments_match_two_pass(
            values in proptest::collection::vec(-1.0e4f64..1.0e4, 2..600),
            cap in 2usize..200,
        ) {
            check_sliding(&values, cap);
        }

        #[test]
        fn drifting_voltage_matches_two_pass(
            noise in proptest::collection::vec(-3.0f64..3.0, 100..2000),
            drift in -0.05f64..0.05,
        ) {
            let values: Vec<f64> = noise.iter().enumerate()
                .map(|(i, n)| 230.0 + drift * i as f64 + n).collect();
            check_sliding(&values, 300);
        }
    }
}
