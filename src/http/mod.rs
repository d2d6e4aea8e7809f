//! The web surface: one router for `serve` (webhooks, health, readiness, metrics, `/api`),
//! and a small one for workers. Handlers take only the part of the state they use
//! ([`FromRef`] substates), and every part can be built without a live Postgres or NATS, so
//! tests drive the router with `oneshot`, without a socket.

pub mod api;
pub mod console;
pub mod error;
pub mod health;
pub mod metrics;
pub mod server;
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
    /// The auditor's console.
    pub console: console::ConsoleState,
    /// Readiness checks.
    pub health: Health,
    /// Prometheus exposition.
    pub metrics: PrometheusHandle,
}

/// All routes of `serve` on one listener.
pub fn router(state: AppState) -> Router {
    public_router().merge(admin_routes()).with_state(state)
}

/// The routes the world may reach (webhooks, `/healthz`, `/api`), when `/readyz` and
/// `/metrics` are served apart on `ADMIN_LISTEN_ADDR`.
pub fn public_router() -> Router<AppState> {
    // The webhook handler reads its body itself, bounded in size and time: no default limit.
    Router::new()
        .route(
            "/webhooks/{name}",
            post(webhook::receive).layer(DefaultBodyLimit::disable()),
        )
        .route("/healthz", get(health::healthz))
        .merge(api::routes())
        .merge(console::routes())
}

/// The operator's routes on `ADMIN_LISTEN_ADDR`: health, readiness and metrics.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .merge(admin_routes())
        .with_state(state)
}

fn admin_routes() -> Router<AppState> {
    Router::new()
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
}

pub use health::worker_router;
