//! Publishing: sends a batch of events to JetStream pipelined (every send first, then every
//! ack together), and settles their outbox rows: deleted when acknowledged, annotated with
//! the error when not.

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use futures::future::join_all;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Published, Relay, RelayError};
use crate::domain::event::{self, Outgoing};

/// Events JetStream acknowledged, and those it did not (with why).
type Results = (Vec<Uuid>, Vec<(Uuid, String)>);

impl Relay {
    /// Publishes events handed over by the receiver of this process and deletes the rows
    /// JetStream acknowledged. Rows already published elsewhere are simply not found.
    pub async fn publish_committed(&self, events: &[Outgoing]) -> Result<Published, RelayError> {
        if events.is_empty() {
            return Ok(Published::default());
        }
        let (acked, failed) = self.publish_all(events).await;
        let mut conn = self.pool.acquire().await?;
        settle(&mut conn, &acked, &failed).await?;
        Ok(Published {
            acked: acked.len(),
            failed: failed.len(),
        })
    }

    /// Sends every event, then awaits the acks together.
    pub(crate) async fn publish_all(&self, events: &[Outgoing]) -> Results {
        let mut pending = Vec::with_capacity(events.len());
        let mut failed = Vec::new();
        for (i, ev) in events.iter().enumerate() {
            let subject = event::subject(
                &self.subject_prefix,
                &ev.webhook,
                ev.activity_type.as_deref(),
            );
            let msg = PublishMessage::build()
                .payload(ev.raw.clone())
                .headers(ev.headers())
                .message_id(ev.event_id.to_string());
            // While NATS is away the client's send buffer can fill up; do not wait on it for
            // ever with the claimed rows locked.
            let send = self.js.send_publish(subject, msg);
            match tokio::time::timeout(Duration::from_secs(3), send).await {
                Ok(Ok(ack)) => pending.push((ev.event_id, ack)),
                Ok(Err(e)) => failed.push((ev.event_id, e.to_string())),
                Err(_) => {
                    // NATS is not taking messages: the rest of the batch waits for the next try.
                    let why = "timed out sending to NATS".to_string();
                    failed.extend(events[i..].iter().map(|e| (e.event_id, why.clone())));
                    break;
                }
            }
        }
        let acks = pending
            .into_iter()
            .map(|(id, ack)| async move { (id, ack.await) });
        let mut acked = Vec::with_capacity(events.len());
        for (id, result) in join_all(acks).await {
            // A duplicate ack means JetStream already holds this message: delivered.
            match result {
                Ok(_ack) => acked.push(id),
                Err(e) => failed.push((id, e.to_string())),
            }
        }
        (acked, failed)
    }
}

/// Deletes the rows JetStream acknowledged and records the error on the rest.
pub(crate) async fn settle(
    conn: &mut PgConnection,
    acked: &[Uuid],
    failed: &[(Uuid, String)],
) -> Result<(), sqlx::Error> {
    if !acked.is_empty() {
        sqlx::query("delete from outbox where event_id = any($1)")
            .bind(acked)
            .execute(&mut *conn)
            .await?;
        metrics::counter!("teams_bridge_published_total").increment(acked.len() as u64);
    }
    if let Some((_, first_error)) = failed.first() {
        let ids: Vec<Uuid> = failed.iter().map(|(id, _)| *id).collect();
        sqlx::query(
            "update outbox set attempts = attempts + 1, last_error = $2 where event_id = any($1)",
        )
        .bind(&ids)
        .bind(first_error)
        .execute(&mut *conn)
        .await?;
        metrics::counter!("teams_bridge_publish_errors_total").increment(failed.len() as u64);
        tracing::warn!(failed = failed.len(), error = %first_error, "publish failed; will retry");
    }
    Ok(())
}
