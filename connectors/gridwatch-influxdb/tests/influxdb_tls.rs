//! `tls.ca_cert` and `tls.insecure_skip_verify` against a real `influxd`
//! serving HTTPS with a certificate from a private CA made by `openssl`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Influxd, InfluxdOptions};
use gridwatch_connector::testkit::anomaly_record;
use gridwatch_connector::{RetryPolicy, deliver};
use gridwatch_contracts::model::reason;
use gridwatch_influxdb::{InfluxDbConfig, InfluxDbError, InfluxDbSink};

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn make_certificates(dir: &Path) -> Option<()> {
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let ok = run(&[
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=gridwatch test CA",
        "-keyout", "ca.key", "-out", "ca.pem",
    ]) && run(&[
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
        "-out", "server.csr",
    ]) && std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .is_ok()
        && run(&[
            "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem",
        ]);
    ok.then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca_and_with_verification_off() {
    let certs = tempfile::tempdir().unwrap();
    if make_certificates(certs.path()).is_none() {
        eprintln!(
            "SKIPPED: openssl could not make test certificates (is the openssl CLI installed?)"
        );
        return;
    }
    let Some(server) = Influxd::start(InfluxdOptions {
        tls: Some((
            certs.path().join("server.pem"),
            certs.path().join("server.key"),
        )),
        ..InfluxdOptions::default()
    })
    .await
    else {
        return;
    };
    server.create_database("grid").await;
    let policy = RetryPolicy {
        initial_backoff: Duration::from_millis(5),
        max_retries: 1,
        ..RetryPolicy::default()
    };

    // Not trusted: a TLS failure, treated like any connection failure.
    let config = InfluxDbConfig::v1(server.base(), "grid");
    let mut sink = InfluxDbSink::new(&config).unwrap();
    let out = deliver(&mut sink, &[anomaly_record("anomalies", 0, 0, 1)], &policy).await;
    assert_eq!(out.dead_letters.len(), 1);
    assert_eq!(out.dead_letters[0].reason, reason::RETRIES_EXHAUSTED);
    assert!(
        out.dead_letters[0]
            .message
            .to_lowercase()
            .contains("certificate"),
        "{}",
        out.dead_letters[0].message
    );

    // Trusted through tls.ca_cert.
    let mut config = InfluxDbConfig::v1(server.base(), "grid");
    config.tls.ca_cert = Some(certs.path().join("ca.pem"));
    let mut sink = InfluxDbSink::new(&config).unwrap();
    let out = deliver(&mut sink, &[anomaly_record("anomalies", 0, 1, 1)], &policy).await;
    assert_eq!(out.written, 1, "{:?}", out.dead_letters.first());

    // Not verified at all.
    let mut config = InfluxDbConfig::v1(server.base(), "grid");
    config.tls.insecure_skip_verify = true;
    let mut sink = InfluxDbSink::new(&config).unwrap();
    let out = deliver(&mut sink, &[anomaly_record("anomalies", 0, 2, 1)], &policy).await;
    assert_eq!(out.written, 1, "{:?}", out.dead_letters.first());

    let rows = server
        .select("grid", "SELECT source_offset FROM anomalies")
        .await;
    let mut got: Vec<u64> = rows
        .iter()
        .map(|r| r["source_offset"].as_u64().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, [1, 2]);

    // A CA file that is not PEM stops construction with the key's name.
    let mut config = InfluxDbConfig::v1(server.base(), "grid");
    config.tls.ca_cert = Some(certs.path().join("ext.cnf"));
    let e = InfluxDbSink::new(&config).unwrap_err();
    assert!(matches!(e, InfluxDbError::CaCert { .. }), "{e}");
    assert!(e.to_string().starts_with("tls.ca_cert "), "{e}");
}
