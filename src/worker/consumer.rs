//! The consumer step every worker shares: a durable pull consumer, a [`Handler`] over decoded
//! events, and the ack / retry / dead-letter policy around it.
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
//! [`Worker::run`] runs it in [`run_loop`] until shutdown, finishing the batch in hand.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer},
    AckKind,
};
use futures::StreamExt;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::{dead_letter::dead_letter, HandleError, Handler, Heartbeat};
use crate::{
    domain::{event::Event, trace},
    infra::{
        backoff::Backoff,
        run_loop::{run_loop, Step, Steps},
    },
};

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

/// What one step did with the messages it fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delivered {
    /// Handled and acked.
    pub processed: usize,
    /// Nak'ed for a later retry.
    pub retried: usize,
    /// Written to `dead_letters` and acked.
    pub dead_lettered: usize,
}

impl Delivered {
    /// Nothing was fetched.
    pub fn is_idle(&self) -> bool {
        *self == Delivered::default()
    }

    /// Messages fetched, whatever became of them.
    pub fn total(&self) -> usize {
        self.processed + self.retried + self.dead_lettered
    }
}

/// A running consumer with its handler.
pub struct Worker<H> {
    pool: PgPool,
    /// The connection the consumer is reached through; its state decides whether an idle
    /// step is a sign of life (see [`ConsumerTask`]).
    client: async_nats::Client,
    consumer: PullConsumer,
    spec: ConsumerSpec,
    handler: H,
    heartbeat: Heartbeat,
}

/// Why a step failed as a whole: NATS could not be asked for messages.
#[derive(Debug, thiserror::Error)]
#[error("fetching from consumer {consumer}: {source}")]
pub struct FetchError {
    consumer: String,
    #[source]
    source: async_nats::Error,
}

impl<H: Handler> Worker<H> {
    /// Creates (or binds to) the durable consumer.
    pub async fn connect(
        js: &jetstream::Context,
        pool: PgPool,
        spec: ConsumerSpec,
        handler: H,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let stream = js.get_stream(&spec.stream).await;
        let stream = stream.with_context(|| format!("stream {}", spec.stream))?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(&spec.durable, consumer_config(&spec))
            .await
            .with_context(|| format!("consumer {}", spec.durable))?;
        Ok(Self {
            pool,
            client: js.client(),
            consumer,
            spec,
            handler,
            heartbeat: Heartbeat::new(),
        })
    }

    /// Whether the NATS connection is up now.
    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The worker's heartbeat, for its health endpoint.
    pub fn heartbeat(&self) -> Heartbeat {
        self.heartbeat.clone()
    }

    /// One step: fetch up to a batch (waiting at most `wait` for the first message), handle,
    /// then ack, nak or dead-letter each message.
    pub async fn run_once(&self, wait: Duration) -> Result<Delivered, FetchError> {
        let messages = self.fetch(wait).await.map_err(|source| FetchError {
            consumer: self.spec.durable.clone(),
            source,
        })?;
        if messages.is_empty() {
            return Ok(Delivered::default());
        }
        let results = self.handle(&messages).await;
        let mut delivered = Delivered::default();
        for (message, result) in messages.iter().zip(results) {
            self.settle(message, result, &mut delivered).await;
        }
        self.record(&delivered, messages.last());
        Ok(delivered)
    }

    async fn fetch(&self, wait: Duration) -> Result<Vec<jetstream::Message>, async_nats::Error> {
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
                    // A status other than "no messages" or "expired" (a leadership change, a
                    // deleted consumer…): the step ends and the next one asks again, but it
                    // must not pass as an idle consumer in the log.
                    tracing::warn!(consumer = %self.spec.durable, error = %e, "fetch ended by the server");
                    break;
                }
            }
        }
        Ok(messages)
    }

    /// Decodes every message and hands the events to the handler: one result per message.
    async fn handle(&self, messages: &[jetstream::Message]) -> Vec<Result<(), HandleError>> {
        let decoded: Vec<Result<Event, HandleError>> = messages
            .iter()
            .map(|m| {
                Event::decode(m.subject.as_str(), m.headers.as_ref(), m.payload.clone())
                    .map_err(|e| HandleError::Permanent(e.to_string()))
            })
            .collect();
        let events: Vec<Event> = decoded.iter().flatten().cloned().collect();
        let mut handled = self.handler.handle(&events).await.into_iter();
        let too_few = || {
            Err(HandleError::Transient(
                "handler returned too few results".into(),
            ))
        };
        decoded
            .into_iter()
            .map(|d| d.and_then(|_| handled.next().unwrap_or_else(too_few)))
            .collect()
    }

    /// Acks, naks or dead-letters one message after its handling.
    async fn settle(
        &self,
        message: &jetstream::Message,
        result: Result<(), HandleError>,
        delivered: &mut Delivered,
    ) {
        let times = message
            .info()
            .map(|i| i.delivered.max(1) as u64)
            .unwrap_or(1);
        // The receiver's trace id travels in `traceparent`: logging it joins the two sides.
        let trace_id = message.headers.as_ref().and_then(|h| h.get("traceparent"));
        let trace_id = trace_id.map(|v| trace::trace_id(v.as_str()).to_owned());
        let (subject, trace_id) = (&message.subject, trace_id.unwrap_or_default());
        let retry = AckKind::Nak(Some(retry_delay(times)));
        match result {
            Ok(()) => {
                tracing::debug!(%subject, %trace_id, delivered = times, "processed");
                ack(message, AckKind::Ack).await;
                delivered.processed += 1;
            }
            Err(HandleError::Permanent(reason)) if times >= self.spec.max_deliveries => {
                match dead_letter(&self.pool, &self.spec, message, &reason, times).await {
                    Ok(()) => {
                        tracing::warn!(%subject, %trace_id, %reason, delivered = times, "dead-lettered");
                        ack(message, AckKind::Ack).await;
                        delivered.dead_lettered += 1;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot dead-letter yet; will retry");
                        ack(message, retry).await;
                        delivered.retried += 1;
                    }
                }
            }
            Err(e) => {
                tracing::info!(%subject, %trace_id, error = %e, delivered = times, "will retry");
                ack(message, retry).await;
                delivered.retried += 1;
            }
        }
    }

    fn record(&self, d: &Delivered, last: Option<&jetstream::Message>) {
        let consumer = self.spec.durable.clone();
        let count = |name: &'static str, n: usize| {
            metrics::counter!(name, "consumer" => consumer.clone()).increment(n as u64)
        };
        count("teams_bridge_worker_processed_total", d.processed);
        count("teams_bridge_worker_retried_total", d.retried);
        count("teams_bridge_worker_dead_lettered_total", d.dead_lettered);
        if let Some(pending) = last.and_then(|m| m.info().ok()).map(|i| i.pending) {
            metrics::gauge!("teams_bridge_worker_pending", "consumer" => consumer)
                .set(pending as f64);
        }
    }

    /// Runs steps until `shutdown`; the batch in hand is always finished first.
    pub async fn run(&self, shutdown: CancellationToken) {
        let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        run_loop(&mut ConsumerTask(self), &shutdown, backoff).await;
        tracing::info!(consumer = %self.spec.durable, "worker stopped");
    }
}

fn consumer_config(spec: &ConsumerSpec) -> pull::Config {
    pull::Config {
        durable_name: Some(spec.durable.clone()),
        filter_subject: spec.filter_subject.clone(),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        ack_wait: spec.ack_wait,
        // Redelivery is bounded by our own dead-letter policy, not by the server, so
        // transient failures are retried for as long as they last.
        max_deliver: -1,
        max_ack_pending: (spec.batch * 8) as i64,
        ..Default::default()
    }
}

/// The worker as the step loop drives it. A step waits up to ~1 s for messages and is then
/// finished, so nothing is left half-handled at shutdown.
struct ConsumerTask<'a, H>(&'a Worker<H>);

/// After a short batch (the consumer nearly drained), how long to let the next one gather:
/// every batch is one handler call (for the HR audit worker one transaction with its commit),
/// so at an ordinary load 10 ms of latency buy larger batches (measured at 1,200 webhooks/s: the worker's CPU per webhook
/// from ~100 to ~78 µs). 50 ms saved more (73 -> 49 µs at 1,400/s) but, with the relay's
/// longer linger, raised the replies' p99 (see `RELAY_LINGER`).
const BATCH_LINGER: Duration = Duration::from_millis(10);

impl<H: Handler> Steps for ConsumerTask<'_, H> {
    type Error = FetchError;

    fn name(&self) -> &'static str {
        "consumer"
    }

    fn log_failure(&self, e: &FetchError) {
        tracing::warn!(error = %e, "worker step failed; backing off");
    }

    async fn step(&mut self) -> Result<Step, FetchError> {
        let delivered = self.0.run_once(Duration::from_secs(1)).await?;
        // While the client is disconnected a fetch cannot reach the server: it is queued,
        // times out on the client's side and looks like an idle consumer. Only a step taken
        // on a live connection counts as life, so that a worker whose connection stays down
        // (which the client should repair by itself within seconds) turns `/healthz` 503 for
        // its supervisor instead of looking idle for ever.
        match self.0.connected() {
            true => self.0.heartbeat.beat(),
            false => tracing::warn!(
                consumer = %self.0.spec.durable,
                last_live_step_seconds_ago = self.0.heartbeat.age().as_secs(),
                "NATS connection down; the client is reconnecting"
            ),
        }
        if delivered.is_idle() {
            return Ok(Step::Idle);
        }
        if delivered.total() < self.0.spec.batch / 2 {
            tokio::time::sleep(BATCH_LINGER).await;
        }
        Ok(Step::Processed(delivered.processed))
    }
}

/// Back-off between deliveries of a failing message: 0.5 s, 1 s, 2 s … capped at 30 s.
pub(crate) fn retry_delay(delivered: u64) -> Duration {
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
