//! Receiving one webhook request: verify, commit, answer.
//!
//! Order matters: load is shed first, the raw bytes are checked against the signature
//! before any JSON is parsed, and the receipt exists only after the Postgres commit. If the
//! commit cannot be made within the reply budget the request is refused (Teams waits 5 s)
//! and nothing of it is stored: every job carries its deadline, and the committer answers
//! "not stored" only when that is sure.

use std::{collections::HashMap, sync::Arc, time::Duration, time::Instant};

use bytes::Bytes;
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::{
    answer::Answers, editors::Editors, IngestError, NewActivity, Store, StoreError, Stored,
};
use crate::{
    config::{Config, ReplyFormat},
    domain::{
        activity::Activity,
        answer,
        card::Links,
        hr_command::{self, HrCommand, Question},
        reply::{Reply, Sender, Style},
        signature::{self, KeyRing},
    },
};

/// A webhook as the handler needs it.
#[derive(Debug)]
pub struct WebhookEntry {
    /// Its name, shared into every stored activity without copying.
    pub name: Arc<str>,
    /// Its keys.
    pub keys: KeyRing,
}

/// Everything receiving needs; cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    webhooks: Arc<HashMap<String, WebhookEntry>>,
    in_flight: Arc<Semaphore>,
    store: Arc<dyn Store>,
    reply_budget: Duration,
    body_limit: usize,
    style: Style,
    editors: Arc<Editors>,
    answers: Option<Arc<Answers>>,
}

/// Time kept back from the reply budget when answering a question, for writing the reply.
const ANSWER_MARGIN: Duration = Duration::from_millis(300);
/// Longest a question may take to answer; after it the reply is the receipt alone.
const ANSWER_MAX: Duration = Duration::from_millis(1500);

/// A stored request's answer.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// New, or a repeat of an earlier delivery.
    pub stored: Stored,
    /// What Teams shows in the thread.
    pub reply: Reply,
}

impl Receipt {
    /// The label of `teams_bridge_webhook_requests_total`.
    pub fn outcome(&self) -> &'static str {
        match self.stored {
            Stored::New(_) => "accepted",
            Stored::Duplicate { .. } => "duplicate",
        }
    }
}

impl Ingest {
    /// Indexes the configured webhooks and stores through `store`.
    pub fn new(config: &Config, store: Arc<dyn Store>) -> Self {
        let entry = |w: &crate::config::Webhook| WebhookEntry {
            name: Arc::from(w.name.as_str()),
            keys: w.keys.clone(),
        };
        let webhooks = config.webhooks.iter().map(|w| (w.name.clone(), entry(w)));
        Self {
            webhooks: Arc::new(webhooks.collect()),
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            store,
            reply_budget: config.reply_budget,
            body_limit: config.body_limit,
            style: Style {
                card: config.reply_format == ReplyFormat::Card,
                links: config.public_url.clone().map(|base| Links { base }),
            },
            editors: Arc::default(),
            answers: None,
        }
    }

    /// Answers questions (`history`, `view`) from this Postgres; without, they get the receipt.
    pub fn with_answers(mut self, answers: Answers) -> Self {
        self.answers = Some(Arc::new(answers));
        self
    }

    /// Decides changes from these HR editors lists (kept fresh by `editors::keep_fresh`);
    /// without, every webhook has no list.
    pub fn with_editors(mut self, editors: Arc<Editors>) -> Self {
        self.editors = editors;
        self
    }

    /// The largest body accepted.
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }

    /// Time a request may take before it is answered.
    pub fn reply_budget(&self) -> Duration {
        self.reply_budget
    }

    /// Receives one request to `/webhooks/{name}`: `body` reads the body (or says why it
    /// cannot) and is awaited only once load and name have been checked, so nothing is
    /// buffered for a request that would be refused anyway; `authorization` as sent,
    /// `started` when the request arrived.
    pub async fn receive(
        &self,
        name: &str,
        authorization: Option<&[u8]>,
        body: impl std::future::Future<Output = Result<Bytes, IngestError>>,
        traceparent: String,
        started: Instant,
    ) -> Result<Receipt, IngestError> {
        // Shed load before doing any work: a fast 503 beats a reply that misses the deadline.
        let _permit = self
            .in_flight
            .try_acquire()
            .map_err(|_| IngestError::Overloaded)?;
        let webhook = self.webhooks.get(name).ok_or(IngestError::UnknownWebhook)?;
        // A request without a well-formed signature is refused before its body is read.
        let mac = signature::parse_authorization(authorization)?;
        let body = body.await?;
        if body.is_empty() {
            return Err(IngestError::EmptyBody);
        }
        webhook.keys.verify_mac(&mac, &body)?;
        let activity = Activity::parse(&body)?;
        let cmd = hr_command::parse(activity.text.as_deref().unwrap_or_default());
        let aad = activity.sender_aad_object_id();
        let authorized = self.editors.authorized(name, cmd.operation, aad);
        let (sender_name, at) = (
            activity.sender_name().map(str::to_owned),
            activity.timestamp(),
        );
        let new = NewActivity {
            event_id: Uuid::now_v7(),
            webhook: webhook.name.clone(),
            activity,
            raw: body,
            mac,
            traceparent: Some(traceparent),
            authorized,
            change_record: cmd.record_id.clone().filter(|_| cmd.operation.is_change()),
        };
        let stored = self.commit(new, started).await?;
        let sender = Sender {
            name: sender_name.as_deref(),
            at,
        };
        let reply = match self.answer(&cmd, name, stored.event_id(), started).await {
            Some(answer) => answer,
            None => self.reply(&stored, &cmd, authorized, sender),
        };
        Ok(Receipt { stored, reply })
    }

    /// The receipt; a repeat is answered from what was stored (its text, sender and the
    /// decision shown then), whatever it carries itself.
    fn reply(
        &self,
        stored: &Stored,
        cmd: &HrCommand,
        authorized: bool,
        sender: Sender<'_>,
    ) -> Reply {
        let (style, event_id) = (&self.style, stored.event_id());
        match stored {
            Stored::New(_) => Reply::receipt(cmd, authorized, sender, event_id, style),
            Stored::Duplicate {
                text,
                sender_name,
                at,
                authorized,
                ..
            } => {
                let cmd = hr_command::parse(text.as_deref().unwrap_or_default());
                let sender = Sender {
                    name: sender_name.as_deref(),
                    at: *at,
                };
                Reply::receipt(&cmd, *authorized, sender, event_id, style)
            }
        }
    }

    /// The answer to a question, built inside what is left of the reply budget (at most
    /// [`ANSWER_MAX`]); when it cannot be, the receipt says the answer is in the console.
    /// `None`: not a question (or no database to answer from).
    async fn answer(
        &self,
        cmd: &HrCommand,
        webhook: &str,
        receipt: Uuid,
        started: Instant,
    ) -> Option<Reply> {
        let links = self.style.links.as_ref();
        let mut reply = match (cmd.question?, cmd.record_id.as_deref()) {
            (Question::Help, _) => answer::help(receipt),
            (_, None) => return None,
            (question, Some(record)) => {
                let answers = self.answers.as_ref()?;
                let left = (started + self.reply_budget).saturating_duration_since(Instant::now());
                let budget = left.saturating_sub(ANSWER_MARGIN).min(ANSWER_MAX);
                let changes = tokio::time::timeout(budget, answers.changes(webhook, record));
                match (question, changes.await) {
                    (Question::History, Ok(Ok(c))) => answer::history(record, &c, receipt, links),
                    (_, Ok(Ok(mut c))) => {
                        c.reverse();
                        answer::view(record, &answer::fold(&c), receipt, links)
                    }
                    _ => answer::unavailable(Some(record), receipt, links),
                }
            }
        };
        if !self.style.card {
            reply.attachments.clear();
        }
        Some(reply)
    }

    /// Commits within the reply budget. The committer answers by the deadline with the
    /// truth: stored, not stored, or (COMMIT sent, its outcome lost) unknown; it never leaves
    /// a request to be stored after it was told otherwise.
    async fn commit(&self, new: NewActivity, started: Instant) -> Result<Stored, IngestError> {
        let deadline = started + self.reply_budget;
        // Only a wedged committer outlasts this; its answer would then be unknown too.
        let wait = self.reply_budget + Duration::from_secs(25);
        match tokio::time::timeout(wait, self.store.store(new, deadline)).await {
            Err(_) | Ok(Err(StoreError::Unknown)) => Err(IngestError::OutcomeUnknown),
            Ok(Err(StoreError::Expired)) => Err(IngestError::Timeout),
            Ok(Err(StoreError::Rejected(reason))) => Err(IngestError::Rejected(reason)),
            Ok(Err(StoreError::Unavailable(reason))) => Err(IngestError::Unavailable(reason)),
            Ok(Ok(stored)) => Ok(stored),
        }
    }
}
