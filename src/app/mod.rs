//! Wiring: builds each process from a [`Config`] and runs it until shutdown. `serve` is
//! [`Application`] (receiver + relay); [`relay`] and [`worker`] are the other two processes;
//! [`signal`] turns SIGINT/SIGTERM into the shutdown every loop listens to.

pub mod relay;
pub mod signal;
pub mod worker;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use relay::{ensure_stream, relay_for, run_relay, run_relay_process};
pub use signal::cancel_on_signal;
pub use worker::{hr_audit_worker, run_hr_audit_worker};

use crate::{
    config::Config,
    handoff::Handoff,
    http::{self, api::ApiState, console::ConsoleState, health, AppState},
    infra::{db, nats},
    ingest::{answer::Answers, editors::Editors, Committer, Ingest},
    relay::Relay,
};

/// A built, bound, not yet running `serve`.
pub struct Application {
    listener: std::net::TcpListener,
    admin: Option<std::net::TcpListener>,
    state: AppState,
    config: Arc<Config>,
    pool: PgPool,
    relay: Relay,
    handoff: Arc<Handoff>,
    editors: Arc<Editors>,
}

impl Application {
    /// Prepares the database (create + migrate), connects to NATS (without waiting for it),
    /// starts the committer and binds the listen address.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.require_webhooks()?;
        warn_about_keys(&config);
        let pool = db::prepare(&config).await?;
        let nats = nats::connect(&config).await?;
        let js = nats::context(nats.clone());
        stream_at_start(&nats, &js, &config).await?;
        let handoff = Arc::new(Handoff::default());
        let editors = editors_at_start(&pool, &config).await?;
        // At most this many commits at once (each holds a pool connection); see
        // ingest/committer.rs for when a second one starts.
        let tasks = config.commit_tasks.min(config.database_pool_size as usize);
        let committer = Committer::spawn(
            pool.clone(),
            tasks.max(1),
            config.commit_batch_max,
            handoff.clone(),
        );
        let listener = bind("LISTEN_ADDR", config.listen_addr)?;
        let admin = config
            .admin_listen_addr
            .map(|a| bind("ADMIN_LISTEN_ADDR", a))
            .transpose()?;
        let dependencies = health::Dependencies {
            pool: pool.clone(),
            nats,
            js: js.clone(),
            stream_name: config.stream_name.clone(),
            max_outbox_age: config.ready_max_outbox_age,
        };
        let state = AppState {
            ingest: Ingest::new(&config, Arc::new(committer))
                .with_editors(editors.clone())
                .with_answers(Answers { pool: pool.clone() }),
            api: ApiState::new(pool.clone(), config.audit_api_token.clone()),
            console: ConsoleState::new(
                pool.clone(),
                config.webhooks.clone(),
                secure_cookies(&config),
            ),
            health: health::Health::spawn(Arc::new(dependencies)).await,
            metrics: crate::infra::telemetry::metrics(),
        };
        let relay = relay_for(&config, js)?;
        let config = Arc::new(config);
        Ok(Self {
            listener,
            admin,
            state,
            config,
            pool,
            relay,
            handoff,
            editors,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The bound admin address, when `ADMIN_LISTEN_ADDR` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The service's Postgres pool (tests read through it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves HTTP(S) and runs the relay until `shutdown`: then stops accepting, finishes the
    /// requests in flight, and lets the relay publish what they committed.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            listener,
            admin,
            state,
            config,
            relay,
            handoff,
            editors,
            pool,
            ..
        } = self;
        tokio::spawn(crate::ingest::editors::keep_fresh(
            editors,
            pool,
            EDITORS_REFRESH,
            shutdown.clone(),
        ));
        let relay_stop = CancellationToken::new();
        let relay_task = tokio::spawn(run_relay(
            relay.clone(),
            config.clone(),
            Some(handoff),
            relay_stop.clone(),
        ));
        let router = match admin {
            None => http::router(state),
            Some(admin) => {
                serve_admin(admin, http::admin_router(state.clone()), shutdown.clone())?;
                http::public_router().with_state(state)
            }
        };
        serve(listener, router, &config, shutdown).await?;
        relay_stop.cancel();
        let _ = relay_task.await;
        // What the last requests committed: publish it now rather than at the next start.
        let _ = tokio::time::timeout(Duration::from_secs(3), relay.run_once()).await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Whether the console's cookies are `Secure`: the service speaks HTTPS itself, or is
/// reached through a proxy at an `https://` PUBLIC_URL.
fn secure_cookies(config: &Config) -> bool {
    let https = config
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    config.tls_cert.is_some() || https
}

/// How often the receiver reloads the HR editors lists even when no change was announced.
const EDITORS_REFRESH: Duration = Duration::from_secs(3);

/// The HR editors lists as they are at start-up; each webhook without one is named once,
/// since it lets everyone in its team record changes.
async fn editors_at_start(pool: &PgPool, config: &Config) -> anyhow::Result<Arc<Editors>> {
    let editors = Arc::new(Editors::default());
    editors
        .reload(pool)
        .await
        .context("loading the HR editors lists")?;
    let lists = editors.snapshot();
    for w in config
        .webhooks
        .iter()
        .filter(|w| !lists.contains_key(&w.name))
    {
        tracing::info!(
            webhook = %w.name,
            "webhook has no HR editors list: everyone in its team may record changes (teams-bridge editors add)"
        );
    }
    Ok(editors)
}

/// Serves `router` on `listener`, over TLS when configured, until `shutdown`; then finishes
/// the requests in flight.
async fn serve(
    listener: std::net::TcpListener,
    router: axum::Router,
    config: &Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let room = http::server::connection_room();
    if room < config.max_connections {
        tracing::warn!(
            max_connections = config.max_connections,
            room,
            "MAX_CONNECTIONS is above what the open-files limit allows; serving fewer"
        );
    }
    let limits = http::server::Limits {
        max_connections: config.max_connections.min(room),
        header_timeout: config.header_timeout,
    };
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key).await?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, max_connections = limits.max_connections, "listening");
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let grace = config.reply_budget + Duration::from_secs(1);
    http::server::serve(listener, router, limits, tls, shutdown, grace).await;
    Ok(())
}

/// The admin routes on their own listener (plain HTTP, for the operator's network).
fn serve_admin(
    listener: std::net::TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tracing::info!(addr = %listener.local_addr()?, "admin listening (http)");
    tokio::spawn(async move {
        let serving = axum::serve(listener, router);
        serving
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    });
    Ok(())
}

/// The TLS acceptor of `TLS_CERT` and `TLS_KEY`, offering HTTP/1.1 only.
async fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    crate::install_crypto_provider();
    let loaded = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .context("invalid setting TLS_CERT/TLS_KEY")?;
    let mut server = (*loaded.get_inner()).clone();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

/// Makes sure of the stream at start, briefly: it is usually there within milliseconds, and
/// if NATS is down the relay keeps trying while requests are stored and answered meanwhile.
/// When NATS answers, its `max_payload` is known: a body that could never be published is
/// refused at the door rather than found in the outbox later.
async fn stream_at_start(
    client: &async_nats::Client,
    js: &async_nats::jetstream::Context,
    config: &Config,
) -> anyhow::Result<()> {
    let ensure = tokio::time::timeout(Duration::from_secs(2), nats::ensure_stream(js, config));
    match ensure.await {
        Ok(Ok(())) => nats::check_max_payload(client, config)
            .transpose()
            .map(drop)?,
        Ok(Err(e)) => {
            let error = format!("{e:#}");
            tracing::warn!(%error, "stream not ready yet; the relay will retry")
        }
        Err(_) => tracing::warn!("NATS not reachable yet; the relay will retry"),
    }
    Ok(())
}

fn bind(setting: &str, addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("binding {setting} {addr}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Teams' security tokens decode to 32 bytes: a key of another length was most likely not
/// copied whole. Not an error (it still verifies what it was given), but worth a look.
fn warn_about_keys(config: &Config) {
    for w in &config.webhooks {
        for bytes in w.keys.key_lengths().into_iter().filter(|&n| n != 32) {
            tracing::warn!(webhook = %w.name, bytes, "a webhook key is not 32 bytes: was its token copied whole?");
        }
    }
}
