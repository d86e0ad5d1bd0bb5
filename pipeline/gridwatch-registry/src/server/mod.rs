//! The embedded registry: the subset of Apicurio Registry v3 that Gridwatch
//! and Apicurio's own serdes and SDKs use, so a single `gridwatch` binary
//! needs no separate registry, and a deployment can move to a real Apicurio
//! later without changing a client.
//!
//! Mount [`router`] under [`V3_BASE_PATH`](crate::V3_BASE_PATH) (and, for
//! Confluent-API clients, [`ccompat_router`] under
//! [`CCOMPAT_BASE_PATH`](crate::CCOMPAT_BASE_PATH)) on the binary's listener:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use gridwatch_registry::server::{EmbeddedRegistry, router};
//! let registry = EmbeddedRegistry::open("/var/lib/gridwatch/registry").await?;
//! let app = axum::Router::new().nest(gridwatch_registry::V3_BASE_PATH, router(registry));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

mod ccompat;
mod error;
mod routes;
pub mod store;

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use tokio::sync::Mutex;

use crate::compat::{self, AvroSchema};
use crate::model::{
    ARTIFACT_TYPE_AVRO, ArtifactMetaData, CompatibilityLevel, CreateArtifact, CreateVersion,
    GroupMetaData, IfArtifactExists, RuleType, RuleViolationCause, ValidityLevel, VersionMetaData,
    VersionState,
};
pub use ccompat::ccompat_router;
pub(crate) use error::ApiError;
pub use routes::router;
use store::{Event, Log, Scope, State};
pub use store::{LOG_FILE, StoreError};

/// An Apicurio-compatible registry persisted in a directory. Clones share
/// one state; every change is serialized through one lock, which suits a
/// registry's trickle of writes.
#[derive(Debug, Clone)]
pub struct EmbeddedRegistry {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    state: State,
    log: Log,
}

/// What a registration request found or made.
#[derive(Debug)]
pub(crate) struct Registered {
    pub(crate) artifact: ArtifactMetaData,
    pub(crate) version: Option<VersionMetaData>,
}

impl EmbeddedRegistry {
    /// Opens the registry stored in `dir` (created if missing), replaying its log.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let (log, state) = Log::open(dir.as_ref()).await?;
        tracing::info!(
            dir = %dir.as_ref().display(), versions = state.versions.len(),
            "Embedded schema registry opened."
        );
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner { state, log })),
        })
    }

    /// Logs events, then applies them: an answer is only given for a change
    /// that is on disk.
    async fn commit(inner: &mut Inner, events: Vec<Event>) -> Result<(), ApiError> {
        if events.is_empty() {
            return Ok(());
        }
        inner
            .log
            .append(&events)
            .await
            .map_err(|e| ApiError::storage(&e))?;
        for event in &events {
            inner.state.apply(event);
        }
        Ok(())
    }

    /// `POST /groups/{groupId}/artifacts`.
    pub(crate) async fn create_artifact(
        &self,
        group_id: &str,
        request: CreateArtifact,
        if_exists: IfArtifactExists,
        canonical: bool,
        dry_run: bool,
    ) -> Result<Registered, ApiError> {
        let artifact_type = request
            .artifact_type
            .clone()
            .unwrap_or_else(|| ARTIFACT_TYPE_AVRO.to_owned());
        if artifact_type != ARTIFACT_TYPE_AVRO {
            return Err(ApiError::bad_request(format!(
                "Unsupported artifact type '{artifact_type}': the embedded registry stores AVRO only."
            ))
            .with_name("InvalidArtifactTypeException"));
        }
        let mut guard = self.inner.lock().await;
        let inner = &mut *guard;
        let artifact_id = match &request.artifact_id {
            Some(id) if !id.trim().is_empty() => id.clone(),
            Some(_) => return Err(ApiError::bad_request("artifactId must not be blank.")),
            None => format!("artifact-{}", inner.state.next_global_id),
        };
        let now = now_millis();
        let mut events = Vec::new();
        let exists = inner.state.artifact(group_id, &artifact_id).is_some();
        if exists {
            match if_exists {
                IfArtifactExists::Fail => {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "ArtifactAlreadyExistsException",
                        format!(
                            "An artifact with ID '{artifact_id}' in group '{group_id}' already exists."
                        ),
                    ));
                }
                IfArtifactExists::FindOrCreateVersion => {
                    let Some(first) = &request.first_version else {
                        return Err(ApiError::bad_request(
                            "FIND_OR_CREATE_VERSION needs firstVersion content to find.",
                        ));
                    };
                    if let Some(found) = find_version(
                        &inner.state,
                        group_id,
                        &artifact_id,
                        &first.content.content,
                        canonical,
                    ) {
                        return Ok(Registered {
                            artifact: artifact_meta(&inner.state, group_id, &artifact_id)?,
                            version: Some(found),
                        });
                    }
                }
                IfArtifactExists::CreateVersion => {}
            }
        } else {
            if !inner.state.groups.contains_key(group_id) {
                events.push(Event::Group {
                    group_id: group_id.to_owned(),
                    description: None,
                    labels: Default::default(),
                    created_on: now,
                });
            }
            events.push(Event::Artifact {
                group_id: group_id.to_owned(),
                artifact_id: artifact_id.clone(),
                artifact_type: artifact_type.clone(),
                name: request.name.clone(),
                description: request.description.clone(),
                labels: request.labels.clone(),
                created_on: now,
            });
        }
        let mut global_id = None;
        if let Some(first) = &request.first_version {
            let (version_events, id) =
                plan_version(&inner.state, group_id, &artifact_id, first, now)?;
            events.extend(version_events);
            global_id = Some(id);
        }
        if dry_run {
            // Apply to a scratch copy so the answer shows what would be.
            let mut preview = inner.state.clone();
            for event in &events {
                preview.apply(event);
            }
            return Ok(Registered {
                artifact: artifact_meta(&preview, group_id, &artifact_id)?,
                version: global_id.map(|id| version_meta(&preview, id)).transpose()?,
            });
        }
        Self::commit(inner, events).await?;
        let artifact = artifact_meta(&inner.state, group_id, &artifact_id)?;
        let version = match global_id {
            Some(id) => Some(version_meta(&inner.state, id)?),
            None => None,
        };
        if let Some(v) = &version {
            tracing::info!(group = group_id, artifact = %artifact_id, version = %v.version,
                global_id = v.global_id, content_id = v.content_id, "Schema version registered.");
        }
        Ok(Registered { artifact, version })
    }

    /// `POST /groups/{groupId}/artifacts/{artifactId}/versions`.
    pub(crate) async fn create_version(
        &self,
        group_id: &str,
        artifact_id: &str,
        request: CreateVersion,
        dry_run: bool,
    ) -> Result<VersionMetaData, ApiError> {
        let mut guard = self.inner.lock().await;
        let inner = &mut *guard;
        if inner.state.artifact(group_id, artifact_id).is_none() {
            return Err(ApiError::artifact_not_found(group_id, artifact_id));
        }
        let now = now_millis();
        let (events, global_id) = plan_version(&inner.state, group_id, artifact_id, &request, now)?;
        if dry_run {
            let mut preview = inner.state.clone();
            for event in &events {
                preview.apply(event);
            }
            return version_meta(&preview, global_id);
        }
        Self::commit(inner, events).await?;
        version_meta(&inner.state, global_id)
    }

    pub(crate) async fn groups(&self) -> Vec<GroupMetaData> {
        let inner = self.inner.lock().await;
        inner
            .state
            .groups
            .keys()
            .filter_map(|g| group_meta(&inner.state, g).ok())
            .collect()
    }

    pub(crate) async fn group(&self, group_id: &str) -> Result<GroupMetaData, ApiError> {
        let inner = self.inner.lock().await;
        group_meta(&inner.state, group_id)
    }

    pub(crate) async fn create_group(
        &self,
        request: crate::model::CreateGroup,
    ) -> Result<GroupMetaData, ApiError> {
        if request.group_id.trim().is_empty() {
            return Err(ApiError::bad_request("groupId must not be blank."));
        }
        let mut guard = self.inner.lock().await;
        let inner = &mut *guard;
        if inner.state.groups.contains_key(&request.group_id) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "GroupAlreadyExistsException",
                format!("Group '{}' already exists.", request.group_id),
            ));
        }
        let event = Event::Group {
            group_id: request.group_id.clone(),
            description: request.description,
            labels: request.labels,
            created_on: now_millis(),
        };
        Self::commit(inner, vec![event]).await?;
        group_meta(&inner.state, &request.group_id)
    }

    pub(crate) async fn artifacts(
        &self,
        group_id: &str,
    ) -> Result<Vec<ArtifactMetaData>, ApiError> {
        let inner = self.inner.lock().await;
        let group = inner
            .state
            .groups
            .get(group_id)
            .ok_or_else(|| ApiError::group_not_found(group_id))?;
        group
            .artifacts
            .keys()
            .map(|a| artifact_meta(&inner.state, group_id, a))
            .collect()
    }

    pub(crate) async fn artifact(
        &self,
        group_id: &str,
        artifact_id: &str,
    ) -> Result<ArtifactMetaData, ApiError> {
        let inner = self.inner.lock().await;
        artifact_meta(&inner.state, group_id, artifact_id)
    }

    /// All versions of an artifact, oldest first.
    pub(crate) async fn versions(
        &self,
        group_id: &str,
        artifact_id: &str,
    ) -> Result<Vec<VersionMetaData>, ApiError> {
        let inner = self.inner.lock().await;
        let artifact = inner
            .state
            .artifact(group_id, artifact_id)
            .ok_or_else(|| ApiError::artifact_not_found(group_id, artifact_id))?;
        artifact
            .versions
            .iter()
            .map(|id| version_meta(&inner.state, *id))
            .collect()
    }

    /// A version by name, or the latest for `branch=latest` (and `latest`).
    pub(crate) async fn version(
        &self,
        group_id: &str,
        artifact_id: &str,
        expression: &str,
    ) -> Result<VersionMetaData, ApiError> {
        let inner = self.inner.lock().await;
        let artifact = inner
            .state
            .artifact(group_id, artifact_id)
            .ok_or_else(|| ApiError::artifact_not_found(group_id, artifact_id))?;
        let found = match expression {
            "branch=latest" | "latest" => artifact.versions.last().copied(),
            name => artifact.versions.iter().copied().find(|id| {
                inner
                    .state
                    .versions
                    .get(id)
                    .is_some_and(|v| v.version == name)
            }),
        };
        let id =
            found.ok_or_else(|| ApiError::version_not_found(group_id, artifact_id, expression))?;
        version_meta(&inner.state, id)
    }

    /// The content of a version, by globalId.
    pub(crate) async fn content_by_global_id(
        &self,
        global_id: u64,
    ) -> Result<(Arc<str>, String), ApiError> {
        let inner = self.inner.lock().await;
        let version = inner.state.versions.get(&global_id).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "ArtifactNotFoundException",
                format!("No artifact with global ID '{global_id}' was found."),
            )
        })?;
        content(&inner.state, version.content_id)
    }

    /// Content by contentId.
    pub(crate) async fn content_by_content_id(
        &self,
        content_id: u64,
    ) -> Result<(Arc<str>, String), ApiError> {
        let inner = self.inner.lock().await;
        content(&inner.state, content_id)
    }

    pub(crate) async fn rules(&self, scope: &Scope) -> Result<Vec<RuleType>, ApiError> {
        let inner = self.inner.lock().await;
        scope_exists(&inner.state, scope)?;
        Ok(inner
            .state
            .rules
            .get(scope)
            .map(|rules| rules.keys().copied().collect())
            .unwrap_or_default())
    }

    pub(crate) async fn rule(
        &self,
        scope: &Scope,
        rule_type: RuleType,
    ) -> Result<String, ApiError> {
        let inner = self.inner.lock().await;
        scope_exists(&inner.state, scope)?;
        inner
            .state
            .rules
            .get(scope)
            .and_then(|rules| rules.get(&rule_type))
            .cloned()
            .ok_or_else(|| ApiError::rule_not_found(rule_type))
    }

    /// Creates (`replace == false`, 409 if present) or updates (`replace ==
    /// true`, 404 if absent) a rule.
    pub(crate) async fn put_rule(
        &self,
        scope: Scope,
        rule_type: RuleType,
        config: String,
        replace: bool,
    ) -> Result<(), ApiError> {
        validate_rule_config(rule_type, &config)?;
        let mut guard = self.inner.lock().await;
        let inner = &mut *guard;
        scope_exists(&inner.state, &scope)?;
        let present = inner
            .state
            .rules
            .get(&scope)
            .is_some_and(|rules| rules.contains_key(&rule_type));
        if present && !replace {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "RuleAlreadyExistsException",
                format!("A rule named '{rule_type}' already exists."),
            ));
        }
        if !present && replace {
            return Err(ApiError::rule_not_found(rule_type));
        }
        let event = Event::Rule {
            scope,
            rule_type,
            config,
        };
        Self::commit(inner, vec![event]).await
    }

    /// Deletes one rule (404 if absent), or all of a scope's rules.
    pub(crate) async fn delete_rules(
        &self,
        scope: Scope,
        rule_type: Option<RuleType>,
    ) -> Result<(), ApiError> {
        let mut guard = self.inner.lock().await;
        let inner = &mut *guard;
        scope_exists(&inner.state, &scope)?;
        let present: Vec<RuleType> = inner
            .state
            .rules
            .get(&scope)
            .map(|rules| rules.keys().copied().collect())
            .unwrap_or_default();
        let doomed = match rule_type {
            Some(rule) if !present.contains(&rule) => return Err(ApiError::rule_not_found(rule)),
            Some(rule) => vec![rule],
            None => present,
        };
        let events = doomed
            .into_iter()
            .map(|rule_type| Event::RuleDeleted {
                scope: scope.clone(),
                rule_type,
            })
            .collect();
        Self::commit(inner, events).await
    }
}

impl ApiError {
    pub(crate) fn with_name(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Apicurio's timestamps: RFC 3339, whole seconds, UTC.
fn rfc3339(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

fn scope_exists(state: &State, scope: &Scope) -> Result<(), ApiError> {
    match scope {
        Scope::Global => Ok(()),
        Scope::Group { group_id } => state
            .groups
            .contains_key(group_id)
            .then_some(())
            .ok_or_else(|| ApiError::group_not_found(group_id)),
        Scope::Artifact {
            group_id,
            artifact_id,
        } => state
            .artifact(group_id, artifact_id)
            .map(drop)
            .ok_or_else(|| ApiError::artifact_not_found(group_id, artifact_id)),
    }
}

fn validate_rule_config(rule_type: RuleType, config: &str) -> Result<(), ApiError> {
    let invalid = |e: crate::model::UnknownWord| {
        ApiError::bad_request(format!("Invalid {rule_type} rule config: {e}"))
            .with_name("InvalidRuleConfigException")
    };
    match rule_type {
        RuleType::Compatibility => config
            .parse::<CompatibilityLevel>()
            .map(drop)
            .map_err(invalid),
        RuleType::Validity => config.parse::<ValidityLevel>().map(drop).map_err(invalid),
        RuleType::Integrity if config.trim().is_empty() => Err(ApiError::bad_request(
            "Invalid INTEGRITY rule config: it must not be empty",
        )
        .with_name("InvalidRuleConfigException")),
        RuleType::Integrity => Ok(()),
    }
}

/// The rule that governs an artifact: its own, else its group's, else global.
fn effective_rule(
    state: &State,
    group_id: &str,
    artifact_id: &str,
    rule_type: RuleType,
) -> Option<String> {
    let scopes = [
        Scope::Artifact {
            group_id: group_id.to_owned(),
            artifact_id: artifact_id.to_owned(),
        },
        Scope::Group {
            group_id: group_id.to_owned(),
        },
        Scope::Global,
    ];
    scopes
        .iter()
        .find_map(|scope| state.rules.get(scope)?.get(&rule_type).cloned())
}

fn find_version(
    state: &State,
    group_id: &str,
    artifact_id: &str,
    content: &str,
    canonical: bool,
) -> Option<VersionMetaData> {
    let artifact = state.artifact(group_id, artifact_id)?;
    let wanted = canonical
        .then(|| AvroSchema::parse(content).ok().map(|s| s.canonical_form()))
        .flatten();
    artifact.versions.iter().rev().find_map(|id| {
        let version = state.versions.get(id)?;
        let text = &state.contents.get(&version.content_id)?.text;
        let same = match &wanted {
            Some(form) => AvroSchema::parse(text).is_ok_and(|s| &s.canonical_form() == form),
            None => &**text == content,
        };
        if same {
            version_meta(state, *id).ok()
        } else {
            None
        }
    })
}

/// Checks a new version against the rules and returns the events that add
/// it, with its globalId. Nothing is changed.
fn plan_version(
    state: &State,
    group_id: &str,
    artifact_id: &str,
    request: &CreateVersion,
    now: i64,
) -> Result<(Vec<Event>, u64), ApiError> {
    let text = request.content.content.as_str();
    if text.trim().is_empty() {
        return Err(
            ApiError::bad_request("The version content must not be empty.")
                .with_name("InvalidArtifactException"),
        );
    }
    let existing: &[u64] = state
        .artifact(group_id, artifact_id)
        .map(|a| a.versions.as_slice())
        .unwrap_or_default();
    let version = match &request.version {
        Some(v) if v.trim().is_empty() => {
            return Err(ApiError::bad_request("The version name must not be blank."));
        }
        Some(v) => {
            if existing
                .iter()
                .any(|id| state.versions.get(id).is_some_and(|e| &e.version == v))
            {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "VersionAlreadyExistsException",
                    format!(
                        "Version '{v}' of artifact '{artifact_id}' in group '{group_id}' already exists."
                    ),
                ));
            }
            v.clone()
        }
        None => next_version_name(state, existing),
    };
    check_rules(state, group_id, artifact_id, existing, text)?;
    let mut events = Vec::new();
    let content_id = match state.content_ids.get(text) {
        Some(id) => *id,
        None => {
            let id = state.next_content_id;
            events.push(Event::Content {
                content_id: id,
                content: text.to_owned(),
                content_type: request.content.content_type.clone(),
            });
            id
        }
    };
    let global_id = state.next_global_id;
    events.push(Event::Version {
        global_id,
        content_id,
        group_id: group_id.to_owned(),
        artifact_id: artifact_id.to_owned(),
        version,
        name: request.name.clone(),
        description: request.description.clone(),
        labels: request.labels.clone(),
        created_on: now,
    });
    Ok((events, global_id))
}

/// Versions are numbered `1`, `2`, …, skipping names already taken.
fn next_version_name(state: &State, existing: &[u64]) -> String {
    let taken = |name: &str| {
        existing
            .iter()
            .any(|id| state.versions.get(id).is_some_and(|v| v.version == name))
    };
    let mut n = existing.len() + 1;
    while taken(&n.to_string()) {
        n += 1;
    }
    n.to_string()
}

fn check_rules(
    state: &State,
    group_id: &str,
    artifact_id: &str,
    existing: &[u64],
    text: &str,
) -> Result<(), ApiError> {
    let validity = effective_rule(state, group_id, artifact_id, RuleType::Validity);
    let compatibility = effective_rule(state, group_id, artifact_id, RuleType::Compatibility)
        .and_then(|c| c.parse::<CompatibilityLevel>().ok())
        .filter(|level| *level != CompatibilityLevel::None);
    if validity.is_none() && compatibility.is_none() {
        return Ok(());
    }
    let parsed = AvroSchema::parse(text);
    if let Some(config) = validity.filter(|c| c != ValidityLevel::None.as_str())
        && let Err(reason) = &parsed
    {
        return Err(violation(
            RuleType::Validity,
            &config,
            "Syntax violation for Avro artifact.".to_owned(),
            format!("The schema of artifact '{artifact_id}' does not parse: {reason}"),
            vec![RuleViolationCause {
                description: reason.clone(),
                context: "/".into(),
            }],
        ));
    }
    let Some(level) = compatibility else {
        return Ok(());
    };
    let proposed = parsed.map_err(|reason| {
        violation(
            RuleType::Compatibility,
            level.as_str(),
            format!("Incompatible artifact: {artifact_id} [AVRO]: the schema does not parse."),
            format!(
                "The new schema does not parse, so its compatibility cannot be checked: {reason}"
            ),
            vec![RuleViolationCause {
                description: reason.clone(),
                context: "/".into(),
            }],
        )
    })?;
    // Versions whose content does not parse (stored without a VALIDITY rule)
    // say nothing about what readers can read; they are left out.
    let history: Vec<(String, AvroSchema)> = existing
        .iter()
        .filter_map(|id| {
            let version = state.versions.get(id)?;
            let text = &state.contents.get(&version.content_id)?.text;
            Some((version.version.clone(), AvroSchema::parse(text).ok()?))
        })
        .collect();
    let violations = compat::check(level, &history, &proposed);
    if violations.is_empty() {
        return Ok(());
    }
    let causes: Vec<RuleViolationCause> = violations
        .iter()
        .flat_map(|v| {
            v.issues.iter().map(move |issue| RuleViolationCause {
                description: format!(
                    "{}: {}; {}",
                    issue.kind.as_str(),
                    issue.message,
                    v.summary()
                ),
                context: issue.path.clone(),
            })
        })
        .collect();
    let kinds: Vec<&str> = violations
        .iter()
        .flat_map(|v| v.issues.iter().map(|i| i.kind.as_str()))
        .collect();
    let title = format!(
        "Incompatible artifact: {artifact_id} [AVRO], num of incompatible diffs: {{{}}}, list of diff types: [{}]",
        causes.len(),
        kinds.join(", ")
    );
    let detail = violations
        .iter()
        .map(|v| {
            let issues: Vec<String> = v
                .issues
                .iter()
                .map(|i| format!("{} (at {})", i.message, i.path))
                .collect();
            format!("{}: {}", v.summary(), issues.join("; "))
        })
        .collect::<Vec<_>>()
        .join("; ");
    Err(violation(
        RuleType::Compatibility,
        level.as_str(),
        title,
        detail,
        causes,
    ))
}

fn violation(
    rule_type: RuleType,
    config: &str,
    title: String,
    detail: String,
    causes: Vec<RuleViolationCause>,
) -> ApiError {
    ApiError {
        status: StatusCode::CONFLICT,
        name: "RuleViolationException",
        title,
        detail: Some(detail),
        causes: Some(causes),
        rule_type: Some(rule_type),
        rule_config: Some(config.to_owned()),
    }
}

fn content(state: &State, content_id: u64) -> Result<(Arc<str>, String), ApiError> {
    state
        .contents
        .get(&content_id)
        .map(|c| (c.text.clone(), c.content_type.clone()))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "ContentNotFoundException",
                format!("No content with ID '{content_id}' was found."),
            )
        })
}

fn group_meta(state: &State, group_id: &str) -> Result<GroupMetaData, ApiError> {
    let group = state
        .groups
        .get(group_id)
        .ok_or_else(|| ApiError::group_not_found(group_id))?;
    let modified = group
        .artifacts
        .values()
        .map(|a| a.modified_on)
        .max()
        .unwrap_or(group.created_on)
        .max(group.created_on);
    Ok(GroupMetaData {
        group_id: group_id.to_owned(),
        description: group.description.clone(),
        owner: Some(String::new()),
        created_on: Some(rfc3339(group.created_on)),
        modified_by: Some(String::new()),
        modified_on: Some(rfc3339(modified)),
        labels: group.labels.clone(),
    })
}

fn artifact_meta(
    state: &State,
    group_id: &str,
    artifact_id: &str,
) -> Result<ArtifactMetaData, ApiError> {
    let artifact = state
        .artifact(group_id, artifact_id)
        .ok_or_else(|| ApiError::artifact_not_found(group_id, artifact_id))?;
    Ok(ArtifactMetaData {
        group_id: group_id.to_owned(),
        artifact_id: artifact_id.to_owned(),
        artifact_type: artifact.artifact_type.clone(),
        name: artifact.name.clone(),
        description: artifact.description.clone(),
        owner: Some(String::new()),
        created_on: Some(rfc3339(artifact.created_on)),
        modified_by: Some(String::new()),
        modified_on: Some(rfc3339(artifact.modified_on)),
        labels: artifact.labels.clone(),
    })
}

fn version_meta(state: &State, global_id: u64) -> Result<VersionMetaData, ApiError> {
    let v = state.versions.get(&global_id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "VersionNotFoundException",
            format!("No version with global ID '{global_id}' was found."),
        )
    })?;
    let artifact_type = state
        .artifact(&v.group_id, &v.artifact_id)
        .map(|a| a.artifact_type.clone())
        .unwrap_or_else(|| ARTIFACT_TYPE_AVRO.to_owned());
    Ok(VersionMetaData {
        group_id: v.group_id.clone(),
        artifact_id: v.artifact_id.clone(),
        version: v.version.clone(),
        artifact_type,
        global_id: v.global_id,
        content_id: v.content_id,
        state: Some(VersionState::Enabled),
        name: v.name.clone(),
        description: v.description.clone(),
        owner: Some(String::new()),
        created_on: Some(rfc3339(v.created_on)),
        modified_by: Some(String::new()),
        modified_on: Some(rfc3339(v.created_on)),
        labels: v.labels.clone(),
    })
}

#[cfg(test)]
mod tests;
