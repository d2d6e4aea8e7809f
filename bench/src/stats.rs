//! Latency percentiles (exact: every sample is kept and sorted) and per-process CPU use.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::pg_share;

/// Percentiles of one latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub n: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// Percentiles of `micros` (nearest-rank; sorts in place).
    pub fn of(micros: &mut [u32]) -> Self {
        if micros.is_empty() {
            return Self::default();
        }
        micros.sort_unstable();
        let n = micros.len();
        let rank = |q: f64| {
            let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            micros[i] as f64 / 1000.0
        };
        Self {
            n: n as u64,
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            p999: rank(0.999),
            max: micros[n - 1] as f64 / 1000.0,
        }
    }
}

/// CPU time (user + system, in clock ticks) of the processes the bench watches.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    ticks: BTreeMap<String, u64>,
    total_busy: u64,
    total_all: u64,
}

/// Processes watched by name (`comm`): the services a webhook's journey goes through.
const WATCHED_COMMS: [&str; 2] = ["postgres", "nats-server"];

impl CpuSnapshot {
    /// Reads `/proc` now: this process, each `(label, pid)`, every `nats-server` process,
    /// the `postgres` processes (with `pg_database`: only the server's own processes and the
    /// backends connected to that database), and the machine's busy and total ticks.
    /// Missing processes (or a system without `/proc`) read as zero.
    /// Postgres' share is also split by whom each process works for ([`pg_share`]); the
    /// backends serving the bench itself are left out of `postgres`.
    pub fn take(pids: &[(String, u32)], pg_database: Option<&str>) -> Self {
        let mut ticks = BTreeMap::new();
        ticks.insert("bench".to_owned(), proc_ticks("self").unwrap_or(0));
        for (label, pid) in pids {
            ticks.insert(label.clone(), proc_ticks(&pid.to_string()).unwrap_or(0));
        }
        // The bench's own queries (the ledger's counts) are not a webhook's cost: their
        // backends are reported as `pg_for_bench` and left out of `postgres`.
        let mut watched = pids.to_vec();
        watched.push(("bench".to_owned(), std::process::id()));
        let clients = pg_share::client_ports(&watched);
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let name = entry.file_name();
                let Some(pid) = name
                    .to_str()
                    .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                else {
                    continue;
                };
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                let comm = comm.trim();
                let Some(watched) = WATCHED_COMMS.iter().find(|c| comm == **c) else {
                    continue;
                };
                let used = proc_ticks(pid).unwrap_or(0);
                if comm == "postgres" {
                    let title =
                        std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let words: Vec<&str> =
                        title.trim_end_matches('\0').split_whitespace().collect();
                    if !is_ours(&words, pg_database) {
                        continue;
                    }
                    let share = pg_share::label(&pg_share::role(&words), &clients);
                    let the_bench_s = share == "pg_for_bench";
                    *ticks.entry(share).or_default() += used;
                    if the_bench_s {
                        continue;
                    }
                }
                *ticks.entry((*watched).to_owned()).or_default() += used;
            }
        }
        let (total_busy, total_all) = machine_ticks().unwrap_or((0, 0));
        Self {
            ticks,
            total_busy,
            total_all,
        }
    }

    /// CPU seconds each label used between `self` and `later`.
    pub fn seconds_until(&self, later: &CpuSnapshot) -> BTreeMap<String, f64> {
        let hz = 100.0; // USER_HZ
        let used = |(label, after): (&String, &u64)| {
            let before = self.ticks.get(label).copied().unwrap_or(0);
            (label.clone(), after.saturating_sub(before) as f64 / hz)
        };
        later.ticks.iter().map(used).collect()
    }

    /// CPU use between `self` and `later`, in percent of one core, by label, plus
    /// `machine_busy_pct` (percent of all cores).
    pub fn usage_since(&self, later: &CpuSnapshot, seconds: f64) -> BTreeMap<String, f64> {
        let hz = 100.0; // USER_HZ is 100 on every Linux that matters.
        let mut out = BTreeMap::new();
        if seconds <= 0.0 {
            return out;
        }
        for (label, after) in &later.ticks {
            let before = self.ticks.get(label).copied().unwrap_or(0);
            let pct = after.saturating_sub(before) as f64 / hz / seconds * 100.0;
            out.insert(format!("{label}_cpu_pct"), (pct * 10.0).round() / 10.0);
        }
        let all = later.total_all.saturating_sub(self.total_all);
        if all > 0 {
            let busy = later.total_busy.saturating_sub(self.total_busy) as f64 / all as f64;
            out.insert("machine_busy_pct".into(), (busy * 1000.0).round() / 10.0);
            // Everything else that ran meanwhile (other users of the machine, the kernel's
            // own threads), in percent of one core.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            let watched: f64 = out
                .iter()
                // Postgres' shares are parts of `postgres_cpu_pct`, not more of it.
                .filter(|(k, _)| k.ends_with("_cpu_pct") && !k.starts_with("pg_"))
                .map(|(_, v)| *v)
                .sum();
            let others = (busy * cores * 100.0 - watched).max(0.0);
            out.insert("others_cpu_pct".into(), (others * 10.0).round() / 10.0);
        }
        out
    }
}

/// A Postgres backend's title is `postgres: 15/main: user database host(port) state`;
/// the server's own processes (`… checkpointer`, `… walwriter`) name no database.
fn is_ours(words: &[&str], database: Option<&str>) -> bool {
    let Some(database) = database else {
        return true;
    };
    match words.len() {
        0..=3 => true,
        _ if words[2].starts_with("background") || words[2].starts_with("autovacuum") => true,
        _ if words[2] == "logical" => true,
        _ => words[3] == database,
    }
}

/// utime + stime of one process (fields 14 and 15 of `/proc/<pid>/stat`).
fn proc_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// (busy, total) ticks of the whole machine from the `cpu` line of `/proc/stat`.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

/// `VmHWM` (peak resident set) and `VmRSS` of a process, in KiB.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut v: Vec<u32> = (1..=1000).map(|x| x * 1000).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!(
            (p.n, p.p50, p.p90, p.p99, p.p999, p.max),
            (1000, 500.0, 900.0, 990.0, 999.0, 1000.0)
        );
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
        let mut one = [2500];
        assert_eq!(Percentiles::of(&mut one).p999, 2.5);
    }

    #[test]
    fn this_process_is_measurable() {
        let before = CpuSnapshot::take(&[], None);
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let after = CpuSnapshot::take(&[], None);
        assert!(after
            .usage_since(&before, 1.0)
            .contains_key("bench_cpu_pct"));
        assert!(memory_kib(std::process::id()).is_some_and(|(hwm, rss)| hwm >= rss && rss > 0));
    }
}
