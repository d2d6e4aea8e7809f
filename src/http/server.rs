//! The listener: accepts connections and serves the router on each, over HTTP/1.1 (h2 would
//! bring Teams nothing and adds stream multiplexing to bound), with TLS when configured.
//! The public endpoint assumes hostile clients:
//!
//! - open connections are bounded (`MAX_CONNECTIONS`): beyond it a new connection is closed
//!   at once, so thousands of idle sockets cannot exhaust the process's file descriptors;
//! - a request's head must arrive within `HTTP_HEADER_TIMEOUT_SECS`, and an idle keep-alive
//!   connection is closed after the same time (hyper starts the timer whenever it waits for a
//!   head); a TLS handshake gets the same time;
//! - bodies are read by the webhook handler itself, bounded in size and time.
//!
//! On shutdown it stops accepting and lets the connections in flight finish (up to `grace`).

use std::{sync::Arc, time::Duration};

use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How hostile clients are held off.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time for a request head (and a TLS handshake); also the keep-alive idle time.
    pub header_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown`, then waits up to `grace` for the
/// connections in flight.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors or the like: give others a moment to close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            // Closed at once: a client that is refused learns it fast and retries.
            metrics::counter!("teams_bridge_connections_refused_total").increment(1);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (http, service) = (http.clone(), TowerToHyperService::new(router.clone()));
        let (watcher, tls, handshake) = (graceful.watcher(), tls.clone(), limits.header_timeout);
        tokio::spawn(async move {
            match tls {
                None => {
                    let _ = watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await;
                }
                Some(acceptor) => {
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout(handshake, acceptor.accept(stream)).await
                    {
                        let conn = http.serve_connection(TokioIo::new(stream), service);
                        let _ = watcher.watch(conn).await;
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => tracing::warn!("connections still open after the grace period"),
    }
}

/// Raises this process's open-files limit to its hard limit (Linux keeps a low soft limit by
/// default) and returns how many connections that leaves room for beside the pools and files
/// the service itself holds.
pub fn connection_room() -> usize {
    const RESERVED: u64 = 256;
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    limit.saturating_sub(RESERVED).max(16) as usize
}
