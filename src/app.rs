//! Wiring: builds the receiver + relay from a [`Config`] and runs them until shutdown.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::{
    audit::HrAudit,
    config::Config,
    consumer::{ConsumerSpec, Worker},
    db, http,
    outbox::{Handoff, Relay},
    state::AppState,
    store::Committer,
    stream,
};

/// A built, bound, not yet running service.
pub struct Application {
    listener: std::net::TcpListener,
    state: AppState,
    relay: Relay,
    handoff: Arc<Handoff>,
}

impl Application {
    /// Prepares the database (create + migrate), connects to NATS (without waiting for it),
    /// starts the committer and binds the listen address.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.require_webhooks().map_err(anyhow::Error::from)?;
        let pool = db::prepare(&config).await?;
        let nats = stream::connect(&config).await?;
        let js = stream::context(nats.clone());
        // The stream is usually there within milliseconds; if NATS is down the relay keeps
        // trying, and requests are stored and answered meanwhile.
        match tokio::time::timeout(Duration::from_secs(2), stream::ensure_stream(&js, &config))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "stream not ready yet; the relay will retry"),
            Err(_) => tracing::warn!("NATS not reachable yet; the relay will retry"),
        }
        let handoff = Arc::new(Handoff::default());
        // At most this many commits at once (each holds a pool connection); see store.rs for
        // when a second one starts.
        let committers = config
            .commit_tasks
            .min(config.database_pool_size as usize)
            .max(1);
        let committer = Committer::spawn(
            pool.clone(),
            committers,
            config.commit_batch_max,
            handoff.clone(),
        );
        let listener = std::net::TcpListener::bind(config.listen_addr)
            .map_err(|e| anyhow::anyhow!("binding LISTEN_ADDR {}: {e}", config.listen_addr))?;
        listener.set_nonblocking(true)?;
        let relay = Relay {
            pool: db::relay_pool(&config)?,
            js: js.clone(),
            subject_prefix: config.subject_prefix.clone(),
            batch_size: config.relay_batch_size,
        };
        let state = AppState {
            webhooks: Arc::new(AppState::webhook_map(&config)),
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            config: Arc::new(config),
            pool,
            committer,
            nats,
            js,
            metrics: crate::telemetry::metrics(),
        };
        Ok(Self {
            listener,
            state,
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

    /// The shared state (tests read the pool and config from it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves HTTP(S) and runs the relay until `shutdown`: then stops accepting, finishes the
    /// requests in flight, and lets the relay publish what they committed.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            relay,
            handoff,
        } = self;
        let relay_stop = CancellationToken::new();
        let relay_task = tokio::spawn(run_relay(
            relay.clone(),
            state.config.clone(),
            Some(handoff),
            relay_stop.clone(),
        ));
        let router = http::router(state.clone());
        let addr = listener.local_addr()?;
        match (&state.config.tls_cert, &state.config.tls_key) {
            (Some(cert), Some(key)) => {
                crate::install_crypto_provider();
                let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .map_err(|e| anyhow::anyhow!("invalid setting TLS_CERT/TLS_KEY: {e}"))?;
                let handle = axum_server::Handle::new();
                let h = handle.clone();
                let budget = state.config.reply_budget;
                tokio::spawn(async move {
                    shutdown.cancelled().await;
                    h.graceful_shutdown(Some(budget + Duration::from_secs(1)));
                });
                tracing::info!(%addr, "listening (https)");
                axum_server::from_tcp_rustls(listener, tls)
                    .handle(handle)
                    .serve(router.into_make_service())
                    .await?;
            }
            _ => {
                tracing::info!(%addr, "listening (http)");
                let listener = tokio::net::TcpListener::from_std(listener)?;
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move { shutdown.cancelled().await })
                    .await?;
            }
        }
        drop(state);
        relay_stop.cancel();
        let _ = relay_task.await;
        // What the last requests committed: publish it now rather than at the next start.
        let _ = tokio::time::timeout(Duration::from_secs(3), relay.run_once()).await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Makes sure the stream exists (retrying while NATS is down), then relays until stopped.
/// `handoff` carries what the receiver of this process commits; `None` for a relay on its own.
pub async fn run_relay(
    relay: Relay,
    config: Arc<Config>,
    handoff: Option<Arc<Handoff>>,
    stop: CancellationToken,
) {
    let mut backoff =
        crate::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    while let Err(e) = stream::ensure_stream(&relay.js, &config).await {
        tracing::warn!(error = %e, "cannot create the stream yet; retrying");
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stop.cancelled() => return,
        }
    }
    relay.run(handoff, stop).await;
}

/// Connects the HR audit worker: database (created and migrated), NATS, the stream (created
/// if the receiver has not yet), and the durable consumer on `{prefix}.*.message`.
pub async fn hr_audit_worker(config: &Config) -> anyhow::Result<Worker<HrAudit>> {
    let pool = db::prepare(config).await?;
    let js = stream::context(stream::connect(config).await?);
    let mut backoff =
        crate::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut tries = 0;
    while let Err(e) = stream::ensure_stream(&js, config).await {
        tries += 1;
        if tries > 30 {
            return Err(e);
        }
        tracing::warn!(error = %e, "cannot reach the stream yet; retrying");
        tokio::time::sleep(backoff.next_delay()).await;
    }
    let spec = ConsumerSpec {
        stream: config.stream_name.clone(),
        durable: config.hr_audit_consumer.clone(),
        filter_subject: format!("{}.*.message", config.subject_prefix),
        max_deliveries: config.worker_max_deliveries,
        ack_wait: config.worker_ack_wait,
        batch: config.worker_batch,
    };
    Worker::connect(&js, pool.clone(), spec, HrAudit { pool }).await
}

/// Waits for SIGINT or SIGTERM and cancels `token`.
pub async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested");
    token.cancel();
}
