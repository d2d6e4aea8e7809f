//! The ledger check: after a run, every request answered 200 must have exactly one row in
//! `activities`, one message on the stream and (once the worker drained) one row in
//! `audit_log`, and nothing else may have appeared.
//!
//! A run uses one webhook and activity ids `{run_id}-{n}`. Counts are taken per webhook
//! (its stream subject is `{prefix}.{webhook}.message`) before the run ([`Baseline`]) and
//! after it, so the check is exact as long as nothing else posts to that webhook meanwhile:
//! the bench script gives every scenario its own webhook.

use anyhow::Context as _;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::TryStreamExt;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::load::Accepted;

/// Where a run's traces are looked for.
#[derive(Clone)]
pub struct LedgerScope {
    /// The service's database.
    pub pool: PgPool,
    /// JetStream.
    pub js: jetstream::Context,
    /// Stream name (`NATS_STREAM`).
    pub stream: String,
    /// Subject prefix (`NATS_SUBJECT_PREFIX`).
    pub subject_prefix: String,
    /// The webhook the run posted to.
    pub webhook: String,
    /// The HR audit worker's durable consumer, to know when it has drained.
    pub consumer: Option<String>,
}

/// Counts for the webhook before the run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Baseline {
    /// `activities` rows of the webhook.
    pub activities: i64,
    /// Stream messages on the webhook's message subject.
    pub stream_messages: i64,
    /// `audit_log` rows of the webhook.
    pub audit: i64,
}

/// How long to wait for the relay and the worker to catch up.
#[derive(Debug, Clone, Copy)]
pub struct DrainLimits {
    /// For the outbox to empty.
    pub relay: Duration,
    /// For the worker's consumer to have nothing pending.
    pub worker: Duration,
}

/// What the check found. [`LedgerReport::ok`] is true when nothing differs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LedgerReport {
    /// Requests answered 200 (what every count must equal).
    pub answered_200: i64,
    /// 200 replies without a readable receipt.
    pub missing_receipts: i64,
    /// `activities` rows holding exactly a 200's (activity id, receipt).
    pub activities_matched: i64,
    /// `activities` rows with this run's activity ids (200 or not).
    pub activities_of_run: i64,
    /// New `activities` rows of the webhook.
    pub activities_new: i64,
    /// Outbox rows of the webhook still unpublished when the check gave up waiting.
    pub outbox_left: i64,
    /// New stream messages on the webhook's subject.
    pub stream_new: i64,
    /// `audit_log` rows whose event id is a 200's receipt.
    pub audit_matched: i64,
    /// New `audit_log` rows of the webhook.
    pub audit_new: i64,
    /// Seconds from the start of the check until the outbox was empty.
    pub relay_drain_s: f64,
    /// Seconds from the start of the check until the worker had nothing pending.
    pub worker_drain_s: f64,
    /// Each difference, in words.
    pub problems: Vec<String>,
}

impl LedgerReport {
    /// True when every count matched.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl LedgerScope {
    fn subject(&self) -> String {
        teams_bridge::domain::event::webhook_message_subject(&self.subject_prefix, &self.webhook)
    }

    /// Counts for the webhook now.
    pub async fn baseline(&self) -> anyhow::Result<Baseline> {
        Ok(Baseline {
            activities: self
                .count("select count(*) from activities where webhook = $1")
                .await?,
            stream_messages: self.stream_count().await?,
            audit: self
                // Through the webhook's activities (indexed by webhook), so that a database
                // of millions of entries (scripts/bulk-load.sh) is not scanned whole.
                .count(
                    "select count(*) from activities a join audit_log l using (event_id) \
                     where a.webhook = $1",
                )
                .await?,
        })
    }

    async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(sql)
            .bind(&self.webhook)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn stream_count(&self) -> anyhow::Result<i64> {
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .with_context(|| format!("stream {}", self.stream))?;
        let subjects: Vec<(String, usize)> = stream
            .info_with_subjects(self.subject())
            .await
            .with_context(|| format!("stream {} info", self.stream))?
            .try_collect()
            .await
            .with_context(|| format!("stream {} subjects", self.stream))?;
        Ok(subjects.iter().map(|(_, n)| *n as i64).sum())
    }

    /// Waits for the relay and the worker (within `limits`), then compares the ledger with
    /// the run's 200s: `accepted` activity ids with their receipts, `id_prefix` the run's
    /// activity id prefix.
    pub async fn check(
        &self,
        baseline: &Baseline,
        accepted: &[Accepted],
        id_prefix: &str,
        limits: DrainLimits,
    ) -> anyhow::Result<LedgerReport> {
        let started = Instant::now();
        let mut r = LedgerReport {
            answered_200: accepted.len() as i64,
            ..Default::default()
        };
        let (ids, receipts): (Vec<&str>, Vec<Uuid>) = accepted
            .iter()
            .filter_map(|a| a.event_id.map(|e| (a.activity_id.as_str(), e)))
            .unzip();
        r.missing_receipts = r.answered_200 - receipts.len() as i64;

        // 1. The relay publishes everything committed.
        loop {
            r.outbox_left = self
                // Per outbox row, one primary-key lookup: a plain join would hash all of
                // `activities` every 50 ms, slowing the very relay whose drain this measures.
                // The webhook is compared outside the lookup: inside it, where statistics
                // say the run's webhook has no rows (the bulk-loaded database, analyzed before
                // the run), the planner walked the webhook's index for every outbox row, which
                // outlasted the statement timeout once the run had written 100,000 rows.
                .count(
                    "select count(*) from outbox o \
                     where (select a.webhook from activities a where a.event_id = o.event_id) = $1",
                )
                .await?;
            if r.outbox_left == 0 || started.elapsed() > limits.relay {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        r.relay_drain_s = started.elapsed().as_secs_f64();

        // 2. The worker consumes everything published.
        loop {
            let drained = match &self.consumer {
                Some(name) => self.consumer_drained(name).await?,
                None => self.audit_matched(&receipts).await? >= receipts.len() as i64,
            };
            if drained || started.elapsed() > limits.relay + limits.worker {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        r.worker_drain_s = started.elapsed().as_secs_f64();

        r.activities_matched = sqlx::query_scalar(
            // One primary-key lookup per receipt (a lateral with a limit): planned as a join,
            // the estimate from the array's length chose a hash of every activity, which on
            // a database of millions (scripts/bulk-load.sh) outlasted the statement timeout.
            "select count(*) from unnest($2::text[], $3::uuid[]) as k(activity_id, event_id)
             cross join lateral (select 1 from activities a where a.event_id = k.event_id
               and a.webhook = $1 and a.activity_id = k.activity_id limit 1) found",
        )
        .bind(&self.webhook)
        .bind(&ids)
        .bind(&receipts)
        .fetch_one(&self.pool)
        .await?;
        r.activities_of_run = sqlx::query_scalar(
            "select count(*) from activities where webhook = $1 and starts_with(activity_id, $2)",
        )
        .bind(&self.webhook)
        .bind(id_prefix)
        .fetch_one(&self.pool)
        .await?;
        let after = self.baseline().await?;
        r.activities_new = after.activities - baseline.activities;
        r.stream_new = after.stream_messages - baseline.stream_messages;
        r.audit_new = after.audit - baseline.audit;
        r.audit_matched = self.audit_matched(&receipts).await?;
        r.problems = problems(&r);
        Ok(r)
    }

    async fn audit_matched(&self, receipts: &[Uuid]) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "select count(*) from unnest($1::uuid[]) as k(event_id) cross join lateral \
                 (select 1 from audit_log l where l.event_id = k.event_id limit 1) found",
        )
        .bind(receipts)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn consumer_drained(&self, name: &str) -> anyhow::Result<bool> {
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .with_context(|| format!("stream {}", self.stream))?;
        let info = stream
            .consumer_info(name)
            .await
            .with_context(|| format!("consumer {name}"))?;
        Ok(info.num_pending == 0 && info.num_ack_pending == 0)
    }
}

fn problems(r: &LedgerReport) -> Vec<String> {
    let n = r.answered_200;
    let mut p = Vec::new();
    if r.missing_receipts > 0 {
        p.push(format!(
            "{} replies answered 200 carry no receipt",
            r.missing_receipts
        ));
    }
    let mut expect = |what: &str, got: i64| {
        if got != n {
            p.push(format!("{what}: {got}, expected {n} (one per 200)"));
        }
    };
    expect(
        "activities rows matching a 200's activity id and receipt",
        r.activities_matched,
    );
    expect(
        "activities rows with this run's activity ids",
        r.activities_of_run,
    );
    expect("new activities rows of the webhook", r.activities_new);
    expect("new stream messages on the webhook's subject", r.stream_new);
    expect("audit_log rows for the 200s' receipts", r.audit_matched);
    expect("new audit_log rows of the webhook", r.audit_new);
    if r.outbox_left > 0 {
        p.push(format!("{} outbox rows still unpublished", r.outbox_left));
    }
    p
}

impl std::fmt::Display for LedgerReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.answered_200;
        let mark = |got: i64| if got == n { "ok" } else { "DIFFERS" };
        writeln!(f, "ledger (answered 200: {n})")?;
        for (what, got) in [
            (
                "activities rows matching (id, receipt)",
                self.activities_matched,
            ),
            ("activities rows of this run", self.activities_of_run),
            ("new activities rows of the webhook", self.activities_new),
            ("new stream messages", self.stream_new),
            ("audit_log rows by receipt", self.audit_matched),
            ("new audit_log rows of the webhook", self.audit_new),
        ] {
            writeln!(f, "  {what:<40} {got:>9}  {}", mark(got))?;
        }
        writeln!(
            f,
            "  drained: outbox after {:.2} s, worker after {:.2} s",
            self.relay_drain_s, self.worker_drain_s
        )?;
        if self.ok() {
            writeln!(f, "  LEDGER OK")
        } else {
            for p in &self.problems {
                writeln!(f, "  PROBLEM: {p}")?;
            }
            Ok(())
        }
    }
}
