//! `mqtts://` with a private CA and client certificates, and user name /
//! password authentication, against a real Mosquitto.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::{Broker, Recorder, mosquitto_available, wait_for};
use gridwatch_mqtt::{MqttConfig, MqttError, MqttSource, MqttStats, TlsConfig};
use tokio::sync::watch;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate.
fn make_certs(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=gridwatch-test-ca",
    ]);
    openssl(dir, &ca);
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let ext = format!("{name}.ext");
        let subj = format!("/CN={name}");
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
}

fn openssl_available() -> bool {
    let ok = Command::new("openssl").arg("version").output().is_ok();
    if !ok {
        eprintln!("SKIP: the openssl command is not installed; it makes the test certificates");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_a_private_ca_and_client_certificates() {
    if !mosquitto_available() || !openssl_available() {
        return;
    }
    let broker = Arc::new(Broker::start_with(|dir| {
        make_certs(dir);
        let d = dir.display();
        format!(
            "cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
             require_certificate true\n"
        )
    }));
    let dir = broker.dir.path().to_path_buf();

    let target = Arc::new(Recorder::default());
    let config = MqttConfig {
        url: format!("mqtts://127.0.0.1:{}", broker.port),
        client_id: "gw-tls".into(),
        tls: TlsConfig {
            ca_cert: Some(dir.join("ca.pem")),
            client_cert: Some(dir.join("client.pem")),
            client_key: Some(dir.join("client.key")),
        },
        ..MqttConfig::default()
    };
    let source = MqttSource::new(config).expect("valid TLS config");
    let stats = source.stats();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(source.run(Arc::clone(&target), rx));
    let s = Arc::clone(&stats);
    wait_for("a TLS subscription", || MqttStats::get(&s.subscribed) >= 1).await;

    let b = Arc::clone(&broker);
    let ca = dir.join("ca.pem").display().to_string();
    let cert = dir.join("client.pem").display().to_string();
    let key = dir.join("client.key").display().to_string();
    tokio::task::spawn_blocking(move || {
        b.publish_lines(
            "meters/m-1/readings",
            1,
            &["{\"tls\":true}".to_string()],
            &["--cafile", &ca, "--cert", &cert, "--key", &key],
        )
    })
    .await
    .unwrap();
    let t = Arc::clone(&target);
    wait_for("the TLS message", || t.count() >= 1).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(target.bodies(), vec![b"{\"tls\":true}".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_file_authenticates_and_a_wrong_password_is_a_permanent_error() {
    if !mosquitto_available() {
        return;
    }
    let broker = Broker::start_with(|dir| {
        let passwd = dir.join("passwd");
        let out = Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&passwd)
            .args(["gridwatch", "s3cret-pw"])
            .output()
            .expect("mosquitto_passwd");
        assert!(out.status.success());
        format!("password_file {}\n", passwd.display())
    });

    let secret = broker.path("mqtt-password");
    std::fs::write(&secret, "s3cret-pw\n").unwrap();
    let target = Arc::new(Recorder::default());
    let config = MqttConfig {
        url: broker.url(),
        client_id: "gw-auth".into(),
        username: Some("gridwatch".into()),
        password_file: Some(secret.clone()),
        ..MqttConfig::default()
    };
    let source = MqttSource::new(config.clone()).unwrap();
    let stats = source.stats();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(source.run(Arc::clone(&target), rx));
    let s = Arc::clone(&stats);
    wait_for("an authenticated subscription", || {
        MqttStats::get(&s.subscribed) >= 1
    })
    .await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();

    std::fs::write(&secret, "wrong").unwrap();
    let source = MqttSource::new(config).unwrap();
    let (_stop, rx) = watch::channel(false);
    let err = source
        .run(Arc::clone(&target), rx)
        .await
        .expect_err("refused");
    assert!(matches!(err, MqttError::Refused(_)), "{err}");
    assert!(
        !err.to_string().contains("wrong"),
        "the password is never shown: {err}"
    );
}
