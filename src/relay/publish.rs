//! Publishing: sends a batch of events to JetStream pipelined (every send first, then every
//! ack together), and settles their outbox rows: deleted when acknowledged, annotated with
//! the error when not.

use std::time::Duration;

use async_nats::jetstream::{
    context::{PublishError, PublishErrorKind},
    message::PublishMessage,
};
use futures::future::join_all;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Published, Relay, RelayError};
use crate::domain::event::{self, Outgoing};

/// Events JetStream acknowledged, and those it did not.
type Results = (Vec<Uuid>, Vec<Failure>);

/// An event JetStream did not acknowledge.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) event_id: Uuid,
    pub(crate) error: String,
    /// JetStream (or the client, for a message over `max_payload`) refused this message
    /// itself; retrying it as it is will not help. Never set while NATS is merely away, so
    /// an outage never moves rows to `outbox_dead`.
    pub(crate) refused: bool,
}

impl Failure {
    /// A message that could not be sent: refused only when it is over `max_payload` (the
    /// client checks before sending); anything else here is the connection.
    fn unsent(event_id: Uuid, e: &PublishError) -> Self {
        let refused = matches!(e.kind(), PublishErrorKind::MaxPayloadExceeded);
        Self::new(event_id, e, refused)
    }

    /// A message sent but not acknowledged: refused only when JetStream said this message
    /// can never be taken (over its maximum size). Everything else (a timeout, a lost
    /// connection, no stream, storage or quorum trouble) passes, so it is retried for ever.
    fn unacknowledged(event_id: Uuid, e: &PublishError) -> Self {
        use async_nats::jetstream::{Error as JsError, ErrorCode};
        let code = std::error::Error::source(e).and_then(|s| s.downcast_ref::<JsError>());
        let too_big =
            code.is_some_and(|c| c.error_code() == ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM);
        let refused = too_big || matches!(e.kind(), PublishErrorKind::MaxPayloadExceeded);
        Self::new(event_id, e, refused)
    }

    fn new(event_id: Uuid, e: &PublishError, refused: bool) -> Self {
        Self {
            event_id,
            error: e.to_string(),
            refused,
        }
    }
}

impl Relay {
    /// Publishes events handed over by the receiver of this process and deletes the rows
    /// JetStream acknowledged. Rows already published elsewhere are simply not found.
    pub async fn publish_committed(&self, events: &[Outgoing]) -> Result<Published, RelayError> {
        let (acked, failed) = self.publish_handed_over(events).await;
        self.delete_published(&acked).await?;
        Ok(Published {
            acked: acked.len(),
            failed: failed?,
        })
    }

    /// [`Relay::publish_committed`] without the delete: returns the ids JetStream
    /// acknowledged, whose rows the caller deletes ([`Relay::delete_published`]), and how
    /// many failed (recorded on their rows at once). The acknowledged come back even when
    /// recording the failures fails, so that their rows are still deleted.
    pub(crate) async fn publish_handed_over(
        &self,
        events: &[Outgoing],
    ) -> (Vec<Uuid>, Result<usize, RelayError>) {
        if events.is_empty() {
            return (Vec::new(), Ok(0));
        }
        let (acked, failed) = self.publish_all(events).await;
        let recorded = self.settle_alone(&[], &failed).await;
        (acked, recorded.map(|()| failed.len()))
    }

    /// Deletes the outbox rows of events JetStream acknowledged.
    pub(crate) async fn delete_published(&self, acked: &[Uuid]) -> Result<(), RelayError> {
        self.settle_alone(acked, &[]).await
    }

    /// [`settle`] on a connection of its own, when there is anything to settle.
    async fn settle_alone(&self, acked: &[Uuid], failed: &[Failure]) -> Result<(), RelayError> {
        if !acked.is_empty() || !failed.is_empty() {
            let mut conn = self.pool.acquire().await?;
            settle(&mut conn, acked, failed, self.max_refusals).await?;
        }
        Ok(())
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
                Ok(Err(e)) => failed.push(Failure::unsent(ev.event_id, &e)),
                Err(_) => {
                    // NATS is not taking messages: the rest of the batch waits for the next try.
                    let timed_out = PublishError::new(PublishErrorKind::TimedOut);
                    failed.extend(
                        events[i..]
                            .iter()
                            .map(|e| Failure::unsent(e.event_id, &timed_out)),
                    );
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
                Err(e) => failed.push(Failure::unacknowledged(id, &e)),
            }
        }
        (acked, failed)
    }
}

/// Deletes the rows JetStream acknowledged and records the error on the rest. A row that
/// JetStream refused waits before its next attempt (2 s, 4 s … up to 5 min), so the rows behind
/// it keep flowing, and after `max_refusals` it moves to `outbox_dead`.
pub(crate) async fn settle(
    conn: &mut PgConnection,
    acked: &[Uuid],
    failed: &[Failure],
    max_refusals: i32,
) -> Result<(), sqlx::Error> {
    if !acked.is_empty() {
        sqlx::query("delete from outbox where event_id = any($1)")
            .bind(acked)
            .execute(&mut *conn)
            .await?;
        metrics::counter!("teams_bridge_published_total").increment(acked.len() as u64);
    }
    let Some(first) = failed.first() else {
        return Ok(());
    };
    let ids: Vec<Uuid> = failed.iter().map(|f| f.event_id).collect();
    let refused: Vec<bool> = failed.iter().map(|f| f.refused).collect();
    let errors: Vec<&str> = failed.iter().map(|f| f.error.as_str()).collect();
    sqlx::query(RETRY_LATER)
        .bind(&ids)
        .bind(&refused)
        .bind(&errors)
        .execute(&mut *conn)
        .await?;
    metrics::counter!("teams_bridge_publish_errors_total").increment(failed.len() as u64);
    tracing::warn!(failed = failed.len(), error = %first.error, "publish failed; will retry");
    if refused.contains(&true) {
        give_up(conn, &ids, max_refusals, &first.error).await?;
    }
    Ok(())
}

/// Moves the rows out of attempts to `outbox_dead`.
async fn give_up(
    conn: &mut PgConnection,
    ids: &[Uuid],
    max_refusals: i32,
    error: &str,
) -> Result<(), sqlx::Error> {
    let dead = sqlx::query(GIVE_UP)
        .bind(ids)
        .bind(max_refusals)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if dead > 0 {
        metrics::counter!("teams_bridge_outbox_dead_total").increment(dead);
        tracing::error!(rows = dead, max_refusals, %error,
            "JetStream refused rows on every attempt; moved to outbox_dead (`teams-bridge replay --dead` queues them again)");
    }
    Ok(())
}

/// Every failure is an attempt; a refusal also counts towards `outbox_dead` and defers the
/// row's next attempt by 2^refusals seconds, at most 5 min.
const RETRY_LATER: &str = "\
    update outbox o set attempts = attempts + 1, last_error = f.error, \
        refusals = refusals + f.refused::int, \
        not_before = case when f.refused then now() + least( \
            interval '1 second' * power(2, least(refusals + 1, 20)), interval '5 minutes') end \
    from unnest($1::uuid[], $2::bool[], $3::text[]) as f(event_id, refused, error) \
    where o.event_id = f.event_id";

/// Rows out of attempts leave the outbox for `outbox_dead`, in one statement.
const GIVE_UP: &str = "\
    with dead as (delete from outbox where event_id = any($1) and refusals >= $2 \
                  returning event_id, created_at, attempts, last_error) \
    insert into outbox_dead (event_id, created_at, attempts, last_error) \
    select event_id, created_at, attempts, last_error from dead \
    on conflict (event_id) do update set attempts = excluded.attempts, \
        last_error = excluded.last_error, dead_at = now()";
