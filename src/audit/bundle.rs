//! Evidence for one record that an auditor checks offline: the record's sealed entries, each
//! with its activity's exact bytes and the Teams HMAC, the data its leaf recomputes from, an
//! inclusion proof against the latest checkpoint, and that signed checkpoint.
//!
//! The file is pretty-printed JSON in one canonical form; the verifier writes what it read
//! again and requires the same bytes, so a bundle edited by hand in any byte fails, and every
//! entry must be the record's, in leaf order, sealed by the bundled checkpoint. What a bundle
//! cannot prove is completeness: an entry left out of it is not detectable from the bundle
//! alone (`verify` against the database is). The format is in the README ("Audit
//! integrity"), for auditors who write their own verifier.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::AuditEntry;
use crate::domain::{
    audit_leaf::{personal_digest, sha256},
    merkle::{inclusion_proof, verify_inclusion, Hash},
    note::{Checkpoint, NoteVerifier},
    signature::KeyRing,
};

/// The format tag of version 1.
pub const FORMAT: &str = "teams-bridge-audit-bundle/v1";

/// One record's evidence.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Bundle {
    /// [`FORMAT`].
    pub format: String,
    /// The record.
    pub record: String,
    /// The signed note every proof is against.
    pub checkpoint: String,
    /// The record's entries the checkpoint covers, oldest first.
    pub entries: Vec<BundledEntry>,
    /// The record's entries not yet sealed (not in this bundle).
    pub pending: u64,
}

/// One entry with what proves it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BundledEntry {
    /// The entry as the log holds it.
    pub entry: AuditEntry,
    /// Its leaf index.
    pub leaf_index: u64,
    /// Base64 of the salt of its personal fields.
    pub personal_salt: String,
    /// Base64 of the salted digest of its personal fields.
    pub personal_digest: String,
    /// Base64 of the SHA-256 of its activity's bytes.
    pub raw_sha256: Option<String>,
    /// The activity behind it.
    pub activity: Option<BundledActivity>,
    /// `erased` or `expired` when the activity's bytes were removed (by `teams-bridge erase`
    /// or `ACTIVITY_RETENTION_DAYS`): there is then no activity to check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_redacted: Option<String>,
    /// Base64 hashes of the audit path, leaf to root.
    pub inclusion_proof: Vec<String>,
}

/// The activity's exact bytes as Teams signed them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BundledActivity {
    /// The webhook it was received on.
    pub webhook: String,
    /// Base64 of the exact bytes.
    pub raw: String,
    /// Base64 of the HMAC Teams sent.
    pub mac: Option<String>,
    /// The time an entry takes when the activity carries none.
    pub fallback_time: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    #[sqlx(flatten)]
    entry: AuditEntry,
    personal_salt: Option<Vec<u8>>,
    personal_digest: Vec<u8>,
    activity_redacted: Option<String>,
    raw_sha256: Option<Vec<u8>>,
    webhook_of_activity: Option<String>,
    raw: Option<Vec<u8>>,
    mac: Option<Vec<u8>>,
    fallback_time: Option<DateTime<Utc>>,
}

/// Why a bundle could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Nothing is sealed yet.
    #[error("no checkpoint yet: nothing is sealed")]
    NoCheckpoint,
    /// The stored tree has holes.
    #[error("the log is missing leaves below {0}; run `teams-bridge verify`")]
    Incomplete(u64),
}

/// Writes the bundle of `record` against the latest checkpoint.
pub async fn export(pool: &PgPool, record: &str) -> Result<Bundle, ExportError> {
    let latest: Option<(i64, String)> =
        sqlx::query_as("select size, note from audit_checkpoints order by size desc limit 1")
            .fetch_optional(pool)
            .await?;
    let (size, checkpoint) = latest.ok_or(ExportError::NoCheckpoint)?;
    let leaves: Vec<Vec<u8>> = sqlx::query_scalar(
        "select leaf_hash from audit_log where leaf_index < $1 order by leaf_index",
    )
    .bind(size)
    .fetch_all(pool)
    .await?;
    let leaves: Option<Vec<Hash>> = leaves.into_iter().map(|l| l.try_into().ok()).collect();
    let leaves = leaves.filter(|l| l.len() as i64 == size);
    let leaves = leaves.ok_or(ExportError::Incomplete(size as u64))?;
    let rows: Vec<Row> = sqlx::query_as(
        "select a.event_id, a.webhook, a.tenant_id, a.team_id, a.channel_id, a.actor_name, \
                a.actor_aad_object_id, a.operation, a.entity, a.record_id, a.changes, a.message, \
                a.activity_at, a.recorded_at, a.authorized, a.redacted, a.leaf_index, audit_sealed_in(a.leaf_index) as sealed_in, a.personal_salt, \
                a.personal_digest, a.raw_sha256, x.webhook as webhook_of_activity, x.raw, x.mac, \
                coalesce(x.activity_timestamp, x.received_at) as fallback_time, \
                x.redacted as activity_redacted \
         from audit_log a left join activities x using (event_id) \
         where a.record_id = $1 and a.leaf_index < $2 order by a.leaf_index",
    )
    .bind(record)
    .bind(size)
    .fetch_all(pool)
    .await?;
    let pending: i64 = sqlx::query_scalar(
        "select count(*) from audit_log where record_id = $1 and (leaf_index is null or leaf_index >= $2)",
    )
    .bind(record)
    .bind(size)
    .fetch_one(pool)
    .await?;
    let entries = rows.into_iter().map(|r| bundled(r, &leaves)).collect();
    Ok(Bundle {
        format: FORMAT.into(),
        record: record.into(),
        checkpoint,
        entries,
        pending: pending as u64,
    })
}

fn bundled(row: Row, leaves: &[Hash]) -> BundledEntry {
    let entry = row.entry.with_seal();
    let leaf_index = entry.seal.map_or(0, |s| s.leaf_index as u64);
    let b64 = |b: &[u8]| STANDARD.encode(b);
    let activity = row.raw.as_ref().map(|raw| BundledActivity {
        webhook: row.webhook_of_activity.clone().unwrap_or_default(),
        raw: b64(raw),
        mac: row.mac.as_deref().map(b64),
        fallback_time: row.fallback_time.unwrap_or(entry.activity_at),
    });
    let proof = inclusion_proof(leaves, leaf_index as usize);
    BundledEntry {
        leaf_index,
        personal_salt: row.personal_salt.as_deref().map(b64).unwrap_or_default(),
        personal_digest: b64(&row.personal_digest),
        raw_sha256: row.raw_sha256.as_deref().map(b64),
        activity,
        activity_redacted: row.activity_redacted,
        inclusion_proof: proof.iter().map(|h| b64(h)).collect(),
        entry,
    }
}

impl Bundle {
    /// The bundle's one canonical text.
    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).expect("a bundle serialises") + "\n"
    }
}

/// What the offline check found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BundleReport {
    /// The record.
    pub record: String,
    /// The checkpoint's tree size.
    pub checkpoint_size: u64,
    /// Entries checked.
    pub entries: u64,
    /// Entries whose Teams HMAC was checked (with a webhook key).
    pub hmac_checked: u64,
    /// Everything that does not hold.
    pub problems: Vec<String>,
}

/// Checks a bundle with no database: the checkpoint's signature, each leaf recomputed from
/// the bundled bytes and proven included, each entry re-derived by the grammar, and (with
/// `webhook_key`) each activity's Teams HMAC.
pub fn verify_bundle(
    text: &str,
    verifier: &NoteVerifier,
    webhook_key: Option<&KeyRing>,
) -> BundleReport {
    let mut report = BundleReport::default();
    let bundle: Bundle = match serde_json::from_str(text) {
        Ok(b) => b,
        Err(e) => {
            report.problems.push(format!("not a bundle: {e}"));
            return report;
        }
    };
    report.record = bundle.record.clone();
    if bundle.to_text() != text || bundle.format != FORMAT {
        report
            .problems
            .push("not in the exporter's canonical form: edited after export".into());
    }
    let checkpoint = verifier
        .verify(&bundle.checkpoint)
        .map_err(|e| e.to_string());
    let checkpoint = checkpoint.and_then(|t| Checkpoint::parse(t).map_err(|e| e.to_string()));
    let checkpoint = match checkpoint {
        Ok(c) => c,
        Err(e) => {
            report.problems.push(format!("checkpoint: {e}"));
            return report;
        }
    };
    report.checkpoint_size = checkpoint.size;
    let mut previous: Option<u64> = None;
    for b in &bundle.entries {
        report.entries += 1;
        let id = b.entry.event_id;
        if previous.is_some_and(|p| p >= b.leaf_index) {
            report
                .problems
                .push(format!("entry {id}: entries out of order or repeated"));
        }
        previous = Some(b.leaf_index);
        let seal_ok = b.entry.seal.is_some_and(|s| {
            s.leaf_index as u64 == b.leaf_index
                && s.checkpoint_size > s.leaf_index
                && s.checkpoint_size as u64 <= checkpoint.size
        });
        if b.entry.record_id.as_deref() != Some(bundle.record.as_str()) || !seal_ok {
            let record = &bundle.record;
            let why =
                format!("entry {id}: not an entry of record {record} sealed by this checkpoint");
            report.problems.push(why);
        }
        for why in check_entry(b, &checkpoint, webhook_key, &mut report.hmac_checked) {
            report
                .problems
                .push(format!("entry {id} (leaf {}): {why}", b.leaf_index));
        }
    }
    report
}

fn decode_hash(s: &str) -> Option<Hash> {
    STANDARD.decode(s).ok()?.try_into().ok()
}

/// Everything wrong with one bundled entry: its leaf, then its activity.
fn check_entry(
    b: &BundledEntry,
    checkpoint: &Checkpoint,
    webhook_key: Option<&KeyRing>,
    hmac_checked: &mut u64,
) -> Vec<String> {
    let raw = b
        .activity
        .as_ref()
        .and_then(|a| STANDARD.decode(&a.raw).ok());
    let mut problems = check_leaf(b, raw.as_deref(), checkpoint);
    match (&b.activity, raw) {
        // Its content was removed: the grammar cannot re-derive it (the leaf still holds).
        _ if b.entry.redacted.is_some() => {}
        (Some(activity), Some(raw)) => {
            problems.extend(check_activity(b, activity, &raw, webhook_key, hmac_checked))
        }
        (None, _) if b.activity_redacted.is_some() => {}
        _ => problems.push("no activity: it was not received from Teams".into()),
    }
    problems
}

/// The leaf recomputed from the bundled fields and bytes, and proven included.
fn check_leaf(b: &BundledEntry, raw: Option<&[u8]>, checkpoint: &Checkpoint) -> Vec<String> {
    let mut problems = Vec::new();
    let e = &b.entry;
    let salt = STANDARD.decode(&b.personal_salt).ok();
    let salt: Option<[u8; 16]> = salt.and_then(|s| s.try_into().ok());
    let digest = decode_hash(&b.personal_digest).unwrap_or_default();
    let fields = e.personal_fields();
    match salt {
        // Erased or expired: the fields and the salt are gone, the digest stays in the leaf.
        None if e.redacted.is_some() && e.content_removed() => {}
        Some(s) if personal_digest(&s, &fields) == digest => {}
        _ => problems.push("its names, changes or message differ from their sealed digest".into()),
    }
    let raw_sha256 = b.raw_sha256.as_deref().and_then(decode_hash);
    // An activity erased or expired since leaves only its sealed hash to prove the leaf.
    if b.activity_redacted.is_none() && raw.map(sha256) != raw_sha256 {
        problems.push("its activity's bytes are not the sealed ones".into());
    }
    let value = e.leaf_value(raw_sha256.as_ref(), &digest);
    let path: Option<Vec<Hash>> = b.inclusion_proof.iter().map(|h| decode_hash(h)).collect();
    let (root, size, index) = (&checkpoint.root, checkpoint.size, b.leaf_index);
    if !path.is_some_and(|p| verify_inclusion(root, size, index, &value, &p)) {
        problems.push("its leaf is not proven included in the checkpoint".into());
    }
    problems
}

/// The entry re-derived from its activity, and (with a key) the activity's Teams HMAC.
fn check_activity(
    b: &BundledEntry,
    activity: &BundledActivity,
    raw: &[u8],
    webhook_key: Option<&KeyRing>,
    hmac_checked: &mut u64,
) -> Vec<String> {
    let mut problems = Vec::new();
    let e = &b.entry;
    let at = Some(activity.fallback_time);
    let derived = AuditEntry::derive(e.event_id, &activity.webhook, raw, at, e.recorded_at);
    if !derived.is_ok_and(|d| d.says_the_same_as(e)) {
        problems.push("it differs from what its activity says".into());
    }
    if let Some(ring) = webhook_key {
        *hmac_checked += 1;
        let mac = activity
            .mac
            .as_deref()
            .and_then(|m| STANDARD.decode(m).ok());
        if mac.is_none_or(|m| ring.verify_mac(&m, raw).is_err()) {
            let why = "its activity does not carry a valid Teams signature for this key";
            problems.push(why.into());
        }
    }
    problems
}
