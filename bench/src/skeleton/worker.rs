//! The skeleton's audit worker: fetch a batch, derive, insert in one statement, ack.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, PullConsumer},
    AckKind,
};
use chrono::Utc;
use futures::StreamExt;
use sqlx::PgPool;
use teams_bridge::{
    audit::AuditEntry,
    config::Config,
    domain::{
        audit_leaf::sha256,
        event::{message_subjects, Event},
    },
};

/// The same as teams-bridge's worker: batches of up to 256, and after a short one (by
/// default) 10 ms for the next to gather.
const BATCH: usize = 256;

const INSERT: &str = "insert into audit_log
        (event_id, webhook, operation, record_id, actor, activity_at, raw_sha256)
    select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::timestamptz[], $7::bytea[])
    on conflict (event_id) do nothing";

/// Runs the worker until the process is stopped.
pub async fn worker(config: Config) -> anyhow::Result<()> {
    let batch_linger = super::linger("SKELETON_WORKER_LINGER_MS", 10);
    let pool = super::database(&config).await?;
    let client = teams_bridge::infra::nats::connect(&config).await?;
    let js = teams_bridge::infra::nats::context(client);
    // `serve` creates the stream; a worker started with it waits for it.
    let mut tries = 0;
    let stream = loop {
        match js.get_stream(&config.stream_name).await {
            Ok(stream) => break stream,
            Err(_) if tries < 100 => tries += 1,
            Err(e) => return Err(e).with_context(|| format!("stream {}", config.stream_name)),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let consumer: PullConsumer = stream
        .get_or_create_consumer(
            &config.hr_audit_consumer,
            pull::Config {
                durable_name: Some(config.hr_audit_consumer.clone()),
                filter_subject: message_subjects(&config.subject_prefix),
                ack_policy: AckPolicy::Explicit,
                max_ack_pending: (BATCH * 8) as i64,
                ..Default::default()
            },
        )
        .await
        .context("consumer")?;
    loop {
        let messages = match fetch(&consumer).await {
            Ok(m) => m,
            Err(e) => {
                eprintln!("skeleton worker: fetch: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        if let Err(e) = write(&pool, &messages).await {
            // Unacked: redelivered after the ack wait.
            eprintln!("skeleton worker: insert: {e}");
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        for m in &messages {
            let _ = m.ack_with(AckKind::Ack).await;
        }
        if messages.len() < BATCH / 2 {
            tokio::time::sleep(batch_linger).await;
        }
    }
}

async fn fetch(consumer: &PullConsumer) -> Result<Vec<jetstream::Message>, async_nats::Error> {
    let mut batch = consumer
        .fetch()
        .max_messages(BATCH)
        .expires(Duration::from_secs(1))
        .messages()
        .await?;
    let mut messages = Vec::with_capacity(BATCH);
    while let Some(Ok(m)) = batch.next().await {
        messages.push(m);
    }
    Ok(messages)
}

/// Derives the entries of a batch and writes them in one autocommit statement. A message
/// that is no audit entry makes no row (and is acked with the rest).
async fn write(pool: &PgPool, messages: &[jetstream::Message]) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    let entries: Vec<(AuditEntry, [u8; 32])> = messages
        .iter()
        .filter_map(|m| {
            let e = Event::decode(m.subject.as_str(), m.headers.as_ref(), m.payload.clone());
            let e = e.ok()?;
            let entry = AuditEntry::derive(e.event_id, &e.webhook, &e.body, e.time, now).ok()?;
            Some((entry, sha256(&e.body)))
        })
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    let col =
        |f: fn(&AuditEntry) -> Option<&str>| entries.iter().map(|(e, _)| f(e)).collect::<Vec<_>>();
    sqlx::query(INSERT)
        .bind(entries.iter().map(|(e, _)| e.event_id).collect::<Vec<_>>())
        .bind(col(|e| Some(e.webhook.as_str())))
        .bind(col(|e| Some(e.operation.as_str())))
        .bind(col(|e| e.record_id.as_deref()))
        .bind(col(|e| e.actor_name.as_deref()))
        .bind(
            entries
                .iter()
                .map(|(e, _)| e.activity_at)
                .collect::<Vec<_>>(),
        )
        .bind(entries.iter().map(|(_, h)| &h[..]).collect::<Vec<_>>())
        .execute(pool)
        .await?;
    Ok(())
}
