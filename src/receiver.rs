//! `POST /webhooks/{name}`: verify, commit, reply.
//!
//! Order matters: the raw bytes are read first, the signature is checked over exactly those
//! bytes, and only then is any JSON parsed. The reply is sent after the Postgres commit and
//! never waits on NATS. If the commit cannot be made within the reply budget the request is
//! answered 503 well before Teams' 5 s limit and nothing of it is stored.

use std::time::Instant;

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    activity::{Activity, ActivityError},
    error::ApiError,
    reply::Reply,
    signature::SignatureError,
    state::AppState,
    store::{NewActivity, StoreError, Stored},
    trace,
};

/// The webhook handler.
pub async fn receive(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && !v.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    let traceparent =
        trace::continue_or_start(headers.get("traceparent").and_then(|v| v.to_str().ok()));
    let span = tracing::info_span!("webhook", request_id = %request_id, webhook = %name, trace_id = %trace::trace_id(&traceparent));
    let result = handle(&state, &name, &headers, body, traceparent, started)
        .instrument(span.clone())
        .await;
    let elapsed = started.elapsed();
    let (outcome, mut response) = match result {
        Ok((outcome, reply)) => (outcome, (StatusCode::OK, Json(reply)).into_response()),
        Err((outcome, err)) => {
            // Shedding is counted in metrics; a log line per shed request would add load
            // exactly when there is too much of it.
            if outcome == "overloaded" {
                span.in_scope(|| tracing::debug!(outcome, "webhook refused"));
            } else {
                span.in_scope(|| tracing::warn!(status = err.status.as_u16(), outcome, reason = %err.message, "webhook refused"));
            }
            (outcome, err.into_response())
        }
    };
    span.in_scope(|| {
        // One line per request is an access log; at thousands per second it costs a good
        // share of a core, so it is debug. Refusals above are warnings.
        tracing::debug!(
            outcome,
            status = response.status().as_u16(),
            elapsed_ms = elapsed.as_secs_f64() * 1e3,
            "webhook answered"
        )
    });
    metrics::counter!("teams_bridge_webhook_requests_total", "outcome" => outcome).increment(1);
    metrics::histogram!("teams_bridge_reply_seconds").record(elapsed.as_secs_f64());
    if let Ok(v) = request_id.parse() {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

type Refusal = (&'static str, ApiError);

async fn handle(
    state: &AppState,
    name: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    traceparent: String,
    started: Instant,
) -> Result<(&'static str, Reply), Refusal> {
    // Shed load before doing any work: a fast 503 beats a reply that misses the deadline.
    let _permit = state.in_flight.clone().try_acquire_owned().map_err(|_| {
        (
            "overloaded",
            ApiError::unavailable("overloaded", "too many requests in flight; retry shortly"),
        )
    })?;
    let webhook = state.webhooks.get(name).ok_or((
        "unknown_webhook",
        ApiError::unauthorized("unknown_webhook", "unknown webhook"),
    ))?;
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "too_large",
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("body exceeds {} bytes", state.config.body_limit),
            ),
        ),
        _ => (
            "bad_body",
            ApiError::bad_request("bad_body", "could not read the request body"),
        ),
    })?;
    let auth = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if auth.is_some() && body.is_empty() {
        return Err((
            "empty",
            ApiError::bad_request("empty_body", "the request body is empty"),
        ));
    }
    webhook.keys.verify(auth, &body).map_err(|e| {
        let code = match e {
            SignatureError::Missing => "missing_signature",
            SignatureError::Malformed => "malformed_signature",
            SignatureError::Mismatch => "bad_signature",
        };
        ("bad_signature", ApiError::unauthorized(code, e.to_string()))
    })?;
    let activity = Activity::parse(&body).map_err(|e| match e {
        ActivityError::NotJson(_) => ("not_json", ApiError::bad_request("not_json", e.to_string())),
        ActivityError::NulCharacter => (
            "not_json",
            ApiError::bad_request("unstorable", e.to_string()),
        ),
    })?;

    let event_id = Uuid::now_v7();
    let new = NewActivity {
        event_id,
        webhook: webhook.name.clone(),
        activity,
        raw: body,
        traceparent: Some(traceparent),
    };
    let text = new.activity.text.clone();
    let budget = state.config.reply_budget.saturating_sub(started.elapsed());
    let stored = tokio::time::timeout(budget, state.committer.commit(new))
        .await
        .map_err(|_| {
            (
                "unavailable",
                ApiError::unavailable(
                    "unavailable",
                    "could not store the message in time; nothing was stored",
                ),
            )
        })?
        .map_err(|e| match e {
            StoreError::Rejected(reason) => {
                tracing::warn!(%reason, "database refused the activity");
                (
                    "rejected",
                    ApiError::bad_request("unstorable", "the activity could not be stored"),
                )
            }
            StoreError::Unavailable(reason) => {
                tracing::error!(%reason, "database unavailable");
                (
                    "unavailable",
                    ApiError::unavailable(
                        "unavailable",
                        "storage is unavailable; nothing was stored",
                    ),
                )
            }
        })?;
    let outcome = match stored {
        Stored::New(_) => "accepted",
        Stored::Duplicate(_) => "duplicate",
    };
    Ok((outcome, Reply::receipt(text.as_deref(), stored.event_id())))
}
