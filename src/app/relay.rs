//! The relay process (`teams-bridge relay`) and the relay inside `serve`: the stream is made
//! sure of first (retrying while NATS is down), then the relay runs until stopped.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    handoff::Handoff,
    infra::{
        backoff::Backoff,
        db, nats,
        run_loop::{run_loop, Ended, Step, Steps},
    },
    relay::Relay,
};

/// The relay of this configuration, on its own small pool.
pub fn relay_for(config: &Config, js: jetstream::Context) -> anyhow::Result<Relay> {
    Ok(Relay {
        pool: db::relay_pool(config)?,
        js,
        subject_prefix: config.subject_prefix.clone(),
        batch_size: config.relay_batch_size,
        max_refusals: config.relay_max_refusals,
    })
}

/// `teams-bridge relay`: the outbox relay alone, until SIGINT/SIGTERM.
pub async fn run_relay_process(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    db::prepare(&config).await?;
    let client = nats::connect(&config).await?;
    let js = nats::context(client.clone());
    let stream = tokio::time::timeout(Duration::from_secs(2), nats::ensure_stream(&js, &config));
    if let Ok(Ok(())) = stream.await {
        nats::check_max_payload(&client, &config).transpose()?;
    }
    let relay = relay_for(&config, js)?;
    run_relay(relay, Arc::new(config), None, shutdown).await;
    Ok(())
}

/// Makes sure the stream exists (retrying while NATS is down), then relays until stopped.
/// `handoff` carries what the receiver of this process commits; `None` for a relay on its own.
pub async fn run_relay(
    relay: Relay,
    config: Arc<Config>,
    handoff: Option<Arc<Handoff>>,
    stop: CancellationToken,
) {
    if ensure_stream(&relay.js, &config, &stop).await == Ended::Done {
        relay.run(handoff, stop).await;
    }
}

/// Creates or updates the stream, retrying with back-off until it works or `stop`.
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: &Config,
    stop: &CancellationToken,
) -> Ended {
    let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut task = EnsureStream {
        js: js.clone(),
        config: config.clone(),
    };
    run_loop(&mut task, stop, backoff).await
}

/// One attempt at the stream per step. Owns what it uses: a future holding borrowed
/// references across `Steps::step` cannot be proven `Send` for every lifetime.
struct EnsureStream {
    js: jetstream::Context,
    config: Config,
}

impl Steps for EnsureStream {
    type Error = anyhow::Error;

    fn name(&self) -> &'static str {
        "ensure stream"
    }

    fn log_failure(&self, e: &anyhow::Error) {
        tracing::warn!(error = %format_args!("{e:#}"), "cannot create the stream yet; retrying");
    }

    async fn step(&mut self) -> anyhow::Result<Step> {
        nats::ensure_stream(&self.js, &self.config).await?;
        Ok(Step::Done)
    }
}
