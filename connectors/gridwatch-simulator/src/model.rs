//! What the simulator emits: readings, malformed payloads, and the
//! ground-truth labels that say which of them are faults.

use gridwatch_contracts::model::reason;
use gridwatch_contracts::{AnomalyType, SensorReading};
use serde::{Deserialize, Serialize};

/// One simulated event, in the order a source would publish it.
#[derive(Debug, Clone, PartialEq)]
pub enum SimEvent {
    /// A reading, with its label when a fault shaped it.
    Reading(SensorReading, Option<Label>),
    /// Bytes that are not a valid reading, for dead-letter testing. They
    /// stand in for the reading the meter would have sent.
    Malformed(Vec<u8>, Label),
}

impl SimEvent {
    /// The ground truth for this event, if it is a fault.
    pub fn label(&self) -> Option<&Label> {
        match self {
            Self::Reading(_, label) => label.as_ref(),
            Self::Malformed(_, label) => Some(label),
        }
    }

    pub fn reading(&self) -> Option<&SensorReading> {
        match self {
            Self::Reading(reading, _) => Some(reading),
            Self::Malformed(..) => None,
        }
    }
}

/// The ground truth for one injected fault at one reading, so detection can
/// be scored for precision and recall (see [`score`](mod@crate::score)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub meter_id: String,
    /// Event time of the reading (or of the reading a malformed payload
    /// replaced), epoch ms.
    pub timestamp: i64,
    pub kind: FaultKind,
    pub expected: Expected,
}

/// The faults the simulator injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// One meter's voltage well above its baseline for 1 to a few readings.
    Surge,
    /// One meter's voltage well below its baseline for 1 to a few readings.
    Sag,
    /// Every meter of a feeder sags at once (a motor start, a fault next door).
    FeederSag,
    /// Status FAILURE at 0 V for a while, then OK again.
    Failure,
    /// Status DEGRADED for a while; the values stay ordinary.
    Degraded,
    /// Status toggling between FAILURE and OK every few readings.
    Flapping,
    /// The same reading repeated: a frozen sensor or a stale cache.
    Stuck,
    /// Bytes that are not a valid reading.
    Malformed,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        Self::Surge,
        Self::Sag,
        Self::FeederSag,
        Self::Failure,
        Self::Degraded,
        Self::Flapping,
        Self::Stuck,
        Self::Malformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Surge => "surge",
            Self::Sag => "sag",
            Self::FeederSag => "feeder_sag",
            Self::Failure => "failure",
            Self::Degraded => "degraded",
            Self::Flapping => "flapping",
            Self::Stuck => "stuck",
            Self::Malformed => "malformed",
        }
    }

    /// The anomaly types this kind's labels expect. A detection of one of
    /// these types that matches no label counts against this kind's precision.
    pub fn expected_types(self) -> &'static [AnomalyType] {
        match self {
            Self::Surge => &[AnomalyType::VoltageSurge],
            Self::Sag | Self::FeederSag => &[AnomalyType::VoltageSag],
            Self::Failure | Self::Flapping => &[
                AnomalyType::EquipmentFailure,
                AnomalyType::EquipmentRecovered,
            ],
            Self::Degraded => &[AnomalyType::EquipmentDegraded],
            Self::Stuck | Self::Malformed => &[],
        }
    }

    /// Whether Gridwatch's detector is expected to flag this kind, so that
    /// recall is computed over these kinds only.
    pub fn detectable(self) -> bool {
        !self.expected_types().is_empty()
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What Gridwatch should do with a labelled event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expected {
    /// The detector should raise this anomaly for the reading.
    Anomaly(AnomalyType),
    /// validate should dead-letter the payload, for the reason the
    /// malformation gives.
    DeadLetter(Malformation),
    /// Nothing in Gridwatch is expected to notice: the z-score rule cannot
    /// see a stuck value (its readings sit at the baseline, and once they
    /// fill the window its variance is zero, which is never scored).
    Undetectable,
}

impl Expected {
    pub fn anomaly(self) -> Option<AnomalyType> {
        match self {
            Self::Anomaly(kind) => Some(kind),
            _ => None,
        }
    }
}

/// The ways a payload is broken, each with the dead-letter reason validate
/// gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Malformation {
    /// A JSON reading cut off mid-way (a dropped connection).
    TruncatedJson,
    /// Bytes that are neither JSON nor Avro (line noise, a wrong port).
    Binary,
    /// An Avro frame with the magic byte but too short to hold a schema id.
    TruncatedFrame,
    /// Voltage sent as a string.
    WrongType,
    /// The temperature field is missing.
    MissingField,
    /// Status in lower case, which the enum does not accept.
    BadStatus,
    /// Voltage in decivolts: ten times too large to be plausible.
    OutOfRange,
    /// An empty meter id.
    EmptyMeterId,
    /// A timestamp that is neither epoch ms nor RFC 3339.
    BadTimestamp,
}

impl Malformation {
    pub const ALL: [Malformation; 9] = [
        Self::TruncatedJson,
        Self::Binary,
        Self::TruncatedFrame,
        Self::WrongType,
        Self::MissingField,
        Self::BadStatus,
        Self::OutOfRange,
        Self::EmptyMeterId,
        Self::BadTimestamp,
    ];

    /// The dead-letter reason code validate gives this payload.
    pub fn reason(self) -> &'static str {
        match self {
            Self::TruncatedJson | Self::Binary | Self::TruncatedFrame => reason::UNPARSEABLE,
            Self::WrongType | Self::MissingField | Self::BadStatus => reason::SCHEMA_MISMATCH,
            Self::OutOfRange => reason::OUT_OF_RANGE,
            Self::EmptyMeterId => reason::INVALID_METER_ID,
            Self::BadTimestamp => reason::TIMESTAMP_OUT_OF_RANGE,
        }
    }

    /// The broken payload for what would have been `reading`.
    pub fn payload(self, reading: &SensorReading, noise: u64) -> Vec<u8> {
        let SensorReading {
            meter_id,
            timestamp,
            voltage,
            current,
            temperature,
            status,
        } = reading;
        let status = status.as_str();
        let full = || {
            format!(
                r#"{{"meter_id":"{meter_id}","timestamp":{timestamp},"voltage":{voltage},"current":{current},"temperature":{temperature},"status":"{status}"}}"#
            )
        };
        match self {
            Self::TruncatedJson => {
                let mut bytes = full().into_bytes();
                // Cut somewhere after the opening brace and before the end.
                let cut = 1 + (noise as usize) % (bytes.len() - 2);
                bytes.truncate(cut);
                bytes
            }
            Self::Binary => {
                // 0xFF never starts JSON, Avro framing or whitespace.
                let mut bytes = vec![0xFF];
                bytes.extend_from_slice(&noise.to_le_bytes());
                bytes.extend_from_slice(&timestamp.to_le_bytes());
                bytes
            }
            Self::TruncatedFrame => vec![0x00, 0x00, (noise & 0xFF) as u8],
            Self::WrongType => format!(
                r#"{{"meter_id":"{meter_id}","timestamp":{timestamp},"voltage":"{voltage}","current":{current},"temperature":{temperature},"status":"{status}"}}"#
            )
            .into_bytes(),
            Self::MissingField => format!(
                r#"{{"meter_id":"{meter_id}","timestamp":{timestamp},"voltage":{voltage},"current":{current},"status":"{status}"}}"#
            )
            .into_bytes(),
            Self::BadStatus => format!(
                r#"{{"meter_id":"{meter_id}","timestamp":{timestamp},"voltage":{voltage},"current":{current},"temperature":{temperature},"status":"{}"}}"#,
                status.to_ascii_lowercase()
            )
            .into_bytes(),
            Self::OutOfRange => format!(
                r#"{{"meter_id":"{meter_id}","timestamp":{timestamp},"voltage":{},"current":{current},"temperature":{temperature},"status":"{status}"}}"#,
                // Above validate's 1000 V ceiling whatever the nominal voltage.
                (voltage * 10.0).max(1500.0)
            )
            .into_bytes(),
            Self::EmptyMeterId => format!(
                r#"{{"meter_id":"","timestamp":{timestamp},"voltage":{voltage},"current":{current},"temperature":{temperature},"status":"{status}"}}"#
            )
            .into_bytes(),
            Self::BadTimestamp => format!(
                r#"{{"meter_id":"{meter_id}","timestamp":"yesterday","voltage":{voltage},"current":{current},"temperature":{temperature},"status":"{status}"}}"#
            )
            .into_bytes(),
        }
    }
}
