//! The HR audit worker process (`teams-bridge worker hr-audit`): database, NATS, the stream
//! (created if the receiver has not yet), the durable consumer on `{prefix}.*.message`, and
//! its health server.

use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::relay::ensure_stream;
use crate::{
    config::Config,
    domain::event,
    infra::{db, nats, run_loop::Ended},
    worker::{hr_audit::HrAudit, ConsumerSpec, Worker},
};

/// How long a starting worker waits for NATS and the stream before it gives up.
const STREAM_PATIENCE: Duration = Duration::from_secs(120);

/// Connects the HR audit worker.
pub async fn hr_audit_worker(config: &Config) -> anyhow::Result<Worker<HrAudit>> {
    let worker = connect_hr_audit(config, &CancellationToken::new()).await?;
    worker.context("stopped while waiting for the stream")
}

/// Connects the HR audit worker; `None` when `shutdown` came first.
async fn connect_hr_audit(
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Worker<HrAudit>>> {
    let pool = db::prepare(config).await?;
    let js = nats::context(nats::connect(config).await?);
    let ensure = tokio::time::timeout(STREAM_PATIENCE, ensure_stream(&js, config, shutdown));
    match ensure.await {
        Ok(Ended::Done) => {}
        Ok(Ended::Stopped) => return Ok(None),
        // One last try, for its error: that is what the operator needs to read.
        Err(_) => nats::ensure_stream(&js, config)
            .await
            .with_context(|| format!("stream not reachable within {STREAM_PATIENCE:?}"))?,
    }
    let spec = ConsumerSpec {
        stream: config.stream_name.clone(),
        durable: config.hr_audit_consumer.clone(),
        filter_subject: event::message_subjects(&config.subject_prefix),
        max_deliveries: config.worker_max_deliveries,
        ack_wait: config.worker_ack_wait,
        batch: config.worker_batch,
    };
    Worker::connect(&js, pool.clone(), spec, HrAudit { pool })
        .await
        .map(Some)
}

/// `teams-bridge worker hr-audit`: the worker and its `/healthz` + `/metrics`, until shutdown.
pub async fn run_hr_audit_worker(
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some(worker) = connect_hr_audit(&config, &shutdown).await? else {
        return Ok(());
    };
    tracing::info!(consumer = %config.hr_audit_consumer, "hr-audit worker running");
    let addr = config.worker_listen_addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding WORKER_LISTEN_ADDR {addr}"))?;
    let (stop, router) = (
        shutdown.clone(),
        crate::http::worker_router(worker.heartbeat()),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });
    worker.run(shutdown).await;
    Ok(())
}
