//! A downstream worker of your own in ~40 lines: print who said what in every message
//! activity. The library handles the durable consumer, acks, retries and dead letters; you
//! write the handler. Run it next to `teams-bridge serve`:
//!
//! ```sh
//! cargo run --example print_worker
//! ```

use std::time::Duration;

use teams_bridge::{
    config::Config,
    domain::{
        activity::Activity,
        event::{self, Event},
        markup,
    },
    infra::{db, nats},
    worker::{ConsumerSpec, HandleError, Handler, Worker},
};
use tokio_util::sync::CancellationToken;

/// Prints each message. Printing is idempotent enough; a real handler writes with
/// `on conflict (event_id) do nothing` or similar, because delivery is at least once.
struct PrintMessages;

impl Handler for PrintMessages {
    async fn handle(&self, events: &[Event]) -> Vec<Result<(), HandleError>> {
        events
            .iter()
            .map(|e| match Activity::parse(&e.body) {
                Ok(a) => {
                    let text = markup::plain_text(a.text.as_deref().unwrap_or_default());
                    println!(
                        "{} [{}] {}: {text}",
                        e.event_id,
                        e.webhook,
                        a.sender_name().unwrap_or("someone")
                    );
                    Ok(())
                }
                // Retrying cannot fix a body that is not an activity: dead-letter it.
                Err(err) => Err(HandleError::Permanent(err.to_string())),
            })
            .collect()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load(None)?;
    teams_bridge::infra::telemetry::init_logs(config.log_format, &config.log_filter);
    let pool = db::prepare(&config).await?; // dead letters live in Postgres
    let js = nats::context(nats::connect(&config).await?);
    nats::ensure_stream(&js, &config).await?;
    let spec = ConsumerSpec {
        stream: config.stream_name.clone(),
        durable: "print-messages".into(),
        filter_subject: event::message_subjects(&config.subject_prefix),
        max_deliveries: 5,
        ack_wait: Duration::from_secs(30),
        batch: 64,
    };
    let worker = Worker::connect(&js, pool, spec, PrintMessages).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(teams_bridge::app::cancel_on_signal(shutdown.clone()));
    worker.run(shutdown).await;
    Ok(())
}
