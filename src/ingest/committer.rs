//! The group committer: requests hand their activity to a small set of committer tasks
//! over a channel. Each task takes whatever is queued (up to `batch_max`) and writes it in
//! one statement ([`super::insert`]). Commits run one at a time while the load is light (what
//! arrives during a commit goes out in the next), and side by side (up to `COMMIT_TASKS`)
//! only once a backlog builds up. A request is answered only after the statement holding its
//! row has committed; each commit's new events go to the hand-off for this process's relay.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex, Notify};

use super::insert::{insert_batch, NewActivity, Stored};
use crate::{domain::event::Outgoing, handoff::Handoff};

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

/// Where the webhook handler stores activities: the group committer, or a stand-in where a
/// test drives the router without a database.
pub trait Store: Send + Sync + 'static {
    /// Stores one activity and its outbox entry; returns once committed.
    fn store(&self, activity: NewActivity) -> BoxFuture<'_, Result<Stored, StoreError>>;
}

impl Store for Committer {
    fn store(&self, activity: NewActivity) -> BoxFuture<'_, Result<Stored, StoreError>> {
        Box::pin(self.commit(activity))
    }
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
