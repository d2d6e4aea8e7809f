//! One commit attempt with a deadline, and a truthful answer. A request answered "nothing was
//! stored" must really not be stored, not then and not later. So:
//!
//! - the statement runs in a transaction whose `statement_timeout` ends before the earliest
//!   deadline of its batch, and the client gives up at the same time: up to COMMIT, giving up
//!   means rolling back, and the answer is "not stored";
//! - once COMMIT is sent, only Postgres knows. If its answer does not come (a stalled or
//!   broken connection), the outcome is looked up on another connection; if even that cannot
//!   tell, the answer is "unknown", never "not stored".

use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

use super::{
    committer::StoreError,
    insert::{insert_batch, Inserted, NewActivity, Stored},
};

/// Time kept for COMMIT (its WAL flush) and the reply after the statement.
const COMMIT_RESERVE: Duration = Duration::from_millis(300);

/// How long an unanswered COMMIT may take to be looked up.
const LOOKUP_FOR: Duration = Duration::from_secs(10);

/// What an attempt did.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Committed: the outcome of each input.
    Committed(Inserted),
    /// Nothing of it is or will be stored.
    NotStored(StoreError),
    /// COMMIT was sent and neither its answer nor a lookup came back.
    Unknown,
}

/// Inserts `batch` so that it either commits before `deadline` or is known not to.
pub(crate) async fn attempt(pool: &PgPool, batch: &[&NewActivity], deadline: Instant) -> Attempt {
    let Some(limit) = deadline.checked_duration_since(Instant::now() + COMMIT_RESERVE) else {
        return Attempt::NotStored(StoreError::Expired);
    };
    let statement = async {
        let mut tx = pool.begin().await?;
        sqlx::query("select set_config('statement_timeout', $1, true)")
            .bind(limit.as_millis().max(1).to_string())
            .execute(&mut *tx)
            .await?;
        let inserted = insert_batch(&mut tx, batch).await?;
        Ok::<_, sqlx::Error>((tx, inserted))
    };
    // Dropping the transaction before COMMIT rolls it back: not stored.
    let (tx, inserted) = match tokio::time::timeout(limit, statement).await {
        Err(_) => return Attempt::NotStored(StoreError::Unavailable("timed out".into())),
        Ok(Err(e)) => return Attempt::NotStored(classify(e)),
        Ok(Ok(done)) => done,
    };
    match tokio::time::timeout(COMMIT_RESERVE + LOOKUP_FOR, tx.commit()).await {
        Ok(Ok(())) => Attempt::Committed(inserted),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "COMMIT failed; looking its outcome up");
            look_up(pool, inserted).await
        }
        Err(_) => {
            tracing::warn!("COMMIT unanswered; looking its outcome up");
            look_up(pool, inserted).await
        }
    }
}

/// After an unanswered COMMIT: the new rows are there (committed) or not (rolled back).
async fn look_up(pool: &PgPool, inserted: Inserted) -> Attempt {
    let new: Vec<Uuid> = inserted
        .outcomes
        .iter()
        .filter_map(|o| match o {
            Stored::New(id) => Some(*id),
            Stored::Duplicate { .. } => None,
        })
        .collect();
    // All repeats: nothing new was written, whatever became of the COMMIT.
    let Some(&probe) = new.first() else {
        return Attempt::Committed(inserted);
    };
    let query = sqlx::query_scalar::<_, bool>(
        "select exists (select 1 from activities where event_id = $1)",
    )
    .bind(probe);
    match tokio::time::timeout(LOOKUP_FOR, query.fetch_one(pool)).await {
        Ok(Ok(true)) => Attempt::Committed(inserted),
        Ok(Ok(false)) => Attempt::NotStored(StoreError::Unavailable("COMMIT failed".into())),
        _ => Attempt::Unknown,
    }
}

/// Postgres refused the row itself (data or constraint), or is unavailable.
pub(crate) fn classify(e: sqlx::Error) -> StoreError {
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
