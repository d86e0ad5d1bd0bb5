//! The one random stream every choice is drawn from, in a fixed order, so
//! that the output depends on nothing but the seed and the config.
//!
//! ChaCha8 is portable and its stream for a seed is fixed by its
//! specification, unlike `StdRng`, which may change between releases.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

#[derive(Debug, Clone)]
pub(crate) struct Rand(ChaCha8Rng);

/// 2^-32 and 2^-53: scale factors from integer bits to [0, 1).
const INV_2_32: f64 = 1.0 / 4_294_967_296.0;
const INV_2_53: f64 = 1.0 / 9_007_199_254_740_992.0;

impl Rand {
    pub(crate) fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    pub(crate) fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1) with 53 bits.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.u64() >> 11) as f64 * INV_2_53
    }

    /// Three uniforms in [-1, 1) with about 21 bits each from one draw:
    /// plenty for noise, and a third of the generator's work on the hot path.
    pub(crate) fn symmetric3(&mut self) -> [f64; 3] {
        let x = self.u64();
        let part = |shift: u32| ((x >> shift) & 0x1F_FFFF) as f64 * (2.0 / 2_097_152.0) - 1.0;
        [part(0), part(21), part(42)]
    }

    /// Uniform in [lo, hi).
    pub(crate) fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform whole number in `lo..=hi` (a 2^-32 bias at most, irrelevant here).
    pub(crate) fn between(&mut self, lo: u32, hi: u32) -> u32 {
        let span = u64::from(hi - lo) + 1;
        let x = self.u64() >> 32;
        lo + ((x * span) >> 32) as u32
    }

    /// Exponentially distributed with the given mean: the waiting time of a
    /// memoryless process, so faults arrive at a steady average rate without
    /// a draw on every reading.
    pub(crate) fn exponential(&mut self, mean: f64) -> f64 {
        // 1 - U is in (0, 1], so the logarithm is finite.
        -mean * (1.0 - self.unit()).ln()
    }

    /// Uniform in [-1, 1) with 32 bits.
    pub(crate) fn symmetric(&mut self) -> f64 {
        (self.u64() >> 32) as f64 * INV_2_32 * 2.0 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_in_their_ranges() {
        let mut r = Rand::new(7);
        for _ in 0..10_000 {
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
            for s in r.symmetric3() {
                assert!((-1.0..1.0).contains(&s));
            }
            assert!((-1.0..1.0).contains(&r.symmetric()));
            let b = r.between(3, 6);
            assert!((3..=6).contains(&b));
            assert!(r.exponential(2.0) >= 0.0);
        }
    }

    #[test]
    fn between_reaches_both_ends_and_exponential_has_its_mean() {
        let mut r = Rand::new(1);
        let mut seen = [0u32; 4];
        for _ in 0..4000 {
            seen[(r.between(3, 6) - 3) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
        let mean = (0..20_000).map(|_| r.exponential(5.0)).sum::<f64>() / 20_000.0;
        assert!((mean - 5.0).abs() < 0.2, "{mean}");
    }
}
