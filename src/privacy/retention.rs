//! Retention: `ACTIVITY_RETENTION_DAYS` removes the raw Teams bytes and their indexed copies
//! (the activity stays as a tombstone: event id, webhook, Teams' message id, times), and
//! `AUDIT_RETENTION_DAYS` removes audit entries' personal fields (the entry keeps its sealed
//! fields, its leaf and the digest, so the tree still verifies; `verify` counts it expired).
//! Held data is skipped, and so is an activity still waiting in the outbox (it has not
//! reached the stream yet) and a message the HR audit worker has not yet made an entry of (or
//! dead-lettered): retention never costs the log an entry. Work goes in batches, each its own short transaction that skips
//! rows others hold locked, under a transaction advisory lock so one worker of many does it.

use std::time::Duration;

use sqlx::PgPool;

use super::holds::{ACTIVITY_HELD, ENTRY_HELD};
use crate::infra::run_loop::{Step, Steps};

/// The advisory lock of a retention batch ("teams-bridge retain").
const RETENTION_LOCK: i64 = 0x7462_5f72_6574_6169;

/// Rows per batch: small enough that no batch holds its locks for long.
pub const BATCH: i64 = 500;

/// What is kept how long; `None` keeps for ever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Days the raw activities are kept.
    pub activity_days: Option<u32>,
    /// Days audit entries keep their personal fields.
    pub audit_days: Option<u32>,
}

/// What a pass removed (or, dry, would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    /// Activities reduced to tombstones.
    pub activities: u64,
    /// Dead letters deleted.
    pub dead_letters: u64,
    /// Audit entries whose personal fields were removed.
    pub audit_entries: u64,
    /// Activities past retention but held.
    pub held_activities: u64,
    /// Audit entries past retention but held.
    pub held_audit_entries: u64,
}

fn old_activity(days: &str) -> String {
    format!(
        "a.redacted is null and a.received_at < now() - make_interval(days => {days}) \
         and not exists (select 1 from outbox o where o.event_id = a.event_id) \
         and (a.activity_type is distinct from 'message' \
              or exists (select 1 from audit_log l where l.event_id = a.event_id) \
              or exists (select 1 from dead_letters d where d.event_id = a.event_id::text))"
    )
}

/// SQL: a dead letter `d` past retention whose activity (if any) is not held.
fn old_dead_letter(days: &str) -> String {
    format!(
        "d.created_at < now() - make_interval(days => {days}) and not exists \
         (select 1 from activities a where a.event_id::text = d.event_id and {ACTIVITY_HELD})"
    )
}

fn old_entry(days: &str) -> String {
    format!(
        "l.redacted is null and l.activity_at < now() - make_interval(days => {days}) \
         and l.operation in ('create', 'read', 'update', 'delete', 'note')"
    )
}

/// How many rows of `from` (a table and its alias) match `old` and are not held, and how many are held.
async fn split_by_hold(
    pool: &PgPool,
    from: &str,
    old: &str,
    held: &str,
    days: u32,
) -> Result<(u64, u64), sqlx::Error> {
    let sql = format!(
        "select count(*) filter (where not {held}), count(*) filter (where {held}) \
         from {from} where {old}"
    );
    let (n, h): (i64, i64) = sqlx::query_as(&sql)
        .bind(days as i32)
        .fetch_one(pool)
        .await?;
    Ok((n as u64, h as u64))
}

/// Counts what a pass would remove, changing nothing.
pub async fn dry_run(pool: &PgPool, policy: Policy) -> Result<Removed, sqlx::Error> {
    let mut r = Removed::default();
    if let Some(days) = policy.activity_days {
        (r.activities, r.held_activities) = split_by_hold(
            pool,
            "activities a",
            &old_activity("$1"),
            ACTIVITY_HELD,
            days,
        )
        .await?;
        let sql = format!(
            "select count(*) from dead_letters d where {}",
            old_dead_letter("$1")
        );
        let dead: i64 = sqlx::query_scalar(&sql)
            .bind(days as i32)
            .fetch_one(pool)
            .await?;
        r.dead_letters = dead as u64;
    }
    if let Some(days) = policy.audit_days {
        (r.audit_entries, r.held_audit_entries) =
            split_by_hold(pool, "audit_log l", &old_entry("$1"), ENTRY_HELD, days).await?;
    }
    Ok(r)
}

/// One batch of each kind; `None` when another worker holds the lock.
pub async fn batch(
    pool: &PgPool,
    policy: Policy,
    limit: i64,
) -> Result<Option<Removed>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let leader: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock($1)")
        .bind(RETENTION_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !leader {
        return Ok(None);
    }
    let mut r = Removed::default();
    if let Some(days) = policy.activity_days {
        (r.activities, r.dead_letters) = expire_activities(&mut tx, days, limit).await?;
    }
    if let Some(days) = policy.audit_days {
        let sql = format!(
            "with doomed as (select l.event_id from audit_log l where {} and not {ENTRY_HELD} \
                 order by l.activity_at limit $2 for update skip locked) \
             update audit_log l set actor_name = null, actor_aad_object_id = null, \
                 changes = '{{}}'::jsonb, message = '', personal_salt = null, \
                 redacted = 'expired', redacted_at = now() \
             from doomed where l.event_id = doomed.event_id",
            old_entry("$1")
        );
        let done = sqlx::query(&sql)
            .bind(days as i32)
            .bind(limit)
            .execute(&mut *tx)
            .await?;
        r.audit_entries = done.rows_affected();
    }
    tx.commit().await?;
    Ok(Some(r))
}

/// Reduces up to `limit` old activities to tombstones and deletes as many old dead letters.
async fn expire_activities(
    tx: &mut sqlx::PgConnection,
    days: u32,
    limit: i64,
) -> Result<(u64, u64), sqlx::Error> {
    let sql = format!(
        "with doomed as (select a.event_id from activities a where {} and not {ACTIVITY_HELD} \
             order by a.received_at limit $2 for update skip locked), \
         dead as (delete from outbox_dead d using doomed where d.event_id = doomed.event_id) \
         update activities a set raw = null, text = null, sender_id = null, \
             sender_name = null, sender_aad_object_id = null, mac = null, \
             redacted = 'expired', redacted_at = now() \
         from doomed where a.event_id = doomed.event_id",
        old_activity("$1")
    );
    let done = sqlx::query(&sql)
        .bind(days as i32)
        .bind(limit)
        .execute(&mut *tx)
        .await?;
    let sql = format!(
        "delete from dead_letters where id in (select d.id from dead_letters d where {} \
         order by d.id limit $2)",
        old_dead_letter("$1")
    );
    let dead = sqlx::query(&sql)
        .bind(days as i32)
        .bind(limit)
        .execute(&mut *tx)
        .await?;
    Ok((done.rows_affected(), dead.rows_affected()))
}

/// Batches until nothing is left (or another worker leads).
pub async fn run(pool: &PgPool, policy: Policy) -> Result<Removed, sqlx::Error> {
    let mut total = Removed::default();
    while let Some(r) = batch(pool, policy, BATCH).await? {
        total.activities += r.activities;
        total.dead_letters += r.dead_letters;
        total.audit_entries += r.audit_entries;
        if r.activities + r.dead_letters + r.audit_entries == 0 {
            break;
        }
    }
    Ok(total)
}

/// The worker's retention task: a pass every `every`.
pub struct Retention {
    /// Postgres.
    pub pool: PgPool,
    /// What to keep.
    pub policy: Policy,
    /// Time between passes.
    pub every: Duration,
}

impl Steps for Retention {
    type Error = sqlx::Error;

    fn name(&self) -> &'static str {
        "retention"
    }

    async fn step(&mut self) -> Result<Step, sqlx::Error> {
        let r = run(&self.pool, self.policy).await?;
        if r.activities + r.dead_letters + r.audit_entries > 0 {
            tracing::info!(
                activities = r.activities,
                dead_letters = r.dead_letters,
                audit_entries = r.audit_entries,
                "retention removed what is older than the policy keeps"
            );
        }
        Ok(Step::Idle)
    }

    async fn idle(&mut self) {
        tokio::time::sleep(self.every).await;
    }
}
