//! Gridwatch's built-in web dashboard, served by `gridwatch run` at `/`.
//!
//! Operators and admins may be on a network with no internet, so the page,
//! its script and its styles are compiled into the binary and the charts
//! are drawn by hand as SVG: no CDN, no external service.
//!
//! - [`feed`]: the live anomaly feed, pushed over Server-Sent Events. It
//!   follows the `anomalies` topic through [`TopicBackend`], so it works on
//!   any backend (the embedded log, Fluvio). The topic is durable, so an
//!   event's SSE id is a cursor (the next offset of every partition) and a
//!   browser that reconnects with `Last-Event-ID` resumes without loss.
//! - [`acks`]: acknowledgements, persisted to a small JSON file in the data
//!   directory, bounded to [`acks::MAX_ACKS`] entries.
//! - [`health`]: a sampler of the pipeline's metrics every second, kept for
//!   ten minutes, which the health view charts.
//!
//! Routes (all under the one router [`router`] returns):
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the page (operator view at `#operator`, health view at `#health`) |
//! | `GET /assets/{app.js,app.css}` | its script and styles |
//! | `GET /api/v1/dashboard/anomalies` | SSE: `anomaly` events (`id` = cursor), `ack` events |
//! | `GET /api/v1/dashboard/acks` | every acknowledgement held |
//! | `POST /api/v1/anomalies/{id}/ack` | acknowledge an anomaly; body `{"by": "…", "note": "…"}`, both optional |
//! | `GET /api/v1/dashboard/health` | health samples, oldest first |

pub mod acks;
pub mod feed;
pub mod health;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gridwatch_runtime::backend::TopicBackend;
use gridwatch_runtime::metrics::Metrics;
use serde::Deserialize;
use tokio::sync::watch;

pub use acks::{Ack, AckStore};
pub use feed::Cursor;
pub use health::{HealthHistory, Sample};

/// The page, its script and its styles, compiled in.
const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// Where the dashboard finds the anomalies and keeps its state.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// The anomalies topic (`anomalies`).
    pub anomalies_topic: String,
    /// Its partition count.
    pub partitions: u32,
    /// The acknowledgements file, e.g. `<data_dir>/dashboard/acks.json`.
    pub acks_file: PathBuf,
    /// How often the health sampler reads the metrics (default 1 s; the
    /// charts must update at least every 5 s, SC-003).
    pub sample_every: Duration,
    /// How many samples the health view keeps (default 600: ten minutes at 1 s).
    pub samples_kept: usize,
}

impl DashboardConfig {
    /// The defaults for a data directory.
    pub fn new(anomalies_topic: &str, partitions: u32, data_dir: &std::path::Path) -> Self {
        Self {
            anomalies_topic: anomalies_topic.to_string(),
            partitions,
            acks_file: data_dir.join("dashboard").join("acks.json"),
            sample_every: Duration::from_secs(1),
            samples_kept: 600,
        }
    }
}

/// Why the dashboard could not start.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error(transparent)]
    Acks(#[from] acks::AckError),
}

/// What the dashboard's handlers share.
pub struct Dashboard<B> {
    backend: Arc<B>,
    config: DashboardConfig,
    acks: AckStore,
    health: HealthHistory,
    shutdown: watch::Receiver<bool>,
}

impl<B> std::fmt::Debug for Dashboard<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("config", &self.config)
            .finish()
    }
}

impl<B: TopicBackend> Dashboard<B> {
    /// Loads the acknowledgements and starts the health sampler. Live SSE
    /// streams and the sampler end when `shutdown` turns true, so a graceful
    /// HTTP shutdown does not wait on open browsers.
    pub fn start(
        backend: Arc<B>,
        metrics: Metrics,
        config: DashboardConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, DashboardError> {
        let acks = AckStore::open(config.acks_file.clone())?;
        let health = HealthHistory::new(config.samples_kept);
        health::spawn_sampler(
            health.clone(),
            metrics,
            config.sample_every,
            shutdown.clone(),
        );
        Ok(Arc::new(Self {
            backend,
            config,
            acks,
            health,
            shutdown,
        }))
    }

    pub fn acks(&self) -> &AckStore {
        &self.acks
    }
}

/// The dashboard's routes; merge them into the application's router.
pub fn router<B: TopicBackend>(dashboard: Arc<Dashboard<B>>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/app.js", get(app_js))
        .route("/assets/app.css", get(app_css))
        .route("/api/v1/dashboard/anomalies", get(stream::<B>))
        .route("/api/v1/dashboard/acks", get(list_acks::<B>))
        .route("/api/v1/anomalies/{id}/ack", post(ack::<B>))
        .route("/api/v1/dashboard/health", get(health_samples::<B>))
        .with_state(dashboard)
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

async fn app_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_JS,
    )
        .into_response()
}

async fn app_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_CSS,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    /// On a fresh connection, how many of each partition's latest anomalies
    /// to send first (default 200, at most 5,000).
    backlog: Option<u64>,
    /// A cursor to resume from, for clients that cannot set `Last-Event-ID`.
    cursor: Option<String>,
}

async fn stream<B: TopicBackend>(
    State(d): State<Arc<Dashboard<B>>>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Response {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(q.cursor);
    let resume = match resume.as_deref().map(Cursor::parse) {
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": e.to_string()})),
            )
                .into_response();
        }
        None => None,
    };
    let backlog = q.backlog.unwrap_or(200).min(5_000);
    let events = feed::follow(
        d.backend.clone(),
        d.config.anomalies_topic.clone(),
        d.config.partitions,
        resume,
        backlog,
        d.acks.subscribe(),
        d.shutdown.clone(),
    )
    .await;
    match events {
        Ok(events) => Sse::new(events)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn list_acks<B: TopicBackend>(State(d): State<Arc<Dashboard<B>>>) -> Json<Vec<Ack>> {
    Json(d.acks.all())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    by: Option<String>,
    note: Option<String>,
}

async fn ack<B: TopicBackend>(
    State(d): State<Arc<Dashboard<B>>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        AckRequest::default()
    } else {
        match serde_json::from_slice::<AckRequest>(&body) {
            Ok(r) => r,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(serde_json::json!({"error": format!("ack body: {e}")})),
                )
                    .into_response();
            }
        }
    };
    match d.acks.acknowledge(&id, req.by, req.note).await {
        Ok(ack) => (StatusCode::OK, Json(ack)).into_response(),
        Err(e @ acks::AckError::Invalid { .. }) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": e.to_string()})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct HealthQuery {
    /// Only samples taken after this time (epoch ms).
    since: Option<i64>,
}

async fn health_samples<B: TopicBackend>(
    State(d): State<Arc<Dashboard<B>>>,
    Query(q): Query<HealthQuery>,
) -> Response {
    Json(serde_json::json!({
        "interval_ms": d.config.sample_every.as_millis() as u64,
        "samples": d.health.since(q.since.unwrap_or(i64::MIN)),
    }))
    .into_response()
}
