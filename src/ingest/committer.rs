//! The group committer: requests hand their activity to a small set of committer tasks
//! over a channel. Each task takes whatever is queued (up to `batch_max`) and writes it in
//! one statement ([`super::insert`]). Commits run one at a time while the load is light (what
//! arrives during a commit goes out in the next; under a steady load a commit about to start
//! alone waits a millisecond for company), and side by side (up to `COMMIT_TASKS`) only once
//! a backlog builds up. A request is answered only after the statement holding its
//! row has committed; each commit's new events go to the hand-off for this process's relay.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex, Notify};

use super::{
    attempt::{attempt, Attempt},
    insert::{NewActivity, Stored},
};
use crate::{domain::event::Outgoing, handoff::Handoff};

/// Why an activity was not stored (or, for `Unknown`, may not have been).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Postgres is unreachable, slow or failing: nothing was stored; a retry may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Postgres refused this row itself (a constraint or a value it cannot hold).
    #[error("database refused the activity: {0}")]
    Rejected(String),
    /// The deadline passed before the activity's turn came: nothing was stored.
    #[error("the reply budget was spent before the commit")]
    Expired,
    /// COMMIT was sent but its outcome could not be learnt: the activity may be stored. A
    /// retry is safe (a repeat is recognised), but "nothing was stored" would be a lie.
    #[error("the commit's outcome is unknown")]
    Unknown,
}

/// Where the webhook handler stores activities: the group committer, or a stand-in where a
/// test drives the router without a database.
pub trait Store: Send + Sync + 'static {
    /// Stores one activity and its outbox entry; answers once committed, or once it is sure
    /// nothing was stored, close to `deadline`.
    fn store(
        &self,
        activity: NewActivity,
        deadline: Instant,
    ) -> BoxFuture<'_, Result<Stored, StoreError>>;
}

impl Store for Committer {
    fn store(
        &self,
        activity: NewActivity,
        deadline: Instant,
    ) -> BoxFuture<'_, Result<Stored, StoreError>> {
        Box::pin(self.commit(activity, deadline))
    }
}

struct Job {
    activity: NewActivity,
    reply: oneshot::Sender<Result<Stored, StoreError>>,
    /// The caller's reply budget ends here.
    deadline: Instant,
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

    /// Stores one activity and its outbox entry; see [`Store::store`].
    pub async fn commit(
        &self,
        activity: NewActivity,
        deadline: Instant,
    ) -> Result<Stored, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job {
                activity,
                reply,
                deadline,
            })
            .await
            .map_err(|_| StoreError::Unavailable("committer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("committer stopped".into()))?
    }
}

/// How long a lone commit waits for company under a steady load.
const COMMIT_LINGER: Duration = Duration::from_millis(1);

/// A load is steady when this task's last commit began less than this long ago.
const STEADY: Duration = Duration::from_millis(5);

async fn run(pool: PgPool, shared: Arc<Shared>, handoff: Arc<Handoff>) {
    let mut jobs = Vec::with_capacity(shared.batch_max);
    let mut last_start: Option<Instant> = None;
    loop {
        {
            let mut rx = shared.queue.lock().await;
            match rx.recv().await {
                Some(job) => jobs.push(job),
                None => return,
            }
            take_ready(&mut rx, &mut jobs, shared.batch_max);
            let steady = last_start.is_some_and(|t: Instant| t.elapsed() < STEADY);
            gather(&mut rx, &mut jobs, &shared, steady).await;
            shared.in_flight.fetch_add(1, Ordering::SeqCst);
            last_start = Some(Instant::now());
        }
        // A request that has already given up must not be stored behind its back, and one
        // whose budget is spent is told so now rather than tried.
        jobs.retain(|j| !j.reply.is_closed());
        expire(&mut jobs);
        if !jobs.is_empty() {
            commit_jobs(&pool, &mut jobs, &handoff).await;
        }
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        shared.committed.notify_waiters();
    }
}

/// Adds to `jobs` what should go out in the same commit; `steady` when this task's last
/// commit began moments ago.
async fn gather(rx: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>, shared: &Shared, steady: bool) {
    // Under a steady load (the last commit began moments ago) a commit that would
    // start alone waits a moment for company: a transaction costs Postgres and this
    // process more than a row does (measured at 1,400 webhooks/s: 1.5 rows per commit
    // without, CPU per webhook 790 -> 733 µs with, p50 +0.5 ms). An idle service
    // answers at once.
    if shared.in_flight.load(Ordering::SeqCst) == 0 && steady {
        let until = tokio::time::Instant::now() + COMMIT_LINGER;
        while jobs.len() < shared.overlap_at {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(job)) => {
                    jobs.push(job);
                    take_ready(rx, jobs, shared.batch_max);
                }
                _ => break,
            }
        }
    }
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
                    take_ready(rx, jobs, shared.batch_max);
                }
                None => break,
            },
            _ = &mut ended => break,
        }
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

/// Answers the jobs whose deadline leaves no time for a commit.
fn expire(jobs: &mut Vec<Job>) {
    let soon = Instant::now() + Duration::from_millis(350);
    let (late, keep) = std::mem::take(jobs)
        .into_iter()
        .partition::<Vec<Job>, _>(|j| j.deadline <= soon);
    *jobs = keep;
    for job in late {
        let _ = job.reply.send(Err(StoreError::Expired));
    }
}

async fn commit_jobs(pool: &PgPool, jobs: &mut Vec<Job>, handoff: &Handoff) {
    let started = Instant::now();
    let batch: Vec<&NewActivity> = jobs.iter().map(|j| &j.activity).collect();
    let deadline = jobs
        .iter()
        .map(|j| j.deadline)
        .min()
        .expect("a batch is never empty");
    let result = attempt(pool, &batch, deadline).await;
    metrics::histogram!("teams_bridge_commit_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("teams_bridge_commit_batch_size").record(batch.len() as f64);
    match result {
        Attempt::Committed(inserted) => {
            let at = inserted.received_at;
            let events: Vec<Outgoing> = jobs
                .drain(..)
                .zip(inserted.outcomes)
                .filter_map(|(job, outcome)| answer(job, outcome, at))
                .collect();
            handoff.push(events);
        }
        // One bad row must not fail the requests that share its batch: retry them one by one.
        // Only then: any other failure would fail them one by one just the same, serially.
        Attempt::NotStored(StoreError::Rejected(_)) if jobs.len() > 1 => {
            for job in jobs.drain(..) {
                commit_alone(pool, job, handoff).await;
            }
        }
        Attempt::NotStored(e) => fail(jobs, e),
        Attempt::Unknown => fail(jobs, StoreError::Unknown),
    }
}

/// One job in a batch of its own.
async fn commit_alone(pool: &PgPool, job: Job, handoff: &Handoff) {
    match attempt(pool, &[&job.activity], job.deadline).await {
        Attempt::Committed(inserted) => {
            let outcome = inserted.outcomes.into_iter().next();
            let outcome = outcome.expect("one outcome per input");
            handoff.push(answer(job, outcome, inserted.received_at));
        }
        Attempt::NotStored(e) => {
            let _ = job.reply.send(Err(e));
        }
        Attempt::Unknown => {
            let _ = job.reply.send(Err(StoreError::Unknown));
        }
    }
}

fn fail(jobs: &mut Vec<Job>, e: StoreError) {
    tracing::warn!(error = %e, rows = jobs.len(), "commit failed");
    for job in jobs.drain(..) {
        let _ = job.reply.send(Err(e.clone()));
    }
}

/// Answers a stored request; when its row is new, returns what the relay publishes for it.
fn answer(job: Job, outcome: Stored, received_at: Option<DateTime<Utc>>) -> Option<Outgoing> {
    let new = matches!(outcome, Stored::New(_));
    let _ = job.reply.send(Ok(outcome));
    match (new, received_at) {
        (true, Some(at)) => Some(job.activity.into_event(at)),
        _ => None,
    }
}
