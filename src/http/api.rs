//! `GET /api/audit`: the audit log over HTTP, with the CLI's filters as query parameters,
//! keyset pagination (`next` cursor) and bearer-token auth. Off when no token is configured.

use std::collections::HashMap;

use axum::{
    extract::{Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use chrono::Utc;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use sqlx::PgPool;

use super::{error::ApiError, AppState};
use crate::{
    audit::query::{self, AuditFilter, Cursor},
    domain::secret::Secret,
};

/// What the audit API needs: where the log is, and the token that opens it.
#[derive(Clone)]
pub struct ApiState {
    pool: PgPool,
    token: Option<Secret<String>>,
}

impl ApiState {
    /// The API over `pool`; without a token the API is off.
    pub fn new(pool: PgPool, token: Option<Secret<String>>) -> Self {
        Self { pool, token }
    }
}

/// The OpenAPI 3.1 description of this endpoint, shipped in the repository and served here.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// Routes under `/api`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/audit", get(list))
        .route("/api/openapi.json", get(openapi))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let filter = filter_from_params(&params).inspect_err(|_| refused("bad_parameter"))?;
    let (entries, next) = query::query(&state.pool, &filter).await.map_err(|e| {
        tracing::error!(error = %e, "audit query failed");
        ApiError::unavailable("unavailable", "the audit log is unavailable")
    })?;
    let body = serde_json::json!({ "entries": entries, "next": next.map(|c| c.encode()) });
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// Bearer token check. The scheme is case-insensitive (RFC 7235); the token is compared as a
/// SHA-256 digest in constant time, so neither its bytes nor its length leak. No token
/// configured: the endpoint does not exist. Refusals are counted by reason.
fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.token else {
        refused("disabled");
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "disabled",
            "the audit API is off (set AUDIT_API_TOKEN)",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let digest = |s: &str| Sha256::digest(s.as_bytes());
    let matches = given.is_some_and(|g| bool::from(digest(g).ct_eq(&digest(expected.expose()))));
    if matches {
        return Ok(());
    }
    refused(if given.is_none() {
        "missing_token"
    } else {
        "wrong_token"
    });
    Err(ApiError::unauthorized(
        "unauthorized",
        "missing or wrong bearer token",
    ))
}

/// Counts a refused API call.
fn refused(reason: &'static str) {
    metrics::counter!("teams_bridge_api_refused_total", "reason" => reason).increment(1);
}

/// Turns query parameters into a filter; a bad value is a 400 naming its parameter.
pub(crate) fn filter_from_params(
    params: &HashMap<String, String>,
) -> Result<AuditFilter, ApiError> {
    let bad = |name: &str, why: String| {
        ApiError::bad_request("bad_parameter", format!("parameter {name}: {why}"))
    };
    let mut f = AuditFilter {
        limit: 50,
        ..Default::default()
    };
    let now = Utc::now();
    for (k, v) in params {
        match k.as_str() {
            "record" => f.record = Some(v.clone()),
            "actor" => f.actor = Some(v.clone()),
            "team" => f.team = Some(v.clone()),
            "channel" => f.channel = Some(v.clone()),
            "operation" => {
                f.operation = Some(query::parse_operation(v).ok_or_else(|| {
                    bad(
                        "operation",
                        "expected create, read, update, delete or note".into(),
                    )
                })?)
            }
            "since" => f.since = Some(query::parse_time(v, now).map_err(|e| bad("since", e))?),
            "until" => f.until = Some(query::parse_time(v, now).map_err(|e| bad("until", e))?),
            "limit" => f.limit = query::parse_limit(v).map_err(|e| bad("limit", e))?,
            "cursor" => {
                f.after = Some(
                    Cursor::decode(v)
                        .ok_or_else(|| bad("cursor", "not a cursor from a previous page".into()))?,
                )
            }
            other => return Err(bad(other, "unknown parameter".into())),
        }
    }
    Ok(f)
}
