//! Rows JetStream acknowledged and whose outbox rows are not yet deleted. The hand-off's
//! rounds are small at an ordinary load (a few events every few milliseconds); deleting their
//! rows in one statement per round cost Postgres a statement and a transaction each. Instead
//! they wait here, a bounded time and count, and go in one delete. Nothing is lost if the
//! process dies first: the rows are still in the outbox, a sweep publishes them again and
//! JetStream de-duplicates them (the same as for a delete lost in a Postgres crash, which the
//! relay's asynchronous commits already accept). A sweep deletes what waits here before it
//! claims rows, so it never publishes a row twice itself. Measured at 1,400 webhooks/s: the
//! whole CPU per webhook 918 -> 856 µs (Postgres 443 -> 401).

use std::time::{Duration, Instant};

use uuid::Uuid;

/// How long an acknowledged row may wait for its delete.
pub(crate) const DELETE_LINGER: Duration = Duration::from_millis(50);

/// How many may wait before they are deleted regardless.
pub(crate) const DELETE_AT: usize = 2048;

/// Acknowledged event ids waiting for one delete.
#[derive(Debug, Default)]
pub(crate) struct Acked {
    ids: Vec<Uuid>,
    since: Option<Instant>,
}

impl Acked {
    /// Adds ids acknowledged at `now`.
    pub(crate) fn push(&mut self, ids: impl IntoIterator<Item = Uuid>, now: Instant) {
        let before = self.ids.len();
        self.ids.extend(ids);
        if self.ids.len() > before {
            self.since.get_or_insert(now);
        }
    }

    /// When the waiting ids must be deleted (`None`: none wait).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.since.map(|t| t + DELETE_LINGER)
    }

    /// Whether they are due at `now`: waited long enough, or too many.
    pub(crate) fn due(&self, now: Instant) -> bool {
        self.ids.len() >= DELETE_AT || self.deadline().is_some_and(|d| now >= d)
    }

    /// Takes every waiting id.
    pub(crate) fn take(&mut self) -> Vec<Uuid> {
        self.since = None;
        std::mem::take(&mut self.ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_wait_until_the_linger_has_passed_or_enough_have_gathered() {
        let t0 = Instant::now();
        let mut acked = Acked::default();
        assert!(!acked.due(t0) && acked.deadline().is_none());
        acked.push([], t0);
        assert!(acked.deadline().is_none(), "nothing pushed, nothing waits");
        acked.push([Uuid::now_v7()], t0);
        acked.push([Uuid::now_v7()], t0 + DELETE_LINGER / 2);
        assert_eq!(
            acked.deadline(),
            Some(t0 + DELETE_LINGER),
            "the oldest sets it"
        );
        assert!(!acked.due(t0 + DELETE_LINGER / 2));
        assert!(acked.due(t0 + DELETE_LINGER));
        assert_eq!(acked.take().len(), 2);
        assert!(acked.deadline().is_none() && !acked.due(t0 + DELETE_LINGER * 9));

        acked.push((0..DELETE_AT).map(|_| Uuid::now_v7()), t0);
        assert!(acked.due(t0), "a full batch goes at once");
    }
}
