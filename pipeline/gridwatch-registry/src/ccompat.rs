//! A client for the Confluent Schema Registry API, for users whose registry
//! is Confluent's or Karapace, or who point at Apicurio's `/apis/ccompat/v7`.
//!
//! Only what Gridwatch needs: register a subject version, and fetch a schema
//! by the id that follows the magic byte. Confluent's ids are 4 bytes wide,
//! so frames use [`IdWidth::ContentId4`](gridwatch_contracts::framing::IdWidth).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use gridwatch_contracts::codec::parse_schema;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::client::join;
use crate::config::{ConfigError, RegistryConfig};
use crate::error::RegistryError;
use crate::transport::{Dialect, Transport};

/// Apicurio's Confluent-compatible API path, for reference; Confluent and
/// Karapace serve the same API at their root.
pub const CCOMPAT_BASE_PATH: &str = "/apis/ccompat/v7";

const CONFLUENT_JSON: &str = "application/vnd.schemaregistry.v1+json";

/// Body of `POST /subjects/{subject}/versions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterSchemaRequest {
    /// The schema text.
    pub schema: String,
    /// `AVRO`; Confluent assumes it when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_type: Option<String>,
}

/// Answer of `POST /subjects/{subject}/versions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterSchemaResponse {
    /// The schema id to frame records with.
    pub id: u64,
}

/// Answer of `GET /schemas/ids/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaString {
    /// The schema text.
    pub schema: String,
    /// `AVRO` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_type: Option<String>,
}

/// A cheap-to-clone handle on a Confluent-compatible registry.
#[derive(Debug, Clone)]
pub struct CcompatClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    transport: Transport,
    base: Url,
    schemas: RwLock<HashMap<u64, Arc<str>>>,
    parsed: RwLock<HashMap<u64, Arc<serde_avro_fast::Schema>>>,
}

impl CcompatClient {
    /// A client for the registry at `config.url`, used as the API root:
    /// `http://karapace:8081`, or `http://apicurio:8080/apis/ccompat/v7`.
    pub fn new(config: &RegistryConfig) -> Result<Self, RegistryError> {
        config.validate()?;
        let base = config.url.clone().ok_or(ConfigError::MissingUrl)?;
        Ok(Self {
            inner: Arc::new(Inner {
                transport: Transport::new(config, Dialect::Confluent)?,
                base,
                schemas: RwLock::new(HashMap::new()),
                parsed: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// Registers `schema` under `subject` and returns its id; registering the
    /// same schema again returns the same id. An incompatible schema is a
    /// [`RegistryError::RuleViolation`].
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u64, RegistryError> {
        let url = join(&self.inner.base, &["subjects", subject, "versions"]);
        let body = RegisterSchemaRequest {
            schema: schema.to_owned(),
            schema_type: Some("AVRO".to_owned()),
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| invalid("POST", &url, "request", e))?;
        let answer = self
            .inner
            .transport
            .call(
                Method::POST,
                &url,
                Some((CONFLUENT_JSON, bytes)),
                CONFLUENT_JSON,
            )
            .await
            .map_err(|err| match err {
                RegistryError::RuleViolation(mut v) => {
                    v.artifact_id = Some(subject.to_owned());
                    RegistryError::RuleViolation(v)
                }
                other => other,
            })?;
        let response: RegisterSchemaResponse = serde_json::from_slice(&answer.body)
            .map_err(|e| invalid("POST", &url, "{\"id\": …}", e))?;
        Ok(response.id)
    }

    /// The schema text with this id (cached: ids never change content).
    pub async fn schema_by_id(&self, id: u64) -> Result<Arc<str>, RegistryError> {
        {
            let cache = self.inner.schemas.read().unwrap_or_else(|e| e.into_inner());
            if let Some(hit) = cache.get(&id) {
                return Ok(hit.clone());
            }
        }
        let url = join(&self.inner.base, &["schemas", "ids", &id.to_string()]);
        let answer = self
            .inner
            .transport
            .call(Method::GET, &url, None, CONFLUENT_JSON)
            .await?;
        let schema: SchemaString = serde_json::from_slice(&answer.body)
            .map_err(|e| invalid("GET", &url, "{\"schema\": …}", e))?;
        let text: Arc<str> = schema.schema.into();
        let mut cache = self
            .inner
            .schemas
            .write()
            .unwrap_or_else(|e| e.into_inner());
        cache.insert(id, text.clone());
        Ok(text)
    }
}

impl CcompatClient {
    /// The parsed schema with this id (cached), ready for
    /// [`AvroRecord::from_avro_with`](gridwatch_contracts::codec::AvroRecord::from_avro_with).
    pub async fn writer_schema(
        &self,
        id: u64,
    ) -> Result<Arc<serde_avro_fast::Schema>, RegistryError> {
        {
            let cache = self.inner.parsed.read().unwrap_or_else(|e| e.into_inner());
            if let Some(hit) = cache.get(&id) {
                return Ok(hit.clone());
            }
        }
        let text = self.schema_by_id(id).await?;
        let schema = Arc::new(parse_schema(&text).map_err(|source| RegistryError::Schema {
            id: format!("schema id {id}"),
            source,
        })?);
        let mut cache = self.inner.parsed.write().unwrap_or_else(|e| e.into_inner());
        cache.insert(id, schema.clone());
        Ok(schema)
    }
}

fn invalid(method: &str, url: &Url, expected: &'static str, e: serde_json::Error) -> RegistryError {
    RegistryError::InvalidResponse {
        method: method.into(),
        url: url.to_string(),
        expected,
        reason: e.to_string(),
    }
}
