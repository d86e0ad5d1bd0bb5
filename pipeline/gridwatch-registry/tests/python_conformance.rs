//! Conformance against Apicurio's own Python SDK and fastavro: the embedded
//! registry must serve what `apicurioregistrysdk` expects, and Gridwatch's
//! framed Avro must be what a Python producer or consumer reads and writes.
//!
//! The interpreter is `$GRIDWATCH_PYTHON`, else the test venv at
//! `$HOME/.cache/gridwatch/venv` (made by `scripts/setup-test-env`), else
//! `python3`. Missing packages fail the test with the command that installs them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::{MeterStatus, SensorReading};
use gridwatch_registry::{
    CompatibilityLevel, EmbeddedRegistry, RegistryClient, RegistryConfig, RuleScope, SchemaId,
    V3_BASE_PATH, register_contract_schemas, router,
};
use tokio::process::Command;

const GROUP: &str = "gridwatch";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate is two levels below the workspace root")
        .to_owned()
}

fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("GRIDWATCH_PYTHON") {
        return python.into();
    }
    if let Some(home) = std::env::var_os("HOME") {
        let venv = Path::new(&home).join(".cache/gridwatch/venv/bin/python");
        if venv.exists() {
            return venv;
        }
    }
    "python3".into()
}

async fn require_packages(python: &Path) {
    let probe = Command::new(python)
        .args(["-c", "import apicurioregistrysdk, fastavro, kiota_http"])
        .output()
        .await;
    let missing = match probe {
        Ok(out) if out.status.success() => return,
        Ok(out) => String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("no error output")
            .to_owned(),
        Err(e) => format!("cannot run {}: {e}", python.display()),
    };
    panic!(
        "The registry conformance test needs Apicurio's Python SDK and fastavro, which {} cannot \
         import ({missing}).\nInstall them with `scripts/setup-test-env` (a venv at \
         $HOME/.cache/gridwatch/venv), or:\n  python3 -m venv ~/.cache/gridwatch/venv && \
         ~/.cache/gridwatch/venv/bin/pip install -r tests/python/requirements.txt\nor point \
         GRIDWATCH_PYTHON at an interpreter that has them.",
        python.display()
    );
}

fn gridwatch_reading() -> SensorReading {
    SensorReading {
        meter_id: "substation-3/feeder-b/meter-0117".into(),
        timestamp: 1_767_225_600_500,
        voltage: 230.125,
        current: 12.75,
        temperature: 40.5,
        status: MeterStatus::Failure,
    }
}

#[tokio::test]
async fn apicurio_python_sdk_and_fastavro_agree_with_gridwatch() {
    let python = python();
    require_packages(&python).await;

    let dir = tempfile::tempdir().unwrap();
    let registry = EmbeddedRegistry::open(dir.path()).await.unwrap();
    let app = Router::new().nest(V3_BASE_PATH, router(registry));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let root: url::Url = format!("http://{addr}").parse().unwrap();

    let config = RegistryConfig {
        url: Some(root.clone()),
        ..RegistryConfig::default()
    };
    let client = RegistryClient::new(&config).unwrap();
    client
        .set_compatibility(
            &RuleScope::Group(GROUP.into()),
            CompatibilityLevel::Backward,
        )
        .await
        .unwrap();
    let ids = register_contract_schemas(&client, GROUP).await.unwrap();
    let content_id = ids.content_id("io.gridwatch.SensorReading").unwrap();

    // Gridwatch frames a reading; Python decodes it.
    let reading = gridwatch_reading();
    let mut frame = Vec::new();
    framing::write_header(&mut frame, content_id, IdWidth::ContentId4);
    reading.encode_into(&mut frame).unwrap();
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    let expected = serde_json::json!({
        "meter_id": reading.meter_id,
        "timestamp": reading.timestamp,
        "voltage": reading.voltage,
        "current": reading.current,
        "temperature": reading.temperature,
        "status": "FAILURE",
    });

    let script = workspace_root().join("tests/python/registry_conformance.py");
    let run = Command::new(&python)
        .arg(&script)
        .args(["--base-url", &format!("{root}apis/registry/v3")])
        .args(["--group", GROUP])
        .args(["--frame-hex", &hex])
        .args(["--expected", &expected.to_string()])
        .env("NO_PROXY", "127.0.0.1,localhost")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the conformance script finishes within two minutes")
        .expect("the conformance script starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        script.display(),
        out.status
    );
    let report: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("the script's last line is its JSON report:\n{stdout}"));
    assert_eq!(report["gridwatchContentId"], content_id);

    // Python registered an evolved SensorReading (version 2, one more field,
    // with a default: the group's BACKWARD rule accepts it) and framed a
    // reading with it; Gridwatch decodes it with that writer schema.
    assert_eq!(report["pythonVersion"], "2");
    let python_frame: Vec<u8> = (0..report["pythonFrameHex"].as_str().unwrap().len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&report["pythonFrameHex"].as_str().unwrap()[i..i + 2], 16).unwrap()
        })
        .collect();
    let framed = framing::parse(&python_frame, IdWidth::ContentId4).unwrap();
    assert_eq!(
        framed.schema_id,
        report["pythonContentId"].as_u64().unwrap()
    );
    assert_ne!(framed.schema_id, content_id, "a new writer schema");
    let writer = client
        .writer_schema(SchemaId::ContentId(framed.schema_id))
        .await
        .unwrap();
    let decoded = SensorReading::from_avro_with(framed.datum, &writer).unwrap();
    let sent = &report["pythonReading"];
    assert_eq!(
        decoded,
        SensorReading {
            meter_id: sent["meter_id"].as_str().unwrap().into(),
            timestamp: sent["timestamp"].as_i64().unwrap(),
            voltage: sent["voltage"].as_f64().unwrap(),
            current: sent["current"].as_f64().unwrap(),
            temperature: sent["temperature"].as_f64().unwrap(),
            status: MeterStatus::Degraded,
        }
    );
    let via_client: SensorReading = client
        .decode_framed(&python_frame, IdWidth::ContentId4)
        .await
        .unwrap();
    assert_eq!(via_client, decoded);
    // The version Python added is visible to Gridwatch's client too.
    let versions = client
        .list_versions(GROUP, "io.gridwatch.SensorReading")
        .await
        .unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(
        versions[1].global_id,
        report["pythonGlobalId"].as_u64().unwrap()
    );
}
