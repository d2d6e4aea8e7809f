//! The auditor's console: server-rendered HTML under `/console`, on the API's listener.
//! Every page works without script. Auditors sign in with the token `teams-bridge console
//! add-user` printed for them; the session cookie is `HttpOnly`, `SameSite=Strict`, `Secure`
//! when the service is reached over HTTPS, and expires; forms carry a CSRF token. Every page
//! view and export of a signed-in auditor is written to the access log, which the console
//! shows.

pub mod accounts;
mod evidence;
mod layout;
mod login;
mod pages;
mod record;

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{header, request::Parts, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Router,
};
use axum_extra::extract::CookieJar;
use sqlx::PgPool;

use super::AppState;
use crate::config::Webhook;
use accounts::Session;

/// The session cookie's name.
const SESSION_COOKIE: &str = "tb_console";

/// What the console needs.
#[derive(Clone)]
pub struct ConsoleState {
    pool: PgPool,
    webhooks: std::sync::Arc<Vec<Webhook>>,
    secure: bool,
}

impl ConsoleState {
    /// The console over `pool`; `webhooks` check each activity's HMAC on its evidence page;
    /// `secure` marks cookies `Secure` (HTTPS).
    pub fn new(pool: PgPool, webhooks: Vec<Webhook>, secure: bool) -> Self {
        Self {
            pool,
            webhooks: std::sync::Arc::new(webhooks),
            secure,
        }
    }
}

/// Routes under `/console`.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(pages::search))
        .route("/console/console.css", get(stylesheet))
        .route("/console/login", get(login::form).post(login::submit))
        .route("/console/logout", post(login::logout))
        .route("/console/export.csv", get(pages::export))
        .route("/console/records/{record}", get(record::show))
        .route("/console/actors/{actor}", get(pages::actor))
        .route("/console/entries/{event_id}", get(evidence::show))
        .route("/console/entries/{event_id}/raw", get(evidence::raw))
        .route("/console/dead-letters", get(pages::dead_letters))
        .route("/console/access", get(pages::access))
}

async fn stylesheet() -> Response {
    let headers = [
        (header::CONTENT_TYPE, "text/css; charset=utf-8"),
        (header::CACHE_CONTROL, "max-age=3600"),
    ];
    (headers, layout::CSS).into_response()
}

/// A signed-in auditor. Extracting one writes the request to the access log; without a live
/// session the browser is sent to the sign-in page (and comes back after).
pub struct Auditor {
    /// Their session.
    pub session: Session,
}

impl<S> FromRequestParts<S> for Auditor
where
    ConsoleState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let console = ConsoleState::from_ref(state);
        let jar = CookieJar::from_headers(&parts.headers);
        let here = parts
            .uri
            .path_and_query()
            .map_or("/console", |p| p.as_str());
        let to_login = || {
            let next = serde_urlencoded::to_string([("next", here)]).unwrap_or_default();
            Redirect::to(&format!("/console/login?{next}")).into_response()
        };
        let Some(id) = jar.get(SESSION_COOKIE).map(|c| c.value().to_string()) else {
            return Err(to_login());
        };
        let session = match accounts::session(&console.pool, &id).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(to_login()),
            Err(e) => return Err(unavailable(&e)),
        };
        let method = parts.method.as_str();
        if let Err(e) = accounts::log_access(&console.pool, &session.user, method, here).await {
            // A view that cannot be logged is not shown.
            return Err(unavailable(&e));
        }
        Ok(Auditor { session })
    }
}

/// The page when Postgres fails.
fn unavailable(e: &sqlx::Error) -> Response {
    tracing::error!(error = %e, "console: database unavailable");
    let body = layout::page(
        "Unavailable",
        None,
        layout::notice(
            "error",
            "The audit log cannot be read right now. Try again shortly.",
        ),
    );
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

/// A query string of the non-empty pairs (`?a=1&b=2`, or nothing).
fn query_string(pairs: &[(&str, &str)]) -> String {
    let pairs: Vec<&(&str, &str)> = pairs.iter().filter(|(_, v)| !v.is_empty()).collect();
    match serde_urlencoded::to_string(pairs) {
        Ok(q) if !q.is_empty() => format!("?{q}"),
        _ => String::new(),
    }
}

/// A path segment, percent-encoded (actor names may hold anything).
fn segment(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .unwrap_or_default()
        .trim_start_matches('=')
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_encoded() {
        assert_eq!(
            query_string(&[("record", "E-1"), ("actor", "")]),
            "?record=E-1"
        );
        assert_eq!(query_string(&[("a", "")]), "");
        assert_eq!(segment("Jane Doe/&?"), "Jane%20Doe%2F%26%3F");
    }
}
