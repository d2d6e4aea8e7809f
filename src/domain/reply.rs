//! The message Teams shows in the thread: a Bot Framework message activity built with serde
//! (message text holds quotes and newlines), carrying the receipt.

use serde::Serialize;
use uuid::Uuid;

use super::hr_command;

/// `{"type":"message","text":…}`, the simplest reply Teams accepts from an outgoing webhook.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Reply {
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Markdown-ish text shown in Teams.
    pub text: String,
}

impl Reply {
    /// A text reply.
    pub fn text(text: String) -> Self {
        Self {
            kind: "message",
            text,
        }
    }

    /// The receipt for a stored activity: what the HR audit log will record, and the id.
    /// Built from the stored text and id only, so a repeat delivery gets the same reply.
    pub fn receipt(message_text: Option<&str>, event_id: Uuid) -> Self {
        let cmd = hr_command::parse(message_text.unwrap_or_default());
        Self::text(format!("{} — receipt {event_id}", cmd.summary()))
    }
}
