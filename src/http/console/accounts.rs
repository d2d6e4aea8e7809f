//! Auditor accounts and their sessions. A sign-in token is 256 random bits, printed once by
//! `teams-bridge console add-user NAME` and stored only as its SHA-256; a session is another
//! 256 random bits in an `HttpOnly` cookie, stored as its SHA-256 beside the session's CSRF
//! token and expiry. Nothing that would let someone sign in is kept in clear.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// How long a sign-in lasts.
pub const SESSION_HOURS: i64 = 8;

/// A new random secret (token, session id, CSRF token), URL-safe.
pub fn secret() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn digest(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

/// A user name: what the access log shows (1–64 letters, digits, `.`, `_`, `-`, `@`).
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// Adds `name` and returns its sign-in token (shown once); `None` when the name exists.
pub async fn add_user(pool: &PgPool, name: &str) -> Result<Option<String>, sqlx::Error> {
    let token = secret();
    let added = sqlx::query(
        "insert into console_users (name, token_hash) values ($1, $2) on conflict do nothing",
    )
    .bind(name)
    .bind(digest(&token))
    .execute(pool)
    .await?;
    Ok((added.rows_affected() == 1).then_some(token))
}

/// Removes `name` and ends its sessions; false when there was no such user.
pub async fn remove_user(pool: &PgPool, name: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("delete from console_users where name = $1")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Every user, with when they were added.
pub async fn users(pool: &PgPool) -> Result<Vec<(String, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as("select name, created_at from console_users order by name")
        .fetch_all(pool)
        .await
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The auditor.
    pub user: String,
    /// The token every form of this session carries.
    pub csrf: String,
}

/// Signs `name` in with `token`: a new session's cookie value, or `None`.
pub async fn sign_in(
    pool: &PgPool,
    name: &str,
    token: &str,
) -> Result<Option<String>, sqlx::Error> {
    let user: Option<String> =
        sqlx::query_scalar("select name from console_users where name = $1 and token_hash = $2")
            .bind(name)
            .bind(digest(token.trim()))
            .fetch_optional(pool)
            .await?;
    let Some(user) = user else { return Ok(None) };
    sqlx::query("delete from console_sessions where expires_at < now()")
        .execute(pool)
        .await?;
    let id = secret();
    sqlx::query(
        "insert into console_sessions (id_hash, user_name, csrf, expires_at) \
         values ($1, $2, $3, now() + make_interval(hours => $4))",
    )
    .bind(digest(&id))
    .bind(&user)
    .bind(secret())
    .bind(SESSION_HOURS as i32)
    .execute(pool)
    .await?;
    Ok(Some(id))
}

/// The live session a cookie value names.
pub async fn session(pool: &PgPool, id: &str) -> Result<Option<Session>, sqlx::Error> {
    let row: Option<(String, String)> = sqlx::query_as(
        "select user_name, csrf from console_sessions where id_hash = $1 and expires_at > now()",
    )
    .bind(digest(id))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(user, csrf)| Session { user, csrf }))
}

/// Ends a session.
pub async fn sign_out(pool: &PgPool, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("delete from console_sessions where id_hash = $1")
        .bind(digest(id))
        .execute(pool)
        .await?;
    Ok(())
}

/// Writes one line of the access log.
pub async fn log_access(
    pool: &PgPool,
    user: &str,
    method: &str,
    path: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("insert into console_access (user_name, method, path) values ($1, $2, $3)")
        .bind(user)
        .bind(method)
        .bind(path)
        .execute(pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_and_distinct_and_names_are_plain() {
        let (a, b) = (secret(), secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43, "256 bits in base64url");
        assert!(valid_name("ann.auditor@contoso") && !valid_name("ann auditor") && !valid_name(""));
    }
}
