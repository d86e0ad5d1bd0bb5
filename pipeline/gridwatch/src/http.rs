//! The HTTP API on `http.listen`: ingest, admin, health, metrics and the
//! embedded schema registry.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gridwatch_registry::EmbeddedRegistry;
use gridwatch_runtime::backend::TopicBackend;
use gridwatch_runtime::backend::embedded::EmbeddedBackend;
use gridwatch_runtime::ingest::{Ingest, IngestError};
use gridwatch_runtime::metrics::Metrics;
use gridwatch_runtime::processor::{Progress, now_ms};
use serde::{Deserialize, Serialize};

use crate::config::AppConfig;

/// What handlers share.
pub struct AppState {
    pub metrics: Metrics,
    pub progress: Vec<Arc<Progress>>,
    pub backend: Arc<EmbeddedBackend>,
    pub config: AppConfig,
    /// Set once the registry ids are known; ingest answers 503 before.
    ingest: OnceLock<Arc<Ingest<EmbeddedBackend>>>,
}

impl AppState {
    pub fn new(
        metrics: Metrics,
        progress: Vec<Arc<Progress>>,
        backend: Arc<EmbeddedBackend>,
        config: AppConfig,
    ) -> Self {
        Self {
            metrics,
            progress,
            backend,
            config,
            ingest: OnceLock::new(),
        }
    }

    pub fn set_ingest(&self, ingest: Arc<Ingest<EmbeddedBackend>>) {
        let _ = self.ingest.set(ingest);
    }
}

type Shared = Arc<AppState>;

pub fn router(state: Shared, registry: EmbeddedRegistry) -> Router {
    let limit = state.config.http.max_body_bytes;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/readings",
            post(ingest).layer(DefaultBodyLimit::max(limit)),
        )
        .route("/api/v1/status", get(status))
        .route("/api/v1/topics", get(list_topics).post(create_topic))
        .route(
            "/api/v1/topics/{topic}/partitions/{partition}/records",
            get(fetch_records),
        )
        .with_state(state)
        .nest(
            gridwatch_registry::V3_BASE_PATH,
            gridwatch_registry::router(registry),
        )
}

async fn readyz(State(s): State<Shared>) -> Response {
    let ready =
        s.ingest.get().is_some() && s.progress.iter().all(|p| p.ready.load(Ordering::Acquire));
    if ready {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "recovering").into_response()
    }
}

async fn metrics(State(s): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(now_ms()),
    )
        .into_response()
}

#[derive(Serialize)]
struct Problem {
    error: String,
}

fn problem(status: StatusCode, error: impl Into<String>) -> Response {
    (
        status,
        Json(Problem {
            error: error.into(),
        }),
    )
        .into_response()
}

async fn ingest(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(ingest) = s.ingest.get() else {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "starting up");
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (readings, rejected) = match content_type.as_str() {
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
            Ingest::<EmbeddedBackend>::parse_ndjson(&body)
        }
        "application/json" => Ingest::<EmbeddedBackend>::parse_json_array(&body),
        other => {
            return problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "content type {other:?} is not accepted; use application/x-ndjson or application/json"
                ),
            );
        }
    };
    match ingest.ingest(readings, rejected).await {
        Ok(outcome) => (StatusCode::OK, Json(outcome)).into_response(),
        Err(IngestError::Backpressure { retry_after, .. }) => {
            let mut r = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the pipeline is behind; retry later",
            );
            if let Ok(v) = retry_after.as_secs().max(1).to_string().parse() {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Serialize)]
struct Status {
    ingested: u64,
    processed: u64,
    anomalies: u64,
    dead_letters: u64,
    duplicates: u64,
    checkpoints: u64,
    lag: u64,
    latency_ms: gridwatch_runtime::metrics::LatencyMs,
}

async fn status(State(s): State<Shared>) -> Json<Status> {
    let t = s.metrics.totals();
    Json(Status {
        ingested: t.ingested.load(Ordering::Relaxed),
        processed: t.processed.load(Ordering::Relaxed),
        anomalies: t.anomalies.load(Ordering::Relaxed),
        dead_letters: t.dead_letters.load(Ordering::Relaxed),
        duplicates: t.duplicates.load(Ordering::Relaxed),
        checkpoints: t.checkpoints.load(Ordering::Relaxed),
        lag: s.metrics.lag(),
        latency_ms: s.metrics.peek_latency(),
    })
}

async fn list_topics(State(s): State<Shared>) -> Response {
    match s.backend.list_topics().await {
        Ok(topics) => Json(topics).into_response(),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
struct CreateTopic {
    name: String,
    #[serde(default = "one")]
    partitions: u32,
}

fn one() -> u32 {
    1
}

async fn create_topic(State(s): State<Shared>, Json(req): Json<CreateTopic>) -> Response {
    match s.backend.ensure_topic(&req.name, req.partitions).await {
        Ok(info) => (StatusCode::CREATED, Json(info)).into_response(),
        Err(e) => problem(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

#[derive(Deserialize)]
struct FetchQuery {
    /// First offset; absent means the end (only new records).
    offset: Option<u64>,
    #[serde(default = "default_max")]
    max: usize,
    #[serde(default)]
    wait_ms: u64,
}

fn default_max() -> usize {
    1000
}

/// Records as the CLI reads them: values base64-encoded.
#[derive(Serialize, Deserialize)]
pub struct FetchResponse {
    pub high_watermark: u64,
    pub log_start: u64,
    pub records: Vec<WireRecord>,
}

#[derive(Serialize, Deserialize)]
pub struct WireRecord {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<String>,
    pub value: String,
}

async fn fetch_records(
    State(s): State<Shared>,
    Path((topic, partition)): Path<(String, u32)>,
    Query(q): Query<FetchQuery>,
) -> Response {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let result = async {
        let hw = s.backend.high_watermark(&topic, partition).await?;
        let start = s.backend.log_start(&topic, partition).await?;
        let from = q.offset.unwrap_or(hw).max(start);
        let wait = Duration::from_millis(q.wait_ms.min(30_000));
        let records = s
            .backend
            .fetch(&topic, partition, from, q.max.clamp(1, 10_000), wait)
            .await?;
        let hw = s.backend.high_watermark(&topic, partition).await?;
        Ok::<_, gridwatch_runtime::backend::BackendError>(FetchResponse {
            high_watermark: hw,
            log_start: start,
            records: records
                .into_iter()
                .map(|r| WireRecord {
                    offset: r.offset,
                    timestamp_ms: r.timestamp_ms,
                    key: r.key.map(|k| b64.encode(k)),
                    value: b64.encode(&r.value),
                })
                .collect(),
        })
    }
    .await;
    match result {
        Ok(r) => Json(r).into_response(),
        Err(e @ gridwatch_runtime::backend::BackendError::NoSuchTopic { .. })
        | Err(e @ gridwatch_runtime::backend::BackendError::NoSuchPartition { .. }) => {
            problem(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
