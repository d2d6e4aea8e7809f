//! Answering questions asked in the thread from Postgres, inside the reply budget. The
//! record's changes come from `audit_log` (only those that count), and the gap of the few
//! milliseconds an entry spends on its way through the stream and the worker is closed by
//! reading the activities of the last hour that have no entry yet through the same grammar
//! (the worker would derive the same entry from the same bytes). The receiver stores the
//! record each change names (`activities.change_record`, partially indexed), so that gap is
//! found by an index lookup, not by reading every activity of the hour (which made every
//! `history` question cost a scan of the hour's traffic).

use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::{
    answer::{pairs, Change},
    hr_command::{self, Operation},
};

/// Reads the log for answers.
#[derive(Debug, Clone)]
pub struct Answers {
    /// Postgres.
    pub pool: PgPool,
}

/// One change as the statement returns it: from `audit_log` (`text` none), or an activity
/// with no entry yet (`text` its message, read through the grammar here).
#[derive(sqlx::FromRow)]
struct Row {
    webhook: String,
    at: chrono::DateTime<chrono::Utc>,
    who: Option<String>,
    operation: Option<String>,
    changes: Option<serde_json::Value>,
    event_id: Uuid,
    redacted: Option<String>,
    text: Option<String>,
}

/// The statement behind [`Answers::changes`] (`$1` the webhook, `$2` the record); public so
/// that a test can check its plan. One statement, so one snapshot: an entry the worker
/// commits meanwhile is seen either as an entry or as its activity, never as neither.
///
/// The activities of the last hour are found by record and time alone
/// (`activities_change_record_time_idx` leads with the record) and the webhook is compared in
/// Rust. Named in the SQL, `a.webhook = $1` let the planner take the webhook's unique
/// `(webhook, activity_id)` index instead whenever the statistics did not know the webhook
/// yet (a webhook added to a large database, until autovacuum's next ANALYZE of
/// `activities`, which at 10 M rows waits for a million changes): it estimated one row and
/// read every activity the webhook ever had, 30,000 blocks a question at 10 M.
pub const CHANGES: &str = "\
    select webhook, activity_at as at, actor_name as who, operation, changes, event_id, redacted, \
           null::text as text \
    from audit_log \
    where record_id = $2 and webhook = $1 and authorized \
      and operation in ('create', 'update', 'delete') \
    union all \
    select a.webhook, coalesce(a.activity_timestamp, a.received_at), a.sender_name, null, null, \
           a.event_id, null, a.text \
    from activities a \
    where a.change_record = $2 and a.received_at > now() - interval '1 hour' \
      and a.authorized and a.text is not null \
      and not exists (select 1 from audit_log l where l.event_id = a.event_id)";

impl Answers {
    /// Every change of `record` on `webhook` that counts, newest first.
    pub async fn changes(&self, webhook: &str, record: &str) -> Result<Vec<Change>, sqlx::Error> {
        let rows: Vec<Row> = sqlx::query_as(CHANGES)
            .bind(webhook)
            .bind(record)
            .fetch_all(&self.pool)
            .await?;
        let mut changes: Vec<Change> = rows
            .into_iter()
            .filter(|r| r.webhook == webhook)
            .filter_map(|r| change(r, record))
            .collect();
        changes.sort_by_key(|c| std::cmp::Reverse((c.at, c.event_id)));
        Ok(changes)
    }
}

fn change(row: Row, record: &str) -> Option<Change> {
    match row.text {
        Some(text) => from_activity(row.event_id, row.who, row.at, &text, record),
        None => Some(from_log(row)),
    }
}

fn from_log(row: Row) -> Change {
    let Row {
        at,
        who,
        operation,
        changes,
        event_id,
        redacted,
        ..
    } = row;
    let changes = pairs(&changes.unwrap_or_default());
    Change {
        at,
        who,
        operation: operation.unwrap_or_default(),
        changes,
        event_id,
        erased: redacted.is_some(),
    }
}

fn from_activity(
    event_id: Uuid,
    who: Option<String>,
    at: chrono::DateTime<chrono::Utc>,
    text: &str,
    record: &str,
) -> Option<Change> {
    let cmd = hr_command::parse(text);
    let counts = matches!(
        cmd.operation,
        Operation::Create | Operation::Update | Operation::Delete
    );
    (counts && cmd.record_id.as_deref() == Some(record)).then(|| Change {
        at,
        who,
        operation: cmd.operation.as_str().into(),
        changes: cmd.changes,
        event_id,
        erased: false,
    })
}
