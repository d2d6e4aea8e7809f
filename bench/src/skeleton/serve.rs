//! The skeleton's receiver: verify, group-commit, answer, publish.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{header::AUTHORIZATION, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use chrono::Utc;
use sqlx::PgPool;
use teams_bridge::{
    config::Config,
    domain::{activity::Activity, event::Outgoing, signature::KeyRing},
};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// A load is steady when the last commit began less than this long ago (as in teams-bridge).
const STEADY: Duration = Duration::from_millis(5);
const BATCH_MAX: usize = 512;

struct Job {
    event_id: Uuid,
    webhook: Arc<str>,
    activity: Activity,
    raw: Bytes,
    reply: oneshot::Sender<Option<Uuid>>,
}

#[derive(Clone)]
struct AppState {
    keys: Arc<HashMap<String, (Arc<str>, KeyRing)>>,
    queue: mpsc::Sender<Job>,
}

/// Runs the receiver until the process is stopped.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let pool = super::database(&config).await?;
    let client = teams_bridge::infra::nats::connect(&config).await?;
    let js = teams_bridge::infra::nats::context(client);
    teams_bridge::infra::nats::ensure_stream(&js, &config).await?;
    let keys = config
        .webhooks
        .iter()
        .map(|w| (w.name.clone(), (Arc::from(w.name.as_str()), w.keys.clone())))
        .collect();
    let (queue, jobs) = mpsc::channel(BATCH_MAX * 4);
    let (publish, events) = mpsc::unbounded_channel();
    // By default teams-bridge's lingers, so that both are measured at the same latency.
    let commit_linger = super::linger("SKELETON_COMMIT_LINGER_MS", 1);
    let publish_linger = super::linger("SKELETON_PUBLISH_LINGER_MS", 3);
    tokio::spawn(commit_loop(pool, jobs, publish, commit_linger));
    let prefix = config.subject_prefix.clone();
    // teams-bridge's relay pool: its deletes need not wait for their WAL flush.
    let outbox = teams_bridge::infra::db::relay_pool(&config)?;
    tokio::spawn(super::publish::publish_loop(
        js,
        outbox,
        prefix,
        events,
        publish_linger,
    ));
    let state = AppState {
        keys: Arc::new(keys),
        queue,
    };
    let app = Router::new()
        .route("/webhooks/{name}", post(receive))
        .route("/readyz", get(|| async { "ready" }))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("binding {}", config.listen_addr))?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn receive(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let Some((webhook, keys)) = state.keys.get(&name) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let auth = headers.get(AUTHORIZATION).map(|v| v.as_bytes());
    if keys.verify(auth, &raw).is_err() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(activity) = Activity::parse(&raw) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if activity.id.is_none() {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let (reply, answer) = oneshot::channel();
    let job = Job {
        event_id: Uuid::now_v7(),
        webhook: webhook.clone(),
        activity,
        raw,
        reply,
    };
    if state.queue.send(job).await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    match answer.await {
        Ok(Some(id)) => Json(serde_json::json!({
            "type": "message",
            "text": format!("Stored — receipt {id}"),
        }))
        .into_response(),
        _ => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// The activities and their outbox rows in one statement: what a crash between the commit
/// and the publish leaves is in the outbox (a design without it could lose events).
const INSERT: &str = "with inserted as (
        insert into activities (event_id, webhook, activity_id, raw)
        select * from unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[])
        on conflict (webhook, activity_id) do nothing
        returning event_id)
    insert into outbox (event_id) select event_id from inserted returning event_id";

const ORIGINALS: &str = "select k.i, a.event_id
    from unnest($1::text[], $2::text[]) with ordinality as k(webhook, activity_id, i)
    join activities a using (webhook, activity_id)";

/// One commit at a time; what arrives meanwhile goes out in the next one, and under a
/// steady load a commit that would go out alone waits `linger` (1 ms by default) for company.
async fn commit_loop(
    pool: PgPool,
    mut jobs: mpsc::Receiver<Job>,
    publish: mpsc::UnboundedSender<Vec<Outgoing>>,
    linger: Duration,
) {
    let mut last: Option<Instant> = None;
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        take_ready(&mut jobs, &mut batch);
        if batch.len() == 1 && last.is_some_and(|t| t.elapsed() < STEADY) {
            // As teams-bridge: gather until the linger ends or a few have come.
            let until = tokio::time::Instant::now() + linger;
            while batch.len() < BATCH_MAX / 8 {
                match tokio::time::timeout_at(until, jobs.recv()).await {
                    Ok(Some(job)) => {
                        batch.push(job);
                        take_ready(&mut jobs, &mut batch);
                    }
                    _ => break,
                }
            }
        }
        last = Some(Instant::now());
        match commit(&pool, &batch).await {
            Ok(ids) => {
                let mut new = Vec::with_capacity(batch.len());
                for (job, id) in batch.into_iter().zip(ids) {
                    if id == job.event_id {
                        new.push(event(&job));
                    }
                    let _ = job.reply.send(Some(id));
                }
                let _ = publish.send(new);
            }
            Err(e) => {
                eprintln!("skeleton: commit failed: {e}");
                for job in batch {
                    let _ = job.reply.send(None);
                }
            }
        }
    }
}

fn take_ready(jobs: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
    while batch.len() < BATCH_MAX {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// The batch in one autocommit statement; for each job, the id its activity is stored
/// under (its own when new, the original's when Teams delivered it before).
async fn commit(pool: &PgPool, batch: &[Job]) -> Result<Vec<Uuid>, sqlx::Error> {
    let ids: Vec<Uuid> = batch.iter().map(|j| j.event_id).collect();
    let hooks: Vec<&str> = batch.iter().map(|j| &*j.webhook).collect();
    let activity_ids: Vec<&str> = batch
        .iter()
        .map(|j| j.activity.id.as_deref().unwrap_or_default())
        .collect();
    let raws: Vec<&[u8]> = batch.iter().map(|j| &j.raw[..]).collect();
    let inserted: Vec<Uuid> = sqlx::query_scalar(INSERT)
        .bind(&ids)
        .bind(&hooks)
        .bind(&activity_ids)
        .bind(&raws)
        .fetch_all(pool)
        .await?;
    if inserted.len() == batch.len() {
        return Ok(ids);
    }
    // Repeats (rare): their originals' ids.
    let originals: HashMap<i64, Uuid> = sqlx::query_as(ORIGINALS)
        .bind(&hooks)
        .bind(&activity_ids)
        .fetch_all(pool)
        .await?
        .into_iter()
        .collect();
    let inserted: std::collections::HashSet<Uuid> = inserted.into_iter().collect();
    Ok((1..)
        .zip(batch)
        .map(|(i, j)| match inserted.contains(&j.event_id) {
            true => j.event_id,
            false => originals.get(&i).copied().unwrap_or(j.event_id),
        })
        .collect())
}

fn event(job: &Job) -> Outgoing {
    Outgoing {
        event_id: job.event_id,
        webhook: job.webhook.to_string(),
        activity_type: job.activity.kind.clone(),
        conversation_id: job.activity.conversation_id().map(str::to_string),
        time: job.activity.timestamp().unwrap_or_else(Utc::now),
        traceparent: None,
        raw: job.raw.clone(),
    }
}
