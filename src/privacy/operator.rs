//! Audit entries an operator writes from the command line (`grant`, `revoke`, `erase`): no
//! Teams activity stands behind them, so they carry who ran the command and why. They are
//! written without a leaf; the sealer gives them theirs at its next checkpoint (the leaf then
//! has no activity hash), so they are sealed only where a signing key is set.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::hr_command::Operation;

/// One operator entry.
#[derive(Debug, Clone)]
pub struct OperatorEntry<'a> {
    /// `Grant`, `Revoke` or `Erase`.
    pub operation: Operation,
    /// The webhook it concerns (`*` for all).
    pub webhook: &'a str,
    /// What it is about: `editor`, `actor`, `record`.
    pub entity: &'a str,
    /// Who ran the command.
    pub by: &'a str,
    /// What was done, as a JSON object.
    pub changes: Value,
    /// The reason, or a one-line description.
    pub message: String,
}

/// Who runs this command: `--by`, else the login name, else `unknown operator`.
pub fn operator_name(by: Option<&str>) -> String {
    by.map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "unknown operator".into())
}

/// Writes the entry in the caller's transaction; returns its id (a UUIDv7, like receipts).
pub async fn write(conn: &mut PgConnection, e: &OperatorEntry<'_>) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    write_as(conn, id, e).await?;
    Ok(id)
}

/// Writes the entry under an id chosen beforehand (an erasure names its entry on the rows it
/// erases before it knows its counts).
pub async fn write_as(
    conn: &mut PgConnection,
    id: Uuid,
    e: &OperatorEntry<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into audit_log (event_id, webhook, actor_name, operation, entity, changes, \
         message, activity_at) values ($1, $2, $3, $4, $5, $6, $7, now())",
    )
    .bind(id)
    .bind(e.webhook)
    .bind(e.by)
    .bind(e.operation.as_str())
    .bind(e.entity)
    .bind(&e.changes)
    .bind(&e.message)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_is_the_flag_first() {
        assert_eq!(operator_name(Some("dpo@contoso")), "dpo@contoso");
        assert!(!operator_name(None).is_empty());
    }
}
