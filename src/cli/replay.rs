//! `teams-bridge replay [--since T] [--until T] [--webhook NAME] [--event-id ID]… [--dead]
//! [--dry-run]`: queues stored activities for publishing again, and makes sure the stream
//! exists to receive them.

use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;

use crate::{
    audit::query::parse_time,
    config::Config,
    infra::{db, nats},
    relay::replay::{replay, ReplayFilter},
};

/// Options of `teams-bridge replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Received at or after: RFC 3339, YYYY-MM-DD, or an age like 7d, 12h.
    #[arg(long, value_parser = time)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Received before (same forms as --since).
    #[arg(long, value_parser = time)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Only this webhook's activities.
    #[arg(long)]
    pub webhook: Option<String>,
    /// Only this activity (repeat for several).
    #[arg(long = "event-id")]
    pub event_ids: Vec<uuid::Uuid>,
    /// Only rows JetStream refused (`outbox_dead`), moved back to the outbox.
    #[arg(long)]
    pub dead: bool,
    /// Count what would be queued; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Every stored activity (needed when no other filter is given).
    #[arg(long)]
    pub all: bool,
}

fn time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    parse_time(s, chrono::Utc::now())
}

/// Queues the matching activities and prints how many.
pub async fn run(args: ReplayArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let unfiltered = args.since.is_none()
        && args.until.is_none()
        && args.webhook.is_none()
        && args.event_ids.is_empty();
    if unfiltered && !args.all && !args.dead {
        anyhow::bail!("replay needs a filter (--since, --until, --webhook, --event-id) or --all");
    }
    let pool = db::prepare(config).await?;
    if !args.dry_run {
        // A deleted stream is the usual reason to replay: create it (left as it is if present).
        let js = nats::context(nats::connect(config).await?);
        let ensure = tokio::time::timeout(Duration::from_secs(5), nats::ensure_stream(&js, config));
        match ensure.await {
            Ok(result) => result?,
            Err(_) => eprintln!("warning: NATS did not answer; the rows wait in the outbox"),
        }
    }
    let filter = ReplayFilter {
        since: args.since,
        until: args.until,
        webhook: args.webhook,
        event_ids: args.event_ids,
        dead: args.dead,
    };
    let n = replay(&pool, &filter, args.dry_run)
        .await
        .context("queueing activities")?;
    let what = if args.dead {
        "dead outbox rows"
    } else {
        "activities"
    };
    match args.dry_run {
        true => println!("would queue {n} {what} (dry run: nothing changed)"),
        false => println!("queued {n} {what} for publishing"),
    }
    Ok(ExitCode::SUCCESS)
}
