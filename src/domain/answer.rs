//! Answers to the questions asked in a thread (`history E-1042`, `view employee E-1042`,
//! `help`), built from the record's changes: pure, so every reply can be tested without a
//! database. Only changes that count are given (a change by someone not on the editors list
//! is in the log, not in the record's history). Every value typed by a user is escaped.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use super::{
    card::{self, escape, facts, text, Element, Links},
    reply::Reply,
};

/// Changes shown in the thread; the console has the rest.
pub const HISTORY_SHOWN: usize = 10;

/// One change of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who made it.
    pub who: Option<String>,
    /// `create`, `update` or `delete`.
    pub operation: String,
    /// Field → value, as typed.
    pub changes: Vec<(String, String)>,
    /// Its receipt.
    pub event_id: Uuid,
    /// Its personal fields were erased or expired.
    pub erased: bool,
}

/// A field's current value and who set it when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldState {
    /// The value.
    pub value: String,
    /// Who set it.
    pub by: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A record as its history leaves it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordState {
    /// Field → its current value.
    pub fields: BTreeMap<String, FieldState>,
    /// Who deleted it when, if its last word was a delete.
    pub deleted: Option<(Option<String>, DateTime<Utc>)>,
    /// Changes folded.
    pub changes: usize,
    /// Of which erased (their values are unknown).
    pub erased: usize,
}

/// A `changes` JSON object as field → value pairs (values that are not strings as JSON).
pub fn pairs(changes: &serde_json::Value) -> Vec<(String, String)> {
    let text = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    changes
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
        .unwrap_or_default()
}

/// Folds changes, oldest first: a create starts the record afresh, an update sets fields, a
/// delete marks it deleted (a later create brings it back).
pub fn fold(oldest_first: &[Change]) -> RecordState {
    let mut state = RecordState::default();
    for c in oldest_first {
        state.changes += 1;
        state.erased += usize::from(c.erased);
        match c.operation.as_str() {
            "create" => {
                state.fields.clear();
                state.deleted = None;
            }
            "delete" => {
                state.deleted = Some((c.who.clone(), c.at));
                continue;
            }
            _ => {}
        }
        for (field, value) in &c.changes {
            let set = FieldState {
                value: value.clone(),
                by: c.who.clone(),
                at: c.at,
            };
            state.fields.insert(field.clone(), set);
        }
    }
    state
}

fn when(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn who(w: &Option<String>) -> String {
    w.as_deref().map_or("someone".into(), |w| escape(w, 80))
}

fn receipt_line(event_id: Uuid) -> Element {
    text(format!("Receipt {event_id}"), None, Some("small"))
}

/// `history E-1042`: the last changes, newest first.
pub fn history(
    record: &str,
    newest_first: &[Change],
    receipt: Uuid,
    links: Option<&Links>,
) -> Reply {
    let shown = &newest_first[..newest_first.len().min(HISTORY_SHOWN)];
    let title = match shown.len() {
        0 => format!("No recorded changes of employee {}", escape(record, 64)),
        n if n < newest_first.len() => {
            format!("Employee {} — last {n} changes", escape(record, 64))
        }
        n => format!("Employee {} — {n} changes", escape(record, 64)),
    };
    let mut body = vec![text(title.clone(), Some("bolder"), None)];
    let mut lines = vec![title];
    for c in shown {
        let erased = if c.erased { " (erased)" } else { "" };
        let line = format!(
            "{} — {} by {}{erased} — receipt {}",
            when(c.at),
            c.operation.to_uppercase(),
            who(&c.who),
            c.event_id
        );
        body.push(text(line.clone(), Some("bolder"), Some("small")));
        if !c.changes.is_empty() {
            body.push(Element::FactSet {
                facts: facts(&c.changes),
            });
        }
        let values: Vec<String> = c
            .changes
            .iter()
            .map(|(f, v)| format!("{}={}", escape(f, 64), escape(v, 80)))
            .collect();
        lines.push(
            format!("{line} {}", values.join(" "))
                .trim_end()
                .to_string(),
        );
    }
    body.push(receipt_line(receipt));
    let actions = Links::open_record(links, "Full history", record);
    with_card(lines.join("\n\n"), body, actions, receipt)
}

/// `view employee E-1042`: the current fields, and who set each when.
pub fn view(record: &str, state: &RecordState, receipt: Uuid, links: Option<&Links>) -> Reply {
    let id = escape(record, 64);
    let title = match (&state.deleted, state.changes) {
        (_, 0) => format!("No recorded changes of employee {id}"),
        (Some((by, at)), _) => format!("Employee {id} — deleted by {} at {}", who(by), when(*at)),
        (None, _) => format!("Employee {id}"),
    };
    let mut body = vec![text(title.clone(), Some("bolder"), None)];
    let mut lines = vec![title];
    // Each value escaped on its own; the words around it are ours.
    let fields: Vec<card::Fact> = state
        .fields
        .iter()
        .map(|(f, s)| card::Fact {
            title: escape(f, 64),
            value: format!(
                "{} (set by {} at {})",
                escape(&s.value, 200),
                who(&s.by),
                when(s.at)
            ),
        })
        .collect();
    if !fields.is_empty() {
        lines.extend(fields.iter().map(|f| format!("{}: {}", f.title, f.value)));
        body.push(Element::FactSet { facts: fields });
    }
    if state.erased > 0 {
        let line = format!(
            "{} of its changes were erased; their values are not shown",
            state.erased
        );
        body.push(text(line.clone(), None, Some("small")));
        lines.push(line);
    }
    body.push(receipt_line(receipt));
    let actions = Links::open_record(links, "Open the record", record);
    with_card(lines.join("\n\n"), body, actions, receipt)
}

/// The grammar, with examples (the questions included).
pub const HELP: &str = "Write to me like this:\n\n\
    - create employee E-1042 name=\"Jane Doe\" title=Engineer\n\
    - update employee E-1042 title=\"Senior Engineer\" salary_band=7\n\
    - delete employee E-1042 reason=\"left the company\"\n\
    - view employee E-1042 (its current fields)\n\
    - history E-1042 (its last changes)\n\
    - help (this message)\n\n\
    Anything else is kept as a note. Values with spaces go in quotes.";

/// `help`.
pub fn help(receipt: Uuid) -> Reply {
    let body = vec![
        text("How to record HR changes".into(), Some("bolder"), None),
        // Our own text, not a user's: shown as written, so its list stays a list.
        text(HELP.into(), None, None),
        receipt_line(receipt),
    ];
    with_card(HELP.into(), body, Vec::new(), receipt)
}

/// The question could not be answered in time: the receipt, and where the answer is.
pub fn unavailable(record: Option<&str>, receipt: Uuid, links: Option<&Links>) -> Reply {
    let line = "Recorded. The answer could not be built in time; it is in the console".to_string();
    let body = vec![text(line.clone(), None, None), receipt_line(receipt)];
    let actions = record.map_or(Vec::new(), |r| {
        Links::open_record(links, "Open the record", r)
    });
    with_card(line, body, actions, receipt)
}

fn with_card(text: String, body: Vec<Element>, actions: Vec<card::Action>, receipt: Uuid) -> Reply {
    // Every reply's text ends with its receipt, as the receipts of operations do.
    let mut reply = Reply::text(format!("{text}\n\n— receipt {receipt}"));
    reply.attachments.push(card::card(body, actions));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(op: &str, who: &str, secs: i64, pairs: &[(&str, &str)]) -> Change {
        Change {
            at: DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap(),
            who: Some(who.into()),
            operation: op.into(),
            changes: pairs
                .iter()
                .map(|(f, v)| (f.to_string(), v.to_string()))
                .collect(),
            event_id: Uuid::from_u128(secs as u128),
            erased: false,
        }
    }

    #[test]
    fn the_state_is_the_fold_of_the_history() {
        let h = [
            change("create", "Ann", 1, &[("title", "Engineer"), ("band", "5")]),
            change("update", "Bob", 2, &[("title", "Lead")]),
        ];
        let s = fold(&h);
        assert_eq!(s.fields["title"].value, "Lead");
        assert_eq!(s.fields["title"].by.as_deref(), Some("Bob"));
        assert_eq!(s.fields["band"].by.as_deref(), Some("Ann"));
        let deleted = fold(&[h[0].clone(), h[1].clone(), change("delete", "Cy", 3, &[])]);
        assert_eq!(deleted.deleted.as_ref().unwrap().0.as_deref(), Some("Cy"));
        let again = fold(&[
            h[0].clone(),
            change("delete", "Cy", 3, &[]),
            change("create", "Di", 4, &[("title", "New")]),
        ]);
        assert!(again.deleted.is_none());
        assert_eq!(again.fields.len(), 1, "a create starts afresh");
    }

    #[test]
    fn history_shows_the_newest_first_and_links_to_the_rest() {
        let mut h: Vec<Change> = (0..12)
            .map(|i| change("update", "Ann", i, &[("n", "x")]))
            .collect();
        h.reverse();
        let links = Links {
            base: "https://hr.example".into(),
        };
        let r = history("E-1", &h, Uuid::nil(), Some(&links));
        assert!(
            r.text.starts_with("Employee E\\-1 — last 10 changes"),
            "{}",
            r.text
        );
        let card = serde_json::to_value(&r.attachments[0]).unwrap();
        let actions = card["content"]["actions"].as_array().unwrap();
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0]["type"], "Action.OpenUrl");
        assert_eq!(actions[0]["url"], "https://hr.example/console/records/E-1");
        let first = card["content"]["body"][1]["text"].as_str().unwrap();
        assert!(
            first.contains(&Uuid::from_u128(11).to_string()),
            "newest first: {first}"
        );
        let none = history("E-2", &[], Uuid::nil(), None);
        assert!(none.text.starts_with("No recorded changes"));
        let card = serde_json::to_value(&none.attachments[0]).unwrap();
        assert!(
            card["content"].get("actions").is_none(),
            "no PUBLIC_URL, no link"
        );
    }

    #[test]
    fn typed_values_cannot_inject_markdown() {
        let h = [change(
            "create",
            "[x](http://evil)",
            1,
            &[("title", "**boss** <at>CEO</at>")],
        )];
        let r = view("E-1", &fold(&h), Uuid::nil(), None);
        let all = serde_json::to_string(&r).unwrap();
        assert!(
            !all.contains("[x](") && !all.contains("**boss**") && !all.contains("<at>"),
            "{all}"
        );
    }

    #[test]
    fn an_answer_that_could_not_be_built_in_time_is_the_receipt_and_points_to_the_console() {
        let links = Links {
            base: "https://hr.example".into(),
        };
        let r = unavailable(Some("E-1"), Uuid::nil(), Some(&links));
        assert!(r.text.contains("it is in the console"), "{}", r.text);
        assert!(
            r.text.ends_with(&format!("— receipt {}", Uuid::nil())),
            "{}",
            r.text
        );
        let card = serde_json::to_value(&r.attachments[0]).unwrap();
        assert_eq!(
            card["content"]["actions"][0]["url"],
            "https://hr.example/console/records/E-1"
        );
    }

    #[test]
    fn help_lists_the_questions() {
        let r = help(Uuid::nil());
        assert!(r.text.contains("history E-1042") && r.text.contains("view employee E-1042"));
    }
}
