//! Signed checkpoints in the C2SP formats, so that any transparency-log tooling (and an
//! auditor's own script) can read them:
//!
//! - **tlog-checkpoint** body: `origin\nsize\nbase64(root)\n` and extension lines (here one:
//!   `time <RFC 3339>`);
//! - **signed-note**: the body, a blank line, and one line per signature,
//!   `— <key name> base64(key hash ‖ Ed25519 signature)`, where the key hash is the first
//!   4 bytes of SHA-256(name ‖ `\n` ‖ 0x01 ‖ public key);
//! - keys: the verifier key `name+hash+base64(0x01 ‖ public key)` (one line, shareable) and the
//!   private key `PRIVATE+KEY+name+hash+base64(0x01 ‖ seed)`.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::{merkle::Hash, secret::Secret};

/// The signed-note algorithm byte of Ed25519.
const ED25519: u8 = 0x01;

/// Why a key, note or checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Not a key in the signed-note format.
    #[error("not a signed-note {0} key")]
    BadKey(&'static str),
    /// Not a signed note, or no signature by this key.
    #[error("no valid signature by {0}")]
    NotSigned(String),
    /// The body is not a checkpoint.
    #[error("not a checkpoint: {0}")]
    BadCheckpoint(&'static str),
}

fn key_hash(name: &str, public: &VerifyingKey) -> u32 {
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update(b"\n")
        .chain_update([ED25519])
        .chain_update(public.as_bytes())
        .finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(|c: char| c.is_whitespace() || c == '+')
}

/// A key that signs checkpoints. Never printed.
pub struct NoteSigner {
    name: String,
    key: Secret<SigningKey>,
}

impl NoteSigner {
    /// A new key for `name` (the log's origin, by convention).
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKey("private"));
        }
        let seed: [u8; 32] = rand::random();
        let key = Secret::new(SigningKey::from_bytes(&seed));
        Ok(Self {
            name: name.to_string(),
            key,
        })
    }

    /// Reads `PRIVATE+KEY+name+hash+base64(0x01 ‖ seed)`.
    pub fn from_text(text: &str) -> Result<Self, NoteError> {
        let bad = NoteError::BadKey("private");
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(bad.clone())?;
        let (name, hash, key) = three_parts(rest).ok_or(bad.clone())?;
        let bytes = STANDARD.decode(key).map_err(|_| bad.clone())?;
        let seed: [u8; 32] = match bytes.split_first() {
            Some((&ED25519, seed)) => seed.try_into().map_err(|_| bad.clone())?,
            _ => return Err(bad),
        };
        let signer = Self {
            name: name.to_string(),
            key: Secret::new(SigningKey::from_bytes(&seed)),
        };
        match format!("{:08x}", signer.hash()) == hash && valid_name(name) {
            true => Ok(signer),
            false => Err(NoteError::BadKey("private")),
        }
    }

    /// The private key file's text.
    pub fn to_text(&self) -> Secret<String> {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.expose().as_bytes());
        let key = STANDARD.encode(bytes);
        Secret::new(format!(
            "PRIVATE+KEY+{}+{:08x}+{key}",
            self.name,
            self.hash()
        ))
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key: self.key.expose().verifying_key(),
        }
    }

    fn hash(&self) -> u32 {
        key_hash(&self.name, &self.key.expose().verifying_key())
    }

    /// Signs `text` (which must end with a newline) and returns the signed note.
    pub fn sign(&self, text: &str) -> String {
        debug_assert!(text.ends_with('\n'));
        let signature = self.key.expose().sign(text.as_bytes());
        let mut blob = self.hash().to_be_bytes().to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        format!("{text}\n\u{2014} {} {}\n", self.name, STANDARD.encode(blob))
    }
}

/// `name+hash+key`: names and hashes hold no `+`, base64 keys may.
fn three_parts(s: &str) -> Option<(&str, &str, &str)> {
    let mut parts = s.splitn(3, '+');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// A public key that checks checkpoints: the one line an auditor keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Reads `name+hash+base64(0x01 ‖ public key)`.
    pub fn from_text(text: &str) -> Result<Self, NoteError> {
        let bad = NoteError::BadKey("verifier");
        let (name, hash, key) = three_parts(text.trim()).ok_or(bad.clone())?;
        let bytes = STANDARD.decode(key).map_err(|_| bad.clone())?;
        let public: [u8; 32] = match bytes.split_first() {
            Some((&ED25519, public)) => public.try_into().map_err(|_| bad.clone())?,
            _ => return Err(bad),
        };
        let key = VerifyingKey::from_bytes(&public).map_err(|_| bad.clone())?;
        match valid_name(name) && format!("{:08x}", key_hash(name, &key)) == hash {
            true => Ok(Self {
                name: name.to_string(),
                key,
            }),
            false => Err(bad),
        }
    }

    /// The verifier key line.
    pub fn to_text(&self) -> String {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        let hash = key_hash(&self.name, &self.key);
        format!("{}+{hash:08x}+{}", self.name, STANDARD.encode(bytes))
    }

    /// The note's text, when one of its signatures is this key's and verifies.
    pub fn verify<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let unsigned = || NoteError::NotSigned(self.name.clone());
        let split = note.rfind("\n\n").ok_or_else(unsigned)?;
        let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
        let hash = key_hash(&self.name, &self.key).to_be_bytes();
        let prefix = format!("\u{2014} {} ", self.name);
        // A note is malformed unless every line after the text is a signature line.
        let well_formed = |line: &str| {
            let mut parts = line.split(' ');
            parts.next() == Some("\u{2014}")
                && parts.next().is_some()
                && parts.next().is_some()
                && parts.next().is_none()
        };
        if !signatures.ends_with('\n') || !signatures.lines().all(well_formed) {
            return Err(unsigned());
        }
        for line in signatures.lines() {
            let Some(blob) = line.strip_prefix(&prefix) else {
                continue;
            };
            let Ok(blob) = STANDARD.decode(blob) else {
                continue;
            };
            if blob.len() != 68 || blob[..4] != hash {
                continue;
            }
            let signature = Signature::from_slice(&blob[4..]).map_err(|_| unsigned())?;
            if self.key.verify_strict(text.as_bytes(), &signature).is_ok() {
                return Ok(text);
            }
        }
        Err(unsigned())
    }
}

/// A checkpoint: the tree of `size` leaves of the log `origin` has this `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name.
    pub origin: String,
    /// Leaves in the tree.
    pub size: u64,
    /// The tree's root hash.
    pub root: Hash,
    /// When the sealer wrote it.
    pub time: DateTime<Utc>,
}

impl Checkpoint {
    /// The tlog-checkpoint body.
    pub fn to_text(&self) -> String {
        let time = self.time.to_rfc3339_opts(SecondsFormat::Secs, true);
        let root = STANDARD.encode(self.root);
        format!("{}\n{}\n{root}\ntime {time}\n", self.origin, self.size)
    }

    /// Reads a tlog-checkpoint body (as [`NoteVerifier::verify`] returns it).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut lines = text.lines();
        let mut next = |what| lines.next().ok_or(NoteError::BadCheckpoint(what));
        let origin = next("no origin")?.to_string();
        let size = next("no size")?;
        let canonical = !size.is_empty() && size.bytes().all(|b| b.is_ascii_digit());
        if !canonical || (size.len() > 1 && size.starts_with('0')) || text.contains('\r') {
            return Err(NoteError::BadCheckpoint("size"));
        }
        let size = size.parse().map_err(|_| NoteError::BadCheckpoint("size"))?;
        let root = STANDARD.decode(next("no root")?).ok();
        let root = root.and_then(|r| r.try_into().ok());
        let root = root.ok_or(NoteError::BadCheckpoint("root"))?;
        let time = next("no time")?
            .strip_prefix("time ")
            .ok_or(NoteError::BadCheckpoint("time"))?;
        let time =
            DateTime::parse_from_rfc3339(time).map_err(|_| NoteError::BadCheckpoint("time"))?;
        let time = time.with_timezone(&Utc);
        Ok(Self {
            origin,
            size,
            root,
            time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_and_its_notes_verify_and_tampered_ones_do_not() {
        let signer = NoteSigner::generate("teams-bridge/hr-audit").unwrap();
        let again = NoteSigner::from_text(signer.to_text().expose()).unwrap();
        let verifier = NoteVerifier::from_text(&again.verifier().to_text()).unwrap();
        let note = signer.sign("teams-bridge/hr-audit\n3\nAAAA\n");
        assert_eq!(
            verifier.verify(&note),
            Ok("teams-bridge/hr-audit\n3\nAAAA\n")
        );
        let tampered = note.replace("\n3\n", "\n4\n");
        assert!(verifier.verify(&tampered).is_err());
        assert!(
            verifier.verify(&format!("{note}x")).is_err(),
            "junk after the signatures"
        );
        assert!(verifier.verify(&format!("{note}x\n")).is_err());
        let other = NoteSigner::generate("teams-bridge/hr-audit")
            .unwrap()
            .verifier();
        assert!(other.verify(&note).is_err(), "another key of the same name");
    }

    #[test]
    fn the_go_sumdb_note_example_verifies() {
        let verifier = NoteVerifier::from_text(
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        )
        .unwrap();
        let note = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        assert!(verifier.verify(note).is_ok());
        let signer = NoteSigner::from_text(
            "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        )
        .unwrap();
        let text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
        assert_eq!(signer.sign(text), note, "Ed25519 is deterministic");
    }

    #[test]
    fn a_checkpoint_round_trips_and_garbage_is_refused() {
        let c = Checkpoint {
            origin: "o".into(),
            size: 7,
            root: [9; 32],
            time: DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
                .unwrap()
                .into(),
        };
        assert_eq!(Checkpoint::parse(&c.to_text()), Ok(c));
        assert!(Checkpoint::parse("o\nseven\n").is_err());
        assert!(NoteSigner::from_text("PRIVATE+KEY+x+00000000+AAAA").is_err());
        assert!(NoteVerifier::from_text("not a key").is_err());
    }
}
