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
    migrate(config).await?;
    connect(config)
}

/// [`prepare`], for the HR audit worker, its sealer and retention: every statement is planned
/// for its own execution. They run once per batch or pass, not per request, so planning is
/// cheap beside them; and a plan cached while the tables were nearly empty (a seq scan joined
/// by hash) would be kept while they grow, where autovacuum never analyzes them (measured: the
/// worker's check for entries already written, at 21 blocks per entry and rising, was the
/// costliest statement of an ordinary load).
pub async fn prepare_worker(config: &Config) -> anyhow::Result<PgPool> {
    migrate(config).await?;
    let options = request_options(config)?.options([("plan_cache_mode", "force_custom_plan")]);
    Ok(pool_options(config).connect_lazy_with(options))
}

/// Creates the database if it does not exist and applies the migrations.
async fn migrate(config: &Config) -> anyhow::Result<()> {
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
    Ok(())
}

/// A lazily connecting pool sized and time-boxed from the config. Acquiring a connection
/// never waits longer than the reply budget allows, so a dead Postgres becomes a fast 503.
pub fn connect(config: &Config) -> anyhow::Result<PgPool> {
    Ok(pool_options(config).connect_lazy_with(request_options(config)?))
}

fn pool_options(config: &Config) -> PgPoolOptions {
    let acquire = config.reply_budget.mul_f32(0.5).min(Duration::from_secs(2));
    PgPoolOptions::new()
        .max_connections(config.database_pool_size)
        .min_connections(1)
        .acquire_timeout(acquire)
}

fn request_options(config: &Config) -> anyhow::Result<PgConnectOptions> {
    Ok(base_options(config)?
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
        ]))
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
