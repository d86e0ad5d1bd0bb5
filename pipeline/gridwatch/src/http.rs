//! The HTTP API on `http.listen`: ingest, admin, health, metrics and the
//! embedded schema registry.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::backend::AnyBackend;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use gridwatch_registry::EmbeddedRegistry;
use gridwatch_runtime::backend::TopicBackend;
use gridwatch_runtime::ingest::{Ingest, IngestError};
use gridwatch_runtime::metrics::Metrics;
use gridwatch_runtime::processor::{Progress, now_ms};
use serde::{Deserialize, Serialize};

use crate::config::AppConfig;
use crate::swap::{ModuleManager, SwapRejected};
use gridwatch_registry::Secret;

/// What handlers share.
pub struct AppState {
    pub metrics: Metrics,
    pub progress: Vec<Arc<Progress>>,
    pub backend: Arc<AnyBackend>,
    pub config: AppConfig,
    /// Set once the registry ids are known; ingest answers 503 before.
    ingest: OnceLock<Arc<Ingest<AnyBackend>>>,
    /// Set once the pipeline runs; module admin answers 503 before.
    modules: OnceLock<Arc<ModuleManager>>,
    /// Decodes Avro bodies; set with the registry ids.
    decoder: OnceLock<Arc<crate::payloads::EdgeDecoder>>,
    /// Bearer tokens of the admin and ingest APIs, if required.
    admin_token: Option<Secret>,
    ingest_token: Option<Secret>,
    /// The ingest rate limit (429 above it), if set.
    ingest_limiter: Option<governor::DefaultDirectRateLimiter>,
}

impl AppState {
    pub fn new(
        metrics: Metrics,
        progress: Vec<Arc<Progress>>,
        backend: Arc<AnyBackend>,
        config: AppConfig,
    ) -> Self {
        // Validated at start-up; a secret that vanished since is treated as unset.
        let admin_token = config.admin.resolve().ok().flatten();
        let ingest_token = crate::config::resolve_secret(
            "http.ingest",
            &config.http.ingest_token,
            &config.http.ingest_token_file,
        )
        .ok()
        .flatten();
        let ingest_limiter = rate_limiter(config.http.ingest_rate_limit, config.http.ingest_burst);
        Self {
            metrics,
            progress,
            backend,
            config,
            ingest: OnceLock::new(),
            modules: OnceLock::new(),
            decoder: OnceLock::new(),
            admin_token,
            ingest_token,
            ingest_limiter,
        }
    }

    pub fn set_modules(&self, modules: Arc<ModuleManager>) {
        let _ = self.modules.set(modules);
    }

    pub fn set_decoder(&self, decoder: Arc<crate::payloads::EdgeDecoder>) {
        let _ = self.decoder.set(decoder);
    }

    pub fn set_ingest(&self, ingest: Arc<Ingest<AnyBackend>>) {
        let _ = self.ingest.set(ingest);
    }
}

type Shared = Arc<AppState>;

fn rate_limiter(per_second: f64, burst: u32) -> Option<governor::DefaultDirectRateLimiter> {
    use std::num::NonZeroU32;
    if per_second <= 0.0 {
        return None;
    }
    let period = Duration::from_secs_f64(1.0 / per_second);
    let quota = governor::Quota::with_period(period)?
        .allow_burst(NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN));
    Some(governor::RateLimiter::direct(quota))
}

pub fn router(state: Shared, registry: EmbeddedRegistry) -> Router {
    let limit = state.config.http.max_body_bytes;
    // Control and data-reading routes: admin token when one is set.
    let admin = Router::new()
        .route("/api/v1/modules", get(list_modules))
        .route(
            "/api/v1/modules/{name}",
            put(swap_module).layer(DefaultBodyLimit::max(MAX_MODULE_BYTES)),
        )
        .route("/api/v1/topics", get(list_topics).post(create_topic))
        .route(
            "/api/v1/topics/{topic}/partitions/{partition}/records",
            get(fetch_records).post(crate::connector::append_records),
        )
        .route(
            "/api/v1/replay/topics/{topic}/partitions/{partition}/records",
            axum::routing::post(crate::replay::append_output),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_admin,
        ));
    let ingest_routes = Router::new()
        .route(
            "/api/v1/readings",
            post(ingest).layer(DefaultBodyLimit::max(limit)),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard_ingest,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .merge(admin)
        .merge(ingest_routes)
        .with_state(state)
        .nest(
            gridwatch_registry::V3_BASE_PATH,
            gridwatch_registry::router(registry),
        )
}

/// Constant-time comparison of a request's bearer token with the expected one.
fn bearer_matches(headers: &HeaderMap, expected: &Secret) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), expected.expose().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized(what: &str) -> Response {
    let mut r = problem(
        StatusCode::UNAUTHORIZED,
        format!("{what} requires Authorization: Bearer <token>"),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    r
}

async fn require_admin(
    State(s): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(token) = &s.admin_token
        && !bearer_matches(request.headers(), token)
    {
        tracing::warn!(path = %request.uri().path(), "Admin request without a valid token refused.");
        return unauthorized("the admin API");
    }
    next.run(request).await
}

/// Ingest's token and rate limit, checked before the body is read.
async fn guard_ingest(
    State(s): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(token) = &s.ingest_token
        && !bearer_matches(request.headers(), token)
    {
        return unauthorized("ingest");
    }
    if let Some(limiter) = &s.ingest_limiter
        && let Err(not_until) = limiter.check()
    {
        use governor::clock::Clock as _;
        let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
        s.metrics.stage_error("ingest", true);
        let mut r = problem(
            StatusCode::TOO_MANY_REQUESTS,
            "ingest rate limit reached; retry later",
        );
        if let Ok(v) = (wait.as_secs() + 1).to_string().parse() {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    next.run(request).await
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
            Ingest::<AnyBackend>::parse_ndjson(&body)
        }
        "application/json" => Ingest::<AnyBackend>::parse_json_array(&body),
        // Avro: see crate::payloads for the types and how the form is chosen.
        other => match crate::payloads::AvroBody::from_content_type(other) {
            Some(kind) => {
                let Some(decoder) = s.decoder.get() else {
                    return problem(StatusCode::SERVICE_UNAVAILABLE, "starting up");
                };
                match decoder.http_body(kind, body).await {
                    Ok(parsed) => parsed,
                    Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
                }
            }
            None => {
                return problem(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "content type {other:?} is not accepted; use application/x-ndjson, application/json, application/vnd.apache.avro+binary (one framed datum) or application/vnd.apache.avro.file (a container file)"
                    ),
                );
            }
        },
    };
    match ingest.ingest(&readings, rejected).await {
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
        // The topic log could not store them (a full disk, an I/O error):
        // nothing of the request was acknowledged, and the log is usable
        // again once the cause is gone, so the client retries (issue #9).
        Err(IngestError::Backend(e))
            if e.is_retryable()
                || matches!(e, gridwatch_runtime::backend::BackendError::Log(_)) =>
        {
            let mut r = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the readings were not stored: {e}"),
            );
            if e.is_retryable() {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
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

/// Largest `.wasm` a swap accepts; the built modules are well under 1 MiB.
const MAX_MODULE_BYTES: usize = 64 * 1024 * 1024;

async fn list_modules(State(s): State<Shared>) -> Response {
    match s.modules.get() {
        Some(m) => Json(m.list().await).into_response(),
        None => problem(StatusCode::SERVICE_UNAVAILABLE, "starting up"),
    }
}

/// `PUT /api/v1/modules/{name}` with the `.wasm` as the body: validates the
/// module, then hot-swaps it in. 200 with the report; 422 if the module is
/// rejected (the old one keeps running); 404 for an unknown module name.
async fn swap_module(State(s): State<Shared>, Path(name): Path<String>, body: Bytes) -> Response {
    let Some(m) = s.modules.get() else {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "starting up");
    };
    if body.is_empty() {
        return problem(
            StatusCode::BAD_REQUEST,
            "the body must be the module's .wasm bytes",
        );
    }
    match m.swap(&name, body, "admin-api".into()).await {
        Ok(report) => Json(report).into_response(),
        Err(e @ SwapRejected::UnknownModule(_)) => problem(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ SwapRejected::Invalid { .. }) => {
            problem(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        Err(e @ SwapRejected::Failed { .. }) => {
            problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}
