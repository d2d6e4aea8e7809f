//! One entry of the audit log, as the HR audit worker writes it and every reader sees it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// One row of `audit_log`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    /// The activity's event id (the receipt shown in Teams).
    pub event_id: Uuid,
    /// Webhook name.
    pub webhook: String,
    /// Tenant id.
    pub tenant_id: Option<String>,
    /// Team id.
    pub team_id: Option<String>,
    /// Channel id.
    pub channel_id: Option<String>,
    /// Who: display name.
    pub actor_name: Option<String>,
    /// Who: AAD object id.
    pub actor_aad_object_id: Option<String>,
    /// `create`, `read`, `update`, `delete` or `note`.
    pub operation: String,
    /// `employee`, or none for notes.
    pub entity: Option<String>,
    /// The employee record id.
    pub record_id: Option<String>,
    /// Field → value.
    pub changes: serde_json::Value,
    /// The text as typed, markup removed.
    pub message: String,
    /// When it happened (Teams' timestamp).
    pub activity_at: DateTime<Utc>,
    /// When the worker recorded it.
    pub recorded_at: DateTime<Utc>,
}
