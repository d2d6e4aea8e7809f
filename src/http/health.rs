//! Health and readiness. `/healthz`: the process serves HTTP. `/readyz`: Postgres answers,
//! NATS is connected, the stream exists and the outbox is not falling behind; 503 with the
//! list of problems otherwise. Workers have their own `/healthz`, from their heartbeat.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream;
use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use futures::future::BoxFuture;
use serde_json::json;
use sqlx::PgPool;

use crate::{relay, worker::Heartbeat};

/// What `/readyz` found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Readiness {
    /// Empty when ready.
    pub problems: Vec<String>,
    /// Unpublished outbox rows (when Postgres answered).
    pub outbox_backlog: Option<i64>,
    /// Age of the oldest, when there is one.
    pub outbox_oldest_seconds: Option<f64>,
}

/// Checks readiness: the real dependencies, or a stand-in where a test has none.
pub trait Probe: Send + Sync + 'static {
    /// Looks at every dependency once.
    fn check(&self) -> BoxFuture<'_, Readiness>;
}

/// The readiness checks, shared by every request.
#[derive(Clone)]
pub struct Health(pub Arc<dyn Probe>);

/// The dependencies of `serve`.
pub struct Dependencies {
    /// Postgres (and the outbox in it).
    pub pool: PgPool,
    /// The NATS connection.
    pub nats: async_nats::Client,
    /// JetStream.
    pub js: jetstream::Context,
    /// The stream that must exist.
    pub stream_name: String,
    /// Oldest outbox row that is still fine.
    pub max_outbox_age: Duration,
}

impl Probe for Dependencies {
    fn check(&self) -> BoxFuture<'_, Readiness> {
        Box::pin(async move {
            let mut r = Readiness::default();
            match relay::backlog(&self.pool).await {
                Ok((n, age)) => {
                    if age > self.max_outbox_age.as_secs_f64() {
                        let old = format!("outbox: oldest unpublished entry is {age:.0} s old");
                        r.problems.push(old);
                    }
                    (r.outbox_backlog, r.outbox_oldest_seconds) = (Some(n), (n > 0).then_some(age));
                }
                Err(e) => r
                    .problems
                    .push(format!("postgres: {}", short(&e.to_string()))),
            }
            let nats = self.nats.connection_state();
            if nats != async_nats::connection::State::Connected {
                r.problems.push(format!("nats: {nats}"));
            } else if let Err(e) = self.js.get_stream_no_info(&self.stream_name).await {
                r.problems.push(format!("stream {}: {e}", self.stream_name));
            }
            r
        })
    }
}

fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

/// The process is alive and serving HTTP.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready to take webhooks, or 503 with the problems.
pub async fn readyz(State(Health(probe)): State<Health>) -> Response {
    let r = probe.check().await;
    let ready = r.problems.is_empty();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "problems": r.problems,
        "outbox_backlog": r.outbox_backlog,
        "outbox_oldest_seconds": r.outbox_oldest_seconds,
    });
    let status = match ready {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(body)).into_response()
}

/// The worker's small HTTP surface: health (from its heartbeat) and its metrics.
pub fn worker_router(heartbeat: Heartbeat) -> Router {
    let handle = crate::infra::telemetry::metrics();
    let health = move || async move {
        let age = heartbeat.age().as_secs_f64();
        // A step completes at least every ~1 s while NATS answers; 30 s without one is stuck.
        let (status, word) = match age < 30.0 {
            true => (StatusCode::OK, "ok"),
            false => (StatusCode::SERVICE_UNAVAILABLE, "stalled"),
        };
        let body = json!({ "status": word, "last_step_seconds_ago": age });
        (status, Json(body))
    };
    let metrics = move || async move { super::metrics::render(&handle) };
    Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
}
