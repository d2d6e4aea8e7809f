//! Postgres connection pool, database creation and the embedded migrations.

use std::{str::FromStr, time::Duration};

use anyhow::Context as _;

use sqlx::{
    migrate::MigrateDatabase,
    postgres::{PgConnectOptions, PgPoolOptions},
    Connection, PgConnection, PgPool, Postgres,
};

use crate::config::Config;

/// The migrations in `migrations/`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Creates the database if it does not exist and applies the migrations.
pub async fn prepare(config: &Config) -> anyhow::Result<PgPool> {
    let url = config.database_url.expose();
    if !Postgres::database_exists(url).await.map_err(redact)? {
        tracing::info!("creating database");
        if let Err(e) = Postgres::create_database(url).await {
            // Another replica may have created it in the meantime.
            if !Postgres::database_exists(url).await.map_err(redact)? {
                return Err(redact(e));
            }
        }
    }
    // Migrations run on their own connection, without the request path's statement timeout:
    // a migration of a large table may rightly take longer than a reply budget.
    let mut conn = PgConnection::connect_with(&base_options(config)?)
        .await
        .map_err(redact)?;
    MIGRATOR
        .run(&mut conn)
        .await
        .context("applying migrations")?;
    let _ = conn.close().await;
    connect(config)
}

/// A lazily connecting pool sized and time-boxed from the config. Acquiring a connection
/// never waits longer than the reply budget allows, so a dead Postgres becomes a fast 503.
pub fn connect(config: &Config) -> anyhow::Result<PgPool> {
    let options = base_options(config)?
        // A statement that cannot finish inside the reply budget is cancelled by Postgres
        // itself, so a request answered 503 is not committed later behind the caller's back.
        .options([
            (
                "statement_timeout",
                format!("{}", config.reply_budget.mul_f32(0.75).as_millis()),
            ),
            // Our commits to the outbox come from `serve`, whose relay hears of them in-process;
            // a NOTIFY would serialize those commits (see the migration that reads this).
            ("teams_bridge.notify", "off".to_string()),
        ]);
    let acquire = config.reply_budget.mul_f32(0.5).min(Duration::from_secs(2));
    Ok(PgPoolOptions::new()
        .max_connections(config.database_pool_size)
        .min_connections(1)
        .acquire_timeout(acquire)
        .connect_lazy_with(options))
}

/// The relay's own small pool. Its writes only delete or annotate outbox rows, and losing
/// them in a Postgres crash only means publishing those rows again, which JetStream
/// de-duplicates: they need not wait for their WAL flush. Its statements are planned for
/// each execution: a plan cached while `activities` was nearly empty (a seq scan joined by
/// hash) would otherwise be kept for ever where autovacuum never analyzes the table.
pub fn relay_pool(config: &Config) -> anyhow::Result<PgPool> {
    let options = base_options(config)?.options([
        ("synchronous_commit", "off"),
        ("plan_cache_mode", "force_custom_plan"),
        ("statement_timeout", "10000"),
    ]);
    Ok(PgPoolOptions::new()
        .max_connections(3)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

fn base_options(config: &Config) -> anyhow::Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(config.database_url.expose())
        .map_err(|_| anyhow::anyhow!("invalid setting DATABASE_URL: not a valid Postgres URL"))?
        .application_name("teams-bridge"))
}

/// sqlx errors can quote the connection URL; keep only the kind of failure.
fn redact(e: sqlx::Error) -> anyhow::Error {
    let msg = match &e {
        sqlx::Error::Database(db) => db.message().to_string(),
        sqlx::Error::Io(io) => format!("cannot reach Postgres: {io}"),
        sqlx::Error::Configuration(_) => "invalid setting DATABASE_URL".to_string(),
        other => other.to_string(),
    };
    anyhow::anyhow!("database: {msg}")
}
