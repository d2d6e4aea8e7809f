//! The sweep: claims the oldest outbox rows with `FOR UPDATE SKIP LOCKED` (several relays
//! never take the same rows), reads what publishing needs from `activities`, publishes, and
//! deletes what JetStream acknowledged, all in the claiming transaction.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{publish::settle, Published, Relay, RelayError};
use crate::domain::event::Outgoing;

/// The oldest rows, up to `$1`, older than `$2` (the oldest id waiting in the hand-off, whose
/// rows the hand-off is about to publish), that are not waiting out a failure. The rows are claimed first and joined after: a
/// plain join ordered by event id lets the planner merge-join along the whole `activities`
/// primary key.
const CLAIM: &str = "\
    with claimed as (select event_id from outbox where event_id < $2 \
                     and (not_before is null or not_before <= now()) order by event_id \
                     limit $1 for update skip locked) \
    select c.event_id, coalesce(a.webhook, '') as webhook, a.activity_type, a.conversation_id, \
           coalesce(a.activity_timestamp, a.received_at, now()) as time, a.traceparent, a.raw \
    from claimed c left join activities a using (event_id) order by c.event_id";

type Row = (
    Uuid,
    String,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
    Option<String>,
    Option<Vec<u8>>,
);

fn into_event(row: Row) -> Option<Outgoing> {
    let (event_id, webhook, activity_type, conversation_id, time, traceparent, raw) = row;
    Some(Outgoing {
        event_id,
        webhook,
        activity_type,
        conversation_id,
        time,
        traceparent,
        raw: raw?.into(),
    })
}

impl Relay {
    /// Claims the oldest rows below `below` (all when `None`), publishes, deletes.
    pub(crate) async fn sweep(&self, below: Option<Uuid>) -> Result<Published, RelayError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<Row> = sqlx::query_as(CLAIM)
            .bind(self.batch_size)
            .bind(below.unwrap_or(Uuid::max()))
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(Published::default());
        }
        // A row whose activity was erased or expired (a tombstone: no bytes), or deleted by
        // hand (no foreign key keeps it), has nothing left to publish; it leaves the outbox
        // instead of blocking the rows behind it.
        let tombstones: Vec<Uuid> = rows.iter().filter(|r| r.6.is_none()).map(|r| r.0).collect();
        if !tombstones.is_empty() {
            sqlx::query("delete from outbox where event_id = any($1)")
                .bind(&tombstones)
                .execute(&mut *tx)
                .await?;
        }
        let events: Vec<Outgoing> = rows.into_iter().filter_map(into_event).collect();
        let (acked, failed) = self.publish_all(&events).await;
        settle(&mut tx, &acked, &failed, self.max_refusals).await?;
        tx.commit().await?;
        Ok(Published {
            acked: acked.len(),
            failed: failed.len(),
        })
    }
}
