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
    http::{self, api::ApiState, health, AppState},
    infra::{db, nats},
    ingest::{Committer, Ingest},
    relay::Relay,
};

/// A built, bound, not yet running `serve`.
pub struct Application {
    listener: std::net::TcpListener,
    state: AppState,
    config: Arc<Config>,
    pool: PgPool,
    relay: Relay,
    handoff: Arc<Handoff>,
}

impl Application {
    /// Prepares the database (create + migrate), connects to NATS (without waiting for it),
    /// starts the committer and binds the listen address.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.require_webhooks()?;
        let pool = db::prepare(&config).await?;
        let nats = nats::connect(&config).await?;
        let js = nats::context(nats.clone());
        // The stream is usually there within milliseconds; if NATS is down the relay keeps
        // trying, and requests are stored and answered meanwhile.
        let ensure =
            tokio::time::timeout(Duration::from_secs(2), nats::ensure_stream(&js, &config));
        match ensure.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "stream not ready yet; the relay will retry"),
            Err(_) => tracing::warn!("NATS not reachable yet; the relay will retry"),
        }
        let handoff = Arc::new(Handoff::default());
        // At most this many commits at once (each holds a pool connection); see
        // ingest/committer.rs for when a second one starts.
        let tasks = config.commit_tasks.min(config.database_pool_size as usize);
        let committer = Committer::spawn(
            pool.clone(),
            tasks.max(1),
            config.commit_batch_max,
            handoff.clone(),
        );
        let listener = std::net::TcpListener::bind(config.listen_addr)
            .with_context(|| format!("binding LISTEN_ADDR {}", config.listen_addr))?;
        listener.set_nonblocking(true)?;
        let dependencies = health::Dependencies {
            pool: pool.clone(),
            nats,
            js: js.clone(),
            stream_name: config.stream_name.clone(),
            max_outbox_age: config.ready_max_outbox_age,
        };
        let state = AppState {
            ingest: Ingest::new(&config, Arc::new(committer)),
            api: ApiState::new(pool.clone(), config.audit_api_token.clone()),
            health: health::Health(Arc::new(dependencies)),
            metrics: crate::infra::telemetry::metrics(),
        };
        let relay = relay_for(&config, js)?;
        let config = Arc::new(config);
        Ok(Self {
            listener,
            state,
            config,
            pool,
            relay,
            handoff,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
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
            state,
            config,
            relay,
            handoff,
            ..
        } = self;
        let relay_stop = CancellationToken::new();
        let relay_task = tokio::spawn(run_relay(
            relay.clone(),
            config.clone(),
            Some(handoff),
            relay_stop.clone(),
        ));
        serve(listener, http::router(state), &config, shutdown).await?;
        relay_stop.cancel();
        let _ = relay_task.await;
        // What the last requests committed: publish it now rather than at the next start.
        let _ = tokio::time::timeout(Duration::from_secs(3), relay.run_once()).await;
        tracing::info!("stopped");
        Ok(())
    }
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
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        tracing::info!(%addr, "listening (http)");
        let listener = tokio::net::TcpListener::from_std(listener)?;
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await?;
        return Ok(());
    };
    crate::install_crypto_provider();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .context("invalid setting TLS_CERT/TLS_KEY")?;
    let handle = axum_server::Handle::new();
    let (h, grace) = (handle.clone(), config.reply_budget + Duration::from_secs(1));
    tokio::spawn(async move {
        shutdown.cancelled().await;
        h.graceful_shutdown(Some(grace));
    });
    tracing::info!(%addr, "listening (https)");
    axum_server::from_tcp_rustls(listener, tls)
        .handle(handle)
        .serve(router.into_make_service())
        .await?;
    Ok(())
}
