//! The one loop every long-running task runs in: the relay, the consumer, and the retry that
//! waits for the stream. A task is a [`Steps`]: one step at a time, each saying whether it
//! did work ([`Step::Processed`]: go again at once), found none ([`Step::Idle`]: wait for
//! more), or finished ([`Step::Done`]). A failed step is logged and retried after a back-off.
//! Shutdown is checked between steps, so a step in progress always completes; every wait is
//! cut short by it.

use std::{fmt::Display, future::Future};

use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// This much work was done; there may be more at once.
    Processed(usize),
    /// Nothing to do: wait for [`Steps::idle`] before the next step.
    Idle,
    /// The task is complete; the loop returns.
    Done,
}

/// A task the loop drives.
pub trait Steps: Send {
    /// Why a step failed; retried after a back-off.
    type Error: Display + Send;

    /// Names the task in logs.
    fn name(&self) -> &'static str;

    /// One step. Tests call it directly.
    fn step(&mut self) -> impl Future<Output = Result<Step, Self::Error>> + Send;

    /// Waits for more work after an idle step; by default, not at all (the step itself waited).
    fn idle(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Logs a failed step; by default a warning with the whole cause chain.
    fn log_failure(&self, e: &Self::Error) {
        tracing::warn!(task = self.name(), error = %format_args!("{e:#}"), "step failed; backing off");
    }

    /// Called after a failed step has waited out its back-off.
    fn after_error(&mut self) {}
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// A step returned [`Step::Done`].
    Done,
    /// Shutdown was requested.
    Stopped,
}

/// Runs `task` until it is done or `shutdown` is cancelled.
pub async fn run_loop<S: Steps>(
    task: &mut S,
    shutdown: &CancellationToken,
    mut backoff: Backoff,
) -> Ended {
    while !shutdown.is_cancelled() {
        match task.step().await {
            Ok(Step::Done) => return Ended::Done,
            Ok(Step::Processed(_)) => backoff.reset(),
            Ok(Step::Idle) => {
                backoff.reset();
                tokio::select! {
                    _ = task.idle() => {}
                    _ = shutdown.cancelled() => break,
                }
            }
            Err(e) => {
                task.log_failure(&e);
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => task.after_error(),
                    _ = shutdown.cancelled() => break,
                }
            }
        }
    }
    Ended::Stopped
}

#[cfg(test)]
mod tests {
    use std::{collections::VecDeque, time::Duration};

    use super::*;

    /// Plays back a script of step results and counts the waits.
    struct Script {
        steps: VecDeque<Result<Step, &'static str>>,
        idles: usize,
        errors: usize,
    }

    impl Steps for Script {
        type Error = &'static str;
        fn name(&self) -> &'static str {
            "script"
        }
        async fn step(&mut self) -> Result<Step, &'static str> {
            self.steps.pop_front().unwrap_or(Ok(Step::Done))
        }
        async fn idle(&mut self) {
            self.idles += 1;
        }
        fn after_error(&mut self) {
            self.errors += 1;
        }
    }

    fn script(steps: Vec<Result<Step, &'static str>>) -> Script {
        Script {
            steps: steps.into(),
            idles: 0,
            errors: 0,
        }
    }

    fn quick() -> Backoff {
        Backoff::new(Duration::from_millis(1), Duration::from_millis(2))
    }

    #[tokio::test]
    async fn idle_steps_wait_failed_steps_back_off_and_done_ends_the_loop() {
        let mut task = script(vec![
            Ok(Step::Processed(3)),
            Ok(Step::Idle),
            Err("down"),
            Ok(Step::Idle),
            Ok(Step::Done),
            Ok(Step::Processed(1)),
        ]);
        let ended = run_loop(&mut task, &CancellationToken::new(), quick()).await;
        assert_eq!(ended, Ended::Done);
        assert_eq!((task.idles, task.errors), (2, 1));
        assert_eq!(task.steps.len(), 1, "nothing runs after Done");
    }

    #[tokio::test]
    async fn a_cancelled_loop_runs_no_step() {
        let mut task = script(vec![Ok(Step::Processed(1))]);
        let stop = CancellationToken::new();
        stop.cancel();
        assert_eq!(run_loop(&mut task, &stop, quick()).await, Ended::Stopped);
        assert_eq!(task.steps.len(), 1);
    }
}
