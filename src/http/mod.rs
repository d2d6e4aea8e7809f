//! The web surface: one router for `serve` (webhooks, health, readiness, metrics, `/api`),
//! and a small one for workers. Handlers take only the part of the state they use
//! ([`FromRef`] substates), and every part can be built without a live Postgres or NATS, so
//! tests drive the router with `oneshot`, without a socket.

pub mod api;
pub mod error;
pub mod health;
pub mod metrics;
pub mod webhook;

use axum::{
    extract::{DefaultBodyLimit, FromRef},
    routing::{get, post},
    Router,
};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::ingest::Ingest;
use api::ApiState;
use health::Health;

/// Everything a request handler may touch: one cloneable struct of cheap handles.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// Receiving webhooks.
    pub ingest: Ingest,
    /// The audit API.
    pub api: ApiState,
    /// Readiness checks.
    pub health: Health,
    /// Prometheus exposition.
    pub metrics: PrometheusHandle,
}

/// All routes of `serve`.
pub fn router(state: AppState) -> Router {
    let limit = state.ingest.body_limit();
    Router::new()
        .route(
            "/webhooks/{name}",
            post(webhook::receive).layer(DefaultBodyLimit::max(limit)),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .merge(api::routes())
        .with_state(state)
}

pub use health::worker_router;
