//! The HTTP surface of the embedded registry: Apicurio v3 paths, query
//! parameters and JSON shapes, relative to where the router is mounted.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::de::DeserializeOwned;

use super::store::Scope;
use super::{ApiError, EmbeddedRegistry};
use crate::model::{
    ArtifactSearchResults, CreateArtifact, CreateArtifactResponse, CreateGroup, CreateVersion,
    GroupSearchResults, IfArtifactExists, Rule, RuleType, SystemInfo, VersionMetaData,
    VersionSearchResults,
};

type Reg = State<EmbeddedRegistry>;
type Params = Query<HashMap<String, String>>;
type Answer = Result<Response, ApiError>;

/// The Apicurio Registry v3 API over `registry`, to be nested under
/// `/apis/registry/v3`.
pub fn router(registry: EmbeddedRegistry) -> Router {
    Router::new()
        .route("/system/info", get(system_info))
        .route("/groups", get(list_groups).post(create_group))
        .route("/groups/{group}", get(get_group))
        .route(
            "/groups/{group}/artifacts",
            get(list_artifacts).post(create_artifact),
        )
        .route("/groups/{group}/artifacts/{artifact}", get(get_artifact))
        .route(
            "/groups/{group}/artifacts/{artifact}/versions",
            get(list_versions).post(create_version),
        )
        .route(
            "/groups/{group}/artifacts/{artifact}/versions/{version}",
            get(get_version),
        )
        .route(
            "/groups/{group}/artifacts/{artifact}/versions/{version}/content",
            get(get_version_content),
        )
        .route("/ids/globalIds/{id}", get(by_global_id))
        .route("/ids/contentIds/{id}", get(by_content_id))
        .route("/ids/globalIds/{id}/references", get(global_references))
        .route("/ids/contentIds/{id}/references", get(content_references))
        .route(
            "/admin/rules",
            get(|State(r): Reg| async move { list_rules(r, Scope::Global).await })
                .post(|State(r): Reg, body: Bytes| async move {
                    create_rule(r, Scope::Global, body).await
                })
                .delete(|State(r): Reg| async move { delete_rules(r, Scope::Global, None).await }),
        )
        .route(
            "/admin/rules/{rule}",
            get(|State(r): Reg, Path(rule): Path<String>| async move {
                get_rule(r, Scope::Global, &rule).await
            })
            .put(
                |State(r): Reg, Path(rule): Path<String>, body: Bytes| async move {
                    update_rule(r, Scope::Global, &rule, body).await
                },
            )
            .delete(|State(r): Reg, Path(rule): Path<String>| async move {
                delete_rules(r, Scope::Global, Some(&rule)).await
            }),
        )
        .route(
            "/groups/{group}/rules",
            get(|State(r): Reg, Path(g): Path<String>| async move {
                list_rules(r, group_scope(g)).await
            })
            .post(
                |State(r): Reg, Path(g): Path<String>, body: Bytes| async move {
                    create_rule(r, group_scope(g), body).await
                },
            )
            .delete(|State(r): Reg, Path(g): Path<String>| async move {
                delete_rules(r, group_scope(g), None).await
            }),
        )
        .route(
            "/groups/{group}/rules/{rule}",
            get(|State(r): Reg, Path((g, rule)): Path<(String, String)>| async move {
                get_rule(r, group_scope(g), &rule).await
            })
            .put(
                |State(r): Reg, Path((g, rule)): Path<(String, String)>, body: Bytes| async move {
                    update_rule(r, group_scope(g), &rule, body).await
                },
            )
            .delete(
                |State(r): Reg, Path((g, rule)): Path<(String, String)>| async move {
                    delete_rules(r, group_scope(g), Some(&rule)).await
                },
            ),
        )
        .route(
            "/groups/{group}/artifacts/{artifact}/rules",
            get(|State(r): Reg, Path((g, a)): Path<(String, String)>| async move {
                list_rules(r, artifact_scope(g, a)).await
            })
            .post(
                |State(r): Reg, Path((g, a)): Path<(String, String)>, body: Bytes| async move {
                    create_rule(r, artifact_scope(g, a), body).await
                },
            )
            .delete(
                |State(r): Reg, Path((g, a)): Path<(String, String)>| async move {
                    delete_rules(r, artifact_scope(g, a), None).await
                },
            ),
        )
        .route(
            "/groups/{group}/artifacts/{artifact}/rules/{rule}",
            get(
                |State(r): Reg, Path((g, a, rule)): Path<(String, String, String)>| async move {
                    get_rule(r, artifact_scope(g, a), &rule).await
                },
            )
            .put(
                |State(r): Reg,
                 Path((g, a, rule)): Path<(String, String, String)>,
                 body: Bytes| async move {
                    update_rule(r, artifact_scope(g, a), &rule, body).await
                },
            )
            .delete(
                |State(r): Reg, Path((g, a, rule)): Path<(String, String, String)>| async move {
                    delete_rules(r, artifact_scope(g, a), Some(&rule)).await
                },
            ),
        )
        .fallback(not_found)
        .with_state(registry)
}

fn group_scope(group_id: String) -> Scope {
    Scope::Group { group_id }
}

fn artifact_scope(group_id: String, artifact_id: String) -> Scope {
    Scope::Artifact {
        group_id,
        artifact_id,
    }
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFoundException",
        "No such endpoint in the embedded registry (it implements a subset of Apicurio Registry v3).",
    )
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    (status, Json(value)).into_response()
}

fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("The request body is not valid: {e}")))
}

fn flag(params: &HashMap<String, String>, name: &str) -> Result<bool, ApiError> {
    match params.get(name).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "Query parameter '{name}' must be true or false, not '{other}'."
        ))),
    }
}

fn number(params: &HashMap<String, String>, name: &str, default: usize) -> Result<usize, ApiError> {
    match params.get(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "Query parameter '{name}' must be a non-negative integer, not '{v}'."
            ))
        }),
    }
}

fn parse_rule_type(rule: &str) -> Result<RuleType, ApiError> {
    rule.parse()
        .map_err(|e: crate::model::UnknownWord| ApiError::bad_request(e.to_string()))
}

fn parse_id(id: &str, what: &'static str) -> Result<u64, ApiError> {
    id.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "{what} must be a non-negative integer, not '{id}'."
        ))
    })
}

/// One page, as Apicurio pages: `offset` (default 0) and `limit` (default 20).
fn page<T>(items: Vec<T>, params: &HashMap<String, String>) -> Result<(u64, Vec<T>), ApiError> {
    let offset = number(params, "offset", 0)?;
    let limit = number(params, "limit", 20)?;
    let count = items.len() as u64;
    Ok((count, items.into_iter().skip(offset).take(limit).collect()))
}

fn descending(params: &HashMap<String, String>) -> Result<bool, ApiError> {
    match params.get("order").map(String::as_str) {
        None | Some("asc") => Ok(false),
        Some("desc") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "Query parameter 'order' must be asc or desc, not '{other}'."
        ))),
    }
}

async fn system_info() -> Json<SystemInfo> {
    Json(SystemInfo {
        name: "Gridwatch embedded registry".into(),
        description: "An Apicurio Registry v3-compatible schema registry embedded in Gridwatch."
            .into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

async fn list_groups(State(r): Reg, Query(params): Params) -> Answer {
    let mut groups = r.groups().await;
    if descending(&params)? {
        groups.reverse();
    }
    let (count, groups) = page(groups, &params)?;
    Ok(json(StatusCode::OK, &GroupSearchResults { count, groups }))
}

async fn create_group(State(r): Reg, body: Bytes) -> Answer {
    let request: CreateGroup = parse_body(&body)?;
    Ok(json(StatusCode::OK, &r.create_group(request).await?))
}

async fn get_group(State(r): Reg, Path(group): Path<String>) -> Answer {
    Ok(json(StatusCode::OK, &r.group(&group).await?))
}

async fn list_artifacts(State(r): Reg, Path(group): Path<String>, Query(params): Params) -> Answer {
    let mut artifacts = r.artifacts(&group).await?;
    if descending(&params)? {
        artifacts.reverse();
    }
    let (count, artifacts) = page(artifacts, &params)?;
    Ok(json(
        StatusCode::OK,
        &ArtifactSearchResults { count, artifacts },
    ))
}

async fn create_artifact(
    State(r): Reg,
    Path(group): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> Answer {
    let request: CreateArtifact = parse_body(&body)?;
    let if_exists = match params.get("ifExists") {
        None => IfArtifactExists::Fail,
        Some(v) => v
            .parse()
            .map_err(|e: crate::model::UnknownWord| ApiError::bad_request(e.to_string()))?,
    };
    let registered = r
        .create_artifact(
            &group,
            request,
            if_exists,
            flag(&params, "canonical")?,
            flag(&params, "dryRun")?,
        )
        .await?;
    Ok(json(
        StatusCode::OK,
        &CreateArtifactResponse {
            artifact: registered.artifact,
            version: registered.version,
        },
    ))
}

async fn get_artifact(State(r): Reg, Path((g, a)): Path<(String, String)>) -> Answer {
    Ok(json(StatusCode::OK, &r.artifact(&g, &a).await?))
}

async fn list_versions(
    State(r): Reg,
    Path((g, a)): Path<(String, String)>,
    Query(params): Params,
) -> Answer {
    let mut versions = r.versions(&g, &a).await?;
    match params.get("orderby").map(String::as_str) {
        None | Some("globalId") | Some("createdOn") | Some("modifiedOn") => {}
        Some("version") => versions.sort_by(|x, y| version_order(&x.version, &y.version)),
        Some("name") => versions.sort_by(|x, y| x.name.cmp(&y.name)),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Query parameter 'orderby' cannot be '{other}'."
            )));
        }
    }
    if descending(&params)? {
        versions.reverse();
    }
    let (count, versions) = page(versions, &params)?;
    Ok(json(
        StatusCode::OK,
        &VersionSearchResults { count, versions },
    ))
}

/// Numeric version names sort as numbers, so `10` comes after `9`.
fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

async fn create_version(
    State(r): Reg,
    Path((g, a)): Path<(String, String)>,
    Query(params): Params,
    body: Bytes,
) -> Answer {
    let request: CreateVersion = parse_body(&body)?;
    let version: VersionMetaData = r
        .create_version(&g, &a, request, flag(&params, "dryRun")?)
        .await?;
    Ok(json(StatusCode::OK, &version))
}

async fn get_version(State(r): Reg, Path((g, a, v)): Path<(String, String, String)>) -> Answer {
    Ok(json(StatusCode::OK, &r.version(&g, &a, &v).await?))
}

async fn get_version_content(
    State(r): Reg,
    Path((g, a, v)): Path<(String, String, String)>,
) -> Answer {
    let version = r.version(&g, &a, &v).await?;
    let (text, content_type) = r.content_by_global_id(version.global_id).await?;
    Ok(content_response(&text, &content_type, Some(&version)))
}

async fn by_global_id(State(r): Reg, Path(id): Path<String>) -> Answer {
    let (text, content_type) = r.content_by_global_id(parse_id(&id, "globalId")?).await?;
    Ok(content_response(&text, &content_type, None))
}

async fn by_content_id(State(r): Reg, Path(id): Path<String>) -> Answer {
    let (text, content_type) = r.content_by_content_id(parse_id(&id, "contentId")?).await?;
    Ok(content_response(&text, &content_type, None))
}

/// Apicurio's serdes ask for a schema's references before resolving it;
/// the embedded registry stores none, so the list is empty for a known id.
async fn global_references(State(r): Reg, Path(id): Path<String>) -> Answer {
    r.content_by_global_id(parse_id(&id, "globalId")?).await?;
    Ok(json(
        StatusCode::OK,
        &Vec::<crate::model::ArtifactReference>::new(),
    ))
}

async fn content_references(State(r): Reg, Path(id): Path<String>) -> Answer {
    r.content_by_content_id(parse_id(&id, "contentId")?).await?;
    Ok(json(
        StatusCode::OK,
        &Vec::<crate::model::ArtifactReference>::new(),
    ))
}

/// Raw schema text, as Apicurio serves it, with the artifact type header its
/// serdes read.
fn content_response(text: &str, content_type: &str, version: Option<&VersionMetaData>) -> Response {
    let mut response = (StatusCode::OK, text.to_owned()).into_response();
    let headers = response.headers_mut();
    let content_type = HeaderValue::from_str(content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/json"));
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert("X-Registry-ArtifactType", HeaderValue::from_static("AVRO"));
    if let Some(v) = version {
        if let Ok(value) = HeaderValue::from_str(&v.global_id.to_string()) {
            headers.insert("X-Registry-GlobalId", value);
        }
        if let Ok(value) = HeaderValue::from_str(&v.content_id.to_string()) {
            headers.insert("X-Registry-ContentId", value);
        }
    }
    response
}

async fn list_rules(r: EmbeddedRegistry, scope: Scope) -> Answer {
    Ok(json(StatusCode::OK, &r.rules(&scope).await?))
}

async fn create_rule(r: EmbeddedRegistry, scope: Scope, body: Bytes) -> Answer {
    let rule: Rule = parse_body(&body)?;
    let rule_type = rule
        .rule_type
        .ok_or_else(|| ApiError::bad_request("The rule needs a ruleType."))?;
    r.put_rule(scope, rule_type, rule.config, false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_rule(r: EmbeddedRegistry, scope: Scope, rule: &str) -> Answer {
    let rule_type = parse_rule_type(rule)?;
    let config = r.rule(&scope, rule_type).await?;
    Ok(json(
        StatusCode::OK,
        &Rule {
            rule_type: Some(rule_type),
            config,
        },
    ))
}

async fn update_rule(r: EmbeddedRegistry, scope: Scope, rule: &str, body: Bytes) -> Answer {
    let rule_type = parse_rule_type(rule)?;
    let update: Rule = parse_body(&body)?;
    if update.rule_type.is_some_and(|t| t != rule_type) {
        return Err(ApiError::bad_request(format!(
            "The body's ruleType does not match the path's '{rule_type}'."
        )));
    }
    r.put_rule(scope, rule_type, update.config.clone(), true)
        .await?;
    Ok(json(
        StatusCode::OK,
        &Rule {
            rule_type: Some(rule_type),
            config: update.config,
        },
    ))
}

async fn delete_rules(r: EmbeddedRegistry, scope: Scope, rule: Option<&str>) -> Answer {
    let rule_type = rule.map(parse_rule_type).transpose()?;
    r.delete_rules(scope, rule_type).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
