//! The outbox backlog: how many rows wait and how old the oldest is, read by the relay
//! every few seconds and by `/readyz`, and kept in two gauges.

use sqlx::PgPool;

/// Unpublished outbox rows and the age in seconds of the oldest (0 when empty); also sets the
/// backlog gauges, so every reader (relay, `/readyz`) keeps them current.
pub async fn backlog(pool: &PgPool) -> Result<(i64, f64), sqlx::Error> {
    let (n, age): (i64, Option<f64>) = sqlx::query_as(
        "select count(*), extract(epoch from now() - min(created_at))::float8 from outbox",
    )
    .fetch_one(pool)
    .await?;
    let age = age.unwrap_or(0.0);
    metrics::gauge!("teams_bridge_outbox_backlog").set(n as f64);
    metrics::gauge!("teams_bridge_outbox_oldest_seconds").set(age);
    Ok((n, age))
}
