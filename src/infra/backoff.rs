//! Exponential back-off with jitter, for loops that wait out an unavailable dependency.

use std::time::Duration;

/// Exponential back-off with jitter, capped.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `base`, doubles per failure up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }
    /// The next delay (with up to 20% jitter so replicas do not retry in lockstep).
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16));
        self.attempt += 1;
        let d = exp.min(self.max);
        d + d.mul_f64(rand::random::<f64>() * 0.2)
    }
    /// Back to `base` after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(120));
        let second = b.next_delay();
        assert!(second >= Duration::from_millis(200) && second <= Duration::from_millis(240));
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_millis(1200));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(120));
    }
}
