//! The event contract on JetStream: subject, headers and body of one published activity.
//!
//! - subject: `{prefix}.{webhook}.{activity type}`, e.g. `teams.contoso.message`;
//! - body: the exact bytes Teams signed;
//! - headers: `Nats-Msg-Id` (= event id, JetStream de-duplication) and CloudEvents 1.0
//!   binary-mode attributes (`ce-specversion`, `ce-id`, `ce-source`, `ce-type`, `ce-time`,
//!   `ce-subject` (the conversation id, when at most 1 KiB), `content-type`), plus
//!   `traceparent` when the request carried one.
//!
//! Pure logic: building the headers for the relay, and reading them back for consumers.

use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

/// Longest `ce-subject` (conversation id) carried; longer ones are left out.
pub const MAX_CE_SUBJECT: usize = 1024;

/// CloudEvents `type` prefix; the activity type is appended (`com.microsoft.teams.activity.message`).
pub const CE_TYPE_PREFIX: &str = "com.microsoft.teams.activity.";

/// What the relay publishes for one committed activity: handed over by the committer, or
/// read back from `activities` by the sweep.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Our id: `ce-id` and `Nats-Msg-Id`.
    pub event_id: Uuid,
    /// Webhook name.
    pub webhook: String,
    /// Activity type, if any.
    pub activity_type: Option<String>,
    /// Conversation id, used as `ce-subject`.
    pub conversation_id: Option<String>,
    /// Teams' timestamp, else our receipt time: `ce-time`.
    pub time: DateTime<Utc>,
    /// W3C trace context of the request that delivered it.
    pub traceparent: Option<String>,
    /// The exact signed bytes.
    pub raw: Bytes,
}

/// A NATS subject token that is also a URL path segment needing no escaping and a log value
/// needing no quoting: 1 to 64 letters, digits, `-` and `_`. Webhook names, stream and
/// consumer names are tokens.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The subject token for an activity type: anything outside `[A-Za-z0-9_-]` becomes `_`,
/// a missing type becomes `unknown`, so a hostile type can never add tokens or wildcards.
pub fn type_token(activity_type: Option<&str>) -> String {
    match activity_type {
        Some(t) if !t.is_empty() => t
            .chars()
            .take(64)
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
        _ => "unknown".to_string(),
    }
}

/// `{prefix}.{webhook}.{type}`: the subject one activity is published on.
pub fn subject(prefix: &str, webhook: &str, activity_type: Option<&str>) -> String {
    format!("{prefix}.{webhook}.{}", type_token(activity_type))
}

/// `{prefix}.>`: every subject of the contract, what the stream holds.
pub fn all_subjects(prefix: &str) -> String {
    format!("{prefix}.>")
}

/// `{prefix}.*.message`: the message activities of every webhook (the HR audit filter).
pub fn message_subjects(prefix: &str) -> String {
    subject(prefix, "*", Some("message"))
}

/// `{prefix}._audit.checkpoint`: where the sealed audit log's signed checkpoints go (webhook
/// names cannot start with `_`, so no activity shares it).
pub fn checkpoint_subject(prefix: &str) -> String {
    format!("{prefix}._audit.checkpoint")
}

/// `{prefix}.{webhook}.message`: the message activities of one webhook.
pub fn webhook_message_subject(prefix: &str, webhook: &str) -> String {
    subject(prefix, webhook, Some("message"))
}

impl Outgoing {
    /// NATS headers for this event (the `Nats-Msg-Id` is set by the publish builder).
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        let id = self.event_id.to_string();
        h.insert("ce-specversion", "1.0");
        h.insert("ce-id", id.as_str());
        h.insert(
            "ce-source",
            format!("/teams-bridge/webhooks/{}", self.webhook).as_str(),
        );
        h.insert(
            "ce-type",
            format!(
                "{CE_TYPE_PREFIX}{}",
                type_token(self.activity_type.as_deref())
            )
            .as_str(),
        );
        h.insert(
            "ce-time",
            self.time
                .to_rfc3339_opts(SecondsFormat::Micros, true)
                .as_str(),
        );
        if let Some(conv) = &self.conversation_id {
            // Header values cannot hold CR/LF; conversation ids never do, but make sure. A
            // conversation id is ~60 bytes; a longer one is left out so the headers stay
            // within the room the relay keeps for them beside the body.
            if !conv.contains(['\r', '\n']) && conv.len() <= MAX_CE_SUBJECT {
                h.insert("ce-subject", conv.as_str());
            }
        }
        h.insert("content-type", "application/json");
        if let Some(tp) = &self.traceparent {
            h.insert("traceparent", tp.as_str());
        }
        h
    }
}

/// An event as a consumer sees it, decoded from a JetStream message.
#[derive(Debug, Clone)]
pub struct Event {
    /// `ce-id`.
    pub event_id: Uuid,
    /// The webhook name, from the subject.
    pub webhook: String,
    /// The full subject.
    pub subject: String,
    /// `ce-time`, when present and valid.
    pub time: Option<DateTime<Utc>>,
    /// `traceparent`, when present.
    pub traceparent: Option<String>,
    /// The exact activity bytes.
    pub body: Bytes,
}

/// Why a message is not a teams-bridge event. Never worth a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No `ce-id` (nor `Nats-Msg-Id`) header holding a UUID.
    #[error("missing or invalid ce-id header")]
    MissingId,
    /// The subject does not have the `{prefix}.{webhook}.{type}` shape.
    #[error("subject {0:?} is not {{prefix}}.{{webhook}}.{{type}}")]
    BadSubject(String),
}

impl Event {
    /// Reads the contract back from a subject, headers and payload.
    pub fn decode(
        subject: &str,
        headers: Option<&HeaderMap>,
        body: Bytes,
    ) -> Result<Self, DecodeError> {
        let header = |name: &str| {
            headers
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_string())
        };
        let event_id = header("ce-id")
            .or_else(|| header("Nats-Msg-Id"))
            .and_then(|v| Uuid::parse_str(&v).ok())
            .ok_or(DecodeError::MissingId)?;
        let mut tokens = subject.rsplit('.');
        let (_type, webhook) = match (tokens.next(), tokens.next(), tokens.next()) {
            (Some(t), Some(w), Some(_prefix)) if !w.is_empty() => (t, w),
            _ => return Err(DecodeError::BadSubject(subject.to_string())),
        };
        Ok(Self {
            event_id,
            webhook: webhook.to_string(),
            subject: subject.to_string(),
            time: header("ce-time")
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc)),
            traceparent: header("traceparent"),
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing() -> Outgoing {
        Outgoing {
            event_id: Uuid::now_v7(),
            webhook: "contoso".into(),
            activity_type: Some("message".into()),
            conversation_id: Some("19:abc@thread.tacv2;messageid=1".into()),
            time: Utc::now(),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            raw: Bytes::from_static(b"{\"type\":\"message\"}"),
        }
    }

    #[test]
    fn subjects_are_prefix_webhook_and_type() {
        assert_eq!(
            subject("teams", "contoso", Some("message")),
            "teams.contoso.message"
        );
        assert_eq!(subject("t.x", "c", None), "t.x.c.unknown");
        assert_eq!(all_subjects("teams"), "teams.>");
        assert_eq!(message_subjects("teams"), "teams.*.message");
        assert_eq!(webhook_message_subject("t", "contoso"), "t.contoso.message");
    }

    #[test]
    fn a_hostile_activity_type_cannot_add_tokens_or_wildcards() {
        assert_eq!(type_token(Some("a.b >*")), "a_b___");
    }

    #[test]
    fn headers_round_trip_through_decode() {
        let out = outgoing();
        let headers = out.headers();
        assert_eq!(headers.get("ce-specversion").unwrap().as_str(), "1.0");
        assert_eq!(
            headers.get("ce-type").unwrap().as_str(),
            "com.microsoft.teams.activity.message"
        );
        assert_eq!(
            headers.get("ce-source").unwrap().as_str(),
            "/teams-bridge/webhooks/contoso"
        );
        assert_eq!(
            headers.get("content-type").unwrap().as_str(),
            "application/json"
        );
        let ev = Event::decode("teams.contoso.message", Some(&headers), out.raw.clone()).unwrap();
        assert_eq!(ev.event_id, out.event_id);
        assert_eq!(ev.webhook, "contoso");
        assert_eq!(ev.traceparent, out.traceparent);
        assert_eq!(
            ev.time.unwrap().timestamp_micros(),
            out.time.timestamp_micros()
        );
    }

    #[test]
    fn a_message_without_an_id_or_with_a_short_subject_is_not_an_event() {
        assert_eq!(
            Event::decode("teams.contoso.message", None, Bytes::new()).unwrap_err(),
            DecodeError::MissingId
        );
        let headers = outgoing().headers();
        assert!(matches!(
            Event::decode("contoso.message", Some(&headers), Bytes::new()),
            Err(DecodeError::BadSubject(_))
        ));
    }
}
