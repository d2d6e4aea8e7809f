//! Signing in and out. The sign-in form is protected by a double-submit cookie (there is no
//! session yet to hold its CSRF token); the sign-out form by the session's own token.

use axum::{
    extract::{Query, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Redirect, Response},
    Form,
};
use axum_extra::extract::CookieJar;
use maud::html;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{
    accounts::{self, SESSION_HOURS},
    layout::{notice, page},
    unavailable, Auditor, ConsoleState, SESSION_COOKIE,
};

const LOGIN_CSRF_COOKIE: &str = "tb_console_login";

/// `?next=` of the sign-in page.
#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub struct Credentials {
    name: String,
    token: String,
    csrf: String,
    next: Option<String>,
}

/// Where to go after signing in: a console page, never another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/console") && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/console",
    }
}

fn cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&text).expect("cookie values are base64url")
}

fn form_page(
    state: &ConsoleState,
    next: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let csrf = accounts::secret();
    let body = html! {
        div.login.card {
            @if let Some(e) = error { (notice("error", e)) }
            form method="post" action="/console/login" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                div { label for="name" { "Your name" } input id="name" name="name" autocomplete="username" required autofocus; }
                div { label for="token" { "Sign-in token" } input id="token" name="token" type="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
            p.notice.empty { "No account? An operator runs " code { "teams-bridge console add-user NAME" } " and gives you the token it prints." }
        }
    };
    let mut response = (status, page("Sign in", None, body)).into_response();
    let set = cookie(LOGIN_CSRF_COOKIE, &csrf, 900, state.secure);
    response.headers_mut().append(header::SET_COOKIE, set);
    response
}

/// `GET /console/login`.
pub async fn form(State(state): State<ConsoleState>, Query(q): Query<Next>) -> Response {
    form_page(&state, safe_next(q.next.as_deref()), None, StatusCode::OK)
}

/// `POST /console/login`.
pub async fn submit(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Form(c): Form<Credentials>,
) -> Response {
    let jar = CookieJar::from_headers(&headers);
    let expected = jar.get(LOGIN_CSRF_COOKIE).map(|c| c.value().to_string());
    let next = safe_next(c.next.as_deref()).to_string();
    let fresh = expected.is_some_and(|e| bool::from(e.as_bytes().ct_eq(c.csrf.as_bytes())));
    if !fresh {
        let why = "The form expired. Please sign in again.";
        return form_page(&state, &next, Some(why), StatusCode::FORBIDDEN);
    }
    match accounts::sign_in(&state.pool, c.name.trim(), &c.token).await {
        Ok(Some(id)) => {
            tracing::info!(user = %c.name.trim(), "console: signed in");
            let mut response = Redirect::to(&next).into_response();
            let h = response.headers_mut();
            h.append(
                header::SET_COOKIE,
                cookie(SESSION_COOKIE, &id, SESSION_HOURS * 3600, state.secure),
            );
            h.append(
                header::SET_COOKIE,
                cookie(LOGIN_CSRF_COOKIE, "", 0, state.secure),
            );
            response
        }
        Ok(None) => {
            tracing::warn!("console: a sign-in with a wrong name or token");
            let why = "Wrong name or token.";
            form_page(&state, &next, Some(why), StatusCode::UNAUTHORIZED)
        }
        Err(e) => unavailable(&e),
    }
}

/// The sign-out form's field.
#[derive(Deserialize)]
pub struct Csrf {
    csrf: String,
}

/// `POST /console/logout`.
pub async fn logout(
    State(state): State<ConsoleState>,
    auditor: Auditor,
    headers: HeaderMap,
    Form(f): Form<Csrf>,
) -> Response {
    if !bool::from(auditor.session.csrf.as_bytes().ct_eq(f.csrf.as_bytes())) {
        let body = notice(
            "error",
            "This form did not come from the console; nothing was done.",
        );
        return (StatusCode::FORBIDDEN, page("Refused", None, body)).into_response();
    }
    let jar = CookieJar::from_headers(&headers);
    if let Some(id) = jar.get(SESSION_COOKIE) {
        if let Err(e) = accounts::sign_out(&state.pool, id.value()).await {
            return unavailable(&e);
        }
    }
    let mut response = Redirect::to("/console/login").into_response();
    let clear = cookie(SESSION_COOKIE, "", 0, state.secure);
    response.headers_mut().append(header::SET_COOKIE, clear);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_pages_are_followed_after_sign_in() {
        assert_eq!(
            safe_next(Some("/console/records/E-1")),
            "/console/records/E-1"
        );
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/api/audit",
            "/console\\@evil",
        ] {
            assert_eq!(safe_next(Some(bad)), "/console", "{bad}");
        }
        assert_eq!(safe_next(None), "/console");
    }
}
