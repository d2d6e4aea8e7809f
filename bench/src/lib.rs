//! `teams-bridge-bench`: load, latency and ledger checks against a running teams-bridge.
//! A crate beside the service, not inside it: the service binary does not carry it.
//!
//! - [`payload`]: realistic, unique, signed Teams activities;
//! - [`client`]: a minimal keep-alive HTTP/1.1 client (a fixed pool of connections);
//! - [`load`]: open loop at a fixed rate (latency from each request's scheduled time, so no
//!   coordinated omission) and closed loop at a fixed concurrency;
//! - [`ledger`]: after a run, one `activities` row, one stream message and one `audit_log`
//!   row per 200, and nothing else;
//! - [`floor`]: a do-nothing receiver in the bench process, the yardstick for throughput;
//! - [`stats`]: percentiles and CPU use of the processes involved;
//! - [`report`]: the human table and the JSON line;
//! - [`skeleton`]: the least pipeline on the same parts, a lower bound for the cost per webhook.
//!
//! [`run_scenario`] is the library entry point (the CLI and the smoke test call it).

pub mod client;
pub mod floor;
pub mod ledger;
pub mod load;
pub mod payload;
mod pg_share;
pub mod report;
pub mod skeleton;
pub mod stats;

use anyhow::Context as _;
use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

pub use ledger::{Baseline, DrainLimits, LedgerReport, LedgerScope};
pub use load::{Accepted, LoadResult, LoadSpec, Mode};
pub use report::{RunSummary, ScenarioOutcome};

/// Options of `teams-bridge-bench`. Database and NATS settings (for the ledger check) are
/// the service's own: `DATABASE_URL`, `NATS_URL`, `NATS_STREAM`, `NATS_SUBJECT_PREFIX`,
/// `HR_AUDIT_CONSUMER`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The service's base URL (plain HTTP on this machine).
    #[arg(long, default_value = "http://127.0.0.1:3978")]
    pub url: String,
    /// The webhook to post to; give each run its own so the ledger counts are exact.
    #[arg(long, default_value = "bench")]
    pub webhook: String,
    /// The webhook's security token (base64, as Teams shows it).
    #[arg(long, env = "TEAMS_BRIDGE_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Open loop: offered requests per second.
    #[arg(
        long,
        conflicts_with = "concurrency",
        required_unless_present = "concurrency"
    )]
    pub rate: Option<f64>,
    /// Closed loop: requests outstanding at all times (one connection each).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Open loop: keep-alive connections in the pool.
    #[arg(long, default_value_t = 256)]
    pub connections: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds before an unanswered request counts as an error.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// `bridge` (the service at --url), `floor` (the built-in do-nothing server) or `both`
    /// (floor first, then bridge, and their throughput ratio).
    #[arg(long, value_enum, default_value_t = Target::Bridge)]
    pub target: Target,
    /// Skip the ledger check.
    #[arg(long)]
    pub no_ledger: bool,
    /// Seconds to wait for the relay, and then again for the worker, to drain.
    #[arg(long, default_value_t = 120.0)]
    pub drain_timeout: f64,
    /// Fail the run when any reply took longer than this (milliseconds, from schedule).
    #[arg(long)]
    pub max_latency_ms: Option<f64>,
    /// The service's pid: its peak RSS (VmHWM) and CPU use are reported.
    #[arg(long)]
    pub service_pid: Option<u32>,
    /// The worker's pid: its CPU use is reported.
    #[arg(long)]
    pub worker_pid: Option<u32>,
    /// A name for the scenario in the output.
    #[arg(long, default_value = "bench")]
    pub label: String,
}

/// What a run targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The service.
    Bridge,
    /// The built-in do-nothing server.
    Floor,
    /// Floor, then bridge.
    Both,
}

/// One scenario against one address.
pub struct Scenario {
    /// A name for the output.
    pub label: String,
    /// The load.
    pub load: LoadSpec,
    /// The webhook's security token.
    pub secret: String,
    /// Run id: activity ids are `{run_id}-{n}`.
    pub run_id: String,
    /// Where to check the ledger (None: no check).
    pub ledger: Option<(LedgerScope, DrainLimits)>,
    /// Processes whose CPU use to report, and the service pid for VmHWM.
    pub watch: Vec<(String, u32)>,
    /// The service's pid.
    pub service_pid: Option<u32>,
    /// Count only this database's Postgres backends (and the server's own processes).
    pub pg_database: Option<String>,
    /// Fail when a reply took longer (ms).
    pub max_latency_ms: Option<f64>,
    /// "bridge" or "floor".
    pub target: &'static str,
}

/// Runs one scenario: baseline, load, ledger check. Returns the summary (with `pass`).
pub async fn run_scenario(s: &Scenario) -> anyhow::Result<ScenarioOutcome> {
    let generator = Arc::new(payload::Generator::new(&s.run_id, &s.secret)?);
    let baseline = match &s.ledger {
        Some((scope, _)) => Some(scope.baseline().await?),
        None => None,
    };
    let cpu_before = stats::CpuSnapshot::take(&s.watch, s.pg_database.as_deref());
    let result = load::run(&s.load, generator.clone()).await?;
    let cpu_after = stats::CpuSnapshot::take(&s.watch, s.pg_database.as_deref());
    let cpu = cpu_before.usage_since(&cpu_after, result.elapsed.as_secs_f64());
    let ledger = match (&s.ledger, baseline) {
        (Some((scope, limits)), Some(b)) => Some(
            scope
                .check(&b, &result.accepted, &generator.id_prefix(), *limits)
                .await?,
        ),
        _ => None,
    };
    // The cost per webhook counts the work after the load too (the relay and the worker
    // draining what it left), up to the end of the ledger check.
    let cpu_drained = stats::CpuSnapshot::take(&s.watch, s.pg_database.as_deref());
    let per_webhook =
        report::cpu_us_per_webhook(&cpu_before.seconds_until(&cpu_drained), result.status(200));
    let mut outcome = ScenarioOutcome::new(s, result, ledger, cpu);
    outcome.summary.cpu_us_per_webhook = per_webhook;
    Ok(outcome)
}

/// The CLI: runs the scenario(s), prints tables and JSON lines, fails on any difference.
pub async fn run_cli(
    args: BenchArgs,
    config_file: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let addr = bridge_addr(&args.url)?;
    let mode = mode(&args)?;
    let run_id = format!("b{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let mut outcomes = Vec::new();
    if matches!(args.target, Target::Floor | Target::Both) {
        let floor = floor::Floor::start(2)?;
        let mut scenario = scenario(&args, mode, floor.addr(), format!("{run_id}f"));
        (scenario.service_pid, scenario.target) = (None, "floor");
        let outcome = run_scenario(&scenario).await?;
        floor.stop();
        print!("{}", outcome.table());
        outcomes.push(outcome);
    }
    if matches!(args.target, Target::Bridge | Target::Both) {
        let mut scenario = scenario(&args, mode, addr, run_id);
        if !args.no_ledger {
            let d = Duration::from_secs_f64(args.drain_timeout);
            let limits = DrainLimits {
                relay: d,
                worker: d,
            };
            scenario.ledger = Some((ledger_scope(&args, config_file).await?, limits));
        }
        scenario.pg_database = database_name();
        let mut outcome = run_scenario(&scenario).await?;
        if let Some(floor) = outcomes.first() {
            outcome.set_floor(&floor.summary);
        }
        print!("{}", outcome.table());
        outcomes.push(outcome);
    }
    let mut pass = true;
    for o in &outcomes {
        println!("{}", serde_json::to_string(&o.summary)?);
        pass &= o.summary.pass;
    }
    Ok(if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The load's mode, once the arguments are checked: every load is bounded (at most an hour,
/// a million requests per second, 20,000 sockets).
fn mode(args: &BenchArgs) -> anyhow::Result<Mode> {
    anyhow::ensure!(
        args.duration > 0.0 && args.duration <= 3600.0,
        "--duration must be between 0 and 3600 seconds"
    );
    anyhow::ensure!(
        args.timeout > 0.0 && args.timeout <= 60.0,
        "--timeout must be between 0 and 60 seconds"
    );
    anyhow::ensure!(
        args.rate.is_none_or(|r| r > 0.0 && r <= 1e6),
        "--rate must be between 0 and 1,000,000"
    );
    anyhow::ensure!(
        args.connections.max(args.concurrency.unwrap_or(1)) <= 20_000
            && args.connections > 0
            && args.concurrency != Some(0),
        "--connections and --concurrency must be between 1 and 20,000"
    );
    match (args.rate, args.concurrency) {
        (Some(rate), _) => Ok(Mode::Open { rate }),
        (None, Some(c)) => Ok(Mode::Closed { concurrency: c }),
        (None, None) => anyhow::bail!("give --rate (open loop) or --concurrency (closed loop)"),
    }
}

/// The bridge scenario the arguments describe, against `addr`, without a ledger check.
fn scenario(args: &BenchArgs, mode: Mode, addr: SocketAddr, run_id: String) -> Scenario {
    let watched = [("service", args.service_pid), ("worker", args.worker_pid)];
    let watch = watched
        .iter()
        .filter_map(|(n, p)| Some((n.to_string(), (*p)?)));
    Scenario {
        label: args.label.clone(),
        load: LoadSpec {
            addr,
            path: format!("/webhooks/{}", args.webhook),
            mode,
            connections: args.connections,
            duration: Duration::from_secs_f64(args.duration),
            timeout: Duration::from_secs_f64(args.timeout),
            grace: Duration::from_secs(10),
        },
        secret: args.secret.clone(),
        run_id,
        ledger: None,
        watch: watch.collect(),
        service_pid: args.service_pid,
        pg_database: None,
        max_latency_ms: args.max_latency_ms,
        target: "bridge",
    }
}

/// The database named in `DATABASE_URL`, if any.
fn database_name() -> Option<String> {
    let url = std::env::var("DATABASE_URL").ok()?;
    let path = url.rsplit_once('/')?.1;
    let name = path.split('?').next()?;
    (!name.is_empty() && !name.contains('@')).then(|| name.to_owned())
}

fn bridge_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("--url must be http://host:port on this machine"))?;
    let hostport = rest.split('/').next().unwrap_or_default();
    use std::net::ToSocketAddrs;
    let addr = hostport
        .to_socket_addrs()
        .with_context(|| format!("--url {url}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("--url {url}: no address"))?;
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "--url must point at this machine (loopback): benchmarks send traffic nowhere else"
    );
    Ok(addr)
}

async fn ledger_scope(
    args: &BenchArgs,
    config_file: Option<&std::path::Path>,
) -> anyhow::Result<LedgerScope> {
    let config = teams_bridge::config::Config::load(config_file)?;
    let pool = teams_bridge::infra::db::connect(&config)?;
    let js = teams_bridge::infra::nats::context(teams_bridge::infra::nats::connect(&config).await?);
    Ok(LedgerScope {
        pool,
        js,
        stream: config.stream_name.clone(),
        subject_prefix: config.subject_prefix.clone(),
        webhook: args.webhook.clone(),
        consumer: Some(config.hr_audit_consumer.clone()),
    })
}
