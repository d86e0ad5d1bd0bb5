//! One write request: the URL of the chosen API, credentials, gzip, and
//! what the answer means for the records in it.

use std::error::Error as _;
use std::io::Write as _;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use gridwatch_connector::SinkError;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use url::Url;

use crate::InfluxDbError;
use crate::config::{Api, InfluxDbConfig, Secret};

/// Longest server message kept in an error (and so in a dead letter).
const MAX_MESSAGE: usize = 1000;

/// Why a request failed, sorted by what can be done about it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Failure {
    /// Retry the same request later: no answer, a timeout, 429 or a 5xx.
    Transient(String),
    /// Refused because of something in its lines: a line that does not
    /// parse, a field type conflict (400), or a body too large (413). A
    /// smaller request may pass, so the sink narrows it down.
    Lines(String),
    /// Refused whatever the lines: wrong database, bucket, org or
    /// credentials (401, 403, 404, other 4xx).
    Permanent(String),
}

impl From<Failure> for SinkError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Transient(m) => Self::Transient(m),
            Failure::Lines(m) | Failure::Permanent(m) => Self::Permanent(m),
        }
    }
}

/// Sends line-protocol bodies to one server, database or bucket.
pub(crate) struct Writer {
    http: reqwest::Client,
    url: Url,
    /// `Token …`, marked sensitive so no HTTP log shows it.
    token: Option<HeaderValue>,
    basic: Option<(String, Option<Secret>)>,
    gzip: bool,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("url", &self.url.as_str())
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("username", &self.basic.as_ref().map(|(u, _)| u))
            .field("gzip", &self.gzip)
            .finish()
    }
}

impl Writer {
    pub(crate) fn new(config: &InfluxDbConfig) -> Result<Self, InfluxDbError> {
        let mut url = config.url.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| InfluxDbError::Client("the URL cannot have a path".into()))?;
            path.pop_if_empty();
            match config.api {
                Api::V1 => path.push("write"),
                Api::V2 => path.extend(["api", "v2", "write"]),
            };
        }
        {
            let mut query = url.query_pairs_mut();
            query.clear();
            let mut opt = |k: &str, v: &Option<String>| {
                if let Some(v) = v {
                    query.append_pair(k, v);
                }
            };
            match config.api {
                Api::V1 => {
                    opt("db", &config.database);
                    opt("rp", &config.retention_policy);
                }
                Api::V2 => {
                    opt("org", &config.org);
                    opt("bucket", &config.bucket);
                }
            }
            query.append_pair("precision", "ms");
        }

        let token = match (&config.token, &config.token_file) {
            (Some(t), _) => Some(t.expose().to_owned()),
            (None, Some(path)) => Some(read_token(path)?),
            (None, None) => None,
        };
        let token = token
            .map(|t| {
                let mut v = HeaderValue::from_str(&format!("Token {t}")).map_err(|_| {
                    InfluxDbError::Client(
                        "the token holds characters not allowed in a header".into(),
                    )
                })?;
                v.set_sensitive(true);
                Ok::<_, InfluxDbError>(v)
            })
            .transpose()?;
        let basic = config
            .username
            .clone()
            .map(|u| (u, config.password.clone()));

        let mut http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("gridwatch-influxdb/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.tls.ca_cert {
            let pem = std::fs::read(path).map_err(|source| InfluxDbError::ReadFile {
                key: "tls.ca_cert",
                path: path.clone(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| InfluxDbError::CaCert { path: path.clone() })?;
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
        }
        if config.tls.insecure_skip_verify {
            tracing::warn!(url = %config.url, "InfluxDB sink accepts any TLS certificate (tls.insecure_skip_verify).");
            http = http.tls_danger_accept_invalid_certs(true);
        }
        let http = http
            .build()
            .map_err(|e| InfluxDbError::Client(error_chain(&e)))?;
        Ok(Self {
            http,
            url,
            token,
            basic,
            gzip: config.gzip,
        })
    }

    /// The write endpoint with its query, for logs (it holds no secret).
    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    /// Writes `lines` (newline-terminated line protocol) in one request.
    pub(crate) async fn write(&self, lines: &[u8]) -> Result<(), Failure> {
        let body = if self.gzip {
            gzip(lines).map_err(|e| Failure::Permanent(format!("gzip: {e}")))?
        } else {
            lines.to_vec()
        };
        let mut request = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body);
        if self.gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, token.clone());
        }
        if let Some((user, password)) = &self.basic {
            request = request.basic_auth(user, password.as_ref().map(Secret::expose));
        }
        let response = request
            .send()
            .await
            .map_err(|e| Failure::Transient(error_chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // 1.x puts the reason in a header as well as the JSON body.
        let header = response
            .headers()
            .get("x-influxdb-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await.unwrap_or_default();
        let reason = header.unwrap_or(body);
        Err(classify(status, &reason))
    }
}

/// What a refusal means. A 400 blames the lines only when the server says
/// so (a parse error, a type conflict, a partial write): otherwise it is
/// about the request as a whole and splitting it would only multiply it.
pub(crate) fn classify(status: StatusCode, reason: &str) -> Failure {
    let mut reason = reason.trim().to_owned();
    if reason.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        reason.push('…');
    }
    let message = format!("HTTP {}: {reason}", status.as_u16());
    let about_lines = {
        let r = reason.to_ascii_lowercase();
        [
            "unable to parse",
            "partial write",
            "field type conflict",
            "cannot parse",
            "invalid field",
            "invalid tag",
            "bad timestamp",
        ]
        .iter()
        .any(|m| r.contains(m))
    };
    match status.as_u16() {
        413 => Failure::Lines(message),
        400 if about_lines => Failure::Lines(message),
        s => match SinkError::from_http_status(s, &reason) {
            SinkError::Transient(_) => Failure::Transient(message),
            _ => Failure::Permanent(message),
        },
    }
}

fn gzip(lines: &[u8]) -> std::io::Result<Vec<u8>> {
    // Level 1: most of the size win at a fraction of level 6's CPU (see
    // benches/encode.rs), and the sink must keep up with the detector.
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(lines.len() / 4 + 64),
        Compression::fast(),
    );
    encoder.write_all(lines)?;
    encoder.finish()
}

fn read_token(path: &Path) -> Result<String, InfluxDbError> {
    let text = std::fs::read_to_string(path).map_err(|source| InfluxDbError::ReadFile {
        key: "token_file",
        path: path.to_owned(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(InfluxDbError::EmptyTokenFile {
            path: path.to_owned(),
        });
    }
    Ok(token.to_owned())
}

/// reqwest's own message is terse ("error sending request"); the causes
/// say what happened (connection refused, timed out, certificate…).
fn error_chain(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InfluxDbConfig;

    #[test]
    fn urls_of_both_apis_keep_a_path_prefix_and_hold_no_secret() {
        let mut c = InfluxDbConfig::v1("http://h:8086".parse().unwrap(), "grid db");
        c.retention_policy = Some("one week".into());
        c.username = Some("u".into());
        c.password = Some(Secret::new("pw-secret"));
        let w = Writer::new(&c).unwrap();
        assert_eq!(
            w.url().as_str(),
            "http://h:8086/write?db=grid+db&rp=one+week&precision=ms"
        );
        let c = InfluxDbConfig::v2(
            "https://h/influx/".parse().unwrap(),
            "o&1",
            "b",
            "tok-secret",
        );
        let w = Writer::new(&c).unwrap();
        assert_eq!(
            w.url().as_str(),
            "https://h/influx/api/v2/write?org=o%261&bucket=b&precision=ms"
        );
        let debug = format!("{w:?}");
        assert!(!debug.contains("tok-secret"), "{debug}");
    }

    #[test]
    fn token_file_is_read_and_trimmed_and_must_hold_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  file-token\n").unwrap();
        assert_eq!(read_token(&path).unwrap(), "file-token");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            read_token(&path),
            Err(InfluxDbError::EmptyTokenFile { .. })
        ));
        let e = read_token(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().starts_with("cannot read token_file "), "{e}");
    }

    #[test]
    fn statuses_are_sorted_by_what_can_be_done() {
        let s = |code| StatusCode::from_u16(code).unwrap();
        assert!(matches!(classify(s(503), "down"), Failure::Transient(_)));
        assert!(matches!(classify(s(429), ""), Failure::Transient(_)));
        assert!(matches!(
            classify(
                s(400),
                "partial write: unable to parse 'x': invalid field format dropped=0"
            ),
            Failure::Lines(_)
        ));
        assert!(matches!(classify(s(413), ""), Failure::Lines(_)));
        assert!(matches!(
            classify(s(400), "precision must be one of ns, us, ms, s"),
            Failure::Permanent(_)
        ));
        assert_eq!(
            classify(s(404), "database not found: \"x\"\n"),
            Failure::Permanent("HTTP 404: database not found: \"x\"".into())
        );
        assert!(matches!(classify(s(401), ""), Failure::Permanent(_)));
        let long = "é".repeat(2000);
        let Failure::Permanent(m) = classify(s(403), &long) else {
            panic!()
        };
        assert!(m.len() < 1100 && m.ends_with('…'));
    }
}
