//! A record's page: its current state (folded from the changes that count, as the Teams
//! answers fold it), its changes over time, and what else the log holds about it (reads, and
//! changes that did not count because their sender was not an HR editor).

use std::collections::HashMap;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::SecondsFormat;
use maud::html;

use super::{
    layout::{notice, page, Frame},
    pages::{detail, entries_table},
    query_string, unavailable, Auditor, ConsoleState,
};
use crate::{
    audit::{query, AuditEntry},
    domain::answer::{fold, pairs, Change},
    http::api::filter_from_params,
};

fn counts(e: &AuditEntry) -> bool {
    e.authorized && matches!(e.operation.as_str(), "create" | "update" | "delete")
}

fn change(e: &AuditEntry) -> Change {
    Change {
        at: e.activity_at,
        who: e
            .actor_name
            .clone()
            .or_else(|| e.actor_aad_object_id.clone()),
        operation: e.operation.clone(),
        changes: pairs(&e.changes),
        event_id: e.event_id,
        erased: e.redacted.is_some(),
    }
}

/// The page of `record`.
async fn page_of(state: &ConsoleState, auditor: &Auditor, record: &str) -> Response {
    let params: HashMap<String, String> = [
        ("record".to_string(), record.to_string()),
        ("limit".into(), "1000".into()),
    ]
    .into();
    let filter = match filter_from_params(&params) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, e.message.to_string()).into_response(),
    };
    let (newest_first, more) = match query::query(&state.pool, &filter).await {
        Ok((entries, next)) => (entries, next.is_some()),
        Err(e) => return unavailable(&e),
    };
    let (changes, others): (Vec<&AuditEntry>, Vec<&AuditEntry>) =
        newest_first.iter().partition(|e| counts(e));
    let oldest_first: Vec<Change> = changes.iter().rev().map(|e| change(e)).collect();
    let state_now = fold(&oldest_first);
    let frame = Frame {
        user: &auditor.session.user,
        csrf: &auditor.session.csrf,
    };
    let export = format!("/console/export.csv{}", query_string(&[("record", record)]));
    let when = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let body = html! {
        p { (changes.len()) " changes, " (others.len()) " other entries. " a href=(export) { "Export its log as CSV" } }
        @if more { (notice("info", "Only the latest 1000 entries are shown; the export has them all.")) }
        h2 { "Current state" }
        @if let Some((by, at)) = &state_now.deleted {
            (notice("info", &format!("Deleted by {} at {}", by.as_deref().unwrap_or("someone"), when(*at))))
        }
        @if state_now.fields.is_empty() { (notice("empty", "No fields recorded.")) }
        @else { div.scroll { table {
            thead { tr { th scope="col" { "Field" } th scope="col" { "Value" } th scope="col" { "Set by" } th scope="col" { "When (UTC)" } } }
            tbody { @for (field, s) in &state_now.fields { tr {
                td { strong { (field) } } td { (s.value) } td { (s.by.as_deref().unwrap_or("someone")) } td.mono { (when(s.at)) }
            } } }
        } } }
        @if state_now.erased > 0 { (notice("info", &format!("{} changes were erased; their values are not shown.", state_now.erased))) }
        h2 { "Changes over time" }
        @if changes.is_empty() { (notice("empty", "No changes recorded for this record.")) }
        @else { div.scroll { table {
            thead { tr { th scope="col" { "When (UTC)" } th scope="col" { "Operation" } th scope="col" { "Who" } th scope="col" { "What" } th scope="col" { "Entry" } } }
            tbody { @for e in &changes { tr {
                td.mono { (when(e.activity_at)) } td { span.tag.op { (e.operation) } }
                td { (e.actor_name.as_deref().or(e.actor_aad_object_id.as_deref()).unwrap_or("—")) }
                td { (detail(e)) }
                td.mono { a href=(format!("/console/entries/{}", e.event_id)) { "evidence" } }
            } } }
        } } }
        h2 { "Also in the log" }
        p { "Reads, notes and changes that did not count (the sender was not an HR editor)." }
        @if others.is_empty() { (notice("empty", "Nothing else.")) }
        @else { (entries_table(&others.into_iter().cloned().collect::<Vec<_>>())) }
    };
    page(&format!("Employee {record}"), Some(&frame), body).into_response()
}

/// `GET /console/records/{record}`.
pub async fn show(
    State(state): State<ConsoleState>,
    auditor: Auditor,
    Path(record): Path<String>,
) -> Response {
    page_of(&state, &auditor, &record).await
}
