//! A reusable JetStream worker: a durable pull consumer, a handler over decoded events, and
//! the ack / retry / dead-letter policy around it.
//!
//! Policy, the same for every worker:
//! - a message is acked only after the handler returned Ok (i.e. after its own commit);
//! - [`HandleError::Transient`] (Postgres down…) is retried with back-off, for ever;
//! - [`HandleError::Permanent`] (the message itself is unusable) is retried a bounded number
//!   of deliveries with back-off, then written to `dead_letters` with the reason and the
//!   exact bytes, and acked;
//! - handlers must be idempotent: JetStream delivers at least once.
//!
//! [`Worker::run_once`] is one fetch-handle-ack step that tests call directly;
//! [`Worker::run`] loops it until shutdown, finishing the batch in hand.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer},
    AckKind,
};
use futures::StreamExt;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{backoff::Backoff, event::Event};

/// Why a handler could not process an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The event itself is unusable; retrying will not help. Dead-lettered after the bounded
    /// number of deliveries.
    #[error("permanent: {0}")]
    Permanent(String),
    /// Something around the event failed (database down…); retried, never dead-lettered.
    #[error("transient: {0}")]
    Transient(String),
}

/// Processes a batch of events; returns one result per event, in order. Must be idempotent.
pub trait Handler: Send + Sync {
    /// Handles `events`; `Ok` means committed and safe to ack.
    fn handle(&self, events: &[Event])
        -> impl Future<Output = Vec<Result<(), HandleError>>> + Send;
}

/// Which consumer to run and how patiently.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// The stream name.
    pub stream: String,
    /// Durable consumer name; several workers with the same name share the work.
    pub durable: String,
    /// Subject filter, e.g. `teams.*.message`.
    pub filter_subject: String,
    /// Deliveries of an unusable message before it is dead-lettered.
    pub max_deliveries: u64,
    /// How long the server waits for an ack before redelivering (crash recovery time).
    pub ack_wait: Duration,
    /// Most messages per fetch.
    pub batch: usize,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Handled and acked.
    pub processed: usize,
    /// Nak'ed for a later retry.
    pub retried: usize,
    /// Written to `dead_letters` and acked.
    pub dead_lettered: usize,
}

impl Outcome {
    /// Nothing was fetched.
    pub fn is_idle(&self) -> bool {
        *self == Outcome::default()
    }
}

/// A running consumer with its handler.
pub struct Worker<H> {
    pool: PgPool,
    consumer: PullConsumer,
    spec: ConsumerSpec,
    handler: H,
    heartbeat: Heartbeat,
}

/// When a worker last completed a step; its `/healthz` turns 503 when that is too long ago
/// (NATS or the consumer unreachable, a step stuck), not merely when the process is gone.
#[derive(Debug, Clone)]
pub struct Heartbeat(Arc<AtomicI64>);

impl Heartbeat {
    fn new() -> Self {
        let h = Self(Arc::new(AtomicI64::new(0)));
        h.beat();
        h
    }

    fn beat(&self) {
        self.0
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// Time since the last completed step (or since the worker connected).
    pub fn age(&self) -> Duration {
        let ms = chrono::Utc::now().timestamp_millis() - self.0.load(Ordering::Relaxed);
        Duration::from_millis(ms.max(0) as u64)
    }
}

impl<H: Handler> Worker<H> {
    /// Creates (or binds to) the durable consumer.
    pub async fn connect(
        js: &jetstream::Context,
        pool: PgPool,
        spec: ConsumerSpec,
        handler: H,
    ) -> anyhow::Result<Self> {
        let stream = js
            .get_stream(&spec.stream)
            .await
            .map_err(|e| anyhow::anyhow!("stream {}: {e}", spec.stream))?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                &spec.durable,
                pull::Config {
                    durable_name: Some(spec.durable.clone()),
                    filter_subject: spec.filter_subject.clone(),
                    ack_policy: AckPolicy::Explicit,
                    deliver_policy: DeliverPolicy::All,
                    ack_wait: spec.ack_wait,
                    // Redelivery is bounded by our own dead-letter policy, not by the server,
                    // so transient failures are retried for as long as they last.
                    max_deliver: -1,
                    max_ack_pending: (spec.batch * 8) as i64,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("consumer {}: {e}", spec.durable))?;
        Ok(Self {
            pool,
            consumer,
            spec,
            handler,
            heartbeat: Heartbeat::new(),
        })
    }

    /// The worker's heartbeat, for its health endpoint.
    pub fn heartbeat(&self) -> Heartbeat {
        self.heartbeat.clone()
    }

    /// One step: fetch up to a batch (waiting at most `wait` for the first message), handle,
    /// then ack, nak or dead-letter each message.
    pub async fn run_once(&self, wait: Duration) -> anyhow::Result<Outcome> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(self.spec.batch)
            .expires(wait.max(Duration::from_millis(100)))
            .messages()
            .await?;
        let mut messages = Vec::with_capacity(self.spec.batch);
        while let Some(m) = batch.next().await {
            match m {
                Ok(m) => messages.push(m),
                Err(e) => {
                    tracing::debug!(error = %e, "fetch ended");
                    break;
                }
            }
        }
        if messages.is_empty() {
            return Ok(Outcome::default());
        }

        let decoded: Vec<Result<Event, HandleError>> = messages
            .iter()
            .map(|m| {
                Event::decode(m.subject.as_str(), m.headers.as_ref(), m.payload.clone())
                    .map_err(|e| HandleError::Permanent(e.to_string()))
            })
            .collect();
        let events: Vec<Event> = decoded
            .iter()
            .filter_map(|d| d.as_ref().ok().cloned())
            .collect();
        let mut handled = self.handler.handle(&events).await.into_iter();
        let results: Vec<Result<(), HandleError>> = decoded
            .into_iter()
            .map(|d| match d {
                Ok(_) => handled.next().unwrap_or_else(|| {
                    Err(HandleError::Transient(
                        "handler returned too few results".into(),
                    ))
                }),
                Err(e) => Err(e),
            })
            .collect();

        let mut outcome = Outcome::default();
        for (message, result) in messages.iter().zip(results) {
            let delivered = message
                .info()
                .map(|i| i.delivered.max(1) as u64)
                .unwrap_or(1);
            // The receiver's trace id travels in `traceparent`: logging it joins the two sides.
            let trace_id = message
                .headers
                .as_ref()
                .and_then(|h| h.get("traceparent"))
                .map(|v| crate::trace::trace_id(v.as_str()).to_owned())
                .unwrap_or_default();
            match result {
                Ok(()) => {
                    tracing::debug!(subject = %message.subject, %trace_id, delivered, "processed");
                    ack(message, AckKind::Ack).await;
                    outcome.processed += 1;
                }
                Err(HandleError::Permanent(reason)) if delivered >= self.spec.max_deliveries => {
                    match self.dead_letter(message, &reason, delivered).await {
                        Ok(()) => {
                            tracing::warn!(subject = %message.subject, %trace_id, %reason, delivered, "dead-lettered");
                            ack(message, AckKind::Ack).await;
                            outcome.dead_lettered += 1;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot dead-letter yet; will retry");
                            ack(message, AckKind::Nak(Some(retry_delay(delivered)))).await;
                            outcome.retried += 1;
                        }
                    }
                }
                Err(e) => {
                    tracing::info!(subject = %message.subject, %trace_id, error = %e, delivered, "will retry");
                    ack(message, AckKind::Nak(Some(retry_delay(delivered)))).await;
                    outcome.retried += 1;
                }
            }
        }
        let consumer = self.spec.durable.clone();
        metrics::counter!("teams_bridge_worker_processed_total", "consumer" => consumer.clone())
            .increment(outcome.processed as u64);
        metrics::counter!("teams_bridge_worker_retried_total", "consumer" => consumer.clone())
            .increment(outcome.retried as u64);
        metrics::counter!("teams_bridge_worker_dead_lettered_total", "consumer" => consumer.clone()).increment(outcome.dead_lettered as u64);
        if let Some(pending) = messages
            .last()
            .and_then(|m| m.info().ok())
            .map(|i| i.pending)
        {
            metrics::gauge!("teams_bridge_worker_pending", "consumer" => consumer)
                .set(pending as f64);
        }
        Ok(outcome)
    }

    async fn dead_letter(
        &self,
        m: &jetstream::Message,
        reason: &str,
        delivered: u64,
    ) -> Result<(), sqlx::Error> {
        let info = m.info().ok();
        let headers: serde_json::Map<String, serde_json::Value> = m
            .headers
            .iter()
            .flat_map(|h| h.iter())
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.iter()
                        .map(|x| x.as_str().to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                        .into(),
                )
            })
            .collect();
        let event_id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("ce-id"))
            .map(|v| v.as_str().to_string());
        sqlx::query(
            "insert into dead_letters (consumer, stream, stream_seq, subject, event_id, reason, deliveries, headers, raw)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             on conflict (consumer, stream, stream_seq) do nothing",
        )
        .bind(&self.spec.durable)
        .bind(&self.spec.stream)
        .bind(info.map(|i| i.stream_sequence as i64).unwrap_or(0))
        .bind(m.subject.as_str())
        .bind(event_id)
        .bind(reason)
        .bind(delivered as i64)
        .bind(serde_json::Value::Object(headers))
        .bind(m.payload.as_ref())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Runs steps until `shutdown`; the batch in hand is always finished first.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        while !shutdown.is_cancelled() {
            // Not raced against shutdown: a step waits at most ~1 s for messages and is then
            // finished, so nothing is left half-handled.
            match self.run_once(Duration::from_secs(1)).await {
                Ok(_) => {
                    self.heartbeat.beat();
                    backoff.reset();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "worker step failed; backing off");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
            }
        }
        tracing::info!(consumer = %self.spec.durable, "worker stopped");
    }
}

/// Back-off between deliveries of a failing message: 0.5 s, 1 s, 2 s … capped at 30 s.
pub fn retry_delay(delivered: u64) -> Duration {
    let exp = delivered.saturating_sub(1).min(6) as u32;
    Duration::from_millis(500 * (1u64 << exp)).min(Duration::from_secs(30))
}

async fn ack(m: &jetstream::Message, kind: AckKind) {
    if let Err(e) = m.ack_with(kind).await {
        // The server redelivers after ack_wait; handlers are idempotent.
        tracing::warn!(error = %e, "ack failed; the message will be redelivered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_are_capped() {
        assert_eq!(retry_delay(1), Duration::from_millis(500));
        assert_eq!(retry_delay(2), Duration::from_secs(1));
        assert_eq!(retry_delay(3), Duration::from_secs(2));
        assert_eq!(retry_delay(100), Duration::from_secs(30));
    }
}
