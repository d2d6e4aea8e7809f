//! Vacuums the outbox after enough deletes. A queue table needs it more than any other, and
//! the relay cannot count on autovacuum (it may be off, or slow to reach a small hot table):
//! without it every sweep and backlog count walks all rows ever deleted.

use sqlx::PgPool;

/// Deletes counted since the last vacuum.
#[derive(Default)]
pub(crate) struct Vacuum {
    pub(crate) deleted: usize,
    failed_once: bool,
}

impl Vacuum {
    /// Deleted rows that make a vacuum worth its cost.
    const AFTER_DELETES: usize = 20_000;

    /// Vacuums when enough rows were deleted since the last time.
    pub(crate) async fn maybe_run(&mut self, pool: &PgPool) {
        if self.deleted < Self::AFTER_DELETES {
            return;
        }
        self.deleted = 0;
        // SKIP_LOCKED: when another relay (or autovacuum) is at it, this one need not wait.
        // TRUNCATE false: giving empty pages back to the file system takes an exclusive lock
        // that would make every commit wait; the next inserts reuse those pages anyway.
        let vacuum = sqlx::raw_sql("vacuum (skip_locked, truncate false) outbox");
        if let Err(e) = vacuum.execute(pool).await {
            if !self.failed_once {
                self.failed_once = true;
                tracing::warn!(error = %e, "cannot vacuum the outbox; relying on autovacuum");
            }
        }
    }
}
