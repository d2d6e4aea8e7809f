//! One entry of the audit log, as the HR audit worker writes it and every reader sees it,
//! and how it is derived from an activity's exact bytes (by the worker, and again by
//! `verify --evidence` and the offline verifier).

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use uuid::Uuid;

use crate::domain::{
    activity::Activity,
    audit_leaf::{self, LeafFields, PersonalFields},
    hr_command,
    merkle::Hash,
};

/// Why an activity makes no audit entry. Never worth a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAnEntry(pub String);

/// Where an entry sits in the sealed tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Seal {
    /// Its leaf index.
    pub leaf_index: i64,
    /// The size of the first checkpoint that covers it.
    pub checkpoint_size: i64,
}

/// One row of `audit_log`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
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
    /// Whether it counts as a change: false when the webhook has an HR editors list and the
    /// sender is not on it (recorded, shown in Teams as not a change, sealed as such).
    #[serde(default = "counts")]
    pub authorized: bool,
    /// `erased` or `expired` once its personal fields were removed (they are then empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[sqlx(default)]
    pub redacted: Option<String>,
    /// Its place in the sealed tree; `None` while pending.
    #[sqlx(skip)]
    pub seal: Option<Seal>,
    #[serde(skip)]
    #[sqlx(default)]
    pub(crate) leaf_index: Option<i64>,
    #[serde(skip)]
    #[sqlx(default)]
    pub(crate) sealed_in: Option<i64>,
}

fn counts() -> bool {
    true
}

impl AuditEntry {
    /// The entry the HR grammar derives from an activity's exact bytes; `fallback_time` is
    /// the time to use when the activity carries none (the event's `ce-time`).
    pub fn derive(
        event_id: Uuid,
        webhook: &str,
        body: &[u8],
        fallback_time: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Self, NotAnEntry> {
        let activity =
            Activity::parse(body).map_err(|e| NotAnEntry(format!("not an activity: {e}")))?;
        if activity.sender_name().is_none() && activity.sender_aad_object_id().is_none() {
            let why = "activity has no sender (from.name / from.aadObjectId)";
            return Err(NotAnEntry(why.into()));
        }
        let cmd = hr_command::parse(activity.text.as_deref().unwrap_or_default());
        let owned = |s: Option<&str>| s.map(str::to_owned);
        let at = activity.timestamp().or(fallback_time).unwrap_or(now);
        Ok(AuditEntry {
            event_id,
            webhook: webhook.to_string(),
            tenant_id: owned(activity.tenant_id()),
            team_id: owned(activity.team_id()),
            channel_id: owned(activity.channel_id()),
            actor_name: owned(activity.sender_name()),
            actor_aad_object_id: owned(activity.sender_aad_object_id()),
            operation: cmd.operation.as_str().to_string(),
            entity: cmd.entity.clone(),
            record_id: cmd.record_id.clone(),
            changes: cmd.changes_json(),
            message: cmd.text.clone(),
            // The database keeps microseconds; so does the entry, so it compares equal.
            activity_at: at.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(at),
            recorded_at: now,
            authorized: true,
            redacted: None,
            seal: None,
            leaf_index: None,
            sealed_in: None,
        })
    }

    /// The personal fields, as the leaf's salted digest covers them.
    pub fn personal_fields(&self) -> PersonalFields<'_> {
        PersonalFields {
            actor_name: self.actor_name.as_deref(),
            actor_aad_object_id: self.actor_aad_object_id.as_deref(),
            changes: &self.changes,
            message: &self.message,
        }
    }

    /// The entry's leaf value, with the digests of its evidence and of its personal fields
    /// (the encoding is `domain::audit_leaf`'s).
    pub fn leaf_value(&self, raw_sha256: Option<&Hash>, personal_digest: &Hash) -> Vec<u8> {
        audit_leaf::leaf_value(&LeafFields {
            event_id: self.event_id,
            webhook: &self.webhook,
            tenant_id: self.tenant_id.as_deref(),
            team_id: self.team_id.as_deref(),
            channel_id: self.channel_id.as_deref(),
            operation: &self.operation,
            entity: self.entity.as_deref(),
            record_id: self.record_id.as_deref(),
            activity_at: self.activity_at,
            raw_sha256,
            personal_digest,
            authorized: self.authorized,
        })
    }

    /// Whether its changes and message are empty, as an erasure or retention leaves them.
    pub fn content_removed(&self) -> bool {
        self.message.is_empty() && self.changes.as_object().is_some_and(|o| o.is_empty())
    }

    /// Fills `seal` from the columns it was read with.
    pub fn with_seal(mut self) -> Self {
        self.seal = self
            .leaf_index
            .zip(self.sealed_in)
            .map(|(leaf_index, checkpoint_size)| Seal {
                leaf_index,
                checkpoint_size,
            });
        self
    }

    /// Whether the derived entry says the same as this stored one (times compared to the
    /// microsecond; `recorded_at` and the seal are the log's own, not the activity's).
    pub fn says_the_same_as(&self, other: &AuditEntry) -> bool {
        let key = |e: &AuditEntry| {
            (
                e.event_id,
                e.webhook.clone(),
                (e.tenant_id.clone(), e.team_id.clone(), e.channel_id.clone()),
                (e.actor_name.clone(), e.actor_aad_object_id.clone()),
                (e.operation.clone(), e.entity.clone(), e.record_id.clone()),
                (
                    e.changes.clone(),
                    e.message.clone(),
                    e.activity_at.timestamp_micros(),
                ),
            )
        };
        key(self) == key(other)
    }
}
