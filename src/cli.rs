//! The command line: `serve`, `relay`, `migrate`, `sign`, `worker`, `audit`, `simulate`,
//! `healthcheck`. Each subcommand is a few lines that call into the library.

use std::{io::Read, path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{app, config::Config, db, outbox::Relay, signature, stream, telemetry};

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
}

/// Parses the command line and runs it; errors are printed without secrets.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Sign { secret, file } => {
            let body = read_body(file.as_deref())?;
            let header =
                signature::sign(&secret, &body).map_err(|e| anyhow::anyhow!("--secret: {e}"))?;
            println!("{header}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => {
            let config = load(cli.config.as_deref())?;
            let shutdown = CancellationToken::new();
            tokio::spawn(app::cancel_on_signal(shutdown.clone()));
            app::Application::build(config)
                .await?
                .run_until_stopped(shutdown)
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Relay => {
            let config = load(cli.config.as_deref())?;
            let pool = db::prepare(&config).await?;
            let js = stream::context(stream::connect(&config).await?);
            let shutdown = CancellationToken::new();
            tokio::spawn(app::cancel_on_signal(shutdown.clone()));
            let relay = Relay {
                pool,
                js,
                subject_prefix: config.subject_prefix.clone(),
                batch_size: config.relay_batch_size,
            };
            app::run_relay(relay, Arc::new(config), Arc::new(Notify::new()), shutdown).await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let config = load(cli.config.as_deref())?;
            db::prepare(&config).await?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Loads and validates the configuration and starts logging as it says.
fn load(file: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let config = Config::load(file)?;
    telemetry::init_logs(config.log_format);
    Ok(config)
}

fn read_body(file: Option<&std::path::Path>) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    match file {
        Some(p) if p.as_os_str() != "-" => {
            body = std::fs::read(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?;
        }
        _ => {
            std::io::stdin().read_to_end(&mut body)?;
        }
    }
    Ok(body)
}
