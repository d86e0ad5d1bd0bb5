//! validate's parameters: what `init` receives, with defaults and checks.

use std::collections::HashMap;
use std::time::Duration;

use gridwatch_contracts::ConfigError;
use gridwatch_contracts::codec::{WriterSchema, parse_schema};
use gridwatch_contracts::framing::IdWidth;
use gridwatch_contracts::json::{format_rfc3339_millis, parse_rfc3339_millis};

/// An inclusive range of plausible values for one field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

impl Range {
    pub fn contains(self, x: f64) -> bool {
        self.min <= x && x <= self.max
    }
}

/// Everything validate checks against. Built once in `init`.
#[derive(Debug)]
pub struct ValidateConfig {
    /// Writer schemas by registry id, for framed Avro.
    pub schemas: HashMap<u64, WriterSchema>,
    /// The ids among `schemas` whose writer schema is SensorReading v1
    /// itself: their datums take the hand-written decoder
    /// (`gridwatch_contracts::fast`), the rest the schema-resolving one.
    /// A few ids at most, so a list: searching it is cheaper than hashing.
    pub v1_ids: Vec<u64>,
    pub id_width: IdWidth,
    /// Earliest accepted event time, epoch ms.
    pub earliest_ms: i64,
    /// How far past "now" an event time may be, ms.
    pub max_future_ms: i64,
    pub voltage: Range,
    pub current: Range,
    pub temperature: Range,
    pub max_meter_id_len: usize,
}

/// 2000-01-01T00:00:00Z.
pub const DEFAULT_EARLIEST_MS: i64 = 946_684_800_000;

impl Default for ValidateConfig {
    fn default() -> Self {
        Self {
            schemas: HashMap::new(),
            v1_ids: Vec::new(),
            id_width: IdWidth::ContentId4,
            earliest_ms: DEFAULT_EARLIEST_MS,
            max_future_ms: 86_400_000,
            voltage: Range {
                min: 0.0,
                max: 1000.0,
            },
            current: Range {
                min: -1000.0,
                max: 1000.0,
            },
            temperature: Range {
                min: -60.0,
                max: 150.0,
            },
            max_meter_id_len: 128,
        }
    }
}

impl ValidateConfig {
    /// Builds the config from SmartModule params, defaults for what is absent.
    pub fn from_params<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, ConfigError> {
        let mut c = Self::default();
        if let Some(text) = get("schemas") {
            (c.schemas, c.v1_ids) = parse_schema_map(text)?;
        }
        if let Some(v) = get("id_width") {
            c.id_width = match v.trim() {
                "content-id-4" => IdWidth::ContentId4,
                "global-id-8" => IdWidth::GlobalId8,
                _ => {
                    return Err(ConfigError::new(
                        "id_width",
                        v,
                        "content-id-4 or global-id-8",
                    ));
                }
            };
        }
        if let Some(v) = get("earliest") {
            c.earliest_ms = parse_rfc3339_millis(v.trim()).ok_or_else(|| {
                ConfigError::new(
                    "earliest",
                    v,
                    "an RFC 3339 time such as 2000-01-01T00:00:00Z",
                )
            })?;
        }
        if let Some(v) = get("max_future") {
            let d = humantime::parse_duration(v.trim())
                .map_err(|_| ConfigError::new("max_future", v, "a duration such as 1h or 1d"))?;
            c.max_future_ms = millis(d);
        }
        for (field, range) in [
            ("voltage", &mut c.voltage),
            ("current", &mut c.current),
            ("temperature", &mut c.temperature),
        ] {
            for (suffix, bound) in [("min", &mut range.min), ("max", &mut range.max)] {
                let key = format!("{field}_{suffix}");
                if let Some(v) = get(&key) {
                    *bound = v
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite())
                        .ok_or_else(|| ConfigError::new(&key, v, "a finite number"))?;
                }
            }
            if range.min > range.max {
                return Err(ConfigError::new(
                    format!("{field}_min"),
                    range.min,
                    format!("a number no greater than {field}_max ({})", range.max),
                ));
            }
        }
        if let Some(v) = get("max_meter_id_len") {
            c.max_meter_id_len = v
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=65_536).contains(n))
                .ok_or_else(|| {
                    ConfigError::new("max_meter_id_len", v, "a whole number from 1 to 65536")
                })?;
        }
        Ok(c)
    }

    /// The config as SmartModule params, the inverse of `from_params`, for
    /// whoever builds the chain. `schemas` is given separately.
    pub fn to_params(&self) -> Vec<(String, String)> {
        let mut p = vec![
            (
                "id_width".to_string(),
                match self.id_width {
                    IdWidth::ContentId4 => "content-id-4",
                    IdWidth::GlobalId8 => "global-id-8",
                }
                .to_string(),
            ),
            ("earliest".into(), format_rfc3339_millis(self.earliest_ms)),
            ("max_future".into(), format!("{}ms", self.max_future_ms)),
            ("max_meter_id_len".into(), self.max_meter_id_len.to_string()),
        ];
        for (field, range) in [
            ("voltage", self.voltage),
            ("current", self.current),
            ("temperature", self.temperature),
        ] {
            p.push((format!("{field}_min"), range.min.to_string()));
            p.push((format!("{field}_max"), range.max.to_string()));
        }
        p
    }
}

/// Parses `{"<id>": "<schema text>" | <schema json>, ...}`.
fn parse_schema_map(text: &str) -> Result<(HashMap<u64, WriterSchema>, Vec<u64>), ConfigError> {
    let allowed = "a JSON object mapping schema ids to Avro schemas";
    let short = |t: &str| t.chars().take(60).collect::<String>();
    let map: HashMap<String, serde_json::Value> = serde_json::from_str(text)
        .map_err(|_| ConfigError::new("schemas", short(text), allowed))?;
    let v1: Option<serde_json::Value> =
        serde_json::from_str(gridwatch_contracts::schema::SENSOR_READING).ok();
    let mut v1_ids = Vec::new();
    let schemas = map
        .into_iter()
        .map(|(id, schema)| {
            let id_num: u64 = id.parse().map_err(|_| {
                ConfigError::new("schemas", &id, "schema ids that are whole numbers")
            })?;
            let text = match schema {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            let parsed = parse_schema(&text).map_err(|e| {
                ConfigError::new(
                    format!("schemas.{id}"),
                    short(&text),
                    format!("a valid Avro schema ({e})"),
                )
            })?;
            let value: Option<serde_json::Value> = serde_json::from_str(&text).ok();
            if value.is_some() && value == v1 {
                v1_ids.push(id_num);
            }
            Ok((id_num, parsed))
        })
        .collect::<Result<_, ConfigError>>()?;
    Ok((schemas, v1_ids))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
