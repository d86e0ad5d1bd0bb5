//! The rustls client configuration for `mqtts://`.

use std::path::Path;
use std::sync::Arc;

use rumqttc::tokio_rustls::rustls::{
    self, ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

use crate::MqttError;
use crate::config::TlsConfig;

/// Builds the TLS settings from the configured PEM files.
///
/// The crypto provider is named explicitly rather than taken from the
/// process default, because other crates in the same binary enable a
/// different rustls provider and the default is then ambiguous.
pub(crate) fn client_config(tls: &TlsConfig) -> Result<rumqttc::TlsConfiguration, MqttError> {
    let mut roots = RootCertStore::empty();
    match &tls.ca_cert {
        Some(path) => {
            for cert in read_certs(path, "sources.mqtt.tls.ca_cert")? {
                roots.add(cert).map_err(|e| MqttError::Tls {
                    key: "sources.mqtt.tls.ca_cert",
                    message: e.to_string(),
                })?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(MqttError::Tls {
                    key: "sources.mqtt.tls.ca_cert",
                    message: "no system root certificates found; set tls.ca_cert".to_owned(),
                });
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError::Tls {
            key: "sources.mqtt.tls",
            message: e.to_string(),
        })?
        .with_root_certificates(roots);
    let config = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert, "sources.mqtt.tls.client_cert")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| MqttError::Tls {
                key: "sources.mqtt.tls.client_key",
                message: format!("{}: {e}", key.display()),
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| MqttError::Tls {
                    key: "sources.mqtt.tls.client_key",
                    message: e.to_string(),
                })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(rumqttc::TlsConfiguration::Rustls(Arc::new(config)))
}

fn read_certs(path: &Path, key: &'static str) -> Result<Vec<CertificateDer<'static>>, MqttError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| MqttError::Tls {
            key,
            message: format!("{}: {e}", path.display()),
        })?;
    if certs.is_empty() {
        return Err(MqttError::Tls {
            key,
            message: format!("{}: no PEM certificate in the file", path.display()),
        });
    }
    Ok(certs)
}
