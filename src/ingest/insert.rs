//! The insert: activities and their outbox rows in ONE statement, so either both exist or
//! neither does. Teams may deliver one message twice: `(webhook, activity_id)` is unique, the
//! second insert does nothing, and the repeat is answered with the first one's event id.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{activity::Activity, event::Outgoing};

/// One verified activity on its way into Postgres.
#[derive(Debug)]
pub struct NewActivity {
    /// Our id for it (UUIDv7), unless Teams delivered it before.
    pub event_id: Uuid,
    /// Webhook name.
    pub webhook: Arc<str>,
    /// The parsed, indexed fields.
    pub activity: Activity,
    /// The exact signed bytes (valid UTF-8 JSON, checked by [`Activity::parse`]).
    pub raw: Bytes,
    /// The HMAC that verified, kept as evidence.
    pub mac: [u8; 32],
    /// W3C trace context to carry onto the stream.
    pub traceparent: Option<String>,
    /// Whether it counts as a change (false: a create/update/delete by someone not on the
    /// webhook's HR editors list), as the reply says.
    pub authorized: bool,
    /// The record a create/update/delete changes (`None` for anything else): what a
    /// `history` question finds before the audit worker has written the entry.
    pub change_record: Option<String>,
}

impl NewActivity {
    /// What the relay publishes for it, once committed at `received_at`.
    pub(crate) fn into_event(self, received_at: DateTime<Utc>) -> Outgoing {
        Outgoing {
            event_id: self.event_id,
            webhook: self.webhook.to_string(),
            time: self.activity.timestamp().unwrap_or(received_at),
            conversation_id: self.activity.conversation_id().map(str::to_string),
            activity_type: self.activity.kind,
            traceparent: self.traceparent,
            raw: self.raw,
        }
    }
}

/// What one insert did.
#[derive(Debug)]
pub struct Inserted {
    /// For each input in order: new or a repeat.
    pub outcomes: Vec<Stored>,
    /// When the new rows were stored (`received_at`, the same for all rows of a statement);
    /// `None` when every input was a repeat.
    pub received_at: Option<DateTime<Utc>>,
}

/// The outcome of storing one activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// First delivery: stored and queued for publishing under this id.
    New(Uuid),
    /// Teams delivered this activity before: the id it was stored under and the text stored
    /// then, which the receipt is built from (a repeat may carry other text).
    Duplicate {
        /// The original's event id.
        event_id: Uuid,
        /// The original's text.
        text: Option<String>,
        /// The original's sender name.
        sender_name: Option<String>,
        /// The original's timestamp.
        at: Option<DateTime<Utc>>,
        /// The decision shown for the original.
        authorized: bool,
    },
}

impl Stored {
    /// The receipt: the stored event's id.
    pub fn event_id(&self) -> Uuid {
        match self {
            Stored::New(id) | Stored::Duplicate { event_id: id, .. } => *id,
        }
    }
}

const INSERT: &str = r#"
with input as (
    select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                         $13::timestamptz[], $14::bytea[], $15::text[], $16::bytea[], $17::bool[],
                         $18::text[])
        as t(event_id, webhook, activity_id, activity_type, conversation_id, team_id, channel_id,
             tenant_id, sender_id, sender_name, sender_aad_object_id, text, activity_timestamp,
             raw, traceparent, mac, authorized, change_record)
), inserted as (
    insert into activities (event_id, webhook, activity_id, activity_type, conversation_id, team_id,
                            channel_id, tenant_id, sender_id, sender_name, sender_aad_object_id, text,
                            activity_timestamp, raw, traceparent, mac, authorized, change_record)
    select * from input
    on conflict (webhook, activity_id) do nothing
    returning event_id
)
insert into outbox (event_id) select event_id from inserted
returning event_id, created_at, pg_current_xact_id()::text
"#;

const EXISTING: &str = r#"
select a.webhook, a.activity_id, a.event_id, a.text, a.sender_name, a.activity_timestamp,
       a.authorized
from unnest($1::text[], $2::text[]) as k(webhook, activity_id)
join activities a on a.webhook = k.webhook and a.activity_id = k.activity_id
"#;

/// Inserts activities and their outbox entries in one statement and says, for each input in
/// order, whether it was new or a repeat (looked up in a second statement, so that it sees
/// originals committed by others meanwhile). The caller owns the transaction; its id
/// (`pg_current_xact_id`) comes back too when anything was inserted.
pub async fn insert_batch(
    conn: &mut PgConnection,
    batch: &[&NewActivity],
) -> Result<(Inserted, Option<String>), sqlx::Error> {
    let inserted = insert_new(&mut *conn, batch).await?;
    // `outbox.created_at` and `activities.received_at` are both `now()`: the transaction's start.
    let received_at = inserted.first().map(|(_, at, _)| *at);
    let xid = inserted.first().map(|(_, _, xid)| xid.clone());
    let outcomes = if inserted.len() == batch.len() {
        batch.iter().map(|a| Stored::New(a.event_id)).collect()
    } else {
        let inserted: HashSet<Uuid> = inserted.into_iter().map(|(id, _, _)| id).collect();
        with_repeats(conn, batch, &inserted).await?
    };
    let inserted = Inserted {
        outcomes,
        received_at,
    };
    Ok((inserted, xid))
}

/// The statement itself: returns the ids it inserted, when, and in which transaction.
async fn insert_new(
    conn: &mut PgConnection,
    batch: &[&NewActivity],
) -> Result<Vec<(Uuid, DateTime<Utc>, String)>, sqlx::Error> {
    let col = |f: fn(&NewActivity) -> Option<&str>| {
        batch.iter().map(|a| f(a)).collect::<Vec<Option<&str>>>()
    };
    let event_ids: Vec<Uuid> = batch.iter().map(|a| a.event_id).collect();
    let webhooks: Vec<&str> = batch.iter().map(|a| &*a.webhook).collect();
    let times: Vec<Option<DateTime<Utc>>> = batch.iter().map(|a| a.activity.timestamp()).collect();
    let raws: Vec<&[u8]> = batch.iter().map(|a| a.raw.as_ref()).collect();
    sqlx::query_as(INSERT)
        .bind(&event_ids)
        .bind(&webhooks)
        .bind(col(|a| a.activity.id.as_deref()))
        .bind(col(|a| a.activity.kind.as_deref()))
        .bind(col(|a| a.activity.conversation_id()))
        .bind(col(|a| a.activity.team_id()))
        .bind(col(|a| a.activity.channel_id()))
        .bind(col(|a| a.activity.tenant_id()))
        .bind(col(|a| a.activity.sender_id()))
        .bind(col(|a| a.activity.sender_name()))
        .bind(col(|a| a.activity.sender_aad_object_id()))
        .bind(col(|a| a.activity.text.as_deref()))
        .bind(&times)
        .bind(&raws)
        .bind(col(|a| a.traceparent.as_deref()))
        .bind(batch.iter().map(|a| &a.mac[..]).collect::<Vec<&[u8]>>())
        .bind(batch.iter().map(|a| a.authorized).collect::<Vec<bool>>())
        .bind(col(|a| a.change_record.as_deref()))
        .fetch_all(conn)
        .await
}

/// Some inputs were repeats (of earlier deliveries or of each other): finds the ids their
/// originals hold.
async fn with_repeats(
    conn: &mut PgConnection,
    batch: &[&NewActivity],
    inserted: &HashSet<Uuid>,
) -> Result<Vec<Stored>, sqlx::Error> {
    let (hooks, ids): (Vec<&str>, Vec<Option<&str>>) = batch
        .iter()
        .filter(|a| !inserted.contains(&a.event_id))
        .map(|a| (&*a.webhook, a.activity.id.as_deref()))
        .unzip();
    let existing: Vec<Original> = sqlx::query_as(EXISTING)
        .bind(&hooks)
        .bind(&ids)
        .fetch_all(conn)
        .await?;
    let existing: HashMap<(&str, &str), &Original> = existing
        .iter()
        .map(|o| ((o.webhook.as_str(), o.activity_id.as_str()), o))
        .collect();
    let stored = |a: &&NewActivity| {
        if inserted.contains(&a.event_id) {
            return Ok(Stored::New(a.event_id));
        }
        let key = (&*a.webhook, a.activity.id.as_deref().unwrap_or_default());
        let original = existing.get(&key).map(|o| Stored::Duplicate {
            event_id: o.event_id,
            text: o.text.clone(),
            sender_name: o.sender_name.clone(),
            at: o.activity_timestamp,
            authorized: o.authorized,
        });
        original.ok_or_else(|| sqlx::Error::Protocol("repeat without a stored original".into()))
    };
    batch.iter().map(stored).collect()
}

/// The stored original of a repeat.
#[derive(sqlx::FromRow)]
struct Original {
    webhook: String,
    activity_id: String,
    event_id: Uuid,
    text: Option<String>,
    sender_name: Option<String>,
    activity_timestamp: Option<DateTime<Utc>>,
    authorized: bool,
}
