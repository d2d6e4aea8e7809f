//! The parts of a Bot Framework `Activity` that teams-bridge indexes.
//!
//! Parsing is lenient on purpose: every field is optional, a field of an unexpected type is
//! treated as absent, ids are opaque strings, and unknown fields are simply not looked at (the
//! exact bytes are stored anyway). Only a body that is not a UTF-8 JSON object is refused.
//! Pure logic, no I/O.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

/// Why a verified body cannot be accepted as an activity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActivityError {
    /// Not UTF-8, not JSON, or JSON but not an object.
    #[error("body is not a JSON object: {0}")]
    NotJson(String),
    /// Contains a `\u0000` escape, which Postgres text and jsonb cannot hold.
    #[error("body contains a \\u0000 character, which cannot be stored")]
    NulCharacter,
}

/// Indexed fields of one activity. Everything is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    /// `type`, e.g. `message`.
    #[serde(rename = "type", default, deserialize_with = "lenient")]
    pub kind: Option<String>,
    /// Teams' activity id, the de-duplication key.
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<String>,
    /// When Teams says the message was sent (RFC 3339).
    #[serde(default, deserialize_with = "lenient")]
    pub timestamp: Option<String>,
    /// The message text, HTML with `<at>` mentions.
    #[serde(default, deserialize_with = "lenient")]
    pub text: Option<String>,
    /// The sender.
    #[serde(default, deserialize_with = "lenient")]
    pub from: Option<Account>,
    /// The conversation (channel thread).
    #[serde(default, deserialize_with = "lenient")]
    pub conversation: Option<Conversation>,
    /// Teams-specific ids.
    #[serde(default, deserialize_with = "lenient")]
    pub channel_data: Option<ChannelData>,
}

/// `from`: the person who sent the message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// Bot Framework user id (`29:…`).
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<String>,
    /// Display name.
    #[serde(default, deserialize_with = "lenient")]
    pub name: Option<String>,
    /// Azure AD object id: the stable identity of the person.
    #[serde(default, deserialize_with = "lenient")]
    pub aad_object_id: Option<String>,
}

/// `conversation`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    /// `19:…@thread.tacv2;messageid=…`.
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<String>,
    /// Newer payloads put the tenant here.
    #[serde(default, deserialize_with = "lenient")]
    pub tenant_id: Option<String>,
}

/// `channelData`: team, channel and tenant ids, in old and new spellings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelData {
    #[serde(default, deserialize_with = "lenient")]
    teams_channel_id: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    teams_team_id: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    channel: Option<IdOnly>,
    #[serde(default, deserialize_with = "lenient")]
    team: Option<IdOnly>,
    #[serde(default, deserialize_with = "lenient")]
    tenant: Option<IdOnly>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
struct IdOnly {
    #[serde(default, deserialize_with = "lenient")]
    id: Option<String>,
}

/// Deserialises `T`, or `None` when the value is null or of another shape.
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = serde_json::Value::deserialize(d)?;
    Ok(T::deserialize(value).ok())
}

impl Activity {
    /// Parses a verified body. Refuses what is not a UTF-8 JSON object or cannot be stored.
    pub fn parse(body: &[u8]) -> Result<Self, ActivityError> {
        let text =
            std::str::from_utf8(body).map_err(|_| ActivityError::NotJson("not UTF-8".into()))?;
        // serde would happily read a struct from a JSON array; an activity is an object.
        if !text.trim_start().starts_with('{') {
            return Err(ActivityError::NotJson("expected a JSON object".into()));
        }
        if has_nul_escape(body) {
            return Err(ActivityError::NulCharacter);
        }
        serde_json::from_str(text).map_err(|e| ActivityError::NotJson(e.to_string()))
    }

    /// Team id: `channelData.team.id`, else the older `channelData.teamsTeamId`.
    pub fn team_id(&self) -> Option<&str> {
        let cd = self.channel_data.as_ref()?;
        cd.team
            .as_ref()
            .and_then(|t| t.id.as_deref())
            .or(cd.teams_team_id.as_deref())
    }

    /// Channel id: `channelData.channel.id`, else `channelData.teamsChannelId`.
    pub fn channel_id(&self) -> Option<&str> {
        let cd = self.channel_data.as_ref()?;
        cd.channel
            .as_ref()
            .and_then(|c| c.id.as_deref())
            .or(cd.teams_channel_id.as_deref())
    }

    /// Tenant id: `channelData.tenant.id`, else `conversation.tenantId`.
    pub fn tenant_id(&self) -> Option<&str> {
        let from_cd = self
            .channel_data
            .as_ref()
            .and_then(|cd| cd.tenant.as_ref())
            .and_then(|t| t.id.as_deref());
        from_cd.or_else(|| self.conversation.as_ref()?.tenant_id.as_deref())
    }

    /// Conversation id.
    pub fn conversation_id(&self) -> Option<&str> {
        self.conversation.as_ref()?.id.as_deref()
    }

    /// Sender display name.
    pub fn sender_name(&self) -> Option<&str> {
        self.from.as_ref()?.name.as_deref()
    }

    /// Sender Bot Framework id.
    pub fn sender_id(&self) -> Option<&str> {
        self.from.as_ref()?.id.as_deref()
    }

    /// Sender AAD object id.
    pub fn sender_aad_object_id(&self) -> Option<&str> {
        self.from.as_ref()?.aad_object_id.as_deref()
    }

    /// Teams' timestamp, when present and valid RFC 3339.
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        let ts = self.timestamp.as_deref()?;
        DateTime::parse_from_rfc3339(ts)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// True when the JSON text holds a `\u0000` escape (an odd run of backslashes before `u0000`).
fn has_nul_escape(body: &[u8]) -> bool {
    let needle = b"u0000";
    let mut i = 0;
    while let Some(pos) = body[i..].windows(needle.len()).position(|w| w == needle) {
        let at = i + pos;
        let slashes = body[..at].iter().rev().take_while(|&&b| b == b'\\').count();
        if slashes % 2 == 1 {
            return true;
        }
        i = at + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_bytes_parse_or_are_refused_never_a_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Activity::parse(&body);
        }

        #[test]
        fn json_shaped_text_parses_or_is_refused_never_a_panic(
            s in r#"\{("(type|id|text|from|timestamp|channelData|conversation)":("[^"]*"|\d+|null|\{\}|\[\]|true),?){0,8}\}"#,
        ) {
            let _ = Activity::parse(s.as_bytes());
        }
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/teams/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path} must exist: {e}"))
    }

    #[test]
    fn the_contoso_docs_example_yields_its_ids() {
        let a = Activity::parse(&fixture("contoso-docs-example.json")).unwrap();
        assert_eq!(a.kind.as_deref(), Some("message"));
        assert!(a.id.is_some());
        assert!(a.text.as_deref().unwrap().contains("<at>"));
        assert!(a.team_id().is_some() && a.channel_id().is_some());
        assert!(a.timestamp().is_some());
    }

    #[test]
    fn the_real_emoji_payload_with_v3_nulls_is_accepted() {
        let a = Activity::parse(&fixture("real-outgoing-webhook-capcoins-emoji.json")).unwrap();
        assert_eq!(a.kind.as_deref(), Some("message"));
        assert!(a.text.as_deref().unwrap().contains("&nbsp;"));
        assert!(a.sender_aad_object_id().is_some());
        assert!(a.tenant_id().is_some());
        assert!(a.team_id().is_some());
    }

    #[test]
    fn the_tacv2_payload_takes_its_tenant_from_the_conversation() {
        let a = Activity::parse(&fixture("real-botframework-channel-mention-tacv2.json")).unwrap();
        assert!(a.conversation_id().unwrap().contains("@thread.tacv2"));
        assert!(a.tenant_id().is_some());
        assert_eq!(a.text.as_deref(), Some("<at>katie</at> Who is Ezra?\n"));
        assert!(a.timestamp().is_some(), "6-digit fractions parse");
    }

    #[test]
    fn the_older_docs_example_is_accepted() {
        let a = Activity::parse(&fixture("docs-example-inbound-2018-04.json")).unwrap();
        assert_eq!(a.kind.as_deref(), Some("message"));
    }

    #[test]
    fn fields_of_unexpected_types_are_treated_as_absent() {
        let a = Activity::parse(br#"{"type":5,"id":"x","from":"nobody","conversation":{"id":7},"channelData":[],"timestamp":"yesterday"}"#).unwrap();
        assert_eq!(a.kind, None);
        assert_eq!(a.id.as_deref(), Some("x"));
        assert_eq!(a.from, None);
        assert_eq!(a.conversation_id(), None);
        assert_eq!(a.team_id(), None);
        assert_eq!(a.timestamp(), None);
    }

    #[test]
    fn an_empty_object_is_an_activity_with_nothing_in_it() {
        assert_eq!(Activity::parse(b" {}").unwrap(), Activity::default());
    }

    #[test]
    fn non_objects_and_non_json_are_refused() {
        for bad in [&b"[]"[..], b"\"text\"", b"hello", b"{", b"\xff{}", b"42"] {
            assert!(
                matches!(Activity::parse(bad), Err(ActivityError::NotJson(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_nul_escape_is_refused_but_an_escaped_backslash_before_u0000_is_not() {
        assert_eq!(
            Activity::parse(br#"{"text":"a\u0000b"}"#),
            Err(ActivityError::NulCharacter)
        );
        assert!(Activity::parse(br#"{"text":"a\\u0000b"}"#).is_ok());
    }
}
