//! The skeleton's relay: publishes committed events from memory, a few milliseconds after
//! they arrive, at most 512 at a time (every send first, then every ack together), and
//! deletes their outbox rows in one statement every 50 ms, as teams-bridge's relay does.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use futures::future::join_all;
use sqlx::PgPool;
use teams_bridge::domain::event::Outgoing;
use tokio::sync::mpsc;
use uuid::Uuid;

const ROUND: usize = 512;
const DELETE_EVERY: Duration = Duration::from_millis(50);

/// Runs until the committer goes away.
pub(super) async fn publish_loop(
    js: jetstream::Context,
    outbox: PgPool,
    prefix: String,
    mut events: mpsc::UnboundedReceiver<Vec<Outgoing>>,
    linger: Duration,
) {
    let mut waiting: VecDeque<Outgoing> = VecDeque::new();
    let mut acked: Vec<Uuid> = Vec::new();
    let mut last_delete = Instant::now();
    loop {
        if waiting.is_empty() {
            // Idle: wait for events, but not past a delete that is due.
            let next = match acked.is_empty() {
                true => events.recv().await,
                false => tokio::time::timeout(DELETE_EVERY, events.recv())
                    .await
                    .unwrap_or(Some(Vec::new())),
            };
            let Some(first) = next else { return };
            if !first.is_empty() {
                tokio::time::sleep(linger).await;
            }
            waiting.extend(first);
        }
        while let Ok(more) = events.try_recv() {
            waiting.extend(more);
        }
        let take = waiting.len().min(ROUND);
        let round: Vec<Outgoing> = waiting.drain(..take).collect();
        let (ok, failed) = publish(&js, &prefix, round).await;
        acked.extend(ok);
        if !failed.is_empty() {
            // NATS is away or slow: try again in a moment.
            waiting.extend(failed);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if !acked.is_empty() && (last_delete.elapsed() >= DELETE_EVERY || waiting.is_empty()) {
            let done = sqlx::query("delete from outbox where event_id = any($1)")
                .bind(&acked)
                .execute(&outbox)
                .await;
            if done.is_ok() {
                acked.clear();
                last_delete = Instant::now();
            }
        }
    }
}

/// One round: the ids JetStream acknowledged, and the events it did not.
async fn publish(
    js: &jetstream::Context,
    prefix: &str,
    round: Vec<Outgoing>,
) -> (Vec<Uuid>, Vec<Outgoing>) {
    let mut sent: Vec<Option<PublishAckFuture>> = Vec::with_capacity(round.len());
    for e in &round {
        let subject =
            teams_bridge::domain::event::subject(prefix, &e.webhook, e.activity_type.as_deref());
        let message = PublishMessage::build()
            .message_id(e.event_id.to_string())
            .headers(e.headers())
            .payload(e.raw.clone());
        sent.push(js.send_publish(subject, message).await.ok());
    }
    let acks = join_all(sent.into_iter().map(|a| async move {
        match a {
            Some(ack) => ack.await.is_ok(),
            None => false,
        }
    }))
    .await;
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for (e, acked) in round.into_iter().zip(acks) {
        match acked {
            true => ok.push(e.event_id),
            false => failed.push(e),
        }
    }
    (ok, failed)
}
