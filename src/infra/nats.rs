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
        .expose()
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

/// The stream this configuration creates: file storage, every subject under the prefix, a
/// de-duplication window longer than the relay's longest retry back-off, and limits (the
/// stream is transport; Postgres is the record).
pub(crate) fn stream_config(config: &Config) -> stream::Config {
    stream::Config {
        name: config.stream_name.clone(),
        subjects: vec![event::all_subjects(&config.subject_prefix)],
        storage: stream::StorageType::File,
        duplicate_window: config.duplicate_window,
        num_replicas: config.stream_replicas,
        max_age: stream_max_age(config),
        max_bytes: config.stream_max_bytes.unwrap_or(-1),
        description: Some("Microsoft Teams activities published by teams-bridge".into()),
        ..Default::default()
    }
}

/// The stream's age limit: `NATS_STREAM_MAX_AGE`, but never longer than
/// `ACTIVITY_RETENTION_DAYS` (the stream is transport, not a second archive that outlives
/// Postgres' retention).
pub(crate) fn stream_max_age(config: &Config) -> std::time::Duration {
    let Some(days) = config.activity_retention_days else {
        return config.stream_max_age;
    };
    let cap = std::time::Duration::from_secs(u64::from(days) * 86_400);
    match config.stream_max_age {
        std::time::Duration::ZERO => cap,
        age => age.min(cap),
    }
}

/// Creates the stream when it is missing. An existing stream is left as it is (an operator
/// may have given it replicas or limits); where it differs from the settings, a warning says
/// how, and a stream that does not hold our subjects is an error.
pub async fn ensure_stream(js: &jetstream::Context, config: &Config) -> anyhow::Result<()> {
    let wanted = stream_config(config);
    let stream = js
        .get_or_create_stream(wanted.clone())
        .await
        .with_context(|| format!("creating stream {}", config.stream_name))?;
    let actual = &stream.cached_info().config;
    anyhow::ensure!(
        actual.subjects.contains(&wanted.subjects[0]),
        "stream {} does not hold the subjects {} (it holds {:?}); fix the stream or NATS_STREAM",
        wanted.name,
        wanted.subjects[0],
        actual.subjects
    );
    for difference in differences(actual, &wanted) {
        tracing::warn!(stream = %wanted.name, %difference, "the existing stream differs from the settings; leaving it as it is");
    }
    Ok(())
}

/// How an existing stream differs from the one the settings would create.
pub(crate) fn differences(actual: &stream::Config, wanted: &stream::Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut differ = |what: &str, a: String, w: String| {
        if a != w {
            out.push(format!("{what} is {a}, the settings say {w}"));
        }
    };
    differ(
        "replicas",
        actual.num_replicas.to_string(),
        wanted.num_replicas.to_string(),
    );
    differ(
        "max_age",
        format!("{:?}", actual.max_age),
        format!("{:?}", wanted.max_age),
    );
    differ(
        "max_bytes",
        actual.max_bytes.to_string(),
        wanted.max_bytes.to_string(),
    );
    let (a, w) = (actual.duplicate_window, wanted.duplicate_window);
    differ("duplicate_window", format!("{a:?}"), format!("{w:?}"));
    differ(
        "storage",
        format!("{:?}", actual.storage),
        format!("{:?}", wanted.storage),
    );
    out
}

/// Room for the headers of one event beside its body (CloudEvents attributes, trace
/// context, `Nats-Msg-Id`; `ce-subject` is bounded in the event contract).
pub const HEADER_ALLOWANCE: usize = 4096;

/// Refuses a configuration whose largest body could never be published: the message (body
/// plus headers) must fit the server's `max_payload`. `None` while the server is unknown.
pub fn check_max_payload(
    client: &async_nats::Client,
    config: &Config,
) -> Option<anyhow::Result<()>> {
    let max_payload = client.server_info().max_payload;
    (max_payload > 0).then(|| {
        let largest = config.body_limit + HEADER_ALLOWANCE;
        anyhow::ensure!(
            largest <= max_payload,
            "invalid setting BODY_LIMIT_BYTES: {} bytes of body plus {HEADER_ALLOWANCE} of headers \
             exceed the NATS server's max_payload of {max_payload} bytes, so such a message \
             could never be published; lower BODY_LIMIT_BYTES or raise max_payload",
            config.body_limit
        );
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_as_the_settings_make_it_has_no_differences_and_an_edited_one_has() {
        let config = Config::from_map(&Default::default(), None).unwrap();
        let wanted = stream_config(&config);
        assert!(differences(&wanted, &wanted).is_empty());
        assert_eq!(wanted.max_age, std::time::Duration::from_secs(7 * 86_400));
        let edited = stream::Config {
            num_replicas: 3,
            max_bytes: 1 << 30,
            ..wanted.clone()
        };
        let found = differences(&edited, &wanted);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("replicas is 3"), "{found:?}");
    }

    #[test]
    fn the_stream_never_keeps_activities_longer_than_their_retention() {
        let day = std::time::Duration::from_secs(86_400);
        let with = |pairs: &[(&str, &str)]| {
            let map = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()));
            stream_max_age(&Config::from_map(&map.collect(), None).unwrap())
        };
        assert_eq!(with(&[]), 7 * day);
        assert_eq!(with(&[("ACTIVITY_RETENTION_DAYS", "2")]), 2 * day);
        assert_eq!(with(&[("ACTIVITY_RETENTION_DAYS", "30")]), 7 * day);
        let forever = [
            ("ACTIVITY_RETENTION_DAYS", "3"),
            ("NATS_STREAM_MAX_AGE", "0"),
        ];
        assert_eq!(with(&forever), 3 * day);
    }
}
