//! The personal-data commands: `editors add|remove|list`, `hold add|remove|list`,
//! `erase --actor | --record`, `retention [--dry-run]`. None of them prompts (they run from
//! scripts). Bad usage exits 2; `erase` refused by a hold exits 1.

use std::process::ExitCode;

use crate::{
    config::Config,
    infra::{db, nats},
    privacy::{
        editors::{self, valid_object_id, Outcome as Edit},
        erase::{self, Found, Outcome},
        holds::{self, Hold, Scope},
        operator::operator_name,
        retention::{self, Policy},
        stream,
    },
};

/// `teams-bridge editors …`.
#[derive(Debug, clap::Subcommand)]
pub enum EditorsAction {
    /// Make AAD_OBJECT_ID an HR editor of the webhook (writes a `grant` audit entry).
    Add {
        /// The webhook, as configured.
        #[arg(long)]
        webhook: String,
        /// The person's Entra object id (Teams' `from.aadObjectId`).
        aad_object_id: String,
        /// Their display name, for the list.
        #[arg(long)]
        name: Option<String>,
        /// Who makes the change (default: the login name).
        #[arg(long)]
        by: Option<String>,
    },
    /// Remove AAD_OBJECT_ID from the webhook's editors (writes a `revoke` audit entry).
    Remove {
        /// The webhook.
        #[arg(long)]
        webhook: String,
        /// The person's Entra object id.
        aad_object_id: String,
        /// Who makes the change (default: the login name).
        #[arg(long)]
        by: Option<String>,
    },
    /// Print the editors (of one webhook, or all), tab-separated.
    List {
        /// Only this webhook.
        #[arg(long)]
        webhook: Option<String>,
    },
}

/// Whose data, for `hold` and `erase`.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct ScopeArgs {
    /// An employee record id (E-1042).
    #[arg(long)]
    pub record: Option<String>,
    /// A Teams user's Entra object id.
    #[arg(long)]
    pub actor: Option<String>,
}

/// `teams-bridge hold …`.
#[derive(Debug, clap::Subcommand)]
pub enum HoldAction {
    /// Place a legal hold: the data is neither pruned nor erased until it is removed.
    Add {
        #[command(flatten)]
        scope: ScopeArgs,
        /// Why (a case number).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a legal hold.
    Remove {
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Print the holds, tab-separated.
    List,
}

/// Options of `teams-bridge erase`.
#[derive(Debug, clap::Args)]
pub struct EraseArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// Why (kept in the `erase` audit entry; name no one here). Required unless --dry-run.
    #[arg(long)]
    reason: Option<String>,
    /// Who asked (default: the login name).
    #[arg(long)]
    by: Option<String>,
    /// Count what would be erased; change nothing.
    #[arg(long)]
    dry_run: bool,
}

fn usage(why: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("error: {why}");
    Ok(ExitCode::from(2))
}

fn scope(args: &ScopeArgs) -> Result<Scope, String> {
    let is_record = |s: &str| {
        (1..=64).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    match (&args.record, &args.actor) {
        (Some(r), None) if is_record(r) => Ok(Scope::Record(r.clone())),
        (Some(r), None) => Err(format!("{r:?} is not a record id ([A-Za-z0-9_-], 1–64)")),
        // Entra object ids are GUIDs, which Teams sends in lower case.
        (None, Some(a)) if valid_object_id(a) => Ok(Scope::Actor(a.to_ascii_lowercase())),
        (None, Some(a)) => Err(format!("{a:?} is not an Entra object id")),
        _ => Err("give exactly one of --record and --actor".into()),
    }
}

/// Why an editors change cannot run, if it cannot (checked before any write).
fn editors_usage(action: &EditorsAction, config: &Config) -> Option<String> {
    let (webhook, id) = match action {
        EditorsAction::Add {
            webhook,
            aad_object_id,
            ..
        }
        | EditorsAction::Remove {
            webhook,
            aad_object_id,
            ..
        } => (webhook, aad_object_id),
        EditorsAction::List { .. } => return None,
    };
    // A list may outlive its webhook's configuration: removing from it is always allowed.
    let adding = matches!(action, EditorsAction::Add { .. });
    if adding && !config.webhooks.iter().any(|c| &c.name == webhook) {
        return Some(format!(
            "webhook {webhook:?} is not configured (TEAMS_WEBHOOKS)"
        ));
    }
    (!valid_object_id(id)).then(|| format!("{id:?} is not an Entra object id"))
}

/// `teams-bridge editors …`.
pub async fn run_editors(action: EditorsAction, config: &Config) -> anyhow::Result<ExitCode> {
    if let Some(why) = editors_usage(&action, config) {
        return usage(why);
    }
    let pool = db::prepare(config).await?;
    let (outcome, what) = match action {
        EditorsAction::List { webhook } => {
            for e in editors::list(&pool, webhook.as_deref()).await? {
                let name = e.name.as_deref().unwrap_or("");
                let at = e.added_at.to_rfc3339();
                println!("{}\t{}\t{name}\t{at}", e.webhook, e.aad_object_id);
            }
            return Ok(ExitCode::SUCCESS);
        }
        EditorsAction::Add {
            webhook,
            aad_object_id: id,
            name,
            by,
        } => {
            let (id, by) = (id.to_ascii_lowercase(), operator_name(by.as_deref()));
            let done = editors::add(&pool, &webhook, &id, name.as_deref(), &by).await?;
            (done, format!("{id} is an HR editor of {webhook}"))
        }
        EditorsAction::Remove {
            webhook,
            aad_object_id: id,
            by,
        } => {
            let (id, by) = (id.to_ascii_lowercase(), operator_name(by.as_deref()));
            let done = editors::remove(&pool, &webhook, &id, &by).await?;
            if editors::list(&pool, Some(&webhook)).await?.is_empty() {
                println!("note: {webhook} has no HR editors left: everyone in its team may record changes again");
            }
            (done, format!("{id} is not an HR editor of {webhook}"))
        }
    };
    match outcome {
        Edit::Changed(id) => println!("{what} (audit entry {id})"),
        Edit::Unchanged => println!("{what} already; nothing changed"),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_holds(list: &[Hold]) {
    for h in list {
        let reason = h.reason.as_deref().unwrap_or("");
        println!(
            "{}\t{}\t{reason}\t{}",
            h.kind,
            h.value,
            h.created_at.to_rfc3339()
        );
    }
}

/// `teams-bridge hold …`.
pub async fn run_hold(action: HoldAction, config: &Config) -> anyhow::Result<ExitCode> {
    let pool = db::prepare(config).await?;
    match action {
        HoldAction::List => print_holds(&holds::list(&pool).await?),
        HoldAction::Add { scope: s, reason } => {
            let s = match scope(&s) {
                Ok(s) => s,
                Err(why) => return usage(why),
            };
            match holds::add(&pool, &s, reason.as_deref()).await? {
                true => println!("hold placed on {s}"),
                false => println!("{s} was already held; nothing changed"),
            }
        }
        HoldAction::Remove { scope: s } => {
            let s = match scope(&s) {
                Ok(s) => s,
                Err(why) => return usage(why),
            };
            match holds::remove(&pool, &s).await? {
                true => println!("hold on {s} removed"),
                false => println!("{s} was not held; nothing changed"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(f: &Found) -> String {
    format!(
        "{} activities, {} audit entries, {} dead letters, {} outbox rows, {} places on editors lists",
        f.activities, f.audit_entries, f.dead_letters, f.outbox, f.editors
    )
}

/// `teams-bridge erase …`: Postgres in one transaction, then the stream.
pub async fn run_erase(args: EraseArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let s = match scope(&args.scope) {
        Ok(s) => s,
        Err(why) => return usage(why),
    };
    let reason = args.reason.clone().filter(|r| !r.trim().is_empty());
    if reason.is_none() && !args.dry_run {
        return usage("erase needs --reason (kept in the erase audit entry), or --dry-run");
    }
    let pool = match db::prepare(config).await {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(3));
        }
    };
    let request = erase::Request {
        scope: s.clone(),
        reason: reason.unwrap_or_default(),
        by: operator_name(args.by.as_deref()),
        dry_run: args.dry_run,
    };
    let outcome = match erase::erase(&pool, &request).await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: nothing was erased: {e}");
            return Ok(ExitCode::from(3));
        }
    };
    if let Some(code) = report(&s, outcome, args.dry_run) {
        return Ok(code);
    }
    // Always, even when nothing matched: a run that could not reach NATS is finished here.
    if let Err(e) = erase_stream(config, &pool).await {
        eprintln!(
            "error: Postgres is erased, but the stream is not: {e:#}; run the same command again"
        );
        return Ok(ExitCode::from(3));
    }
    // What arrived while the first pass ran (a message the worker was writing) is caught by
    // a second one; it normally finds nothing.
    if let Ok(Outcome::Erased(done)) = erase::erase(&pool, &request).await {
        print_done(&s, &done);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints what Postgres' pass did; the exit code when that is the end of it.
fn report(s: &Scope, outcome: Outcome, dry_run: bool) -> Option<ExitCode> {
    match outcome {
        Outcome::Refused(list) => {
            eprintln!("refused: {s} is under a legal hold (teams-bridge hold remove … lifts it):");
            for h in &list {
                let why = h.reason.as_deref().map(|r| format!(" ({r})"));
                eprintln!(
                    "  hold on {} {}{}",
                    h.kind,
                    h.value,
                    why.unwrap_or_default()
                );
            }
            return Some(ExitCode::from(1));
        }
        Outcome::WouldErase(f) => {
            println!("would erase {s}: {}", describe(&f));
            println!("and every stream message of those activities");
            return Some(ExitCode::SUCCESS);
        }
        Outcome::Nothing if dry_run => {
            println!("nothing matched {s}");
            return Some(ExitCode::SUCCESS);
        }
        Outcome::Nothing => println!("nothing matched {s} in Postgres"),
        Outcome::Erased(done) => print_done(s, &done),
    }
    None
}

fn print_done(s: &Scope, done: &erase::Done) {
    let salt = erase::hex(&done.salt);
    println!(
        "erased {s}: {} (erase entry {})",
        describe(&done.found),
        done.entry
    );
    println!("scope salt {salt} (not stored; keep it with the request: with the id it proves the entry's scope_digest)");
    for w in &done.opened {
        println!("note: {w} has no HR editors left: everyone in its team may record changes again");
    }
}

async fn erase_stream(config: &Config, pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let js = nats::context(nats::connect(config).await?);
    let scanned = stream::erase_tombstoned(&js, &config.stream_name, pool).await?;
    println!(
        "stream {}: {} messages scanned, {} deleted",
        config.stream_name, scanned.messages, scanned.deleted
    );
    Ok(())
}

/// `teams-bridge retention [--dry-run]`: one pass of the worker's retention, now.
pub async fn run_retention(dry_run: bool, config: &Config) -> anyhow::Result<ExitCode> {
    let policy = Policy {
        activity_days: config.activity_retention_days,
        audit_days: config.audit_retention_days,
    };
    if policy == Policy::default() {
        println!("no retention is set (ACTIVITY_RETENTION_DAYS, AUDIT_RETENTION_DAYS): everything is kept");
        return Ok(ExitCode::SUCCESS);
    }
    let pool = db::prepare(config).await?;
    let pass = match dry_run {
        true => None,
        false => Some(retention::run(&pool, policy).await?),
    };
    let (verb, r) = match pass {
        None => ("would remove", retention::dry_run(&pool, policy).await?),
        Some(pass) => ("removed", pass.removed),
    };
    println!(
        "{verb}: {} activities (bytes and names; tombstones stay), {} dead letters, personal fields of {} audit entries",
        r.activities, r.dead_letters, r.audit_entries
    );
    if let Some(pass) = pass {
        // How long a row stayed locked at most: what a large first pass should be judged by.
        let batches = match pass.batches {
            1 => "1 batch".to_string(),
            n => format!("{n} batches"),
        };
        println!(
            "in {batches} (one transaction each), the longest {} ms",
            pass.longest.as_millis()
        );
    }
    if dry_run {
        println!(
            "kept under a legal hold: {} activities, {} audit entries",
            r.held_activities, r.held_audit_entries
        );
    }
    Ok(ExitCode::SUCCESS)
}
