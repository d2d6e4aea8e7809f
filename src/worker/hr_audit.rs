//! The HR audit handler: each message activity becomes exactly one `audit_log` row keyed by
//! its event id (`on conflict do nothing`), whatever the number of deliveries. The grammar
//! is [`crate::domain::hr_command`]; the entry is [`crate::audit::AuditEntry`].
//!
//! Whether an entry counts as a change is the decision the receiver showed in Teams, read
//! from the activity's row (Postgres is the source of truth, and a replay carries it too).
//! An activity erased or expired before its entry was written makes none.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{HandleError, Handler};
use crate::{audit::AuditEntry, domain::event::Event};

/// Builds the audit entry for one event; `Permanent` when the event cannot make one.
pub(crate) fn entry_for(event: &Event, now: DateTime<Utc>) -> Result<AuditEntry, HandleError> {
    AuditEntry::derive(event.event_id, &event.webhook, &event.body, event.time, now)
        .map_err(|e| HandleError::Permanent(e.to_string()))
}

/// The activity's row is read by primary key, once per entry: written as a join, the planner
/// (which cannot estimate `unnest`) was free to hash-join against a scan of every activity,
/// a cost that grew with the table (measured: 56 buffers per entry on 17k rows).
const INSERT: &str = r#"
insert into audit_log (event_id, webhook, tenant_id, team_id, channel_id, actor_name,
                       actor_aad_object_id, operation, entity, record_id, changes, message, activity_at,
                       authorized)
select i.*, coalesce((select x.authorized from activities x where x.event_id = i.event_id), true)
from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::jsonb[], $12::text[],
            $13::timestamptz[])
    as i(event_id, webhook, tenant_id, team_id, channel_id, actor_name, actor_aad_object_id,
         operation, entity, record_id, changes, message, activity_at)
where not exists (select 1 from activities x where x.event_id = i.event_id and x.redacted is not null)
on conflict (event_id) do nothing
"#;

/// Writes entries in one statement; repeats of an event id are ignored.
pub(crate) async fn insert_entries(
    pool: &PgPool,
    entries: &[AuditEntry],
) -> Result<u64, sqlx::Error> {
    let col = |f: fn(&AuditEntry) -> Option<&str>| entries.iter().map(f).collect::<Vec<_>>();
    let done = sqlx::query(INSERT)
        .bind(entries.iter().map(|e| e.event_id).collect::<Vec<_>>())
        .bind(
            entries
                .iter()
                .map(|e| e.webhook.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(col(|e| e.tenant_id.as_deref()))
        .bind(col(|e| e.team_id.as_deref()))
        .bind(col(|e| e.channel_id.as_deref()))
        .bind(col(|e| e.actor_name.as_deref()))
        .bind(col(|e| e.actor_aad_object_id.as_deref()))
        .bind(
            entries
                .iter()
                .map(|e| e.operation.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(col(|e| e.entity.as_deref()))
        .bind(col(|e| e.record_id.as_deref()))
        .bind(
            entries
                .iter()
                .map(|e| e.changes.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            entries
                .iter()
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(entries.iter().map(|e| e.activity_at).collect::<Vec<_>>())
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// The HR audit handler: one audit row per message activity.
#[derive(Clone)]
pub struct HrAudit {
    /// Where `audit_log` lives.
    pub pool: PgPool,
}

impl Handler for HrAudit {
    async fn handle(&self, events: &[Event]) -> Vec<Result<(), HandleError>> {
        let now = Utc::now();
        let built: Vec<Result<AuditEntry, HandleError>> =
            events.iter().map(|e| entry_for(e, now)).collect();
        let entries: Vec<AuditEntry> = built
            .iter()
            .filter_map(|b| b.as_ref().ok().cloned())
            .collect();
        let written = if entries.is_empty() {
            Ok(0)
        } else {
            insert_entries(&self.pool, &entries).await
        };
        built
            .into_iter()
            .map(|b| match (b, &written) {
                (Err(e), _) => Err(e),
                (Ok(_), Ok(_)) => Ok(()),
                (Ok(_), Err(e)) => Err(HandleError::Transient(format!("writing audit_log: {e}"))),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use uuid::Uuid;

    fn event(body: &str) -> Event {
        Event {
            event_id: Uuid::now_v7(),
            webhook: "contoso".into(),
            subject: "teams.contoso.message".into(),
            time: None,
            traceparent: None,
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn an_update_message_becomes_an_update_entry() {
        let body = r#"{"type":"message","timestamp":"2026-11-27T10:00:00Z","text":"<at>HR</at> update employee E-1042 title=\"Senior Engineer\" salary_band=7\n","from":{"name":"Jane Doe","aadObjectId":"aad-1"},"channelData":{"team":{"id":"T"},"channel":{"id":"C"},"tenant":{"id":"X"}}}"#;
        let e = entry_for(&event(body), Utc::now()).unwrap();
        assert_eq!(e.operation, "update");
        assert_eq!(e.entity.as_deref(), Some("employee"));
        assert_eq!(e.record_id.as_deref(), Some("E-1042"));
        assert_eq!(
            e.changes,
            serde_json::json!({"title": "Senior Engineer", "salary_band": "7"})
        );
        assert_eq!(
            e.message,
            r#"update employee E-1042 title="Senior Engineer" salary_band=7"#
        );
        assert_eq!(
            (
                e.team_id.as_deref(),
                e.channel_id.as_deref(),
                e.tenant_id.as_deref()
            ),
            (Some("T"), Some("C"), Some("X"))
        );
        assert_eq!(e.actor_aad_object_id.as_deref(), Some("aad-1"));
        assert_eq!(e.activity_at.to_rfc3339(), "2026-11-27T10:00:00+00:00");
    }

    #[test]
    fn chat_becomes_a_note() {
        let e = entry_for(
            &event(r#"{"text":"<at>HR</at> hello there","from":{"name":"A"}}"#),
            Utc::now(),
        )
        .unwrap();
        assert_eq!(e.operation, "note");
        assert_eq!(e.record_id, None);
        assert_eq!(e.message, "hello there");
    }

    #[test]
    fn unusable_events_are_permanent_failures() {
        for body in ["not json", "[]", r#"{"text":"view employee E-1"}"#] {
            assert!(
                matches!(
                    entry_for(&event(body), Utc::now()),
                    Err(HandleError::Permanent(_))
                ),
                "{body}"
            );
        }
    }
}
