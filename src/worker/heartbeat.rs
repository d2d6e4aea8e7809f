//! When a worker last completed a step on a live NATS connection; its `/healthz` turns 503
//! when that is too long ago (NATS or the consumer unreachable, a step stuck), not merely when
//! the process is gone.

use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

/// The time of the last completed step, shared with the health endpoint.
#[derive(Debug, Clone)]
pub struct Heartbeat(Arc<AtomicI64>);

impl Heartbeat {
    pub(crate) fn new() -> Self {
        let h = Self(Arc::new(AtomicI64::new(0)));
        h.beat();
        h
    }

    pub(crate) fn beat(&self) {
        self.0
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// Time since the last completed step (or since the worker connected).
    pub fn age(&self) -> Duration {
        let ms = chrono::Utc::now().timestamp_millis() - self.0.load(Ordering::Relaxed);
        Duration::from_millis(ms.max(0) as u64)
    }
}
