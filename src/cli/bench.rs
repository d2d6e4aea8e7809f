//! `teams-bridge bench …`: the load generator is its own binary, `teams-bridge-bench`, so
//! the service does not carry it; this alias runs it from beside this binary (or from
//! `PATH`) with the same arguments, so `teams-bridge bench` keeps working.

use std::{ffi::OsString, path::Path, process::ExitCode};

use anyhow::Context as _;

/// Runs `teams-bridge-bench` with `args` (and the `--config` file given to this command)
/// and passes on its exit code.
pub async fn run(args: Vec<OsString>, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let sibling = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("teams-bridge-bench"))
        .filter(|p| p.exists());
    let program = sibling.unwrap_or_else(|| "teams-bridge-bench".into());
    let mut command = tokio::process::Command::new(&program);
    command.args(args);
    if let Some(config) = config {
        command.env("TEAMS_BRIDGE_CONFIG", config);
    }
    let status = command.status().await.with_context(|| {
        format!(
            "running {} (build it with `cargo build --release --bin teams-bridge-bench`)",
            program.display()
        )
    })?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(code.clamp(1, 255) as u8),
        None => ExitCode::FAILURE,
    })
}
