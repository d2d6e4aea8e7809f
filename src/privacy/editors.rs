//! The HR editors lists: `teams-bridge editors add|remove|list`. Each change to a list is an
//! audit entry (`grant` / `revoke`) written in the same transaction, so the log says who
//! could record changes when. Adding an editor already on the list, or removing one who is
//! not, changes nothing and writes nothing.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;

use super::operator::{self, OperatorEntry};
use crate::domain::hr_command::Operation;

/// One editor.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Editor {
    /// The webhook.
    pub webhook: String,
    /// Entra object id.
    pub aad_object_id: String,
    /// Display name, as given.
    pub name: Option<String>,
    /// When added.
    pub added_at: DateTime<Utc>,
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The list changed; the audit entry's id.
    Changed(uuid::Uuid),
    /// It already was so; nothing written.
    Unchanged,
}

/// An Entra object id is a GUID; anything else here is a typo (refused before any write).
pub fn valid_object_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Adds `aad` to `webhook`'s list.
pub async fn add(
    pool: &PgPool,
    webhook: &str,
    aad: &str,
    name: Option<&str>,
    by: &str,
) -> Result<Outcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let added = sqlx::query(
        "insert into hr_editors (webhook, aad_object_id, name) values ($1, $2, $3) \
         on conflict do nothing",
    )
    .bind(webhook)
    .bind(aad)
    .bind(name)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if added == 0 {
        return Ok(Outcome::Unchanged);
    }
    let entry = OperatorEntry {
        operation: Operation::Grant,
        webhook,
        entity: "editor",
        by,
        changes: json!({"editor": aad, "name": name}),
        message: format!("made an HR editor of webhook {webhook}"),
    };
    let id = operator::write(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(Outcome::Changed(id))
}

/// Removes `aad` from `webhook`'s list.
pub async fn remove(
    pool: &PgPool,
    webhook: &str,
    aad: &str,
    by: &str,
) -> Result<Outcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let removed: Option<Option<String>> = sqlx::query_scalar(
        "delete from hr_editors where webhook = $1 and aad_object_id = $2 returning name",
    )
    .bind(webhook)
    .bind(aad)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(name) = removed else {
        return Ok(Outcome::Unchanged);
    };
    let entry = OperatorEntry {
        operation: Operation::Revoke,
        webhook,
        entity: "editor",
        by,
        changes: json!({"editor": aad, "name": name}),
        message: format!("no longer an HR editor of webhook {webhook}"),
    };
    let id = operator::write(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(Outcome::Changed(id))
}

/// The editors of one webhook, or of all.
pub async fn list(pool: &PgPool, webhook: Option<&str>) -> Result<Vec<Editor>, sqlx::Error> {
    sqlx::query_as(
        "select webhook, aad_object_id, name, added_at from hr_editors \
         where $1::text is null or webhook = $1 order by webhook, added_at, aad_object_id",
    )
    .bind(webhook)
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_are_guid_like() {
        assert!(valid_object_id("6f1c2a3b-0000-4a5b-9c8d-1234567890ab"));
        assert!(!valid_object_id(""));
        assert!(!valid_object_id("jane doe"));
        assert!(!valid_object_id(&"a".repeat(65)));
    }
}
