//! `teams-bridge erase --actor AAD | --record ID`: removes a person's or a record's personal
//! data from Postgres in one transaction, and writes an `erase` audit entry (who asked, why,
//! how many items, the scope as a salted digest). The stream is cleaned afterwards
//! ([`super::stream`]).
//!
//! What is found:
//! - by actor: activities they sent (by Entra object id or Teams user id) and activities
//!   whose bytes hold one of their ids or their display name (mentions); audit entries they
//!   made, entries of those activities, entries whose message or changes hold their name,
//!   and the `grant` / `revoke` entries about them; their dead letters (by event id, or bytes
//!   holding an id or the name); their place on every HR editors list.
//! - by record: its audit entries (authorized or not), their activities and any activity
//!   whose text names the record; their dead letters.
//!
//! What is removed: of an activity, its bytes, text and MAC (and, when it is the
//! person's own, their names and ids): a tombstone stays. Of an entry, its changes and
//! message and the salt of its digest (and the person's name and id): the entry, its sealed
//! fields and its leaf stay, so the tree verifies. The record id itself may remain. Entries
//! of the `erase` operation are never erased. Held data is never erased: the whole request
//! is refused and names the holds.

use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{
    holds::{Hold, Scope},
    operator::{self, OperatorEntry},
};
use crate::domain::hr_command::Operation;

/// What an erasure touches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Found {
    /// Activities whose bytes and names go.
    pub activities: u64,
    /// Audit entries whose personal fields go.
    pub audit_entries: u64,
    /// Dead letters deleted.
    pub dead_letters: u64,
    /// Unpublished outbox rows (and dead outbox rows) deleted.
    pub outbox: u64,
    /// Places on HR editors lists removed.
    pub editors: u64,
}

impl Found {
    /// Nothing at all.
    pub fn is_empty(&self) -> bool {
        *self == Found::default()
    }
}

/// How an erasure ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Refused: these holds cover some of the data.
    Refused(Vec<Hold>),
    /// Nothing matched (erased before, or never there).
    Nothing,
    /// Dry run: what would be erased.
    WouldErase(Found),
    /// Done.
    Erased(Done),
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// What it touched.
    pub found: Found,
    /// The `erase` entry.
    pub entry: Uuid,
    /// The salt of the entry's `scope_digest`, for the requester's file (it is not stored:
    /// with it, anyone could test guesses against the digest).
    pub salt: [u8; 16],
    /// Webhooks whose last HR editor this removed: everyone may record changes there now.
    pub opened: Vec<String>,
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Whose data.
    pub scope: Scope,
    /// Why (stored in the `erase` entry).
    pub reason: String,
    /// Who asked.
    pub by: String,
    /// Count, change nothing.
    pub dry_run: bool,
}

/// The salted digest of a scope, as the `erase` entry keeps it: whoever holds the id and the
/// salt (given to the operator, not stored) can confirm the entry was about it; the entry
/// itself does not name it, and without the salt a guess cannot be tested against it.
pub fn scope_digest(salt: &[u8; 16], scope: &Scope) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"teams-bridge/erase-scope/v1\n");
    h.update(salt);
    h.update(scope.kind().as_bytes());
    h.update(b":");
    h.update(scope.value().as_bytes());
    h.finalize().into()
}

/// Lower-case hex (digests and salts as the `erase` entry and the CLI show them).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs one request.
pub async fn erase(pool: &PgPool, req: &Request) -> Result<Outcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // A hold placed while this runs waits for it (and then holds nothing: it is erased).
    sqlx::query("lock table legal_holds in share mode")
        .execute(&mut *tx)
        .await?;
    // A worker writes its entries under the audit tree's lock, having checked that their
    // activities are not erased: taking it here too, before anything is read, an entry is
    // either committed first (and found and erased below) or written after, and skipped.
    sqlx::query("select 1 from audit_tree for update")
        .execute(&mut *tx)
        .await?;
    let needles = collect(&mut tx, &req.scope).await?;
    let holds = holds_in_the_way(&mut tx, &req.scope).await?;
    if !holds.is_empty() {
        return Ok(Outcome::Refused(holds));
    }
    let (mut found, opened) = count(&mut tx, &req.scope, &needles).await?;
    if found.is_empty() {
        return Ok(Outcome::Nothing);
    }
    if req.dry_run {
        return Ok(Outcome::WouldErase(found));
    }
    let id = Uuid::now_v7();
    found.audit_entries = redact(&mut tx, id).await?;
    let salt: [u8; 16] = rand::random();
    let digest = scope_digest(&salt, &req.scope);
    let entry = OperatorEntry {
        operation: Operation::Erase,
        webhook: "*",
        entity: req.scope.kind(),
        by: &req.by,
        changes: json!({
            "scope": req.scope.kind(),
            "scope_digest": hex(&digest),
            "activities": found.activities,
            "audit_entries": found.audit_entries,
            "dead_letters": found.dead_letters,
            "outbox": found.outbox,
            "editors": found.editors,
        }),
        message: req.reason.clone(),
    };
    operator::write_as(&mut tx, id, &entry).await?;
    tx.commit().await?;
    Ok(Outcome::Erased(Done {
        found,
        entry: id,
        salt,
        opened,
    }))
}

/// Byte strings whose presence in a stored body ties it to the scope.
struct Needles {
    bytes: Vec<Vec<u8>>,
    names: Vec<String>,
}

/// Fills the temporary tables `erase_activities` and `erase_entries` (`own`: the person's
/// own, whose names and ids go too) and returns what to look for in dead letters.
async fn collect(tx: &mut PgConnection, scope: &Scope) -> Result<Needles, sqlx::Error> {
    for table in ["erase_activities", "erase_entries"] {
        let sql = format!(
            "create temp table {table} (event_id uuid primary key, own boolean not null) \
             on commit drop"
        );
        sqlx::query(&sql).execute(&mut *tx).await?;
    }
    match scope {
        Scope::Actor(aad) => collect_actor(tx, aad).await,
        Scope::Record(record) => collect_record(tx, record).await.map(|()| Needles {
            bytes: vec![record.as_bytes().to_vec()],
            names: Vec::new(),
        }),
    }
}

/// Free-text matches on names shorter than this would hit unrelated words.
const MIN_NAME: usize = 3;

async fn collect_actor(tx: &mut PgConnection, aad: &str) -> Result<Needles, sqlx::Error> {
    let ids: Vec<String> = sqlx::query_scalar(
        "select distinct sender_id from activities \
         where sender_aad_object_id = $1 and sender_id is not null",
    )
    .bind(aad)
    .fetch_all(&mut *tx)
    .await?;
    let names: Vec<String> = sqlx::query_scalar(
        "select distinct n from ( \
             select sender_name as n from activities where sender_aad_object_id = $1 \
             union select actor_name from audit_log where actor_aad_object_id = $1 \
             union select name from hr_editors where aad_object_id = $1 \
             union select changes ->> 'name' from audit_log \
                 where operation in ('grant', 'revoke') and changes ->> 'editor' = $1) s \
         where n is not null",
    )
    .bind(aad)
    .fetch_all(&mut *tx)
    .await?;
    let names: Vec<String> = names.into_iter().filter(|n| n.len() >= MIN_NAME).collect();
    let mut bytes: Vec<Vec<u8>> = vec![aad.as_bytes().to_vec()];
    bytes.extend(ids.iter().map(|i| i.as_bytes().to_vec()));
    bytes.extend(names.iter().map(|n| n.as_bytes().to_vec()));
    sqlx::query(
        "insert into erase_activities \
         select a.event_id, coalesce(a.sender_aad_object_id = $1 or a.sender_id = any($2), false) \
         from activities a \
         where a.sender_aad_object_id = $1 or a.sender_id = any($2) \
            or exists (select 1 from unnest($3::bytea[]) n where position(n in a.raw) > 0)",
    )
    .bind(aad)
    .bind(&ids)
    .bind(&bytes)
    .execute(&mut *tx)
    .await?;
    // Their entries (also one of their activities whose entry lacks the Entra id), entries of
    // activities naming them, and any entry whose text holds one of their ids or names.
    let mut words: Vec<String> = vec![aad.to_string()];
    words.extend(ids.iter().cloned());
    words.extend(names.iter().cloned());
    sqlx::query(
        "insert into erase_entries \
         select l.event_id, coalesce(l.actor_aad_object_id = $1, false) \
                            or coalesce(x.own, false) \
         from audit_log l left join erase_activities x using (event_id) \
         where l.operation <> 'erase' and (l.actor_aad_object_id = $1 or x.event_id is not null \
            or (l.operation in ('grant', 'revoke') and l.changes ->> 'editor' = $1) \
            or exists (select 1 from unnest($2::text[]) n \
                       where position(n in l.message) > 0 or position(n in l.changes::text) > 0)) \
           and (l.redacted is distinct from 'erased' or l.actor_aad_object_id = $1 \
                or l.actor_name is not null and x.own)",
    )
    .bind(aad)
    .bind(&words)
    .execute(&mut *tx)
    .await?;
    Ok(Needles { bytes, names })
}

async fn collect_record(tx: &mut PgConnection, record: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into erase_entries select event_id, false from audit_log \
         where record_id = $1 and operation <> 'erase' and redacted is distinct from 'erased'",
    )
    .bind(record)
    .execute(&mut *tx)
    .await?;
    // The activities of those entries, and any activity whose text names the record (one
    // the worker has not reached yet, or a message that is a note about it).
    sqlx::query(
        "insert into erase_activities \
         select a.event_id, false from activities a \
         where a.raw is not null and (a.event_id in (select event_id from erase_entries) \
            or a.text ~ ('(^|[^A-Za-z0-9_-])' || $1 || '($|[^A-Za-z0-9_-])'))",
    )
    .bind(regex_literal(record))
    .execute(&mut *tx)
    .await?;
    // The entries of those activities (a note naming the record), and any entry whose text
    // names it.
    sqlx::query(
        "insert into erase_entries select l.event_id, false from audit_log l \
         where l.operation <> 'erase' and l.redacted is distinct from 'erased' \
           and (l.event_id in (select event_id from erase_activities) \
                or l.message ~ ('(^|[^A-Za-z0-9_-])' || $1 || '($|[^A-Za-z0-9_-])')) \
         on conflict (event_id) do nothing",
    )
    .bind(regex_literal(record))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A record id (`[A-Za-z0-9_-]`, checked by the CLI) as a literal in a POSIX regex.
fn regex_literal(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escape = !(c.is_ascii_alphanumeric() || c == '_');
            escape.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// The holds that cover any of the data found, or the scope itself.
async fn holds_in_the_way(tx: &mut PgConnection, scope: &Scope) -> Result<Vec<Hold>, sqlx::Error> {
    sqlx::query_as(
        "select h.kind, h.value, h.reason, h.created_at from legal_holds h \
         where (h.kind = $1 and h.value = $2) \
            or (h.kind = 'actor' and h.value in ( \
                 select a.sender_aad_object_id from activities a join erase_activities using (event_id) \
                 union select l.actor_aad_object_id from audit_log l join erase_entries using (event_id))) \
            or (h.kind = 'record' and h.value in ( \
                 select l.record_id from audit_log l where l.event_id in \
                     (select event_id from erase_entries union select event_id from erase_activities))) \
         order by h.kind, h.value",
    )
    .bind(scope.kind())
    .bind(scope.value())
    .fetch_all(tx)
    .await
}

/// Counts the found rows and deletes what goes whole (dead letters, outbox rows, editors);
/// the caller rolls back on a dry run.
async fn count(
    tx: &mut PgConnection,
    scope: &Scope,
    needles: &Needles,
) -> Result<(Found, Vec<String>), sqlx::Error> {
    let n = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
    let activities = n("select count(*) from erase_activities")
        .fetch_one(&mut *tx)
        .await?;
    let entries = n("select count(*) from erase_entries")
        .fetch_one(&mut *tx)
        .await?;
    let mut found = Found {
        activities: activities as u64,
        audit_entries: entries as u64,
        ..Found::default()
    };
    let mut bytes = needles.bytes.clone();
    bytes.extend(needles.names.iter().map(|n| n.as_bytes().to_vec()));
    found.dead_letters = sqlx::query(
        "delete from dead_letters d where d.event_id in (select event_id::text from erase_activities) \
            or exists (select 1 from unnest($1::bytea[]) n where position(n in d.raw) > 0)",
    )
    .bind(&bytes)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    for sql in [
        "delete from outbox where event_id in (select event_id from erase_activities)",
        "delete from outbox_dead where event_id in (select event_id from erase_activities)",
    ] {
        found.outbox += sqlx::query(sql).execute(&mut *tx).await?.rows_affected();
    }
    let mut opened = Vec::new();
    if let Scope::Actor(aad) = scope {
        let lists: Vec<String> =
            sqlx::query_scalar("delete from hr_editors where aad_object_id = $1 returning webhook")
                .bind(aad)
                .fetch_all(&mut *tx)
                .await?;
        found.editors = lists.len() as u64;
        opened = sqlx::query_scalar(
            "select w from unnest($1::text[]) w \
             where not exists (select 1 from hr_editors e where e.webhook = w)",
        )
        .bind(&lists)
        .fetch_all(&mut *tx)
        .await?;
    }
    Ok((found, opened))
}

/// Removes the personal fields of what was found; returns how many entries `id` erased
/// (an entry erased before keeps the erasure that first named it).
async fn redact(tx: &mut PgConnection, id: Uuid) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "update activities a set raw = null, text = null, mac = null, \
             sender_id = case when e.own then null else a.sender_id end, \
             sender_name = case when e.own then null else a.sender_name end, \
             sender_aad_object_id = case when e.own then null else a.sender_aad_object_id end, \
             redacted = 'erased', redacted_at = now() \
         from erase_activities e where a.event_id = e.event_id",
    )
    .execute(&mut *tx)
    .await?;
    let named: Vec<bool> = sqlx::query_scalar(
        "update audit_log l set changes = '{}'::jsonb, message = '', personal_salt = null, \
             actor_name = case when e.own then null else l.actor_name end, \
             actor_aad_object_id = case when e.own then null else l.actor_aad_object_id end, \
             redacted = 'erased', redacted_at = now(), erased_by = coalesce(l.erased_by, $1) \
         from erase_entries e where l.event_id = e.event_id \
         returning l.erased_by = $1",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    Ok(named.into_iter().filter(|n| *n).count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_digest_depends_on_salt_kind_and_value() {
        let actor = Scope::Actor("aad-1".into());
        let d = scope_digest(&[1; 16], &actor);
        assert_ne!(d, scope_digest(&[2; 16], &actor));
        assert_ne!(d, scope_digest(&[1; 16], &Scope::Record("aad-1".into())));
        assert_ne!(d, scope_digest(&[1; 16], &Scope::Actor("aad-2".into())));
    }

    #[test]
    fn record_ids_are_regex_literals() {
        assert_eq!(regex_literal("E-1042"), "E\\-1042");
        assert_eq!(regex_literal("a_b"), "a_b");
    }
}
