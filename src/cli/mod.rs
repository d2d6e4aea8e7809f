//! The command line: clap types and dispatch. Every subcommand is one call into the
//! library: `app` wires the long-running processes, the other modules here are the
//! one-shot commands.

pub mod audit;
mod bench;
pub mod console;
mod healthcheck;
pub mod privacy;
pub mod replay;
pub mod seal;
mod sign;
pub mod simulate;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{
    app::{self, signal::shutdown_on_signal},
    config::Config,
    infra::{db, telemetry},
};

/// Microsoft Teams outgoing webhooks into a durable event stream (Postgres → NATS JetStream).
#[derive(Debug, Parser)]
#[command(name = "teams-bridge", version, about)]
pub struct Cli {
    /// TOML file with the same settings as the environment (the environment wins).
    #[arg(long, global = true, env = "TEAMS_BRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the webhook receiver and the outbox relay.
    Serve,
    /// Run only the outbox relay (publishes committed activities to JetStream).
    Relay,
    /// Create the database if missing and apply the migrations.
    Migrate,
    /// Print the `Authorization` header value Teams would send for a body.
    Sign {
        /// The webhook's security token (base64, as Teams shows it).
        #[arg(long, env = "TEAMS_BRIDGE_SECRET", hide_env_values = true)]
        secret: String,
        /// The body file; `-` or nothing reads standard input. Bytes are signed exactly.
        file: Option<PathBuf>,
    },
    /// Run a downstream worker (a durable JetStream consumer).
    Worker {
        #[command(subcommand)]
        kind: WorkerKind,
    },
    /// Query the HR audit log, newest first; or manage its sealing (keygen, checkpoint,
    /// export).
    Audit(audit::AuditCommand),
    /// Verify the sealed audit log (against the database, or a bundle offline). Exit 0 when
    /// everything holds, 1 when anything does not, 2 when it could not run.
    Verify(seal::VerifyArgs),
    /// The auditors who may sign in to the console (`/console`).
    Console {
        #[command(subcommand)]
        action: console::ConsoleAction,
    },
    /// Manage a webhook's HR editors: when a webhook has a list, only they record changes.
    Editors {
        #[command(subcommand)]
        action: privacy::EditorsAction,
    },
    /// Legal holds: held data is neither pruned by retention nor erased.
    Hold {
        #[command(subcommand)]
        action: privacy::HoldAction,
    },
    /// Erase a Teams user's or an employee record's personal data (Postgres and the stream).
    /// Exit 0 when done or nothing matched, 1 when refused (a hold), 2 on bad usage.
    Erase(privacy::EraseArgs),
    /// Run one retention pass now (ACTIVITY_RETENTION_DAYS, AUDIT_RETENTION_DAYS).
    Retention {
        /// Count what would be removed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Queue stored activities for publishing again (refills the stream from Postgres).
    Replay(replay::ReplayArgs),
    /// Act as Teams: build a realistic activity, sign it, post it, show the reply.
    Simulate(simulate::SimulateArgs),
    /// Exit 0 when the service answers its health endpoint (for container health checks).
    Healthcheck {
        /// The URL to check; default `http://127.0.0.1:{port of LISTEN_ADDR}/healthz`.
        #[arg(long)]
        url: Option<String>,
    },
    /// Load-test a running service: runs `teams-bridge-bench` (installed beside this binary)
    /// with the same arguments.
    #[command(disable_help_flag = true)]
    Bench {
        /// Arguments of `teams-bridge-bench` (`teams-bridge bench --help` shows them).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// The workers this binary ships.
#[derive(Debug, Subcommand)]
pub enum WorkerKind {
    /// Turns HR users' messages into `audit_log` rows (consumer `HR_AUDIT_CONSUMER`).
    HrAudit,
}

/// Parses the command line and runs it; errors are printed without secrets.
pub fn main() -> ExitCode {
    block_on_main(run(Cli::parse()))
}

/// Runs a binary's async main on a new runtime and turns its error into `error: …` on
/// stderr and a failing exit code (shared with `teams-bridge-bench`).
pub fn block_on_main(
    main: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(main).unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

/// Runs one parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let file = cli.config.as_deref();
    match cli.command {
        Command::Serve => {
            let app = app::Application::build(load(file)?).await?;
            app.run_until_stopped(shutdown_on_signal()).await?;
        }
        Command::Relay => app::run_relay_process(load(file)?, shutdown_on_signal()).await?,
        Command::Worker {
            kind: WorkerKind::HrAudit,
        } => app::run_hr_audit_worker(load(file)?, shutdown_on_signal()).await?,
        Command::Migrate => {
            db::prepare(&load(file)?).await?;
            println!("migrations applied");
        }
        Command::Sign { secret, file: body } => sign::run(&secret, body.as_deref())?,
        Command::Audit(audit::AuditCommand {
            action: Some(action),
            ..
        }) => return seal::run(action, file).await,
        Command::Audit(args) => return audit::run(args.query, &Config::load(file)?).await,
        Command::Verify(args) => return seal::run_verify(args, file).await,
        Command::Replay(args) => return replay::run(args, &load(file)?).await,
        Command::Console { action } => return console::run(action, &load(file)?).await,
        Command::Editors { action } => return privacy::run_editors(action, &load(file)?).await,
        Command::Hold { action } => return privacy::run_hold(action, &load(file)?).await,
        Command::Erase(args) => return privacy::run_erase(args, &load(file)?).await,
        Command::Retention { dry_run } => {
            return privacy::run_retention(dry_run, &load(file)?).await
        }
        Command::Simulate(args) => return simulate::run(args).await,
        Command::Healthcheck { url } => return healthcheck::run(url, file).await,
        Command::Bench { args } => return bench::run(args, file).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads and validates the configuration and starts logging as it says.
fn load(file: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let config = Config::load(file)?;
    telemetry::init_logs(config.log_format, &config.log_filter);
    Ok(config)
}
