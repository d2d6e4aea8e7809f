//! The outbox relay: publishes every committed activity to JetStream exactly once.
//!
//! Two paths lead to JetStream, and both end by deleting the outbox rows JetStream
//! acknowledged (a duplicate ack counts: JetStream already holds the message):
//!
//! - **Hand-off** (the normal path inside `serve`): after each group commit the receiver hands
//!   its relay the committed events themselves ([`Handoff`]). The relay publishes them from
//!   memory, pipelined, and deletes their rows in one statement: no claim, no reading the
//!   activity back from Postgres.
//! - **Sweep**: at most once a second (and on every Postgres `NOTIFY` for a relay running
//!   alone) the relay claims the oldest rows with `FOR UPDATE SKIP LOCKED` (so several relays
//!   never take the same rows), reads what publishing needs from `activities`, publishes and
//!   deletes in the claiming transaction. This finds everything the hand-off did not carry:
//!   rows of crashed processes, failed publishes, events dropped while the hand-off was full.
//!   Scanning from the oldest end on every commit would walk the dead index entries that a
//!   busy queue table leaves behind faster than vacuum removes them.
//!
//! A crash anywhere leaves the rows in the outbox: they are published again, and JetStream's
//! `Nats-Msg-Id` de-duplication keeps the stream at one message per activity. The same holds
//! when a sweep and the hand-off (or two relays) publish one row: the second publish is a
//! duplicate and its delete finds nothing.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, message::PublishMessage};
use chrono::{DateTime, Utc};
use futures::future::join_all;
use sqlx::{PgConnection, PgPool};
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

impl Outcome {
    /// The outcome of two steps run side by side.
    fn both(
        a: Result<Outcome, RelayError>,
        b: Result<Outcome, RelayError>,
    ) -> Result<Outcome, RelayError> {
        let counts = |o: Outcome| match o {
            Outcome::Published { acked, failed } => (acked, failed),
            Outcome::Idle => (0, 0),
        };
        match (a?, b?) {
            (Outcome::Idle, Outcome::Idle) => Ok(Outcome::Idle),
            (a, b) => {
                let ((a1, f1), (a2, f2)) = (counts(a), counts(b));
                Ok(Outcome::Published {
                    acked: a1 + a2,
                    failed: f1 + f2,
                })
            }
        }
    }
}

/// Why a step failed as a whole; all are transient.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Postgres could not be read or written.
    #[error("outbox database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// How often the relay sweeps the outbox from its oldest end while the hand-off keeps it busy.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How long the relay waits after a wake-up before claiming, so that it publishes batches.
const RELAY_LINGER: Duration = Duration::from_millis(3);

/// A claim: lock some outbox rows (`$which` picks them), then read what publishing needs.
/// The rows are claimed first and joined after: a plain join ordered by event id lets the
/// planner merge-join along the whole `activities` primary key.
macro_rules! claim_sql {
    ($which:literal) => {
        concat!(
            "with claimed as (select event_id from outbox ",
            $which,
            " for update skip locked) ",
            "select c.event_id, a.webhook, a.activity_type, a.conversation_id, ",
            "coalesce(a.activity_timestamp, a.received_at) as time, a.traceparent, a.raw ",
            "from claimed c join activities a using (event_id) order by c.event_id"
        )
    };
}

/// The sweep: the oldest rows, up to `$1`, older than `$2` (the oldest id waiting in the
/// hand-off, whose rows the hand-off is about to publish).
const CLAIM: &str = claim_sql!("where event_id < $2 order by event_id limit $1");

/// Most bytes of bodies held for the in-process relay (a body may be up to
/// `BODY_LIMIT_BYTES`, so a count alone would not bound memory); beyond it events are dropped
/// and the sweep finds their rows.
const MAX_HANDOFF_BYTES: usize = 32 * 1024 * 1024;

/// Events committed in this process and not yet taken by its relay, in commit order.
#[derive(Debug, Default)]
pub struct Handoff {
    held: std::sync::Mutex<Held>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct Held {
    events: VecDeque<Outgoing>,
    bytes: usize,
}

impl Handoff {
    /// Hands over newly committed events and wakes the relay.
    pub fn push(&self, events: impl IntoIterator<Item = Outgoing>) {
        {
            let mut held = self.held.lock().expect("hand-off lock is never poisoned");
            for e in events {
                if held.bytes + e.raw.len() > MAX_HANDOFF_BYTES {
                    break;
                }
                held.bytes += e.raw.len();
                held.events.push_back(e);
            }
        }
        self.notify.notify_one();
    }

    /// Takes up to `max` events, oldest first.
    pub fn take(&self, max: usize) -> Vec<Outgoing> {
        let mut held = self.held.lock().expect("hand-off lock is never poisoned");
        let n = held.events.len().min(max);
        let taken: Vec<Outgoing> = held.events.drain(..n).collect();
        held.bytes -= taken.iter().map(|e| e.raw.len()).sum::<usize>();
        taken
    }

    /// Whether events are waiting.
    pub fn has_any(&self) -> bool {
        !self
            .held
            .lock()
            .expect("hand-off lock is never poisoned")
            .events
            .is_empty()
    }

    /// The smallest event id waiting (ids are UUIDv7, so roughly the oldest).
    fn oldest_id(&self) -> Option<Uuid> {
        self.held
            .lock()
            .expect("hand-off lock is never poisoned")
            .events
            .iter()
            .map(|e| e.event_id)
            .min()
    }

    /// Wakes the relay without events (a `NOTIFY` from another process): it sweeps.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    async fn notified(&self) {
        self.notify.notified().await
    }
}

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
    /// One sweep step: claim the oldest rows, publish, mark. Never waits on an empty outbox.
    pub async fn run_once(&self) -> Result<Outcome, RelayError> {
        self.sweep(None).await
    }

    /// Publishes events handed over by the receiver of this process and deletes the rows
    /// JetStream acknowledged. Rows already published elsewhere are simply not found.
    pub async fn publish_committed(&self, events: &[Outgoing]) -> Result<Outcome, RelayError> {
        if events.is_empty() {
            return Ok(Outcome::Idle);
        }
        let (acked, failed) = self.publish_all(events).await;
        let mut conn = self.pool.acquire().await?;
        settle(&mut conn, &acked, &failed).await?;
        Ok(Outcome::Published {
            acked: acked.len(),
            failed: failed.len(),
        })
    }

    /// Claims the oldest rows below `below` (all when `None`), publishes, deletes.
    async fn sweep(&self, below: Option<Uuid>) -> Result<Outcome, RelayError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<Row> = sqlx::query_as(CLAIM)
            .bind(self.batch_size)
            .bind(below.unwrap_or(Uuid::max()))
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(Outcome::Idle);
        }
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
        settle(&mut tx, &acked, &failed).await?;
        tx.commit().await?;
        Ok(Outcome::Published {
            acked: acked.len(),
            failed: failed.len(),
        })
    }

    /// Sets the backlog gauges: unpublished rows and the age of the oldest.
    pub async fn record_backlog(&self) {
        let _ = backlog(&self.pool).await;
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

    /// The relay loop. With `handoff` (inside `serve`) it publishes what its receiver hands
    /// over and sweeps once a second; without (`teams-bridge relay`) it listens for Postgres
    /// `NOTIFY` and sweeps on each. Backs off while NATS or Postgres is down.
    pub async fn run(self, handoff: Option<Arc<Handoff>>, shutdown: CancellationToken) {
        let alone = handoff.is_none();
        let handoff = handoff.unwrap_or_default();
        let listener = alone.then(|| {
            tokio::spawn(forward_notifications(
                self.pool.clone(),
                handoff.clone(),
                shutdown.clone(),
            ))
        });
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        let mut gauges_at = Instant::now();
        let mut vacuum = Vacuum::default();
        let mut last_sweep: Option<Instant> = None;
        let mut sweep_now = true;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if gauges_at.elapsed() >= Duration::from_secs(5) {
                gauges_at = Instant::now();
                vacuum.maybe_run(&self.pool).await;
                self.record_backlog().await;
            }
            // The sweep comes first when due, so a steady hand-off cannot starve it.
            let sweeping = sweep_now || last_sweep.is_none_or(|t| t.elapsed() >= SWEEP_EVERY);
            // With a backlog, two batches are in flight at once: one waits for Postgres while
            // the other waits for JetStream's acks. Two sweeps never take the same rows
            // (SKIP LOCKED); two hand-off batches are disjoint by construction.
            let batch = self.batch_size as usize;
            let result = if sweeping {
                last_sweep = Some(Instant::now());
                let below = handoff.oldest_id();
                if sweep_now {
                    let (a, b) = tokio::join!(self.sweep(below), self.sweep(below));
                    Outcome::both(a, b)
                } else {
                    self.sweep(below).await
                }
            } else {
                let first = handoff.take(batch);
                let second = handoff.take(batch);
                let (a, b) = tokio::join!(
                    self.publish_committed(&first),
                    self.publish_committed(&second)
                );
                Outcome::both(a, b)
            };
            sweep_now = false;
            let delay = match result {
                Ok(Outcome::Published { acked, failed: 0 }) => {
                    backoff.reset();
                    vacuum.deleted += acked;
                    // A full sweep means a backlog (after an outage): keep sweeping.
                    sweep_now = sweeping && acked as i64 >= self.batch_size;
                    if sweep_now || handoff.has_any() {
                        continue;
                    }
                    None
                }
                Ok(Outcome::Idle) => {
                    backoff.reset();
                    if handoff.has_any() {
                        continue;
                    }
                    None
                }
                Ok(Outcome::Published { acked, .. }) => {
                    vacuum.deleted += acked;
                    Some(backoff.next_delay())
                }
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
                    // Whatever failed is still in the outbox: find it from there.
                    sweep_now = true;
                }
                None => {
                    tokio::select! {
                        _ = handoff.notified() => {
                            // Let the commits landing right now join this step: one publish
                            // round and one delete per few milliseconds, not per commit.
                            tokio::time::sleep(RELAY_LINGER).await;
                            sweep_now = alone;
                        }
                        _ = tokio::time::sleep(SWEEP_EVERY) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
            }
        }
        if let Some(l) = listener {
            l.abort();
        }
        tracing::info!("relay stopped");
    }
}

/// Deletes the rows JetStream acknowledged and records the error on the rest.
async fn settle(
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

/// Vacuums the outbox after enough deletes. A queue table needs it more than any other, and
/// the relay cannot count on autovacuum (it may be off, or slow to reach a small hot table):
/// without it every sweep and backlog count walks all rows ever deleted.
#[derive(Default)]
struct Vacuum {
    deleted: usize,
    failed_once: bool,
}

impl Vacuum {
    /// Deleted rows that make a vacuum worth its cost.
    const AFTER_DELETES: usize = 20_000;

    async fn maybe_run(&mut self, pool: &PgPool) {
        if self.deleted < Self::AFTER_DELETES {
            return;
        }
        self.deleted = 0;
        // SKIP_LOCKED: when another relay (or autovacuum) is at it, this one need not wait.
        // TRUNCATE false: giving empty pages back to the file system takes an exclusive lock
        // that would make every commit wait; the next inserts reuse those pages anyway.
        if let Err(e) = sqlx::raw_sql("vacuum (skip_locked, truncate false) outbox")
            .execute(pool)
            .await
        {
            if !self.failed_once {
                self.failed_once = true;
                tracing::warn!(error = %e, "cannot vacuum the outbox; relying on autovacuum");
            }
        }
    }
}

/// Unpublished outbox rows and the age in seconds of the oldest (0 when empty); also sets the
/// backlog gauges, so every reader (relay, `/readyz`) keeps them current.
pub async fn backlog(pool: &PgPool) -> Result<(i64, f64), sqlx::Error> {
    let (n, age): (i64, Option<f64>) = sqlx::query_as(
        "select count(*), extract(epoch from now() - min(created_at))::float8 from outbox",
    )
    .fetch_one(pool)
    .await?;
    let age = age.unwrap_or(0.0);
    metrics::gauge!("teams_bridge_outbox_backlog").set(n as f64);
    metrics::gauge!("teams_bridge_outbox_oldest_seconds").set(age);
    Ok((n, age))
}

/// Turns Postgres `NOTIFY teams_bridge_outbox` into wake-ups, so a relay running in another
/// process than the receiver still starts within milliseconds of a commit.
async fn forward_notifications(pool: PgPool, wake: Arc<Handoff>, shutdown: CancellationToken) {
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
                    Ok(_) => wake.wake(),
                    Err(_) => break,
                },
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_steps_side_by_side_add_up() {
        let p = |acked, failed| Ok(Outcome::Published { acked, failed });
        assert_eq!(
            Outcome::both(p(512, 0), p(3, 1)).unwrap(),
            Outcome::Published {
                acked: 515,
                failed: 1
            }
        );
        assert_eq!(
            Outcome::both(Ok(Outcome::Idle), p(7, 0)).unwrap(),
            Outcome::Published {
                acked: 7,
                failed: 0
            }
        );
        assert_eq!(
            Outcome::both(Ok(Outcome::Idle), Ok(Outcome::Idle)).unwrap(),
            Outcome::Idle
        );
        let down = Err(RelayError::Database(sqlx::Error::PoolTimedOut));
        assert!(Outcome::both(p(512, 0), down).is_err());
    }

    fn event(size: usize) -> Outgoing {
        Outgoing {
            event_id: Uuid::now_v7(),
            webhook: "contoso".into(),
            activity_type: Some("message".into()),
            conversation_id: None,
            time: Utc::now(),
            traceparent: None,
            raw: vec![b' '; size].into(),
        }
    }

    #[test]
    fn the_handoff_holds_a_bounded_number_of_bytes_and_gives_them_back_in_order() {
        let h = Handoff::default();
        let big = MAX_HANDOFF_BYTES / 4;
        let events: Vec<Outgoing> = (0..6).map(|_| event(big)).collect();
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        h.push(events);
        // Four fit; the rest is dropped (the sweep finds their rows).
        let taken = h.take(3);
        assert_eq!(
            taken.iter().map(|e| e.event_id).collect::<Vec<_>>(),
            ids[..3]
        );
        assert_eq!(h.oldest_id(), Some(ids[3]));
        // Taking gives the room back.
        h.push([event(big), event(big), event(big)]);
        assert_eq!(h.take(10).len(), 4);
        assert!(!h.has_any());
        h.push([event(big)]);
        assert_eq!(h.take(10).len(), 1);
    }
}
