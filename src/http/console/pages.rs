//! The console's lists: search (the API's filters, keyset pages, CSV export), a person's
//! actions, dead letters and the access log.

use std::collections::HashMap;

use axum::{
    extract::{Path, Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::SecondsFormat;
use maud::{html, Markup};

use super::{
    layout::{notice, page, Frame},
    query_string, segment, unavailable, Auditor, ConsoleState,
};
use crate::{
    audit::{export::to_csv, query, AuditEntry},
    domain::answer::pairs,
    http::api::filter_from_params,
};

/// Most rows one CSV export holds.
const MAX_EXPORT: usize = 100_000;

fn frame(a: &Auditor) -> Frame<'_> {
    Frame {
        user: &a.session.user,
        csrf: &a.session.csrf,
    }
}

/// The form's empty fields mean "any".
fn filled(mut params: HashMap<String, String>) -> HashMap<String, String> {
    params.retain(|_, v| !v.trim().is_empty());
    params
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Field=value pairs of an entry, or its message.
pub(super) fn detail(e: &AuditEntry) -> String {
    match pairs(&e.changes) {
        p if !p.is_empty() => p
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("  "),
        _ => e.message.clone(),
    }
}

/// The table of entries every list shows.
pub(super) fn entries_table(entries: &[AuditEntry]) -> Markup {
    html! {
        div.scroll { table {
            thead { tr { th scope="col" { "When (UTC)" } th scope="col" { "Operation" } th scope="col" { "Record" }
                         th scope="col" { "Who" } th scope="col" { "Changes / message" } th scope="col" { "Entry" } } }
            tbody { @for e in entries { tr {
                td.mono { (time(e.activity_at)) }
                td { span.tag.op { (e.operation) }
                     @if !e.authorized { " " span.tag.warn title="The sender is not an HR editor of this webhook" { "not a change" } }
                     @if let Some(r) = &e.redacted { " " span.tag.bad { (r) } } }
                td { @if let Some(r) = &e.record_id { a href=(format!("/console/records/{}", segment(r))) { (r) } } @else { "—" } }
                td { @match (&e.actor_name, &e.actor_aad_object_id) {
                        (Some(n), _) => a href=(format!("/console/actors/{}", segment(n))) { (n) },
                        (None, Some(id)) => a href=(format!("/console/actors/{}", segment(id))) { (id) },
                        _ => "—",
                } }
                td { (detail(e)) }
                td.mono { a href=(format!("/console/entries/{}", e.event_id)) aria-label=(format!("Evidence of entry {}", e.event_id)) { (e.event_id.to_string()[..8]) "…" } }
            } } }
        } }
    }
}

fn filters_form(p: &HashMap<String, String>) -> Markup {
    let v = |k: &str| p.get(k).cloned().unwrap_or_default();
    let ops = [
        "", "create", "read", "update", "delete", "note", "grant", "revoke", "erase",
    ];
    let field = |id: &str, label: &str, hint: &str| {
        html! {
            div { label for=(id) { (label) } input id=(id) name=(id) value=(v(id)) placeholder=(hint); }
        }
    };
    html! {
        form.filters.card method="get" action="/console" role="search" {
            (field("record", "Record", "E-1042"))
            (field("actor", "Person (name or Entra id)", "Jane Doe"))
            div { label for="operation" { "Operation" } select id="operation" name="operation" {
                @for op in ops { option value=(op) selected[v("operation") == op] { @if op.is_empty() { "any" } @else { (op) } } }
            } }
            (field("team", "Team id", ""))
            (field("channel", "Channel id", ""))
            (field("since", "Since", "7d or 2026-11-01"))
            (field("until", "Until", "2026-12-01"))
            div.actions { button type="submit" { "Search" } a.button.secondary href="/console" { "Clear" } }
        }
    }
}

/// `GET /console`: search.
pub async fn search(
    State(state): State<ConsoleState>,
    auditor: Auditor,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let params = filled(params);
    let form = filters_form(&params);
    let filter = match filter_from_params(&params) {
        Ok(f) => f,
        Err(e) => {
            let body = html! { (form) (notice("error", &e.message)) };
            let page = page("Search the audit log", Some(&frame(&auditor)), body);
            return (StatusCode::BAD_REQUEST, page).into_response();
        }
    };
    let (entries, next) = match query::query(&state.pool, &filter).await {
        Ok(r) => r,
        Err(e) => return unavailable(&e),
    };
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| *k != "cursor")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.sort();
    let export = format!("/console/export.csv{}", query_string(&pairs));
    let next = next.map(|c| c.encode()).map(|c| {
        let mut with = pairs.clone();
        with.push(("cursor", c.as_str()));
        format!("/console{}", query_string(&with))
    });
    let body = html! {
        (form)
        div.actions style="margin:16px 0" {
            a.button.secondary href=(export) { "Export these results as CSV" }
        }
        @if entries.is_empty() { (notice("empty", "No entries match these filters.")) }
        @else { (entries_table(&entries)) }
        @if let Some(n) = next { p { a.button href=(n) { "Next page" } } }
    };
    page("Search the audit log", Some(&frame(&auditor)), body).into_response()
}

/// `GET /console/export.csv`: every entry of a search (up to 100 000), formula-safe.
pub async fn export(
    State(state): State<ConsoleState>,
    auditor: Auditor,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let mut params = filled(params);
    params.remove("cursor");
    params.insert("limit".into(), query::MAX_LIMIT.to_string());
    let mut filter = match filter_from_params(&params) {
        Ok(f) => f,
        Err(e) => {
            let body = notice("error", &e.message);
            let page = page("Export", Some(&frame(&auditor)), body);
            return (StatusCode::BAD_REQUEST, page).into_response();
        }
    };
    let mut all = Vec::new();
    loop {
        let (mut entries, next) = match query::query(&state.pool, &filter).await {
            Ok(r) => r,
            Err(e) => return unavailable(&e),
        };
        all.append(&mut entries);
        match next {
            Some(c) if all.len() < MAX_EXPORT => filter.after = Some(c),
            _ => break,
        }
    }
    let Ok(csv) = to_csv(&all) else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "CSV could not be written",
        )
            .into_response();
    };
    let headers = [
        (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
        (
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"audit-log.csv\"",
        ),
    ];
    (headers, csv).into_response()
}

/// `GET /console/actors/{actor}`: what one person did (by display name or Entra id).
pub async fn actor(
    State(state): State<ConsoleState>,
    auditor: Auditor,
    Path(actor): Path<String>,
) -> Response {
    let params: HashMap<String, String> = [
        ("actor".to_string(), actor.clone()),
        ("limit".into(), "200".into()),
    ]
    .into();
    let entries = match filter_from_params(&params) {
        Ok(f) => match query::query(&state.pool, &f).await {
            Ok((entries, _)) => entries,
            Err(e) => return unavailable(&e),
        },
        Err(e) => return (StatusCode::BAD_REQUEST, e.message.to_string()).into_response(),
    };
    let export = format!("/console/export.csv{}", query_string(&[("actor", &actor)]));
    let body = html! {
        p { "The latest 200 entries by this person, newest first. " a href=(export) { "Export all as CSV" } }
        @if entries.is_empty() { (notice("empty", "No entries by this person.")) } @else { (entries_table(&entries)) }
    };
    page(&format!("Actions of {actor}"), Some(&frame(&auditor)), body).into_response()
}

type DeadLetter = (
    i64,
    String,
    String,
    Option<String>,
    String,
    i64,
    chrono::DateTime<chrono::Utc>,
);

/// `GET /console/dead-letters`: messages a worker could not process.
pub async fn dead_letters(State(state): State<ConsoleState>, auditor: Auditor) -> Response {
    let rows: Vec<DeadLetter> = match sqlx::query_as(
        "select id, consumer, subject, event_id, reason, deliveries, created_at \
         from dead_letters order by id desc limit 200",
    )
    .fetch_all(&state.pool)
    .await
    {
        Ok(r) => r,
        Err(e) => return unavailable(&e),
    };
    let body = html! {
        p { "Messages a worker gave up on, newest first (fix the cause, then " code { "teams-bridge replay --event-id …" } ")." }
        @if rows.is_empty() { (notice("empty", "No dead letters: every message was processed.")) }
        @else { div.scroll { table {
            thead { tr { th { "When" } th { "Consumer" } th { "Subject" } th { "Event" } th { "Reason" } th { "Deliveries" } } }
            tbody { @for (_, consumer, subject, event_id, reason, deliveries, at) in &rows { tr {
                td.mono { (time(*at)) } td { (consumer) } td.mono { (subject) }
                td.mono { @if let Some(id) = event_id { (id) } @else { "—" } } td { (reason) } td { (deliveries) }
            } } }
        } } }
    };
    page("Dead letters", Some(&frame(&auditor)), body).into_response()
}

/// `GET /console/access`: who looked at what, when.
pub async fn access(State(state): State<ConsoleState>, auditor: Auditor) -> Response {
    let rows: Vec<(String, String, String, chrono::DateTime<chrono::Utc>)> = match sqlx::query_as(
        "select user_name, method, path, at from console_access order by id desc limit 500",
    )
    .fetch_all(&state.pool)
    .await
    {
        Ok(r) => r,
        Err(e) => return unavailable(&e),
    };
    let body = html! {
        p { "Every page view and export of the console, newest first (the latest 500). The table is "
            code { "console_access" } "." }
        div.scroll { table {
            thead { tr { th { "When (UTC)" } th { "Auditor" } th { "Request" } } }
            tbody { @for (user, method, path, at) in &rows { tr {
                td.mono { (time(*at)) } td { (user) } td.mono { (method) " " (path) }
            } } }
        } }
    };
    page("Access log", Some(&frame(&auditor)), body).into_response()
}
