//! Replay: queues stored activities for publishing again. Postgres is the record and the
//! stream can be refilled from it: after a lost or trimmed stream, or for rows that went to
//! `outbox_dead`. Safe while the service runs: JetStream drops repeats inside its
//! de-duplication window, and consumers are idempotent on the event id.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// Which activities to queue again. All filters are optional and combined with AND.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    /// Received at or after.
    pub since: Option<DateTime<Utc>>,
    /// Received before.
    pub until: Option<DateTime<Utc>>,
    /// Of this webhook.
    pub webhook: Option<String>,
    /// Only these event ids (none: all).
    pub event_ids: Vec<Uuid>,
    /// Only rows in `outbox_dead`, moved back to the outbox.
    pub dead: bool,
}

/// The activities the filter selects (bound as `$1`…`$4`).
/// Erased and expired activities (tombstones, no bytes) are never queued again.
const MATCHING: &str = "\
    a.raw is not null \
    and ($1::timestamptz is null or a.received_at >= $1) \
    and ($2::timestamptz is null or a.received_at < $2) \
    and ($3::text is null or a.webhook = $3) \
    and (cardinality($4::uuid[]) = 0 or a.event_id = any($4))";

/// Queues what `filter` selects (or, with `dry_run`, only counts it) and returns how many.
/// Rows already waiting in the outbox are left as they are and not counted.
pub async fn replay(
    pool: &PgPool,
    filter: &ReplayFilter,
    dry_run: bool,
) -> Result<u64, sqlx::Error> {
    let sql = match (filter.dead, dry_run) {
        (false, true) => format!(
            "select count(*) from activities a where {MATCHING} \
             and not exists (select 1 from outbox o where o.event_id = a.event_id)"
        ),
        (true, true) => format!(
            "select count(*) from outbox_dead d join activities a using (event_id) where {MATCHING}"
        ),
        // Rows queued again leave `outbox_dead`: they get a fresh count of refusals.
        (false, false) => format!(
            "with queued as (insert into outbox (event_id) select a.event_id from activities a \
             where {MATCHING} order by a.event_id on conflict (event_id) do nothing \
             returning event_id), \
             cleared as (delete from outbox_dead where event_id in (select event_id from queued)) \
             select count(*) from queued"
        ),
        (true, false) => format!(
            "with moved as (delete from outbox_dead d using activities a \
                 where d.event_id = a.event_id and {MATCHING} returning d.event_id, d.created_at), \
             queued as (insert into outbox (event_id, created_at) select event_id, created_at \
                 from moved on conflict (event_id) do nothing returning 1) \
             select count(*) from queued"
        ),
    };
    let n: i64 = sqlx::query_scalar(&sql)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.webhook.as_deref())
        .bind(&filter.event_ids)
        .fetch_one(pool)
        .await?;
    if !dry_run && n > 0 {
        // teams-bridge's own connections do not notify (see the outbox migrations); a relay
        // running alone should hear of this at once all the same.
        sqlx::query("select pg_notify('teams_bridge_outbox', '')")
            .execute(pool)
            .await?;
    }
    Ok(n as u64)
}
