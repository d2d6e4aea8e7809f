//! Health and readiness. `/healthz`: the process serves HTTP. `/readyz`: this replica can
//! verify and commit now (Postgres answers); 503 otherwise. A NATS outage is what the outbox
//! absorbs, so it does not make a replica unready: it shows in `warnings`, with an old outbox
//! and rows in `outbox_dead`. The checks run in the background every second and `/readyz`
//! answers from their latest result, so a flood of probes costs nothing. Workers have their
//! own `/healthz`, from their heartbeat.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::jetstream;
use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use futures::future::BoxFuture;
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::{relay, worker::Heartbeat};

/// What the checks found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Readiness {
    /// Why this replica cannot take webhooks now; empty when ready.
    pub problems: Vec<String>,
    /// What an operator should look at, though webhooks are taken (NATS away, an old
    /// outbox, dead outbox rows).
    pub warnings: Vec<String>,
    /// Unpublished outbox rows (when Postgres answered).
    pub outbox_backlog: Option<i64>,
    /// Age of the oldest, when there is one.
    pub outbox_oldest_seconds: Option<f64>,
}

/// Checks readiness: the real dependencies, or a stand-in where a test has none.
pub trait Probe: Send + Sync + 'static {
    /// Looks at every dependency once.
    fn check(&self) -> BoxFuture<'_, Readiness>;
}

/// How often the checks run; `/readyz` fails when their latest result is three times older.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// How long one warning's check may take.
const CHECK_WITHIN: Duration = Duration::from_millis(500);

/// The latest result of the checks, shared by every request.
#[derive(Clone)]
pub struct Health(watch::Receiver<(Instant, Readiness)>);

impl Health {
    /// Runs `probe` now and then every second, for as long as this (or a clone) is in use.
    pub async fn spawn(probe: Arc<dyn Probe>) -> Self {
        let (tx, rx) = watch::channel((Instant::now(), probe.check().await));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(PROBE_EVERY) => {}
                }
                let _ = tx.send((Instant::now(), probe.check().await));
            }
        });
        Self(rx)
    }

    /// The latest result; a problem of its own when the checks have stalled.
    pub fn latest(&self) -> Readiness {
        let (at, mut r) = self.0.borrow().clone();
        if at.elapsed() > 3 * PROBE_EVERY {
            r.problems.push(format!(
                "checks stalled: last result {:.0?} old",
                at.elapsed()
            ));
        }
        r
    }
}

/// The dependencies of `serve`.
pub struct Dependencies {
    /// Postgres (and the outbox in it).
    pub pool: PgPool,
    /// The NATS connection.
    pub nats: async_nats::Client,
    /// JetStream.
    pub js: jetstream::Context,
    /// The stream that must exist.
    pub stream_name: String,
    /// Oldest outbox row that is still fine.
    pub max_outbox_age: Duration,
}

impl Probe for Dependencies {
    fn check(&self) -> BoxFuture<'_, Readiness> {
        Box::pin(async move {
            let mut r = Readiness::default();
            // Ready means this: a statement goes through the pool the commits use, in time.
            let ping = sqlx::query("select 1").execute(&self.pool);
            match tokio::time::timeout(Duration::from_secs(1), ping).await {
                Ok(Ok(_)) => self.outbox(&mut r).await,
                Ok(Err(e)) => r
                    .problems
                    .push(format!("postgres: {}", short(&e.to_string()))),
                Err(_) => r.problems.push("postgres: no answer within 1 s".into()),
            }
            let nats = self.nats.connection_state();
            // Bounded: a stalled JetStream must not stall the checks (and with them
            // readiness), since NATS trouble is only a warning.
            let stream = self.js.get_stream_no_info(&self.stream_name);
            if nats != async_nats::connection::State::Connected {
                let waits = format!("nats: {nats}; publishing waits in the outbox");
                r.warnings.push(waits);
            } else {
                let name = &self.stream_name;
                match tokio::time::timeout(CHECK_WITHIN, stream).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => r.warnings.push(format!("stream {name}: {e}")),
                    Err(_) => r.warnings.push(format!("stream {name}: no answer")),
                }
            }
            r
        })
    }
}

impl Dependencies {
    /// The backlog and the dead rows, as warnings.
    async fn outbox(&self, r: &mut Readiness) {
        let backlog = tokio::time::timeout(CHECK_WITHIN, relay::backlog(&self.pool)).await;
        if let Ok(Ok((n, age))) = backlog {
            if age > self.max_outbox_age.as_secs_f64() {
                r.warnings.push(format!(
                    "outbox: oldest unpublished entry is {age:.0} s old"
                ));
            }
            (r.outbox_backlog, r.outbox_oldest_seconds) = (Some(n), (n > 0).then_some(age));
        }
        let dead = sqlx::query_scalar::<_, i64>("select count(*) from outbox_dead");
        let dead = tokio::time::timeout(CHECK_WITHIN, dead.fetch_one(&self.pool)).await;
        if let Ok(Ok(n @ 1..)) = dead {
            r.warnings.push(format!(
                "outbox_dead: {n} rows JetStream refused (see `teams-bridge replay --dead`)"
            ));
        }
    }
}

fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

/// The process is alive and serving HTTP.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready to take webhooks, or 503 with the problems.
pub async fn readyz(State(health): State<Health>) -> Response {
    let r = health.latest();
    let ready = r.problems.is_empty();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "problems": r.problems,
        "warnings": r.warnings,
        "outbox_backlog": r.outbox_backlog,
        "outbox_oldest_seconds": r.outbox_oldest_seconds,
    });
    let status = match ready {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(body)).into_response()
}

/// The worker's small HTTP surface: health (from its heartbeat) and its metrics.
pub fn worker_router(heartbeat: Heartbeat) -> Router {
    let handle = crate::infra::telemetry::metrics();
    let health = move || async move {
        let age = heartbeat.age().as_secs_f64();
        // A step completes at least every ~1 s while NATS answers, and only steps taken on a
        // live connection count: 30 s without one is stuck or cut off.
        let (status, word) = match age < 30.0 {
            true => (StatusCode::OK, "ok"),
            false => (StatusCode::SERVICE_UNAVAILABLE, "stalled"),
        };
        let body = json!({ "status": word, "last_step_seconds_ago": age });
        (status, Json(body))
    };
    let metrics = move || async move { super::metrics::render(&handle) };
    Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
}
