//! One handle over either API, chosen by configuration, so that the binary's
//! start-up and the decoders do not care which registry a deployment runs.

use std::sync::Arc;

use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use url::Url;

use crate::ccompat::CcompatClient;
use crate::client::{RegistryClient, RuleScope, SchemaId};
use crate::config::{ConfigError, RegistryApi, RegistryConfig};
use crate::error::RegistryError;
use crate::model::CompatibilityLevel;
use crate::register::{
    RegisteredIds, RegistrationError, register_contract_schemas, register_contract_schemas_ccompat,
};

/// A registry client of the kind `registry.api` names.
#[derive(Debug, Clone)]
pub enum SchemaRegistry {
    /// Apicurio Registry v3, external or embedded.
    Apicurio(RegistryClient),
    /// A Confluent-compatible registry.
    Ccompat(CcompatClient),
}

/// Start-up could not prepare the registry.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The group's compatibility rule could not be set.
    #[error("setting the {level} compatibility rule on group '{group}' failed: {source}")]
    Rule {
        group: String,
        level: CompatibilityLevel,
        #[source]
        source: RegistryError,
    },
    /// A contract could not be registered.
    #[error(transparent)]
    Register(#[from] RegistrationError),
}

impl StartupError {
    /// Whether start-up may try again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Rule { source, .. } => source.is_retryable(),
            Self::Register(e) => e.is_retryable(),
        }
    }
}

impl SchemaRegistry {
    /// A client for `config.url`, or for `embedded` (the binary's own
    /// listener root, where it mounts the embedded registry) when unset.
    pub fn connect(config: &RegistryConfig, embedded: Option<Url>) -> Result<Self, RegistryError> {
        config.validate()?;
        let url = config
            .url
            .clone()
            .or(embedded)
            .ok_or(ConfigError::MissingUrl)?;
        Ok(match config.api {
            RegistryApi::ApicurioV3 => Self::Apicurio(RegistryClient::with_url(config, url)?),
            RegistryApi::Ccompat => {
                let config = RegistryConfig {
                    url: Some(url),
                    ..config.clone()
                };
                Self::Ccompat(CcompatClient::new(&config)?)
            }
        })
    }

    /// Puts the configured compatibility rule on Gridwatch's group (Apicurio
    /// only: a Confluent registry keeps its own compatibility config) and
    /// registers every contract. Run before the first record is produced.
    pub async fn start_up(&self, config: &RegistryConfig) -> Result<RegisteredIds, StartupError> {
        match self {
            Self::Apicurio(client) => {
                if let Some(level) = config.compatibility {
                    client
                        .set_compatibility(&RuleScope::Group(config.group.clone()), level)
                        .await
                        .map_err(|source| StartupError::Rule {
                            group: config.group.clone(),
                            level,
                            source,
                        })?;
                }
                Ok(register_contract_schemas(client, &config.group).await?)
            }
            Self::Ccompat(client) => Ok(register_contract_schemas_ccompat(client).await?),
        }
    }

    /// The parsed writer schema for an id. Confluent registries have only
    /// 4-byte ids, so a legacy 8-byte globalId is refused for them.
    pub async fn writer_schema(
        &self,
        id: SchemaId,
    ) -> Result<Arc<serde_avro_fast::Schema>, RegistryError> {
        match (self, id) {
            (Self::Apicurio(client), id) => client.writer_schema(id).await,
            (Self::Ccompat(client), SchemaId::ContentId(n)) => client.writer_schema(n).await,
            (Self::Ccompat(_), SchemaId::GlobalId(n)) => Err(RegistryError::UnsupportedId {
                id: SchemaId::GlobalId(n).to_string(),
                api: "ccompat",
            }),
        }
    }

    /// Decodes a framed message with the writer schema its id names.
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
}
