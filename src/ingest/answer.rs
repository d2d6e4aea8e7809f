//! Answering questions asked in the thread from Postgres, inside the reply budget. The
//! record's changes come from `audit_log` (only those that count), and the gap of the few
//! milliseconds an entry spends on its way through the stream and the worker is closed by
//! reading the activities of the last hour that have no entry yet through the same grammar
//! (the worker would derive the same entry from the same bytes).

use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::{
    answer::Change,
    hr_command::{self, Operation},
};

/// Reads the log for answers.
#[derive(Debug, Clone)]
pub struct Answers {
    /// Postgres.
    pub pool: PgPool,
}

type LogRow = (
    chrono::DateTime<chrono::Utc>,
    Option<String>,
    String,
    serde_json::Value,
    Uuid,
    Option<String>,
);

type RecentRow = (Uuid, Option<String>, chrono::DateTime<chrono::Utc>, String);

impl Answers {
    /// Every change of `record` on `webhook` that counts, newest first.
    pub async fn changes(&self, webhook: &str, record: &str) -> Result<Vec<Change>, sqlx::Error> {
        let logged: Vec<LogRow> = sqlx::query_as(
            "select activity_at, actor_name, operation, changes, event_id, redacted from audit_log \
             where record_id = $2 and webhook = $1 and authorized \
               and operation in ('create', 'update', 'delete') \
             order by activity_at desc, event_id desc",
        )
        .bind(webhook)
        .bind(record)
        .fetch_all(&self.pool)
        .await?;
        let recent: Vec<RecentRow> = sqlx::query_as(
            "select a.event_id, a.sender_name, coalesce(a.activity_timestamp, a.received_at), a.text \
             from activities a \
             where a.webhook = $1 and a.received_at > now() - interval '1 hour' and a.authorized \
               and a.text is not null and position($2 in a.text) > 0 \
               and not exists (select 1 from audit_log l where l.event_id = a.event_id)",
        )
        .bind(webhook)
        .bind(record)
        .fetch_all(&self.pool)
        .await?;
        let mut changes: Vec<Change> = logged.into_iter().map(from_log).collect();
        changes.extend(recent.into_iter().filter_map(|r| from_activity(r, record)));
        changes.sort_by_key(|c| std::cmp::Reverse((c.at, c.event_id)));
        Ok(changes)
    }
}

fn from_log(row: LogRow) -> Change {
    let (at, who, operation, changes, event_id, redacted) = row;
    let changes = match changes {
        serde_json::Value::Object(m) => m
            .into_iter()
            .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect(),
        _ => Vec::new(),
    };
    Change {
        at,
        who,
        operation,
        changes,
        event_id,
        erased: redacted.is_some(),
    }
}

fn from_activity(row: RecentRow, record: &str) -> Option<Change> {
    let (event_id, who, at, text) = row;
    let cmd = hr_command::parse(&text);
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
