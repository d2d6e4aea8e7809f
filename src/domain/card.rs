//! The receipt as an Adaptive Card (the reply an outgoing webhook may give besides text):
//! what was recorded — the operation, the record, each changed field — who and when, and the
//! receipt, and (with `PUBLIC_URL`) a link to the record's page in the console. Built with
//! serde types, never from string templates. Outgoing webhooks may use no action but
//! `Action.OpenUrl`: [`Action`] has no other variant, so no other can be built.
//!
//! Everything a user typed is escaped for the card's markdown (every ASCII punctuation mark
//! gets a backslash, as CommonMark allows), so it cannot become a link, a mention or
//! formatting; long values are cut so the reply stays far below Teams' 28 KB.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::hr_command::HrCommand;

/// Adaptive Card content type in a reply's `attachments`.
pub const CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";

/// Longest value shown, in characters; the rest is cut with `…`.
const MAX_VALUE: usize = 300;
/// Most fields shown; more are counted in a last line.
const MAX_FACTS: usize = 25;

/// One attachment of a reply.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// [`CONTENT_TYPE`].
    pub content_type: &'static str,
    /// The card.
    pub content: AdaptiveCard,
}

/// An Adaptive Card 1.4.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AdaptiveCard {
    /// Always `AdaptiveCard`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The schema URL.
    #[serde(rename = "$schema")]
    pub schema: &'static str,
    /// Always `1.4`.
    pub version: &'static str,
    /// What the card shows.
    pub body: Vec<Element>,
    /// Links (only `Action.OpenUrl` exists).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
}

/// A card action: outgoing webhooks allow `Action.OpenUrl` only.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "type")]
pub enum Action {
    /// Opens a URL in the browser.
    #[serde(rename = "Action.OpenUrl")]
    OpenUrl {
        /// The button's label.
        title: String,
        /// Where it goes.
        url: String,
    },
}

/// Where the console lives (`PUBLIC_URL`), for links from cards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Links {
    /// The service's public base URL, no trailing slash.
    pub base: String,
}

impl Links {
    /// The record's page (record ids are `[A-Za-z0-9_-]`: safe in a path).
    pub fn record(&self, record: &str) -> String {
        format!("{}/console/records/{record}", self.base)
    }

    /// A link to the record's page.
    pub fn open_record(links: Option<&Links>, title: &str, record: &str) -> Vec<Action> {
        links
            .map(|l| Action::OpenUrl {
                title: title.into(),
                url: l.record(record),
            })
            .into_iter()
            .collect()
    }
}

/// A card of these elements and actions.
pub fn card(body: Vec<Element>, actions: Vec<Action>) -> Attachment {
    Attachment {
        content_type: CONTENT_TYPE,
        content: AdaptiveCard {
            kind: "AdaptiveCard",
            schema: "http://adaptivecards.io/schemas/adaptive-card.json",
            version: "1.4",
            body,
            actions,
        },
    }
}

/// A card element.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "type")]
pub enum Element {
    /// A line of text.
    TextBlock {
        /// The text (markdown; user input escaped).
        text: String,
        /// `bolder` for the title.
        #[serde(skip_serializing_if = "Option::is_none")]
        weight: Option<&'static str>,
        /// `small` for the receipt.
        #[serde(skip_serializing_if = "Option::is_none")]
        size: Option<&'static str>,
        /// Always true: long text wraps.
        wrap: bool,
    },
    /// Title/value pairs.
    FactSet {
        /// The facts.
        facts: Vec<Fact>,
    },
}

/// One title/value pair.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Fact {
    /// The field name.
    pub title: String,
    /// Its value.
    pub value: String,
}

/// User text made literal in the card's markdown, cut to `max` characters.
pub fn escape(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 2));
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        match c {
            c if c.is_ascii_punctuation() => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A wrapping text block.
pub fn text(text: String, weight: Option<&'static str>, size: Option<&'static str>) -> Element {
    Element::TextBlock {
        text,
        weight,
        size,
        wrap: true,
    }
}

/// The card for a recorded operation; `None` for a note (its reply is text).
pub fn receipt_card(
    cmd: &HrCommand,
    who: Option<&str>,
    when: Option<DateTime<Utc>>,
    event_id: Uuid,
    links: Option<&Links>,
) -> Option<Attachment> {
    let record = cmd.record_id.as_deref()?;
    let op = cmd.operation.as_str().to_uppercase();
    let entity = cmd.entity.as_deref().unwrap_or("employee");
    let title = format!("Recorded {op} of {entity} {}", escape(record, 64));
    let facts = facts(&cmd.changes);
    let by = who.map_or("someone".to_string(), |w| escape(w, 80));
    let at = when.map(|t| format!(" at {}", t.to_rfc3339_opts(SecondsFormat::Secs, true)));
    let mut body = vec![text(title, Some("bolder"), None)];
    if !facts.is_empty() {
        body.push(Element::FactSet { facts });
    }
    body.push(text(
        format!("By {by}{}", at.unwrap_or_default()),
        None,
        None,
    ));
    body.push(text(format!("Receipt {event_id}"), None, Some("small")));
    let actions = Links::open_record(links, "Open the record", record);
    Some(card(body, actions))
}

/// The facts of changed fields, cut to the card's limits.
pub fn facts(changes: &[(String, String)]) -> Vec<Fact> {
    let mut facts: Vec<Fact> = changes
        .iter()
        .take(MAX_FACTS)
        .map(|(f, v)| Fact {
            title: escape(f, 64),
            value: escape(v, MAX_VALUE),
        })
        .collect();
    if changes.len() > MAX_FACTS {
        let more = changes.len() - MAX_FACTS;
        facts.push(Fact {
            title: "…".into(),
            value: format!("{more} more fields"),
        });
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::hr_command::parse;

    #[test]
    fn user_text_cannot_become_a_link_a_mention_or_formatting() {
        let e = escape("[click](http://evil) <at>Boss</at> **bold** _x_", 200);
        assert!(
            !e.contains("[click]") && !e.contains("](") && !e.contains("<at>"),
            "{e}"
        );
        assert!(e.contains("\\[click\\]\\(http\\:\\/\\/evil\\)") && e.contains("\\*\\*bold"));
        assert_eq!(escape("Senior Engineer", 200), "Senior Engineer");
        assert_eq!(escape("abcdef", 3), "abc…");
    }

    #[test]
    fn an_update_becomes_a_card_of_its_fields_and_a_note_none() {
        let cmd = parse(r#"<at>HR</at> update employee E-1042 title="Senior Engineer" band=7"#);
        let card = receipt_card(&cmd, Some("Jane Doe"), None, Uuid::nil(), None).unwrap();
        let json = serde_json::to_value(&card).unwrap();
        assert_eq!(json["contentType"], CONTENT_TYPE);
        assert_eq!(json["content"]["version"], "1.4");
        assert_eq!(
            json["content"]["body"][1]["facts"][0]["value"],
            "Senior Engineer"
        );
        assert!(
            json["content"].get("actions").is_none(),
            "no action at all for now"
        );
        assert!(receipt_card(&parse("hello"), None, None, Uuid::nil(), None).is_none());
    }

    #[test]
    fn a_huge_update_stays_far_below_teams_28_kb() {
        let fields: String = (0..200)
            .map(|i| format!(" f{i}=\"{}\"", "x".repeat(2000)))
            .collect();
        let cmd = parse(&format!("update employee E-1{fields}"));
        let card = receipt_card(&cmd, Some(&"n".repeat(5000)), None, Uuid::nil(), None).unwrap();
        let size = serde_json::to_vec(&card).unwrap().len();
        assert!(size < 16 * 1024, "{size} bytes");
    }
}
