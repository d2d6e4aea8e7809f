//! How `verify` tells an erasure or a retention from tampering. An erased entry has empty
//! personal fields, no salt, and names an `erase` entry of the log whose count agrees; an
//! expired one is older than this configuration's `AUDIT_RETENTION_DAYS` (its sealed
//! `activity_at` says so, whatever `redacted_at` claims) and under no legal hold. An activity
//! removed as expired is older than `ACTIVITY_RETENTION_DAYS`; an activity erased has its
//! entry erased too. Anything else is named.

use std::collections::HashMap;

use chrono::{TimeDelta, Utc};
use uuid::Uuid;

use super::{
    report::{Problem, Report},
    verify::Row,
};

/// Why a sealed entry has no salt.
pub(super) enum Redaction {
    /// `teams-bridge erase`.
    Erased,
    /// Retention.
    Expired,
}

fn older_than(at: chrono::DateTime<Utc>, days: Option<u32>) -> bool {
    days.is_some_and(|d| at < Utc::now() - TimeDelta::days(i64::from(d)))
}

/// The reason a sealed entry has no salt, if it holds.
pub(super) fn redaction(row: &Row, audit_days: Option<u32>) -> Result<Redaction, &'static str> {
    let e = &row.entry;
    let emptied = e.content_removed();
    let no_actor = e.actor_name.is_none() && e.actor_aad_object_id.is_none();
    match e.redacted.as_deref() {
        _ if !emptied => Err("its salt is gone but its changes or message are not"),
        Some("erased") if row.erased_by.is_some() => Ok(Redaction::Erased),
        Some("erased") => Err("marked erased, but by no erase entry"),
        Some("expired") if !no_actor => Err("marked expired, but its names were kept"),
        Some("expired") if audit_days.is_none() => {
            Err("marked expired, but AUDIT_RETENTION_DAYS is not set here")
        }
        Some("expired") if !older_than(e.activity_at, audit_days) => {
            Err("marked expired before AUDIT_RETENTION_DAYS ended")
        }
        Some("expired") if row.held => Err("marked expired, but a legal hold covers it"),
        Some("expired") => Ok(Redaction::Expired),
        _ => Err("its salt is gone: its names, changes or message cannot be checked"),
    }
}

/// Whether `--evidence` has nothing to check for this entry (`Ok(true)`), or why its missing
/// evidence is a problem.
pub(super) fn evidence_skip(
    row: &Row,
    audit_days: Option<u32>,
    activity_days: Option<u32>,
) -> Result<bool, String> {
    let e = &row.entry;
    if e.redacted.is_some() {
        // Its content is gone; whether that is justified is the leaf's check (a sealed
        // entry) or this one (one still waiting for the sealer).
        return match (e.leaf_index.is_some(), redaction(row, audit_days)) {
            (true, _) | (false, Ok(_)) => Ok(true),
            (false, Err(why)) => Err(why.into()),
        };
    }
    match row.activity_redacted.as_deref() {
        None => Ok(false),
        Some("expired") if older_than(e.activity_at, activity_days) && !row.held => Ok(true),
        Some("expired") => {
            Err("its activity was removed, but not by ACTIVITY_RETENTION_DAYS".into())
        }
        Some(_) => Err("its activity was erased, but the entry was not".into()),
    }
}

/// Each `erase` entry says how many entries it erased, and exactly that many name it; every
/// entry marked erased names an `erase` entry of the log.
pub(super) fn check_erasures(rows: &[Row], report: &mut Report) {
    let mut named: HashMap<Uuid, u64> = HashMap::new();
    let erased = rows
        .iter()
        .filter(|r| r.entry.redacted.as_deref() == Some("erased"));
    for by in erased.filter_map(|r| r.erased_by) {
        *named.entry(by).or_default() += 1;
    }
    for row in rows.iter().filter(|r| r.entry.operation == "erase") {
        let e = &row.entry;
        let said = e.changes.get("audit_entries").and_then(|v| v.as_u64());
        let found = named.remove(&e.event_id).unwrap_or_default();
        let detail = match said {
            Some(n) if n == found => continue,
            Some(n) => format!("it says it erased {n} entries; {found} name it"),
            None => "it does not say how many entries it erased".into(),
        };
        report.problems.push(Problem::Evidence {
            event_id: e.event_id,
            detail,
        });
    }
    for (by, _) in named {
        let detail = format!("entries are marked erased by {by}, which is no erase entry");
        report.problems.push(Problem::Evidence {
            event_id: by,
            detail,
        });
    }
}
