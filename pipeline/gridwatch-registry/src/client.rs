//! The Apicurio Registry REST API v3 client.
//!
//! Schema content is immutable once it has an id, so lookups by globalId and
//! contentId are cached for the life of the client: a consumer asks the
//! registry once per writer schema, not once per record.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock};

use gridwatch_contracts::codec::{AvroRecord, parse_schema};
use gridwatch_contracts::framing::{self, IdWidth};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::config::{ConfigError, RegistryConfig};
use crate::error::RegistryError;
use crate::model::{
    ArtifactMetaData, CompatibilityLevel, CreateArtifact, CreateArtifactResponse, CreateGroup,
    CreateVersion, IfArtifactExists, Rule, RuleType, SearchedVersion, VersionMetaData,
    VersionSearchResults,
};
use crate::transport::{Dialect, Transport};

/// Apicurio's REST API v3 base path, under the registry's root URL.
pub const V3_BASE_PATH: &str = "/apis/registry/v3";

const JSON: &str = "application/json";

/// Which id a wire frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaId {
    /// Apicurio v3 serdes (and Confluent's): shared by identical content.
    ContentId(u64),
    /// Apicurio v2 serdes: one per artifact version.
    GlobalId(u64),
}

impl SchemaId {
    /// The id in a frame written with `width`.
    pub fn from_frame(id: u64, width: IdWidth) -> Self {
        match width {
            IdWidth::ContentId4 => Self::ContentId(id),
            IdWidth::GlobalId8 => Self::GlobalId(id),
        }
    }
}

impl std::fmt::Display for SchemaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ContentId(id) => write!(f, "contentId {id}"),
            Self::GlobalId(id) => write!(f, "globalId {id}"),
        }
    }
}

/// Where a rule applies. The most specific one wins: artifact, then group,
/// then global.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RuleScope {
    /// Every artifact in the registry (`/admin/rules`).
    Global,
    /// Every artifact in a group (`/groups/{groupId}/rules`).
    Group(String),
    /// One artifact (`/groups/{groupId}/artifacts/{artifactId}/rules`).
    Artifact {
        /// Its group.
        group: String,
        /// Its id.
        artifact_id: String,
    },
}

impl std::fmt::Display for RuleScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Global => f.write_str("global"),
            Self::Group(g) => write!(f, "group '{g}'"),
            Self::Artifact { group, artifact_id } => {
                write!(f, "artifact '{artifact_id}' in group '{group}'")
            }
        }
    }
}

/// A cheap-to-clone handle on an Apicurio Registry v3.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    transport: Transport,
    base: Url,
    content: Cache<SchemaId, Arc<str>>,
    parsed: Cache<SchemaId, Arc<serde_avro_fast::Schema>>,
}

/// An unbounded map behind a lock that a panic elsewhere cannot poison for
/// good: entries are written whole, so a poisoned map is still consistent.
#[derive(Debug)]
struct Cache<K, V>(RwLock<HashMap<K, V>>);

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    fn new() -> Self {
        Self(RwLock::new(HashMap::new()))
    }

    fn get(&self, key: &K) -> Option<V> {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        map.get(key).cloned()
    }

    fn insert(&self, key: K, value: V) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.insert(key, value);
    }
}

impl RegistryClient {
    /// A client for the registry at `config.url`.
    pub fn new(config: &RegistryConfig) -> Result<Self, RegistryError> {
        let url = config.url.clone().ok_or(ConfigError::MissingUrl)?;
        Self::with_url(config, url)
    }

    /// A client for the registry at `url`, e.g. the embedded one on the
    /// binary's own listener, with the rest of `config`. `url` may be the
    /// registry's root or already end in `/apis/registry/v3`.
    pub fn with_url(config: &RegistryConfig, url: Url) -> Result<Self, RegistryError> {
        config.validate()?;
        let base = api_base(url, V3_BASE_PATH)?;
        Ok(Self {
            inner: Arc::new(Inner {
                transport: Transport::new(config, Dialect::Apicurio)?,
                base,
                content: Cache::new(),
                parsed: Cache::new(),
            }),
        })
    }

    /// The API base URL, ending in `/apis/registry/v3`.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// Creates an artifact; what happens when it exists is `if_exists`.
    pub async fn create_artifact(
        &self,
        group: &str,
        artifact: &CreateArtifact,
        if_exists: IfArtifactExists,
    ) -> Result<CreateArtifactResponse, RegistryError> {
        let mut url = self.url(&["groups", group, "artifacts"]);
        url.query_pairs_mut()
            .append_pair("ifExists", if_exists.as_str());
        self.send_json(Method::POST, url, Some(artifact))
            .await
            .map_err(|e| with_target(e, group, artifact.artifact_id.as_deref()))
    }

    /// Registers Avro schema text under `artifact_id`, idempotently: the
    /// version with the same content if there is one, else a new version,
    /// which the registry's rules must accept.
    pub async fn register_avro(
        &self,
        group: &str,
        artifact_id: &str,
        schema: &str,
    ) -> Result<VersionMetaData, RegistryError> {
        let body = CreateArtifact::avro(artifact_id, schema);
        let result = self
            .create_artifact(group, &body, IfArtifactExists::FindOrCreateVersion)
            .await;
        let response = match result {
            Ok(response) => response,
            Err(err) => return Err(self.explain(err, group, artifact_id).await),
        };
        let url = self.url(&["groups", group, "artifacts"]);
        response
            .version
            .ok_or_else(|| RegistryError::InvalidResponse {
                method: "POST".into(),
                url: url.to_string(),
                expected: "a CreateArtifactResponse with a version",
                reason: "no `version` member".into(),
            })
    }

    /// Adds a version to an existing artifact.
    pub async fn create_version(
        &self,
        group: &str,
        artifact_id: &str,
        version: &CreateVersion,
    ) -> Result<VersionMetaData, RegistryError> {
        let url = self.url(&["groups", group, "artifacts", artifact_id, "versions"]);
        match self.send_json(Method::POST, url, Some(version)).await {
            Ok(v) => Ok(v),
            Err(err) => Err(self
                .explain(
                    with_target(err, group, Some(artifact_id)),
                    group,
                    artifact_id,
                )
                .await),
        }
    }

    /// Asks whether the registry's rules would accept `version`, without
    /// adding it (`dryRun=true`).
    pub async fn check_version(
        &self,
        group: &str,
        artifact_id: &str,
        version: &CreateVersion,
    ) -> Result<(), RegistryError> {
        let mut url = self.url(&["groups", group, "artifacts", artifact_id, "versions"]);
        url.query_pairs_mut().append_pair("dryRun", "true");
        match self
            .inner
            .transport
            .call(Method::POST, &url, Some(json_body(version)?), JSON)
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => Err(self
                .explain(
                    with_target(err, group, Some(artifact_id)),
                    group,
                    artifact_id,
                )
                .await),
        }
    }

    /// An artifact's metadata.
    pub async fn artifact(
        &self,
        group: &str,
        artifact_id: &str,
    ) -> Result<ArtifactMetaData, RegistryError> {
        let url = self.url(&["groups", group, "artifacts", artifact_id]);
        self.send_json::<(), _>(Method::GET, url, None).await
    }

    /// One version's metadata; `version` may be a version name or
    /// `branch=latest`.
    pub async fn version(
        &self,
        group: &str,
        artifact_id: &str,
        version: &str,
    ) -> Result<VersionMetaData, RegistryError> {
        let url = self.url(&[
            "groups",
            group,
            "artifacts",
            artifact_id,
            "versions",
            version,
        ]);
        self.send_json::<(), _>(Method::GET, url, None).await
    }

    /// Every version of an artifact, oldest first, fetched page by page.
    pub async fn list_versions(
        &self,
        group: &str,
        artifact_id: &str,
    ) -> Result<Vec<SearchedVersion>, RegistryError> {
        const PAGE: usize = 100;
        let mut versions = Vec::new();
        loop {
            let mut url = self.url(&["groups", group, "artifacts", artifact_id, "versions"]);
            url.query_pairs_mut()
                .append_pair("offset", &versions.len().to_string())
                .append_pair("limit", &PAGE.to_string())
                .append_pair("orderby", "globalId")
                .append_pair("order", "asc");
            let page: VersionSearchResults =
                self.send_json::<(), _>(Method::GET, url, None).await?;
            let got = page.versions.len();
            versions.extend(page.versions);
            if got == 0 || versions.len() as u64 >= page.count {
                return Ok(versions);
            }
        }
    }

    /// The content of the version with this globalId (cached).
    pub async fn content_by_global_id(&self, global_id: u64) -> Result<Arc<str>, RegistryError> {
        self.content(SchemaId::GlobalId(global_id)).await
    }

    /// The content with this contentId (cached).
    pub async fn content_by_content_id(&self, content_id: u64) -> Result<Arc<str>, RegistryError> {
        self.content(SchemaId::ContentId(content_id)).await
    }

    /// Schema text by either id, from the cache or the registry.
    pub async fn content(&self, id: SchemaId) -> Result<Arc<str>, RegistryError> {
        if let Some(hit) = self.inner.content.get(&id) {
            return Ok(hit);
        }
        let url = match id {
            SchemaId::ContentId(n) => self.url(&["ids", "contentIds", &n.to_string()]),
            SchemaId::GlobalId(n) => self.url(&["ids", "globalIds", &n.to_string()]),
        };
        let answer = self
            .inner
            .transport
            .call(Method::GET, &url, None, "*/*, application/json")
            .await?;
        let text: Arc<str> = String::from_utf8(answer.body)
            .map_err(|e| RegistryError::InvalidResponse {
                method: "GET".into(),
                url: url.to_string(),
                expected: "UTF-8 schema text",
                reason: e.to_string(),
            })?
            .into();
        self.inner.content.insert(id, text.clone());
        Ok(text)
    }

    /// The parsed writer schema for an id (cached), ready for
    /// [`AvroRecord::from_avro_with`].
    pub async fn writer_schema(
        &self,
        id: SchemaId,
    ) -> Result<Arc<serde_avro_fast::Schema>, RegistryError> {
        if let Some(hit) = self.inner.parsed.get(&id) {
            return Ok(hit);
        }
        let text = self.content(id).await?;
        let schema = Arc::new(parse_schema(&text).map_err(|source| RegistryError::Schema {
            id: id.to_string(),
            source,
        })?);
        self.inner.parsed.insert(id, schema.clone());
        Ok(schema)
    }

    /// Decodes a framed message (magic byte, schema id, datum) with the
    /// writer schema its id names.
    pub async fn decode_framed<T: AvroRecord>(
        &self,
        bytes: &[u8],
        width: IdWidth,
    ) -> Result<T, RegistryError> {
        let framed = framing::parse(bytes, width)?;
        let schema = self
            .writer_schema(SchemaId::from_frame(framed.schema_id, width))
            .await?;
        T::from_avro_with(framed.datum, &schema).map_err(RegistryError::Decode)
    }

    /// Creates a group; one that exists already is fine.
    pub async fn create_group(&self, group: &str) -> Result<(), RegistryError> {
        let body = CreateGroup {
            group_id: group.to_owned(),
            description: None,
            labels: Default::default(),
        };
        let url = self.url(&["groups"]);
        match self
            .inner
            .transport
            .call(Method::POST, &url, Some(json_body(&body)?), JSON)
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if err.status() == Some(409) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The rule types configured at `scope`.
    pub async fn rules(&self, scope: &RuleScope) -> Result<Vec<RuleType>, RegistryError> {
        let url = self.rules_url(scope, None);
        self.send_json::<(), _>(Method::GET, url, None).await
    }

    /// The rule of this type at `scope`, if one is set there.
    pub async fn rule(
        &self,
        scope: &RuleScope,
        rule_type: RuleType,
    ) -> Result<Option<Rule>, RegistryError> {
        let url = self.rules_url(scope, Some(rule_type));
        match self.send_json::<(), Rule>(Method::GET, url, None).await {
            Ok(rule) => Ok(Some(rule)),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Sets a rule at `scope`, creating it or replacing its config. A group
    /// that does not exist yet is created first, as Apicurio only keeps
    /// rules for existing groups.
    pub async fn set_rule(
        &self,
        scope: &RuleScope,
        rule_type: RuleType,
        config: &str,
    ) -> Result<(), RegistryError> {
        let rule = Rule {
            rule_type: Some(rule_type),
            config: config.to_owned(),
        };
        let body = json_body(&rule)?;
        let create = self.rules_url(scope, None);
        let mut result = self
            .inner
            .transport
            .call(Method::POST, &create, Some(body.clone()), JSON)
            .await;
        if let (Err(RegistryError::NotFound { .. }), RuleScope::Group(group)) = (&result, scope) {
            self.create_group(group).await?;
            result = self
                .inner
                .transport
                .call(Method::POST, &create, Some(body.clone()), JSON)
                .await;
        }
        match result {
            Ok(_) => Ok(()),
            Err(err) if err.status() == Some(409) => {
                let url = self.rules_url(scope, Some(rule_type));
                self.inner
                    .transport
                    .call(Method::PUT, &url, Some(body), JSON)
                    .await
                    .map(drop)
            }
            Err(err) => Err(err),
        }
    }

    /// Sets the `COMPATIBILITY` rule at `scope`.
    pub async fn set_compatibility(
        &self,
        scope: &RuleScope,
        level: CompatibilityLevel,
    ) -> Result<(), RegistryError> {
        self.set_rule(scope, RuleType::Compatibility, level.as_str())
            .await
    }

    /// Removes the rule of this type at `scope`; a missing rule is fine.
    pub async fn delete_rule(
        &self,
        scope: &RuleScope,
        rule_type: RuleType,
    ) -> Result<(), RegistryError> {
        let url = self.rules_url(scope, Some(rule_type));
        match self
            .inner
            .transport
            .call(Method::DELETE, &url, None, JSON)
            .await
        {
            Ok(_) | Err(RegistryError::NotFound { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The rule of this type that governs an artifact, and where it is set:
    /// the artifact's own, else its group's, else the global one.
    pub async fn effective_rule(
        &self,
        group: &str,
        artifact_id: &str,
        rule_type: RuleType,
    ) -> Result<Option<(RuleScope, Rule)>, RegistryError> {
        let scopes = [
            RuleScope::Artifact {
                group: group.to_owned(),
                artifact_id: artifact_id.to_owned(),
            },
            RuleScope::Group(group.to_owned()),
            RuleScope::Global,
        ];
        for scope in scopes {
            if let Some(rule) = self.rule(&scope, rule_type).await? {
                return Ok(Some((scope, rule)));
            }
        }
        Ok(None)
    }

    /// Completes a rule violation with the rule's config when the registry's
    /// answer does not carry it (Apicurio's does not), so the error says
    /// which level was broken. Best effort: a failed lookup leaves it out.
    async fn explain(&self, err: RegistryError, group: &str, artifact_id: &str) -> RegistryError {
        let RegistryError::RuleViolation(mut violation) = err else {
            return err;
        };
        violation.group.get_or_insert_with(|| group.to_owned());
        violation
            .artifact_id
            .get_or_insert_with(|| artifact_id.to_owned());
        if violation.rule_config.is_none()
            && let Some(rule_type) = violation.rule_type
            && let Ok(Some((_, rule))) = self.effective_rule(group, artifact_id, rule_type).await
        {
            violation.rule_config = Some(rule.config);
        }
        RegistryError::RuleViolation(violation)
    }

    fn rules_url(&self, scope: &RuleScope, rule_type: Option<RuleType>) -> Url {
        let mut segments: Vec<&str> = match scope {
            RuleScope::Global => vec!["admin", "rules"],
            RuleScope::Group(group) => vec!["groups", group, "rules"],
            RuleScope::Artifact { group, artifact_id } => {
                vec!["groups", group, "artifacts", artifact_id, "rules"]
            }
        };
        if let Some(rule_type) = rule_type {
            segments.push(rule_type.as_str());
        }
        self.url(&segments)
    }

    fn url(&self, segments: &[&str]) -> Url {
        join(&self.inner.base, segments)
    }

    async fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<T, RegistryError> {
        let body = body.map(json_body).transpose()?;
        let answer = self
            .inner
            .transport
            .call(method.clone(), &url, body, JSON)
            .await?;
        serde_json::from_slice(&answer.body).map_err(|e| RegistryError::InvalidResponse {
            method: method.to_string(),
            url: url.to_string(),
            expected: std::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or("JSON"),
            reason: e.to_string(),
        })
    }
}

pub(crate) fn json_body<B: Serialize>(body: &B) -> Result<(&'static str, Vec<u8>), RegistryError> {
    serde_json::to_vec(body)
        .map(|bytes| (JSON, bytes))
        .map_err(|e| RegistryError::InvalidResponse {
            method: "encode".into(),
            url: String::new(),
            expected: "a serializable request body",
            reason: e.to_string(),
        })
}

fn with_target(err: RegistryError, group: &str, artifact_id: Option<&str>) -> RegistryError {
    match err {
        RegistryError::RuleViolation(mut v) => {
            v.group.get_or_insert_with(|| group.to_owned());
            if let Some(a) = artifact_id {
                v.artifact_id.get_or_insert_with(|| a.to_owned());
            }
            RegistryError::RuleViolation(v)
        }
        other => other,
    }
}

/// `url` with `base_path` appended unless it already ends with it.
pub(crate) fn api_base(mut url: Url, base_path: &str) -> Result<Url, RegistryError> {
    if url.cannot_be_a_base() {
        return Err(ConfigError::UrlScheme {
            scheme: url.scheme().to_owned(),
        }
        .into());
    }
    let path = url.path().trim_end_matches('/').to_owned();
    if !path.ends_with(base_path) {
        url.set_path(&format!("{path}{base_path}"));
    } else {
        url.set_path(&path);
    }
    Ok(url)
}

/// Appends path segments, percent-encoding each (artifact ids contain dots,
/// group ids may contain anything).
pub(crate) fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_accepts_the_root_or_the_api_path() {
        for given in [
            "http://r:8080",
            "http://r:8080/",
            "http://r:8080/apis/registry/v3",
            "http://r:8080/apis/registry/v3/",
        ] {
            let base = api_base(given.parse().unwrap(), V3_BASE_PATH).unwrap();
            assert_eq!(base.as_str(), "http://r:8080/apis/registry/v3", "{given}");
        }
        let proxied = api_base("http://gw/registry".parse().unwrap(), V3_BASE_PATH).unwrap();
        assert_eq!(proxied.as_str(), "http://gw/registry/apis/registry/v3");
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        let base: Url = "http://r/apis/registry/v3".parse().unwrap();
        let url = join(
            &base,
            &["groups", "my group/x", "artifacts", "io.gridwatch.A"],
        );
        assert_eq!(
            url.as_str(),
            "http://r/apis/registry/v3/groups/my%20group%2Fx/artifacts/io.gridwatch.A"
        );
    }
}
