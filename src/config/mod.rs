//! Configuration: one typed struct, read from the environment first, then from an optional
//! TOML file (`--config FILE` or `TEAMS_BRIDGE_CONFIG`) holding the same settings in
//! lowercase, then defaults. Validated once at start-up; an invalid setting is an error that
//! names the setting and never echoes a secret. Each setting is written once, below: its doc
//! comment is the README's description of it (a test holds the two together).

mod parse;
pub(crate) mod setting;
mod webhook;

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use parse::{optional, required};
use setting::{invalid, settings, Sources};
pub use setting::{ConfigError, Setting};
pub use webhook::Webhook;

use crate::domain::{secret::Secret, signature::DOCUMENTED_TEST_TOKEN};

settings! {
    /// Postgres; `serve`, `relay`, `worker` and `migrate` create the database if missing and
    /// apply `migrations/`
    database_url: Secret<String> = "DATABASE_URL",
        Some("postgres://postgres@127.0.0.1:5432/teams_bridge"), required(parse::postgres_url);
    /// connections per process
    database_pool_size: u32 = "DATABASE_POOL_SIZE", Some("16"), required(parse::positive);
    /// most concurrent group commits; a second one starts only when `COMMIT_BATCH_MAX`/8
    /// requests wait (see BENCHMARKS.md)
    commit_tasks: usize = "COMMIT_TASKS", Some("4"), required(parse::positive);
    /// NATS server(s), comma-separated; may hold credentials (never printed)
    nats_url: Secret<String> = "NATS_URL", Some("nats://127.0.0.1:4222"),
        required(parse::nats_urls);
    /// JetStream stream, created at start-up when missing (an existing one is left as it is)
    stream_name: String = "NATS_STREAM", Some("TEAMS"), required(parse::token);
    /// the stream holds `{prefix}.>`
    subject_prefix: String = "NATS_SUBJECT_PREFIX", Some("teams"), required(parse::dotted_tokens);
    /// JetStream de-duplication window; longer than the relay's 5 s retry cap
    duplicate_window: Duration = "NATS_DUPLICATE_WINDOW_SECS", Some("120"), required(parse::secs);
    /// replicas of a stream this service creates (an existing stream is never changed: a
    /// difference is a warning at start)
    stream_replicas: usize = "NATS_STREAM_REPLICAS", Some("1"), required(parse::positive);
    /// age after which the stream drops messages (`30d`, `12h`, `90m`, `3600s`; `0` keeps them
    /// for ever). Postgres is the record: `teams-bridge replay` refills the stream
    stream_max_age: Duration = "NATS_STREAM_MAX_AGE", Some("7d"), required(parse::age);
    /// most bytes the stream keeps before dropping its oldest messages; unset: no limit
    stream_max_bytes: Option<i64> = "NATS_STREAM_MAX_BYTES", None, optional(parse::positive);
    /// HTTP(S) address of `serve`
    listen_addr: SocketAddr = "LISTEN_ADDR", Some("0.0.0.0:3978"), required(parse::socket_addr);
    /// when set, `/readyz` and `/metrics` are served here (plain HTTP) and not on `LISTEN_ADDR`
    admin_listen_addr: Option<SocketAddr> = "ADMIN_LISTEN_ADDR", None,
        optional(parse::socket_addr);
    /// `name=security_token` pairs, comma-separated; repeat a name to give it a key ring
    /// (required by `serve`; in the file, `[[webhook]]` tables)
    webhooks: Vec<Webhook> = "TEAMS_WEBHOOKS", None, webhook::webhooks;
    /// `card`: a recorded operation is answered with an Adaptive Card (and the same receipt as
    /// text); `text`: text only
    reply_format: ReplyFormat = "REPLY_FORMAT", Some("card"), required(ReplyFormat::from_str);
    /// the service's public base URL (`https://hr-bridge.contoso.com`): reply cards link to the
    /// record's page in its console; unset: no links
    public_url: Option<String> = "PUBLIC_URL", None, optional(parse::public_url);
    /// time a webhook request may take before it is answered 503 (Teams waits 5 s); 1–4999
    reply_budget: Duration = "REPLY_BUDGET_MS", Some("4000"), required(parse::reply_budget);
    /// largest request body; larger gets 413 (a declared `Content-Length` over it, before the
    /// body is read)
    body_limit: usize = "BODY_LIMIT_BYTES", Some("262144"), required(parse::positive);
    /// most open connections of `serve`; beyond it a new connection is closed at once. Kept
    /// below the open-files limit (raised to its hard limit at start)
    max_connections: usize = "MAX_CONNECTIONS", Some("10000"), required(parse::positive);
    /// time for a request's head (and a TLS handshake); an idle keep-alive connection is
    /// closed after it too
    header_timeout: Duration = "HTTP_HEADER_TIMEOUT_SECS", Some("5"), required(parse::secs);
    /// webhook requests processed at once; beyond it, a fast 503 with `Retry-After`. About
    /// commit throughput × the wait you accept (10k/s × 100 ms); more only queues requests
    /// inside the service
    max_in_flight: usize = "MAX_IN_FLIGHT", Some("1024"), required(parse::positive);
    /// most activities in one group commit
    commit_batch_max: usize = "COMMIT_BATCH_MAX", Some("512"), required(parse::positive);
    /// most outbox rows per relay step
    relay_batch_size: i64 = "RELAY_BATCH_SIZE", Some("512"), required(parse::positive);
    /// times JetStream may refuse a row (over `max_payload`, rejected) before it moves to
    /// `outbox_dead`; NATS being away never counts
    relay_max_refusals: i32 = "RELAY_MAX_REFUSALS", Some("10"), required(parse::positive);
    /// bearer token of `GET /api/audit`, at least 32 characters; unset turns the API off
    audit_api_token: Option<Secret<String>> = "AUDIT_API_TOKEN", None, optional(parse::api_token);
    /// durable consumer name of the HR audit worker
    hr_audit_consumer: String = "HR_AUDIT_CONSUMER", Some("hr-audit"), required(parse::token);
    /// private key (`teams-bridge audit keygen --out FILE`) that signs the audit log's
    /// checkpoints; the HR audit worker signs checkpoints only when it is set (entries get
    /// their leaf in any case)
    audit_signing_key_file: Option<PathBuf> = "AUDIT_SIGNING_KEY_FILE", None,
        optional(parse::path);
    /// the audit log's name in its checkpoints (and the default name of a new key)
    audit_log_origin: String = "AUDIT_LOG_ORIGIN", Some("teams-bridge/hr-audit"),
        required(parse::origin);
    /// the sealer writes a checkpoint at least this often while leaves wait for one
    audit_seal_interval: Duration = "AUDIT_SEAL_INTERVAL_SECS", Some("5"), required(parse::secs);
    /// the sealer writes a checkpoint at once when this many leaves wait; at most this many
    /// entries without a leaf (operator actions) are given theirs per checkpoint
    audit_seal_max_entries: i64 = "AUDIT_SEAL_MAX_ENTRIES", Some("10000"),
        required(parse::positive);
    /// days the raw Teams activities are kept (bytes, text, names and ids of
    /// people; a tombstone stays); at least 1; unset: for ever. The stream's age limit is kept
    /// at most this long
    activity_retention_days: Option<u32> = "ACTIVITY_RETENTION_DAYS", None,
        optional(parse::positive);
    /// days audit entries keep their personal fields (names, ids, changes, message; the
    /// sealed entry stays); at least 1; unset: for ever
    audit_retention_days: Option<u32> = "AUDIT_RETENTION_DAYS", None, optional(parse::positive);
    /// time between the HR audit worker's retention passes (with a retention setting)
    retention_interval: Duration = "RETENTION_INTERVAL_SECS", Some("3600"), required(parse::secs);
    /// deliveries of an unusable message before it is dead-lettered
    worker_max_deliveries: u64 = "WORKER_MAX_DELIVERIES", Some("5"), required(parse::positive);
    /// a worker's unacknowledged message is redelivered after this long
    worker_ack_wait: Duration = "WORKER_ACK_WAIT_SECS", Some("30"), required(parse::secs);
    /// most messages a worker fetches and commits at once
    worker_batch: usize = "WORKER_BATCH", Some("256"), required(parse::positive);
    /// where a worker serves `/healthz` and `/metrics`
    worker_listen_addr: SocketAddr = "WORKER_LISTEN_ADDR", Some("0.0.0.0:9464"),
        required(parse::socket_addr);
    /// `/readyz` warns when the oldest unpublished outbox row is older (a NATS outage does not
    /// make a replica unready: the outbox absorbs it)
    ready_max_outbox_age: Duration = "READY_MAX_OUTBOX_AGE_SECS", Some("30"),
        required(parse::secs);
    /// PEM certificate chain; with `TLS_KEY`, `serve` speaks HTTPS itself (rustls)
    tls_cert: Option<PathBuf> = "TLS_CERT", None, optional(parse::path);
    /// PEM private key of `TLS_CERT`; the two are set together
    tls_key: Option<PathBuf> = "TLS_KEY", None, optional(parse::path);
    /// `text` or `json`
    log_format: LogFormat = "LOG_FORMAT", Some("text"), required(LogFormat::from_str);
    /// log filter
    log_filter: String = "RUST_LOG", Some("info,sqlx=warn"), required(parse::log_filter);
    /// `1` lets `serve` accept the security token published in Microsoft's documentation
    /// (for trying teams-bridge locally; `scripts/run.sh` sets it); never in production
    dev_mode: bool = "DEV_MODE", Some("0"), required(parse::flag);
}

/// The environment variable that names the TOML file.
pub const CONFIG_FILE_VAR: &str = "TEAMS_BRIDGE_CONFIG";

/// Every environment variable the binary reads. The compose file test checks that each
/// variable it sets is one of these, so a rename cannot go unnoticed.
pub fn env_vars() -> impl Iterator<Item = &'static str> {
    std::iter::once(CONFIG_FILE_VAR).chain(SETTINGS.iter().map(|s| s.env))
}

/// The README's configuration table, generated from [`SETTINGS`].
pub fn markdown_table() -> String {
    let rows: Vec<String> = SETTINGS.iter().map(Setting::markdown_row).collect();
    format!(
        "| variable | default | meaning |\n|---|---|---|\n{}\n",
        rows.join("\n")
    )
}

/// How webhook requests are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyFormat {
    /// An Adaptive Card for recorded operations, with the receipt as text too.
    Card,
    /// Text only.
    Text,
}

impl FromStr for ReplyFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "card" => Ok(Self::Card),
            "text" => Ok(Self::Text),
            _ => Err("expected `card` or `text`".into()),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl Config {
    /// Loads from the process environment and the optional file.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let path = file
            .map(PathBuf::from)
            .or_else(|| env(CONFIG_FILE_VAR).map(PathBuf::from));
        let file = match path {
            Some(path) => read_file(&path)?,
            None => toml::Table::new(),
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
            Some(text) => parse_file(text).map_err(|e| invalid(CONFIG_FILE_VAR, e))?,
            None => toml::Table::new(),
        };
        Self::from_sources(Sources { env: &lookup, file })
    }

    fn from_sources(sources: Sources<'_>) -> Result<Self, ConfigError> {
        // Webhooks from the file's tables are named as such in errors, not as the variable.
        let from_file =
            (sources.env)("TEAMS_WEBHOOKS").is_none() && sources.file.contains_key("webhook");
        let config = Self::read(&sources).map_err(|e| match e.setting {
            "TEAMS_WEBHOOKS" if from_file => ConfigError {
                setting: "[[webhook]] (config file)",
                ..e
            },
            _ => e,
        })?;
        if config.tls_cert.is_some() != config.tls_key.is_some() {
            return Err(invalid(
                "TLS_CERT",
                "TLS_CERT and TLS_KEY must be set together",
            ));
        }
        Ok(config)
    }

    /// Checks what only the receiver needs: at least one webhook, and none whose key anyone
    /// could know (the documented test token) unless `DEV_MODE=1`.
    pub fn require_webhooks(&self) -> Result<(), ConfigError> {
        if self.webhooks.is_empty() {
            return Err(invalid(
                "TEAMS_WEBHOOKS",
                "no webhook configured; set TEAMS_WEBHOOKS=name=<security token from Teams>",
            ));
        }
        let public = self
            .webhooks
            .iter()
            .find(|w| w.keys.holds_token(DOCUMENTED_TEST_TOKEN));
        if let (Some(w), false) = (public, self.dev_mode) {
            let reason = format!(
                "webhook {:?} uses the security token published in Microsoft's documentation, \
                 which anyone can sign with; use the token Teams showed for your webhook \
                 (DEV_MODE=1 allows it for local trials)",
                w.name
            );
            return Err(invalid("TEAMS_WEBHOOKS / [[webhook]]", reason));
        }
        Ok(())
    }
}

fn read_file(path: &std::path::Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(
            CONFIG_FILE_VAR,
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    parse_file(&text).map_err(|e| invalid(CONFIG_FILE_VAR, format!("{}: {e}", path.display())))
}

/// Parses the file and refuses keys that are not settings (a typo must not pass silently).
fn parse_file(text: &str) -> Result<toml::Table, String> {
    // toml's message quotes the offending line, which could be a secret: keep only its summary.
    let table: toml::Table = toml::from_str(text).map_err(|e| e.message().to_string())?;
    let known = |key: &str| key == "webhook" || SETTINGS.iter().any(|s| s.file_key() == key);
    match table.keys().find(|k| !known(k)) {
        Some(key) => Err(format!("unknown setting `{key}`")),
        None => Ok(table),
    }
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
        assert_eq!(c.nats_url.expose(), "nats://127.0.0.1:4222");
        assert_eq!(c.listen_addr.to_string(), "0.0.0.0:3978");
        assert_eq!(c.stream_name, "TEAMS");
        assert_eq!(c.subject_prefix, "teams");
        assert_eq!(c.log_filter, "info,sqlx=warn");
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
        assert_eq!(c.nats_url.expose(), "nats://env:4222");
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
        let file = format!("[[webhook]]\nname = \"contoso\"\nsecrets = [\"{secret}\"]\n");
        let err = Config::from_map(&env(&[]), Some(&file)).unwrap_err();
        assert_eq!(
            err.setting, "[[webhook]] (config file)",
            "named where it came from"
        );
        assert!(!err.to_string().contains(secret), "{err}");
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
                ("AUDIT_API_TOKEN", "sekrit-sekrit-sekrit-sekrit-sekrit"),
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

    #[test]
    fn an_unknown_file_key_is_refused_and_numbers_may_be_written_bare() {
        let err = Config::from_map(&env(&[]), Some("listen_adress = \"x\"")).unwrap_err();
        assert_eq!(err.setting, "TEAMS_BRIDGE_CONFIG");
        assert!(err.reason.contains("listen_adress"), "{err}");
        let c = Config::from_map(&env(&[]), Some("database_pool_size = 3")).unwrap();
        assert_eq!(c.database_pool_size, 3);
    }

    #[test]
    fn the_documented_token_is_refused_unless_in_dev_mode() {
        let hooks = format!("contoso={TOKEN_A}");
        let c = Config::from_map(&env(&[("TEAMS_WEBHOOKS", &hooks)]), None).unwrap();
        let err = c.require_webhooks().unwrap_err();
        assert!(
            err.reason.contains("published") && !err.reason.contains(TOKEN_A),
            "{err}"
        );
        let dev = env(&[("TEAMS_WEBHOOKS", &hooks), ("DEV_MODE", "1")]);
        assert!(Config::from_map(&dev, None)
            .unwrap()
            .require_webhooks()
            .is_ok());
        let other = format!("fabrikam={TOKEN_B}");
        let c = Config::from_map(&env(&[("TEAMS_WEBHOOKS", &other)]), None).unwrap();
        assert!(c.require_webhooks().is_ok());
    }

    #[test]
    fn a_short_api_token_is_refused_without_being_echoed() {
        let err = Config::from_map(&env(&[("AUDIT_API_TOKEN", "hunter2")]), None).unwrap_err();
        assert_eq!(err.setting, "AUDIT_API_TOKEN");
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn tls_cert_and_key_come_together() {
        let err = Config::from_map(&env(&[("TLS_CERT", "/c.pem")]), None).unwrap_err();
        assert_eq!(err.setting, "TLS_CERT");
    }

    #[test]
    fn every_setting_has_a_distinct_name_and_a_meaning() {
        let mut names: Vec<&str> = SETTINGS.iter().map(|s| s.env).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SETTINGS.len());
        assert!(SETTINGS.iter().all(|s| !s.meaning().is_empty()));
    }

    #[test]
    fn the_readme_table_is_the_one_generated_from_the_settings() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).expect("README.md exists");
        let table = markdown_table();
        assert!(
            readme.contains(&table),
            "README.md's configuration table differs from the settings in src/config/mod.rs; \
             paste this table into the README:\n\n{table}"
        );
    }
}
