//! The `gridwatch` configuration: one YAML file, every key with a default.
//!
//! Layers, later wins: `config/default.yaml` (embedded, and the reference
//! for every key), the user's file, `GRIDWATCH_<SECTION>__<KEY>` environment
//! variables, then command-line flags. After merging, [`AppConfig::validate`]
//! checks every value, so a bad one stops start-up with its key, its value
//! and what is allowed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Yaml};
use gridwatch_contracts::ConfigError;
use gridwatch_detector::DetectorConfig;
use gridwatch_registry::RegistryConfig;
use gridwatch_registry::config::Secret;
use gridwatch_validator::ValidateConfig;
use serde::{Deserialize, Serialize};

/// The embedded defaults, which double as the reference documentation.
pub const DEFAULT_YAML: &str = include_str!("../config/default.yaml");

/// Everything `gridwatch run` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Where topics, checkpoints and the embedded registry live.
    pub data_dir: PathBuf,
    /// The detection rule.
    pub detector: DetectorConfig,
    /// Plausibility checks of the validate module.
    pub validate: ValidateSection,
    /// The HTTP listener.
    pub http: HttpConfig,
    /// The built-in simulator.
    pub simulator: gridwatch_simulator::SimulatorConfig,
    /// The stream runtime.
    pub runtime: RuntimeSection,
    /// The schema registry.
    pub registry: RegistryConfig,
    /// Who may use the admin API.
    pub admin: AdminSection,
    /// Where results go besides the pipeline's own topics.
    pub sinks: crate::sinks::SinksSection,
    /// Where readings come from besides HTTP and the simulator (MQTT, Kafka).
    pub sources: crate::sources::SourcesSection,
    /// Where topics live: `embedded` or `fluvio`.
    pub backend: crate::backend::BackendKind,
    /// The Fluvio cluster, with `backend: fluvio`.
    pub fluvio: gridwatch_backend_fluvio::FluvioConfig,
    /// How `gridwatch` logs.
    pub log: LogSection,
}

/// Log output. `RUST_LOG`, when set, wins over `level`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `text` (sentences with their fields) or `json` (one object a line,
    /// for log shippers; dead letters carry their metadata as fields).
    pub format: LogFormat,
    /// A `tracing` filter: a level (`info`) or directives (`info,gridwatch_runtime=debug`).
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Who may use the admin API (module swap, DLQ replay, topic admin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Bearer token the admin API requires. Required whenever `http.listen`
    /// is not a loopback address.
    pub token: Option<Secret>,
    /// File holding the token (first line), for Kubernetes secrets.
    pub token_file: Option<PathBuf>,
}

impl AdminSection {
    /// The token, read from `token_file` if that is set.
    pub fn resolve(&self) -> Result<Option<Secret>, ConfigError> {
        resolve_secret("admin", &self.token, &self.token_file)
    }
}

/// A secret given inline or by file; the file's first line wins.
pub fn resolve_secret(
    section: &str,
    inline: &Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<Option<Secret>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(f)) => Err(ConfigError::new(
            format!("{section}.token_file"),
            f.display(),
            format!("either {section}.token or {section}.token_file, not both"),
        )),
        (Some(t), None) if t.expose().is_empty() => Err(ConfigError::new(
            format!("{section}.token"),
            "\"\"",
            "a non-empty token",
        )),
        (Some(t), None) => Ok(Some(t.clone())),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f).map_err(|e| {
                ConfigError::new(
                    format!("{section}.token_file"),
                    f.display(),
                    format!("a readable file ({e})"),
                )
            })?;
            let token = text.lines().next().unwrap_or("").trim().to_owned();
            if token.is_empty() {
                return Err(ConfigError::new(
                    format!("{section}.token_file"),
                    f.display(),
                    "a file whose first line is the token",
                ));
            }
            Ok(Some(Secret::new(token)))
        }
        (None, None) => Ok(None),
    }
}

/// validate's checks, as YAML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateSection {
    /// Earliest accepted reading time, RFC 3339.
    pub earliest: String,
    /// How far past the wall clock a timestamp may be.
    #[serde(with = "humantime_serde")]
    pub max_future: Duration,
    pub voltage_min: f64,
    pub voltage_max: f64,
    pub current_min: f64,
    pub current_max: f64,
    pub temperature_min: f64,
    pub temperature_max: f64,
    /// Longest meter_id in bytes.
    pub max_meter_id_len: usize,
}

impl ValidateSection {
    /// The module params this section stands for.
    pub fn to_params(&self) -> Vec<(String, String)> {
        vec![
            ("earliest".into(), self.earliest.clone()),
            (
                "max_future".into(),
                format!("{}ms", self.max_future.as_millis()),
            ),
            ("voltage_min".into(), self.voltage_min.to_string()),
            ("voltage_max".into(), self.voltage_max.to_string()),
            ("current_min".into(), self.current_min.to_string()),
            ("current_max".into(), self.current_max.to_string()),
            ("temperature_min".into(), self.temperature_min.to_string()),
            ("temperature_max".into(), self.temperature_max.to_string()),
            ("max_meter_id_len".into(), self.max_meter_id_len.to_string()),
        ]
    }
}

/// The HTTP listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Ingest requests per second across all clients (429 above); 0 is no limit.
    pub ingest_rate_limit: f64,
    /// Requests allowed in a burst above the rate.
    pub ingest_burst: u32,
    /// Bearer token `POST /api/v1/readings` requires; unset is open.
    pub ingest_token: Option<Secret>,
    /// File holding the ingest token (first line).
    pub ingest_token_file: Option<PathBuf>,
}

/// The stream runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// Partitions of every topic.
    pub partitions: u32,
    /// Checkpoint every this many readings...
    pub checkpoint_events: u64,
    /// ...or this often.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Least time between detector state snapshots; 0s turns them off.
    #[serde(with = "humantime_serde")]
    pub snapshot_interval: Duration,
    /// Most readings per processor batch.
    pub batch_max: usize,
    /// Unprocessed readings a partition may hold before producers block.
    pub max_lag: u64,
    /// How long a blocked producer waits before 503.
    #[serde(with = "humantime_serde")]
    pub backpressure_timeout: Duration,
    /// Status line interval; 0s turns it off.
    #[serde(with = "humantime_serde")]
    pub status_interval: Duration,
    /// Where the SmartModules are; empty searches the usual places.
    pub modules_dir: PathBuf,
    /// Modules dropped here are hot-swapped in; empty is
    /// `<data_dir>/modules/incoming`.
    pub modules_watch_dir: PathBuf,
}

impl RuntimeSection {
    /// The watched directory, resolved against the data directory.
    pub fn modules_watch_dir(&self, data_dir: &Path) -> PathBuf {
        if self.modules_watch_dir.as_os_str().is_empty() {
            data_dir.join("modules").join("incoming")
        } else {
            self.modules_watch_dir.clone()
        }
    }
}

/// A configuration that cannot be used, said so a user can fix it.
#[derive(Debug, thiserror::Error)]
pub enum AppConfigError {
    #[error("configuration: {0}")]
    Parse(String),
    #[error("configuration: {0}")]
    Invalid(#[from] ConfigError),
    #[error("configuration: {0}")]
    Registry(#[from] gridwatch_registry::ConfigError),
}

impl AppConfig {
    /// Merges the layers and validates the result.
    pub fn load(file: Option<&Path>, env: &[(String, String)]) -> Result<Self, AppConfigError> {
        let mut figment = Figment::from(Yaml::string(DEFAULT_YAML));
        if let Some(file) = file {
            if !file.exists() {
                return Err(AppConfigError::Parse(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Yaml::file_exact(file));
        }
        // The environment is passed in, not read here, so tests are hermetic.
        figment = figment.merge(env_from(env));
        let config: AppConfig = figment
            .extract()
            .map_err(|e| AppConfigError::Parse(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every section; the first problem is reported with its key.
    pub fn validate(&self) -> Result<(), AppConfigError> {
        self.detector.validate("detector.")?;
        if self.backend == crate::backend::BackendKind::Fluvio {
            self.fluvio.validate()?;
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(ConfigError::new(
                "log.level",
                &self.log.level,
                "a level (error, warn, info, debug, trace) or tracing directives such as info,gridwatch_runtime=debug",
            )
            .into());
        }
        let params = self.validate.to_params();
        ValidateConfig::from_params(|k| {
            params.iter().find(|(p, _)| p == k).map(|(_, v)| v.as_str())
        })
        .map_err(|e| ConfigError::new(format!("validate.{}", e.key), e.value, e.allowed))?;
        let r = &self.runtime;
        let range = |key: &str, value: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::new(
                    key,
                    value,
                    format!("a whole number from {lo} to {hi}"),
                ))
            }
        };
        range("runtime.partitions", r.partitions.into(), 1, 1024)?;
        range(
            "runtime.checkpoint_events",
            r.checkpoint_events,
            1,
            100_000_000,
        )?;
        range("runtime.batch_max", r.batch_max as u64, 1, 1_000_000)?;
        range("runtime.max_lag", r.max_lag, 1, u64::MAX / 2)?;
        self.simulator.validate()?;
        if r.checkpoint_interval < Duration::from_millis(100) {
            return Err(ConfigError::new(
                "runtime.checkpoint_interval",
                humantime::format_duration(r.checkpoint_interval),
                "a duration of at least 100ms",
            )
            .into());
        }
        if self.http.max_body_bytes < 1024 {
            return Err(ConfigError::new(
                "http.max_body_bytes",
                self.http.max_body_bytes,
                "at least 1024",
            )
            .into());
        }
        if !(0.0..=10_000_000.0).contains(&self.http.ingest_rate_limit) {
            return Err(ConfigError::new(
                "http.ingest_rate_limit",
                self.http.ingest_rate_limit,
                "requests per second from 0 (no limit) to 10000000",
            )
            .into());
        }
        range(
            "http.ingest_burst",
            self.http.ingest_burst.into(),
            1,
            1_000_000,
        )?;
        resolve_secret(
            "http.ingest",
            &self.http.ingest_token,
            &self.http.ingest_token_file,
        )
        .map_err(|mut e| {
            e.key = e.key.replace("http.ingest.", "http.ingest_");
            e
        })?;
        let admin = self.admin.resolve()?;
        if admin.is_none() && !self.http.listen.ip().is_loopback() {
            return Err(ConfigError::new(
                "admin.token",
                "(unset)",
                format!(
                    "a token (admin.token or admin.token_file) whenever http.listen is not a loopback address, and it is {}; without one anyone who reaches it could swap modules or replay the DLQ",
                    self.http.listen
                ),
            )
            .into());
        }
        self.sinks.validate()?;
        self.sources.validate()?;
        self.registry.validate()?;
        Ok(())
    }
}

/// Environment variables as a figment provider, from an explicit list.
/// Top-level keys of the reference config whose values are not sections.
fn top_level_scalars() -> Vec<String> {
    serde_yaml::from_str::<serde_yaml::Mapping>(DEFAULT_YAML)
        .map(|m| {
            m.into_iter()
                .filter(|(_, v)| !v.is_mapping())
                .filter_map(|(k, _)| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn env_from(vars: &[(String, String)]) -> figment::providers::Serialized<serde_json::Value> {
    let mut root = serde_json::Map::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("GRIDWATCH_") else {
            continue;
        };
        if rest.is_empty() || rest == "URL" || rest == "CONFIG" {
            continue;
        }
        // A variable without `__` is a config key only if it names a
        // top-level scalar (GRIDWATCH_DATA_DIR). Others, such as the
        // GRIDWATCH_PORT and GRIDWATCH_SERVICE_HOST Kubernetes injects for a
        // Service named `gridwatch`, or GRIDWATCH_LOG_FORMAT, are not ours to
        // reject. With `__` it is a section path, and an unknown one fails.
        if !rest.contains("__") && !top_level_scalars().contains(&rest.to_ascii_lowercase()) {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        let mut node = &mut root;
        for (i, part) in path.iter().enumerate() {
            if i + 1 == path.len() {
                node.insert(part.clone(), parse_env_value(value));
            } else {
                let next = node
                    .entry(part.clone())
                    .or_insert_with(|| serde_json::Value::Object(Default::default()));
                if !next.is_object() {
                    *next = serde_json::Value::Object(Default::default());
                }
                let serde_json::Value::Object(map) = next else {
                    break;
                };
                node = map;
            }
        }
    }
    figment::providers::Serialized::defaults(serde_json::Value::Object(root))
}

/// Env values are YAML scalars or flow collections: `2.5`, `true`, `[voltage, current]`.
fn parse_env_value(value: &str) -> serde_json::Value {
    serde_yaml::from_str::<serde_json::Value>(value)
        .ok()
        .filter(|v| !v.is_null() || value.trim() == "null")
        .unwrap_or_else(|| serde_json::Value::String(value.to_string()))
}

/// figment's error, reworded to lead with the key.
fn describe(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{}{source}", e.kind)
            } else {
                format!("{key}: {}{source}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reference_file_documents_exactly_the_config_structs() {
        // Every key in the reference parses (deny_unknown_fields), and every
        // field of the structs appears in it with the value the code uses.
        let from_file: serde_json::Value = serde_yaml::from_str(DEFAULT_YAML).unwrap();
        let config = AppConfig::load(None, &[]).unwrap();
        let from_structs = serde_json::to_value(&config).unwrap();
        let keys = |v: &serde_json::Value| {
            let mut out = Vec::new();
            collect_keys(v, "", &mut out);
            out.sort();
            out
        };
        assert_eq!(keys(&from_file), keys(&from_structs));
        assert_eq!(
            config.detector,
            DetectorConfig::default(),
            "detector defaults match the docs"
        );
        assert_eq!(
            config.registry,
            RegistryConfig::default(),
            "registry defaults match the docs"
        );
    }

    fn collect_keys(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        if let serde_json::Value::Object(map) = v {
            for (k, v) in map {
                let key = format!("{prefix}{k}");
                // Tagged or optional sub-objects (auth) are documented as null.
                if v.is_object() && key != "registry.auth" {
                    collect_keys(v, &format!("{key}."), out);
                } else {
                    out.push(key);
                }
            }
        }
    }

    #[test]
    fn env_overrides_nested_keys() {
        let c = AppConfig::load(
            None,
            &env(&[
                ("GRIDWATCH_DATA_DIR", "/tmp/gw"),
                ("GRIDWATCH_DETECTOR__THRESHOLD", "3.5"),
                ("GRIDWATCH_DETECTOR__FIELDS", "[voltage, current]"),
                ("GRIDWATCH_SIMULATOR__ENABLED", "false"),
                ("GRIDWATCH_HTTP__LISTEN", "127.0.0.1:0"),
                ("OTHER", "x"),
                // Kubernetes service links and logging are not config keys.
                ("GRIDWATCH_PORT", "tcp://10.0.0.1:8080"),
                ("GRIDWATCH_SERVICE_HOST", "10.0.0.1"),
                ("GRIDWATCH_LOG_FORMAT", "json"),
            ]),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/gw"));
        assert_eq!(c.detector.threshold, 3.5);
        assert_eq!(c.detector.fields.len(), 2);
        assert!(!c.simulator.enabled);
        assert_eq!(c.http.listen.port(), 0);
    }

    #[test]
    fn unknown_section_paths_in_the_environment_fail() {
        let err = AppConfig::load(None, &env(&[("GRIDWATCH_DETECTR__THRESHOLD", "3")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("detectr"), "{err}");
    }

    #[test]
    fn sinks_are_off_but_the_lake_is_on_by_default_and_env_turns_them_on() {
        let c = AppConfig::load(None, &[]).unwrap();
        assert!(c.sinks.kafka.is_none() && c.sinks.influxdb.is_none() && c.sinks.webhook.is_none());
        assert!(c.sinks.lake.is_some());
        let c = AppConfig::load(
            None,
            &env(&[
                ("GRIDWATCH_SINKS__INFLUXDB__URL", "http://127.0.0.1:8086"),
                ("GRIDWATCH_SINKS__INFLUXDB__API", "v1"),
                ("GRIDWATCH_SINKS__INFLUXDB__DATABASE", "grid"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.sinks.influxdb.unwrap().url.as_str(),
            "http://127.0.0.1:8086/"
        );
    }

    #[test]
    fn a_public_listener_needs_an_admin_token() {
        let err = AppConfig::load(None, &env(&[("GRIDWATCH_HTTP__LISTEN", "0.0.0.0:8080")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("admin.token"), "{err}");
        assert!(err.contains("0.0.0.0:8080"), "{err}");
        AppConfig::load(
            None,
            &env(&[
                ("GRIDWATCH_HTTP__LISTEN", "0.0.0.0:8080"),
                ("GRIDWATCH_ADMIN__TOKEN", "s3cret"),
            ]),
        )
        .unwrap();
    }

    #[test]
    fn bad_values_name_the_key_the_value_and_the_range() {
        let err = AppConfig::load(None, &env(&[("GRIDWATCH_DETECTOR__THRESHOLD", "5")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "configuration: detector.threshold = \"5\" is not allowed: a number of standard deviations from 1.5 to 4.0"
        );
        let err = AppConfig::load(None, &env(&[("GRIDWATCH_RUNTIME__PARTITIONS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("runtime.partitions = \"0\""), "{err}");
        let err = AppConfig::load(None, &env(&[("GRIDWATCH_VALIDATE__VOLTAGE_MAX", "-5")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("validate.voltage_min"), "{err}");
        let err = AppConfig::load(None, &env(&[("GRIDWATCH_DETECTOR__WINDOW", "soon")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("detector.window"), "{err}");
    }

    #[test]
    fn unknown_keys_in_a_file_are_refused_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "detector:\n  treshold: 3\n").unwrap();
        let err = AppConfig::load(Some(&file), &[]).unwrap_err().to_string();
        assert!(err.contains("treshold"), "{err}");
        assert!(err.contains("detector"), "{err}");
        let err = AppConfig::load(Some(&dir.path().join("missing.yaml")), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }
}
