//! The canonical encoding of one audit entry as a Merkle leaf (version 1).
//!
//! The leaf commits to the entry's fields **and** to the SHA-256 of the activity's exact
//! signed bytes, so a change to either changes the leaf. Personal data (names, ids of people,
//! free text, changed values) enters only through a salted digest stored beside the entry:
//! erasing a person removes those fields and the salt and keeps the digest, so the leaf still
//! recomputes, and without the salt (128 random bits) the digest cannot be searched back into
//! a name.
//!
//! Encoding: the tag line, then each field as a 4-byte big-endian length and its bytes (UTF-8
//! text, or a hash's 32 bytes); an absent field is the length `0xFFFFFFFF` alone.
//!
//! ```text
//! leaf     = "teams-bridge/audit-leaf/v1\n" event_id webhook tenant_id team_id channel_id
//!            operation entity record_id activity_at raw_sha256 personal_digest
//! personal = SHA-256("teams-bridge/audit-personal/v1\n" salt(16) actor_name
//!            actor_aad_object_id changes message)
//! ```
//!
//! An entry recorded but not counted as a change (its sender is not an HR editor of a webhook
//! with a list) is encoded as version 2: the v2 tag, the same fields, then the field
//! `authorized` = `false`. Every other entry keeps the v1 encoding, so leaves sealed before
//! authorization existed still recompute, and flipping the flag changes the leaf.
//!
//! ```text
//! leaf v2  = "teams-bridge/audit-leaf/v2\n" (the v1 fields) "false"
//! ```
//!
//! `activity_at` is RFC 3339 in UTC with microseconds (`2026-11-27T10:00:00.000000Z`),
//! `changes` the JSON object with its keys sorted, ids and names as stored.

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::merkle::Hash;

const LEAF_TAG: &[u8] = b"teams-bridge/audit-leaf/v1\n";
const LEAF_TAG_V2: &[u8] = b"teams-bridge/audit-leaf/v2\n";
const PERSONAL_TAG: &[u8] = b"teams-bridge/audit-personal/v1\n";

/// The sealed, non-personal fields of an entry.
#[derive(Debug, Clone, Copy)]
pub struct LeafFields<'a> {
    /// The activity's event id.
    pub event_id: Uuid,
    /// Webhook name.
    pub webhook: &'a str,
    /// Tenant id.
    pub tenant_id: Option<&'a str>,
    /// Team id.
    pub team_id: Option<&'a str>,
    /// Channel id.
    pub channel_id: Option<&'a str>,
    /// `create`, `read`, `update`, `delete` or `note`.
    pub operation: &'a str,
    /// `employee` for operations.
    pub entity: Option<&'a str>,
    /// The employee record id.
    pub record_id: Option<&'a str>,
    /// When it happened.
    pub activity_at: DateTime<Utc>,
    /// SHA-256 of the activity's exact signed bytes (none: sealed without its activity).
    pub raw_sha256: Option<&'a Hash>,
    /// The digest of the personal fields.
    pub personal_digest: &'a Hash,
    /// Whether it counts as a change (false: recorded, but its sender is not an HR editor).
    pub authorized: bool,
}

/// The personal fields of an entry.
#[derive(Debug, Clone, Copy)]
pub struct PersonalFields<'a> {
    /// Display name.
    pub actor_name: Option<&'a str>,
    /// Entra object id.
    pub actor_aad_object_id: Option<&'a str>,
    /// Field → value, as a JSON object.
    pub changes: &'a serde_json::Value,
    /// The text as typed.
    pub message: &'a str,
}

fn field(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) => {
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
    }
}

/// The time as encoded: microseconds, the precision the database keeps.
pub fn encode_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The leaf's value (its hash is `merkle::leaf_hash` of this).
pub fn leaf_value(f: &LeafFields<'_>) -> Vec<u8> {
    let mut out = if f.authorized { LEAF_TAG } else { LEAF_TAG_V2 }.to_vec();
    let id = f.event_id.to_string();
    for v in [
        Some(id.as_str()),
        Some(f.webhook),
        f.tenant_id,
        f.team_id,
        f.channel_id,
    ] {
        field(&mut out, v);
    }
    let at = encode_time(f.activity_at);
    for v in [Some(f.operation), f.entity, f.record_id, Some(at.as_str())] {
        field(&mut out, v);
    }
    for hash in [f.raw_sha256, Some(f.personal_digest)] {
        match hash {
            Some(h) => {
                out.extend_from_slice(&32u32.to_be_bytes());
                out.extend_from_slice(h);
            }
            None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
        }
    }
    if !f.authorized {
        field(&mut out, Some("false"));
    }
    out
}

/// The salted digest of the personal fields.
pub fn personal_digest(salt: &[u8; 16], p: &PersonalFields<'_>) -> Hash {
    let mut out = PERSONAL_TAG.to_vec();
    out.extend_from_slice(salt);
    field(&mut out, p.actor_name);
    field(&mut out, p.actor_aad_object_id);
    field(&mut out, Some(&p.changes.to_string()));
    field(&mut out, Some(p.message));
    Sha256::digest(out).into()
}

/// SHA-256 of bytes.
pub fn sha256(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(raw: &'a Hash, personal: &'a Hash) -> LeafFields<'a> {
        LeafFields {
            event_id: Uuid::nil(),
            webhook: "contoso",
            tenant_id: None,
            team_id: Some("T"),
            channel_id: Some("C"),
            operation: "update",
            entity: Some("employee"),
            record_id: Some("E-1042"),
            activity_at: DateTime::from_timestamp_micros(1_800_000_000_000_001).unwrap(),
            raw_sha256: Some(raw),
            personal_digest: personal,
            authorized: true,
        }
    }

    #[test]
    fn every_field_and_the_evidence_change_the_leaf_and_absent_differs_from_empty() {
        let (raw, personal) = (sha256(b"{}"), [7; 32]);
        let base = leaf_value(&fields(&raw, &personal));
        let other_raw = sha256(b"{ }");
        assert_ne!(base, leaf_value(&fields(&other_raw, &personal)));
        let mut f = fields(&raw, &personal);
        f.tenant_id = Some("");
        assert_ne!(base, leaf_value(&f), "absent is not empty");
        f = fields(&raw, &personal);
        f.record_id = Some("E-1043");
        assert_ne!(base, leaf_value(&f));
        assert!(base.starts_with(b"teams-bridge/audit-leaf/v1\n"));
        assert_eq!(encode_time(f.activity_at), "2027-01-15T08:00:00.000001Z");
    }

    #[test]
    fn an_unauthorized_entry_is_a_v2_leaf_and_an_authorized_one_keeps_v1() {
        let (raw, personal) = (sha256(b"{}"), [7; 32]);
        let v1 = leaf_value(&fields(&raw, &personal));
        let v2 = leaf_value(&LeafFields {
            authorized: false,
            ..fields(&raw, &personal)
        });
        assert!(v2.starts_with(b"teams-bridge/audit-leaf/v2\n"));
        // v2 is v1's fields under the v2 tag, then the flag.
        assert_eq!(&v2[27..v2.len() - 9], &v1[27..]);
        assert_eq!(&v2[v2.len() - 9..], b"\0\0\0\x05false");
    }

    #[test]
    fn the_personal_digest_depends_on_the_salt_and_every_personal_field() {
        let changes = serde_json::json!({"title": "Engineer"});
        let p = PersonalFields {
            actor_name: Some("Jane Doe"),
            actor_aad_object_id: Some("aad-1"),
            changes: &changes,
            message: "update employee E-1 title=Engineer",
        };
        let d = personal_digest(&[1; 16], &p);
        assert_ne!(d, personal_digest(&[2; 16], &p));
        let renamed = PersonalFields {
            actor_name: Some("Jane Roe"),
            ..p
        };
        assert_ne!(d, personal_digest(&[1; 16], &renamed));
        let other = serde_json::json!({"title": "Manager"});
        assert_ne!(
            d,
            personal_digest(
                &[1; 16],
                &PersonalFields {
                    changes: &other,
                    ..p
                }
            )
        );
    }
}
