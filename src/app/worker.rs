//! The HR audit worker process (`teams-bridge worker hr-audit`): database, NATS, the stream
//! (created if the receiver has not yet), the durable consumer on `{prefix}.*.message`, and
//! its health server.

use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::relay::ensure_stream;
use std::sync::Arc;

use async_nats::jetstream;

use crate::{
    audit::seal::Sealer,
    config::Config,
    domain::{event, note::NoteSigner},
    infra::{
        backoff::Backoff,
        db, nats,
        run_loop::{run_loop, Ended},
    },
    privacy::retention::{Policy, Retention},
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
    let pool = db::prepare_worker(config).await?;
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

/// The sealer of this configuration, when it has a signing key.
pub async fn sealer_for(
    config: &Config,
    js: Option<jetstream::Context>,
) -> anyhow::Result<Option<Sealer>> {
    let Some(path) = &config.audit_signing_key_file else {
        tracing::warn!(
            "AUDIT_SIGNING_KEY_FILE is not set: entries get their leaves, but no checkpoint signs them"
        );
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "invalid setting AUDIT_SIGNING_KEY_FILE: cannot read {}",
            path.display()
        )
    })?;
    let signer = NoteSigner::from_text(&text).context("invalid setting AUDIT_SIGNING_KEY_FILE")?;
    let subject = event::checkpoint_subject(&config.subject_prefix);
    Ok(Some(Sealer {
        pool: db::prepare_worker(config).await?,
        signer: Arc::new(signer),
        origin: config.audit_log_origin.clone(),
        publish: js.map(|js| (js, subject)),
        interval: config.audit_seal_interval,
        max_entries: config.audit_seal_max_entries,
        last_seal: std::time::Instant::now(),
    }))
}

/// The retention task of this configuration, when it keeps anything for a limited time.
async fn retention_for(config: &Config) -> anyhow::Result<Option<Retention>> {
    let policy = Policy {
        activity_days: config.activity_retention_days,
        audit_days: config.audit_retention_days,
    };
    if policy == Policy::default() {
        return Ok(None);
    }
    tracing::info!(
        activity_days = ?policy.activity_days,
        audit_days = ?policy.audit_days,
        "retention on: a pass every RETENTION_INTERVAL_SECS by one worker at a time"
    );
    Ok(Some(Retention {
        pool: db::prepare_worker(config).await?,
        policy,
        every: config.retention_interval,
    }))
}

/// `teams-bridge worker hr-audit`: the worker, its sealer (with a signing key) and its
/// `/healthz` + `/metrics`, until shutdown.
pub async fn run_hr_audit_worker(
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some(worker) = connect_hr_audit(&config, &shutdown).await? else {
        return Ok(());
    };
    let js = nats::context(nats::connect(&config).await?);
    if let Some(mut sealer) = sealer_for(&config, Some(js)).await? {
        let stop = shutdown.clone();
        let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        tokio::spawn(async move { run_loop(&mut sealer, &stop, backoff).await });
    }
    if let Some(mut retention) = retention_for(&config).await? {
        let stop = shutdown.clone();
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        tokio::spawn(async move { run_loop(&mut retention, &stop, backoff).await });
    }
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
