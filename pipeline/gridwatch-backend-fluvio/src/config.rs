//! The `fluvio:` configuration section.
//!
//! Every key has a default in a named function, unknown keys are refused
//! (`deny_unknown_fields`), and [`FluvioConfig::validate`] names the key,
//! the value and what is allowed, so a wrong value stops start-up with a
//! message a user can act on.
//!
//! Where the cluster is: `profile` (a profile of `~/.fluvio/config`, as the
//! fluvio CLI uses) or `endpoint` (`host:port` of the SC), at most one of the
//! two. With neither, the current profile of `~/.fluvio/config` is used,
//! exactly as `fluvio` with no flags would. `tls` applies to `endpoint` only:
//! a profile carries its own TLS settings.
//!
//! Scale-out: Fluvio has no consumer groups, so `instances` copies of
//! `gridwatch run` split the partitions among themselves. Instance `i` of `N`
//! owns partition `p` when `p % N == i`. On Kubernetes a StatefulSet names
//! its pods `gridwatch-0`, `gridwatch-1`, …, so when `instance` is unset it
//! is read from the trailing `-N` of `HOSTNAME`.

use std::path::PathBuf;
use std::time::Duration;

use gridwatch_contracts::ConfigError;
use serde::{Deserialize, Serialize};

/// Where the Fluvio cluster is and how Gridwatch uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FluvioConfig {
    /// A profile of `~/.fluvio/config` (e.g. `local`). Mutually exclusive
    /// with `endpoint`; with neither, the config file's current profile.
    #[serde(default)]
    pub profile: Option<String>,
    /// The SC's public address, `host:port` (a local cluster listens on
    /// `127.0.0.1:9003`). Mutually exclusive with `profile`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// TLS towards `endpoint` (and the SPUs it names). Off by default.
    #[serde(default)]
    pub tls: TlsOptions,
    /// Partitions of the topics this backend creates. Unset: the count the
    /// runtime asks for (`runtime.partitions`). Existing topics keep theirs.
    #[serde(default)]
    pub partitions: Option<u32>,
    /// Replicas of each partition for topics this backend creates. Default 1
    /// (a local cluster has one SPU); at most the number of SPUs.
    #[serde(default = "default_replication")]
    pub replication: u32,
    /// How long the producer waits for more records before it sends a
    /// partial batch. Larger batches cost latency; default 5ms.
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub linger: Duration,
    /// Largest batch the producer sends, in bytes (uncompressed). Default
    /// 512 KiB; a batch is sent as soon as it is full, whatever `linger` says.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// This instance's number, 0-based. Unset: the StatefulSet ordinal at the
    /// end of `HOSTNAME` (`gridwatch-2` is instance 2), or 0 when
    /// `instances` is 1.
    #[serde(default)]
    pub instance: Option<u32>,
    /// How many instances split the partitions. Default 1 (this one owns all).
    #[serde(default = "default_instances")]
    pub instances: u32,
    /// Where the validate → detect chain runs.
    #[serde(default)]
    pub chain: ChainOptions,
}

/// TLS settings for `endpoint`.
///
/// `enabled` with no certificates is anonymous TLS (encrypted, no identity
/// checks; the server must allow it). With certificates, all of `ca_cert`,
/// `client_cert`, `client_key` and `domain` are needed: the cluster's
/// server certificates are checked against `ca_cert` and `domain`, and the
/// client proves itself with its certificate (Fluvio's TLS is mutual).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// Use TLS. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// PEM file of the certificate authority that signed the cluster's certificates.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// PEM file of this client's certificate.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM file of this client's private key.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// The domain the cluster's certificates are issued for; SPU
    /// certificates are checked as `<spu-name>.<domain>`, as the fluvio client does.
    #[serde(default)]
    pub domain: Option<String>,
}

/// Where the validate → detect chain runs with this backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainMode {
    /// Inside the SPU, as a consumer SmartModule chain (the design card's shape).
    #[default]
    Server,
    /// In-process, on Gridwatch's own WASM host, as with the embedded backend.
    Client,
}

/// The SmartModule chain with the Fluvio backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainOptions {
    /// `server` (default): the chain runs in the SPU; `client`: in-process.
    #[serde(default)]
    pub mode: ChainMode,
    /// Name the validate module is registered under (`gridwatch modules publish`).
    #[serde(default = "default_validate_name")]
    pub validate: String,
    /// Name the detect module is registered under.
    #[serde(default = "default_detect_name")]
    pub detect: String,
    /// Records through one server-side chain before its stream is reopened.
    /// The SPU's engine never frees what a module hands back (about 170 bytes
    /// a record), so the chain must be replaced well before its 1 GB store
    /// limit. Default 2,000,000, allowed 1,000 to 5,000,000.
    #[serde(default = "default_reopen_after")]
    pub reopen_after: u64,
    /// At most this many records just before the resume offset warm detect
    /// through `look_back` when a server-side chain (re)opens (and only those
    /// appended within the detector window). Bounds what each (re)open
    /// reads: it should cover one detector window of the partition's
    /// readings. Default 1,000,000, allowed 0 to 50,000,000.
    #[serde(default = "default_look_back_records")]
    pub look_back_records: u64,
}

impl Default for ChainOptions {
    fn default() -> Self {
        Self {
            mode: ChainMode::default(),
            validate: default_validate_name(),
            detect: default_detect_name(),
            reopen_after: default_reopen_after(),
            look_back_records: default_look_back_records(),
        }
    }
}

fn default_replication() -> u32 {
    1
}
fn default_linger() -> Duration {
    Duration::from_millis(5)
}
fn default_batch_size() -> usize {
    512 * 1024
}
fn default_instances() -> u32 {
    1
}
fn default_validate_name() -> String {
    "gridwatch-validate".into()
}
fn default_detect_name() -> String {
    "gridwatch-detect".into()
}
fn default_look_back_records() -> u64 {
    1_000_000
}
/// The same budget the runtime's `SmartEngineChain` rebuilds at.
fn default_reopen_after() -> u64 {
    gridwatch_runtime::chain::DEFAULT_REBUILD_AFTER
}

impl Default for FluvioConfig {
    fn default() -> Self {
        Self {
            profile: None,
            endpoint: None,
            tls: TlsOptions::default(),
            partitions: None,
            replication: default_replication(),
            linger: default_linger(),
            batch_size: default_batch_size(),
            instance: None,
            instances: default_instances(),
            chain: ChainOptions::default(),
        }
    }
}

/// Largest batch the producer may build; the client's request limit is raised to match.
pub const MAX_BATCH_SIZE: usize = 8 * 1024 * 1024;
/// Longest linger accepted: more only hides a stuck producer.
pub const MAX_LINGER: Duration = Duration::from_secs(10);

impl FluvioConfig {
    /// A config pointing at one SC address with everything else default.
    pub fn with_endpoint(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: Some(endpoint.into()),
            ..Self::default()
        }
    }

    /// A config using a named profile of `~/.fluvio/config`.
    pub fn with_profile(profile: impl Into<String>) -> Self {
        Self {
            profile: Some(profile.into()),
            ..Self::default()
        }
    }

    /// Checks every key; the first problem is reported with its key
    /// (prefixed `fluvio.`), its value and what is allowed. Also resolves
    /// the instance number, so a pod without an ordinal fails here.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let (Some(profile), Some(_)) = (&self.profile, &self.endpoint) {
            return Err(ConfigError::new(
                "fluvio.profile",
                profile,
                "at most one of fluvio.profile and fluvio.endpoint (neither = the current profile of ~/.fluvio/config)",
            ));
        }
        if let Some(profile) = &self.profile
            && profile.trim().is_empty()
        {
            return Err(ConfigError::new(
                "fluvio.profile",
                profile,
                "the name of a profile in ~/.fluvio/config",
            ));
        }
        if let Some(endpoint) = &self.endpoint {
            validate_endpoint(endpoint)?;
        }
        self.validate_tls()?;
        if let Some(p) = self.partitions
            && !(1..=1024).contains(&p)
        {
            return Err(ConfigError::new(
                "fluvio.partitions",
                p,
                "a whole number from 1 to 1024, or unset for runtime.partitions",
            ));
        }
        if !(1..=16).contains(&self.replication) {
            return Err(ConfigError::new(
                "fluvio.replication",
                self.replication,
                "a whole number from 1 to 16 (at most the number of SPUs)",
            ));
        }
        if self.linger > MAX_LINGER {
            return Err(ConfigError::new(
                "fluvio.linger",
                humantime::format_duration(self.linger),
                "a duration from 0s to 10s",
            ));
        }
        if !(1024..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(ConfigError::new(
                "fluvio.batch_size",
                self.batch_size,
                format!("a number of bytes from 1024 to {MAX_BATCH_SIZE}"),
            ));
        }
        if !(1..=1024).contains(&self.instances) {
            return Err(ConfigError::new(
                "fluvio.instances",
                self.instances,
                "a whole number from 1 to 1024",
            ));
        }
        self.instance_index()?;
        for (key, name) in [
            ("fluvio.chain.validate", &self.chain.validate),
            ("fluvio.chain.detect", &self.chain.detect),
        ] {
            if !is_smartmodule_name(name) {
                return Err(ConfigError::new(
                    key,
                    name,
                    "a SmartModule name: lowercase letters, digits and '-', optionally group/name@version",
                ));
            }
        }
        if !(1_000..=5_000_000).contains(&self.chain.reopen_after) {
            return Err(ConfigError::new(
                "fluvio.chain.reopen_after",
                self.chain.reopen_after,
                "a number of records from 1000 to 5000000 (the SPU's engine leaks ~170 bytes a record against a 1 GB limit)",
            ));
        }
        if self.chain.look_back_records > 50_000_000 {
            return Err(ConfigError::new(
                "fluvio.chain.look_back_records",
                self.chain.look_back_records,
                "a number of records from 0 to 50000000",
            ));
        }
        Ok(())
    }

    fn validate_tls(&self) -> Result<(), ConfigError> {
        let t = &self.tls;
        let any_file = t.ca_cert.is_some() || t.client_cert.is_some() || t.client_key.is_some();
        if !t.enabled {
            if any_file || t.domain.is_some() {
                return Err(ConfigError::new(
                    "fluvio.tls.enabled",
                    "false",
                    "true when any of fluvio.tls.ca_cert, client_cert, client_key or domain is set",
                ));
            }
            return Ok(());
        }
        if self.endpoint.is_none() {
            return Err(ConfigError::new(
                "fluvio.tls.enabled",
                "true",
                "only with fluvio.endpoint; a profile carries its own TLS settings",
            ));
        }
        if any_file || t.domain.is_some() {
            for (key, value) in [
                ("fluvio.tls.ca_cert", &t.ca_cert),
                ("fluvio.tls.client_cert", &t.client_cert),
                ("fluvio.tls.client_key", &t.client_key),
            ] {
                match value {
                    None => {
                        return Err(ConfigError::new(
                            key,
                            "",
                            "a PEM file: verified TLS needs ca_cert, client_cert, client_key and domain",
                        ));
                    }
                    Some(path) if !path.is_file() => {
                        return Err(ConfigError::new(key, path.display(), "a readable PEM file"));
                    }
                    Some(_) => {}
                }
            }
            match &t.domain {
                Some(d) if !d.trim().is_empty() => {}
                other => {
                    return Err(ConfigError::new(
                        "fluvio.tls.domain",
                        other.as_deref().unwrap_or(""),
                        "the domain the cluster's certificates are issued for",
                    ));
                }
            }
        }
        Ok(())
    }

    /// This instance's number: `instance` when set, else the StatefulSet
    /// ordinal in `HOSTNAME`, else 0 when there is one instance.
    pub fn instance_index(&self) -> Result<u32, ConfigError> {
        let hostname = std::env::var("HOSTNAME").ok();
        self.instance_index_with(hostname.as_deref())
    }

    /// [`Self::instance_index`] with the host name given (tests, and callers
    /// that know the pod name another way).
    pub fn instance_index_with(&self, hostname: Option<&str>) -> Result<u32, ConfigError> {
        let index = match self.instance {
            Some(i) => i,
            None => match hostname.and_then(statefulset_ordinal) {
                Some(i) => i,
                None if self.instances == 1 => 0,
                None => {
                    return Err(ConfigError::new(
                        "fluvio.instance",
                        hostname.unwrap_or(""),
                        format!(
                            "set when fluvio.instances is {}, or run where HOSTNAME ends in a StatefulSet ordinal such as gridwatch-0",
                            self.instances
                        ),
                    ));
                }
            },
        };
        if index >= self.instances {
            return Err(ConfigError::new(
                "fluvio.instance",
                index,
                format!(
                    "a whole number from 0 to {} (fluvio.instances - 1){}",
                    self.instances.saturating_sub(1),
                    if self.instance.is_none() {
                        "; it came from HOSTNAME's ordinal"
                    } else {
                        ""
                    }
                ),
            ));
        }
        Ok(index)
    }

    /// The partitions of a `total`-partition topic this instance owns:
    /// `p` with `p % instances == instance`, in order. Call after
    /// [`Self::validate`]; an instance that cannot be resolved owns nothing,
    /// so a misconfigured pod never double-processes.
    pub fn owned_partitions(&self, total: u32) -> Vec<u32> {
        match self.instance_index() {
            Ok(i) => split_partitions(total, i, self.instances),
            Err(_) => Vec::new(),
        }
    }

    /// Partitions for a topic this backend creates, given what the runtime asked for.
    pub fn partitions_for(&self, requested: u32) -> u32 {
        self.partitions.unwrap_or(requested).max(1)
    }
}

/// Partitions `p < total` with `p % instances == instance`.
pub fn split_partitions(total: u32, instance: u32, instances: u32) -> Vec<u32> {
    let n = instances.max(1);
    (0..total).filter(|p| p % n == instance).collect()
}

/// The ordinal a StatefulSet gives its pods: the digits after the last `-`
/// of the host name (`gridwatch-12` → 12). Host names that carry a domain
/// (`gridwatch-1.gridwatch.ns.svc`) are cut at the first dot first.
pub fn statefulset_ordinal(hostname: &str) -> Option<u32> {
    let host = hostname.trim().split('.').next()?;
    let (name, digits) = host.rsplit_once('-')?;
    if name.is_empty() || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // A leading zero is not something a StatefulSet writes ("web-01").
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

fn validate_endpoint(endpoint: &str) -> Result<(), ConfigError> {
    let bad = || {
        ConfigError::new(
            "fluvio.endpoint",
            endpoint,
            "host:port of the SC, e.g. 127.0.0.1:9003",
        )
    };
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(bad()),
    }
}

/// A name `SmartModulePackageKey::from_qualified_name` accepts:
/// `name`, `group/name` or `group/name@version`.
fn is_smartmodule_name(name: &str) -> bool {
    let simple = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    let (group_name, version) = match name.split_once('@') {
        Some((gn, v)) => (gn, Some(v)),
        None => (name, None),
    };
    let name_ok = match group_name.split_once('/') {
        Some((g, n)) => simple(g) && simple(n),
        None => simple(group_name) && version.is_none(),
    };
    let version_ok = version.is_none_or(|v| {
        !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'+')
    });
    name_ok && version_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(c: &FluvioConfig) -> String {
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = FluvioConfig::default();
        c.validate().unwrap();
        assert_eq!(c.linger, Duration::from_millis(5));
        assert_eq!(c.batch_size, 512 * 1024);
        assert_eq!((c.replication, c.instances), (1, 1));
        assert_eq!(c.chain.mode, ChainMode::Server);
        assert_eq!(c.chain.reopen_after, 2_000_000);
    }

    #[test]
    fn yaml_keys_parse_and_unknown_keys_are_refused() {
        let c: FluvioConfig = serde_json::from_value(serde_json::json!({
            "endpoint": "127.0.0.1:9003",
            "linger": "20ms",
            "batch_size": 65536,
            "instances": 2,
            "instance": 1,
            "tls": {"enabled": false},
            "chain": {"mode": "client", "detect": "gridwatch/gridwatch-detect@0.2.0"}
        }))
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.linger, Duration::from_millis(20));
        assert_eq!(c.chain.mode, ChainMode::Client);
        let bad = serde_json::from_value::<FluvioConfig>(serde_json::json!({"endpoints": "x"}));
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("unknown field `endpoints`")
        );
        let bad = serde_json::from_value::<FluvioConfig>(
            serde_json::json!({"tls": {"enabled": true, "ca": "x"}}),
        );
        assert!(bad.unwrap_err().to_string().contains("unknown field `ca`"));
    }

    #[test]
    fn profile_and_endpoint_are_exclusive() {
        let c = FluvioConfig {
            profile: Some("local".into()),
            endpoint: Some("127.0.0.1:9003".into()),
            ..FluvioConfig::default()
        };
        assert_eq!(
            err(&c),
            "fluvio.profile = \"local\" is not allowed: at most one of fluvio.profile and fluvio.endpoint (neither = the current profile of ~/.fluvio/config)"
        );
        FluvioConfig::with_profile("local").validate().unwrap();
    }

    #[test]
    fn endpoint_must_be_host_and_port() {
        for bad in [
            "127.0.0.1",
            "127.0.0.1:",
            ":9003",
            "host:99999",
            "http://x:1",
        ] {
            let e = err(&FluvioConfig::with_endpoint(bad));
            assert!(e.starts_with("fluvio.endpoint = "), "{bad}: {e}");
            assert!(
                e.ends_with("host:port of the SC, e.g. 127.0.0.1:9003"),
                "{e}"
            );
        }
        for good in [
            "127.0.0.1:9003",
            "fluvio-sc-public.fluvio:9003",
            "[::1]:9003",
        ] {
            FluvioConfig::with_endpoint(good).validate().unwrap();
        }
    }

    #[test]
    fn ranges_name_key_value_and_allowed() {
        let c = FluvioConfig {
            batch_size: 10,
            ..FluvioConfig::default()
        };
        assert_eq!(
            err(&c),
            "fluvio.batch_size = \"10\" is not allowed: a number of bytes from 1024 to 8388608"
        );
        let c = FluvioConfig {
            linger: Duration::from_secs(11),
            ..FluvioConfig::default()
        };
        assert_eq!(
            err(&c),
            "fluvio.linger = \"11s\" is not allowed: a duration from 0s to 10s"
        );
        let c = FluvioConfig {
            partitions: Some(0),
            ..FluvioConfig::default()
        };
        assert!(err(&c).starts_with("fluvio.partitions = \"0\" is not allowed"));
        let c = FluvioConfig {
            replication: 0,
            ..FluvioConfig::default()
        };
        assert!(err(&c).starts_with("fluvio.replication = \"0\""));
        let mut c = FluvioConfig::default();
        c.chain.reopen_after = 10;
        assert!(err(&c).starts_with("fluvio.chain.reopen_after = \"10\""));
        let mut c = FluvioConfig::default();
        c.chain.detect = "Detect!".into();
        assert!(err(&c).starts_with("fluvio.chain.detect = \"Detect!\""));
    }

    #[test]
    fn tls_needs_endpoint_and_all_files() {
        let mut c = FluvioConfig::default();
        c.tls.enabled = true;
        assert!(err(&c).contains("only with fluvio.endpoint"));
        let mut c = FluvioConfig::with_endpoint("sc.example.com:9003");
        c.tls.enabled = true;
        c.validate().unwrap(); // anonymous TLS
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, "pem").unwrap();
        c.tls.ca_cert = Some(ca.clone());
        assert_eq!(
            err(&c),
            "fluvio.tls.client_cert = \"\" is not allowed: a PEM file: verified TLS needs ca_cert, client_cert, client_key and domain"
        );
        c.tls.client_cert = Some(ca.clone());
        c.tls.client_key = Some(dir.path().join("missing.key"));
        assert!(err(&c).starts_with("fluvio.tls.client_key = "));
        assert!(err(&c).ends_with("a readable PEM file"));
        c.tls.client_key = Some(ca);
        assert!(err(&c).starts_with("fluvio.tls.domain = \"\""));
        c.tls.domain = Some("fluvio.example.com".into());
        c.validate().unwrap();
        c.tls.enabled = false;
        assert!(err(&c).starts_with("fluvio.tls.enabled = \"false\""));
    }

    #[test]
    fn ordinals_from_statefulset_host_names() {
        assert_eq!(statefulset_ordinal("gridwatch-0"), Some(0));
        assert_eq!(statefulset_ordinal("gridwatch-12"), Some(12));
        assert_eq!(statefulset_ordinal("my-grid-watch-3"), Some(3));
        assert_eq!(
            statefulset_ordinal("gridwatch-1.gridwatch.default.svc.cluster.local"),
            Some(1)
        );
        for none in [
            "gridwatch",
            "gridwatch-",
            "-3",
            "gridwatch-x1",
            "gridwatch-01",
            "",
        ] {
            assert_eq!(statefulset_ordinal(none), None, "{none}");
        }
        // A Deployment's pod name ends in a hash, not an ordinal.
        assert_eq!(statefulset_ordinal("gridwatch-7d9f8b6c4-x2x7q"), None);
    }

    #[test]
    fn instance_comes_from_config_then_hostname() {
        let c = FluvioConfig {
            instances: 3,
            ..FluvioConfig::default()
        };
        assert_eq!(c.instance_index_with(Some("gridwatch-2")).unwrap(), 2);
        let e = c.instance_index_with(Some("laptop")).unwrap_err();
        assert_eq!(e.key, "fluvio.instance");
        assert_eq!(e.value, "laptop");
        let e = c.instance_index_with(Some("gridwatch-3")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "fluvio.instance = \"3\" is not allowed: a whole number from 0 to 2 (fluvio.instances - 1); it came from HOSTNAME's ordinal"
        );
        let c = FluvioConfig {
            instance: Some(1),
            ..c
        };
        assert_eq!(c.instance_index_with(Some("gridwatch-2")).unwrap(), 1);
        // One instance needs no ordinal.
        let one = FluvioConfig::default();
        assert_eq!(one.instance_index_with(Some("laptop")).unwrap(), 0);
        assert_eq!(one.instance_index_with(None).unwrap(), 0);
    }

    #[test]
    fn partition_split_covers_every_partition_once() {
        for total in 0..20u32 {
            for n in 1..6u32 {
                let mut seen = vec![0u32; total as usize];
                for i in 0..n {
                    for p in split_partitions(total, i, n) {
                        assert_eq!(p % n, i);
                        seen[p as usize] += 1;
                    }
                }
                assert!(seen.iter().all(|&c| c == 1), "total {total}, n {n}");
            }
        }
        assert_eq!(split_partitions(5, 1, 2), vec![1, 3]);
        let c = FluvioConfig {
            instance: Some(0),
            instances: 2,
            ..FluvioConfig::default()
        };
        assert_eq!(c.owned_partitions(4), vec![0, 2]);
        // Unresolvable instance: owns nothing rather than everything.
        let c = FluvioConfig {
            instance: Some(5),
            instances: 2,
            ..FluvioConfig::default()
        };
        assert!(c.owned_partitions(4).is_empty());
    }

    #[test]
    fn smartmodule_names() {
        for ok in [
            "gridwatch-detect",
            "gridwatch/gridwatch-detect",
            "gridwatch/gridwatch-detect@0.2.0",
        ] {
            assert!(is_smartmodule_name(ok), "{ok}");
        }
        for bad in ["", "Detect", "detect@1", "a/b/c", "-x", "g/n@"] {
            assert!(!is_smartmodule_name(bad), "{bad}");
        }
    }
}
