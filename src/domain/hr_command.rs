//! HR command grammar: turns the `text` of a Teams outgoing-webhook message
//! into an [`HrCommand`]. Pure functions, no I/O.
//!
//! Teams delivers HTML-ish text, so [`plain_text`] first recovers what the
//! person typed and [`parse`] then applies this grammar:
//!
//! ```text
//! command   := verb ws entity ws record_id (ws pair)* ws?
//! verb      := create|add|new | read|view|show|get
//!            | update|edit|change|set | delete|remove     (case-insensitive)
//! entity    := employee | employees                       (case-insensitive)
//! record_id := [A-Za-z0-9_-]{1,64}
//! pair      := field '=' value
//! field     := [A-Za-z_][A-Za-z0-9_]{0,63}                (stored lowercase)
//! value     := bare | quoted
//! bare      := [^\s"]+
//! quoted    := '"' ( [^"\\] | '\"' | '\\' )* '"'
//! ```
//!
//! Teams clients autocorrect `"` into typographic quotes, so `“` and `”` are
//! quote delimiters too: any of the three opens or closes a quoted value.
//! Inside quotes a backslash escapes a quote or a backslash and is otherwise
//! kept literally.
//!
//! Questions are answered in the thread (and recorded like every message):
//!
//! ```text
//! question  := history ws [entity ws] record_id ws?     (the record's last changes; a read)
//!            | verb-read ws entity ws record_id ws?      (`view employee E-1042`: its fields)
//!            | help | ?                                  (this grammar; a note)
//! ```
//!
//! Parsing never fails. A message whose first word is not a verb is ordinary
//! chat and becomes a [`Operation::Note`] without a hint; one that starts with
//! a verb but is malformed becomes a note whose `hint` says what is wrong, so
//! the reply can help the user fix it.

use std::fmt;

use serde_json::Value;

use super::markup::plain_text;

/// Longer record ids or field names are surely typos, not data.
const MAX_IDENT: usize = 64;

/// Shown in replies to notes so users learn the syntax by example.
const EXAMPLE: &str = r#"update employee E-1042 title="Senior Engineer""#;

/// What a message asks to do with an employee record; `Note` for plain chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Create a record.
    Create,
    /// Look a record up.
    Read,
    /// Change fields of a record.
    Update,
    /// Delete a record.
    Delete,
    /// Not an operation: the message is kept as a note.
    Note,
    /// An HR editor was added to a webhook's list (written by `teams-bridge editors add`,
    /// never by the grammar).
    Grant,
    /// An HR editor was removed (`teams-bridge editors remove`).
    Revoke,
    /// Personal data was erased (`teams-bridge erase`).
    Erase,
}

impl Operation {
    /// The lowercase name, as stored and as used in filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Read => "read",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Note => "note",
            Self::Grant => "grant",
            Self::Revoke => "revoke",
            Self::Erase => "erase",
        }
    }

    /// Whether it changes a record: only these need an HR editor, when a webhook has a list.
    pub fn is_change(self) -> bool {
        matches!(self, Self::Create | Self::Update | Self::Delete)
    }

    /// Parses an exact lowercase name for CLI/API filters; synonyms and other
    /// casings are rejected so a filter means one thing only.
    pub fn parse_name(s: &str) -> Option<Operation> {
        // The serde names are the canonical ones; reuse them to avoid a second list.
        serde_json::from_value(Value::from(s)).ok()
    }

    fn from_verb(word: &str) -> Option<Operation> {
        match word.to_lowercase().as_str() {
            "create" | "add" | "new" => Some(Self::Create),
            "read" | "view" | "show" | "get" => Some(Self::Read),
            "update" | "edit" | "change" | "set" => Some(Self::Update),
            "delete" | "remove" => Some(Self::Delete),
            _ => None,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A question the reply answers from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Question {
    /// `history E-1042`: the record's last changes, newest first.
    History,
    /// `view employee E-1042`: the record's current fields.
    View,
    /// `help`: the grammar.
    Help,
}

/// The result of reading one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HrCommand {
    /// A question to answer in the thread, if it is one.
    pub question: Option<Question>,
    /// What the message asks for; `Note` when it is not an operation.
    pub operation: Operation,
    /// `Some("employee")` for operations, `None` for notes.
    pub entity: Option<String>,
    /// The record the operation targets; `None` for notes.
    pub record_id: Option<String>,
    /// Field → value pairs in the order typed; field names lowercased.
    pub changes: Vec<(String, String)>,
    /// The text as typed: leading mentions and markup removed, entities
    /// decoded, whitespace trimmed.
    pub text: String,
    /// For a note: why it is not an operation (short, user-facing).
    pub hint: Option<String>,
}

impl HrCommand {
    /// The changes as a JSON object (field → string value), for a jsonb column.
    pub fn changes_json(&self) -> Value {
        let pair = |(f, v): &(String, String)| (f.clone(), Value::String(v.clone()));
        Value::Object(self.changes.iter().map(pair).collect())
    }

    /// Short confirmation line for the Teams reply, e.g.
    /// `Recorded UPDATE of employee E-1042 (title, salary_band)`.
    pub fn summary(&self) -> String {
        if self.operation == Operation::Note {
            let hint = self.hint.as_ref().map(|h| format!(" ({h})"));
            let hint = hint.unwrap_or_default();
            return format!("Recorded as a note{hint}. To record a change, write e.g.: {EXAMPLE}");
        }
        let op = self.operation.as_str().to_uppercase();
        let entity = self.entity.as_deref().unwrap_or("employee");
        let id = self.record_id.as_deref().unwrap_or_default();
        let fields: Vec<&str> = self.changes.iter().map(|(f, _)| f.as_str()).collect();
        let mut line = format!("Recorded {op} of {entity} {id}");
        if !fields.is_empty() {
            line += &format!(" ({})", fields.join(", "));
        }
        line
    }
}

/// Parse a Teams message text (HTML as delivered) into a [`HrCommand`].
/// Never fails: anything that is not an operation is a note.
pub fn parse(html: &str) -> HrCommand {
    let text = plain_text(html);
    let first = split_word(&text).0;
    if (first.eq_ignore_ascii_case("help") && split_word(&text).1.trim().is_empty()) || text == "?"
    {
        return HrCommand {
            question: Some(Question::Help),
            operation: Operation::Note,
            entity: None,
            record_id: None,
            changes: Vec::new(),
            text,
            hint: None,
        };
    }
    let history = first.eq_ignore_ascii_case("history");
    let parsed = match history {
        true => parse_history(&text),
        false => parse_operation(&text),
    };
    let (operation, record_id, changes, hint) = match parsed {
        Ok((op, id, changes)) => (op, Some(id), changes, None),
        Err(hint) => (Operation::Note, None, Vec::new(), hint),
    };
    let question = match operation {
        Operation::Read if history => Some(Question::History),
        Operation::Read => Some(Question::View),
        _ => None,
    };
    HrCommand {
        question,
        operation,
        entity: record_id.as_ref().map(|_| "employee".to_string()),
        record_id,
        changes,
        text,
        hint,
    }
}

type Parsed = (Operation, String, Vec<(String, String)>);

/// `history [employee] E-1042`: a read of the record.
fn parse_history(text: &str) -> Result<Parsed, Option<String>> {
    let rest = split_word(text).1.trim_start();
    let (word, after) = split_word(rest);
    let rest = if is_entity(word) {
        after.trim_start()
    } else {
        rest
    };
    let (record_id, rest) = record_id(rest).map_err(Some)?;
    if !rest.trim().is_empty() {
        return Err(Some(
            "history takes a record id only (history E-1042)".into(),
        ));
    }
    Ok((Operation::Read, record_id, Vec::new()))
}

/// `Err(None)` means ordinary chat, `Err(Some(hint))` a malformed command.
fn parse_operation(text: &str) -> Result<Parsed, Option<String>> {
    if text.is_empty() {
        return Err(Some("empty message".to_string()));
    }
    let (verb, rest) = split_word(text);
    let (entity, rest) = split_word(rest.trim_start());
    let Some(operation) = Operation::from_verb(verb) else {
        // "promote employee E-1" is clearly meant as a command, so say why it
        // was not taken as one; "Who is Ezra?" is just chat.
        return Err(is_entity(entity).then(|| format!("unknown verb {}", quote(verb))));
    };
    if entity.is_empty() {
        return Err(Some("missing entity (expected employee)".to_string()));
    }
    if !is_entity(entity) {
        let entity = quote(entity);
        return Err(Some(format!("unknown entity {entity} (expected employee)")));
    }
    let (record_id, rest) = record_id(rest.trim_start()).map_err(Some)?;
    let changes = pairs(rest).map_err(Some)?;
    if changes.is_empty() && matches!(operation, Operation::Create | Operation::Update) {
        return Err(Some(format!("{operation} needs at least one field=value")));
    }
    Ok((operation, record_id, changes))
}

fn is_entity(word: &str) -> bool {
    word.eq_ignore_ascii_case("employee") || word.eq_ignore_ascii_case("employees")
}

fn is_quote(c: char) -> bool {
    matches!(c, '"' | '“' | '”')
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Quotes user input for a hint, shortened so the reply stays one line. The hint is shown
/// in Teams as markdown: the characters that make links, mentions and formatting are
/// escaped, so typed text is shown as typed.
fn quote(s: &str) -> String {
    const MAX: usize = 32;
    let cut = s.char_indices().nth(MAX).map_or(s, |(i, _)| &s[..i]);
    let more = if cut.len() < s.len() { "…" } else { "" };
    let mut shown = String::with_capacity(cut.len() + 2);
    for c in cut.chars() {
        if matches!(
            c,
            '[' | ']' | '(' | ')' | '*' | '_' | '`' | '<' | '>' | '\\' | '~' | '#'
        ) {
            shown.push('\\');
        }
        shown.push(c);
    }
    format!("\"{shown}{more}\"")
}

/// Splits off the first word; the rest keeps its leading whitespace.
fn split_word(s: &str) -> (&str, &str) {
    s.split_at(s.find(char::is_whitespace).unwrap_or(s.len()))
}

/// Reads a quoted string whose opening quote is already stripped; returns
/// the unescaped content and the text after the closing quote.
fn unquote(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            let escaped = chars.next_if(|&(_, n)| n == '\\' || is_quote(n));
            out.push(escaped.map_or('\\', |(_, n)| n));
        } else if is_quote(c) {
            return Some((out, &s[i + c.len_utf8()..]));
        } else {
            out.push(c);
        }
    }
    None
}

fn record_id(s: &str) -> Result<(String, &str), String> {
    let (word, rest) = split_word(s);
    let (id, rest) = match s.strip_prefix(is_quote) {
        // A quoted id is never valid, but reading it whole gives a better
        // hint (`invalid record id "E 10!"`) than complaining about `10!"`.
        Some(quoted) => unquote(quoted).ok_or("unterminated quote in record id")?,
        None if word.is_empty() || word.contains('=') => Err("missing record id")?,
        None => (word.to_string(), rest),
    };
    let valid = id.chars().all(|c| is_ident_char(c) || c == '-');
    if !valid || id.is_empty() || id.len() > MAX_IDENT {
        return Err(format!("invalid record id {}", quote(&id)));
    }
    Ok((id, rest))
}

fn pairs(mut rest: &str) -> Result<Vec<(String, String)>, String> {
    let mut changes: Vec<(String, String)> = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(changes);
        }
        let (word, _) = split_word(rest);
        let Some(eq) = word.find('=').filter(|&eq| eq > 0) else {
            return Err(format!("expected field=value, found {}", quote(word)));
        };
        let field = &word[..eq];
        let starts_ok = field.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        if !starts_ok || !field.chars().all(is_ident_char) || field.len() > MAX_IDENT {
            return Err(format!("invalid field name {}", quote(field)));
        }
        let field = field.to_ascii_lowercase();
        let (value, after) = value(&rest[eq + 1..], &field)?;
        if changes.iter().any(|(f, _)| *f == field) {
            return Err(format!("field {} given twice", quote(&field)));
        }
        changes.push((field, value));
        rest = after;
    }
}

fn value<'a>(s: &'a str, field: &str) -> Result<(String, &'a str), String> {
    let field = quote(field);
    if let Some(quoted) = s.strip_prefix(is_quote) {
        let Some((value, rest)) = unquote(quoted) else {
            return Err(format!("unterminated quote in value of {field}"));
        };
        if rest.starts_with(|c: char| !c.is_whitespace()) {
            return Err(format!("unexpected text after quoted value of {field}"));
        }
        return Ok((value, rest));
    }
    let (value, rest) = split_word(s);
    if value.is_empty() {
        return Err(format!("missing value for {field}"));
    }
    if value.contains('"') {
        return Err(format!("unexpected quote in value of {field}"));
    }
    Ok((value.to_string(), rest))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_message_is_an_operation_or_a_note_and_never_longer_than_typed(
            s in r#"(create|update|delete|read|employee|E-1|[a-z]{1,8}=|"|“|\\| |[a-zA-Z0-9_-]{1,10}|[^\x00]){0,40}"#,
        ) {
            let c = parse(&s);
            prop_assert!(c.text.len() <= s.len());
            prop_assert!(c.changes.iter().all(|(f, v)| f.len() <= 64 && v.len() <= s.len()));
            prop_assert_eq!(c.operation == Operation::Note, c.record_id.is_none());
        }
    }
    use Operation::{Create, Delete, Note, Read, Update};

    const AT: &str = "<at>HR Audit</at> ";
    const EMOJI_MENTION: &str =
        "<at>Cap🍺<img alt=\"🍺\" src=\"https://statics.teams.microsoft.com/\
        evergreen-assets/skype/v2/beer/20.png\" height=\"16\" width=\"16\" style=\"\
        vertical-align:-3px; width:16px; height:16px;\"></at>&nbsp;hello&nbsp;øl\n";

    /// Parses `tail` after the usual bot mention.
    fn cmd(tail: &str) -> HrCommand {
        parse(&format!("{AT}{tail}"))
    }

    fn hint(tail: &str) -> String {
        let c = cmd(tail);
        assert_eq!(c.operation, Note, "{tail}");
        c.hint.unwrap_or_default()
    }

    fn val(tail: &str, field: &str) -> String {
        let c = cmd(tail);
        let found = c.changes.iter().find(|(f, _)| f == field);
        found.unwrap_or_else(|| panic!("{c:?}")).1.clone()
    }

    fn ch(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|&(f, v)| (f.into(), v.into())).collect()
    }

    #[test]
    fn the_create_example_records_fields_in_order() {
        let c = cmd(r#"create employee E-1042 name="Jane Doe" dept=Finance"#);
        assert_eq!(c.operation, Create);
        assert_eq!(c.entity.as_deref(), Some("employee"));
        assert_eq!(c.record_id.as_deref(), Some("E-1042"));
        assert_eq!(c.changes, ch(&[("name", "Jane Doe"), ("dept", "Finance")]));
        assert_eq!(c.hint, None);
    }

    #[test]
    fn the_update_example_records_title_and_salary_band() {
        let c = cmd(r#"update employee E-1042 title="Senior Engineer" salary_band=7"#);
        let want = ch(&[("title", "Senior Engineer"), ("salary_band", "7")]);
        assert_eq!((c.operation, c.changes), (Update, want));
    }

    #[test]
    fn the_view_example_is_a_read_without_changes() {
        let c = cmd("view employee E-1042");
        assert_eq!((c.operation, c.changes), (Read, vec![]));
        assert_eq!(c.record_id.as_deref(), Some("E-1042"));
    }

    #[test]
    fn delete_keeps_the_reason_but_needs_no_fields() {
        let c = cmd(r#"delete employee E-1042 reason="left the company""#);
        let want = ch(&[("reason", "left the company")]);
        assert_eq!((c.operation, c.changes), (Delete, want));
        assert_eq!(parse("remove employee X_9").operation, Delete);
    }

    #[test]
    fn every_verb_synonym_maps_to_its_operation() {
        #[rustfmt::skip]
        let table = [
            ("create", Create), ("add", Create), ("new", Create),
            ("read", Read), ("view", Read), ("show", Read), ("get", Read),
            ("update", Update), ("edit", Update), ("change", Update), ("set", Update),
            ("delete", Delete), ("remove", Delete),
        ];
        for (verb, op) in table {
            let c = cmd(&format!("{verb} employee E-1 a=b"));
            assert_eq!(c.operation, op, "{verb}");
        }
    }

    #[test]
    fn verbs_and_entities_ignore_case_while_ids_and_values_keep_it() {
        let c = cmd("UPDATE Employees e-1 Title=Dr");
        assert_eq!((c.operation, c.record_id.as_deref()), (Update, Some("e-1")));
        assert_eq!(c.changes, ch(&[("title", "Dr")]));
    }

    #[test]
    fn nbsp_after_the_mention_works_like_a_space() {
        let c = parse("<at>HR Audit</at>&nbsp;read employee E-1042");
        let want = (Read, "read employee E-1042");
        assert_eq!((c.operation, c.text.as_str()), want);
    }

    #[test]
    fn a_trailing_newline_is_trimmed() {
        let c = cmd("delete employee E-1042\r\n");
        let want = (Delete, "delete employee E-1042");
        assert_eq!((c.operation, c.text.as_str()), want);
    }

    #[test]
    fn paragraph_and_div_wrappers_are_removed() {
        for html in [
            "<p><at>HR</at>&nbsp;create employee E-1 name=&quot;Jane Doe&quot;</p>",
            "<div><at>HR</at> create employee E-1 name=\"Jane Doe\"</div>",
        ] {
            let c = parse(html);
            assert_eq!(c.changes, ch(&[("name", "Jane Doe")]), "{html}");
            assert_eq!(c.text, r#"create employee E-1 name="Jane Doe""#);
        }
    }

    #[test]
    fn an_emoji_image_inside_the_mention_is_removed_with_it() {
        let c = parse(EMOJI_MENTION);
        assert_eq!((c.operation, c.hint), (Note, None));
        assert_eq!(c.text, "hello øl");
    }

    #[test]
    fn a_question_is_a_note_without_a_hint() {
        let c = parse("<at>katie</at> Who is Ezra?\n");
        assert_eq!((c.text.as_str(), c.hint), ("Who is Ezra?", None));
        assert_eq!((c.operation, c.entity, c.record_id), (Note, None, None));
    }

    #[test]
    fn later_mentions_are_kept_as_names() {
        let html = format!("{AT}ping <at>Jane Doe</at>!");
        assert_eq!(plain_text(&html), "ping Jane Doe!");
        let boss = val("set employee E-1 boss=\"<at>Ann Lee</at>\"", "boss");
        assert_eq!(boss, "Ann Lee");
    }

    #[test]
    fn interior_whitespace_is_kept_as_typed() {
        let title = val("set employee E-1 title=\"Senior  \tEngineer\"", "title");
        assert_eq!(title, "Senior  \tEngineer");
        assert_eq!(plain_text("a&nbsp;&nbsp; b\r\nc"), "a   b\nc");
    }

    #[test]
    fn a_quoted_value_keeps_spaces_commas_and_escaped_quotes_and_may_be_empty() {
        let note = val(r#"update employee E-1 note="a, b = c \"d\"""#, "note");
        assert_eq!(note, r#"a, b = c "d""#);
        assert_eq!(val("update employee E-1 title=\"\"", "title"), "");
    }

    #[test]
    fn backslashes_escape_only_quotes_and_backslashes() {
        let tail = r#"update employee E-1 path="C:\\dir\new" re=a\b"#;
        assert_eq!(val(tail, "path"), r"C:\dir\new");
        assert_eq!(val(tail, "re"), r"a\b");
    }

    #[test]
    fn typographic_quotes_delimit_values() {
        let c = cmd("update employee E-1 title=“Senior Engineer” band=7");
        let want = ch(&[("title", "Senior Engineer"), ("band", "7")]);
        assert_eq!(c.changes, want);
    }

    #[test]
    fn an_empty_message_is_a_note_with_a_hint() {
        assert_eq!(hint("&nbsp;<p> </p>"), "empty message");
        assert_eq!(parse("").hint.as_deref(), Some("empty message"));
    }

    #[test]
    fn an_unknown_verb_before_employee_gets_a_hint() {
        let h = hint("promote employee E-1 band=8");
        assert_eq!(h, r#"unknown verb "promote""#);
    }

    #[test]
    fn a_missing_entity_or_record_id_is_explained() {
        assert_eq!(hint("update"), "missing entity (expected employee)");
        assert_eq!(hint("update employee"), "missing record id");
        assert_eq!(hint("update employee title=x"), "missing record id");
    }

    #[test]
    fn an_unknown_entity_is_explained() {
        let h = hint("delete car E-1");
        assert_eq!(h, r#"unknown entity "car" (expected employee)"#);
    }

    #[test]
    fn an_invalid_record_id_is_explained() {
        let h = hint(r#"read employee "E 10!""#);
        assert_eq!(h, r#"invalid record id "E 10!""#);
        assert_eq!(hint("read employee E10!"), r#"invalid record id "E10!""#);
        let long = hint(&format!("read employee {}", "E".repeat(65)));
        assert!(long.starts_with("invalid record id"));
    }

    #[test]
    fn an_unterminated_quote_is_explained() {
        let h = hint(r#"create employee E-1 name="Jane Doe"#);
        assert_eq!(h, r#"unterminated quote in value of "name""#);
    }

    #[test]
    fn a_word_without_equals_is_explained() {
        let h = hint("update employee E-1 title=x foo");
        assert_eq!(h, r#"expected field=value, found "foo""#);
        let h = hint("update employee E-1 =x");
        assert_eq!(h, r#"expected field=value, found "=x""#);
    }

    #[test]
    fn a_repeated_field_is_explained_even_in_another_case() {
        let h = hint("update employee E-1 title=a Title=b");
        assert_eq!(h, r#"field "title" given twice"#);
    }

    #[test]
    fn create_and_update_need_a_field() {
        let h = hint("create employee E-1");
        assert_eq!(h, "create needs at least one field=value");
        let h = hint("edit employee E-1\n");
        assert_eq!(h, "update needs at least one field=value");
    }

    #[test]
    fn bad_field_names_and_values_are_explained() {
        let h = hint("set employee E-1 9lives=x");
        assert_eq!(h, r#"invalid field name "9lives""#);
        assert_eq!(hint("set employee E-1 a="), r#"missing value for "a""#);
        let h = hint("set employee E-1 a=\"x\"y");
        assert_eq!(h, r#"unexpected text after quoted value of "a""#);
        let h = hint("set employee E-1 a=x\"y\"");
        assert_eq!(h, r#"unexpected quote in value of "a""#);
    }

    #[test]
    fn typed_markdown_in_a_hint_is_shown_as_typed() {
        let h = hint("promote employee [x](http://e) band=1");
        assert_eq!(h, r#"unknown verb "promote""#);
        let h = hint("update employee E-1 [x](http://e)");
        assert_eq!(h, r#"expected field=value, found "\[x\]\(http://e\)""#);
    }

    #[test]
    fn long_input_in_hints_is_shortened() {
        let h = hint(&format!("update {} E-1", "x".repeat(100)));
        let want = format!("unknown entity \"{}…\" (expected employee)", "x".repeat(32));
        assert_eq!(h, want);
    }

    #[test]
    fn summary_lists_changed_fields_in_order_and_omits_empty_parentheses() {
        let c = cmd(r#"update employee E-1042 title="Senior Engineer" salary_band=7"#);
        let want = "Recorded UPDATE of employee E-1042 (title, salary_band)";
        assert_eq!(c.summary(), want);
        let read = cmd("read employee E-1042").summary();
        assert_eq!(read, "Recorded READ of employee E-1042");
    }

    #[test]
    fn summary_of_a_note_shows_an_example_and_the_hint() {
        let example =
            r#"To record a change, write e.g.: update employee E-1042 title="Senior Engineer""#;
        let plain = cmd("hello").summary();
        assert_eq!(plain, format!("Recorded as a note. {example}"));
        let hinted = cmd("promote employee E-1042").summary();
        let want = format!(r#"Recorded as a note (unknown verb "promote"). {example}"#);
        assert_eq!(hinted, want);
    }

    #[test]
    fn questions_are_reads_or_a_note_and_say_what_they_ask() {
        let h = cmd("history E-1042");
        assert_eq!(
            (h.operation, h.question),
            (Operation::Read, Some(Question::History))
        );
        assert_eq!(h.record_id.as_deref(), Some("E-1042"));
        assert_eq!(
            cmd("History employee E-7").record_id.as_deref(),
            Some("E-7")
        );
        let bad = cmd("history E-1 please");
        assert_eq!((bad.operation, bad.question), (Operation::Note, None));
        assert!(bad.hint.unwrap().contains("record id only"));
        assert_eq!(cmd("view employee E-1042").question, Some(Question::View));
        for help in ["help", "HELP", "?"] {
            let c = cmd(help);
            assert_eq!(
                (c.operation, c.question),
                (Operation::Note, Some(Question::Help))
            );
        }
        assert_eq!(cmd("help me with E-1").question, None);
        assert_eq!(cmd("update employee E-1 a=b").question, None);
    }

    #[test]
    fn changes_json_is_an_object_of_strings() {
        let c = cmd(r#"create employee E-1 name="Jane Doe" band=7"#);
        let want = serde_json::json!({"name": "Jane Doe", "band": "7"});
        assert_eq!(c.changes_json(), want);
        assert_eq!(cmd("hi").changes_json(), serde_json::json!({}));
    }

    #[test]
    fn operation_names_round_trip_exactly() {
        for op in [Create, Read, Update, Delete, Note] {
            assert_eq!(Operation::parse_name(op.as_str()), Some(op));
            let json = serde_json::to_string(&op).unwrap();
            assert_eq!(json, format!("\"{op}\""));
        }
        assert_eq!(Operation::parse_name("Create"), None);
        assert_eq!(Operation::parse_name("add"), None);
    }
}
