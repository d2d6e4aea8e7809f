//! Erasure in the JetStream stream. The stream is transport, so nothing in it is looked up by
//! content: its messages are scanned by headers only (an ordered ephemeral consumer, no
//! payloads), each `ce-id` (our event id) is looked up in Postgres, and every message whose
//! activity is a tombstone (erased or expired) is deleted with the server's secure erase
//! (`STREAM.MSG.DELETE` without `no_erase`: the bytes are overwritten on disk). Since the
//! tombstones are the list, a run that failed half-way is finished by the next one.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull::OrderedConfig, stream::Stream};
use futures::StreamExt;
use sqlx::PgPool;
use uuid::Uuid;

/// Messages looked up in Postgres at once.
const CHUNK: usize = 500;

/// What the scan did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Scanned {
    /// Messages read (headers only).
    pub messages: u64,
    /// Messages deleted.
    pub deleted: u64,
}

/// Deletes every message of `stream` whose activity is a tombstone in Postgres.
pub async fn erase_tombstoned(
    js: &jetstream::Context,
    stream: &str,
    pool: &PgPool,
) -> anyhow::Result<Scanned> {
    use anyhow::Context as _;
    let mut stream = js.get_stream(stream).await.context("the stream")?;
    let state = stream
        .info()
        .await
        .context("the stream's state")?
        .state
        .clone();
    let (last, mut seen) = (state.last_sequence, 0);
    let mut scanned = Scanned::default();
    if state.messages == 0 {
        return Ok(scanned);
    }
    let consumer = stream
        .create_consumer(OrderedConfig {
            headers_only: true,
            ..Default::default()
        })
        .await
        .context("a consumer to scan the stream")?;
    let mut messages = consumer.messages().await.context("scanning the stream")?;
    let mut chunk: Vec<(u64, Uuid)> = Vec::with_capacity(CHUNK);
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), messages.next()).await;
        let Ok(Some(message)) = next else {
            ensure_complete(&mut stream, seen, last).await?;
            break;
        };
        let message = message.context("reading the stream")?;
        let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        (seen, scanned.messages) = (seq, scanned.messages + 1);
        let id = message.headers.as_ref().and_then(|h| h.get("ce-id"));
        if let Some(id) = id.and_then(|v| Uuid::parse_str(v.as_str()).ok()) {
            chunk.push((seq, id));
        }
        if chunk.len() >= CHUNK || pending == 0 || seq >= last {
            scanned.deleted += delete_tombstoned(&stream, pool, &mut chunk).await?;
        }
        if pending == 0 || seq >= last {
            break;
        }
    }
    scanned.deleted += delete_tombstoned(&stream, pool, &mut chunk).await?;
    Ok(scanned)
}

/// The scan ended before `last`: fine only when what it did not read has aged out since.
async fn ensure_complete(stream: &mut Stream, seen: u64, last: u64) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let first = stream
        .info()
        .await
        .context("the stream's state")?
        .state
        .first_sequence;
    anyhow::ensure!(
        first > last || seen >= last,
        "the scan stopped at message {seen} of {last}; run it again"
    );
    Ok(())
}

async fn delete_tombstoned(
    stream: &Stream,
    pool: &PgPool,
    chunk: &mut Vec<(u64, Uuid)>,
) -> anyhow::Result<u64> {
    if chunk.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = chunk.iter().map(|(_, id)| *id).collect();
    let gone: Vec<Uuid> = sqlx::query_scalar(
        "select event_id from activities where event_id = any($1) and redacted is not null",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut deleted = 0;
    for (seq, _) in chunk.iter().filter(|(_, id)| gone.contains(id)) {
        match stream.delete_message(*seq).await {
            Ok(_) => deleted += 1,
            // Already gone (the age limit, another run): nothing left to erase.
            Err(e) if e.to_string().contains("no message found") => {}
            Err(e) => return Err(anyhow::anyhow!("deleting stream message {seq}: {e}")),
        }
    }
    chunk.clear();
    Ok(deleted)
}
