//! The hand-off: events committed by this process's receiver, waiting for its relay, in
//! commit order. It belongs to neither side: the committer pushes, the relay takes, and a
//! process without a receiver (`teams-bridge relay`) only uses it to be woken.
//!
//! Bounded by bytes, not by count: a body may be up to `BODY_LIMIT_BYTES`. What does not fit
//! is dropped here and found in the outbox by the relay's sweep, so dropping loses nothing.

use std::collections::VecDeque;

use tokio::sync::Notify;
use uuid::Uuid;

use crate::domain::event::Outgoing;

/// Most bytes of bodies held for the in-process relay (a body may be up to
/// `BODY_LIMIT_BYTES`, so a count alone would not bound memory); beyond it events are dropped
/// and the sweep finds their rows.
const MAX_HANDOFF_BYTES: usize = 32 * 1024 * 1024;

/// Events committed in this process and not yet taken by its relay, in commit order.
#[derive(Debug, Default)]
pub struct Handoff {
    held: std::sync::Mutex<Held>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct Held {
    events: VecDeque<Outgoing>,
    bytes: usize,
}

impl Handoff {
    /// Hands over newly committed events and wakes the relay.
    pub fn push(&self, events: impl IntoIterator<Item = Outgoing>) {
        {
            let mut held = self.held.lock().expect("hand-off lock is never poisoned");
            for e in events {
                if held.bytes + e.raw.len() > MAX_HANDOFF_BYTES {
                    break;
                }
                held.bytes += e.raw.len();
                held.events.push_back(e);
            }
        }
        self.notify.notify_one();
    }

    /// Takes up to `max` events, oldest first.
    pub fn take(&self, max: usize) -> Vec<Outgoing> {
        let mut held = self.held.lock().expect("hand-off lock is never poisoned");
        let n = held.events.len().min(max);
        let taken: Vec<Outgoing> = held.events.drain(..n).collect();
        held.bytes -= taken.iter().map(|e| e.raw.len()).sum::<usize>();
        taken
    }

    /// Whether events are waiting.
    pub fn has_any(&self) -> bool {
        !self
            .held
            .lock()
            .expect("hand-off lock is never poisoned")
            .events
            .is_empty()
    }

    /// The smallest event id waiting (ids are UUIDv7, so roughly the oldest).
    pub(crate) fn oldest_id(&self) -> Option<Uuid> {
        self.held
            .lock()
            .expect("hand-off lock is never poisoned")
            .events
            .iter()
            .map(|e| e.event_id)
            .min()
    }

    /// Wakes the relay without events (a `NOTIFY` from another process): it sweeps.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Waits for a push or a wake-up.
    pub async fn notified(&self) {
        self.notify.notified().await
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn event(size: usize) -> Outgoing {
        Outgoing {
            event_id: Uuid::now_v7(),
            webhook: "contoso".into(),
            activity_type: Some("message".into()),
            conversation_id: None,
            time: Utc::now(),
            traceparent: None,
            raw: vec![b' '; size].into(),
        }
    }

    #[test]
    fn the_handoff_holds_a_bounded_number_of_bytes_and_gives_them_back_in_order() {
        let h = Handoff::default();
        let big = MAX_HANDOFF_BYTES / 4;
        let events: Vec<Outgoing> = (0..6).map(|_| event(big)).collect();
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        h.push(events);
        // Four fit; the rest is dropped (the sweep finds their rows).
        let taken = h.take(3);
        assert_eq!(
            taken.iter().map(|e| e.event_id).collect::<Vec<_>>(),
            ids[..3]
        );
        assert_eq!(h.oldest_id(), Some(ids[3]));
        // Taking gives the room back.
        h.push([event(big), event(big), event(big)]);
        assert_eq!(h.take(10).len(), 4);
        assert!(!h.has_any());
        h.push([event(big)]);
        assert_eq!(h.take(10).len(), 1);
    }
}
