//! What a worker plugs into the shared consumer: a handler over decoded events, and the
//! two kinds of failure the consumer's policy tells apart.

use std::future::Future;

use crate::domain::event::Event;

/// Why a handler could not process an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The event itself is unusable; retrying will not help. Dead-lettered after the bounded
    /// number of deliveries.
    #[error("permanent: {0}")]
    Permanent(String),
    /// Something around the event failed (database down…); retried, never dead-lettered.
    #[error("transient: {0}")]
    Transient(String),
}

/// Processes a batch of events; returns one result per event, in order. Must be idempotent:
/// JetStream delivers at least once.
pub trait Handler: Send + Sync {
    /// Handles `events`; `Ok` means committed and safe to ack.
    fn handle(&self, events: &[Event])
        -> impl Future<Output = Vec<Result<(), HandleError>>> + Send;
}
