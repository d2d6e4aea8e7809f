//! NATS connection and the JetStream stream that carries every activity.

use std::time::Duration;

use anyhow::Context as _;

use async_nats::jetstream::{self, stream};

use crate::{config::Config, domain::event};

/// Connects to NATS. The client keeps reconnecting by itself when the server goes away, and
/// also starts when NATS is not up yet: the relay's outbox covers the gap.
pub async fn connect(config: &Config) -> anyhow::Result<async_nats::Client> {
    let servers: Vec<async_nats::ServerAddr> = config
        .nats_url
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("invalid setting NATS_URL"))?;
    let client = async_nats::ConnectOptions::new()
        .name("teams-bridge")
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .connect(servers)
        .await
        .context("connecting to NATS")?;
    Ok(client)
}

/// A JetStream context whose requests (publish acks included) time out well inside the
/// relay's retry loop.
pub fn context(client: async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(3))
        .max_ack_inflight(4096)
        .build(client)
}

/// The stream configuration: file storage, every subject under the prefix, and a
/// de-duplication window longer than the relay's longest retry back-off.
pub(crate) fn stream_config(config: &Config) -> stream::Config {
    stream::Config {
        name: config.stream_name.clone(),
        subjects: vec![event::all_subjects(&config.subject_prefix)],
        storage: stream::StorageType::File,
        duplicate_window: config.duplicate_window,
        description: Some("Microsoft Teams activities published by teams-bridge".into()),
        ..Default::default()
    }
}

/// Creates the stream, or updates it to the configured settings.
pub async fn ensure_stream(js: &jetstream::Context, config: &Config) -> anyhow::Result<()> {
    js.create_or_update_stream(stream_config(config))
        .await
        .with_context(|| format!("creating or updating stream {}", config.stream_name))?;
    Ok(())
}
