//! `teams-bridge bench …`: the load generator is its own binary, `teams-bridge-bench`, so
//! the service does not carry it; this alias runs it from beside this binary (or from
//! `PATH`) with the same arguments, so `teams-bridge bench` keeps working.

use std::{ffi::OsString, process::ExitCode};

use anyhow::Context as _;

/// Runs `teams-bridge-bench` with `args` and passes on its exit code.
pub fn run(args: Vec<OsString>) -> anyhow::Result<ExitCode> {
    let sibling = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("teams-bridge-bench"))
        .filter(|p| p.exists());
    let program = sibling.unwrap_or_else(|| "teams-bridge-bench".into());
    let status = std::process::Command::new(&program)
        .args(args)
        .status()
        .with_context(|| {
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
