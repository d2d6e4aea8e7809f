//! The command line: `serve`, `relay`, `migrate`, `sign`, `worker`, `audit`, `simulate`,
//! `healthcheck`. Each subcommand is a few lines that call into the library.

use std::{io::Read, path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand};
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
    /// Run a downstream worker (a durable JetStream consumer).
    Worker {
        #[command(subcommand)]
        kind: WorkerKind,
    },
    /// Query the HR audit log, newest first.
    Audit(AuditArgs),
    /// Act as Teams: build a realistic activity, sign it, post it, show the reply.
    Simulate(SimulateArgs),
    /// Exit 0 when the service answers its health endpoint (for container health checks).
    Healthcheck {
        /// The URL to check; default `http://127.0.0.1:{port of LISTEN_ADDR}/healthz`.
        #[arg(long)]
        url: Option<String>,
    },
    /// Load-test a running service (open or closed loop), then check the ledger.
    Bench(crate::bench::BenchArgs),
}

/// Options of `teams-bridge simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The webhook URL, e.g. http://127.0.0.1:3978/webhooks/contoso.
    #[arg(long, default_value = "http://127.0.0.1:3978/webhooks/contoso")]
    pub url: String,
    /// The webhook's security token (base64, as Teams shows it).
    #[arg(long, env = "TEAMS_BRIDGE_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Sender display name.
    #[arg(long = "from", default_value = "Jane Doe")]
    pub from: String,
    /// Sender AAD object id (default: derived from the name).
    #[arg(long)]
    pub aad_object_id: Option<String>,
    /// Team id.
    #[arg(long, default_value = "19:a1b2c3d4e5f6@thread.tacv2")]
    pub team: String,
    /// Channel id.
    #[arg(long, default_value = "19:f6e5d4c3b2a1@thread.tacv2")]
    pub channel: String,
    /// Tenant id.
    #[arg(long, default_value = "72f988bf-86f1-41af-91ab-2d7cd011db47")]
    pub tenant: String,
    /// The webhook's display name in the mention.
    #[arg(long, default_value = "HR Audit")]
    pub mention: String,
    /// Send the same activity a second time, as Teams sometimes does.
    #[arg(long)]
    pub duplicate: bool,
    /// What the user types after the mention.
    pub text: String,
}

/// The workers this binary ships.
#[derive(Debug, Subcommand)]
pub enum WorkerKind {
    /// Turns HR users' messages into `audit_log` rows (consumer `HR_AUDIT_CONSUMER`).
    HrAudit,
}

/// Filters and output format of `teams-bridge audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Employee record id (exact).
    #[arg(long)]
    pub record: Option<String>,
    /// Actor: display name (case-insensitive) or AAD object id.
    #[arg(long)]
    pub actor: Option<String>,
    /// create, read, update, delete or note.
    #[arg(long, value_parser = parse_operation)]
    pub operation: Option<crate::command::Operation>,
    /// Team id.
    #[arg(long)]
    pub team: Option<String>,
    /// Channel id.
    #[arg(long)]
    pub channel: Option<String>,
    /// From this time on: RFC 3339, YYYY-MM-DD, or an age like 7d, 12h.
    #[arg(long, value_parser = parse_time)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Before this time (same forms as --since).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Most entries to show (1..=1000).
    #[arg(long, default_value = "50", value_parser = crate::audit_query::parse_limit)]
    pub limit: i64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Output formats of `teams-bridge audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table that fits a terminal.
    Table,
    /// One JSON array.
    Json,
    /// CSV with a header row.
    Csv,
}

fn parse_operation(s: &str) -> Result<crate::command::Operation, String> {
    crate::audit::parse_operation(s)
        .ok_or_else(|| "expected create, read, update, delete or note".into())
}

fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    crate::audit_query::parse_time(s, chrono::Utc::now())
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
            db::prepare(&config).await?;
            let js = stream::context(stream::connect(&config).await?);
            let shutdown = CancellationToken::new();
            tokio::spawn(app::cancel_on_signal(shutdown.clone()));
            let relay = Relay {
                pool: db::relay_pool(&config)?,
                js,
                subject_prefix: config.subject_prefix.clone(),
                batch_size: config.relay_batch_size,
            };
            app::run_relay(relay, Arc::new(config), None, shutdown).await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker {
            kind: WorkerKind::HrAudit,
        } => {
            let config = load(cli.config.as_deref())?;
            let worker = app::hr_audit_worker(&config).await?;
            let shutdown = CancellationToken::new();
            tokio::spawn(app::cancel_on_signal(shutdown.clone()));
            tracing::info!(consumer = %config.hr_audit_consumer, "hr-audit worker running");
            let listener = tokio::net::TcpListener::bind(config.worker_listen_addr)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "binding WORKER_LISTEN_ADDR {}: {e}",
                        config.worker_listen_addr
                    )
                })?;
            let stop = shutdown.clone();
            let heartbeat = worker.heartbeat();
            tokio::spawn(async move {
                let _ = axum::serve(listener, crate::http::worker_router(heartbeat))
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
            });
            worker.run(shutdown).await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(args) => {
            let config = Config::load(cli.config.as_deref())?;
            let pool = db::connect(&config)?;
            let filter = crate::audit_query::AuditFilter {
                record: args.record,
                actor: args.actor,
                operation: args.operation,
                team: args.team,
                channel: args.channel,
                since: args.since,
                until: args.until,
                limit: args.limit,
                after: None,
            };
            let (entries, _) = crate::audit_query::query(&pool, &filter)
                .await
                .map_err(|e| anyhow::anyhow!("querying audit_log: {e}"))?;
            let out = match args.format {
                Format::Table => crate::audit_query::to_table(&entries),
                Format::Json => serde_json::to_string_pretty(&entries)? + "\n",
                Format::Csv => crate::audit_query::to_csv(&entries)?,
            };
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate(args) => {
            let sender = crate::simulate::Sender {
                name: args.from,
                aad_object_id: args.aad_object_id,
                team: args.team,
                channel: args.channel,
                tenant: args.tenant,
                webhook_name: args.mention,
            };
            let body = crate::simulate::build_activity(&sender, &args.text);
            let client = reqwest::Client::new();
            let mut ok = true;
            for attempt in 0..if args.duplicate { 2 } else { 1 } {
                let d = crate::simulate::deliver(&client, &args.url, &args.secret, &body).await?;
                let label = if attempt == 0 { "reply" } else { "repeat" };
                println!(
                    "{label}: {} ({} in {:.1} ms)",
                    d.shown,
                    d.status,
                    d.latency.as_secs_f64() * 1e3
                );
                ok &= d.status == 200;
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Healthcheck { url } => {
            let (url, own_tls) = match url {
                Some(u) => (u, false),
                None => {
                    let config = Config::load(cli.config.as_deref())?;
                    let tls = config.tls_cert.is_some();
                    let scheme = if tls { "https" } else { "http" };
                    let port = config.listen_addr.port();
                    (format!("{scheme}://127.0.0.1:{port}/healthz"), tls)
                }
            };
            // Checking our own process on 127.0.0.1: its certificate names the public host,
            // not 127.0.0.1, so it cannot verify here and need not.
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(3))
                .danger_accept_invalid_certs(own_tls)
                .build()?;
            match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => Ok(ExitCode::SUCCESS),
                Ok(r) => {
                    eprintln!("unhealthy: {url} answered {}", r.status());
                    Ok(ExitCode::FAILURE)
                }
                Err(e) => {
                    eprintln!("unhealthy: {url}: {:#}", anyhow::Error::from(e));
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Bench(args) => crate::bench::run_cli(args, cli.config.as_deref()).await,
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
