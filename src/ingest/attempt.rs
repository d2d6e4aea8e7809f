//! One commit attempt with a deadline, and a truthful answer. A request answered "nothing was
//! stored" must really not be stored, not then and not later. So:
//!
//! - the statement runs in a transaction whose `statement_timeout` ends before the earliest
//!   deadline of its batch, and the client gives up at the same time: up to COMMIT, giving up
//!   means rolling back, and the answer is "not stored";
//! - once COMMIT is sent, only Postgres knows. If its answer does not come (a stalled or
//!   broken connection), the transaction's status is asked on another connection
//!   (`pg_xact_status`): committed, aborted, or still in progress; anything but a definite
//!   "aborted" is "unknown", never "not stored" (a row merely absent could still be committing).

use std::time::{Duration, Instant};

use sqlx::PgPool;

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
        // BEGIN and the timeout in one round trip (a simple query of two statements; the
        // number is ours, not input). The insert returns the transaction's id.
        let begin = format!(
            "begin; set local statement_timeout = {}",
            limit.as_millis().max(1)
        );
        let mut tx = pool.begin_with(begin).await?;
        let (inserted, xid) = insert_batch(&mut tx, batch).await?;
        Ok::<_, sqlx::Error>((tx, inserted, xid))
    };
    // Dropping the transaction before COMMIT rolls it back: not stored.
    let (tx, inserted, xid) = match tokio::time::timeout(limit, statement).await {
        Err(_) => return Attempt::NotStored(StoreError::Unavailable("timed out".into())),
        Ok(Err(e)) => return Attempt::NotStored(classify(e)),
        Ok(Ok(done)) => done,
    };
    match tokio::time::timeout(COMMIT_RESERVE + LOOKUP_FOR, tx.commit()).await {
        Ok(Ok(())) => Attempt::Committed(inserted),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "COMMIT failed; asking for its outcome");
            look_up(pool, inserted, xid).await
        }
        Err(_) => {
            tracing::warn!("COMMIT unanswered; asking for its outcome");
            look_up(pool, inserted, xid).await
        }
    }
}

/// After an unanswered COMMIT: the transaction's status, asked on another connection.
async fn look_up(pool: &PgPool, inserted: Inserted, xid: Option<String>) -> Attempt {
    // All repeats: nothing new was written, whatever became of the COMMIT.
    let new = inserted
        .outcomes
        .iter()
        .any(|o| matches!(o, Stored::New(_)));
    let Some(xid) = xid.filter(|_| new) else {
        return Attempt::Committed(inserted);
    };
    let status = sqlx::query_scalar::<_, Option<String>>("select pg_xact_status($1::xid8)")
        .bind(xid)
        .fetch_one(pool);
    match tokio::time::timeout(LOOKUP_FOR, status).await {
        Ok(Ok(Some(s))) if s == "committed" => Attempt::Committed(inserted),
        Ok(Ok(Some(s))) if s == "aborted" => {
            Attempt::NotStored(StoreError::Unavailable("COMMIT failed".into()))
        }
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
