//! The JSON shapes of Apicurio Registry's REST API v3, shared by the client
//! and the embedded server so that both sides cannot drift apart.
//!
//! Field names follow Apicurio's OpenAPI document (`groupId`, `globalId`,
//! `firstVersion`, …). Unknown fields are ignored when reading, as a newer
//! registry adds fields; absent optional fields are left out when writing.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The artifact type Gridwatch registers; the embedded registry stores only this one.
pub const ARTIFACT_TYPE_AVRO: &str = "AVRO";

/// The content type Apicurio gives Avro schema text.
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// Why a string is not one of the registry's enumerated words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{value}' is not a valid {kind}; expected one of: {expected}")]
pub struct UnknownWord {
    /// The enumeration, for the message.
    pub kind: &'static str,
    /// What was given.
    pub value: String,
    /// The accepted words, comma-separated.
    pub expected: &'static str,
}

macro_rules! word_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($(#[$vmeta:meta])* $variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $word)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word Apicurio uses on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;
            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                match s {
                    $($word => Ok($name::$variant),)+
                    _ => Err(UnknownWord {
                        kind: $kind,
                        value: s.to_owned(),
                        expected: concat!($($word, ", "),+),
                    }),
                }
            }
        }
    };
}

word_enum!(
    /// The kinds of rule a registry enforces when content is added.
    RuleType, "rule type" {
        /// The content must parse (config `FULL`, `SYNTAX_ONLY` or `NONE`).
        Validity => "VALIDITY",
        /// A new version must be compatible with earlier ones (config: a [`CompatibilityLevel`]).
        Compatibility => "COMPATIBILITY",
        /// References must resolve. Accepted and stored, not enforced by the embedded registry.
        Integrity => "INTEGRITY",
    }
);

word_enum!(
    /// The config of a `COMPATIBILITY` rule: which earlier versions a new one is
    /// checked against, and in which direction data must stay readable.
    CompatibilityLevel, "compatibility level" {
        /// The new schema can read data written with the latest version.
        Backward => "BACKWARD",
        /// The new schema can read data written with every earlier version.
        BackwardTransitive => "BACKWARD_TRANSITIVE",
        /// The latest version can read data written with the new schema.
        Forward => "FORWARD",
        /// Every earlier version can read data written with the new schema.
        ForwardTransitive => "FORWARD_TRANSITIVE",
        /// Backward and forward against the latest version.
        Full => "FULL",
        /// Backward and forward against every earlier version.
        FullTransitive => "FULL_TRANSITIVE",
        /// No check.
        None => "NONE",
    }
);

word_enum!(
    /// The config of a `VALIDITY` rule.
    ValidityLevel, "validity level" {
        /// The content must be a valid schema.
        Full => "FULL",
        /// The content must be well-formed; for Avro the same as `FULL`.
        SyntaxOnly => "SYNTAX_ONLY",
        /// No check.
        None => "NONE",
    }
);

word_enum!(
    /// What `POST /groups/{groupId}/artifacts` does when the artifact exists.
    IfArtifactExists, "ifExists value" {
        /// Reject with 409 (Apicurio's default).
        Fail => "FAIL",
        /// Add the content as a new version.
        CreateVersion => "CREATE_VERSION",
        /// Return the version with the same content, or add a new one.
        FindOrCreateVersion => "FIND_OR_CREATE_VERSION",
    }
);

word_enum!(
    /// The state of an artifact version.
    VersionState, "version state" {
        /// Usable.
        Enabled => "ENABLED",
        /// Hidden from "latest" lookups.
        Disabled => "DISABLED",
        /// Usable, but flagged.
        Deprecated => "DEPRECATED",
        /// Not yet published.
        Draft => "DRAFT",
    }
);

/// User-defined key/value labels on groups, artifacts and versions.
pub type Labels = BTreeMap<String, String>;

fn is_empty_labels(labels: &Labels) -> bool {
    labels.is_empty()
}

/// A reference from one artifact version to another (Avro named types in
/// other artifacts). Stored and echoed; the embedded registry does not resolve them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    pub artifact_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The content of a version: the schema text and its media type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionContent {
    pub content: String,
    #[serde(default = "default_content_type")]
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<ArtifactReference>,
}

fn default_content_type() -> String {
    CONTENT_TYPE_JSON.to_owned()
}

impl VersionContent {
    /// Avro schema text as Apicurio expects it.
    pub fn avro(schema: &str) -> Self {
        Self {
            content: schema.to_owned(),
            content_type: CONTENT_TYPE_JSON.to_owned(),
            references: Vec::new(),
        }
    }
}

/// Body of `POST .../versions`, and the `firstVersion` of a new artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateVersion {
    /// The version name; the registry numbers versions `1`, `2`, … when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub content: VersionContent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "is_empty_labels")]
    pub labels: Labels,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_draft: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<String>,
}

impl CreateVersion {
    /// A version holding Avro schema text, named by the registry.
    pub fn avro(schema: &str) -> Self {
        Self {
            version: None,
            content: VersionContent::avro(schema),
            name: None,
            description: None,
            labels: Labels::new(),
            is_draft: None,
            branches: Vec::new(),
        }
    }
}

/// Body of `POST /groups/{groupId}/artifacts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateArtifact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "is_empty_labels")]
    pub labels: Labels,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_version: Option<CreateVersion>,
}

impl CreateArtifact {
    /// An Avro artifact with its first version.
    pub fn avro(artifact_id: &str, schema: &str) -> Self {
        Self {
            artifact_id: Some(artifact_id.to_owned()),
            artifact_type: Some(ARTIFACT_TYPE_AVRO.to_owned()),
            name: None,
            description: None,
            labels: Labels::new(),
            first_version: Some(CreateVersion::avro(schema)),
        }
    }
}

/// An artifact: a named, versioned schema in a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactMetaData {
    pub group_id: String,
    pub artifact_id: String,
    #[serde(default)]
    pub artifact_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_by: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_on: Option<String>,
    #[serde(default, skip_serializing_if = "is_empty_labels")]
    pub labels: Labels,
}

/// One version of an artifact, with the two ids a wire frame can carry.
/// Apicurio uses the same shape for `SearchedVersion` in version listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionMetaData {
    pub group_id: String,
    pub artifact_id: String,
    pub version: String,
    #[serde(default)]
    pub artifact_type: String,
    /// Unique per version across the registry.
    pub global_id: u64,
    /// Shared by every version with byte-identical content; what Apicurio v3
    /// serdes write after the magic byte.
    pub content_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<VersionState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_by: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_on: Option<String>,
    #[serde(default, skip_serializing_if = "is_empty_labels")]
    pub labels: Labels,
}

/// `SearchedVersion` has the same fields as [`VersionMetaData`].
pub type SearchedVersion = VersionMetaData;

/// `SearchedArtifact` has the same fields as [`ArtifactMetaData`].
pub type SearchedArtifact = ArtifactMetaData;

/// Response of `POST /groups/{groupId}/artifacts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateArtifactResponse {
    pub artifact: ArtifactMetaData,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<VersionMetaData>,
}

/// Response of `GET .../versions`: one page, and the total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionSearchResults {
    pub count: u64,
    pub versions: Vec<SearchedVersion>,
}

/// Response of `GET /groups/{groupId}/artifacts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactSearchResults {
    pub count: u64,
    pub artifacts: Vec<SearchedArtifact>,
}

/// A group of artifacts; rules set on it apply to its artifacts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupMetaData {
    pub group_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_by: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_on: Option<String>,
    #[serde(default, skip_serializing_if = "is_empty_labels")]
    pub labels: Labels,
}

/// Body of `POST /groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateGroup {
    pub group_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "is_empty_labels")]
    pub labels: Labels,
}

/// Response of `GET /groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSearchResults {
    pub count: u64,
    pub groups: Vec<GroupMetaData>,
}

/// A rule and its config, as `GET`/`PUT .../rules/{ruleType}` exchange it and
/// `POST .../rules` (`CreateRule`) takes it. `PUT` may leave out the type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_type: Option<RuleType>,
    pub config: String,
}

impl Rule {
    /// A `COMPATIBILITY` rule at `level`.
    pub fn compatibility(level: CompatibilityLevel) -> Self {
        Self {
            rule_type: Some(RuleType::Compatibility),
            config: level.as_str().to_owned(),
        }
    }
}

/// One reason a rule rejected content: what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleViolationCause {
    #[serde(default)]
    pub description: String,
    /// Where in the schema, as a path such as `/fields/region`.
    #[serde(default)]
    pub context: String,
}

impl fmt::Display for RuleViolationCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.context.is_empty() {
            f.write_str(&self.description)
        } else {
            write!(f, "{} (at {})", self.description, self.context)
        }
    }
}

/// An RFC 7807 problem, as Apicurio answers every error. A rule violation
/// (409) adds `causes`; the embedded registry also adds the rule and its
/// config as the extension members `ruleType` and `ruleConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProblemDetails {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The server-side exception name, e.g. `RuleViolationException`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causes: Option<Vec<RuleViolationCause>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_type: Option<RuleType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_config: Option<String>,
}

/// Response of `GET /system/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemInfo {
    pub name: String,
    pub description: String,
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_artifact_serializes_like_apicurio() {
        let body = serde_json::to_value(CreateArtifact::avro("a", "\"string\"")).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "artifactId": "a",
                "artifactType": "AVRO",
                "firstVersion": {"content": {"content": "\"string\"", "contentType": "application/json"}}
            })
        );
    }

    #[test]
    fn words_round_trip_and_reject_unknown_values() {
        for level in CompatibilityLevel::ALL {
            assert_eq!(level.as_str().parse::<CompatibilityLevel>(), Ok(*level));
        }
        let err = "SIDEWAYS".parse::<CompatibilityLevel>().unwrap_err();
        assert!(err.to_string().starts_with(
            "'SIDEWAYS' is not a valid compatibility level; expected one of: BACKWARD, "
        ));
        assert_eq!(
            serde_json::to_string(&RuleType::Compatibility).unwrap(),
            "\"COMPATIBILITY\""
        );
    }

    #[test]
    fn version_metadata_reads_apicurio_output_with_unknown_fields() {
        let v: VersionMetaData = serde_json::from_value(serde_json::json!({
            "groupId": "g", "artifactId": "a", "version": "1", "artifactType": "AVRO",
            "globalId": 7, "contentId": 3, "state": "ENABLED", "owner": "",
            "createdOn": "2026-01-01T00:00:00Z", "someFutureField": true
        }))
        .unwrap();
        assert_eq!((v.global_id, v.content_id), (7, 3));
        assert_eq!(v.state, Some(VersionState::Enabled));
    }
}
