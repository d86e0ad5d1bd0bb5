//! The client against the embedded registry, over real HTTP on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use gridwatch_contracts::codec::AvroRecord;
use gridwatch_contracts::framing::{self, IdWidth};
use gridwatch_contracts::{MeterStatus, SensorReading, schema};
use gridwatch_registry::model::{CreateVersion, RuleType, VersionContent};
use gridwatch_registry::{
    Auth, CCOMPAT_BASE_PATH, CcompatClient, CompatibilityLevel, EmbeddedRegistry, RegistryApi,
    RegistryClient, RegistryConfig, RegistryError, RetryConfig, RuleScope, SchemaId,
    SchemaRegistry, Secret, V3_BASE_PATH, ccompat_router, register_contract_schemas,
    register_contract_schemas_ccompat, router,
};
use tempfile::TempDir;
use url::Url;

const GROUP: &str = "gridwatch";

/// Serves `app` on an ephemeral loopback port; the task ends with the test's runtime.
async fn serve(app: Router) -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}").parse().unwrap()
}

async fn embedded() -> (TempDir, EmbeddedRegistry, Url) {
    let dir = tempfile::tempdir().unwrap();
    let registry = EmbeddedRegistry::open(dir.path()).await.unwrap();
    let app = Router::new()
        .nest(V3_BASE_PATH, router(registry.clone()))
        .nest(CCOMPAT_BASE_PATH, ccompat_router(registry.clone()));
    let url = serve(app).await;
    (dir, registry, url)
}

fn config(url: &Url) -> RegistryConfig {
    RegistryConfig {
        url: Some(url.clone()),
        retry: RetryConfig {
            max_retries: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        },
        ..RegistryConfig::default()
    }
}

fn client(url: &Url) -> RegistryClient {
    RegistryClient::new(&config(url)).unwrap()
}

fn reading() -> SensorReading {
    SensorReading {
        meter_id: "feeder-7-meter-42".into(),
        timestamp: 1_767_225_600_000,
        voltage: 229.8,
        current: 4.2,
        temperature: 31.5,
        status: MeterStatus::Ok,
    }
}

/// SensorReading plus one more field, spliced before the closing `]`.
fn sensor_reading_with(field: &str) -> String {
    let text = schema::SENSOR_READING.trim_end();
    let end = text.rfind(']').unwrap();
    format!("{},\n    {field}\n  ]\n}}", text[..end].trim_end())
}

#[tokio::test]
async fn registration_is_idempotent_and_ids_resolve_to_the_schemas() {
    let (_dir, _registry, url) = embedded().await;
    let client = client(&url);
    let first = register_contract_schemas(&client, GROUP).await.unwrap();
    assert_eq!(first.schemas.len(), schema::ALL.len());
    let again = register_contract_schemas(&client, GROUP).await.unwrap();
    assert_eq!(
        first, again,
        "find-or-create gives the same ids on a restart"
    );

    for ((artifact_id, text), ids) in schema::ALL.iter().zip(&first.schemas) {
        assert_eq!(ids.artifact_id, *artifact_id);
        assert_eq!(ids.version, "1");
        assert_eq!(
            &*client.content_by_global_id(ids.global_id).await.unwrap(),
            *text
        );
        assert_eq!(
            &*client.content_by_content_id(ids.content_id).await.unwrap(),
            *text
        );
        let versions = client.list_versions(GROUP, artifact_id).await.unwrap();
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].global_id, ids.global_id);
        assert_eq!(versions[0].artifact_type, "AVRO");
        let latest = client
            .version(GROUP, artifact_id, "branch=latest")
            .await
            .unwrap();
        assert_eq!(latest.content_id, ids.content_id);
    }
    let meta = client
        .artifact(GROUP, "io.gridwatch.SensorReading")
        .await
        .unwrap();
    assert_eq!(meta.group_id, GROUP);
    assert_eq!(meta.artifact_type, "AVRO");
}

#[tokio::test]
async fn versions_are_added_and_listed_across_pages() {
    let (_dir, _registry, url) = embedded().await;
    let client = client(&url);
    client
        .register_avro(GROUP, "many", r#"{"type":"fixed","name":"F0","size":1}"#)
        .await
        .unwrap();
    for n in 1..130 {
        let mut version =
            CreateVersion::avro(&format!(r#"{{"type":"fixed","name":"F{n}","size":1}}"#));
        if n == 129 {
            version.version = Some("final".into());
        }
        client
            .create_version(GROUP, "many", &version)
            .await
            .unwrap();
    }
    let versions = client.list_versions(GROUP, "many").await.unwrap();
    assert_eq!(versions.len(), 130, "more than one page of 100");
    assert_eq!(versions[0].version, "1");
    assert_eq!(versions[128].version, "129");
    assert_eq!(versions[129].version, "final");
    assert!(versions.windows(2).all(|w| w[0].global_id < w[1].global_id));
    let err = client
        .create_version(
            GROUP,
            "many",
            &CreateVersion {
                version: Some("final".into()),
                ..CreateVersion::avro(r#""string""#)
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409));
    assert!(
        err.rule_violation().is_none(),
        "a name clash is not a rule violation"
    );
}

#[tokio::test]
async fn rules_are_set_read_and_enforced_with_a_clear_error() {
    let (_dir, _registry, url) = embedded().await;
    let client = client(&url);
    let group = RuleScope::Group(GROUP.into());
    // The group does not exist yet: the client creates it.
    client
        .set_compatibility(&group, CompatibilityLevel::Full)
        .await
        .unwrap();
    // Setting it again replaces the config.
    client
        .set_compatibility(&group, CompatibilityLevel::Backward)
        .await
        .unwrap();
    assert_eq!(
        client.rules(&group).await.unwrap(),
        [RuleType::Compatibility]
    );
    let rule = client
        .rule(&group, RuleType::Compatibility)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rule.config, "BACKWARD");
    assert_eq!(
        client
            .rule(&RuleScope::Global, RuleType::Compatibility)
            .await
            .unwrap(),
        None
    );

    let ids = register_contract_schemas(&client, GROUP).await.unwrap();
    let artifact = "io.gridwatch.SensorReading";
    let (scope, rule) = client
        .effective_rule(GROUP, artifact, RuleType::Compatibility)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((scope, rule.config.as_str()), (group.clone(), "BACKWARD"));

    // Adding a field with a default: accepted as version 2.
    let evolved =
        sensor_reading_with(r#"{"name": "firmware", "type": "string", "default": "unknown"}"#);
    client
        .check_version(GROUP, artifact, &CreateVersion::avro(&evolved))
        .await
        .unwrap();
    let v2 = client
        .register_avro(GROUP, artifact, &evolved)
        .await
        .unwrap();
    assert_eq!(v2.version, "2");
    assert_ne!(v2.content_id, ids.content_id(artifact).unwrap());

    // Adding one without a default: refused, naming schema, rule and reason.
    let broken = sensor_reading_with(r#"{"name": "region", "type": "string"}"#);
    let err = client
        .register_avro(GROUP, artifact, &broken)
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    let violation = err.rule_violation().expect("a rule violation");
    assert_eq!(violation.rule_type, Some(RuleType::Compatibility));
    assert_eq!(violation.rule_config.as_deref(), Some("BACKWARD"));
    assert_eq!(violation.causes[0].context, "/fields/region");
    assert_eq!(
        err.to_string(),
        "schema 'io.gridwatch.SensorReading' in group 'gridwatch' was rejected by the registry's \
         COMPATIBILITY rule (BACKWARD): the new schema cannot read data written with version 2: \
         field 'region' is not in the writer's schema and has no default (at /fields/region)"
    );
    // The dry run says the same without storing anything.
    let dry = client
        .check_version(GROUP, artifact, &CreateVersion::avro(&broken))
        .await
        .unwrap_err();
    assert_eq!(dry.rule_violation().unwrap().causes, violation.causes);
    assert_eq!(
        client.list_versions(GROUP, artifact).await.unwrap().len(),
        2
    );

    // An artifact rule overrides the group's.
    let artifact_scope = RuleScope::Artifact {
        group: GROUP.into(),
        artifact_id: artifact.into(),
    };
    client
        .set_compatibility(&artifact_scope, CompatibilityLevel::None)
        .await
        .unwrap();
    client
        .register_avro(GROUP, artifact, &broken)
        .await
        .unwrap();
    client
        .delete_rule(&artifact_scope, RuleType::Compatibility)
        .await
        .unwrap();
    assert_eq!(client.rules(&artifact_scope).await.unwrap(), []);

    // Global rules are the fallback.
    client
        .set_rule(&RuleScope::Global, RuleType::Validity, "FULL")
        .await
        .unwrap();
    let err = client
        .create_version(GROUP, artifact, &CreateVersion::avro("{not avro"))
        .await
        .unwrap_err();
    let violation = err.rule_violation().unwrap();
    assert_eq!(violation.rule_type, Some(RuleType::Validity));
    assert_eq!(violation.rule_config.as_deref(), Some("FULL"));
}

#[tokio::test]
async fn framed_records_decode_with_the_writer_schema_from_the_registry() {
    let (_dir, _registry, url) = embedded().await;
    let client = client(&url);
    let ids = register_contract_schemas(&client, GROUP).await.unwrap();
    let sensor = ids.get("io.gridwatch.SensorReading").unwrap();
    for (id, width) in [
        (sensor.content_id, IdWidth::ContentId4),
        (sensor.global_id, IdWidth::GlobalId8),
    ] {
        let mut frame = Vec::new();
        framing::write_header(&mut frame, id, width);
        reading().encode_into(&mut frame).unwrap();
        let decoded: SensorReading = client.decode_framed(&frame, width).await.unwrap();
        assert_eq!(decoded, reading());
    }
    let schema = client
        .writer_schema(SchemaId::ContentId(sensor.content_id))
        .await
        .unwrap();
    let again = client
        .writer_schema(SchemaId::ContentId(sensor.content_id))
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&schema, &again), "parsed schemas are cached");

    let missing = client.content_by_content_id(9_999).await.unwrap_err();
    assert!(
        matches!(missing, RegistryError::NotFound { .. }),
        "{missing}"
    );
    assert!(!missing.is_retryable());
    let bad_frame = client
        .decode_framed::<SensorReading>(&[1, 0, 0, 0, 1], IdWidth::ContentId4)
        .await
        .unwrap_err();
    assert!(matches!(bad_frame, RegistryError::Framing(_)));
}

/// A request counter and the answer for the n-th request.
type Script = (Arc<AtomicUsize>, fn(usize) -> Response);

/// Counts requests and answers each with what `respond` says for that count.
async fn scripted(respond: fn(usize) -> Response) -> (Url, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .fallback(|State((hits, respond)): State<Script>| async move {
            respond(hits.fetch_add(1, Ordering::SeqCst) + 1)
        })
        .with_state((hits.clone(), respond));
    (serve(app).await, hits)
}

#[tokio::test]
async fn retryable_failures_are_retried_with_backoff() {
    let (url, hits) = scripted(|n| match n {
        1 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        2 => (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "0")]).into_response(),
        _ => "\"string\"".into_response(),
    })
    .await;
    let text = client(&url).content_by_content_id(1).await.unwrap();
    assert_eq!(&*text, "\"string\"");
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    // Out of retries: the last error, still marked retryable for the caller.
    let (url, hits) = scripted(|_| StatusCode::BAD_GATEWAY.into_response()).await;
    let err = client(&url).content_by_content_id(1).await.unwrap_err();
    assert_eq!(err.status(), Some(502));
    assert!(err.is_retryable());
    assert_eq!(hits.load(Ordering::SeqCst), 3, "one try and two retries");
}

#[tokio::test]
async fn permanent_failures_are_not_retried() {
    let (url, hits) = scripted(|_| {
        (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/problem+json")],
            r#"{"status":400,"title":"Bad id","detail":"Bad id","name":"BadRequestException"}"#,
        )
            .into_response()
    })
    .await;
    let err = client(&url).content_by_content_id(1).await.unwrap_err();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert!(!err.is_retryable());
    assert!(err.to_string().ends_with("answered 400: Bad id"), "{err}");
}

#[tokio::test]
async fn connect_errors_are_retryable() {
    // Bind and drop a listener to find a port nothing listens on.
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let url: Url = format!("http://127.0.0.1:{port}").parse().unwrap();
    let mut config = config(&url);
    config.retry.max_retries = 0;
    let err = RegistryClient::new(&config)
        .unwrap()
        .content_by_global_id(1)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Connect { .. }), "{err}");
    assert!(err.is_retryable());
}

/// Wraps the embedded registry in a gate that wants exactly `expected`.
async fn gated(expected: &'static str) -> (TempDir, Url, Arc<AtomicUsize>) {
    let (dir, registry, _) = embedded().await;
    let refused = Arc::new(AtomicUsize::new(0));
    let counter = refused.clone();
    let app = Router::new()
        .nest(V3_BASE_PATH, router(registry))
        .layer(from_fn(move |request: Request, next: Next| {
            let counter = counter.clone();
            async move {
                let given = request.headers().get(header::AUTHORIZATION).cloned();
                if given.as_ref().and_then(|v| v.to_str().ok()) == Some(expected) {
                    next.run(request).await
                } else {
                    counter.fetch_add(1, Ordering::SeqCst);
                    StatusCode::UNAUTHORIZED.into_response()
                }
            }
        }));
    (dir, serve(app).await, refused)
}

#[tokio::test]
async fn bearer_and_basic_credentials_are_sent_when_configured() {
    let (_dir, url, refused) = gated("Bearer s3cret-token").await;
    let mut config = config(&url);
    config.auth = Some(Auth::Bearer {
        token: Secret::new("s3cret-token"),
    });
    let client = RegistryClient::new(&config).unwrap();
    register_contract_schemas(&client, GROUP).await.unwrap();
    assert_eq!(refused.load(Ordering::SeqCst), 0);

    let anonymous = self::client(&url);
    let err = anonymous
        .list_versions(GROUP, "io.gridwatch.SensorReading")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(!err.is_retryable());
    assert_eq!(refused.load(Ordering::SeqCst), 1, "a 401 is not retried");

    // "svc:pw" in base64.
    let (_dir, url, refused) = gated("Basic c3ZjOnB3").await;
    let mut config = self::config(&url);
    config.auth = Some(Auth::Basic {
        username: "svc".into(),
        password: Secret::new("pw"),
    });
    let client = RegistryClient::new(&config).unwrap();
    client
        .register_avro(GROUP, "a", r#""string""#)
        .await
        .unwrap();
    assert_eq!(refused.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn errors_are_problem_documents() {
    let (_dir, _registry, url) = embedded().await;
    let http = reqwest::Client::new();
    let response = http
        .get(format!("{url}apis/registry/v3/groups/nope/artifacts/nada"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], 404);
    assert_eq!(body["name"], "ArtifactNotFoundException");
    assert_eq!(
        body["title"],
        "No artifact with ID 'nada' in group 'nope' was found."
    );
    // The raw content endpoints serve schema text, not JSON-wrapped text.
    let client = client(&url);
    let v = client
        .register_avro(GROUP, "s", r#""string""#)
        .await
        .unwrap();
    let raw = http
        .get(format!(
            "{url}apis/registry/v3/ids/globalIds/{}",
            v.global_id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(raw.text().await.unwrap(), r#""string""#);
    let references: serde_json::Value = http
        .get(format!(
            "{url}apis/registry/v3/ids/contentIds/{}/references",
            v.content_id
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(references, serde_json::json!([]));
    let body = http
        .get(format!(
            "{url}apis/registry/v3/groups/{GROUP}/artifacts/s/versions/1/content"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, r#""string""#);
}

#[tokio::test]
async fn confluent_api_registers_and_fetches_by_content_id() {
    let (_dir, _registry, url) = embedded().await;
    let mut config = config(&url.join(CCOMPAT_BASE_PATH).unwrap());
    config.api = RegistryApi::Ccompat;
    let ccompat = CcompatClient::new(&config).unwrap();
    let ids = register_contract_schemas_ccompat(&ccompat).await.unwrap();
    let again = register_contract_schemas_ccompat(&ccompat).await.unwrap();
    assert_eq!(ids, again);
    let sensor = ids.get("io.gridwatch.SensorReading").unwrap();
    assert_eq!(
        &*ccompat.schema_by_id(sensor.content_id).await.unwrap(),
        schema::SENSOR_READING
    );
    // Apicurio's v3 API sees the same content under the same id.
    let v3 = client(&url);
    assert_eq!(
        &*v3.content_by_content_id(sensor.content_id).await.unwrap(),
        schema::SENSOR_READING
    );
    v3.set_compatibility(
        &RuleScope::Group("default".into()),
        CompatibilityLevel::Backward,
    )
    .await
    .unwrap();
    let broken = sensor_reading_with(r#"{"name": "region", "type": "string"}"#);
    let err = ccompat
        .register("io.gridwatch.SensorReading", &broken)
        .await
        .unwrap_err();
    let violation = err
        .rule_violation()
        .expect("a 409 is an incompatible schema");
    assert_eq!(violation.rule_type, Some(RuleType::Compatibility));
    assert!(err.to_string().contains("region"), "{err}");
    let missing = ccompat.schema_by_id(424_242).await.unwrap_err();
    assert!(matches!(missing, RegistryError::NotFound { .. }));
}

#[tokio::test]
async fn version_content_keeps_its_content_type() {
    let (_dir, _registry, url) = embedded().await;
    let client = client(&url);
    let mut version = CreateVersion::avro(r#""long""#);
    version.content = VersionContent {
        content_type: "application/json".into(),
        ..version.content
    };
    client.register_avro(GROUP, "t", r#""int""#).await.unwrap();
    let v = client.create_version(GROUP, "t", &version).await.unwrap();
    assert_eq!(v.version, "2");
    assert_eq!(
        &*client.content_by_global_id(v.global_id).await.unwrap(),
        r#""long""#
    );
}

#[tokio::test]
async fn schema_registry_runs_the_start_up_sequence_for_either_api() {
    let (_dir, _registry, url) = embedded().await;
    let mut config = RegistryConfig {
        url: None,
        ..config(&url)
    };
    let err = SchemaRegistry::connect(&config, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "registry.url is not set; give the URL of an external registry or of the embedded one"
    );

    // Unset url: the embedded registry on the binary's own listener.
    let apicurio = SchemaRegistry::connect(&config, Some(url.clone())).unwrap();
    let ids = apicurio.start_up(&config).await.unwrap();
    let rule = client(&url)
        .rule(&RuleScope::Group(GROUP.into()), RuleType::Compatibility)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rule.config, "BACKWARD",
        "the configured level is put on the group"
    );
    let sensor = ids.get("io.gridwatch.SensorReading").unwrap();
    let mut frame = Vec::new();
    framing::write_header(&mut frame, sensor.global_id, IdWidth::GlobalId8);
    reading().encode_into(&mut frame).unwrap();
    let decoded: SensorReading = apicurio
        .decode_framed(&frame, IdWidth::GlobalId8)
        .await
        .unwrap();
    assert_eq!(decoded, reading());

    config.api = RegistryApi::Ccompat;
    config.url = Some(url.join(CCOMPAT_BASE_PATH).unwrap());
    let confluent = SchemaRegistry::connect(&config, None).unwrap();
    let ids = confluent.start_up(&config).await.unwrap();
    let id = ids.content_id("io.gridwatch.SensorReading").unwrap();
    let mut frame = Vec::new();
    framing::write_header(&mut frame, id, IdWidth::ContentId4);
    reading().encode_into(&mut frame).unwrap();
    let decoded: SensorReading = confluent
        .decode_framed(&frame, IdWidth::ContentId4)
        .await
        .unwrap();
    assert_eq!(decoded, reading());
    let err = confluent
        .writer_schema(SchemaId::GlobalId(1))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "globalId 1 cannot be looked up in a ccompat registry"
    );
}
