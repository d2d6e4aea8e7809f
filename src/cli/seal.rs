//! The audit trail's subcommands: `audit keygen --out FILE`, `audit checkpoint`,
//! `audit export --record ID --proofs`, and `verify` (against the database, or a bundle
//! offline).

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;

use crate::{
    audit::{bundle, verify},
    config::Config,
    domain::{
        note::{NoteSigner, NoteVerifier},
        signature::KeyRing,
    },
    infra::db,
};

/// `teams-bridge audit …` beyond the query.
#[derive(Debug, clap::Subcommand)]
pub enum AuditAction {
    /// Write a new checkpoint signing key to FILE and its verifier key to FILE.pub; print the
    /// verifier key.
    Keygen {
        /// Where the private key goes (refused when it exists).
        #[arg(long)]
        out: PathBuf,
        /// The key's name (default: AUDIT_LOG_ORIGIN).
        #[arg(long)]
        name: Option<String>,
    },
    /// Print the latest signed checkpoint, for storing outside this system.
    Checkpoint,
    /// Write one record's evidence bundle (JSON, with inclusion proofs) to standard output.
    Export {
        /// The employee record.
        #[arg(long)]
        record: String,
        /// Include inclusion proofs and the checkpoint (always on; kept for the documented
        /// command line).
        #[arg(long)]
        proofs: bool,
    },
}

/// Options of `teams-bridge verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Also check every entry against its activity (Teams HMAC, the grammar).
    #[arg(long)]
    pub evidence: bool,
    /// Checkpoints saved earlier (signed notes) today's tree must extend.
    #[arg(long = "checkpoint", num_args = 1..)]
    pub checkpoints: Vec<PathBuf>,
    /// Check this bundle offline (no database, no NATS).
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// The verifier key file (FILE.pub of `audit keygen`); default: derived from
    /// AUDIT_SIGNING_KEY_FILE.
    #[arg(long)]
    pub pubkey: Option<PathBuf>,
    /// With --bundle: the webhook's security token, to check each activity's Teams HMAC.
    #[arg(long, env = "TEAMS_BRIDGE_WEBHOOK_KEY", hide_env_values = true)]
    pub webhook_key: Option<String>,
    /// `text` or `json` (one report).
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

/// How `verify` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// A summary and one line per problem.
    Text,
    /// One JSON object.
    Json,
}

/// Runs an audit subcommand.
pub async fn run(action: AuditAction, config_file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_file)?;
    match action {
        AuditAction::Keygen { out, name } => {
            keygen(&out, name.as_deref().unwrap_or(&config.audit_log_origin))?
        }
        AuditAction::Checkpoint => {
            let pool = db::connect(&config)?;
            let note: Option<String> =
                sqlx::query_scalar("select note from audit_checkpoints order by size desc limit 1")
                    .fetch_optional(&pool)
                    .await
                    .context("reading audit_checkpoints")?;
            print!("{}", note.context("no checkpoint yet: nothing is sealed")?);
        }
        AuditAction::Export { record, .. } => {
            let pool = db::connect(&config)?;
            let b = bundle::export(&pool, &record).await?;
            if b.pending > 0 {
                eprintln!(
                    "note: {} entries of {record} are not sealed yet and not in the bundle",
                    b.pending
                );
            }
            print!("{}", b.to_text());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn keygen(out: &Path, name: &str) -> anyhow::Result<()> {
    let signer = NoteSigner::generate(name).context("--name: no spaces or `+`")?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).with_context(|| {
        format!(
            "creating {} (an existing key is never overwritten)",
            out.display()
        )
    })?;
    file.write_all(format!("{}\n", signer.to_text().expose()).as_bytes())?;
    let public = signer.verifier().to_text();
    let pub_path = PathBuf::from(format!("{}.pub", out.display()));
    std::fs::write(&pub_path, format!("{public}\n"))
        .with_context(|| format!("writing {}", pub_path.display()))?;
    println!("{public}");
    Ok(())
}

/// `teams-bridge verify`: exit 0 when everything holds, 1 when anything does not, 2 when it
/// could not run.
pub async fn run_verify(args: VerifyArgs, config_file: Option<&Path>) -> anyhow::Result<ExitCode> {
    match verify_inner(args, config_file).await {
        Ok(true) => Ok(ExitCode::SUCCESS),
        Ok(false) => Ok(ExitCode::FAILURE),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(2))
        }
    }
}

async fn verify_inner(args: VerifyArgs, config_file: Option<&Path>) -> anyhow::Result<bool> {
    let config = Config::load(config_file)?;
    let verifier = verifier(args.pubkey.as_deref(), &config)?;
    let json = args.format == ReportFormat::Json;
    if let Some(path) = &args.bundle {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let ring = args
            .webhook_key
            .as_deref()
            .map(|t| KeyRing::from_tokens([t]))
            .transpose();
        let ring = ring.context("--webhook-key: not a base64 security token")?;
        let report = bundle::verify_bundle(&text, &verifier, ring.as_ref());
        match json {
            true => println!("{}", serde_json::to_string_pretty(&report)?),
            false => print_bundle_report(&report),
        }
        return Ok(report.problems.is_empty());
    }
    let mut saved = Vec::new();
    for path in &args.checkpoints {
        saved.push(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        );
    }
    let pool = db::connect(&config)?;
    let options = verify::VerifyOptions {
        verifier: &verifier,
        origin: &config.audit_log_origin,
        evidence: args.evidence,
        webhooks: &config.webhooks,
        saved,
        activity_retention_days: config.activity_retention_days,
        audit_retention_days: config.audit_retention_days,
    };
    let report = verify::verify(&pool, &options)
        .await
        .context("reading the audit log")?;
    match json {
        true => println!("{}", serde_json::to_string_pretty(&report)?),
        false => print!("{report}"),
    }
    Ok(report.ok())
}

/// The verifier key: `--pubkey FILE`, else the one of AUDIT_SIGNING_KEY_FILE.
fn verifier(pubkey: Option<&Path>, config: &Config) -> anyhow::Result<NoteVerifier> {
    if let Some(path) = pubkey {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return NoteVerifier::from_text(&text).with_context(|| format!("{}", path.display()));
    }
    let path = config.audit_signing_key_file.as_ref().context(
        "no key to check checkpoints with: give --pubkey FILE (or set AUDIT_SIGNING_KEY_FILE)",
    )?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(NoteSigner::from_text(&text)
        .context("AUDIT_SIGNING_KEY_FILE")?
        .verifier())
}

fn print_bundle_report(r: &bundle::BundleReport) {
    println!(
        "bundle of record {}: {} entries against checkpoint {}, HMACs checked {}",
        r.record, r.entries, r.checkpoint_size, r.hmac_checked
    );
    for p in &r.problems {
        println!("PROBLEM {p}");
    }
    match r.problems.is_empty() {
        true => println!("ok: the bundle verifies"),
        false => println!("FAILED: {} problems", r.problems.len()),
    }
}
