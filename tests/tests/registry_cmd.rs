//! `gridwatch registry register` on the real binary, against the
//! Apicurio-compatible registry a running `gridwatch run` serves: run twice
//! (the second registers nothing new), ids checked with plain HTTP from
//! Python, and an incompatible contract refused with the rule named.

use std::process::{Command, Output, Stdio};

use gridwatch_tests::process::{Gridwatch, binary};
use gridwatch_tests::servers::python;

const ARTIFACTS: [&str; 5] = [
    "io.gridwatch.SensorReading",
    "io.gridwatch.AnomalyEvent",
    "io.gridwatch.DeadLetter",
    "io.gridwatch.ScoredReading",
    "io.gridwatch.ChainRecord",
];

fn register(args: &[&str]) -> Output {
    Command::new(binary())
        .args(["registry", "register"])
        .args(args)
        .env("GRIDWATCH_HTTP__LISTEN", "127.0.0.1:9")
        .env_remove("GRIDWATCH_REGISTRY__URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("gridwatch runs")
}

/// Kills the instance if the test fails before stopping it, so no
/// `gridwatch run` outlives a failed test.
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Plain HTTP from Python (urllib): every version of each artifact in the
/// group, and the content behind each contentId.
const CHECK: &str = r#"
import json, sys, urllib.request
base, group = sys.argv[1].rstrip("/") + "/apis/registry/v3", sys.argv[2]
def get(path):
    with urllib.request.urlopen(base + path) as r:
        return r.read()
out = {}
for artifact in sys.argv[3:]:
    versions = json.loads(get(f"/groups/{group}/artifacts/{artifact}/versions"))["versions"]
    out[artifact] = []
    for v in versions:
        content = json.loads(get(f"/ids/contentIds/{v['contentId']}"))
        # ChainRecord is a union: a JSON array of records.
        name = content["name"] if isinstance(content, dict) else "union"
        out[artifact].append({"version": v["version"], "globalId": v["globalId"],
                              "contentId": v["contentId"], "name": name})
print(json.dumps(out))
"#;

#[test]
fn register_is_idempotent_and_names_the_rule_it_breaks() {
    let ok = Command::new(python())
        .args(["-c", "import json, urllib.request"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("SKIPPED: {} does not run", python().display());
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gridwatch::start(&dir.path().join("data"), &["--no-simulator"], &[]);
    let mut guard = KillOnDrop(Some(gw.child.id()));
    let group = "register-cmd-test";

    // Without a registry URL there is nothing to register with.
    let out = register(&[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("registry.url"), "{}", stderr(&out));

    let run = || {
        let out = register(&["--url", &gw.url, "--group", group, "--json"]);
        assert!(out.status.success(), "register failed: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
        (v, stderr(&out))
    };
    let (first, log) = run();
    assert_eq!(first["new"], 5, "{first}\n{log}");
    assert!(log.contains("5 new, 0 already registered"), "{log}");
    let (second, log) = run();
    assert_eq!(
        second["new"], 0,
        "the second run registers nothing: {second}"
    );
    assert!(log.contains("0 new, 5 already registered"), "{log}");
    let ids = |v: &serde_json::Value| -> Vec<(String, u64, u64)> {
        v["schemas"]
            .as_array()
            .expect("schemas")
            .iter()
            .map(|s| {
                (
                    s["artifact_id"].as_str().expect("id").to_owned(),
                    s["global_id"].as_u64().expect("globalId"),
                    s["content_id"].as_u64().expect("contentId"),
                )
            })
            .collect()
    };
    assert_eq!(ids(&first), ids(&second), "same ids both times");
    assert!(
        second["schemas"]
            .as_array()
            .expect("schemas")
            .iter()
            .all(|s| s["status"] == "unchanged")
    );

    // The table form prints every artifact with its ids.
    let out = register(&["--url", &gw.url, "--group", group]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    for (artifact, global, content) in ids(&first) {
        let line = table
            .lines()
            .find(|l| l.starts_with(&artifact))
            .unwrap_or_else(|| panic!("{artifact} in {table}"));
        assert!(
            line.contains(&global.to_string()) && line.contains(&content.to_string()),
            "{line}"
        );
    }

    // An independent client sees one version per artifact, with those ids.
    let mut args = vec![gw.url.clone(), group.to_owned()];
    args.extend(ARTIFACTS.iter().map(|s| s.to_string()));
    let out = Command::new(python())
        .arg("-c")
        .arg(CHECK)
        .args(&args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for (artifact, global, content) in ids(&first) {
        let versions = seen[&artifact].as_array().expect("versions");
        assert_eq!(versions.len(), 1, "{artifact}: {versions:?}");
        assert_eq!(versions[0]["globalId"], global);
        assert_eq!(versions[0]["contentId"], content);
        let name = match artifact.rsplit('.').next().expect("name") {
            "ChainRecord" => "union",
            other => other,
        };
        assert_eq!(
            versions[0]["name"], name,
            "the content is the {name} schema"
        );
    }

    // A contract the group's BACKWARD rule refuses: an older SensorReading
    // without the fields ours adds (and gives no defaults for).
    let bad_group = "register-cmd-incompatible";
    let old = r#"{"type":"record","name":"SensorReading","namespace":"io.gridwatch","fields":[{"name":"meter_id","type":"string"}]}"#;
    let body = serde_json::json!({
        "artifactId": "io.gridwatch.SensorReading",
        "artifactType": "AVRO",
        "firstVersion": {"content": {"content": old, "contentType": "application/json"}},
    });
    let r = reqwest::blocking::Client::new()
        .post(format!(
            "{}/apis/registry/v3/groups/{bad_group}/artifacts",
            gw.url
        ))
        .json(&body)
        .send()
        .expect("registry answers");
    assert!(r.status().is_success(), "{}", r.text().unwrap_or_default());
    let out = register(&["--url", &gw.url, "--group", bad_group]);
    assert!(!out.status.success(), "an incompatible schema fails");
    let err = stderr(&out);
    assert!(
        err.contains("io.gridwatch.SensorReading") && err.contains("BACKWARD"),
        "the error names the schema and the rule: {err}"
    );
    println!("refused as expected: {err}");
    guard.0 = None;
    gw.stop();
}
