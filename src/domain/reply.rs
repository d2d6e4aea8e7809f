//! The message Teams shows in the thread: a Bot Framework message activity built with serde
//! (message text holds quotes and newlines), carrying the receipt: always as text (for
//! clients that show no card), and for a recorded operation also as an Adaptive Card.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{
    card::{self, Attachment},
    hr_command,
};

/// `{"type":"message","text":…,"attachments":[card]}`, as Teams takes it from an outgoing
/// webhook.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Reply {
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Markdown-ish text shown in Teams.
    pub text: String,
    /// The card, when there is one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// Who sent an activity and when, for the card.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sender<'a> {
    /// Display name.
    pub name: Option<&'a str>,
    /// Teams' timestamp.
    pub at: Option<DateTime<Utc>>,
}

impl Reply {
    /// A text reply.
    pub fn text(text: String) -> Self {
        Self {
            kind: "message",
            text,
            attachments: Vec::new(),
        }
    }

    /// The receipt with its card (for an operation; a note stays text).
    pub fn receipt_card(message_text: Option<&str>, sender: Sender<'_>, event_id: Uuid) -> Self {
        let cmd = hr_command::parse(message_text.unwrap_or_default());
        let mut reply = Self::text(format!("{} — receipt {event_id}", cmd.summary()));
        let card = card::receipt_card(&cmd, sender.name, sender.at, event_id);
        reply.attachments.extend(card);
        reply
    }

    /// The receipt for a stored activity: what the HR audit log will record, and the id.
    /// Built from the stored text and id only, so a repeat delivery gets the same reply.
    pub fn receipt(message_text: Option<&str>, event_id: Uuid) -> Self {
        let cmd = hr_command::parse(message_text.unwrap_or_default());
        Self::text(format!("{} — receipt {event_id}", cmd.summary()))
    }
}
