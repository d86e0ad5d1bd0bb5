//! The lake's object store: one API for a local directory and for S3.
//!
//! `object_store` (Apache Arrow's) gives both behind one trait, shares the
//! HTTP and TLS stack (reqwest, rustls) the rest of Gridwatch already
//! builds, and writes local files atomically (a staged file renamed into
//! place, here with fsync), which the commit protocol relies on: an object
//! is either wholly there or not at all.

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{Certificate, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};

use crate::config::{Destination, LakeConfig, Secret};
use crate::error::LakeError;

/// A lake root: a store and the prefix every key goes under.
#[derive(Debug, Clone)]
pub(crate) struct Lake {
    store: Arc<dyn ObjectStore>,
    root: String,
    /// `file:///…` or `s3://bucket/prefix`, for logs (no credentials).
    pub(crate) display: String,
}

impl Lake {
    pub(crate) fn open(config: &LakeConfig, prefix: &str) -> Result<Self, LakeError> {
        config.validate(prefix)?;
        let key = |k: &str| format!("{prefix}.{k}");
        match config.destination(prefix)? {
            Destination::Local(dir) => {
                std::fs::create_dir_all(&dir).map_err(|source| LakeError::CreateDir {
                    path: dir.clone(),
                    source,
                })?;
                let store = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|source| LakeError::Store {
                        op: "open",
                        path: dir.display().to_string(),
                        source,
                    })?
                    .with_fsync(true);
                Ok(Self {
                    store: Arc::new(store),
                    root: String::new(),
                    display: format!("file://{}", dir.display()),
                })
            }
            Destination::S3 {
                bucket,
                prefix: root,
            } => {
                // Transient S3 faults are retried by the sink driver's
                // shared policy (FR-008); object_store's own retries are kept
                // short so that a lake outage surfaces within seconds
                // instead of its default three minutes.
                let retry = RetryConfig {
                    max_retries: 2,
                    retry_timeout: Duration::from_secs(15),
                    ..RetryConfig::default()
                };
                let mut options = ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(60));
                if let Some(ca) = &config.tls.ca_cert {
                    let pem = read(&key("tls.ca_cert"), ca)?;
                    for cert in Certificate::from_pem_bundle(&pem).map_err(|source| {
                        LakeError::Certificate {
                            key: key("tls.ca_cert"),
                            path: ca.clone(),
                            source,
                        }
                    })? {
                        options = options.with_root_certificate(cert);
                    }
                }
                let mut builder = AmazonS3Builder::from_env()
                    .with_client_options(options)
                    .with_retry(retry)
                    .with_bucket_name(&bucket)
                    .with_region(&config.region)
                    .with_virtual_hosted_style_request(
                        !config.path_style.unwrap_or(config.endpoint.is_some()),
                    );
                if let Some(endpoint) = &config.endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                if let Some(id) = secret(
                    &key("access_key_id_file"),
                    &config.access_key_id,
                    config.access_key_id_file.as_deref(),
                )? {
                    builder = builder.with_access_key_id(id.expose());
                }
                if let Some(secret) = secret(
                    &key("secret_access_key_file"),
                    &config.secret_access_key,
                    config.secret_access_key_file.as_deref(),
                )? {
                    builder = builder.with_secret_access_key(secret.expose());
                }
                let store = builder.build().map_err(|source| LakeError::Store {
                    op: "open",
                    path: format!("s3://{bucket}"),
                    source,
                })?;
                let display = if root.is_empty() {
                    format!("s3://{bucket}")
                } else {
                    format!("s3://{bucket}/{root}")
                };
                Ok(Self {
                    store: Arc::new(store),
                    root,
                    display,
                })
            }
        }
    }

    fn path(&self, rel: &str) -> Result<Path, LakeError> {
        let full = if self.root.is_empty() {
            rel.to_owned()
        } else {
            format!("{}/{rel}", self.root)
        };
        Path::parse(&full).map_err(|e| LakeError::Store {
            op: "name",
            path: full,
            source: e.into(),
        })
    }

    /// Writes a whole object, replacing any object of that name.
    pub(crate) async fn put(&self, rel: &str, bytes: Bytes) -> Result<(), LakeError> {
        let path = self.path(rel)?;
        self.store
            .put(&path, bytes.into())
            .await
            .map(drop)
            .map_err(|source| LakeError::Store {
                op: "put",
                path: rel.to_owned(),
                source,
            })
    }

    /// Reads a whole object; `None` if there is none.
    pub(crate) async fn get(&self, rel: &str) -> Result<Option<Bytes>, LakeError> {
        let path = self.path(rel)?;
        let store_error = |source| LakeError::Store {
            op: "get",
            path: rel.to_owned(),
            source,
        };
        match self.store.get(&path).await {
            Ok(result) => result.bytes().await.map(Some).map_err(store_error),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Every object under `rel_prefix` (a folder, relative to the lake
    /// root), recursively: its path relative to the root and its size. A
    /// prefix with nothing under it lists nothing.
    pub(crate) async fn list(&self, rel_prefix: &str) -> Result<Vec<(String, u64)>, LakeError> {
        use futures::TryStreamExt;
        let prefix = self.path(rel_prefix)?;
        let store_error = |source| LakeError::Store {
            op: "list",
            path: rel_prefix.to_owned(),
            source,
        };
        let listed: Vec<object_store::ObjectMeta> =
            match self.store.list(Some(&prefix)).try_collect().await {
                Ok(v) => v,
                Err(object_store::Error::NotFound { .. }) => Vec::new(),
                Err(e) => return Err(store_error(e)),
            };
        let root = if self.root.is_empty() {
            String::new()
        } else {
            format!("{}/", self.root)
        };
        Ok(listed
            .into_iter()
            .map(|m| {
                let full = m.location.to_string();
                let rel = full.strip_prefix(&root).unwrap_or(&full).to_owned();
                (rel, m.size)
            })
            .collect())
    }

    /// Deletes an object; deleting one that is not there succeeds.
    pub(crate) async fn delete(&self, rel: &str) -> Result<(), LakeError> {
        let path = self.path(rel)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(LakeError::Store {
                op: "delete",
                path: rel.to_owned(),
                source,
            }),
        }
    }
}

fn read(key: &str, path: &FsPath) -> Result<Vec<u8>, LakeError> {
    std::fs::read(path).map_err(|source| LakeError::ReadFile {
        key: key.to_owned(),
        path: path.to_owned(),
        source,
    })
}

/// The secret from the config value or its `_file`, trimmed of the
/// trailing newline that `echo` and editors leave.
fn secret(
    file_key: &str,
    value: &Option<Secret>,
    file: Option<&FsPath>,
) -> Result<Option<Secret>, LakeError> {
    if let Some(v) = value {
        return Ok(Some(v.clone()));
    }
    let Some(file) = file else {
        return Ok(None);
    };
    let bytes = read(file_key, file)?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(Some(Secret::new(text.trim_end_matches(['\r', '\n']))))
}
