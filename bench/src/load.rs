//! The load loops: open loop at a fixed offered rate and closed loop at a fixed concurrency,
//! over a fixed pool of keep-alive connections.
//!
//! Open loop: request `k` is *scheduled* at `start + k / rate`. Whichever connection is free
//! takes the next request, waits for its scheduled time if it is early, and sends it; the
//! latency is measured from the scheduled time, so a stall of the service (or a pool that is
//! too small) shows up as latency of every request it delayed instead of silently lowering
//! the offered rate (no coordinated omission). Requests that could not even be sent within
//! `grace` after the end are counted as `unsent`.
//!
//! Closed loop: `concurrency` connections each send the next request as soon as the previous
//! answer arrived; latency is measured from the send.

use anyhow::Context as _;
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::time::Instant;
use uuid::Uuid;

use super::{
    client::{self, Conn},
    payload::Generator,
};

/// How requests are offered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// A fixed offered rate (requests per second), whatever the answers take.
    Open {
        /// Requests per second.
        rate: f64,
    },
    /// A fixed number of requests outstanding at all times.
    Closed {
        /// Outstanding requests (one per connection).
        concurrency: usize,
    },
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Where the webhook is served.
    pub addr: SocketAddr,
    /// URL path, `/webhooks/{name}`.
    pub path: String,
    /// Open or closed loop.
    pub mode: Mode,
    /// Connections in the pool (closed loop: the concurrency).
    pub connections: usize,
    /// How long requests are scheduled (open) or sent (closed).
    pub duration: Duration,
    /// Per-request timeout; a request that takes longer counts as an error.
    pub timeout: Duration,
    /// Open loop: how long after the end a late request may still be sent.
    pub grace: Duration,
}

/// A request answered 200: the activity id sent and the receipt (event id) in the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Teams' activity id of the request.
    pub activity_id: String,
    /// The receipt (`… — receipt <uuid>`), `None` when the reply had none.
    pub event_id: Option<Uuid>,
}

/// One answered request: latency from the scheduled time (open) or send (closed), the
/// service time (send to answer) in microseconds, and whether it was a 200.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Scheduled time, in milliseconds from the start of the run.
    pub at_ms: u32,
    /// From scheduled time to answer.
    pub latency_us: u32,
    /// From send to answer.
    pub service_us: u32,
    /// Answered 200.
    pub ok: bool,
}

/// Everything a run observed.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Requests scheduled (open loop) or started (closed loop).
    pub scheduled: u64,
    /// Requests written to a connection.
    pub sent: u64,
    /// Open loop: requests never sent because the client fell more than `grace` behind.
    pub unsent: u64,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// 503 responses without `Retry-After`.
    pub missing_retry_after: u64,
    /// Requests that failed without a response (connection error or timeout).
    pub errors: u64,
    /// The first few error messages.
    pub error_samples: Vec<String>,
    /// Connections opened (the pool size when every connection was reused throughout).
    pub connections_opened: u64,
    /// From the first scheduled request to the last answer.
    pub elapsed: Duration,
    /// One per answered request.
    pub samples: Vec<Sample>,
    /// The 200s.
    pub accepted: Vec<Accepted>,
}

impl LoadResult {
    /// Responses with this status.
    pub fn status(&self, code: u16) -> u64 {
        self.statuses.get(&code).copied().unwrap_or(0)
    }
    /// Responses of any status.
    pub fn answered(&self) -> u64 {
        self.statuses.values().sum()
    }
}

/// Runs one load against `spec.addr`, building request `n` with `generator`.
pub async fn run(spec: &LoadSpec, generator: Arc<Generator>) -> anyhow::Result<LoadResult> {
    let connections = match spec.mode {
        Mode::Closed { concurrency } => concurrency,
        Mode::Open { .. } => spec.connections,
    }
    .max(1);
    if let Mode::Open { rate } = spec.mode {
        anyhow::ensure!(rate > 0.0 && rate.is_finite(), "--rate must be positive");
    }
    // Open the whole pool before the clock starts.
    let mut pool = Vec::with_capacity(connections);
    for chunk in (0..connections).collect::<Vec<_>>().chunks(256) {
        let opened =
            futures::future::join_all(chunk.iter().map(|_| Conn::connect(spec.addr))).await;
        for c in opened {
            pool.push(c.with_context(|| format!("connecting to {}", spec.addr))?);
        }
    }
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        opened: AtomicU64::new(connections as u64),
        spec: spec.clone(),
        host: spec.addr.to_string(),
        generator,
        start: Instant::now() + Duration::from_millis(20),
    });
    let tasks: Vec<_> = pool
        .into_iter()
        .map(|conn| tokio::spawn(connection_loop(shared.clone(), conn)))
        .collect();
    let mut result = LoadResult::default();
    let mut last_answer = shared.start;
    for t in tasks {
        let part = t.await.context("load task failed")?;
        result.sent += part.sent;
        result.errors += part.errors;
        result.missing_retry_after += part.missing_retry_after;
        for (k, v) in part.statuses {
            *result.statuses.entry(k).or_default() += v;
        }
        result.samples.extend(part.samples);
        result.accepted.extend(part.accepted);
        if result.error_samples.len() < 5 {
            result.error_samples.extend(part.error_samples);
        }
        if let Some(t) = part.last_answer {
            last_answer = last_answer.max(t);
        }
    }
    result.error_samples.truncate(5);
    result.elapsed = last_answer.saturating_duration_since(shared.start);
    result.connections_opened = shared.opened.load(Ordering::Relaxed);
    result.scheduled = match spec.mode {
        Mode::Open { rate } => (spec.duration.as_secs_f64() * rate).ceil() as u64,
        Mode::Closed { .. } => result.sent,
    };
    result.unsent = result.scheduled.saturating_sub(result.sent);
    Ok(result)
}

struct Shared {
    next: AtomicU64,
    opened: AtomicU64,
    spec: LoadSpec,
    host: String,
    generator: Arc<Generator>,
    start: Instant,
}

#[derive(Default)]
struct Part {
    sent: u64,
    errors: u64,
    missing_retry_after: u64,
    statuses: BTreeMap<u16, u64>,
    samples: Vec<Sample>,
    accepted: Vec<Accepted>,
    error_samples: Vec<String>,
    last_answer: Option<Instant>,
}

async fn connection_loop(shared: Arc<Shared>, conn: Conn) -> Part {
    let spec = &shared.spec;
    let end = shared.start + spec.duration;
    let mut conn = Some(conn);
    let mut part = Part::default();
    loop {
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        let scheduled = match spec.mode {
            Mode::Open { rate } => shared.start + Duration::from_secs_f64(n as f64 / rate),
            Mode::Closed { .. } => Instant::now().max(shared.start),
        };
        if scheduled >= end || Instant::now() > end + spec.grace {
            break;
        }
        // Built (and signed) before waiting for the scheduled time: the client's own cost
        // stays out of the latency as far as possible.
        let signed = shared.generator.make(n);
        let bytes = client::request(
            &shared.host,
            &spec.path,
            &signed.authorization,
            &signed.body,
        );
        tokio::time::sleep_until(scheduled).await;
        if !conn.as_ref().is_some_and(Conn::is_open) {
            conn = match Conn::connect(spec.addr).await {
                Ok(c) => {
                    shared.opened.fetch_add(1, Ordering::Relaxed);
                    Some(c)
                }
                Err(e) => {
                    part.fail(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
        }
        let c = conn.as_mut().expect("connected above");
        let sent_at = Instant::now();
        part.sent += 1;
        let answer = tokio::time::timeout(spec.timeout, c.send(&bytes)).await;
        let done = Instant::now();
        let response = match answer {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                part.fail(format!("request: {e}"));
                conn = None;
                continue;
            }
            Err(_) => {
                part.fail(format!("no answer within {:?}", spec.timeout));
                conn = None;
                continue;
            }
        };
        part.last_answer = Some(done);
        *part.statuses.entry(response.status).or_default() += 1;
        if response.status == 503 && !response.retry_after {
            part.missing_retry_after += 1;
        }
        let ok = response.status == 200;
        part.samples.push(Sample {
            at_ms: (scheduled - shared.start).as_millis().min(u32::MAX as u128) as u32,
            latency_us: micros(done - scheduled),
            service_us: micros(done - sent_at),
            ok,
        });
        if ok {
            part.accepted.push(Accepted {
                activity_id: signed.activity_id,
                event_id: receipt(&response.body),
            });
        }
    }
    part
}

impl Part {
    fn fail(&mut self, message: String) {
        self.errors += 1;
        if self.error_samples.len() < 5 {
            self.error_samples.push(message);
        }
    }
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// The receipt in a reply: `{"type":"message","text":"… — receipt <uuid>"}`.
pub fn receipt(body: &[u8]) -> Option<Uuid> {
    let reply: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = reply.get("text")?.as_str()?;
    let (_, id) = text.rsplit_once("receipt ")?;
    id.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_are_read_from_replies() {
        let id = Uuid::now_v7();
        let body = serde_json::json!({"type": "message", "text": format!("Recorded UPDATE of employee E-1 (title) — receipt {id}")});
        assert_eq!(receipt(body.to_string().as_bytes()), Some(id));
        assert_eq!(receipt(br#"{"type":"message","text":"hello"}"#), None);
        assert_eq!(receipt(b"not json"), None);
    }
}
