//! Gridwatch's schema registry: a client for Apicurio Registry v3 (and for
//! Confluent-compatible registries), the start-up registration of
//! Gridwatch's Avro contracts, and an embedded Apicurio-compatible registry
//! so that a single `gridwatch` binary runs without a separate one.
//!
//! Records on the wire carry a schema id after a magic byte
//! ([`gridwatch_contracts::framing`]); this crate is where ids come from
//! (registration) and where they are turned back into writer schemas
//! (cached lookups), and it is what refuses a contract change that readers
//! could not follow (compatibility rules).
//!
//! - [`config`]: [`RegistryConfig`], where the registry is and how to reach it.
//! - [`model`]: Apicurio v3's JSON shapes, shared by client and server.
//! - [`client`]: [`RegistryClient`], the Apicurio v3 client: register, versions,
//!   ids, rules; cached lookups; retries with backoff; bearer or basic auth.
//! - [`ccompat`]: [`CcompatClient`], for Confluent Schema Registry and Karapace.
//! - [`register`]: [`register_contract_schemas`], run at start-up.
//! - [`connect`]: [`SchemaRegistry`], either client as `registry.api` says,
//!   with the whole start-up sequence and framed-record decoding.
//! - [`headers`]: schema ids in Kafka headers (`apicurio.value.contentId`).
//! - [`compat`]: Avro schema resolution, behind the `COMPATIBILITY` rule.
//! - [`server`]: [`EmbeddedRegistry`] and its axum
//!   [`router`], persisted as an append-only log.
//! - [`error`]: [`RegistryError`], each saying whether a retry can help.

pub mod ccompat;
pub mod client;
pub mod compat;
pub mod config;
pub mod connect;
pub mod error;
pub mod headers;
pub mod model;
pub mod register;
pub mod server;
mod transport;

pub use ccompat::{CCOMPAT_BASE_PATH, CcompatClient};
pub use client::{RegistryClient, RuleScope, SchemaId, V3_BASE_PATH};
pub use config::{Auth, ConfigError, RegistryApi, RegistryConfig, RetryConfig, Secret};
pub use connect::{SchemaRegistry, StartupError};
pub use error::{RegistryError, RuleViolation};
pub use model::{CompatibilityLevel, RuleType};
pub use register::{
    RegisteredIds, RegisteredSchema, RegistrationError, register_contract_schemas,
    register_contract_schemas_ccompat,
};
pub use server::{EmbeddedRegistry, StoreError, ccompat_router, router};
