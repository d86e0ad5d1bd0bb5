//! The physics of a fault-free grid: daily load curves, feeders whose
//! voltage sags under load, and meters along them.
//!
//! # Why the noise is bounded
//! Gridwatch flags |z| > 2.5 against a meter's last 5 minutes. Gaussian
//! noise would cross that on 1.2 % of ordinary readings, and every one would
//! count as a false positive against the labels. So a meter's
//! reading-to-reading noise is uniform (its |z| never exceeds √3 ≈ 1.73) and
//! everything else moves slowly: the load curve and a feeder's drift change
//! the voltage by a fraction of the noise within a window. A flagged reading
//! is then an injected fault, which is what makes the labels ground truth.

use crate::rng::Rand;

/// Share of nominal voltage a feeder's tap setting may be off by, each way.
const TAP_SPREAD: f64 = 0.01;
/// Voltage drop at full load at the far end of a feeder, V (range).
const FEEDER_DROP: (f64, f64) = (5.0, 10.0);
/// A feeder's slow random drift: stationary standard deviation (V) and
/// time constant (ms). Within a 5-minute window it moves about 0.17 V.
const DRIFT_SD: f64 = 0.3;
const DRIFT_TAU_MS: f64 = 30.0 * 60_000.0;
/// A household's peak demand, kW (range).
const PEAK_KW: (f64, f64) = (2.0, 8.0);
/// Reading-to-reading spread of a household's demand, as a share of it.
const LOAD_JITTER: f64 = 0.05;
/// Meter self-heating, °C per A², and the spread of meter placements
/// (indoors, in a sunny cabinet), °C.
const HEAT_PER_A2: f64 = 0.008;
const PLACEMENT_SPREAD: f64 = 4.0;
/// Half-width of the temperature sensor's noise, °C.
const TEMPERATURE_NOISE: f64 = 0.15;
/// Ambient temperature: daily mean and swing, °C, peaking at 15:00 UTC.
const AMBIENT_MEAN: f64 = 12.0;
const AMBIENT_SWING: f64 = 7.0;

const MS_PER_HOUR: f64 = 3_600_000.0;
const MS_PER_DAY: i64 = 86_400_000;

/// The shape of a feeder's demand over a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Profile {
    /// Homes: a morning bump and a tall evening peak around 19:00.
    Residential,
    /// Offices and shops: a plateau from 08:00 to 18:00.
    Commercial,
}

/// exp(−d²/2w²) for the circular distance d between two hours of the day.
fn bump(hour: f64, centre: f64, width: f64) -> f64 {
    let d = (hour - centre).rem_euclid(24.0);
    let d = d.min(24.0 - d);
    (-(d * d) / (2.0 * width * width)).exp()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Profile {
    /// Load as a share of peak (0.25 to 1), smooth enough that it moves the
    /// voltage by a fraction of a volt within 5 minutes.
    pub(crate) fn load(self, hour: f64) -> f64 {
        let load = match self {
            Self::Residential => {
                0.30 + 0.25 * bump(hour, 7.5, 1.2)
                    + 0.15 * bump(hour, 13.0, 2.5)
                    + 0.60 * bump(hour, 19.0, 1.8)
            }
            Self::Commercial => {
                let h = hour.rem_euclid(24.0);
                0.25 + 0.70 * sigmoid((h - 8.0) / 0.7) * sigmoid((18.0 - h) / 0.7)
            }
        };
        load.clamp(0.0, 1.0)
    }
}

/// Hour of the day (UTC, fractional) of an epoch-ms time.
pub(crate) fn hour_of_day(ms: i64) -> f64 {
    ms.rem_euclid(MS_PER_DAY) as f64 / MS_PER_HOUR
}

pub(crate) fn ambient(hour: f64) -> f64 {
    AMBIENT_MEAN + AMBIENT_SWING * (std::f64::consts::TAU * (hour - 9.0) / 24.0).sin()
}

/// A feeder's fixed character and its state at the current tick.
#[derive(Debug, Clone)]
pub(crate) struct Feeder {
    profile: Profile,
    /// Hours this feeder's curve is shifted by, so feeders do not peak in lockstep.
    shift_h: f64,
    /// Sending-end voltage, V.
    sending: f64,
    /// Drop at full load at the far end, V.
    drop: f64,
    drift: f64,
    /// Per-tick AR(1) factor and innovation half-width of the drift.
    drift_keep: f64,
    drift_step: f64,
    /// At the current tick: voltage at the feeder head, the drop at its far
    /// end, and the load share.
    pub(crate) head: f64,
    pub(crate) far_drop: f64,
    pub(crate) load: f64,
}

impl Feeder {
    pub(crate) fn new(index: u32, nominal: f64, interval_ms: u64, rng: &mut Rand) -> Self {
        // One feeder in four serves a business district.
        let profile = if index % 4 == 3 {
            Profile::Commercial
        } else {
            Profile::Residential
        };
        let drift_keep = (-(interval_ms as f64) / DRIFT_TAU_MS).exp();
        // Uniform innovations with the variance that keeps the drift's
        // stationary standard deviation at DRIFT_SD.
        let drift_step = 3f64.sqrt() * DRIFT_SD * (1.0 - drift_keep * drift_keep).sqrt();
        Self {
            profile,
            shift_h: rng.range(-0.5, 0.5),
            sending: nominal * (1.0 + TAP_SPREAD * rng.symmetric()),
            drop: rng.range(FEEDER_DROP.0, FEEDER_DROP.1),
            drift: DRIFT_SD * rng.symmetric(),
            drift_keep,
            drift_step,
            head: nominal,
            far_drop: 0.0,
            load: 0.0,
        }
    }

    /// Moves the feeder to a new tick at `hour` of the day.
    pub(crate) fn advance(&mut self, hour: f64, rng: &mut Rand) {
        self.drift = self.drift * self.drift_keep + self.drift_step * rng.symmetric();
        self.load = self.profile.load(hour + self.shift_h);
        self.head = self.sending + self.drift;
        self.far_drop = self.drop * self.load;
    }
}

/// A meter's fixed character. `f32` keeps a million meters in about 100 MB.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    /// How far along its feeder the meter sits (share of the far-end drop).
    position: f32,
    /// Calibration offset of its voltage sensor, V.
    offset: f32,
    peak_kw: f32,
    /// How much warmer than ambient its enclosure runs, °C.
    placement: f32,
}

/// The fault-free values of one reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Values {
    pub(crate) voltage: f64,
    pub(crate) current: f64,
    pub(crate) temperature: f64,
}

impl Site {
    pub(crate) fn new(rng: &mut Rand) -> Self {
        Self {
            position: rng.range(0.3, 1.0) as f32,
            offset: (0.5 * rng.symmetric()) as f32,
            peak_kw: rng.range(PEAK_KW.0, PEAK_KW.1) as f32,
            placement: (PLACEMENT_SPREAD * rng.symmetric()) as f32,
        }
    }

    /// This meter's reading on `feeder` now. `noise` holds three uniforms in
    /// [-1, 1); `noise_half_width` is the voltage noise's half-width (√3 σ).
    pub(crate) fn values(
        &self,
        feeder: &Feeder,
        ambient: f64,
        noise: [f64; 3],
        noise_half_width: f64,
    ) -> Values {
        let clean =
            feeder.head - f64::from(self.position) * feeder.far_drop + f64::from(self.offset);
        let watts = f64::from(self.peak_kw) * 1000.0 * feeder.load * (1.0 + LOAD_JITTER * noise[1]);
        let current = watts / clean;
        Values {
            voltage: clean + noise_half_width * noise[0],
            current,
            temperature: ambient
                + f64::from(self.placement)
                + HEAT_PER_A2 * current * current
                + TEMPERATURE_NOISE * noise[2],
        }
    }

    /// The enclosure temperature of a dead meter: no current, no self-heating.
    pub(crate) fn idle_temperature(&self, ambient: f64, noise: f64) -> f64 {
        ambient + f64::from(self.placement) + TEMPERATURE_NOISE * noise
    }
}

/// Rounds to the nearest whole number (ties to even). `f64::round` is a
/// library call on baseline x86-64 and took a tenth of the generator's
/// time; adding and removing 2^52 rounds in two additions.
fn round(y: f64) -> f64 {
    const SHIFT: f64 = 4_503_599_627_370_496.0;
    if y.abs() < SHIFT {
        let r = (y.abs() + SHIFT) - SHIFT;
        r.copysign(y)
    } else {
        y
    }
}

/// Rounds to the resolution a meter reports: 0.1 V, 0.01 A, 0.1 °C.
pub(crate) fn quantise(v: Values) -> Values {
    Values {
        voltage: round(v.voltage * 10.0) / 10.0,
        current: round(v.current * 100.0) / 100.0,
        temperature: round(v.temperature * 10.0) / 10.0,
    }
}

/// A reading's values in the units a meter reports (decivolts, centiamps,
/// decidegrees): what a stuck sensor repeats, exactly, in 12 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frozen([i32; 3]);

impl Frozen {
    pub(crate) fn new(v: Values) -> Self {
        // Saturating casts; plausible readings are far inside i32.
        Self([
            round(v.voltage * 10.0) as i32,
            round(v.current * 100.0) as i32,
            round(v.temperature * 10.0) as i32,
        ])
    }

    /// The same values [`quantise`] gives for the reading frozen.
    pub(crate) fn values(self) -> Values {
        Values {
            voltage: f64::from(self.0[0]) / 10.0,
            current: f64::from(self.0[1]) / 100.0,
            temperature: f64::from(self.0[2]) / 10.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_rounding_agrees_with_the_library() {
        let mut rng = Rand::new(9);
        for _ in 0..100_000 {
            let y = rng.range(-5000.0, 5000.0);
            assert_eq!(round(y), y.round(), "{y}");
        }
        assert_eq!(round(2.5), 2.0);
        assert_eq!(round(-0.4), -0.0);
        assert_eq!(round(1e300), 1e300);
    }

    #[test]
    fn a_frozen_reading_thaws_to_its_quantised_values() {
        let v = Values {
            voltage: 230.149,
            current: 12.345_6,
            temperature: -3.26,
        };
        assert_eq!(Frozen::new(v).values(), quantise(v));
        assert_eq!(quantise(Frozen::new(v).values()), quantise(v));
    }

    #[test]
    fn load_curves_peak_where_they_should_and_stay_in_range() {
        let r = Profile::Residential;
        let c = Profile::Commercial;
        for step in 0..(24 * 60) {
            let h = f64::from(step) / 60.0;
            for p in [r, c] {
                let l = p.load(h);
                assert!((0.2..=1.0).contains(&l), "{p:?} {h} {l}");
            }
        }
        assert!(r.load(19.0) > 0.85 && r.load(3.5) < 0.4);
        assert!(c.load(13.0) > 0.9 && c.load(2.0) < 0.3);
    }

    #[test]
    fn load_curves_move_slowly_within_a_detector_window() {
        // The steepest change over 5 minutes times the largest far-end drop
        // must stay well below the noise's half-width (√3 V by default).
        for p in [Profile::Residential, Profile::Commercial] {
            let worst = (0..(24 * 60))
                .map(|m| {
                    let h = f64::from(m) / 60.0;
                    (p.load(h + 5.0 / 60.0) - p.load(h)).abs()
                })
                .fold(0.0, f64::max);
            assert!(worst * FEEDER_DROP.1 < 0.35, "{p:?}: {worst}");
        }
    }

    #[test]
    fn voltage_sags_at_peak_and_current_and_temperature_follow_load() {
        let mut rng = Rand::new(3);
        let mut feeder = Feeder::new(0, 230.0, 1000, &mut rng);
        let site = Site::new(&mut rng);
        feeder.advance(3.5, &mut rng);
        let night = site.values(&feeder, ambient(3.5), [0.0; 3], 0.0);
        feeder.advance(19.0, &mut rng);
        let peak = site.values(&feeder, ambient(3.5), [0.0; 3], 0.0);
        assert!(peak.voltage < night.voltage - 1.0, "{night:?} {peak:?}");
        assert!(peak.voltage > 230.0 * 0.94);
        assert!(peak.current > 2.0 * night.current);
        assert!(peak.temperature > night.temperature);
    }
}
