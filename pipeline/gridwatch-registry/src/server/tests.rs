//! The embedded registry without HTTP: rules, ids and persistence.

use super::*;
use crate::model::CreateGroup;

const GROUP: &str = "gridwatch";
const ARTIFACT: &str = "io.gridwatch.SensorReading";

fn reading(extra_fields: &str) -> String {
    format!(
        r#"{{"type":"record","name":"SensorReading","namespace":"io.gridwatch","fields":[
            {{"name":"meter_id","type":"string"}},{{"name":"voltage","type":"double"}}{extra_fields}]}}"#
    )
}

async fn open() -> (tempfile::TempDir, EmbeddedRegistry) {
    let dir = tempfile::tempdir().unwrap();
    let registry = EmbeddedRegistry::open(dir.path()).await.unwrap();
    (dir, registry)
}

async fn register(registry: &EmbeddedRegistry, schema: &str) -> Result<VersionMetaData, ApiError> {
    let registered = registry
        .create_artifact(
            GROUP,
            CreateArtifact::avro(ARTIFACT, schema),
            IfArtifactExists::FindOrCreateVersion,
            false,
            false,
        )
        .await?;
    Ok(registered.version.unwrap())
}

async fn set_rule(registry: &EmbeddedRegistry, scope: Scope, level: CompatibilityLevel) {
    registry
        .put_rule(
            scope.clone(),
            RuleType::Compatibility,
            level.as_str().into(),
            false,
        )
        .await
        .or(registry
            .put_rule(scope, RuleType::Compatibility, level.as_str().into(), true)
            .await)
        .unwrap();
}

fn group_scope() -> Scope {
    Scope::Group {
        group_id: GROUP.into(),
    }
}

#[tokio::test]
async fn find_or_create_returns_the_same_ids_for_the_same_content() {
    let (_dir, registry) = open().await;
    let first = register(&registry, &reading("")).await.unwrap();
    assert_eq!(
        (first.global_id, first.content_id, first.version.as_str()),
        (1, 1, "1")
    );
    let again = register(&registry, &reading("")).await.unwrap();
    assert_eq!(again, first);
    let v2 = register(
        &registry,
        &reading(r#",{"name":"x","type":"int","default":0}"#),
    )
    .await
    .unwrap();
    assert_eq!(
        (v2.global_id, v2.content_id, v2.version.as_str()),
        (2, 2, "2")
    );
    // The same content in another artifact shares the contentId, not the globalId.
    let other = registry
        .create_artifact(
            GROUP,
            CreateArtifact::avro("copy", &reading("")),
            IfArtifactExists::Fail,
            false,
            false,
        )
        .await
        .unwrap()
        .version
        .unwrap();
    assert_eq!((other.global_id, other.content_id), (3, 1));
}

#[tokio::test]
async fn backward_compatible_evolution_is_accepted_and_an_incompatible_one_refused() {
    let (_dir, registry) = open().await;
    set_rule(&registry, Scope::Global, CompatibilityLevel::Backward).await;
    register(&registry, &reading("")).await.unwrap();
    register(
        &registry,
        &reading(r#",{"name":"firmware","type":"string","default":"unknown"}"#),
    )
    .await
    .unwrap();
    let err = register(&registry, &reading(r#",{"name":"region","type":"string"}"#))
        .await
        .unwrap_err();
    assert_eq!(err.status, StatusCode::CONFLICT);
    assert_eq!(err.name, "RuleViolationException");
    assert_eq!(err.rule_type, Some(RuleType::Compatibility));
    assert_eq!(err.rule_config.as_deref(), Some("BACKWARD"));
    assert_eq!(
        err.title,
        "Incompatible artifact: io.gridwatch.SensorReading [AVRO], num of incompatible diffs: {1}, \
         list of diff types: [READER_FIELD_MISSING_DEFAULT_VALUE]"
    );
    assert_eq!(
        err.detail.as_deref(),
        Some(
            "the new schema cannot read data written with version 2: field 'region' is not in \
             the writer's schema and has no default (at /fields/region)"
        )
    );
    let causes = err.causes.unwrap();
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].context, "/fields/region");
    // Nothing was stored.
    assert_eq!(registry.versions(GROUP, ARTIFACT).await.unwrap().len(), 2);
}

#[tokio::test]
async fn the_most_specific_rule_wins() {
    let (_dir, registry) = open().await;
    register(&registry, &reading("")).await.unwrap();
    set_rule(&registry, Scope::Global, CompatibilityLevel::Backward).await;
    let artifact = Scope::Artifact {
        group_id: GROUP.into(),
        artifact_id: ARTIFACT.into(),
    };
    set_rule(&registry, artifact.clone(), CompatibilityLevel::None).await;
    let breaking = reading(r#",{"name":"region","type":"string"}"#);
    register(&registry, &breaking).await.unwrap();
    registry
        .delete_rules(artifact, Some(RuleType::Compatibility))
        .await
        .unwrap();
    set_rule(&registry, group_scope(), CompatibilityLevel::Forward).await;
    // FORWARD: version 2 (with region, no default) must read the new data,
    // which has no region.
    let err = register(
        &registry,
        &reading(r#",{"name":"note","type":"string","default":""}"#),
    )
    .await
    .unwrap_err();
    assert_eq!(err.rule_config.as_deref(), Some("FORWARD"));
    assert!(
        err.detail
            .as_deref()
            .unwrap()
            .starts_with("version 2 cannot read data written with the new schema"),
        "{:?}",
        err.detail
    );
}

#[tokio::test]
async fn transitive_levels_check_every_earlier_version() {
    let (_dir, registry) = open().await;
    let v1 = reading("");
    let v2 = reading(r#",{"name":"b","type":"int","default":0}"#);
    let v3 = reading(r#",{"name":"b","type":"int"}"#);
    register(&registry, &v1).await.unwrap();
    register(&registry, &v2).await.unwrap();
    set_rule(
        &registry,
        group_scope(),
        CompatibilityLevel::BackwardTransitive,
    )
    .await;
    let dry = registry
        .create_version(GROUP, ARTIFACT, CreateVersion::avro(&v3), true)
        .await
        .unwrap_err();
    assert!(
        dry.detail
            .as_deref()
            .unwrap()
            .starts_with("the new schema cannot read data written with version 1"),
        "{:?}",
        dry.detail
    );
    set_rule(&registry, group_scope(), CompatibilityLevel::Backward).await;
    let checked = registry
        .create_version(GROUP, ARTIFACT, CreateVersion::avro(&v3), true)
        .await
        .unwrap();
    assert_eq!(checked.version, "3");
    assert_eq!(
        registry.versions(GROUP, ARTIFACT).await.unwrap().len(),
        2,
        "a dry run stores nothing"
    );
    set_rule(&registry, group_scope(), CompatibilityLevel::FullTransitive).await;
    assert!(
        registry
            .create_version(GROUP, ARTIFACT, CreateVersion::avro(&v3), false)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn validity_rule_refuses_unparseable_content() {
    let (_dir, registry) = open().await;
    registry
        .put_rule(Scope::Global, RuleType::Validity, "FULL".into(), false)
        .await
        .unwrap();
    let err = register(
        &registry,
        r#"{"type":"record","name":"X","fields":[{"name":"a"}]}"#,
    )
    .await
    .unwrap_err();
    assert_eq!(err.status, StatusCode::CONFLICT);
    assert_eq!(err.rule_type, Some(RuleType::Validity));
    assert_eq!(err.title, "Syntax violation for Avro artifact.");
}

#[tokio::test]
async fn rule_configs_are_validated_and_conflicts_reported() {
    let (_dir, registry) = open().await;
    let err = registry
        .put_rule(
            Scope::Global,
            RuleType::Compatibility,
            "SIDEWAYS".into(),
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(err.status, StatusCode::BAD_REQUEST);
    assert!(
        err.title
            .starts_with("Invalid COMPATIBILITY rule config: 'SIDEWAYS' is not")
    );
    set_rule(&registry, Scope::Global, CompatibilityLevel::Full).await;
    let dup = registry
        .put_rule(Scope::Global, RuleType::Compatibility, "FULL".into(), false)
        .await
        .unwrap_err();
    assert_eq!(dup.name, "RuleAlreadyExistsException");
    let missing_group = registry.rules(&group_scope()).await.unwrap_err();
    assert_eq!(missing_group.name, "GroupNotFoundException");
}

#[tokio::test]
async fn ids_and_rules_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = {
        let registry = EmbeddedRegistry::open(dir.path()).await.unwrap();
        registry
            .create_group(CreateGroup {
                group_id: "empty".into(),
                description: Some("no artifacts".into()),
                labels: Default::default(),
            })
            .await
            .unwrap();
        let v1 = register(&registry, &reading("")).await.unwrap();
        set_rule(&registry, group_scope(), CompatibilityLevel::Backward).await;
        let v2 = register(
            &registry,
            &reading(r#",{"name":"f","type":"long","default":0}"#),
        )
        .await
        .unwrap();
        (v1, v2)
    };
    let registry = EmbeddedRegistry::open(dir.path()).await.unwrap();
    assert_eq!(
        registry.versions(GROUP, ARTIFACT).await.unwrap(),
        [v1.clone(), v2.clone()]
    );
    assert_eq!(
        registry
            .rule(&group_scope(), RuleType::Compatibility)
            .await
            .unwrap(),
        "BACKWARD"
    );
    assert_eq!(
        registry
            .group("empty")
            .await
            .unwrap()
            .description
            .as_deref(),
        Some("no artifacts")
    );
    let (text, _) = registry.content_by_content_id(v2.content_id).await.unwrap();
    assert!(text.contains("\"f\""));
    // New ids continue after the old ones, and the rule is still enforced.
    let v3 = register(
        &registry,
        &reading(
            r#",{"name":"f","type":"long","default":0},{"name":"g","type":"int","default":1}"#,
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        (v3.global_id, v3.content_id, v3.version.as_str()),
        (3, 3, "3")
    );
    assert!(
        register(&registry, &reading(r#",{"name":"h","type":"int"}"#))
            .await
            .is_err()
    );
    // The log is JSON lines, one event per line, header first.
    let log = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["op"], "header");
    assert!(
        log.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
    );
}

#[tokio::test]
async fn canonical_lookup_ignores_formatting() {
    let (_dir, registry) = open().await;
    let v1 = register(&registry, &reading("")).await.unwrap();
    let reformatted = reading("").replace([' ', '\n'], "");
    let found = registry
        .create_artifact(
            GROUP,
            CreateArtifact::avro(ARTIFACT, &reformatted),
            IfArtifactExists::FindOrCreateVersion,
            true,
            false,
        )
        .await
        .unwrap();
    assert_eq!(found.version.unwrap().global_id, v1.global_id);
}

#[tokio::test]
async fn only_avro_is_stored() {
    let (_dir, registry) = open().await;
    let mut request = CreateArtifact::avro("p", "syntax = \"proto3\";");
    request.artifact_type = Some("PROTOBUF".into());
    let err = registry
        .create_artifact(GROUP, request, IfArtifactExists::Fail, false, false)
        .await
        .unwrap_err();
    assert_eq!(err.status, StatusCode::BAD_REQUEST);
    assert_eq!(err.name, "InvalidArtifactTypeException");
}

#[tokio::test]
async fn a_crash_mid_write_loses_only_the_unacknowledged_line() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = {
        let registry = EmbeddedRegistry::open(dir.path()).await.unwrap();
        register(&registry, &reading("")).await.unwrap()
    };
    let path = dir.path().join(LOG_FILE);
    let mut log = std::fs::read(&path).unwrap();
    let intact = log.len();
    log.extend_from_slice(br#"{"op":"version","globalId":2,"cont"#);
    std::fs::write(&path, &log).unwrap();

    let registry = EmbeddedRegistry::open(dir.path()).await.unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, intact);
    assert_eq!(registry.versions(GROUP, ARTIFACT).await.unwrap(), [v1]);
    let v2 = register(
        &registry,
        &reading(r#",{"name":"x","type":"int","default":0}"#),
    )
    .await
    .unwrap();
    assert_eq!(v2.global_id, 2);
    drop(registry);
    let reopened = EmbeddedRegistry::open(dir.path()).await.unwrap();
    assert_eq!(reopened.versions(GROUP, ARTIFACT).await.unwrap().len(), 2);
}
