//! Storing activities: the group committer.
//!
//! Requests hand their activity to a small set of committer tasks over a channel. Each task
//! takes whatever is queued (up to `batch_max`) and writes it in ONE statement: the activity
//! rows and their outbox rows are inserted together, so either both exist or neither does.
//! Commits run one at a time while the load is light (what arrives during a commit goes out
//! in the next), and side by side (up to `COMMIT_TASKS`) only once a backlog builds up. A
//! request is answered only after the statement holding its row has committed.
//!
//! Teams may deliver one message twice: `(webhook, activity_id)` is unique, the second insert
//! does nothing, and the second request gets the first one's event id as its receipt.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex, Notify};
use uuid::Uuid;

use crate::{activity::Activity, event::Outgoing, outbox::Handoff};

/// One verified activity on its way into Postgres.
#[derive(Debug)]
pub struct NewActivity {
    /// Our id for it (UUIDv7), unless Teams delivered it before.
    pub event_id: Uuid,
    /// Webhook name.
    pub webhook: Arc<str>,
    /// The parsed, indexed fields.
    pub activity: Activity,
    /// The exact signed bytes (valid UTF-8 JSON, checked by [`Activity::parse`]).
    pub raw: Bytes,
    /// W3C trace context to carry onto the stream.
    pub traceparent: Option<String>,
}

impl NewActivity {
    /// What the relay publishes for it, once committed at `received_at`.
    fn into_event(self, received_at: DateTime<Utc>) -> Outgoing {
        Outgoing {
            event_id: self.event_id,
            webhook: self.webhook.to_string(),
            time: self.activity.timestamp().unwrap_or(received_at),
            conversation_id: self.activity.conversation_id().map(str::to_string),
            activity_type: self.activity.kind,
            traceparent: self.traceparent,
            raw: self.raw,
        }
    }
}

/// What one insert did.
#[derive(Debug)]
pub struct Inserted {
    /// For each input in order: new or a repeat.
    pub outcomes: Vec<Stored>,
    /// When the new rows were stored (`received_at`, the same for all rows of a statement);
    /// `None` when every input was a repeat.
    pub received_at: Option<DateTime<Utc>>,
}

/// The outcome of storing one activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// First delivery: stored and queued for publishing under this id.
    New(Uuid),
    /// Teams delivered this activity before; this is the id it was stored under.
    Duplicate(Uuid),
}

impl Stored {
    /// The receipt: the stored event's id.
    pub fn event_id(self) -> Uuid {
        match self {
            Stored::New(id) | Stored::Duplicate(id) => id,
        }
    }
}

/// Why an activity was not stored. Either way, nothing of it was written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Postgres is unreachable, slow or failing: a later attempt may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Postgres refused this row itself (a constraint or a value it cannot hold).
    #[error("database refused the activity: {0}")]
    Rejected(String),
}

struct Job {
    activity: NewActivity,
    reply: oneshot::Sender<Result<Stored, StoreError>>,
}

/// Handle to the committer tasks. Cheap to clone; the tasks stop when every handle is dropped.
#[derive(Clone)]
pub struct Committer {
    queue: mpsc::Sender<Job>,
}

/// What the committer tasks share.
struct Shared {
    queue: Mutex<mpsc::Receiver<Job>>,
    /// Commits in progress.
    in_flight: AtomicUsize,
    /// Signalled whenever a commit ends.
    committed: Notify,
    batch_max: usize,
    /// Waiting requests that justify a commit beside one already in progress.
    overlap_at: usize,
}

impl Committer {
    /// Starts up to `tasks` concurrent committers writing through `pool`; each commit hands
    /// its new events to `handoff`, so the relay of this process publishes them at once.
    pub fn spawn(pool: PgPool, tasks: usize, batch_max: usize, handoff: Arc<Handoff>) -> Self {
        let batch_max = batch_max.max(1);
        let (queue, rx) = mpsc::channel::<Job>(batch_max * tasks.max(1) * 2);
        let shared = Arc::new(Shared {
            queue: Mutex::new(rx),
            in_flight: AtomicUsize::new(0),
            committed: Notify::new(),
            batch_max,
            overlap_at: (batch_max / 8).max(1),
        });
        for _ in 0..tasks.max(1) {
            tokio::spawn(run(pool.clone(), shared.clone(), handoff.clone()));
        }
        Self { queue }
    }

    /// Stores one activity and its outbox entry; returns once committed.
    pub async fn commit(&self, activity: NewActivity) -> Result<Stored, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { activity, reply })
            .await
            .map_err(|_| StoreError::Unavailable("committer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("committer stopped".into()))?
    }
}

async fn run(pool: PgPool, shared: Arc<Shared>, handoff: Arc<Handoff>) {
    let mut jobs = Vec::with_capacity(shared.batch_max);
    loop {
        {
            let mut rx = shared.queue.lock().await;
            match rx.recv().await {
                Some(job) => jobs.push(job),
                None => return,
            }
            take_ready(&mut rx, &mut jobs, shared.batch_max);
            // Every commit pays its own WAL flush, and concurrent small commits mostly queue
            // for the disk and the cores. While a commit is in progress and only a few
            // requests wait, keep gathering: they all go out together the moment it ends.
            // Only a real backlog starts commits side by side.
            while jobs.len() < shared.overlap_at {
                let ended = shared.committed.notified();
                tokio::pin!(ended);
                ended.as_mut().enable();
                if shared.in_flight.load(Ordering::SeqCst) == 0 {
                    break;
                }
                tokio::select! {
                    job = rx.recv() => match job {
                        Some(job) => {
                            jobs.push(job);
                            take_ready(&mut rx, &mut jobs, shared.batch_max);
                        }
                        None => break,
                    },
                    _ = &mut ended => break,
                }
            }
            shared.in_flight.fetch_add(1, Ordering::SeqCst);
        }
        // A request that has already given up (budget spent, answered 503) must not be
        // stored behind its back.
        jobs.retain(|j| !j.reply.is_closed());
        if !jobs.is_empty() {
            commit_jobs(&pool, &mut jobs, &handoff).await;
        }
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        shared.committed.notify_waiters();
    }
}

/// Adds whatever is already queued, up to `max` jobs in all.
fn take_ready(rx: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>, max: usize) {
    while jobs.len() < max {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
}

async fn commit_jobs(pool: &PgPool, jobs: &mut Vec<Job>, handoff: &Handoff) {
    let started = Instant::now();
    let batch: Vec<&NewActivity> = jobs.iter().map(|j| &j.activity).collect();
    let result = insert_batch(pool, &batch).await;
    metrics::histogram!("teams_bridge_commit_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("teams_bridge_commit_batch_size").record(batch.len() as f64);
    match result {
        Ok(inserted) => {
            let at = inserted.received_at;
            let events: Vec<Outgoing> = jobs
                .drain(..)
                .zip(inserted.outcomes)
                .filter_map(|(job, outcome)| answer(job, outcome, at))
                .collect();
            handoff.push(events);
        }
        // One bad row must not fail the requests that share its batch: retry them one by one.
        Err(sqlx::Error::Database(_)) if jobs.len() > 1 => {
            for job in jobs.drain(..) {
                match insert_batch(pool, &[&job.activity]).await {
                    Ok(inserted) => {
                        handoff.push(answer(job, inserted.outcomes[0], inserted.received_at));
                    }
                    Err(e) => {
                        let _ = job.reply.send(Err(classify(e)));
                    }
                }
            }
        }
        Err(e) => {
            let e = classify(e);
            tracing::warn!(error = %e, rows = jobs.len(), "commit failed");
            for job in jobs.drain(..) {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Answers a stored request; when its row is new, returns what the relay publishes for it.
fn answer(job: Job, outcome: Stored, received_at: Option<DateTime<Utc>>) -> Option<Outgoing> {
    let _ = job.reply.send(Ok(outcome));
    match (outcome, received_at) {
        (Stored::New(_), Some(at)) => Some(job.activity.into_event(at)),
        _ => None,
    }
}

fn classify(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db)
            if db
                .code()
                .is_some_and(|c| c.starts_with("22") || c.starts_with("23")) =>
        {
            StoreError::Rejected(db.message().to_string())
        }
        sqlx::Error::Database(db) => StoreError::Unavailable(db.message().to_string()),
        other => StoreError::Unavailable(other.to_string()),
    }
}

const INSERT: &str = r#"
with input as (
    select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                         $13::timestamptz[], $14::bytea[], $15::text[])
        as t(event_id, webhook, activity_id, activity_type, conversation_id, team_id, channel_id,
             tenant_id, sender_id, sender_name, sender_aad_object_id, text, activity_timestamp,
             raw, traceparent)
), inserted as (
    insert into activities (event_id, webhook, activity_id, activity_type, conversation_id, team_id,
                            channel_id, tenant_id, sender_id, sender_name, sender_aad_object_id, text,
                            activity_timestamp, raw, body, traceparent)
    select event_id, webhook, activity_id, activity_type, conversation_id, team_id, channel_id,
           tenant_id, sender_id, sender_name, sender_aad_object_id, text, activity_timestamp,
           raw, convert_from(raw, 'UTF8')::jsonb, traceparent
    from input
    on conflict (webhook, activity_id) do nothing
    returning event_id
)
insert into outbox (event_id) select event_id from inserted returning event_id, created_at
"#;

const EXISTING: &str = r#"
select a.webhook, a.activity_id, a.event_id
from unnest($1::text[], $2::text[]) as k(webhook, activity_id)
join activities a on a.webhook = k.webhook and a.activity_id = k.activity_id
"#;

/// Inserts activities and their outbox entries in one statement (one implicit transaction)
/// and says, for each input in order, whether it was new or a repeat.
pub async fn insert_batch(pool: &PgPool, batch: &[&NewActivity]) -> Result<Inserted, sqlx::Error> {
    let col = |f: fn(&NewActivity) -> Option<&str>| {
        batch.iter().map(|a| f(a)).collect::<Vec<Option<&str>>>()
    };
    let event_ids: Vec<Uuid> = batch.iter().map(|a| a.event_id).collect();
    let webhooks: Vec<&str> = batch.iter().map(|a| &*a.webhook).collect();
    let times: Vec<Option<DateTime<Utc>>> = batch.iter().map(|a| a.activity.timestamp()).collect();
    let raws: Vec<&[u8]> = batch.iter().map(|a| a.raw.as_ref()).collect();
    let inserted: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(INSERT)
        .bind(&event_ids)
        .bind(&webhooks)
        .bind(col(|a| a.activity.id.as_deref()))
        .bind(col(|a| a.activity.kind.as_deref()))
        .bind(col(|a| a.activity.conversation_id()))
        .bind(col(|a| a.activity.team_id()))
        .bind(col(|a| a.activity.channel_id()))
        .bind(col(|a| a.activity.tenant_id()))
        .bind(col(|a| a.activity.sender_id()))
        .bind(col(|a| a.activity.sender_name()))
        .bind(col(|a| a.activity.sender_aad_object_id()))
        .bind(col(|a| a.activity.text.as_deref()))
        .bind(&times)
        .bind(&raws)
        .bind(col(|a| a.traceparent.as_deref()))
        .fetch_all(pool)
        .await?;
    // `outbox.created_at` and `activities.received_at` are both `now()`: the transaction's start.
    let received_at = inserted.first().map(|(_, at)| *at);
    if inserted.len() == batch.len() {
        return Ok(Inserted {
            outcomes: event_ids.into_iter().map(Stored::New).collect(),
            received_at,
        });
    }
    // Some were repeats (of earlier deliveries or of each other): find the ids they hold.
    let inserted: HashSet<Uuid> = inserted.into_iter().map(|(id, _)| id).collect();
    let repeats: Vec<&&NewActivity> = batch
        .iter()
        .filter(|a| !inserted.contains(&a.event_id))
        .collect();
    let (hooks, ids): (Vec<&str>, Vec<Option<&str>>) = repeats
        .iter()
        .map(|a| (&*a.webhook, a.activity.id.as_deref()))
        .unzip();
    let existing: Vec<(String, String, Uuid)> = sqlx::query_as(EXISTING)
        .bind(&hooks)
        .bind(&ids)
        .fetch_all(pool)
        .await?;
    let existing: HashMap<(&str, &str), Uuid> = existing
        .iter()
        .map(|(w, a, e)| ((w.as_str(), a.as_str()), *e))
        .collect();
    let outcomes = batch
        .iter()
        .map(|a| {
            if inserted.contains(&a.event_id) {
                return Ok(Stored::New(a.event_id));
            }
            let key = (&*a.webhook, a.activity.id.as_deref().unwrap_or_default());
            existing
                .get(&key)
                .map(|id| Stored::Duplicate(*id))
                .ok_or_else(|| sqlx::Error::Protocol("repeat without a stored original".into()))
        })
        .collect::<Result<_, _>>()?;
    Ok(Inserted {
        outcomes,
        received_at,
    })
}
