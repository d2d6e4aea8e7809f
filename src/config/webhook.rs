//! `TEAMS_WEBHOOKS`: the configured outgoing webhooks, each a name and a key ring.

use crate::domain::{event::is_token, signature::KeyRing};

/// One configured outgoing webhook: the name in `/webhooks/{name}` and its key ring.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// URL path segment and NATS subject token: letters, digits, `-`, `_`.
    pub name: String,
    /// The HMAC keys (base64-decoded security tokens).
    pub keys: KeyRing,
}

/// Parses `name=token,name=token` (unset: no webhook). A repeated name gives that webhook a
/// key ring. Reasons name the webhook, never the token.
pub(crate) fn webhooks(raw: Option<&str>) -> Result<Vec<Webhook>, String> {
    let pairs = raw.map(parse_list).transpose()?.unwrap_or_default();
    pairs.into_iter().map(build).collect()
}

/// Tokens are base64 and may end in `=`, so only the first `=` separates.
fn parse_list(list: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for pair in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, token) = pair
            .split_once('=')
            .ok_or("expected comma-separated name=security_token pairs")?;
        let (name, token) = (name.trim().to_string(), token.trim().to_string());
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, tokens)) => tokens.push(token),
            None => out.push((name, vec![token])),
        }
    }
    Ok(out)
}

fn build((name, tokens): (String, Vec<String>)) -> Result<Webhook, String> {
    // An invalid name is not echoed: `TEAMS_WEBHOOKS=<token>` (the name forgotten) would
    // otherwise print most of the token as the rejected name.
    if !is_token(&name) {
        return Err(
            "a webhook name is missing or not made of letters, digits, `-` and `_` \
             (expected name=security_token)"
                .into(),
        );
    }
    // `{prefix}._audit.checkpoint` carries the audit log's checkpoints.
    if name.starts_with('_') {
        return Err(format!(
            "webhook {name:?}: names starting with `_` are reserved"
        ));
    }
    let keys = KeyRing::from_tokens(tokens.iter().map(String::as_str))
        .map_err(|e| format!("webhook {name:?}: {e}"))?;
    Ok(Webhook { name, keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "vqF0En+Z0ucuRTM/01o2GuhMH3hKKk/N2bOmlM31zaA=";

    #[test]
    fn only_the_first_equals_sign_separates_a_name_from_its_token() {
        let w = webhooks(Some(&format!("contoso={TOKEN}"))).unwrap();
        assert_eq!((w[0].name.as_str(), w[0].keys.len()), ("contoso", 1));
    }

    #[test]
    fn a_token_given_without_a_name_is_not_echoed() {
        let err = webhooks(Some(TOKEN)).unwrap_err();
        assert!(!err.contains(&TOKEN[..20]), "{err}");
    }

    #[test]
    fn unset_means_no_webhook_and_bad_names_are_refused() {
        assert!(webhooks(None).unwrap().is_empty());
        assert!(webhooks(Some(&format!("bad.name={TOKEN}"))).is_err());
        assert!(webhooks(Some("no-equals-sign")).is_err());
    }
}
