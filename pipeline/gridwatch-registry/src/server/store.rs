//! The embedded registry's state and its append-only log.
//!
//! Every change is one JSON line in `<dir>/registry.jsonl`, written and
//! fsynced before it is applied, so an answer the registry gave survives a
//! crash. Start-up replays the log, which brings back the same globalIds and
//! contentIds: records framed before a restart still decode after it.
//!
//! A crash can leave a torn last line; replay drops it (it was never
//! acknowledged). A bad line anywhere else is corruption and stops start-up.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::model::{Labels, RuleType};

/// The log's file name inside the registry's directory.
pub const LOG_FILE: &str = "registry.jsonl";

const FORMAT: &str = "gridwatch-registry";
const FORMAT_VERSION: u32 = 1;

/// Why the registry's directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line} is not a registry log entry: {source}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{path} is a {found} log, version {version}; this build reads {FORMAT} version {FORMAT_VERSION}"
    )]
    Format {
        path: PathBuf,
        found: String,
        version: u32,
    },
    #[error("cannot encode a registry log entry: {0}")]
    Encode(#[source] serde_json::Error),
}

impl StoreError {
    /// Whether retrying can help: I/O errors may be transient (a full disk
    /// that gets space); corruption and format mismatches are not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io { .. })
    }
}

/// Where a rule is set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "level", rename_all = "camelCase")]
pub(crate) enum Scope {
    Global,
    #[serde(rename_all = "camelCase")]
    Group {
        group_id: String,
    },
    #[serde(rename_all = "camelCase")]
    Artifact {
        group_id: String,
        artifact_id: String,
    },
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub(crate) enum Event {
    /// The first line: which format the file is in.
    Header { format: String, version: u32 },
    #[serde(rename_all = "camelCase")]
    Group {
        group_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        #[serde(default, skip_serializing_if = "Labels::is_empty")]
        labels: Labels,
        created_on: i64,
    },
    #[serde(rename_all = "camelCase")]
    Artifact {
        group_id: String,
        artifact_id: String,
        artifact_type: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        #[serde(default, skip_serializing_if = "Labels::is_empty")]
        labels: Labels,
        created_on: i64,
    },
    #[serde(rename_all = "camelCase")]
    Content {
        content_id: u64,
        content: String,
        content_type: String,
    },
    #[serde(rename_all = "camelCase")]
    Version {
        global_id: u64,
        content_id: u64,
        group_id: String,
        artifact_id: String,
        version: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        #[serde(default, skip_serializing_if = "Labels::is_empty")]
        labels: Labels,
        created_on: i64,
    },
    #[serde(rename_all = "camelCase")]
    Rule {
        scope: Scope,
        rule_type: RuleType,
        config: String,
    },
    #[serde(rename_all = "camelCase")]
    RuleDeleted { scope: Scope, rule_type: RuleType },
}

#[derive(Debug, Clone)]
pub(crate) struct Content {
    pub(crate) text: Arc<str>,
    pub(crate) content_type: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) description: Option<String>,
    pub(crate) labels: Labels,
    pub(crate) created_on: i64,
    pub(crate) artifacts: BTreeMap<String, Artifact>,
}

#[derive(Debug, Clone)]
pub(crate) struct Artifact {
    pub(crate) artifact_type: String,
    pub(crate) name: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) labels: Labels,
    pub(crate) created_on: i64,
    pub(crate) modified_on: i64,
    /// globalIds, oldest first.
    pub(crate) versions: Vec<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Version {
    pub(crate) global_id: u64,
    pub(crate) content_id: u64,
    pub(crate) group_id: String,
    pub(crate) artifact_id: String,
    pub(crate) version: String,
    pub(crate) name: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) labels: Labels,
    pub(crate) created_on: i64,
}

/// Everything the registry knows, rebuilt from the log.
#[derive(Debug, Clone, Default)]
pub(crate) struct State {
    pub(crate) groups: BTreeMap<String, Group>,
    pub(crate) versions: BTreeMap<u64, Version>,
    pub(crate) contents: HashMap<u64, Content>,
    pub(crate) content_ids: HashMap<Arc<str>, u64>,
    pub(crate) rules: BTreeMap<Scope, BTreeMap<RuleType, String>>,
    pub(crate) next_global_id: u64,
    pub(crate) next_content_id: u64,
}

impl State {
    fn new() -> Self {
        Self {
            next_global_id: 1,
            next_content_id: 1,
            ..Self::default()
        }
    }

    /// Applies one event. Events are validated before they are logged, so
    /// applying cannot fail; a replayed event that refers to something
    /// missing (a hand-edited log) is skipped rather than half-applied.
    pub(crate) fn apply(&mut self, event: &Event) {
        match event {
            Event::Header { .. } => {}
            Event::Group {
                group_id,
                description,
                labels,
                created_on,
            } => {
                self.groups
                    .entry(group_id.clone())
                    .or_insert_with(|| Group {
                        description: description.clone(),
                        labels: labels.clone(),
                        created_on: *created_on,
                        artifacts: BTreeMap::new(),
                    });
            }
            Event::Artifact {
                group_id,
                artifact_id,
                artifact_type,
                name,
                description,
                labels,
                created_on,
            } => {
                if let Some(group) = self.groups.get_mut(group_id) {
                    group
                        .artifacts
                        .entry(artifact_id.clone())
                        .or_insert_with(|| Artifact {
                            artifact_type: artifact_type.clone(),
                            name: name.clone(),
                            description: description.clone(),
                            labels: labels.clone(),
                            created_on: *created_on,
                            modified_on: *created_on,
                            versions: Vec::new(),
                        });
                }
            }
            Event::Content {
                content_id,
                content,
                content_type,
            } => {
                let text: Arc<str> = content.as_str().into();
                self.content_ids.insert(text.clone(), *content_id);
                self.contents.insert(
                    *content_id,
                    Content {
                        text,
                        content_type: content_type.clone(),
                    },
                );
                self.next_content_id = self.next_content_id.max(content_id + 1);
            }
            Event::Version {
                global_id,
                content_id,
                group_id,
                artifact_id,
                version,
                name,
                description,
                labels,
                created_on,
            } => {
                let Some(artifact) = self
                    .groups
                    .get_mut(group_id)
                    .and_then(|g| g.artifacts.get_mut(artifact_id))
                else {
                    return;
                };
                if !self.contents.contains_key(content_id) {
                    return;
                }
                artifact.versions.push(*global_id);
                artifact.modified_on = *created_on;
                self.versions.insert(
                    *global_id,
                    Version {
                        global_id: *global_id,
                        content_id: *content_id,
                        group_id: group_id.clone(),
                        artifact_id: artifact_id.clone(),
                        version: version.clone(),
                        name: name.clone(),
                        description: description.clone(),
                        labels: labels.clone(),
                        created_on: *created_on,
                    },
                );
                self.next_global_id = self.next_global_id.max(global_id + 1);
            }
            Event::Rule {
                scope,
                rule_type,
                config,
            } => {
                self.rules
                    .entry(scope.clone())
                    .or_default()
                    .insert(*rule_type, config.clone());
            }
            Event::RuleDeleted { scope, rule_type } => {
                if let Some(rules) = self.rules.get_mut(scope) {
                    rules.remove(rule_type);
                    if rules.is_empty() {
                        self.rules.remove(scope);
                    }
                }
            }
        }
    }

    pub(crate) fn artifact(&self, group_id: &str, artifact_id: &str) -> Option<&Artifact> {
        self.groups.get(group_id)?.artifacts.get(artifact_id)
    }
}

/// The log file, open for appending.
#[derive(Debug)]
pub(crate) struct Log {
    path: PathBuf,
    file: tokio::fs::File,
}

impl Log {
    /// Opens (or creates) the log in `dir` and replays it.
    pub(crate) async fn open(dir: &Path) -> Result<(Self, State), StoreError> {
        let io = |action: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io {
                action,
                path,
                source,
            }
        };
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(io("create directory", dir))?;
        let path = dir.join(LOG_FILE);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io("read", &path)(e)),
        };
        let (state, good_len, has_header) = replay(&path, &bytes)?;
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(io("open", &path))?;
        if good_len < bytes.len() {
            tracing::warn!(path = %path.display(), dropped_bytes = bytes.len() - good_len,
                "Dropping a torn last line from the registry log.");
            file.set_len(good_len as u64)
                .await
                .map_err(io("truncate", &path))?;
        }
        let mut log = Self { path, file };
        if !has_header {
            log.append(&[Event::Header {
                format: FORMAT.into(),
                version: FORMAT_VERSION,
            }])
            .await?;
        }
        Ok((log, state))
    }

    /// Writes events as one batch and waits until they are on disk.
    pub(crate) async fn append(&mut self, events: &[Event]) -> Result<(), StoreError> {
        let mut buf = Vec::new();
        for event in events {
            serde_json::to_writer(&mut buf, event).map_err(StoreError::Encode)?;
            buf.push(b'\n');
        }
        let io = |action| {
            let path = self.path.clone();
            move |source| StoreError::Io {
                action,
                path,
                source,
            }
        };
        self.file.write_all(&buf).await.map_err(io("append to"))?;
        self.file.sync_data().await.map_err(io("sync"))?;
        Ok(())
    }
}

/// Rebuilds the state; returns it, the length of the intact prefix, and
/// whether the header was there.
fn replay(path: &Path, bytes: &[u8]) -> Result<(State, usize, bool), StoreError> {
    let mut state = State::new();
    let mut offset = 0;
    let mut has_header = false;
    for (index, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        let complete = line.ends_with(b"\n");
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        if text.iter().all(u8::is_ascii_whitespace) {
            offset += line.len();
            continue;
        }
        let event: Event = match serde_json::from_slice(text) {
            Ok(event) => event,
            // An unterminated last line is a write the crash interrupted.
            Err(_) if !complete => break,
            Err(source) => {
                return Err(StoreError::Corrupt {
                    path: path.to_owned(),
                    line: index + 1,
                    source,
                });
            }
        };
        if !complete {
            // Parsed, but the newline is missing: the write was cut short
            // before it was acknowledged. Drop it, like a torn line.
            break;
        }
        if let Event::Header { format, version } = &event {
            if format != FORMAT || *version != FORMAT_VERSION {
                return Err(StoreError::Format {
                    path: path.to_owned(),
                    found: format.clone(),
                    version: *version,
                });
            }
            has_header = true;
        }
        state.apply(&event);
        offset += line.len();
    }
    Ok((state, offset, has_header))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_dropped_and_earlier_lines_are_kept() {
        let good = serde_json::to_string(&Event::Rule {
            scope: Scope::Global,
            rule_type: RuleType::Compatibility,
            config: "BACKWARD".into(),
        })
        .unwrap();
        let bytes = format!("{good}\n{{\"op\":\"rule\",\"sco");
        let (state, len, header) = replay(Path::new("x"), bytes.as_bytes()).unwrap();
        assert_eq!(len, good.len() + 1);
        assert!(!header);
        assert_eq!(
            state.rules[&Scope::Global][&RuleType::Compatibility],
            "BACKWARD"
        );
    }

    #[test]
    fn corruption_before_the_end_is_an_error_with_the_line_number() {
        let err = replay(
            Path::new("reg.jsonl"),
            b"{\"op\":\"header\",\"format\":\"gridwatch-registry\",\"version\":1}\nnot json\n{}\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("reg.jsonl line 2 is not a registry log entry"),
            "{err}"
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn a_newer_format_is_refused() {
        let err = replay(
            Path::new("reg.jsonl"),
            b"{\"op\":\"header\",\"format\":\"gridwatch-registry\",\"version\":2}\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "reg.jsonl is a gridwatch-registry log, version 2; this build reads gridwatch-registry version 1"
        );
    }

    #[test]
    fn the_event_format_is_stable() {
        let line = serde_json::to_value(Event::Version {
            global_id: 3,
            content_id: 2,
            group_id: "g".into(),
            artifact_id: "a".into(),
            version: "1".into(),
            name: None,
            description: None,
            labels: Labels::new(),
            created_on: 5,
        })
        .unwrap();
        assert_eq!(
            line,
            serde_json::json!({"op": "version", "globalId": 3, "contentId": 2, "groupId": "g",
                "artifactId": "a", "version": "1", "createdOn": 5})
        );
        let rule = serde_json::to_value(Event::Rule {
            scope: Scope::Artifact {
                group_id: "g".into(),
                artifact_id: "a".into(),
            },
            rule_type: RuleType::Validity,
            config: "FULL".into(),
        })
        .unwrap();
        assert_eq!(
            rule,
            serde_json::json!({"op": "rule", "scope": {"level": "artifact", "groupId": "g",
                "artifactId": "a"}, "ruleType": "VALIDITY", "config": "FULL"})
        );
    }
}
