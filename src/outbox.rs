//! The outbox relay: publishes every committed activity to JetStream exactly once.
//!
//! Each step claims a batch of outbox rows with `FOR UPDATE SKIP LOCKED` (so several relays
//! can run side by side without taking the same rows), publishes them all before waiting for
//! any ack (pipelined), then deletes the rows JetStream acknowledged and records the error on
//! the rest, all in the claiming transaction. A crash anywhere leaves the rows in the outbox:
//! they are published again, and JetStream's `Nats-Msg-Id` de-duplication (a duplicate ack
//! counts as delivered) keeps the stream at one message per activity.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, message::PublishMessage};
use chrono::{DateTime, Utc};
use futures::future::join_all;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    backoff::Backoff,
    event::{self, Outgoing},
};

/// Where and how the relay publishes.
#[derive(Clone)]
pub struct Relay {
    /// Postgres, the source of truth.
    pub pool: PgPool,
    /// JetStream.
    pub js: jetstream::Context,
    /// Subject prefix (`teams`).
    pub subject_prefix: String,
    /// Most rows per step.
    pub batch_size: i64,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This many rows were acknowledged by JetStream (and this many failed).
    Published { acked: usize, failed: usize },
    /// Nothing to do.
    Idle,
}

/// Why a step failed as a whole; all are transient.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Postgres could not be read or written.
    #[error("outbox database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// How long the relay waits after a wake-up before claiming, so that it publishes batches.
const RELAY_LINGER: Duration = Duration::from_millis(3);

// The rows are claimed first and joined after: a plain join ordered by event id lets the
// planner merge-join along the whole `activities` primary key.
const CLAIM: &str = r#"
with claimed as (
    select event_id from outbox
    order by event_id
    limit $1
    for update skip locked
)
select c.event_id, a.webhook, a.activity_type, a.conversation_id,
       coalesce(a.activity_timestamp, a.received_at) as time, a.traceparent, a.raw
from claimed c join activities a using (event_id)
order by c.event_id
"#;

type Row = (
    Uuid,
    String,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
    Option<String>,
    Vec<u8>,
);

impl Relay {
    /// One step: claim, publish, mark. Returns what happened; never waits on an empty outbox.
    pub async fn run_once(&self) -> Result<Outcome, RelayError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<Row> = sqlx::query_as(CLAIM)
            .bind(self.batch_size)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(Outcome::Idle);
        }
        // Losing this transaction's deletes in a Postgres crash only means publishing those
        // rows again, which JetStream de-duplicates: it need not wait for its WAL flush.
        sqlx::query("set local synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        let events: Vec<Outgoing> = rows
            .into_iter()
            .map(
                |(event_id, webhook, activity_type, conversation_id, time, traceparent, raw)| {
                    Outgoing {
                        event_id,
                        webhook,
                        activity_type,
                        conversation_id,
                        time,
                        traceparent,
                        raw: raw.into(),
                    }
                },
            )
            .collect();

        let (acked, failed) = self.publish_all(&events).await;
        if !acked.is_empty() {
            sqlx::query("delete from outbox where event_id = any($1)")
                .bind(&acked)
                .execute(&mut *tx)
                .await?;
        }
        if let Some((_, first_error)) = failed.first() {
            let ids: Vec<Uuid> = failed.iter().map(|(id, _)| *id).collect();
            sqlx::query("update outbox set attempts = attempts + 1, last_error = $2 where event_id = any($1)")
                .bind(&ids)
                .bind(first_error)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        metrics::counter!("teams_bridge_published_total").increment(acked.len() as u64);
        if !failed.is_empty() {
            metrics::counter!("teams_bridge_publish_errors_total").increment(failed.len() as u64);
            tracing::warn!(failed = failed.len(), error = %failed[0].1, "publish failed; will retry");
        }
        Ok(Outcome::Published {
            acked: acked.len(),
            failed: failed.len(),
        })
    }

    /// Sets the backlog gauges: unpublished rows and the age of the oldest.
    pub async fn record_backlog(&self) {
        let row: Result<(i64, Option<f64>), _> = sqlx::query_as(
            "select count(*), extract(epoch from now() - min(created_at))::float8 from outbox",
        )
        .fetch_one(&self.pool)
        .await;
        if let Ok((n, age)) = row {
            metrics::gauge!("teams_bridge_outbox_backlog").set(n as f64);
            metrics::gauge!("teams_bridge_outbox_oldest_seconds").set(age.unwrap_or(0.0));
        }
    }

    /// Sends every event, then awaits the acks together.
    async fn publish_all(&self, events: &[Outgoing]) -> (Vec<Uuid>, Vec<(Uuid, String)>) {
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
            match tokio::time::timeout(Duration::from_secs(3), self.js.send_publish(subject, msg))
                .await
            {
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
        let results = join_all(
            pending
                .into_iter()
                .map(|(id, ack)| async move { (id, ack.await) }),
        )
        .await;
        let mut acked = Vec::with_capacity(results.len());
        for (id, result) in results {
            // A duplicate ack means JetStream already holds this message: delivered.
            match result {
                Ok(_ack) => acked.push(id),
                Err(e) => failed.push((id, e.to_string())),
            }
        }
        (acked, failed)
    }

    /// The relay loop: runs steps while there is work, sleeps until woken (in-process commit,
    /// Postgres `NOTIFY`, or a 1 s safety poll), backs off while NATS or Postgres is down.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        let listener = tokio::spawn(forward_notifications(
            self.pool.clone(),
            wake.clone(),
            shutdown.clone(),
        ));
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        let mut gauges_at = tokio::time::Instant::now();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if gauges_at.elapsed() >= Duration::from_secs(5) {
                gauges_at = tokio::time::Instant::now();
                self.record_backlog().await;
            }
            let delay = match self.run_once().await {
                Ok(Outcome::Published { acked, failed: 0 }) if acked as i64 >= self.batch_size => {
                    backoff.reset();
                    continue;
                }
                Ok(Outcome::Published { failed: 0, .. }) | Ok(Outcome::Idle) => {
                    backoff.reset();
                    None
                }
                Ok(Outcome::Published { .. }) => Some(backoff.next_delay()),
                Err(e) => {
                    tracing::warn!(error = %e, "relay step failed; backing off");
                    Some(backoff.next_delay())
                }
            };
            match delay {
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
                None => {
                    tokio::select! {
                        _ = wake.notified() => {
                            // Let the commits landing right now join this step: one claim per
                            // few milliseconds instead of one per commit under load.
                            tokio::time::sleep(RELAY_LINGER).await;
                        }
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
            }
        }
        listener.abort();
        tracing::info!("relay stopped");
    }
}

/// Turns Postgres `NOTIFY teams_bridge_outbox` into wake-ups, so a relay running in another
/// process than the receiver still starts within milliseconds of a commit.
async fn forward_notifications(pool: PgPool, wake: Arc<Notify>, shutdown: CancellationToken) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(_) => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
        };
        if listener.listen("teams_bridge_outbox").await.is_err() {
            continue;
        }
        loop {
            tokio::select! {
                n = listener.recv() => match n {
                    Ok(_) => wake.notify_one(),
                    Err(_) => break,
                },
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
