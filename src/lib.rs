//! teams-bridge: Microsoft Teams outgoing webhooks into a durable event stream.
//!
//! The folders are the pipeline, bottom layer first. A module may use the ones above it in
//! this list, never the ones below:
//!
//! - [`domain`]: pure logic, no I/O, unit-tested inline: signatures, the Activity fields,
//!   Teams markup, the HR grammar, the event contract (subjects, CloudEvents headers), the
//!   reply, trace context, secrets.
//! - [`config`]: every setting, written once; read from the environment and a TOML file.
//! - [`infra`]: what every layer runs on: the Postgres pool and migrations, the NATS
//!   connection and stream, logs and metrics, back-off and the step loop of every worker.
//! - [`handoff`]: the in-memory queue from the receiver's commits to the relay of the same
//!   process; owned by neither.
//! - [`ingest`]: receive → verify → group commit of activity + outbox row.
//! - [`relay`]: outbox → JetStream (hand-off and sweep), exactly one message per activity.
//! - [`audit`]: the audit log as people read it: entries, filters, pages, CSV and tables.
//! - [`privacy`]: personal data: HR editors, legal holds, retention and erasure.
//! - [`worker`]: durable JetStream consumers: the consumer step and the HR audit handler.
//! - [`http`]: the web surface: router, webhook endpoint, health, metrics, `/api`.
//! - [`app`]: wiring: builds and runs each process (`serve`, `relay`, `worker`).
//! - [`cli`]: the command line: clap types and dispatch.
//!
//! The load generator is a separate crate beside this one (`bench/`), not part of the service.

pub mod app;
pub mod audit;
pub mod cli;
pub mod config;
pub mod domain;
pub mod handoff;
pub mod http;
pub mod infra;
pub mod ingest;
pub mod privacy;
pub mod relay;
pub mod worker;

/// Selects `ring` as the process's TLS crypto provider (idempotent).
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
