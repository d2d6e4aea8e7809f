//! An entry's evidence: the entry, the Teams message exactly as it was sent (pretty-printed,
//! and downloadable byte for byte), whether its HMAC still verifies with the webhook's key,
//! whether its bytes are the sealed ones, and its seal (leaf index and checkpoint).

use axum::{
    extract::{Path, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::SecondsFormat;
use maud::{html, Markup};
use uuid::Uuid;

use super::{
    layout::{notice, page, Frame},
    pages::detail,
    unavailable, Auditor, ConsoleState,
};
use crate::{audit::AuditEntry, domain::audit_leaf::sha256};

#[derive(sqlx::FromRow)]
struct Row {
    #[sqlx(flatten)]
    entry: AuditEntry,
    raw_sha256: Option<Vec<u8>>,
    raw: Option<Vec<u8>>,
    mac: Option<Vec<u8>>,
    activity_webhook: Option<String>,
    activity_redacted: Option<String>,
    checkpoint_stored: bool,
}

const ROW: &str = "\
    select a.event_id, a.webhook, a.tenant_id, a.team_id, a.channel_id, a.actor_name, \
           a.actor_aad_object_id, a.operation, a.entity, a.record_id, a.changes, a.message, \
           a.activity_at, a.recorded_at, a.authorized, a.redacted, a.leaf_index, audit_sealed_in(a.leaf_index) as sealed_in, \
           a.raw_sha256, x.raw, x.mac, x.webhook as activity_webhook, x.redacted as activity_redacted, \
           exists (select 1 from audit_checkpoints c where c.size = audit_sealed_in(a.leaf_index)) as checkpoint_stored \
    from audit_log a left join activities x using (event_id) where a.event_id = $1";

fn not_found(auditor: &Auditor, what: &str) -> Response {
    let frame = Frame {
        user: &auditor.session.user,
        csrf: &auditor.session.csrf,
    };
    let body = notice("empty", &format!("No entry {what} in the audit log."));
    (StatusCode::NOT_FOUND, page("Not found", Some(&frame), body)).into_response()
}

fn tag(ok: bool, yes: &str, no: &str) -> Markup {
    html! { @if ok { span.tag.ok { (yes) } } @else { span.tag.bad { (no) } } }
}

fn checks(state: &ConsoleState, row: &Row) -> Markup {
    let Some(raw) = &row.raw else {
        let why = match row.activity_redacted.as_deref() {
            Some(r) => format!(
                "The Teams message was {r}: its bytes are gone; the seal still holds its hash."
            ),
            None => "No Teams message holds this event id (an operator's entry has none).".into(),
        };
        return notice("info", &why);
    };
    let webhook = row.activity_webhook.as_deref().unwrap_or_default();
    let key = state.webhooks.iter().find(|w| w.name == webhook);
    let hmac = match (key, &row.mac) {
        (Some(w), Some(mac)) => tag(
            w.keys.verify_mac(mac, raw).is_ok(),
            "valid",
            "does not verify",
        ),
        (None, _) => html! { span.tag.warn { "no key here for webhook " (webhook) } },
        (_, None) => html! { span.tag.bad { "no MAC stored" } },
    };
    let sealed = row.raw_sha256.as_deref().map(|h| h == sha256(raw));
    html! { dl.facts {
        dt { "Teams HMAC" } dd { (hmac) }
        dt { "Bytes" } dd { @match sealed {
            Some(ok) => (tag(ok, "the sealed bytes", "differ from the sealed bytes")),
            None => span.tag.warn { "not sealed yet" },
        } " " (raw.len()) " bytes · " a href=(format!("/console/entries/{}/raw", row.entry.event_id)) download { "download the exact bytes" } }
    } }
}

/// The message indented for reading, its keys and values exactly in Teams' order and
/// spelling (re-indented as text, not parsed and re-serialised).
fn pretty(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let (mut out, mut depth, mut in_string, mut escaped) = (String::new(), 0usize, false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    for c in text.chars() {
        if in_string {
            out.push(c);
            (escaped, in_string) = match (escaped, c) {
                (true, _) => (false, true),
                (false, '\\') => (true, true),
                (false, '"') => (false, false),
                _ => (false, true),
            };
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                depth += 1;
                out.push(c);
                newline(&mut out, depth);
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// The entry `event_id` names, or the page that says why there is none.
async fn load(state: &ConsoleState, auditor: &Auditor, event_id: &str) -> Result<Row, Response> {
    let Ok(id) = Uuid::parse_str(event_id) else {
        return Err(not_found(auditor, event_id));
    };
    match sqlx::query_as(ROW)
        .bind(id)
        .fetch_optional(&state.pool)
        .await
    {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(not_found(auditor, event_id)),
        Err(e) => Err(unavailable(&e)),
    }
}

/// `GET /console/entries/{event_id}`.
pub async fn show(
    State(state): State<ConsoleState>,
    auditor: Auditor,
    Path(event_id): Path<String>,
) -> Response {
    let row = match load(&state, &auditor, &event_id).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let e = &row.entry;
    let when = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    let frame = Frame {
        user: &auditor.session.user,
        csrf: &auditor.session.csrf,
    };
    let body = html! {
        div.card { dl.facts {
            dt { "Receipt" } dd.mono { (e.event_id) }
            dt { "Operation" } dd { span.tag.op { (e.operation) }
                @if !e.authorized { " " span.tag.warn { "not a change: the sender is not an HR editor" } }
                @if let Some(r) = &e.redacted { " " span.tag.bad { "personal fields " (r) } } }
            dt { "Record" } dd { @if let Some(r) = &e.record_id { a href=(format!("/console/records/{r}")) { (r) } } @else { "—" } }
            dt { "Who" } dd { (e.actor_name.as_deref().unwrap_or("—")) " " @if let Some(id) = &e.actor_aad_object_id { code { (id) } } }
            dt { "What" } dd { (detail(e)) }
            dt { "When (Teams)" } dd.mono { (when(e.activity_at)) }
            dt { "Recorded" } dd.mono { (when(e.recorded_at)) }
            dt { "Webhook · team · channel" } dd.mono { (e.webhook) " · " (e.team_id.as_deref().unwrap_or("—")) " · " (e.channel_id.as_deref().unwrap_or("—")) }
            dt { "Seal" } dd { @match (e.leaf_index, e.sealed_in) {
                (Some(leaf), Some(size)) => { span.tag.ok { "sealed" } " leaf " (leaf) ", first in the checkpoint of size " (size)
                    @if !row.checkpoint_stored { " " span.tag.bad { "that checkpoint is missing" } } }
                _ => span.tag.warn { "waiting for the sealer" },
            } }
        } }
        h2 { "Evidence" }
        (checks(&state, &row))
        @if let Some(raw) = &row.raw {
            h2 { "The Teams message, as it was sent" }
            pre aria-label="The activity's JSON" { (pretty(raw)) }
        }
        p { "To check the seal yourself: " code { "teams-bridge verify --evidence" } ", or " code { "teams-bridge audit export --record ID --proofs" } " for an offline bundle." }
    };
    page("Entry evidence", Some(&frame), body).into_response()
}

/// `GET /console/entries/{event_id}/raw`: the exact bytes Teams signed.
pub async fn raw(
    State(state): State<ConsoleState>,
    auditor: Auditor,
    Path(event_id): Path<String>,
) -> Response {
    let (id, raw) = match load(&state, &auditor, &event_id).await {
        Ok(Row {
            entry,
            raw: Some(raw),
            ..
        }) => (entry.event_id, raw),
        Ok(_) => return not_found(&auditor, &event_id),
        Err(response) => return response,
    };
    let disposition = format!("attachment; filename=\"{id}.json\"");
    let headers = [
        (header::CONTENT_TYPE, "application/json".to_string()),
        (header::CONTENT_DISPOSITION, disposition),
    ];
    (headers, raw).into_response()
}

#[cfg(test)]
mod tests {
    use super::pretty;

    #[test]
    fn the_message_keeps_its_order_and_its_strings() {
        let raw = br#"{"type":"message","text":"a, {b}: \"c\"","from":{"name":"Jane"},"n":[1,2]}"#;
        let want = "{\n  \"type\": \"message\",\n  \"text\": \"a, {b}: \\\"c\\\"\",\n  \"from\": {\n    \"name\": \"Jane\"\n  },\n  \"n\": [\n    1,\n    2\n  ]\n}";
        assert_eq!(pretty(raw), want);
    }
}
