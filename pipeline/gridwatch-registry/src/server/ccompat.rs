//! A sliver of the Confluent Schema Registry API over the embedded registry,
//! as Apicurio serves it at `/apis/ccompat/v7`: register a subject version,
//! fetch a schema by id. Subjects are artifacts in the `default` group and
//! ids are contentIds, as in Apicurio 3, so both APIs frame records alike.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use super::{ApiError, EmbeddedRegistry};
use crate::ccompat::{RegisterSchemaRequest, RegisterSchemaResponse, SchemaString};
use crate::model::{CreateArtifact, IfArtifactExists};

/// The group Apicurio keeps Confluent subjects in.
const SUBJECT_GROUP: &str = "default";

/// The Confluent-compatible subset, to be nested under `/apis/ccompat/v7`.
pub fn ccompat_router(registry: EmbeddedRegistry) -> Router {
    Router::new()
        .route("/subjects/{subject}/versions", post(register))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .with_state(registry)
}

/// Confluent's error body.
#[derive(Serialize)]
struct ConfluentError {
    error_code: u32,
    message: String,
}

fn confluent_json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.schemaregistry.v1+json"),
    );
    response
}

fn error(status: StatusCode, error_code: u32, message: String) -> Response {
    confluent_json(
        status,
        &ConfluentError {
            error_code,
            message,
        },
    )
}

/// Confluent's codes for the cases this subset can produce.
fn from_api(err: ApiError) -> Response {
    let message = match &err.detail {
        Some(detail) if *detail != err.title => format!("{}: {detail}", err.title),
        _ => err.title.clone(),
    };
    match err.status {
        StatusCode::CONFLICT => error(StatusCode::CONFLICT, 409, message),
        StatusCode::NOT_FOUND => error(StatusCode::NOT_FOUND, 40403, message),
        StatusCode::BAD_REQUEST => error(StatusCode::UNPROCESSABLE_ENTITY, 42201, message),
        status => error(status, 50001, message),
    }
}

async fn register(
    State(r): State<EmbeddedRegistry>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Response {
    let request: RegisterSchemaRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                42201,
                format!("Invalid schema request: {e}"),
            );
        }
    };
    if let Some(kind) = request.schema_type.as_deref().filter(|t| *t != "AVRO") {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            format!("Schema type {kind} is not supported; the embedded registry stores AVRO only."),
        );
    }
    let artifact = CreateArtifact::avro(&subject, &request.schema);
    match r
        .create_artifact(
            SUBJECT_GROUP,
            artifact,
            IfArtifactExists::FindOrCreateVersion,
            false,
            false,
        )
        .await
    {
        Ok(registered) => match registered.version {
            Some(v) => confluent_json(StatusCode::OK, &RegisterSchemaResponse { id: v.content_id }),
            None => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                50001,
                "registration made no version".into(),
            ),
        },
        Err(err) => from_api(err),
    }
}

async fn schema_by_id(State(r): State<EmbeddedRegistry>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return error(
            StatusCode::NOT_FOUND,
            40403,
            format!("Schema {id} not found"),
        );
    };
    match r.content_by_content_id(id).await {
        Ok((text, _)) => confluent_json(
            StatusCode::OK,
            &SchemaString {
                schema: text.to_string(),
                schema_type: None,
            },
        ),
        Err(_) => error(
            StatusCode::NOT_FOUND,
            40403,
            format!("Schema {id} not found"),
        ),
    }
}
