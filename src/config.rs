//! Configuration: one typed struct, read from the environment first, then from an optional
//! TOML file (`--config FILE` or `TEAMS_BRIDGE_CONFIG`) holding the same settings, then
//! defaults. Validated once at start-up; an invalid setting is an error that names the
//! setting and never echoes a secret. Tests build [`Config`] directly.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use serde::Deserialize;

use crate::signature::KeyRing;

/// A value that must never be printed: `Debug` shows `[redacted]`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Self(value)
    }
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (default).
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "text" | "pretty" | "" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err("expected `text` or `json`".into()),
        }
    }
}

/// One configured outgoing webhook: the name in `/webhooks/{name}` and its key ring.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// URL path segment and NATS subject token: letters, digits, `-`, `_`.
    pub name: String,
    /// The HMAC keys (base64-decoded security tokens).
    pub keys: KeyRing,
}

/// Every setting of teams-bridge. See the README's configuration table.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`: Postgres connection string; `serve` creates the database if missing.
    pub database_url: Secret<String>,
    /// `DATABASE_POOL_SIZE`: Postgres connections per process.
    pub database_pool_size: u32,
    /// `NATS_URL`: NATS server(s), comma-separated.
    pub nats_url: String,
    /// `NATS_STREAM`: the JetStream stream name.
    pub stream_name: String,
    /// `NATS_SUBJECT_PREFIX`: first subject token; the stream holds `{prefix}.>`.
    pub subject_prefix: String,
    /// `NATS_DUPLICATE_WINDOW_SECS`: JetStream de-duplication window (longer than relay retries).
    pub duplicate_window: Duration,
    /// `LISTEN_ADDR`: address the HTTP server binds.
    pub listen_addr: SocketAddr,
    /// `TEAMS_WEBHOOKS`: `name=token` pairs; a repeated name gives that webhook a key ring.
    pub webhooks: Vec<Webhook>,
    /// `REPLY_BUDGET_MS`: time a webhook request may take before we answer 503 (Teams waits 5 s).
    pub reply_budget: Duration,
    /// `BODY_LIMIT_BYTES`: largest accepted request body.
    pub body_limit: usize,
    /// `MAX_IN_FLIGHT`: webhook requests processed at once; beyond it, 503 + Retry-After. About
    /// commit throughput × the latency worth waiting: more only queues requests inside.
    pub max_in_flight: usize,
    /// `COMMIT_TASKS`: most concurrent group commits (each holds one Postgres connection).
    pub commit_tasks: usize,
    /// `COMMIT_BATCH_MAX`: most activities committed in one group commit.
    pub commit_batch_max: usize,
    /// `RELAY_BATCH_SIZE`: most outbox rows published per relay step.
    pub relay_batch_size: i64,
    /// `AUDIT_API_TOKEN`: bearer token for `GET /api/audit`; unset turns the endpoint off.
    pub audit_api_token: Option<Secret<String>>,
    /// `HR_AUDIT_CONSUMER`: durable consumer name of the HR audit worker.
    pub hr_audit_consumer: String,
    /// `WORKER_MAX_DELIVERIES`: deliveries of an unprocessable message before it is dead-lettered.
    pub worker_max_deliveries: u64,
    /// `WORKER_LISTEN_ADDR`: where a worker serves `/healthz` and `/metrics`.
    pub worker_listen_addr: SocketAddr,
    /// `WORKER_ACK_WAIT_SECS`: a worker's unacked message is redelivered after this long.
    pub worker_ack_wait: Duration,
    /// `WORKER_BATCH`: most messages a worker fetches and commits at once.
    pub worker_batch: usize,
    /// `READY_MAX_OUTBOX_AGE_SECS`: `/readyz` fails when the oldest unpublished entry is older.
    pub ready_max_outbox_age: Duration,
    /// `TLS_CERT`: PEM certificate chain; with `TLS_KEY` the server speaks HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// `TLS_KEY`: PEM private key.
    pub tls_key: Option<PathBuf>,
    /// `LOG_FORMAT`: `text` or `json`.
    pub log_format: LogFormat,
}

/// Every environment variable the binary reads (besides `RUST_LOG`). The compose file test
/// checks that each variable it sets is one of these, so a rename cannot go unnoticed.
pub const ENV_VARS: &[&str] = &[
    "TEAMS_BRIDGE_CONFIG",
    "DATABASE_URL",
    "DATABASE_POOL_SIZE",
    "NATS_URL",
    "NATS_STREAM",
    "NATS_SUBJECT_PREFIX",
    "NATS_DUPLICATE_WINDOW_SECS",
    "LISTEN_ADDR",
    "TEAMS_WEBHOOKS",
    "REPLY_BUDGET_MS",
    "BODY_LIMIT_BYTES",
    "MAX_IN_FLIGHT",
    "COMMIT_BATCH_MAX",
    "COMMIT_TASKS",
    "RELAY_BATCH_SIZE",
    "AUDIT_API_TOKEN",
    "HR_AUDIT_CONSUMER",
    "WORKER_MAX_DELIVERIES",
    "WORKER_LISTEN_ADDR",
    "WORKER_ACK_WAIT_SECS",
    "WORKER_BATCH",
    "READY_MAX_OUTBOX_AGE_SECS",
    "TLS_CERT",
    "TLS_KEY",
    "LOG_FORMAT",
];

/// A setting that could not be used. The message names the setting, never its secret value.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {reason}")]
pub struct ConfigError {
    /// The environment variable (or file key) at fault.
    pub setting: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        reason: reason.into(),
    }
}

/// The TOML file form: the same settings, lowercase keys, webhooks as `[[webhook]]` tables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    database_pool_size: Option<u32>,
    nats_url: Option<String>,
    nats_stream: Option<String>,
    nats_subject_prefix: Option<String>,
    nats_duplicate_window_secs: Option<u64>,
    listen_addr: Option<String>,
    #[serde(default)]
    webhook: Vec<FileWebhook>,
    reply_budget_ms: Option<u64>,
    body_limit_bytes: Option<usize>,
    max_in_flight: Option<usize>,
    commit_batch_max: Option<usize>,
    commit_tasks: Option<usize>,
    relay_batch_size: Option<i64>,
    audit_api_token: Option<String>,
    hr_audit_consumer: Option<String>,
    worker_max_deliveries: Option<u64>,
    worker_ack_wait_secs: Option<u64>,
    worker_listen_addr: Option<String>,
    worker_batch: Option<usize>,
    ready_max_outbox_age_secs: Option<u64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    log_format: Option<LogFormat>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWebhook {
    name: String,
    secrets: Vec<String>,
}

/// Where settings come from: a lookup function for the environment (tests pass a map).
pub struct Sources<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    file: FileConfig,
}

impl Config {
    /// Loads from the process environment and the optional file.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let file = match file
            .map(PathBuf::from)
            .or_else(|| env("TEAMS_BRIDGE_CONFIG").map(PathBuf::from))
        {
            Some(path) => read_file(&path)?,
            None => FileConfig::default(),
        };
        Self::from_sources(Sources { env: &env, file })
    }

    /// Loads from an explicit environment map and optional TOML text (used by tests).
    pub fn from_map(
        env: &BTreeMap<String, String>,
        toml_text: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let lookup = |k: &str| env.get(k).cloned().filter(|v| !v.is_empty());
        let file = match toml_text {
            Some(text) => toml::from_str(text)
                .map_err(|e| invalid("TEAMS_BRIDGE_CONFIG", e.message().to_string()))?,
            None => FileConfig::default(),
        };
        Self::from_sources(Sources { env: &lookup, file })
    }

    fn from_sources(s: Sources<'_>) -> Result<Self, ConfigError> {
        let f = s.file;
        let env = s.env;
        let database_url = env("DATABASE_URL")
            .or(f.database_url)
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/teams_bridge".into());
        validate_url("DATABASE_URL", &database_url, &["postgres", "postgresql"])?;
        let nats_url = env("NATS_URL")
            .or(f.nats_url)
            .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
        for part in nats_url.split(',') {
            validate_url("NATS_URL", part.trim(), &["nats", "tls", "ws", "wss"])?;
        }
        let webhooks = match env("TEAMS_WEBHOOKS") {
            Some(list) => parse_webhook_list(&list)?,
            None => f.webhook.into_iter().map(|w| (w.name, w.secrets)).collect(),
        };
        let webhooks = build_webhooks(webhooks)?;
        let stream_name = env("NATS_STREAM")
            .or(f.nats_stream)
            .unwrap_or_else(|| "TEAMS".into());
        if !is_token(&stream_name) {
            return Err(invalid(
                "NATS_STREAM",
                "use letters, digits, `-` and `_` only",
            ));
        }
        let subject_prefix = env("NATS_SUBJECT_PREFIX")
            .or(f.nats_subject_prefix)
            .unwrap_or_else(|| "teams".into());
        if subject_prefix.split('.').any(|t| !is_token(t)) {
            return Err(invalid(
                "NATS_SUBJECT_PREFIX",
                "use dot-separated tokens of letters, digits, `-` and `_`",
            ));
        }
        let hr_audit_consumer = env("HR_AUDIT_CONSUMER")
            .or(f.hr_audit_consumer)
            .unwrap_or_else(|| "hr-audit".into());
        if !is_token(&hr_audit_consumer) {
            return Err(invalid(
                "HR_AUDIT_CONSUMER",
                "use letters, digits, `-` and `_` only",
            ));
        }
        let tls_cert = env("TLS_CERT").map(PathBuf::from).or(f.tls_cert);
        let tls_key = env("TLS_KEY").map(PathBuf::from).or(f.tls_key);
        if tls_cert.is_some() != tls_key.is_some() {
            return Err(invalid(
                "TLS_CERT",
                "TLS_CERT and TLS_KEY must be set together",
            ));
        }
        let reply_budget =
            Duration::from_millis(num(env, "REPLY_BUDGET_MS", f.reply_budget_ms, 4000)?);
        if reply_budget.is_zero() || reply_budget >= Duration::from_secs(5) {
            return Err(invalid(
                "REPLY_BUDGET_MS",
                "must be between 1 and 4999 (Teams waits 5 s)",
            ));
        }
        let config = Config {
            database_url: Secret::new(database_url),
            database_pool_size: positive(env, "DATABASE_POOL_SIZE", f.database_pool_size, 16)?,
            nats_url,
            stream_name,
            subject_prefix,
            duplicate_window: Duration::from_secs(positive(
                env,
                "NATS_DUPLICATE_WINDOW_SECS",
                f.nats_duplicate_window_secs,
                120,
            )?),
            listen_addr: env("LISTEN_ADDR")
                .or(f.listen_addr)
                .unwrap_or_else(|| "0.0.0.0:3978".into())
                .parse()
                .map_err(|_| invalid("LISTEN_ADDR", "expected host:port, e.g. 0.0.0.0:3978"))?,
            webhooks,
            reply_budget,
            body_limit: positive(env, "BODY_LIMIT_BYTES", f.body_limit_bytes, 256 * 1024)?,
            max_in_flight: positive(env, "MAX_IN_FLIGHT", f.max_in_flight, 1024)?,
            commit_tasks: positive(env, "COMMIT_TASKS", f.commit_tasks, 4)?,
            commit_batch_max: positive(env, "COMMIT_BATCH_MAX", f.commit_batch_max, 512)?,
            relay_batch_size: positive(env, "RELAY_BATCH_SIZE", f.relay_batch_size, 512)?,
            audit_api_token: env("AUDIT_API_TOKEN")
                .or(f.audit_api_token)
                .map(Secret::new),
            hr_audit_consumer,
            worker_max_deliveries: positive(
                env,
                "WORKER_MAX_DELIVERIES",
                f.worker_max_deliveries,
                5,
            )?,
            worker_listen_addr: env("WORKER_LISTEN_ADDR")
                .or(f.worker_listen_addr)
                .unwrap_or_else(|| "0.0.0.0:9464".into())
                .parse()
                .map_err(|_| {
                    invalid(
                        "WORKER_LISTEN_ADDR",
                        "expected host:port, e.g. 0.0.0.0:9464",
                    )
                })?,
            worker_ack_wait: Duration::from_secs(positive(
                env,
                "WORKER_ACK_WAIT_SECS",
                f.worker_ack_wait_secs,
                30,
            )?),
            worker_batch: positive(env, "WORKER_BATCH", f.worker_batch, 256)?,
            ready_max_outbox_age: Duration::from_secs(positive(
                env,
                "READY_MAX_OUTBOX_AGE_SECS",
                f.ready_max_outbox_age_secs,
                30,
            )?),
            tls_cert,
            tls_key,
            log_format: match env("LOG_FORMAT") {
                Some(v) => v.parse().map_err(|e: String| invalid("LOG_FORMAT", e))?,
                None => f.log_format.unwrap_or(LogFormat::Text),
            },
        };
        Ok(config)
    }

    /// Checks what only the receiver needs: at least one webhook.
    pub fn require_webhooks(&self) -> Result<(), ConfigError> {
        if self.webhooks.is_empty() {
            return Err(invalid(
                "TEAMS_WEBHOOKS",
                "no webhook configured; set TEAMS_WEBHOOKS=name=<security token from Teams>",
            ));
        }
        Ok(())
    }

    /// The subject filter of every activity: `{prefix}.>`.
    pub fn stream_subjects(&self) -> String {
        format!("{}.>", self.subject_prefix)
    }
}

fn read_file(path: &std::path::Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(
            "TEAMS_BRIDGE_CONFIG",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    // toml's message quotes the offending line, which could be a secret: keep only its summary.
    toml::from_str(&text).map_err(|e| {
        invalid(
            "TEAMS_BRIDGE_CONFIG",
            format!("{}: {}", path.display(), e.message()),
        )
    })
}

/// Parses `name=token,name=token`. Tokens are base64 and may end in `=`, so only the first
/// `=` separates.
fn parse_webhook_list(list: &str) -> Result<Vec<(String, Vec<String>)>, ConfigError> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for pair in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, token) = pair.split_once('=').ok_or_else(|| {
            invalid(
                "TEAMS_WEBHOOKS",
                "expected comma-separated name=security_token pairs",
            )
        })?;
        let name = name.trim().to_string();
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, tokens)) => tokens.push(token.trim().to_string()),
            None => out.push((name, vec![token.trim().to_string()])),
        }
    }
    Ok(out)
}

fn build_webhooks(list: Vec<(String, Vec<String>)>) -> Result<Vec<Webhook>, ConfigError> {
    let mut webhooks: Vec<Webhook> = Vec::new();
    for (name, tokens) in list {
        if !is_token(&name) {
            return Err(invalid(
                "TEAMS_WEBHOOKS",
                format!("webhook name {name:?} must use letters, digits, `-` and `_` only"),
            ));
        }
        if webhooks.iter().any(|w| w.name == name) {
            return Err(invalid(
                "TEAMS_WEBHOOKS",
                format!("webhook {name:?} is listed twice; give one entry with several secrets"),
            ));
        }
        if tokens.is_empty() {
            return Err(invalid(
                "TEAMS_WEBHOOKS",
                format!("webhook {name:?} has no security token"),
            ));
        }
        let keys = KeyRing::from_tokens(tokens.iter().map(String::as_str))
            .map_err(|e| invalid("TEAMS_WEBHOOKS", format!("webhook {name:?}: {e}")))?;
        webhooks.push(Webhook { name, keys });
    }
    Ok(webhooks)
}

/// A NATS subject token and URL path segment that needs no escaping.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn validate_url(setting: &'static str, url: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    let scheme = url.split_once("://").map(|(s, _)| s);
    match scheme {
        Some(s) if schemes.contains(&s) && url.len() > s.len() + 3 => Ok(()),
        _ => Err(invalid(
            setting,
            format!("expected a URL starting with {}://", schemes[0]),
        )),
    }
}

fn num<T: FromStr>(
    env: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    file: Option<T>,
    default: T,
) -> Result<T, ConfigError> {
    match env(name) {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| invalid(name, "expected a whole number")),
        None => Ok(file.unwrap_or(default)),
    }
}

fn positive<T: FromStr + PartialOrd + Default>(
    env: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    file: Option<T>,
    default: T,
) -> Result<T, ConfigError> {
    let v = num(env, name, file, default)?;
    if v <= T::default() {
        return Err(invalid(name, "must be greater than zero"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN_A: &str = "vqF0En+Z0ucuRTM/01o2GuhMH3hKKk/N2bOmlM31zaA=";
    const TOKEN_B: &str = "QgyNSToQjf4p6+YzDpjKks1/tXeJQ7FhVHqRwTnugVI=";

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = Config::from_map(&env(&[]), None).unwrap();
        assert_eq!(
            c.database_url.expose(),
            "postgres://postgres@127.0.0.1:5432/teams_bridge"
        );
        assert_eq!(c.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(c.listen_addr.to_string(), "0.0.0.0:3978");
        assert_eq!(c.stream_name, "TEAMS");
        assert_eq!(c.stream_subjects(), "teams.>");
        assert_eq!(c.reply_budget, Duration::from_secs(4));
        assert!(c.require_webhooks().is_err());
    }

    #[test]
    fn a_repeated_webhook_name_builds_a_key_ring() {
        let list = format!("contoso={TOKEN_A}, contoso={TOKEN_B},fabrikam={TOKEN_B}");
        let c = Config::from_map(&env(&[("TEAMS_WEBHOOKS", &list)]), None).unwrap();
        assert_eq!(c.webhooks.len(), 2);
        assert_eq!(c.webhooks[0].name, "contoso");
        assert_eq!(c.webhooks[0].keys.len(), 2);
        assert_eq!(c.webhooks[1].keys.len(), 1);
    }

    #[test]
    fn the_file_form_lists_webhook_tables_and_the_environment_wins() {
        let toml = format!(
            "nats_url = \"nats://file:4222\"\nlisten_addr = \"127.0.0.1:9000\"\n[[webhook]]\nname = \"contoso\"\nsecrets = [\"{TOKEN_A}\", \"{TOKEN_B}\"]\n"
        );
        let c = Config::from_map(&env(&[("NATS_URL", "nats://env:4222")]), Some(&toml)).unwrap();
        assert_eq!(c.nats_url, "nats://env:4222");
        assert_eq!(c.listen_addr.to_string(), "127.0.0.1:9000");
        assert_eq!(c.webhooks[0].keys.len(), 2);
    }

    #[test]
    fn a_bad_token_names_the_setting_and_not_the_secret() {
        let secret = "this-is-not-base64!";
        let err = Config::from_map(
            &env(&[("TEAMS_WEBHOOKS", &format!("contoso={secret}"))]),
            None,
        )
        .unwrap_err();
        assert_eq!(err.setting, "TEAMS_WEBHOOKS");
        assert!(!err.to_string().contains(secret), "{err}");
        assert!(err.to_string().contains("contoso"));
    }

    #[test]
    fn bad_urls_and_numbers_name_their_setting() {
        for (k, v) in [
            ("DATABASE_URL", "mysql://x"),
            ("NATS_URL", "localhost"),
            ("LISTEN_ADDR", "nowhere"),
            ("REPLY_BUDGET_MS", "6000"),
            ("BODY_LIMIT_BYTES", "-1"),
            ("LOG_FORMAT", "xml"),
            ("TEAMS_WEBHOOKS", "no-equals-sign"),
            ("TEAMS_WEBHOOKS", "bad.name=AAAA"),
        ] {
            let err = Config::from_map(&env(&[(k, v)]), None).unwrap_err();
            assert_eq!(err.setting, k, "{k}={v}: {err}");
        }
    }

    #[test]
    fn a_database_url_with_a_password_is_redacted_in_debug_output() {
        let c = Config::from_map(
            &env(&[
                ("DATABASE_URL", "postgres://u:hunter2@db/x"),
                ("AUDIT_API_TOKEN", "sekrit"),
            ]),
            None,
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("sekrit"),
            "{shown}"
        );
    }
}
