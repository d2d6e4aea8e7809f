//! Legal holds: `teams-bridge hold add|remove|list --record ID | --actor AAD`. Held data is
//! neither pruned by retention nor erased; `erase` refuses and names the hold.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Whose data: a Teams user (by Entra object id) or an employee record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A Teams user.
    Actor(String),
    /// An employee record.
    Record(String),
}

impl Scope {
    /// `actor` or `record`, as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Actor(_) => "actor",
            Scope::Record(_) => "record",
        }
    }

    /// The id.
    pub fn value(&self) -> &str {
        match self {
            Scope::Actor(v) | Scope::Record(v) => v,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind(), self.value())
    }
}

/// One hold.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Hold {
    /// `actor` or `record`.
    pub kind: String,
    /// The id.
    pub value: String,
    /// Why.
    pub reason: Option<String>,
    /// Since when.
    pub created_at: DateTime<Utc>,
}

/// Places a hold; false when it was already held.
pub async fn add(pool: &PgPool, scope: &Scope, reason: Option<&str>) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "insert into legal_holds (kind, value, reason) values ($1, $2, $3) on conflict do nothing",
    )
    .bind(scope.kind())
    .bind(scope.value())
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Lifts a hold; false when there was none.
pub async fn remove(pool: &PgPool, scope: &Scope) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("delete from legal_holds where kind = $1 and value = $2")
        .bind(scope.kind())
        .bind(scope.value())
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Every hold, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<Hold>, sqlx::Error> {
    sqlx::query_as(
        "select kind, value, reason, created_at from legal_holds order by created_at, kind, value",
    )
    .fetch_all(pool)
    .await
}

/// SQL: whether an `activities` row `a` is held (by its sender, or the record its entry is
/// about).
pub(crate) const ACTIVITY_HELD: &str = "exists (select 1 from legal_holds h \
    where (h.kind = 'actor' and h.value = a.sender_aad_object_id) \
       or (h.kind = 'record' and h.value = (select l.record_id from audit_log l where l.event_id = a.event_id)))";

/// SQL: whether an `audit_log` row `l` is held.
pub(crate) const ENTRY_HELD: &str = "exists (select 1 from legal_holds h \
    where (h.kind = 'actor' and h.value = l.actor_aad_object_id) \
       or (h.kind = 'record' and h.value = l.record_id))";
