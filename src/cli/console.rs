//! `teams-bridge console add-user NAME | remove-user NAME | users`: the auditors who may sign
//! in to the console.

use std::process::ExitCode;

use crate::{config::Config, http::console::accounts, infra::db};

/// `teams-bridge console …`.
#[derive(Debug, clap::Subcommand)]
pub enum ConsoleAction {
    /// Add an auditor and print their sign-in token (shown this once; only its hash is kept).
    AddUser {
        /// Their name (letters, digits, `.`, `_`, `-`, `@`), as the access log shows it.
        name: String,
    },
    /// Remove an auditor and end their sessions.
    RemoveUser {
        /// Their name.
        name: String,
    },
    /// Print the auditors.
    Users,
}

/// Runs one console command.
pub async fn run(action: ConsoleAction, config: &Config) -> anyhow::Result<ExitCode> {
    if let ConsoleAction::AddUser { name } | ConsoleAction::RemoveUser { name } = &action {
        if !accounts::valid_name(name) {
            eprintln!("error: {name:?} is not a user name (1–64 letters, digits, . _ - @)");
            return Ok(ExitCode::from(2));
        }
    }
    let pool = db::prepare(config).await?;
    match action {
        ConsoleAction::AddUser { name } => match accounts::add_user(&pool, &name).await? {
            Some(token) => {
                println!("{token}");
                eprintln!("{name} may sign in at /console with this token; it is not shown again");
            }
            None => {
                eprintln!("error: {name} exists (remove-user, then add-user, gives a new token)");
                return Ok(ExitCode::from(1));
            }
        },
        ConsoleAction::RemoveUser { name } => match accounts::remove_user(&pool, &name).await? {
            true => println!("{name} removed; their sessions are over"),
            false => println!("no user {name}; nothing changed"),
        },
        ConsoleAction::Users => {
            for (name, at) in accounts::users(&pool).await? {
                println!("{name}\t{}", at.to_rfc3339());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
