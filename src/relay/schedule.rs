//! When the relay sweeps, publishes the hand-off, or waits: a pure type, driven by the time
//! the caller passes in, so its decisions are tested without a clock.

use std::time::{Duration, Instant};

/// How often the relay sweeps the outbox from its oldest end while the hand-off keeps it
/// busy. Scanning from the oldest end on every commit would walk the dead index entries a
/// busy queue table leaves behind faster than vacuum removes them.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How often the relay vacuums (when due) and refreshes its backlog gauges.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// What the relay does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Claim from the outbox; `twice`: two claims side by side (a backlog is being drained).
    Sweep { twice: bool },
    /// Publish what the hand-off holds.
    Publish,
    /// Nothing is due: wait for a wake-up or the next sweep.
    Wait,
}

/// The relay's scheduling state.
#[derive(Debug)]
pub(crate) struct Schedule {
    alone: bool,
    batch_size: usize,
    last_sweep: Option<Instant>,
    last_upkeep: Instant,
    /// Sweep at the next step whatever the time: at start, after a failure, with a backlog.
    sweep_now: bool,
}

impl Schedule {
    /// A relay that starts by draining whatever the outbox holds. `alone`: no receiver in
    /// this process, so every wake-up (a `NOTIFY`) means rows to sweep.
    pub(crate) fn new(now: Instant, alone: bool, batch_size: usize) -> Self {
        Self {
            alone,
            batch_size: batch_size.max(1),
            last_sweep: None,
            last_upkeep: now,
            sweep_now: true,
        }
    }

    /// The next action. The sweep comes first when due, so a steady hand-off cannot starve it.
    pub(crate) fn next(&mut self, now: Instant, handoff_waiting: bool) -> Action {
        let due = self
            .last_sweep
            .is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY);
        if self.sweep_now || due {
            let twice = std::mem::take(&mut self.sweep_now);
            self.last_sweep = Some(now);
            Action::Sweep { twice }
        } else if handoff_waiting {
            Action::Publish
        } else {
            Action::Wait
        }
    }

    /// A sweep published `acked` rows: a full batch means a backlog (after an outage), so
    /// keep sweeping.
    pub(crate) fn swept(&mut self, acked: usize) {
        self.sweep_now = acked >= self.batch_size;
    }

    /// A step failed: what it held is back in the outbox, so sweep first.
    pub(crate) fn failed(&mut self) {
        self.sweep_now = true;
    }

    /// The relay was woken: a relay alone was told of rows another process committed.
    pub(crate) fn woken(&mut self) {
        self.sweep_now |= self.alone;
    }

    /// Whether the vacuum check and the backlog gauges are due (every 5 s).
    pub(crate) fn upkeep_due(&mut self, now: Instant) -> bool {
        let due = now.duration_since(self.last_upkeep) >= UPKEEP_EVERY;
        if due {
            self.last_upkeep = now;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_new_relay_drains_twice_over_then_publishes_the_handoff_between_sweeps() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, false, 512);
        assert_eq!(s.next(t0, true), Action::Sweep { twice: true });
        s.swept(10);
        assert_eq!(s.next(t0 + MS, true), Action::Publish);
        assert_eq!(s.next(t0 + 2 * MS, false), Action::Wait);
        assert_eq!(
            s.next(t0 + SWEEP_EVERY, true),
            Action::Sweep { twice: false }
        );
    }

    #[test]
    fn a_full_sweep_means_a_backlog_and_sweeps_again_at_once() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, false, 512);
        s.next(t0, false);
        s.swept(512);
        assert_eq!(s.next(t0 + MS, true), Action::Sweep { twice: true });
        s.swept(100);
        assert_eq!(s.next(t0 + 2 * MS, false), Action::Wait);
    }

    #[test]
    fn a_steady_handoff_cannot_starve_the_sweep() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, false, 512);
        s.next(t0, true);
        s.swept(0);
        let mut sweeps = 0;
        for ms in 1..=2500u32 {
            if let Action::Sweep { .. } = s.next(t0 + MS * ms, true) {
                sweeps += 1;
                s.swept(0);
            }
        }
        assert_eq!(sweeps, 2, "one sweep a second under a constant hand-off");
    }

    #[test]
    fn a_failure_sweeps_next_and_only_a_lone_relay_sweeps_on_wake_up() {
        let t0 = Instant::now();
        let (mut alone, mut inside) = (Schedule::new(t0, true, 8), Schedule::new(t0, false, 8));
        for s in [&mut alone, &mut inside] {
            s.next(t0, false);
            s.swept(0);
            s.woken();
        }
        assert_eq!(alone.next(t0 + MS, false), Action::Sweep { twice: true });
        assert_eq!(inside.next(t0 + MS, false), Action::Wait);
        inside.failed();
        assert_eq!(
            inside.next(t0 + 2 * MS, true),
            Action::Sweep { twice: true }
        );
    }

    #[test]
    fn upkeep_comes_every_five_seconds() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, false, 8);
        assert!(!s.upkeep_due(t0 + Duration::from_secs(4)));
        assert!(s.upkeep_due(t0 + Duration::from_secs(5)));
        assert!(!s.upkeep_due(t0 + Duration::from_secs(9)));
        assert!(s.upkeep_due(t0 + Duration::from_secs(10)));
    }
}
