//! `teams-bridge verify` against the database: recomputes every leaf from the stored entry
//! and its activity's bytes, rebuilds the tree, checks every checkpoint's signature and root,
//! and names what does not hold. With `evidence`, every entry is also checked against its
//! activity (the Teams HMAC, and what the grammar derives from the bytes today), so an entry
//! inserted without a genuine activity is found even once sealed. With saved checkpoints, a
//! consistency proof shows today's tree extends each, so a history rewritten and re-signed
//! with the key is found too.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

pub use super::report::{Problem, Report};
use super::AuditEntry;
use crate::{
    config::Webhook,
    domain::{
        audit_leaf::{personal_digest, sha256},
        merkle::{consistency_proof, leaf_hash, root, verify_consistency, Frontier, Hash},
        note::{Checkpoint, NoteVerifier},
    },
};

/// What to check beyond the tree.
pub struct VerifyOptions<'a> {
    /// Checks checkpoint signatures.
    pub verifier: &'a NoteVerifier,
    /// The log's origin every checkpoint must name.
    pub origin: &'a str,
    /// Also check every entry against its activity.
    pub evidence: bool,
    /// The webhooks' keys, for the HMAC of each activity (with `evidence`).
    pub webhooks: &'a [Webhook],
    /// Checkpoints saved earlier (signed notes), which today's tree must extend.
    pub saved: Vec<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    #[sqlx(flatten)]
    entry: AuditEntry,
    personal_salt: Option<Vec<u8>>,
    personal_digest: Option<Vec<u8>>,
    raw_sha256: Option<Vec<u8>>,
    leaf_hash: Option<Vec<u8>>,
    stored_index: Option<i64>,
    raw: Option<Vec<u8>>,
    mac: Option<Vec<u8>>,
    fallback_time: Option<DateTime<Utc>>,
    activity_webhook: Option<String>,
    activity_redacted: Option<String>,
    activity_authorized: Option<bool>,
    redacted_at: Option<DateTime<Utc>>,
    erased_by: Option<Uuid>,
}

/// Operations an operator writes from the command line, with no Teams activity behind them.
const OPERATOR_OPERATIONS: [&str; 3] = ["grant", "revoke", "erase"];

const ROWS: &str = "\
    select a.event_id, a.webhook, a.tenant_id, a.team_id, a.channel_id, a.actor_name, \
           a.actor_aad_object_id, a.operation, a.entity, a.record_id, a.changes, a.message, \
           a.activity_at, a.recorded_at, a.authorized, a.redacted, a.personal_salt, a.personal_digest, a.raw_sha256, \
           a.leaf_hash, a.leaf_index as stored_index, a.sealed_in, x.raw, x.mac, \
           coalesce(x.activity_timestamp, x.received_at) as fallback_time, \
           x.webhook as activity_webhook, x.redacted as activity_redacted, \
           x.authorized as activity_authorized, a.redacted_at, a.erased_by \
    from audit_log a left join activities x using (event_id) order by a.leaf_index";

fn hash(bytes: &Option<Vec<u8>>) -> Option<Hash> {
    bytes.as_deref().and_then(|b| b.try_into().ok())
}

/// Checks the whole log.
pub async fn verify(pool: &PgPool, options: &VerifyOptions<'_>) -> Result<Report, sqlx::Error> {
    // One snapshot for all three reads: a seal committing in between would otherwise look
    // like deleted entries.
    let mut tx = pool.begin().await?;
    sqlx::query("set transaction isolation level repeatable read read only")
        .execute(&mut *tx)
        .await?;
    let rows: Vec<Row> = sqlx::query_as(ROWS).fetch_all(&mut *tx).await?;
    let tree_size: i64 = sqlx::query_scalar("select size from audit_tree")
        .fetch_one(&mut *tx)
        .await?;
    let checkpoints: Vec<(i64, Vec<u8>, String)> =
        sqlx::query_as("select size, root, note from audit_checkpoints order by size")
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    let mut report = Report {
        entries: rows.len() as u64,
        tree_size: tree_size as u64,
        ..Default::default()
    };
    let leaves = check_leaves(&rows, tree_size, &checkpoints, &mut report);
    check_erasures(&rows, &mut report);
    check_checkpoints(&leaves, &checkpoints, options, &mut report);
    check_saved(&leaves, options, &mut report);
    if options.evidence {
        check_evidence(&rows, options.webhooks, &mut report);
    }
    Ok(report)
}

/// Every sealed entry's leaf, recomputed from what is stored; `None` for a missing index.
fn check_leaves(
    rows: &[Row],
    tree_size: i64,
    checkpoints: &[(i64, Vec<u8>, String)],
    report: &mut Report,
) -> Vec<Option<Hash>> {
    let sizes: Vec<i64> = checkpoints.iter().map(|c| c.0).collect();
    let mut by_index: BTreeMap<i64, &Row> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.stored_index.is_some()) {
        report.sealed += 1;
        let i = row.stored_index.unwrap_or_default();
        let mut modified = |detail: &str| {
            let (event_id, detail) = (row.entry.event_id, detail.to_string());
            report.problems.push(Problem::Modified {
                event_id,
                leaf_index: i,
                detail,
            });
        };
        if !(0..tree_size).contains(&i) {
            modified("its leaf index lies outside the tree");
        } else if by_index.insert(i, row).is_some() {
            modified("another entry claims the same leaf index");
        }
        if !row
            .entry
            .sealed_in
            .is_some_and(|s| s > i && sizes.contains(&s))
        {
            modified("its seal names no checkpoint that covers it");
        }
    }
    report.pending = report.entries - report.sealed;
    (0..tree_size)
        .map(|i| match by_index.get(&i) {
            None => {
                report.problems.push(Problem::Missing { leaf_index: i });
                None
            }
            Some(row) => Some(recompute(row, i, report)),
        })
        .collect()
}

/// The leaf of one sealed row, from its stored fields; differences are reported.
fn recompute(row: &Row, index: i64, report: &mut Report) -> Hash {
    let e = &row.entry;
    let mut modified = |detail: &str| {
        let (event_id, detail) = (e.event_id, detail.to_string());
        report.problems.push(Problem::Modified {
            event_id,
            leaf_index: index,
            detail,
        });
    };
    let personal = hash(&row.personal_digest).unwrap_or_default();
    let fields = e.personal_fields();
    // The sealer always writes a salt; only an erasure or retention removes it, with the
    // fields it covered.
    let salt = row
        .personal_salt
        .as_deref()
        .and_then(|s| <[u8; 16]>::try_from(s).ok());
    match (salt, redaction(row)) {
        (Some(s), _) if personal_digest(&s, &fields) == personal => {}
        (Some(_), _) => modified("its names, changes or message differ from what was sealed"),
        (None, Ok(Redaction::Erased)) => report.erased += 1,
        (None, Ok(Redaction::Expired)) => report.expired += 1,
        (None, Err(why)) => modified(why),
    }
    let raw_sha256 = hash(&row.raw_sha256);
    if let (Some(raw), Some(sealed)) = (&row.raw, raw_sha256) {
        if sha256(raw) != sealed {
            modified("its activity's bytes differ from what was sealed");
        }
    }
    let leaf = leaf_hash(&e.leaf_value(raw_sha256.as_ref(), &personal));
    if hash(&row.leaf_hash) != Some(leaf) {
        modified("its sealed fields differ from its leaf");
    }
    leaf
}

enum Redaction {
    Erased,
    Expired,
}

/// Why a sealed entry has no salt, if the reason holds: its personal fields were removed by
/// an erasure the log records, or by retention after at least a day. Anything else is
/// tampering.
fn redaction(row: &Row) -> Result<Redaction, &'static str> {
    let e = &row.entry;
    let emptied = e.message.is_empty() && e.changes.as_object().is_some_and(|o| o.is_empty());
    match e.redacted.as_deref() {
        _ if !emptied => Err("its salt is gone but its changes or message are not"),
        Some("erased") if row.erased_by.is_some() => Ok(Redaction::Erased),
        Some("expired")
            if e.actor_name.is_none()
                && e.actor_aad_object_id.is_none()
                && row
                    .redacted_at
                    .is_some_and(|at| at - e.activity_at >= chrono::TimeDelta::days(1)) =>
        {
            Ok(Redaction::Expired)
        }
        Some("erased") => Err("marked erased, but by no erase entry"),
        Some(_) => Err("marked expired before any retention could have removed it"),
        None => Err("its salt is gone: its names, changes or message cannot be checked"),
    }
}

/// Each `erase` entry says how many entries it erased; exactly that many name it, and every
/// entry marked erased names an `erase` entry of the log.
fn check_erasures(rows: &[Row], report: &mut Report) {
    let mut named: HashMap<Uuid, u64> = HashMap::new();
    for row in rows
        .iter()
        .filter(|r| r.entry.redacted.as_deref() == Some("erased"))
    {
        if let Some(by) = row.erased_by {
            *named.entry(by).or_default() += 1;
        }
    }
    for row in rows.iter().filter(|r| r.entry.operation == "erase") {
        let e = &row.entry;
        let said = e.changes.get("audit_entries").and_then(|v| v.as_u64());
        let found = named.remove(&e.event_id).unwrap_or_default();
        if said.is_some_and(|n| n != found) {
            let detail = format!(
                "it says it erased {} entries; {found} name it",
                said.unwrap_or_default()
            );
            report.problems.push(Problem::Evidence {
                event_id: e.event_id,
                detail,
            });
        }
    }
    for (by, _) in named {
        let detail = format!("entries are marked erased by {by}, which is no erase entry");
        report.problems.push(Problem::Evidence {
            event_id: by,
            detail,
        });
    }
}

/// Each stored checkpoint: signed by the key, its row agrees with its note, and its root is
/// the root of the recomputed leaves.
fn check_checkpoints(
    leaves: &[Option<Hash>],
    checkpoints: &[(i64, Vec<u8>, String)],
    options: &VerifyOptions<'_>,
    report: &mut Report,
) {
    let verifier = options.verifier;
    let mut frontier = Frontier::default();
    let mut complete = true;
    let total = leaves.len() as i64;
    let mut leaves = leaves.iter();
    for (size, stored_root, note) in checkpoints {
        report.checkpoints_checked += 1;
        let mut problem = |detail: String| {
            report.problems.push(Problem::Checkpoint {
                size: *size,
                detail,
            });
        };
        let parsed = verifier.verify(note).map_err(|e| e.to_string());
        let parsed = parsed.and_then(|text| Checkpoint::parse(text).map_err(|e| e.to_string()));
        let checkpoint = match parsed {
            Ok(c) => c,
            Err(e) => {
                problem(format!("its note does not hold: {e}"));
                continue;
            }
        };
        if checkpoint.size != *size as u64 || checkpoint.root[..] != stored_root[..] {
            problem("its row differs from its signed note".into());
        }
        if checkpoint.origin != options.origin {
            let (got, want) = (&checkpoint.origin, options.origin);
            problem(format!("it names the log {got:?}, not {want:?}"));
        }
        while complete && (frontier.size() as i64) < *size {
            match leaves.next() {
                Some(Some(leaf)) => frontier.push(*leaf),
                _ => complete = false,
            }
        }
        match complete {
            false => problem("cannot be recomputed: leaves are missing".into()),
            true if frontier.root() != checkpoint.root => {
                problem("its root is not the root of the entries it covers".into())
            }
            true => {}
        }
    }
    let last = checkpoints.last().map_or(0, |c| c.0);
    if total > last {
        let detail = format!(
            "{} entries claim to be sealed beyond the last checkpoint",
            total - last
        );
        report
            .problems
            .push(Problem::Checkpoint { size: last, detail });
    }
}

/// Each saved checkpoint: signed by the key, and extended by today's tree (a consistency
/// proof, checked as an auditor would).
fn check_saved(leaves: &[Option<Hash>], options: &VerifyOptions<'_>, report: &mut Report) {
    let all: Option<Vec<Hash>> = leaves.iter().copied().collect();
    for note in &options.saved {
        report.saved_checkpoints_checked += 1;
        let mut rewritten = |saved_size, detail: String| {
            report
                .problems
                .push(Problem::Rewritten { saved_size, detail });
        };
        let checkpoint = options.verifier.verify(note).map_err(|e| e.to_string());
        let checkpoint = checkpoint.and_then(|t| Checkpoint::parse(t).map_err(|e| e.to_string()));
        let checkpoint = match checkpoint {
            Ok(c) => c,
            Err(e) => {
                rewritten(0, format!("the saved checkpoint does not hold: {e}"));
                continue;
            }
        };
        let Some(all) = &all else {
            rewritten(
                checkpoint.size,
                "cannot be checked: leaves are missing".into(),
            );
            continue;
        };
        let (m, n) = (checkpoint.size, all.len() as u64);
        if m > n {
            rewritten(m, format!("it covers {m} entries, the log holds {n}"));
            continue;
        }
        let proof = consistency_proof(all, m as usize);
        if !verify_consistency(m, &checkpoint.root, n, &root(all), &proof) {
            let detail = format!("today's tree of {n} entries does not extend it");
            rewritten(m, detail);
        }
    }
}

/// Every entry against its activity: the activity exists, carries a valid Teams HMAC, and
/// says what the entry says.
fn check_evidence(rows: &[Row], webhooks: &[Webhook], report: &mut Report) {
    let keys: HashMap<&str, &Webhook> = webhooks.iter().map(|w| (w.name.as_str(), w)).collect();
    for row in rows {
        let e = &row.entry;
        if row.activity_redacted.is_some() || e.redacted.is_some() {
            report.evidence_skipped += 1;
            continue;
        }
        let Some(raw) = &row.raw else {
            if row.activity_webhook.is_none() && OPERATOR_OPERATIONS.contains(&e.operation.as_str())
            {
                report.operator_entries += 1;
            } else {
                report.problems.push(Problem::Inserted {
                    event_id: e.event_id,
                });
            }
            continue;
        };
        let mut evidence = |detail: &str| {
            let (event_id, detail) = (e.event_id, detail.to_string());
            report.problems.push(Problem::Evidence { event_id, detail });
        };
        let webhook = row.activity_webhook.as_deref().unwrap_or_default();
        match (keys.get(webhook), &row.mac) {
            (Some(w), Some(mac)) => {
                report.hmac_checked += 1;
                if w.keys.verify_mac(mac, raw).is_err() {
                    evidence("its activity's bytes do not carry a valid Teams signature");
                }
            }
            // Unverifiable is not verified: an activity forged with no MAC must not pass.
            (_, None) => evidence("its activity carries no stored Teams MAC to check"),
            (None, _) => evidence(&format!(
                "webhook {webhook:?} has no key here (TEAMS_WEBHOOKS) to check its MAC"
            )),
        }
        let derived =
            AuditEntry::derive(e.event_id, webhook, raw, row.fallback_time, e.recorded_at);
        if row.activity_authorized.is_some_and(|a| a != e.authorized) {
            evidence("whether it counts as a change differs from the decision shown in Teams");
        }
        match derived {
            Ok(d) if d.says_the_same_as(e) => {}
            Ok(_) => evidence("it differs from what its activity says"),
            Err(why) => evidence(&format!("its activity makes no entry: {why}")),
        }
    }
}
