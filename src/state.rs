//! Shared application state: one cloneable struct of cheap handles.

use std::{collections::HashMap, sync::Arc};

use async_nats::jetstream;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio::sync::Semaphore;

use crate::{config::Config, signature::KeyRing, store::Committer};

/// A webhook as the handler needs it.
#[derive(Debug)]
pub struct WebhookEntry {
    /// Its name, shared into every stored activity without copying.
    pub name: Arc<str>,
    /// Its keys.
    pub keys: KeyRing,
}

/// Everything a request handler may touch.
#[derive(Clone)]
pub struct AppState {
    /// Settings.
    pub config: Arc<Config>,
    /// Webhooks by name.
    pub webhooks: Arc<HashMap<String, WebhookEntry>>,
    /// Postgres.
    pub pool: PgPool,
    /// The group committer.
    pub committer: Committer,
    /// NATS, for readiness.
    pub nats: async_nats::Client,
    /// JetStream, for readiness.
    pub js: jetstream::Context,
    /// Webhook requests allowed in flight at once.
    pub in_flight: Arc<Semaphore>,
    /// Prometheus exposition.
    pub metrics: PrometheusHandle,
}

impl AppState {
    /// Indexes the configured webhooks by name.
    pub fn webhook_map(config: &Config) -> HashMap<String, WebhookEntry> {
        config
            .webhooks
            .iter()
            .map(|w| {
                (
                    w.name.clone(),
                    WebhookEntry {
                        name: Arc::from(w.name.as_str()),
                        keys: w.keys.clone(),
                    },
                )
            })
            .collect()
    }
}
