//! Start-up registration of Gridwatch's own contracts.
//!
//! Every producer frames records with the id the registry gave its schema,
//! so the schemas must be registered before the first record is written. An
//! incompatible contract change must stop start-up with an error that names
//! the schema, the rule and the reason, instead of writing records nobody
//! downstream can read.

use std::fmt;

use gridwatch_contracts::schema;

use crate::ccompat::CcompatClient;
use crate::client::RegistryClient;
use crate::error::RegistryError;

/// The ids one of Gridwatch's schemas has in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredSchema {
    /// The artifact id (Apicurio) or subject (Confluent), e.g. `io.gridwatch.SensorReading`.
    pub artifact_id: String,
    /// The version name the registry gave it.
    pub version: String,
    /// The version's globalId (Apicurio v2-style 8-byte frames).
    pub global_id: u64,
    /// The contentId (Apicurio v3 and Confluent 4-byte frames).
    pub content_id: u64,
}

/// The ids of all of Gridwatch's schemas, as registered at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredIds {
    /// The group they were registered in (empty for a Confluent registry).
    pub group: String,
    /// One entry per schema, in the order of [`schema::ALL`].
    pub schemas: Vec<RegisteredSchema>,
}

impl RegisteredIds {
    /// The ids of one schema, by artifact id.
    pub fn get(&self, artifact_id: &str) -> Option<&RegisteredSchema> {
        self.schemas.iter().find(|s| s.artifact_id == artifact_id)
    }

    /// The contentId to frame records of this schema with.
    pub fn content_id(&self, artifact_id: &str) -> Option<u64> {
        self.get(artifact_id).map(|s| s.content_id)
    }
}

/// Registering one of the contracts failed.
#[derive(Debug, thiserror::Error)]
pub struct RegistrationError {
    /// The schema that could not be registered.
    pub artifact_id: String,
    /// The group it was registered in.
    pub group: String,
    /// Why.
    #[source]
    pub source: RegistryError,
}

impl RegistrationError {
    /// Whether start-up may try again (the registry was unreachable or
    /// overloaded); a rule violation is permanent until the schema changes.
    pub fn is_retryable(&self) -> bool {
        self.source.is_retryable()
    }
}

impl fmt::Display for RegistrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            // A violation already names the schema, its group, the rule and the reason.
            RegistryError::RuleViolation(v) => write!(f, "{v}"),
            other => write!(
                f,
                "registering schema '{}' in group '{}' failed: {other}",
                self.artifact_id, self.group
            ),
        }
    }
}

/// Registers every Gridwatch schema in `group` of an Apicurio registry
/// (find-or-create, so a restart finds the same ids) and returns the ids.
pub async fn register_contract_schemas(
    client: &RegistryClient,
    group: &str,
) -> Result<RegisteredIds, RegistrationError> {
    let mut schemas = Vec::with_capacity(schema::ALL.len());
    for (artifact_id, text) in schema::ALL {
        let version = client
            .register_avro(group, artifact_id, text)
            .await
            .map_err(|source| RegistrationError {
                artifact_id: artifact_id.to_owned(),
                group: group.to_owned(),
                source,
            })?;
        tracing::info!(
            group, artifact_id, version = %version.version, global_id = version.global_id,
            content_id = version.content_id, "Schema registered."
        );
        schemas.push(RegisteredSchema {
            artifact_id: artifact_id.to_owned(),
            version: version.version,
            global_id: version.global_id,
            content_id: version.content_id,
        });
    }
    Ok(RegisteredIds {
        group: group.to_owned(),
        schemas,
    })
}

/// Registers every Gridwatch schema with a Confluent-compatible registry,
/// one subject per schema named after its artifact id (the record-name
/// strategy). Confluent has one id per schema, so `global_id == content_id`.
pub async fn register_contract_schemas_ccompat(
    client: &CcompatClient,
) -> Result<RegisteredIds, RegistrationError> {
    let mut schemas = Vec::with_capacity(schema::ALL.len());
    for (subject, text) in schema::ALL {
        let id = client
            .register(subject, text)
            .await
            .map_err(|source| RegistrationError {
                artifact_id: subject.to_owned(),
                group: String::new(),
                source,
            })?;
        tracing::info!(subject, id, "Schema registered.");
        schemas.push(RegisteredSchema {
            artifact_id: subject.to_owned(),
            version: String::new(),
            global_id: id,
            content_id: id,
        });
    }
    Ok(RegisteredIds {
        group: String::new(),
        schemas,
    })
}
