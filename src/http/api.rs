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
    domain::{hr_command::Operation, secret::Secret},
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

/// Turns query parameters into a filter; a bad value is a 400 naming its parameter. Every
/// parameter is checked exactly as `openapi.json` describes it, so a request the description
/// allows is accepted and one it forbids is refused.
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
        let name = k.as_str();
        let text = || word(v).map_err(|e| bad(name, e));
        match name {
            "record" => f.record = Some(record(v).map_err(|e| bad(name, e))?),
            "actor" => f.actor = Some(text()?),
            "team" => f.team = Some(text()?),
            "channel" => f.channel = Some(text()?),
            "operation" => {
                let why = || {
                    bad(
                        name,
                        "expected one of create, read, update, delete, note, grant, revoke, erase"
                            .into(),
                    )
                };
                f.operation = Some(Operation::parse_name(v).ok_or_else(why)?)
            }
            "since" => f.since = Some(time(v, now).map_err(|e| bad(name, e))?),
            "until" => f.until = Some(time(v, now).map_err(|e| bad(name, e))?),
            "limit" => f.limit = limit(v).map_err(|e| bad(name, e))?,
            "cursor" => {
                let why = || bad(name, "not a cursor from a previous page".into());
                f.after = Some(Cursor::decode(v).ok_or_else(why)?)
            }
            other => return Err(bad(other, "unknown parameter".into())),
        }
    }
    Ok(f)
}

/// `^[A-Za-z0-9_-]{1,64}$`, the grammar's record id.
fn record(v: &str) -> Result<String, String> {
    let ok = (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| v.to_string())
        .ok_or_else(|| "expected 1 to 64 of A-Z a-z 0-9 _ -".into())
}

/// 1 to 256 characters, no NUL (Postgres text holds none).
fn word(v: &str) -> Result<String, String> {
    let ok = (1..=256).contains(&v.chars().count()) && !v.contains('\0');
    ok.then(|| v.to_string())
        .ok_or_else(|| "expected 1 to 256 characters, no NUL".into())
}

/// A whole number from 1 to 1000, digits only.
fn limit(v: &str) -> Result<i64, String> {
    match v.bytes().all(|b| b.is_ascii_digit()) {
        true => query::parse_limit(v),
        false => Err("must be a whole number from 1 to 1000".into()),
    }
}

/// The three forms of `openapi.json`, exactly: an RFC 3339 date-time or a date (years from
/// 1, no leap second), or an age of up to 7 digits of minutes or hours, 5 of days, 4 of weeks.
fn time(v: &str, now: chrono::DateTime<Utc>) -> Result<chrono::DateTime<Utc>, String> {
    use chrono::{Datelike, Timelike};
    let bad = || {
        format!("{v:?} is not a time: use RFC 3339, YYYY-MM-DD, or an age like 30m, 12h, 7d, 2w")
    };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        let ok = t.year() >= 1 && t.nanosecond() < 1_000_000_000;
        return ok.then(|| t.with_timezone(&Utc)).ok_or_else(bad);
    }
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    let age = match v.as_bytes().get(digits) {
        Some(b'm' | b'h') => (1..=7).contains(&digits),
        Some(b'd') => (1..=5).contains(&digits),
        Some(b'w') => (1..=4).contains(&digits),
        _ => false,
    } && v.len() == digits + 1;
    let date = v.len() == 10
        && v.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
        && !v.starts_with("0000");
    match age || date {
        true => query::parse_time(v, now),
        false => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_exactly_what_the_description_allows() {
        let now = Utc::now();
        for ok in [
            "2026-11-27T10:00:00Z",
            "2026-11-27t10:00:00.5+01:00",
            "2026-11-27",
            "9999999m",
            "99999d",
            "9999w",
            "0h",
        ] {
            assert!(time(ok, now).is_ok(), "{ok}");
        }
        for bad in [
            "",
            " 7d",
            "7d ",
            "100000d",
            "99999w",
            "0000-01-01",
            "2026-1-05",
            "2026-02-30",
            "7y",
            "+7d",
            "2026-12-31T23:59:60Z",
        ] {
            assert!(time(bad, now).is_err(), "{bad:?}");
        }
        assert!(record("E-1042").is_ok() && record("").is_err() && record("E 1").is_err());
        assert!(record(&"a".repeat(64)).is_ok() && record(&"a".repeat(65)).is_err());
        assert!(word("Jane Doe").is_ok() && word("").is_err() && word("a\0b").is_err());
        assert!(word(&"é".repeat(256)).is_ok() && word(&"é".repeat(257)).is_err());
        assert!(
            limit("1").is_ok()
                && limit("+1").is_err()
                && limit(" 1").is_err()
                && limit("1001").is_err()
        );
    }
}
