//! The parsers settings are read with: each turns the raw text into the field's value or a
//! reason (the caller adds the setting's name). Pure functions.

use std::{net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use crate::domain::{event::is_token, secret::Secret};

/// A setting that has a default, so a value is always there to parse.
pub(crate) fn required<T>(
    parse: impl Fn(&str) -> Result<T, String>,
) -> impl Fn(Option<&str>) -> Result<T, String> {
    move |raw| parse(raw.ok_or("must be set")?)
}

/// A setting that may stay unset.
pub(crate) fn optional<T>(
    parse: impl Fn(&str) -> Result<T, String>,
) -> impl Fn(Option<&str>) -> Result<Option<T>, String> {
    move |raw| raw.map(&parse).transpose()
}

/// A whole number greater than zero.
pub(crate) fn positive<T: FromStr + PartialOrd + Default>(s: &str) -> Result<T, String> {
    let v: T = s.trim().parse().map_err(|_| "expected a whole number")?;
    if v <= T::default() {
        return Err("must be greater than zero".into());
    }
    Ok(v)
}

/// Whole seconds, more than zero.
pub(crate) fn secs(s: &str) -> Result<Duration, String> {
    positive(s).map(Duration::from_secs)
}

/// An age: a whole number with `d`, `h`, `m` or `s` (plain numbers are seconds); `0` is none.
pub(crate) fn age(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || "expected an age such as 7d, 12h, 90m or 3600s".to_string();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let unit = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" | "" => 1,
        _ => return Err(bad()),
    };
    n.checked_mul(unit).map(Duration::from_secs).ok_or_else(bad)
}

/// Milliseconds a webhook request may take: Teams waits 5 s.
pub(crate) fn reply_budget(s: &str) -> Result<Duration, String> {
    let ms: u64 = s.trim().parse().map_err(|_| "expected a whole number")?;
    if ms == 0 || ms >= 5000 {
        return Err("must be between 1 and 4999 (Teams waits 5 s)".into());
    }
    Ok(Duration::from_millis(ms))
}

/// One token: a stream or consumer name.
pub(crate) fn token(s: &str) -> Result<String, String> {
    match is_token(s) {
        true => Ok(s.to_string()),
        false => Err("use letters, digits, `-` and `_` only".into()),
    }
}

/// Dot-separated tokens: a subject prefix.
pub(crate) fn dotted_tokens(s: &str) -> Result<String, String> {
    match s.split('.').all(is_token) {
        true => Ok(s.to_string()),
        false => Err("use dot-separated tokens of letters, digits, `-` and `_`".into()),
    }
}

/// A log origin: printable, no spaces or `+` (it names the signing key too).
pub(crate) fn origin(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.len() <= 128;
    match ok && s.chars().all(|c| c.is_ascii_graphic() && c != '+') {
        true => Ok(s.to_string()),
        false => Err("use up to 128 printable characters without spaces or `+`".into()),
    }
}

/// A URL with one of `schemes` (the first is named in the error).
fn url<'a>(s: &'a str, schemes: &[&str]) -> Result<&'a str, String> {
    match s.split_once("://") {
        Some((scheme, rest)) if schemes.contains(&scheme) && !rest.is_empty() => Ok(s),
        _ => Err(format!("expected a URL starting with {}://", schemes[0])),
    }
}

/// The Postgres URL, which may hold a password.
pub(crate) fn postgres_url(s: &str) -> Result<Secret<String>, String> {
    url(s, &["postgres", "postgresql"]).map(|u| Secret::new(u.to_string()))
}

/// One or more NATS server URLs, comma-separated; they may hold credentials.
pub(crate) fn nats_urls(s: &str) -> Result<Secret<String>, String> {
    for part in s.split(',') {
        url(part.trim(), &["nats", "tls", "ws", "wss"])?;
    }
    Ok(Secret::new(s.to_string()))
}

/// `host:port`.
pub(crate) fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| "expected host:port, e.g. 0.0.0.0:3978".into())
}

/// A bearer token: never printed, and long enough not to be guessed.
pub(crate) fn api_token(s: &str) -> Result<Secret<String>, String> {
    match s.trim().chars().count() {
        32.. => Ok(Secret::new(s.trim().to_string())),
        _ => Err("must be at least 32 characters (e.g. `openssl rand -hex 24`)".into()),
    }
}

/// The service's public base URL (`https://hr-bridge.contoso.com`), without a trailing
/// slash, query or fragment: links in cards are built on it.
pub(crate) fn public_url(s: &str) -> Result<String, String> {
    let s = url(s.trim(), &["https", "http"])?.trim_end_matches('/');
    match s.contains(['?', '#', ' ', '"', '<', '>']) {
        true => Err("expected a base URL without query, fragment or spaces".into()),
        false => Ok(s.to_string()),
    }
}

/// `1`/`true`/`yes` or `0`/`false`/`no`.
pub(crate) fn flag(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected 1 or 0".into()),
    }
}

/// A file path.
pub(crate) fn path(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

/// A `RUST_LOG`-style filter, checked so a typo is an error rather than a silent default.
pub(crate) fn log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|_| "not a log filter (e.g. info,sqlx=warn)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_must_be_whole_and_positive() {
        assert_eq!(positive::<u32>(" 16 "), Ok(16));
        assert!(positive::<u32>("0").is_err() && positive::<i64>("-1").is_err());
        assert_eq!(positive::<u32>("x").unwrap_err(), "expected a whole number");
    }

    #[test]
    fn ages_take_a_unit_and_plain_numbers_are_seconds() {
        assert_eq!(age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(age("90m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(age("3600"), Ok(Duration::from_secs(3_600)));
        assert_eq!(age("0"), Ok(Duration::ZERO));
        assert!(age("7y").is_err() && age("d").is_err() && age("99999999999999999d").is_err());
    }

    #[test]
    fn the_reply_budget_stays_inside_teams_five_seconds() {
        assert_eq!(reply_budget("4000"), Ok(Duration::from_secs(4)));
        assert!(reply_budget("0").is_err() && reply_budget("5000").is_err());
    }

    #[test]
    fn urls_need_their_scheme_and_something_after_it() {
        assert!(postgres_url("postgresql://db/x").is_ok());
        assert!(postgres_url("mysql://x").is_err() && postgres_url("postgres://").is_err());
        assert!(nats_urls("nats://a:4222, tls://b:4222").is_ok());
        assert!(nats_urls("nats://a:4222,localhost").is_err());
    }

    #[test]
    fn api_tokens_are_long_and_flags_are_flags() {
        assert!(api_token(&"x".repeat(31)).is_err());
        assert_eq!(api_token(&"x".repeat(32)).unwrap().expose().len(), 32);
        assert_eq!((flag("1"), flag("off")), (Ok(true), Ok(false)));
        assert!(flag("maybe").is_err());
    }

    #[test]
    fn names_are_tokens_and_prefixes_dotted_tokens() {
        assert!(token("hr-audit_2").is_ok() && token("a.b").is_err() && token("").is_err());
        assert!(dotted_tokens("t.x").is_ok() && dotted_tokens("t..x").is_err());
    }
}
