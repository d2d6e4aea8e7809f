//! Teams outgoing-webhook signatures: `Authorization: HMAC <base64>` where the MAC is
//! HMAC-SHA256 keyed with the *base64-decoded* security token over the exact body bytes.
//!
//! Pure logic, no I/O. Verification is constant time per key and tries every key of the
//! ring, so a webhook can be re-created (new token) without a window where messages fail.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::domain::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Why a request's signature was refused. None of the variants carries a secret or a MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Authorization` header at all.
    #[error("missing Authorization header")]
    Missing,
    /// The header is not `HMAC <base64 of 32 bytes>`.
    #[error("malformed Authorization header (expected `HMAC <base64>`)")]
    Malformed,
    /// Well-formed, but no key of the ring produced this MAC over these bytes.
    #[error("signature does not match the body")]
    Mismatch,
}

/// The keys of one webhook. More than one key during a token change-over.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<Secret<Vec<u8>>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyRing({} keys, redacted)", self.keys.len())
    }
}

/// A security token that is not valid standard base64 (Teams shows it base64-encoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("security token is not valid base64 (Teams shows it base64-encoded; copy it exactly)")]
pub struct BadToken;

impl KeyRing {
    /// Builds a ring from the base64 security tokens exactly as Teams shows them.
    pub fn from_tokens<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Result<Self, BadToken> {
        let keys = tokens
            .into_iter()
            .map(decode_token)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { keys })
    }

    /// Whether one of the ring's keys is `token`'s (compared in constant time).
    pub fn holds_token(&self, token: &str) -> bool {
        let Ok(wanted) = decode_token(token) else {
            return false;
        };
        let same = |k: &Secret<Vec<u8>>| bool::from(k.expose().ct_eq(wanted.expose()));
        self.keys.iter().fold(false, |found, k| found | same(k))
    }

    /// The length in bytes of each key (Teams' tokens decode to 32).
    pub fn key_lengths(&self) -> Vec<usize> {
        self.keys.iter().map(|k| k.expose().len()).collect()
    }

    /// Number of keys in the ring.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the ring holds no key (a webhook that can never verify).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks an `Authorization` header value against the exact body bytes; returns the MAC
    /// that verified (evidence worth keeping: it cannot give the key away).
    pub fn verify(
        &self,
        authorization: Option<&[u8]>,
        body: &[u8],
    ) -> Result<[u8; 32], SignatureError> {
        let header = authorization.ok_or(SignatureError::Missing)?;
        let mac = parse_header(header)?;
        self.verify_mac(&mac, body).map(|()| mac)
    }

    /// Checks a MAC (as stored with an activity) against the exact body bytes.
    pub fn verify_mac(&self, mac: &[u8], body: &[u8]) -> Result<(), SignatureError> {
        // Every key is tried, whatever the outcome of the others, so the time taken does not
        // reveal which key (if any) matched.
        let mut matched = false;
        for key in &self.keys {
            let mut m =
                HmacSha256::new_from_slice(key.expose()).expect("HMAC takes any key length");
            m.update(body);
            matched |= m.verify_slice(mac).is_ok();
        }
        if matched {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// The MAC of an `Authorization: HMAC <base64>` header, before any body is read.
pub fn parse_authorization(authorization: Option<&[u8]>) -> Result<[u8; 32], SignatureError> {
    parse_header(authorization.ok_or(SignatureError::Missing)?)
}

/// The security token of Microsoft's documented example (the `contoso` test vector): public,
/// so anyone can sign with it. `serve` refuses it unless `DEV_MODE=1`.
pub const DOCUMENTED_TEST_TOKEN: &str = "vqF0En+Z0ucuRTM/01o2GuhMH3hKKk/N2bOmlM31zaA=";

/// Decodes one base64 security token into key bytes.
pub(crate) fn decode_token(token: &str) -> Result<Secret<Vec<u8>>, BadToken> {
    match STANDARD.decode(token.trim()) {
        Ok(bytes) if !bytes.is_empty() => Ok(Secret::new(bytes)),
        _ => Err(BadToken),
    }
}

/// The `Authorization` header value Teams would send for `body` signed with `token`.
pub fn sign(token: &str, body: &[u8]) -> Result<String, BadToken> {
    let key = decode_token(token)?;
    let mut m = HmacSha256::new_from_slice(key.expose()).expect("HMAC takes any key length");
    m.update(body);
    Ok(format!(
        "HMAC {}",
        STANDARD.encode(m.finalize().into_bytes())
    ))
}

fn parse_header(header: &[u8]) -> Result<[u8; 32], SignatureError> {
    let header = std::str::from_utf8(header).map_err(|_| SignatureError::Malformed)?;
    let (scheme, value) = header
        .trim()
        .split_once(' ')
        .ok_or(SignatureError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("HMAC") {
        return Err(SignatureError::Malformed);
    }
    let bytes = STANDARD
        .decode(value.trim())
        .map_err(|_| SignatureError::Malformed)?;
    bytes.try_into().map_err(|_| SignatureError::Malformed)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_header_and_body_is_refused_or_verified_never_a_panic(
            header in proptest::collection::vec(any::<u8>(), 0..100),
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            // A random header is never the MAC of a random body: refused, and no panic.
            prop_assert!(contoso().verify(Some(&header), &body).is_err());
        }
    }

    const CONTOSO_TOKEN: &str = "vqF0En+Z0ucuRTM/01o2GuhMH3hKKk/N2bOmlM31zaA=";
    const CONTOSO_HEADER: &str = "HMAC 03TCao0i55H1eVKUusZOTZRjtvYTs+mO41mPL+R1e1U=";
    const FABRIKAM_TOKEN: &str = "QgyNSToQjf4p6+YzDpjKks1/tXeJQ7FhVHqRwTnugVI=";

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/teams/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path} must exist: {e}"))
    }

    fn contoso() -> KeyRing {
        KeyRing::from_tokens([CONTOSO_TOKEN]).unwrap()
    }

    #[test]
    fn the_official_contoso_vector_verifies() {
        let body = fixture("contoso-docs-example.json");
        assert_eq!(body.len(), 1891);
        assert_eq!(
            contoso()
                .verify(Some(CONTOSO_HEADER.as_bytes()), &body)
                .map(drop),
            Ok(())
        );
    }

    #[test]
    fn signing_the_official_body_reproduces_the_published_header() {
        let body = fixture("contoso-docs-example.json");
        assert_eq!(sign(CONTOSO_TOKEN, &body).unwrap(), CONTOSO_HEADER);
    }

    #[test]
    fn a_body_with_a_trailing_newline_does_not_verify() {
        let mut body = fixture("contoso-docs-example.json");
        body.push(b'\n');
        assert_eq!(
            sign(CONTOSO_TOKEN, &body).unwrap(),
            "HMAC zMbvwqBpuAc1L1DkdVhpOvVWFgmWXTGFfbWJbV+MWGw="
        );
        assert_eq!(
            contoso().verify(Some(CONTOSO_HEADER.as_bytes()), &body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_body_with_crlf_line_endings_does_not_verify() {
        let body = fixture("contoso-docs-example.json");
        let crlf: Vec<u8> = String::from_utf8(body)
            .unwrap()
            .replace('\n', "\r\n")
            .into_bytes();
        assert_eq!(
            sign(CONTOSO_TOKEN, &crlf).unwrap(),
            "HMAC gD8fDYlb4zbf2XP6Q2PAmcPE00vBMWDzwixk7o39geU="
        );
        assert_eq!(
            contoso().verify(Some(CONTOSO_HEADER.as_bytes()), &crlf),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_re_serialised_body_does_not_verify() {
        let body = fixture("contoso-docs-example.json");
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let compact = serde_json::to_vec(&value).unwrap();
        assert_ne!(compact, body);
        assert_eq!(
            contoso().verify(Some(CONTOSO_HEADER.as_bytes()), &compact),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_token_used_as_text_instead_of_base64_does_not_verify() {
        let body = fixture("contoso-docs-example.json");
        let mut m = HmacSha256::new_from_slice(CONTOSO_TOKEN.as_bytes()).unwrap();
        m.update(&body);
        let wrong = format!("HMAC {}", STANDARD.encode(m.finalize().into_bytes()));
        assert_eq!(wrong, "HMAC f02WnK4FzS/zvR1qL2B0KBhOc47u4//BV3+eNl5A4cU=");
        assert_eq!(
            contoso().verify(Some(wrong.as_bytes()), &body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn raw_utf8_emoji_bodies_verify_and_a_latin1_mangled_copy_does_not() {
        let body = fixture("real-outgoing-webhook-capcoins-emoji.json");
        let good = "HMAC fkjo26UZvIGA7wtI0YFKf+U2tpwc85cDCDXX5LUzXqE=";
        assert_eq!(sign(CONTOSO_TOKEN, &body).unwrap(), good);
        let mangled: String = body.iter().map(|&b| b as char).collect();
        assert_eq!(
            contoso().verify(Some(good.as_bytes()), mangled.as_bytes()),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn either_key_of_a_ring_verifies() {
        let body = fixture("contoso-docs-example.json");
        let ring = KeyRing::from_tokens([FABRIKAM_TOKEN, CONTOSO_TOKEN]).unwrap();
        assert!(ring.verify(Some(CONTOSO_HEADER.as_bytes()), &body).is_ok());
        let by_fabrikam = sign(FABRIKAM_TOKEN, &body).unwrap();
        assert!(ring.verify(Some(by_fabrikam.as_bytes()), &body).is_ok());
        assert_eq!(
            contoso().verify(Some(by_fabrikam.as_bytes()), &body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn missing_and_garbled_headers_are_told_apart_from_mismatches() {
        let ring = contoso();
        assert_eq!(ring.verify(None, b"{}"), Err(SignatureError::Missing));
        for bad in [
            &b""[..],
            b"HMAC",
            b"Bearer 03TCao0i55H1eVKUusZOTZRjtvYTs+mO41mPL+R1e1U=",
            b"HMAC not-base64!!",
            b"HMAC AAAA",
            b"HMAC \xff\xfe",
        ] {
            assert_eq!(
                ring.verify(Some(bad), b"{}"),
                Err(SignatureError::Malformed)
            );
        }
    }

    #[test]
    fn tokens_that_are_not_base64_are_refused() {
        assert_eq!(
            KeyRing::from_tokens(["not base64 at all!"]).unwrap_err(),
            BadToken
        );
        assert_eq!(KeyRing::from_tokens([""]).unwrap_err(), BadToken);
    }

    #[test]
    fn a_ring_knows_whether_it_holds_the_documented_token() {
        assert!(contoso().holds_token(DOCUMENTED_TEST_TOKEN));
        let other = KeyRing::from_tokens([FABRIKAM_TOKEN]).unwrap();
        assert!(!other.holds_token(DOCUMENTED_TEST_TOKEN));
        assert_eq!(other.key_lengths(), vec![32]);
    }

    #[test]
    fn a_key_ring_does_not_print_its_keys() {
        let shown = format!("{:?}", contoso());
        assert!(!shown.contains(CONTOSO_TOKEN));
        assert!(shown.contains("redacted"));
    }
}
