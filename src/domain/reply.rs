//! The message Teams shows in the thread: a Bot Framework message activity built with serde
//! (message text holds quotes and newlines), carrying the receipt: always as text (for
//! clients that show no card), and for a recorded operation also as an Adaptive Card.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{
    card::{self, Attachment},
    hr_command::HrCommand,
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

/// How replies look: cards or text only, and where the console is (for links).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Style {
    /// Cards beside the text (`REPLY_FORMAT=card`).
    pub card: bool,
    /// The console's base URL (`PUBLIC_URL`); without it, no links.
    pub links: Option<card::Links>,
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

    /// The receipt for a stored activity: what the HR audit log will record, and the id;
    /// with `card`, an operation's receipt also comes as a card. Built from what was stored
    /// (text, sender, decision), so a repeat delivery gets the same reply. A change by
    /// someone who is not an HR editor (`authorized` false) is answered plainly, in text.
    pub fn receipt(
        cmd: &HrCommand,
        authorized: bool,
        sender: Sender<'_>,
        event_id: Uuid,
        style: &Style,
    ) -> Self {
        if !authorized {
            return Self::text(format!(
                "Not recorded as a change: you are not an HR editor for this team — receipt {event_id}"
            ));
        }
        let mut reply = Self::text(format!("{} — receipt {event_id}", cmd.summary()));
        if style.card {
            let links = style.links.as_ref();
            let card = card::receipt_card(cmd, sender.name, sender.at, event_id, links);
            reply.attachments.extend(card);
        }
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::hr_command::parse;

    #[test]
    fn a_change_by_someone_not_an_editor_is_answered_plainly_with_its_receipt() {
        let cmd = parse("update employee E-1042 title=Boss");
        let id = Uuid::nil();
        let card = Style {
            card: true,
            links: None,
        };
        let r = Reply::receipt(&cmd, false, Sender::default(), id, &card);
        assert_eq!(
            r.text,
            format!(
                "Not recorded as a change: you are not an HR editor for this team — receipt {id}"
            )
        );
        assert!(r.attachments.is_empty(), "no card claims it was recorded");
        let ok = Reply::receipt(&cmd, true, Sender::default(), id, &card);
        assert!(ok.text.starts_with("Recorded UPDATE of employee E-1042"));
        assert_eq!(ok.attachments.len(), 1);
        let text = Reply::receipt(&cmd, true, Sender::default(), id, &Style::default());
        assert!(text.attachments.is_empty());
    }
}
