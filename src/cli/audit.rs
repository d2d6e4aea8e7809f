//! `teams-bridge audit [filters] [--format table|json|csv]`: one page of the audit log,
//! newest first.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::{
    audit::{
        export,
        query::{self, AuditFilter},
    },
    config::Config,
    domain::hr_command::Operation,
    infra::db,
};

/// `teams-bridge audit [filters]`, or one of its subcommands.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditCommand {
    /// Keygen, checkpoint or export; none: query the log.
    #[command(subcommand)]
    pub action: Option<super::seal::AuditAction>,
    /// The query.
    #[command(flatten)]
    pub query: AuditArgs,
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
    pub operation: Option<Operation>,
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
    #[arg(long, default_value = "50", value_parser = query::parse_limit)]
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

fn parse_operation(s: &str) -> Result<Operation, String> {
    query::parse_operation(s).ok_or_else(|| "expected create, read, update, delete or note".into())
}

fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    query::parse_time(s, chrono::Utc::now())
}

/// Runs the query and prints the page.
pub async fn run(args: AuditArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let pool = db::connect(config)?;
    let filter = AuditFilter {
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
    let (entries, _) = query::query(&pool, &filter)
        .await
        .context("querying audit_log")?;
    let out = match args.format {
        Format::Table => export::to_table(&entries),
        Format::Json => serde_json::to_string_pretty(&entries)? + "\n",
        Format::Csv => export::to_csv(&entries)?,
    };
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}
