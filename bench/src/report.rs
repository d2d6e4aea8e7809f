//! What a run prints: a table for people and one JSON line for scripts.

use std::{collections::BTreeMap, fmt::Write};

use serde::Serialize;

use super::{
    ledger::LedgerReport,
    load::{LoadResult, Mode, Sample},
    stats::{memory_kib, Percentiles},
    Scenario,
};

/// The JSON line of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Scenario name.
    pub scenario: String,
    /// `bridge` or `floor`.
    pub target: &'static str,
    /// `open` or `closed`.
    pub mode: &'static str,
    /// Open loop: offered requests per second.
    pub offered_rps: Option<f64>,
    /// Closed loop: outstanding requests.
    pub concurrency: Option<usize>,
    /// Pool size.
    pub connections: usize,
    /// Connections opened in all (equal to the pool size when all were reused).
    pub connections_opened: u64,
    /// Seconds of load asked for.
    pub duration_s: f64,
    /// Seconds from the first scheduled request to the last answer.
    pub elapsed_s: f64,
    /// Requests scheduled.
    pub scheduled: u64,
    /// Requests sent.
    pub sent: u64,
    /// Requests the client could not send in time (open loop).
    pub unsent: u64,
    /// Responses by status.
    pub status: BTreeMap<String, u64>,
    /// Requests without a response (connection errors, timeouts).
    pub errors: u64,
    /// The first error messages.
    pub error_samples: Vec<String>,
    /// 503s without Retry-After.
    pub missing_retry_after: u64,
    /// Responses per second (any status).
    pub achieved_rps: f64,
    /// 200s per second.
    pub ok_rps: f64,
    /// Latency of every response, from its scheduled time (open) or send (closed).
    pub latency_ms: Percentiles,
    /// The same for 200s only.
    pub latency_200_ms: Percentiles,
    /// From the actual send to the answer (client queueing excluded).
    pub service_ms: Percentiles,
    /// The slowest answer of each second of the run (by scheduled time), in milliseconds:
    /// shows whether slow answers are spread out or come in stalls, and when.
    pub max_by_second_ms: Vec<f64>,
    /// CPU use during the load, percent of one core, by process.
    pub cpu: BTreeMap<String, f64>,
    /// CPU microseconds per webhook answered 200, from the start of the load to the end of
    /// the ledger check (the drain included), by component, and `total` over the service,
    /// the worker, Postgres and NATS.
    pub cpu_us_per_webhook: BTreeMap<String, f64>,
    /// The service's peak resident set (VmHWM) after the run, KiB.
    pub service_peak_rss_kib: Option<u64>,
    /// The service's resident set after the run, KiB.
    pub service_rss_kib: Option<u64>,
    /// The ledger check.
    pub ledger: Option<LedgerReport>,
    /// 200s per second of the floor in the same invocation.
    pub floor_ok_rps: Option<f64>,
    /// This run's 200s per second over the floor's.
    pub bridge_to_floor: Option<f64>,
    /// Every check passed.
    pub pass: bool,
    /// Why not.
    pub failures: Vec<String>,
}

/// A finished run.
pub struct ScenarioOutcome {
    /// The JSON line's content.
    pub summary: RunSummary,
    /// The raw observations (the smoke test looks at the receipts).
    pub result: LoadResult,
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

impl ScenarioOutcome {
    /// Summarises a run and decides whether it passed.
    pub fn new(
        s: &Scenario,
        result: LoadResult,
        ledger: Option<LedgerReport>,
        cpu: BTreeMap<String, f64>,
    ) -> Self {
        let elapsed = result.elapsed.as_secs_f64().max(1e-9);
        let mut all: Vec<u32> = result.samples.iter().map(|x| x.latency_us).collect();
        let mut ok: Vec<u32> = result
            .samples
            .iter()
            .filter(|x| x.ok)
            .map(|x| x.latency_us)
            .collect();
        let mut service: Vec<u32> = result.samples.iter().map(|x| x.service_us).collect();
        let memory = s.service_pid.and_then(memory_kib);
        let (mode, offered, concurrency) = match s.load.mode {
            Mode::Open { rate } => ("open", Some(rate), None),
            Mode::Closed { concurrency } => ("closed", None, Some(concurrency)),
        };
        let latency = Percentiles::of(&mut all);
        let mut failures = Vec::new();
        if result.answered() == 0 {
            failures.push("no request was answered".to_owned());
        }
        if result.errors > 0 {
            failures.push(format!("{} requests got no response", result.errors));
        }
        if result.unsent > 0 {
            failures.push(format!(
                "{} requests could not be sent in time",
                result.unsent
            ));
        }
        if result.missing_retry_after > 0 {
            failures.push(format!(
                "{} 503s without Retry-After",
                result.missing_retry_after
            ));
        }
        let unexpected: u64 = result
            .statuses
            .iter()
            .filter(|(k, _)| **k != 200 && **k != 503)
            .map(|(_, v)| v)
            .sum();
        if unexpected > 0 {
            failures.push(format!("{unexpected} responses neither 200 nor 503"));
        }
        if let Some(limit) = s.max_latency_ms.filter(|l| latency.max > *l) {
            failures.push(format!("slowest reply {:.1} ms > {limit} ms", latency.max));
        }
        if let Some(l) = ledger.as_ref().filter(|l| !l.ok()) {
            failures.push(format!("ledger differs: {}", l.problems.join("; ")));
        }
        let summary = RunSummary {
            scenario: s.label.clone(),
            target: s.target,
            mode,
            offered_rps: offered,
            concurrency,
            connections: concurrency.unwrap_or(s.load.connections),
            connections_opened: result.connections_opened,
            duration_s: s.load.duration.as_secs_f64(),
            elapsed_s: round(elapsed, 3),
            scheduled: result.scheduled,
            sent: result.sent,
            unsent: result.unsent,
            status: result
                .statuses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            errors: result.errors,
            error_samples: result.error_samples.clone(),
            missing_retry_after: result.missing_retry_after,
            achieved_rps: round(result.answered() as f64 / elapsed, 1),
            ok_rps: round(result.status(200) as f64 / elapsed, 1),
            latency_ms: latency,
            latency_200_ms: Percentiles::of(&mut ok),
            service_ms: Percentiles::of(&mut service),
            max_by_second_ms: max_by_second(&result.samples),
            cpu,
            cpu_us_per_webhook: BTreeMap::new(),
            service_peak_rss_kib: memory.map(|m| m.0),
            service_rss_kib: memory.map(|m| m.1),
            pass: failures.is_empty(),
            failures,
            ledger,
            floor_ok_rps: None,
            bridge_to_floor: None,
        };
        Self { summary, result }
    }

    /// Records the floor's throughput from the same invocation and the ratio to it.
    pub fn set_floor(&mut self, floor: &RunSummary) {
        self.summary.floor_ok_rps = Some(floor.ok_rps);
        if floor.ok_rps > 0.0 {
            self.summary.bridge_to_floor = Some(round(self.summary.ok_rps / floor.ok_rps, 3));
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let s = &self.summary;
        let mut t = String::new();
        let load = match (s.offered_rps, s.concurrency) {
            (Some(r), _) => format!(
                "open loop, offered {r:.0} req/s over {} connections",
                s.connections
            ),
            (_, Some(c)) => format!("closed loop, concurrency {c}"),
            _ => String::new(),
        };
        let _ = writeln!(
            t,
            "== {} [{}] {load}, {:.0} s",
            s.scenario, s.target, s.duration_s
        );
        let statuses: Vec<String> = s.status.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(
            t,
            "  sent {} in {:.2} s (unsent {}, errors {}); responses {}",
            s.sent,
            s.elapsed_s,
            s.unsent,
            s.errors,
            statuses.join(", ")
        );
        let _ = writeln!(
            t,
            "  achieved {:.0} req/s, {:.0} answered 200/s; connections opened {} for a pool of {}",
            s.achieved_rps, s.ok_rps, s.connections_opened, s.connections
        );
        let _ = writeln!(
            t,
            "  {:<22} {:>8} {:>8} {:>8} {:>8} {:>9}",
            "latency (ms)", "p50", "p90", "p99", "p99.9", "max"
        );
        for (name, p) in [
            ("from schedule, all", s.latency_ms),
            ("from schedule, 200s", s.latency_200_ms),
            ("from send (service)", s.service_ms),
        ] {
            let _ = writeln!(
                t,
                "  {name:<22} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2}",
                p.p50, p.p90, p.p99, p.p999, p.max
            );
        }
        let mut worst: Vec<(usize, f64)> = s.max_by_second_ms.iter().copied().enumerate().collect();
        worst.sort_by(|a, b| b.1.total_cmp(&a.1));
        let worst: Vec<String> = worst
            .iter()
            .take(4)
            .map(|(sec, ms)| format!("{ms:.1} ms in second {sec}"))
            .collect();
        if !worst.is_empty() {
            let _ = writeln!(t, "  slowest seconds: {}", worst.join(", "));
        }
        if !s.cpu.is_empty() {
            let cpu: Vec<String> = s.cpu.iter().map(|(k, v)| format!("{k} {v:.0}")).collect();
            let _ = writeln!(t, "  cpu %: {}", cpu.join(", "));
        }
        if !s.cpu_us_per_webhook.is_empty() {
            let us = s
                .cpu_us_per_webhook
                .iter()
                .map(|(k, v)| format!("{k} {v:.0}"));
            let us: Vec<String> = us.collect();
            let _ = writeln!(t, "  cpu µs per webhook (load + drain): {}", us.join(", "));
        }
        if let Some(kib) = s.service_peak_rss_kib {
            let _ = writeln!(
                t,
                "  service peak RSS (VmHWM): {:.1} MiB",
                kib as f64 / 1024.0
            );
        }
        if let (Some(f), Some(r)) = (s.floor_ok_rps, s.bridge_to_floor) {
            let _ = writeln!(
                t,
                "  floor {f:.0} 200/s in the same run: bridge/floor = {r:.3}"
            );
        }
        if let Some(l) = &s.ledger {
            let _ = write!(t, "{l}");
        }
        for e in &s.error_samples {
            let _ = writeln!(t, "  error: {e}");
        }
        let _ = writeln!(
            t,
            "  {}",
            if s.pass {
                "PASS".to_owned()
            } else {
                format!("FAIL: {}", s.failures.join("; "))
            }
        );
        t
    }
}

/// The largest latency (from schedule) among the requests scheduled in each second.
fn max_by_second(samples: &[Sample]) -> Vec<f64> {
    let seconds = samples
        .iter()
        .map(|x| x.at_ms / 1000 + 1)
        .max()
        .unwrap_or(0) as usize;
    let mut max = vec![0u32; seconds];
    for x in samples {
        let m = &mut max[(x.at_ms / 1000) as usize];
        *m = (*m).max(x.latency_us);
    }
    max.into_iter()
        .map(|us| (us as f64 / 100.0).round() / 10.0)
        .collect()
}

/// The components whose CPU a webhook costs.
const COMPONENTS: [&str; 4] = ["service", "worker", "postgres", "nats-server"];

/// CPU microseconds per accepted webhook, by component and in total.
pub fn cpu_us_per_webhook(seconds: &BTreeMap<String, f64>, accepted: u64) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if accepted == 0 {
        return out;
    }
    let per = |s: f64| (s * 1e6 / accepted as f64 * 10.0).round() / 10.0;
    let mut total = 0.0;
    for c in COMPONENTS {
        if let Some(s) = seconds.get(c) {
            total += s;
            out.insert(c.to_string(), per(*s));
        }
    }
    out.insert("total".into(), per(total));
    // Postgres split by whom it worked for: parts of `postgres`, so not in the total again.
    for (share, s) in seconds.iter().filter(|(k, _)| k.starts_with("pg_")) {
        out.insert(share.clone(), per(*s));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_per_webhook_divides_each_component_and_sums_ours() {
        let seconds: BTreeMap<String, f64> = [
            ("service", 2.0),
            ("postgres", 3.0),
            ("pg_for_service", 2.5),
            ("pg_server", 0.5),
            ("bench", 9.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let us = cpu_us_per_webhook(&seconds, 10_000);
        assert_eq!(us["service"], 200.0);
        assert_eq!(us["postgres"], 300.0);
        assert_eq!(
            us["total"], 500.0,
            "the bench's own CPU is not the service's cost"
        );
        assert!(!us.contains_key("bench"));
        assert_eq!(
            (us["pg_for_service"], us["pg_server"]),
            (250.0, 50.0),
            "Postgres' shares are reported beside it, not added to the total"
        );
        assert!(cpu_us_per_webhook(&seconds, 0).is_empty());
    }

    #[test]
    fn the_slowest_answer_of_each_second_is_kept() {
        let at = |at_ms, latency_us| Sample {
            at_ms,
            latency_us,
            service_us: latency_us,
            ok: true,
        };
        let samples = [
            at(10, 900),
            at(999, 2_500),
            at(1_000, 300),
            at(3_400, 41_260),
        ];
        assert_eq!(max_by_second(&samples), vec![2.5, 0.3, 0.0, 41.3]);
        assert!(max_by_second(&[]).is_empty());
    }
}
