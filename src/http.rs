//! The HTTP surface: routes, health, readiness and metrics.

use axum::{
    extract::{DefaultBodyLimit, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde_json::json;

use crate::{consumer::Heartbeat, receiver, state::AppState};

/// All routes. Tests drive this without a socket.
pub fn router(state: AppState) -> Router {
    let limit = state.config.body_limit;
    Router::new()
        .route(
            "/webhooks/{name}",
            post(receiver::receive).layer(DefaultBodyLimit::max(limit)),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::api::routes())
        .with_state(state)
}

/// The worker's small HTTP surface: health (from its heartbeat) and its metrics.
pub fn worker_router(heartbeat: Heartbeat) -> Router {
    let handle = crate::telemetry::metrics();
    let health = move || async move {
        let age = heartbeat.age().as_secs_f64();
        // A step completes at least every ~1 s while NATS answers; 30 s without one is stuck.
        let (status, word) = if age < 30.0 {
            (StatusCode::OK, "ok")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "stalled")
        };
        (
            status,
            Json(json!({ "status": word, "last_step_seconds_ago": age })),
        )
    };
    let metrics = move || async move { render_metrics(&handle) };
    Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
}

/// The process is alive and serving HTTP.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready to take webhooks: Postgres answers, NATS is connected, the stream exists and the
/// outbox is not falling behind. 503 with the list of problems otherwise.
async fn readyz(State(state): State<AppState>) -> Response {
    let mut problems: Vec<String> = Vec::new();
    let (backlog, oldest) = match crate::outbox::backlog(&state.pool).await {
        Ok((n, age)) => {
            if age > state.config.ready_max_outbox_age.as_secs_f64() {
                problems.push(format!(
                    "outbox: oldest unpublished entry is {age:.0} s old"
                ));
            }
            (Some(n), (n > 0).then_some(age))
        }
        Err(e) => {
            problems.push(format!("postgres: {}", short(&e.to_string())));
            (None, None)
        }
    };
    let nats = state.nats.connection_state();
    if nats != async_nats::connection::State::Connected {
        problems.push(format!("nats: {nats}"));
    } else if let Err(e) = state.js.get_stream_no_info(&state.config.stream_name).await {
        problems.push(format!("stream {}: {e}", state.config.stream_name));
    }
    let body = json!({
        "status": if problems.is_empty() { "ready" } else { "not_ready" },
        "problems": problems,
        "outbox_backlog": backlog,
        "outbox_oldest_seconds": oldest,
    });
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Prometheus text exposition.
async fn metrics(State(state): State<AppState>) -> Response {
    render_metrics(&state.metrics)
}

fn render_metrics(handle: &metrics_exporter_prometheus::PrometheusHandle) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}
