//! The outbox relay: publishes every committed activity to JetStream, so that the stream
//! holds exactly one message per activity.
//!
//! Publishing is at least once; JetStream's de-duplication by `Nats-Msg-Id` (= event id)
//! makes it one message per activity. Two paths lead to JetStream, and both end by deleting
//! the outbox rows JetStream acknowledged (a duplicate ack counts: JetStream already holds
//! the message):
//!
//! - **Hand-off** ([`publish`], the normal path inside `serve`): the receiver's committer
//!   hands the committed events themselves to this process's relay ([`crate::handoff`]),
//!   which publishes them from memory, pipelined, and deletes their rows in one statement.
//! - **Sweep** ([`sweep`]): at most once a second (and on every Postgres `NOTIFY` for a
//!   relay running alone) the relay claims the oldest rows with `FOR UPDATE SKIP LOCKED`,
//!   reads what publishing needs from `activities`, publishes and deletes in the claiming
//!   transaction. This finds everything the hand-off did not carry: rows of crashed
//!   processes, failed publishes, events dropped while the hand-off was full.
//!
//! A row JetStream refuses again and again waits longer between attempts, so the rows behind
//! it keep flowing, and after `RELAY_MAX_REFUSALS` moves to `outbox_dead`; [`replay`] queues
//! stored activities (or dead rows) again. When to do what is decided by [`schedule`], a
//! pure type; the loop is
//! [`crate::infra::run_loop`]. A crash anywhere leaves the rows in the outbox: they are
//! published again and de-duplicated. The same holds when a sweep and the hand-off (or two
//! relays) publish one row: the second publish is a duplicate and its delete finds nothing.

mod acked;
mod backlog;
mod notify;
mod publish;
pub mod replay;
mod schedule;
mod sweep;
mod vacuum;

use std::{
    ops::Add,
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::jetstream;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use acked::Acked;
pub use backlog::backlog;
use schedule::{Action, Schedule, SWEEP_EVERY};
use vacuum::Vacuum;

use crate::{
    handoff::Handoff,
    infra::{
        backoff::Backoff,
        run_loop::{run_loop, Step, Steps},
    },
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
    /// Refusals before a row JetStream keeps refusing moves to `outbox_dead`.
    pub max_refusals: i32,
}

/// What one publishing round did: rows acknowledged by JetStream (and deleted), and rows
/// that failed (left in the outbox for a later sweep). All zero: nothing to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Acknowledged by JetStream and deleted from the outbox.
    pub acked: usize,
    /// Not acknowledged; still in the outbox.
    pub failed: usize,
}

impl Published {
    /// Nothing published, nothing failed: the outbox had nothing to take.
    pub const ZERO: Published = Published {
        acked: 0,
        failed: 0,
    };
}

impl Add for Published {
    type Output = Published;
    fn add(self, other: Published) -> Published {
        Published {
            acked: self.acked + other.acked,
            failed: self.failed + other.failed,
        }
    }
}

/// Why a step failed as a whole; all are transient.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Postgres could not be read or written.
    #[error("outbox database error: {0}")]
    Database(#[from] sqlx::Error),
    /// JetStream did not acknowledge some events; their rows stay for the next sweep.
    #[error("{0} events were not acknowledged by JetStream; they stay in the outbox")]
    Unacknowledged(usize),
}

/// How long the relay waits after a wake-up before publishing, so that it publishes batches:
/// one publish round per few milliseconds, not one per commit. Longer is cheaper and slower:
/// measured at 1,400 webhooks/s, 20 ms (with the worker's linger at 50 ms) took NATS' CPU per
/// webhook from 111 to 71 µs and the whole from 856 to 788 µs, but the bursts of work it makes
/// on two cores raised the replies' p99 from ~11 to 20-50 ms; kept short.
const RELAY_LINGER: Duration = Duration::from_millis(3);

impl Relay {
    /// One sweep step: claim the oldest rows, publish, delete. Never waits on an empty outbox.
    pub async fn run_once(&self) -> Result<Published, RelayError> {
        self.sweep(None).await
    }

    /// The relay loop. With `handoff` (inside `serve`) it publishes what its receiver hands
    /// over and sweeps once a second; without (`teams-bridge relay`) it listens for Postgres
    /// `NOTIFY` and sweeps on each. Backs off while NATS or Postgres is down.
    pub async fn run(self, handoff: Option<Arc<Handoff>>, shutdown: CancellationToken) {
        let alone = handoff.is_none();
        let handoff = handoff.unwrap_or_default();
        let listener = alone.then(|| {
            let (pool, wake, stop) = (self.pool.clone(), handoff.clone(), shutdown.clone());
            tokio::spawn(notify::forward_notifications(pool, wake, stop))
        });
        let mut task = RelayTask {
            schedule: Schedule::new(Instant::now(), alone, self.batch_size as usize),
            relay: self,
            handoff,
            vacuum: Vacuum::default(),
            acked: Acked::default(),
        };
        let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        run_loop(&mut task, &shutdown, backoff).await;
        // What is left would only be published again (and de-duplicated) by the next relay.
        if let Err(e) = task.delete_acked().await {
            tracing::warn!(error = %e, "deleting published outbox rows at shutdown");
        }
        if let Some(l) = listener {
            l.abort();
        }
        tracing::info!("relay stopped");
    }
}

/// The relay as the step loop drives it.
struct RelayTask {
    relay: Relay,
    handoff: Arc<Handoff>,
    schedule: Schedule,
    vacuum: Vacuum,
    /// Published by the hand-off, their rows not yet deleted.
    acked: Acked,
}

impl RelayTask {
    /// Deletes the rows of everything published and waiting.
    async fn delete_acked(&mut self) -> Result<(), RelayError> {
        let ids = self.acked.take();
        if let Err(e) = self.relay.delete_published(&ids).await {
            // Still published: try again at the next step.
            self.acked.push(ids, Instant::now());
            return Err(e);
        }
        Ok(())
    }

    /// Publishes what [`Schedule::next`] chose; `None` when it chose to wait.
    async fn act(&mut self, action: Action) -> Result<Option<Published>, RelayError> {
        if let Action::Sweep { .. } = action {
            // A sweep would claim (and publish again) rows whose delete still waits.
            self.delete_acked().await?;
        }
        let relay = &self.relay;
        let published = match action {
            Action::Wait => return Ok(None),
            Action::Sweep { twice } => {
                let below = self.handoff.oldest_id();
                let p = if twice {
                    // Two batches in flight: one waits for Postgres while the other waits for
                    // JetStream's acks. Two sweeps never take the same rows (SKIP LOCKED).
                    let (a, b) = tokio::join!(relay.sweep(below), relay.sweep(below));
                    a? + b?
                } else {
                    relay.sweep(below).await?
                };
                self.schedule.swept(p.acked);
                self.vacuum.deleted += p.acked;
                p
            }
            Action::Publish => {
                let batch = relay.batch_size as usize;
                let (first, second) = (self.handoff.take(batch), self.handoff.take(batch));
                let (a, b) = tokio::join!(
                    relay.publish_handed_over(&first),
                    relay.publish_handed_over(&second)
                );
                let ((a, a_failed), (b, b_failed)) = (a, b);
                let acked = a.len() + b.len();
                // Kept for the delete before either error returns: dropped, their rows
                // would wait for a sweep to publish them again.
                self.acked.push(a.into_iter().chain(b), Instant::now());
                self.vacuum.deleted += acked;
                Published {
                    acked,
                    failed: a_failed? + b_failed?,
                }
            }
        };
        Ok(Some(published))
    }
}

impl Steps for RelayTask {
    type Error = RelayError;

    fn name(&self) -> &'static str {
        "relay"
    }

    async fn step(&mut self) -> Result<Step, RelayError> {
        let now = Instant::now();
        if self.schedule.upkeep_due(now) {
            self.vacuum.maybe_run(&self.relay.pool).await;
            let _ = backlog(&self.relay.pool).await;
        }
        if self.acked.due(now) {
            self.delete_acked().await?;
        }
        let action = self.schedule.next(now, self.handoff.has_any());
        let Some(published) = self.act(action).await? else {
            return Ok(Step::Idle);
        };
        match published.failed {
            0 => Ok(Step::Processed(published.acked)),
            failed => Err(RelayError::Unacknowledged(failed)),
        }
    }

    async fn idle(&mut self) {
        let wake = (self.acked.deadline()).unwrap_or_else(|| Instant::now() + SWEEP_EVERY);
        tokio::select! {
            _ = self.handoff.notified() => {
                // Let the commits landing right now join this step.
                tokio::time::sleep(RELAY_LINGER).await;
                self.schedule.woken();
            }
            // The waiting deletes are due (the next step makes them), or the sweep is.
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }

    fn log_failure(&self, e: &RelayError) {
        // Unacknowledged events were logged where they were settled.
        if let RelayError::Database(e) = e {
            tracing::warn!(error = %e, "relay step failed; backing off");
        }
    }

    fn after_error(&mut self) {
        // Whatever failed is still in the outbox: find it from there.
        self.schedule.failed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_rounds_side_by_side_add_up() {
        let p = |acked, failed| Published { acked, failed };
        assert_eq!(p(512, 0) + p(3, 1), p(515, 1));
        assert_eq!(Published::default() + Published::default(), p(0, 0));
    }
}
