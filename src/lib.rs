//! teams-bridge: Microsoft Teams outgoing webhooks into a durable event stream.
//!
//! Teams → `POST /webhooks/{name}` → signature check → one Postgres transaction (activity +
//! outbox) → reply → outbox relay → NATS JetStream → durable consumers (the HR audit worker).
//!
//! Pure logic (no I/O, unit-tested inline):
//! - [`signature`]: HMAC verification and signing;
//! - [`activity`]: lenient parsing of the indexed activity fields;
//! - [`command`]: the HR command grammar;
//! - [`event`]: the JetStream event contract (subject, CloudEvents headers);
//! - [`reply`], [`trace`], [`config`].
//!
//! Around it: [`db`], [`store`] (group commit), [`outbox`] (relay), [`stream`] (NATS),
//! [`receiver`] and [`http`] (the web surface), [`consumer`] (reusable JetStream worker loop),
//! [`audit`] (the HR audit worker and queries), [`api`], [`app`] (wiring), [`cli`].

pub mod activity;
pub mod api;
pub mod app;
pub mod audit;
pub mod audit_query;
pub mod backoff;
pub mod bench;
pub mod cli;
pub mod command;
pub mod config;
pub mod consumer;
pub mod db;
pub mod error;
pub mod event;
pub mod http;
pub mod outbox;
pub mod receiver;
pub mod reply;
pub mod signature;
pub mod simulate;
pub mod state;
pub mod store;
pub mod stream;
pub mod telemetry;
pub mod trace;

/// Selects `ring` as the process's TLS crypto provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
