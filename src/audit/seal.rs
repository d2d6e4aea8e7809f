//! Sealing: every audit entry is a leaf of an RFC 6962 Merkle tree whose right frontier is
//! stored in `audit_tree` (O(log n) per leaf, resumed after any restart).
//!
//! Leaves are assigned where entries are written: the HR audit worker locks the tree row,
//! gives its batch's new entries consecutive leaf indexes and writes them with their salted
//! digest, their activity's SHA-256 and their leaf hash, in the transaction that inserts them
//! ([`seal_new`]). Writing the entry sealed costs one row update per batch; sealing it
//! afterwards cost a second, non-HOT version of every row (all of `audit_log`'s indexes again)
//! and a second read of every activity's bytes (measured: a fifth of Postgres' time at load).
//!
//! The [`Sealer`] signs: every `AUDIT_SEAL_INTERVAL_SECS`, or as soon as
//! `AUDIT_SEAL_MAX_ENTRIES` leaves wait, it writes a checkpoint of the tree as it stands. An
//! entry is sealed once a checkpoint covers it; the first such checkpoint is derived
//! (`audit_sealed_in(leaf_index)`), not stored. Entries written without a leaf (by an
//! operator action, or by a version before this one) are given theirs by the sealer, as
//! before. One sealer at a time across any number of workers: each seal runs under a
//! transaction-scoped Postgres advisory lock, so a second worker's attempt simply finds the
//! lock taken and waits for the next round; writers and the sealer meet at the tree row lock.
//!
//! Each checkpoint is also published on `{prefix}._audit.checkpoint`, so a copy lives
//! outside Postgres.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::jetstream;
use chrono::Utc;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::AuditEntry;
use crate::{
    domain::{
        audit_leaf::{personal_digest, sha256},
        merkle::{leaf_hash, Frontier, Hash},
        note::{Checkpoint, NoteSigner},
    },
    infra::run_loop::{Step, Steps},
};

/// The advisory lock every sealer takes for its transaction ("teams-bridge seal").
const SEAL_LOCK: i64 = 0x7462_5f73_6561_6c00;

/// Where and how often to seal.
pub struct Sealer {
    /// Postgres.
    pub pool: PgPool,
    /// Signs the checkpoints.
    pub signer: Arc<NoteSigner>,
    /// The log's name in its checkpoints.
    pub origin: String,
    /// Where checkpoints are published, and the subject.
    pub publish: Option<(jetstream::Context, String)>,
    /// Write a checkpoint at least this often when leaves wait for one.
    pub interval: Duration,
    /// Write one at once when this many wait; at most this many entries without a leaf
    /// (operator entries) are given theirs per checkpoint.
    pub max_entries: i64,
    /// When this sealer last sealed.
    pub last_seal: Instant,
}

/// One unsealed entry as the sealer reads it, with its activity's bytes.
#[derive(sqlx::FromRow)]
struct Unsealed {
    #[sqlx(flatten)]
    entry: AuditEntry,
    raw: Option<Vec<u8>>,
}

/// What sealing writes for one entry.
struct Sealed {
    event_id: Uuid,
    salt: [u8; 16],
    personal: Hash,
    raw_sha256: Option<Hash>,
    leaf: Hash,
}

/// The sealed fields of `entry`, whose activity's exact bytes have the SHA-256 `raw_sha256`
/// (`None`: no activity).
fn seal_one(entry: &AuditEntry, raw_sha256: Option<Hash>) -> Sealed {
    let salt: [u8; 16] = rand::random();
    let personal = personal_digest(&salt, &entry.personal_fields());
    let leaf = leaf_hash(&entry.leaf_value(raw_sha256.as_ref(), &personal));
    Sealed {
        event_id: entry.event_id,
        salt,
        personal,
        raw_sha256,
        leaf,
    }
}

/// The columns sealing adds to a new entry.
pub(crate) struct SealColumns {
    /// `personal_salt`.
    pub salt: [u8; 16],
    /// `personal_digest`.
    pub personal: Hash,
    /// `raw_sha256`.
    pub raw_sha256: Option<Hash>,
    /// `leaf_hash`.
    pub leaf: Hash,
    /// `leaf_index`.
    pub index: i64,
}

/// Seals new entries in the order given (each with the SHA-256 of its activity's exact bytes,
/// `None` when it has none) onto `frontier`, which the caller locked with [`lock_tree`] and saves with
/// [`save_tree`] in the same transaction as the entries.
pub(crate) fn seal_new(
    frontier: &mut Frontier,
    entries: &[(AuditEntry, Option<Hash>)],
) -> Vec<SealColumns> {
    entries
        .iter()
        .map(|(entry, raw)| {
            let s = seal_one(entry, *raw);
            let index = frontier.size() as i64;
            frontier.push(s.leaf);
            SealColumns {
                salt: s.salt,
                personal: s.personal,
                raw_sha256: s.raw_sha256,
                leaf: s.leaf,
                index,
            }
        })
        .collect()
}

/// Stores the tree's size and right frontier.
pub(crate) async fn save_tree(
    tx: &mut PgConnection,
    frontier: &Frontier,
) -> Result<(), sqlx::Error> {
    let hashes: Vec<&[u8]> = frontier.hashes().iter().map(|h| &h[..]).collect();
    sqlx::query("update audit_tree set size = $1, frontier = $2")
        .bind(frontier.size() as i64)
        .bind(hashes)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The size of the latest checkpoint (0 before the first).
async fn checkpointed(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let size: i64 = sqlx::query_scalar("select coalesce(max(size), 0) from audit_checkpoints")
        .fetch_one(conn)
        .await?;
    Ok(size as u64)
}

const UNSEALED: &str = "\
    select a.event_id, a.webhook, a.tenant_id, a.team_id, a.channel_id, a.actor_name, \
           a.actor_aad_object_id, a.operation, a.entity, a.record_id, a.changes, a.message, \
           a.activity_at, a.recorded_at, a.authorized, a.redacted, x.raw \
    from audit_log a left join activities x using (event_id) \
    where a.leaf_index is null order by a.recorded_at, a.event_id limit $1 \
    for update of a skip locked";

/// The sealed columns of entries written without a leaf. `sealed_in` is still stored for
/// them, as before; it equals the derived `audit_sealed_in(leaf_index)`.
const MARK: &str = "\
    update audit_log a set personal_salt = s.salt, personal_digest = s.personal, \
        raw_sha256 = s.raw_sha256, leaf_hash = s.leaf, leaf_index = s.idx, sealed_in = $7 \
    from unnest($1::uuid[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bytea[], $6::bigint[]) \
        as s(event_id, salt, personal, raw_sha256, leaf, idx) \
    where a.event_id = s.event_id";

impl Sealer {
    /// Gives leaves to the entries written without one (up to `max_entries`), then writes a
    /// checkpoint of the whole tree when it has grown since the last one. Returns the leaves
    /// the checkpoint newly covers; 0 when nothing waited or another sealer holds the lock.
    pub async fn seal_once(&mut self) -> Result<u64, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let leader: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock($1)")
            .bind(SEAL_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !leader {
            return Ok(0);
        }
        let mut frontier = lock_tree(&mut tx).await?;
        let before = checkpointed(&mut tx).await?;
        let entries: Vec<Unsealed> = sqlx::query_as(UNSEALED)
            .bind(self.max_entries)
            .fetch_all(&mut *tx)
            .await?;
        let sealed: Vec<Sealed> = entries
            .iter()
            .map(|u| seal_one(&u.entry, u.raw.as_deref().map(sha256)))
            .collect();
        let first = frontier.size() as i64;
        sealed.iter().for_each(|s| frontier.push(s.leaf));
        if frontier.size() <= before {
            return Ok(0);
        }
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            size: frontier.size(),
            root: frontier.root(),
            time: Utc::now(),
        };
        if !sealed.is_empty() {
            mark(&mut tx, &sealed, first, frontier.size() as i64).await?;
            save_tree(&mut tx, &frontier).await?;
        }
        self.store_checkpoint(&mut tx, &checkpoint).await?;
        tx.commit().await?;
        self.last_seal = Instant::now();
        let covered = frontier.size() - before;
        metrics::counter!("teams_bridge_audit_sealed_total").increment(covered);
        metrics::gauge!("teams_bridge_audit_tree_size").set(frontier.size() as f64);
        Ok(covered)
    }

    async fn store_checkpoint(
        &self,
        tx: &mut PgConnection,
        checkpoint: &Checkpoint,
    ) -> Result<(), sqlx::Error> {
        let note = self.signer.sign(&checkpoint.to_text());
        sqlx::query("insert into audit_checkpoints (size, root, note) values ($1, $2, $3)")
            .bind(checkpoint.size as i64)
            .bind(&checkpoint.root[..])
            .bind(&note)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// Publishes checkpoints not yet on the stream (a NATS outage only delays them).
    async fn publish_pending(&self) {
        let Some((js, subject)) = &self.publish else {
            return;
        };
        let pending: Vec<(i64, String)> = match sqlx::query_as(
            "select size, note from audit_checkpoints where not published order by size limit 100",
        )
        .fetch_all(&self.pool)
        .await
        {
            Ok(p) => p,
            Err(_) => return,
        };
        for (size, note) in pending {
            let msg = jetstream::message::PublishMessage::build()
                .payload(note.into_bytes().into())
                .message_id(format!("{}/{size}", self.origin));
            let acked = match js.send_publish(subject.clone(), msg).await {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            };
            if !acked {
                return;
            }
            let done = sqlx::query("update audit_checkpoints set published = true where size = $1");
            let _ = done.bind(size).execute(&self.pool).await;
        }
    }

    /// Entries no checkpoint covers yet: leaves beyond the last checkpoint, and entries
    /// still without a leaf (few: operator actions).
    async fn pending(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "select (select size from audit_tree) \
                    - coalesce((select max(size) from audit_checkpoints), 0) \
                    + (select count(*) from audit_log where leaf_index is null)",
        )
        .fetch_one(&self.pool)
        .await
    }
}

/// Locks the tree for this transaction and returns it. Every writer of leaves (workers, the
/// sealer) and erasure take this lock before they touch `audit_log`, so leaf indexes are
/// handed out one writer at a time, without gaps, and an entry is either written before an
/// erasure of its activity (and erased by it) or sees the activity erased.
pub(crate) async fn lock_tree(tx: &mut PgConnection) -> Result<Frontier, sqlx::Error> {
    let (size, hashes): (i64, Vec<Vec<u8>>) =
        sqlx::query_as("select size, frontier from audit_tree for update")
            .fetch_one(&mut *tx)
            .await?;
    let hashes: Option<Vec<Hash>> = hashes.into_iter().map(|h| h.try_into().ok()).collect();
    let broken = || sqlx::Error::Protocol("audit_tree holds no valid frontier".into());
    let hashes = hashes.ok_or_else(broken)?;
    Frontier::from_parts(size as u64, hashes).ok_or_else(broken)
}

async fn mark(
    tx: &mut PgConnection,
    sealed: &[Sealed],
    first: i64,
    checkpoint_size: i64,
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = sealed.iter().map(|s| s.event_id).collect();
    let salts: Vec<&[u8]> = sealed.iter().map(|s| &s.salt[..]).collect();
    let personal: Vec<&[u8]> = sealed.iter().map(|s| &s.personal[..]).collect();
    let raws: Vec<Option<&[u8]>> = sealed
        .iter()
        .map(|s| s.raw_sha256.as_ref().map(|h| &h[..]))
        .collect();
    let leaves: Vec<&[u8]> = sealed.iter().map(|s| &s.leaf[..]).collect();
    let indexes: Vec<i64> = (first..first + sealed.len() as i64).collect();
    sqlx::query(MARK)
        .bind(ids)
        .bind(salts)
        .bind(personal)
        .bind(raws)
        .bind(leaves)
        .bind(indexes)
        .bind(checkpoint_size)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

impl Steps for Sealer {
    type Error = sqlx::Error;

    fn name(&self) -> &'static str {
        "sealer"
    }

    async fn step(&mut self) -> Result<Step, sqlx::Error> {
        self.publish_pending().await;
        let pending = self.pending().await?;
        metrics::gauge!("teams_bridge_audit_pending").set(pending as f64);
        let due = pending >= self.max_entries || self.last_seal.elapsed() >= self.interval;
        if pending == 0 || !due {
            return Ok(Step::Idle);
        }
        match self.seal_once().await? {
            0 => Ok(Step::Idle),
            n => Ok(Step::Processed(n as usize)),
        }
    }

    async fn idle(&mut self) {
        tokio::time::sleep(self.interval.min(Duration::from_millis(250))).await;
    }
}
