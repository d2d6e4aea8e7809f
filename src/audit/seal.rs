//! The sealer: gives unsealed audit entries consecutive leaf indexes, extends the Merkle tree
//! from its stored right frontier (O(log n) per leaf, resumed after any restart), and writes a
//! signed checkpoint for each extension, every `AUDIT_SEAL_INTERVAL_SECS` or as soon as
//! `AUDIT_SEAL_MAX_ENTRIES` wait. One sealer at a time across any number of workers: each
//! seal runs under a transaction-scoped Postgres advisory lock, so a second worker's attempt
//! simply finds the lock taken and waits for the next round.
//!
//! The personal fields' salted digest and the activity's SHA-256 are computed here, from
//! what is stored, so that entries written before sealing existed are sealed the same way.
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
    /// Seal at least this often when entries wait.
    pub interval: Duration,
    /// Seal at once when this many wait; at most this many per checkpoint.
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

fn seal_one(u: &Unsealed) -> Sealed {
    let salt: [u8; 16] = rand::random();
    let personal = personal_digest(&salt, &u.entry.personal_fields());
    let raw_sha256 = u.raw.as_deref().map(sha256);
    let leaf = leaf_hash(&u.entry.leaf_value(raw_sha256.as_ref(), &personal));
    Sealed {
        event_id: u.entry.event_id,
        salt,
        personal,
        raw_sha256,
        leaf,
    }
}

const UNSEALED: &str = "\
    select a.event_id, a.webhook, a.tenant_id, a.team_id, a.channel_id, a.actor_name, \
           a.actor_aad_object_id, a.operation, a.entity, a.record_id, a.changes, a.message, \
           a.activity_at, a.recorded_at, a.authorized, a.redacted, x.raw \
    from audit_log a left join activities x using (event_id) \
    where a.leaf_index is null order by a.recorded_at, a.event_id limit $1 for update of a";

const MARK: &str = "\
    update audit_log a set personal_salt = s.salt, personal_digest = s.personal, \
        raw_sha256 = s.raw_sha256, leaf_hash = s.leaf, leaf_index = s.idx, sealed_in = $7 \
    from unnest($1::uuid[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bytea[], $6::bigint[]) \
        as s(event_id, salt, personal, raw_sha256, leaf, idx) \
    where a.event_id = s.event_id";

impl Sealer {
    /// Seals what waits (up to `max_entries`) and writes its checkpoint; 0 when nothing
    /// waited or another sealer holds the lock.
    pub async fn seal_once(&mut self) -> Result<u64, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let leader: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock($1)")
            .bind(SEAL_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !leader {
            return Ok(0);
        }
        let mut frontier = load_frontier(&mut tx).await?;
        let entries: Vec<Unsealed> = sqlx::query_as(UNSEALED)
            .bind(self.max_entries)
            .fetch_all(&mut *tx)
            .await?;
        if entries.is_empty() {
            return Ok(0);
        }
        let sealed: Vec<Sealed> = entries.iter().map(seal_one).collect();
        let first = frontier.size() as i64;
        sealed.iter().for_each(|s| frontier.push(s.leaf));
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            size: frontier.size(),
            root: frontier.root(),
            time: Utc::now(),
        };
        mark(&mut tx, &sealed, first, frontier.size() as i64).await?;
        self.store_checkpoint(&mut tx, &checkpoint, &frontier)
            .await?;
        tx.commit().await?;
        self.last_seal = Instant::now();
        metrics::counter!("teams_bridge_audit_sealed_total").increment(sealed.len() as u64);
        metrics::gauge!("teams_bridge_audit_tree_size").set(frontier.size() as f64);
        Ok(sealed.len() as u64)
    }

    async fn store_checkpoint(
        &self,
        tx: &mut PgConnection,
        checkpoint: &Checkpoint,
        frontier: &Frontier,
    ) -> Result<(), sqlx::Error> {
        let note = self.signer.sign(&checkpoint.to_text());
        sqlx::query("insert into audit_checkpoints (size, root, note) values ($1, $2, $3)")
            .bind(checkpoint.size as i64)
            .bind(&checkpoint.root[..])
            .bind(&note)
            .execute(&mut *tx)
            .await?;
        let hashes: Vec<&[u8]> = frontier.hashes().iter().map(|h| &h[..]).collect();
        sqlx::query("update audit_tree set size = $1, frontier = $2")
            .bind(frontier.size() as i64)
            .bind(hashes)
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

    async fn pending(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("select count(*) from audit_log where leaf_index is null")
            .fetch_one(&self.pool)
            .await
    }
}

async fn load_frontier(tx: &mut PgConnection) -> Result<Frontier, sqlx::Error> {
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
