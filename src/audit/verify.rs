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

use super::redaction::{check_erasures, evidence_skip, redaction, Redaction};
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
    /// `ACTIVITY_RETENTION_DAYS` here: an activity removed as expired must be older.
    pub activity_retention_days: Option<u32>,
    /// `AUDIT_RETENTION_DAYS` here: an entry whose personal fields expired must be older.
    pub audit_retention_days: Option<u32>,
}

#[derive(sqlx::FromRow)]
pub(super) struct Row {
    #[sqlx(flatten)]
    pub(super) entry: AuditEntry,
    personal_salt: Option<Vec<u8>>,
    personal_digest: Option<Vec<u8>>,
    raw_sha256: Option<Vec<u8>>,
    leaf_hash: Option<Vec<u8>>,
    stored_index: Option<i64>,
    raw: Option<Vec<u8>>,
    mac: Option<Vec<u8>>,
    fallback_time: Option<DateTime<Utc>>,
    activity_webhook: Option<String>,
    pub(super) activity_redacted: Option<String>,
    activity_authorized: Option<bool>,
    pub(super) erased_by: Option<Uuid>,
    /// A legal hold covers the entry (its record, or its actor).
    pub(super) held: bool,
}

/// Operations an operator writes from the command line, with no Teams activity behind them.
const OPERATOR_OPERATIONS: [&str; 3] = ["grant", "revoke", "erase"];

const ROWS: &str = "\
    select a.event_id, a.webhook, a.tenant_id, a.team_id, a.channel_id, a.actor_name, \
           a.actor_aad_object_id, a.operation, a.entity, a.record_id, a.changes, a.message, \
           a.activity_at, a.recorded_at, a.authorized, a.redacted, a.personal_salt, a.personal_digest, a.raw_sha256, \
           a.leaf_hash, a.leaf_index as stored_index, audit_sealed_in(a.leaf_index) as sealed_in, x.raw, x.mac, \
           coalesce(x.activity_timestamp, x.received_at) as fallback_time, \
           x.webhook as activity_webhook, x.redacted as activity_redacted, \
           x.authorized as activity_authorized, a.erased_by, \
           exists (select 1 from legal_holds h where (h.kind = 'record' and h.value = a.record_id) \
                   or (h.kind = 'actor' and h.value = a.actor_aad_object_id)) as held \
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
    let leaves = check_leaves(&rows, tree_size, &checkpoints, options, &mut report);
    check_erasures(&rows, &mut report);
    check_checkpoints(&leaves, &checkpoints, options, &mut report);
    check_saved(&leaves, options, &mut report);
    if options.evidence {
        check_evidence(&rows, options, &mut report);
    }
    Ok(report)
}

/// Every sealed entry's leaf, recomputed from what is stored; `None` for a missing index.
fn check_leaves(
    rows: &[Row],
    tree_size: i64,
    checkpoints: &[(i64, Vec<u8>, String)],
    options: &VerifyOptions<'_>,
    report: &mut Report,
) -> Vec<Option<Hash>> {
    let sizes: Vec<i64> = checkpoints.iter().map(|c| c.0).collect();
    let last = sizes.last().copied().unwrap_or(0);
    let mut by_index: BTreeMap<i64, &Row> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.stored_index.is_some()) {
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
        match row.entry.sealed_in {
            Some(s) if s > i && sizes.contains(&s) => report.sealed += 1,
            // In the tree, written after the last checkpoint: pending until the next.
            None if i >= last => {}
            _ => modified("its seal names no checkpoint that covers it"),
        }
    }
    report.pending = report.entries - report.sealed;
    (0..tree_size)
        .map(|i| match by_index.get(&i) {
            None => {
                report.problems.push(Problem::Missing { leaf_index: i });
                None
            }
            Some(row) => Some(recompute(row, i, options, report)),
        })
        .collect()
}

/// The leaf of one sealed row, from its stored fields; differences are reported.
fn recompute(row: &Row, index: i64, options: &VerifyOptions<'_>, report: &mut Report) -> Hash {
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
    match (salt, redaction(row, options.audit_retention_days)) {
        (Some(s), _) if personal_digest(&s, &fields) == personal => {}
        (Some(_), _) => modified("its names, changes or message differ from what was sealed"),
        (None, Ok(Redaction::Erased)) => {
            report.erased += 1;
            report.erased_leaves.push(index);
        }
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
fn check_evidence(rows: &[Row], options: &VerifyOptions<'_>, report: &mut Report) {
    let webhooks = options.webhooks;
    let keys: HashMap<&str, &Webhook> = webhooks.iter().map(|w| (w.name.as_str(), w)).collect();
    for row in rows {
        let e = &row.entry;
        let operator = OPERATOR_OPERATIONS.contains(&e.operation.as_str());
        // Sealed with no activity behind it, and no erasure to explain why: not from Teams.
        if row.stored_index.is_some()
            && row.raw_sha256.is_none()
            && !operator
            && e.redacted.is_none()
        {
            report.problems.push(Problem::Inserted {
                event_id: e.event_id,
            });
            continue;
        }
        match evidence_skip(
            row,
            options.audit_retention_days,
            options.activity_retention_days,
        ) {
            Ok(false) => {}
            Ok(true) => {
                report.evidence_skipped += 1;
                continue;
            }
            Err(detail) => {
                let event_id = e.event_id;
                report.problems.push(Problem::Evidence { event_id, detail });
                continue;
            }
        }
        let Some(raw) = &row.raw else {
            if row.activity_webhook.is_none() && operator {
                report.operator_entries += 1;
            } else {
                report.problems.push(Problem::Inserted {
                    event_id: e.event_id,
                });
            }
            continue;
        };
        check_activity(row, raw, &keys, report);
    }
}

/// One entry against its activity's bytes: the Teams HMAC, the decision shown in Teams, and
/// what the grammar derives today.
fn check_activity(row: &Row, raw: &[u8], keys: &HashMap<&str, &Webhook>, report: &mut Report) {
    let e = &row.entry;
    let mut evidence = |detail: &str| {
        let (event_id, detail) = (e.event_id, detail.to_string());
        report.problems.push(Problem::Evidence { event_id, detail });
    };
    let webhook = row.activity_webhook.as_deref().unwrap_or_default();
    let mut checked = false;
    match (keys.get(webhook), &row.mac) {
        (Some(w), Some(mac)) => {
            checked = true;
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
    if row.activity_authorized.is_some_and(|a| a != e.authorized) {
        evidence("whether it counts as a change differs from the decision shown in Teams");
    }
    let derived = AuditEntry::derive(e.event_id, webhook, raw, row.fallback_time, e.recorded_at);
    match derived {
        Ok(d) if d.says_the_same_as(e) => {}
        Ok(_) => evidence("it differs from what its activity says"),
        Err(why) => evidence(&format!("its activity makes no entry: {why}")),
    }
    report.hmac_checked += u64::from(checked);
}
