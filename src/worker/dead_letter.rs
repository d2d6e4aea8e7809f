//! `dead_letters`: where a message that can never be handled ends, with the reason, its
//! headers and its exact bytes, so nothing is lost silently.

use async_nats::jetstream;
use sqlx::PgPool;

use super::ConsumerSpec;

/// Writes `m` to `dead_letters` (once per consumer and stream sequence).
pub(crate) async fn dead_letter(
    pool: &PgPool,
    spec: &ConsumerSpec,
    m: &jetstream::Message,
    reason: &str,
    delivered: u64,
) -> Result<(), sqlx::Error> {
    let info = m.info().ok();
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
    .bind(&spec.durable)
    .bind(&spec.stream)
    .bind(info.map(|i| i.stream_sequence as i64).unwrap_or(0))
    .bind(m.subject.as_str())
    .bind(event_id)
    .bind(reason)
    .bind(delivered as i64)
    .bind(headers_json(m))
    .bind(m.payload.as_ref())
    .execute(pool)
    .await?;
    Ok(())
}

/// The message's headers as a JSON object (repeated values joined with `,`).
fn headers_json(m: &jetstream::Message) -> serde_json::Value {
    let join = |v: &[async_nats::HeaderValue]| {
        let values: Vec<&str> = v.iter().map(|x| x.as_str()).collect();
        serde_json::Value::from(values.join(","))
    };
    let headers = m.headers.iter().flat_map(|h| h.iter());
    serde_json::Value::Object(headers.map(|(k, v)| (k.to_string(), join(v))).collect())
}
