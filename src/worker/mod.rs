//! Durable JetStream consumers. [`consumer`] is the step every worker shares (fetch, decode,
//! handle, ack / retry / dead-letter) run in [`crate::infra::run_loop`]; a worker is that
//! step with a [`Handler`]. The first handler is [`hr_audit`].

pub mod consumer;
mod dead_letter;
pub mod handler;
mod heartbeat;
pub mod hr_audit;

pub use consumer::{ConsumerSpec, Delivered, Worker};
pub use handler::{HandleError, Handler};
pub use heartbeat::Heartbeat;
