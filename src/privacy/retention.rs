//! Retention: `ACTIVITY_RETENTION_DAYS` removes the raw Teams bytes and their indexed copies
//! (the activity stays as a tombstone: event id, webhook, Teams' message id, times), and
//! `AUDIT_RETENTION_DAYS` removes audit entries' personal fields (the entry keeps its sealed
//! fields, its leaf and the digest, so the tree still verifies; `verify` counts it expired).
//! Held data is skipped, and so is an activity still waiting in the outbox (it has not
//! reached the stream yet) and a message the HR audit worker has not yet made an entry of (or
//! dead-lettered): retention never costs the log an entry. Work goes in batches, each its own short transaction that skips
//! rows others hold locked, under a transaction advisory lock so one worker of many does it.
//!
//! A pass walks each table oldest first through a partial index of what still has its
//! personal data (`activities_unexpired_idx`, `audit_log_unexpired_idx`): what it expires
//! leaves the index, so no batch reads the tombstones of earlier ones or of earlier passes,
//! and each batch starts after the last row the previous one took, so rows kept (held, not
//! yet published or audited) are read once per pass, not once per batch. Measured on a year
//! of ten million activities and entries: BENCHMARKS.md, `scripts/retention-at-size.sh`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

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

/// SQL: the event id of a dead letter `d` as a uuid, or null where it is none (`ce-id` is
/// whatever the message's publisher wrote). Compared as a uuid, the activity is found by its
/// primary key; compared as text (`a.event_id::text`), every batch hashed or scanned all of
/// `activities` (255 ms at 300,000 rows, past the statement timeout at 10 M).
const DEAD_LETTER_EVENT: &str = "(case when d.event_id ~ \
    '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' \
    then d.event_id::uuid end)";

/// SQL: an activity `a` past retention that may be reduced to a tombstone. `raw is not null`
/// is what `activities_unexpired_idx` holds.
fn old_activity(days: &str) -> String {
    format!(
        "a.raw is not null and a.redacted is null \
         and a.received_at < now() - make_interval(days => {days}) \
         and not exists (select 1 from outbox o where o.event_id = a.event_id) \
         and (a.activity_type is distinct from 'message' \
              or exists (select 1 from audit_log l where l.event_id = a.event_id) \
              or exists (select 1 from dead_letters d where {DEAD_LETTER_EVENT} = a.event_id))"
    )
}

/// SQL: a dead letter `d` past retention whose activity (if any) is neither held nor still
/// holding its bytes. The dead letter is what lets a message the worker never audited expire
/// ([`old_activity`]); deleted first, it would leave that activity unexpirable for ever, so
/// it goes in the batch that expires its activity, or after. `counting` (the dry run, which
/// expires nothing) also counts those whose activity the pass would expire.
fn old_dead_letter(days: &str, counting: bool) -> String {
    let unexpired = match counting {
        false => "a.raw is not null".to_owned(),
        true => format!("(a.raw is not null and not ({}))", old_activity(days)),
    };
    format!(
        "d.created_at < now() - make_interval(days => {days}) and not exists \
         (select 1 from activities a where a.event_id = {DEAD_LETTER_EVENT} \
          and ({unexpired} or {ACTIVITY_HELD}))"
    )
}

/// SQL: an audit entry `l` past retention whose personal fields may be removed (`redacted is
/// null` is what `audit_log_unexpired_idx` holds).
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
            old_dead_letter("$1", true)
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

/// Where a pass has got to in each table: the key of the last row a batch took (rows before
/// it were taken or are kept), `None` before the first batch; `done` once a batch found
/// nothing more.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursor {
    activities: Walk,
    entries: Walk,
}

#[derive(Debug, Clone, Copy, Default)]
struct Walk {
    after: Option<(DateTime<Utc>, Uuid)>,
    done: bool,
}

/// SQL of one batch of a walk over `table` (aliased `alias`, ordered by its time column
/// `at` and `event_id`): `doomed`, the next `$2` rows after the walk's key (`$3`, `$4`, null
/// before the first batch) that are `eligible`, locked; then `work`, the CTEs that change
/// them and end in `done` (one row per row changed); it selects how many changed and the key
/// of the last row taken, for [`take`].
fn walk_batch(table: &str, alias: &str, at: &str, eligible: &str, work: &str) -> String {
    format!(
        "with doomed as (select {alias}.event_id, {alias}.{at} as at from {table} {alias} \
             where {eligible} and ({alias}.{at}, {alias}.event_id) > \
                 (coalesce($3::timestamptz, '-infinity'), \
                  coalesce($4::uuid, '00000000-0000-0000-0000-000000000000')) \
             order by {alias}.{at}, {alias}.event_id limit $2 for update skip locked), \
         {work} \
         select (select count(*) from done), max(at), \
             (array_agg(event_id order by at desc, event_id desc))[1] from doomed"
    )
}

impl Walk {
    /// After a batch whose last row was `last` (`None`: it took none); `more` when it did
    /// other work that a further batch may continue.
    fn advance(&mut self, last: Option<(DateTime<Utc>, Uuid)>, more: bool) {
        match last {
            Some(key) => self.after = Some(key),
            None if more => {}
            None => self.done = true,
        }
    }
}

impl Cursor {
    /// Both tables walked to the end.
    pub fn finished(&self, policy: Policy) -> bool {
        (policy.activity_days.is_none() || self.activities.done)
            && (policy.audit_days.is_none() || self.entries.done)
    }
}

/// One batch of each kind from `cursor` on (which it advances); `None` when another worker
/// holds the lock.
pub async fn batch(
    pool: &PgPool,
    policy: Policy,
    limit: i64,
    cursor: &mut Cursor,
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
    if let Some(days) = policy.activity_days.filter(|_| !cursor.activities.done) {
        (r.activities, r.dead_letters) =
            expire_activities(&mut tx, days, limit, &mut cursor.activities).await?;
    }
    if let Some(days) = policy.audit_days.filter(|_| !cursor.entries.done) {
        r.audit_entries = expire_entries(&mut tx, days, limit, &mut cursor.entries).await?;
    }
    tx.commit().await?;
    Ok(Some(r))
}

/// Runs a batch statement (`$1` days, `$2` limit, `$3`, `$4` the walk's key): the rows it
/// changed and the key of the last one.
async fn take(
    tx: &mut sqlx::PgConnection,
    sql: &str,
    days: u32,
    limit: i64,
    walk: &Walk,
) -> Result<(u64, Option<(DateTime<Utc>, Uuid)>), sqlx::Error> {
    let (n, at, id): (i64, Option<DateTime<Utc>>, Option<Uuid>) = sqlx::query_as(sql)
        .bind(days as i32)
        .bind(limit)
        .bind(walk.after.map(|(at, _)| at))
        .bind(walk.after.map(|(_, id)| id))
        .fetch_one(&mut *tx)
        .await?;
    Ok((n as u64, at.zip(id)))
}

/// Removes the personal fields of up to `limit` old entries after `walk`.
async fn expire_entries(
    tx: &mut sqlx::PgConnection,
    days: u32,
    limit: i64,
    walk: &mut Walk,
) -> Result<u64, sqlx::Error> {
    let sql = walk_batch(
        "audit_log",
        "l",
        "activity_at",
        &format!("{} and not {ENTRY_HELD}", old_entry("$1")),
        "done as (update audit_log l set actor_name = null, actor_aad_object_id = null, \
             changes = '{}'::jsonb, message = '', personal_salt = null, \
             redacted = 'expired', redacted_at = now() \
             from doomed where l.event_id = doomed.event_id returning 1)",
    );
    let (n, last) = take(tx, &sql, days, limit, walk).await?;
    walk.advance(last, false);
    Ok(n)
}

/// Reduces up to `limit` old activities after `walk` to tombstones and deletes as many old
/// dead letters.
async fn expire_activities(
    tx: &mut sqlx::PgConnection,
    days: u32,
    limit: i64,
    walk: &mut Walk,
) -> Result<(u64, u64), sqlx::Error> {
    let sql = walk_batch(
        "activities",
        "a",
        "received_at",
        &format!("{} and not {ACTIVITY_HELD}", old_activity("$1")),
        "dead as (delete from outbox_dead d using doomed where d.event_id = doomed.event_id), \
         done as (update activities a set raw = null, text = null, sender_id = null, \
             sender_name = null, sender_aad_object_id = null, mac = null, \
             redacted = 'expired', redacted_at = now() \
             from doomed where a.event_id = doomed.event_id returning 1)",
    );
    let (n, last) = take(tx, &sql, days, limit, walk).await?;
    let sql = format!(
        "delete from dead_letters where id in (select d.id from dead_letters d where {} \
         order by d.id limit $2)",
        old_dead_letter("$1", false)
    );
    let dead = sqlx::query(&sql)
        .bind(days as i32)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    walk.advance(last, dead > 0);
    Ok((n, dead))
}

/// What a pass did, and how: its batches and the longest of them (the longest any row it
/// changed stayed locked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// What it removed.
    pub removed: Removed,
    /// Batches (transactions) it took.
    pub batches: u64,
    /// The longest batch, from its BEGIN to its COMMIT.
    pub longest: Duration,
}

/// Batches of [`BATCH`] until nothing is left (or another worker leads).
pub async fn run(pool: &PgPool, policy: Policy) -> Result<Pass, sqlx::Error> {
    run_in_batches_of(pool, policy, BATCH).await
}

/// [`run`] with batches of `limit` rows of each kind.
pub async fn run_in_batches_of(
    pool: &PgPool,
    policy: Policy,
    limit: i64,
) -> Result<Pass, sqlx::Error> {
    let mut pass = Pass::default();
    let mut cursor = Cursor::default();
    while !cursor.finished(policy) {
        let started = Instant::now();
        let Some(r) = batch(pool, policy, limit, &mut cursor).await? else {
            break;
        };
        pass.batches += 1;
        pass.longest = pass.longest.max(started.elapsed());
        let total = &mut pass.removed;
        total.activities += r.activities;
        total.dead_letters += r.dead_letters;
        total.audit_entries += r.audit_entries;
    }
    Ok(pass)
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
        let pass = run(&self.pool, self.policy).await?;
        let r = pass.removed;
        if r.activities + r.dead_letters + r.audit_entries > 0 {
            tracing::info!(
                activities = r.activities,
                dead_letters = r.dead_letters,
                audit_entries = r.audit_entries,
                batches = pass.batches,
                longest_batch_ms = pass.longest.as_millis() as u64,
                "retention removed what is older than the policy keeps"
            );
        }
        Ok(Step::Idle)
    }

    async fn idle(&mut self) {
        tokio::time::sleep(self.every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_moves_past_what_a_batch_took_and_ends_on_an_empty_one() {
        let key = (DateTime::<Utc>::UNIX_EPOCH, Uuid::now_v7());
        let mut walk = Walk::default();
        walk.advance(Some(key), false);
        assert_eq!((walk.after, walk.done), (Some(key), false));
        // Nothing more to take, but other work (dead letters) to continue: not done, same key.
        walk.advance(None, true);
        assert_eq!((walk.after, walk.done), (Some(key), false));
        walk.advance(None, false);
        assert!(walk.done);
    }

    #[test]
    fn a_pass_ends_when_every_walk_its_policy_asks_for_is_done() {
        let both = Policy {
            activity_days: Some(30),
            audit_days: Some(30),
        };
        let mut cursor = Cursor::default();
        assert!(!cursor.finished(both));
        cursor.activities.done = true;
        assert!(!cursor.finished(both));
        let activities_only = Policy {
            audit_days: None,
            ..both
        };
        assert!(cursor.finished(activities_only));
        cursor.entries.done = true;
        assert!(cursor.finished(both));
        assert!(Cursor::default().finished(Policy::default()));
    }
}
