// Shared by the memory example and the bench: simulator-like readings.
// (Included with `include!`, so it has no crate of its own.)

/// A deterministic stream of simulator-like readings: voltage in 0.1 V
/// steps around 230 V, current with 3 decimals, temperature with 2, all
/// produced as the simulator does (an integer divided by a power of ten).
#[derive(Debug)]
pub struct SimLike {
    state: u64,
}

impl SimLike {
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
        }
    }

    /// Uniform in [-1, 1).
    fn noise(&mut self) -> f64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    /// (voltage, current, temperature) for one reading.
    pub fn values(&mut self) -> (f64, f64, f64) {
        let v = ((230.0 + 3.0 * self.noise()) * 10.0).round() / 10.0;
        let c = ((5.0 + 0.3 * self.noise()) * 1000.0).round() / 1000.0;
        let t = ((21.0 + 0.5 * self.noise()) * 100.0).round() / 100.0;
        (v, c, t)
    }
}
