//! The skeleton: the least a pipeline on this stack can do and still keep the brief's
//! durable promises, so that the cost of teams-bridge can be set against a bound instead of
//! against itself (#14 asks for half of `0bc840b`'s CPU per webhook; this says how much of
//! that any design built from the same parts must spend anyway).
//!
//! What it does, per webhook, and why none of it can go:
//! - `serve` ([`serve`]): verifies the HMAC over the raw bytes, parses the activity for its
//!   id, stores the exact bytes with a `(webhook, activity id)` unique key and an outbox row
//!   in a group commit (one statement, autocommit: one round trip and one WAL flush per
//!   batch) and answers with the receipt only after the commit; then publishes each new
//!   activity to JetStream from memory with its `Nats-Msg-Id` and CloudEvents headers
//!   (pipelined, acks awaited together) and deletes the outbox rows in batches.
//! - `worker` ([`worker`]): fetches batches from a durable pull consumer, derives each
//!   audit entry with the real HR grammar, writes them in one autocommit statement (the key
//!   makes a redelivery a no-op) with the indexes the audit questions need (record, actor,
//!   operation by time), and acks each message.
//!
//! What it leaves out, each a part of teams-bridge a user relies on: the relay's sweep (the
//! outbox rows a crash leaves are kept, but nothing here publishes them), the sealed audit tree, the answers to
//! questions, the decision of the HR editors list, the request limits and load shedding,
//! tracing, metrics and health. Its cost is therefore a lower bound for teams-bridge with
//! the same lingers (1 ms commit, 3 ms publish, 10 ms worker), not a design to ship.
//!
//! The lingers can be changed (`SKELETON_COMMIT_LINGER_MS`, `SKELETON_PUBLISH_LINGER_MS`,
//! `SKELETON_WORKER_LINGER_MS`) to find the least cost the parts allow at a given latency.
//!
//! It runs against its own database (`teams-bridge-skeleton` creates its tables) with the
//! service's environment (`DATABASE_URL`, `NATS_*`, `TEAMS_WEBHOOKS`, `LISTEN_ADDR`,
//! `HR_AUDIT_CONSUMER`), so `teams-bridge-bench` loads it and checks its ledger unchanged.

mod publish;
mod serve;
mod worker;

pub use serve::serve;
pub use worker::worker;

use std::time::Duration;

use anyhow::Context as _;
use sqlx::{migrate::MigrateDatabase, PgPool, Postgres};
use teams_bridge::config::Config;

/// A linger from the environment (milliseconds), or teams-bridge's own.
fn linger(var: &str, default_ms: u64) -> Duration {
    let ms = std::env::var(var).ok().and_then(|v| v.parse().ok());
    Duration::from_millis(ms.unwrap_or(default_ms))
}

/// The skeleton's tables: what the bench's ledger reads, and nothing else.
const SCHEMA: &[&str] = &[
    "create table if not exists activities (
        event_id uuid primary key,
        webhook text not null,
        activity_id text not null,
        raw bytea not null,
        received_at timestamptz not null default now(),
        unique (webhook, activity_id))",
    "create table if not exists outbox (event_id uuid primary key)",
    "create table if not exists audit_log (
        event_id uuid primary key,
        webhook text not null,
        operation text not null,
        record_id text,
        actor text,
        activity_at timestamptz not null,
        raw_sha256 bytea not null)",
    "create index if not exists audit_log_record_idx on audit_log (record_id, activity_at)",
    "create index if not exists audit_log_actor_idx on audit_log (actor, activity_at)",
    "create index if not exists audit_log_operation_idx on audit_log (operation, activity_at)",
];

/// teams-bridge's request pool on the configured database, which is created with the
/// skeleton's tables when missing.
async fn database(config: &Config) -> anyhow::Result<PgPool> {
    let url = config.database_url.expose();
    if !Postgres::database_exists(url).await? {
        // The other process may create it at the same moment.
        if let Err(e) = Postgres::create_database(url).await {
            anyhow::ensure!(Postgres::database_exists(url).await?, e);
        }
    }
    let pool = teams_bridge::infra::db::connect(config)?;
    // Two processes may start at once: the lock lets one create, the other then sees it.
    let mut tx = pool.begin().await.context("connecting to Postgres")?;
    sqlx::query("select pg_advisory_xact_lock(7214)")
        .execute(&mut *tx)
        .await?;
    for statement in SCHEMA {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::SCHEMA;

    #[test]
    fn the_schema_keeps_the_keys_that_make_repeats_no_ops() {
        let all = SCHEMA.join("\n");
        assert!(all.contains("unique (webhook, activity_id)"));
        assert!(all.contains(
            "event_id uuid primary key,\n        webhook text not null,\n        operation"
        ));
    }
}
