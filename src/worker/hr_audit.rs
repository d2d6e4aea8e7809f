//! The HR audit handler: each message activity becomes exactly one `audit_log` row keyed by
//! its event id, whatever the number of deliveries: a batch is written under the audit
//! tree's lock, which every writer takes, so the entries already written are known and the
//! new ones are written sealed, each with the next leaf ([`crate::audit::seal`]). The grammar
//! is [`crate::domain::hr_command`]; the entry is [`crate::audit::AuditEntry`].
//!
//! Whether an entry counts as a change is the decision the receiver showed in Teams, read
//! from the activity's row (Postgres is the source of truth, and a replay carries it too).
//! An activity erased or expired before its entry was written makes none.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{HandleError, Handler};
use crate::{
    audit::{seal, AuditEntry},
    domain::{audit_leaf::sha256, event::Event, merkle::Hash},
};

/// Builds the audit entry for one event; `Permanent` when the event cannot make one.
pub(crate) fn entry_for(event: &Event, now: DateTime<Utc>) -> Result<AuditEntry, HandleError> {
    AuditEntry::derive(event.event_id, &event.webhook, &event.body, event.time, now)
        .map_err(|e| HandleError::Permanent(e.to_string()))
}

/// Which entries of a batch are new, in order, with what their activity's row says: whether
/// it counts as a change (the receiver's decision) and whether the activity exists. Entries
/// already written, and activities erased or expired meanwhile, are left out. The leaf seals
/// the SHA-256 of the bytes the stream carried, which are the stored ones; where their length
/// differs from the stored bytes' (read without decompressing them), something other than
/// the relay published them, and the stored bytes' SHA-256 is sealed instead, so the seal
/// always speaks for Postgres and `verify --evidence` names the entry that does not.
const FRESH: &str = r#"
select (i.ord - 1)::int4 as position, coalesce(x.authorized, true) as authorized,
       x.event_id is not null as has_activity,
       case when octet_length(x.raw) <> i.len then sha256(x.raw) end as stored_sha256
from unnest($1::uuid[], $2::int4[]) with ordinality as i(event_id, len, ord)
left join lateral (select a.event_id, a.authorized, a.redacted, a.raw from activities a
                   where a.event_id = i.event_id) x on true
where x.redacted is null
  and not exists (select 1 from audit_log l where l.event_id = i.event_id)
order by i.ord
"#;

const INSERT: &str = r#"
insert into audit_log (event_id, webhook, tenant_id, team_id, channel_id, actor_name,
                       actor_aad_object_id, operation, entity, record_id, changes, message, activity_at,
                       authorized, personal_salt, personal_digest, raw_sha256, leaf_hash, leaf_index)
select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::jsonb[], $12::text[],
                     $13::timestamptz[], $14::bool[], $15::bytea[], $16::bytea[], $17::bytea[],
                     $18::bytea[], $19::int8[])
"#;

/// Writes the new ones of `entries` (each with its activity's exact bytes, as carried on the
/// stream), sealed: under the tree's lock, so entries already written are known and each new
/// one gets the next leaf. Returns how many were new.
pub(crate) async fn insert_entries(
    pool: &PgPool,
    entries: &[(AuditEntry, &[u8])],
) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut tree = seal::lock_tree(&mut tx).await?;
    let new = fresh(&mut tx, entries).await?;
    if new.is_empty() {
        // Every one a redelivery: release the tree for the next writer now.
        tx.rollback().await?;
        return Ok(0);
    }
    let sealed = seal::seal_new(&mut tree, &new);
    write(&mut tx, &new, &sealed).await?;
    seal::save_tree(&mut tx, &tree).await?;
    tx.commit().await?;
    Ok(new.len() as u64)
}

/// The entries of the batch not yet written, in order, each with its activity's decision
/// and, when the activity exists, its bytes.
async fn fresh(
    tx: &mut PgConnection,
    entries: &[(AuditEntry, &[u8])],
) -> Result<Vec<(AuditEntry, Option<Hash>)>, sqlx::Error> {
    let ids: Vec<Uuid> = entries.iter().map(|(e, _)| e.event_id).collect();
    let lens: Vec<i32> = entries
        .iter()
        .map(|(_, raw)| i32::try_from(raw.len()).unwrap_or(i32::MAX))
        .collect();
    let fresh: Vec<(i32, bool, bool, Option<Vec<u8>>)> = sqlx::query_as(FRESH)
        .bind(&ids)
        .bind(&lens)
        .fetch_all(tx)
        .await?;
    // A redelivery can put one event in a batch twice: the first one counts.
    let mut seen = HashSet::new();
    Ok(fresh
        .into_iter()
        .filter_map(|(i, authorized, has_activity, stored)| {
            let (entry, raw) = entries.get(i as usize)?;
            let stored = stored.and_then(|h| Hash::try_from(h).ok());
            let raw_sha256 = has_activity.then(|| stored.unwrap_or_else(|| sha256(raw)));
            seen.insert(entry.event_id).then(|| {
                let entry = AuditEntry {
                    authorized,
                    ..entry.clone()
                };
                (entry, raw_sha256)
            })
        })
        .collect())
}

/// Inserts the new entries with their sealed columns, in one statement.
async fn write(
    tx: &mut PgConnection,
    new: &[(AuditEntry, Option<Hash>)],
    sealed: &[seal::SealColumns],
) -> Result<(), sqlx::Error> {
    let e: Vec<&AuditEntry> = new.iter().map(|(e, _)| e).collect();
    let col = |f: fn(&AuditEntry) -> Option<&str>| e.iter().map(|e| f(e)).collect::<Vec<_>>();
    let bytes = |f: fn(&seal::SealColumns) -> &[u8]| sealed.iter().map(f).collect::<Vec<_>>();
    let raw_sha256 = sealed.iter().map(|s| s.raw_sha256.as_ref().map(|h| &h[..]));
    sqlx::query(INSERT)
        .bind(e.iter().map(|e| e.event_id).collect::<Vec<_>>())
        .bind(e.iter().map(|e| e.webhook.as_str()).collect::<Vec<_>>())
        .bind(col(|e| e.tenant_id.as_deref()))
        .bind(col(|e| e.team_id.as_deref()))
        .bind(col(|e| e.channel_id.as_deref()))
        .bind(col(|e| e.actor_name.as_deref()))
        .bind(col(|e| e.actor_aad_object_id.as_deref()))
        .bind(e.iter().map(|e| e.operation.as_str()).collect::<Vec<_>>())
        .bind(col(|e| e.entity.as_deref()))
        .bind(col(|e| e.record_id.as_deref()))
        .bind(e.iter().map(|e| e.changes.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|e| e.message.as_str()).collect::<Vec<_>>())
        .bind(e.iter().map(|e| e.activity_at).collect::<Vec<_>>())
        .bind(e.iter().map(|e| e.authorized).collect::<Vec<_>>())
        .bind(bytes(|s| &s.salt[..]))
        .bind(bytes(|s| &s.personal[..]))
        .bind(raw_sha256.collect::<Vec<_>>())
        .bind(bytes(|s| &s.leaf[..]))
        .bind(sealed.iter().map(|s| s.index).collect::<Vec<_>>())
        .execute(tx)
        .await?;
    Ok(())
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
        let entries: Vec<(AuditEntry, &[u8])> = built
            .iter()
            .zip(events)
            .filter_map(|(b, ev)| Some((b.as_ref().ok()?.clone(), &ev.body[..])))
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
