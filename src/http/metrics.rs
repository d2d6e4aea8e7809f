//! `GET /metrics`: the Prometheus text exposition of this process.

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use metrics_exporter_prometheus::PrometheusHandle;

/// Prometheus text exposition.
pub async fn metrics(State(handle): State<PrometheusHandle>) -> Response {
    render(&handle)
}

/// The exposition as a response (also served by workers).
pub(crate) fn render(handle: &PrometheusHandle) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}
