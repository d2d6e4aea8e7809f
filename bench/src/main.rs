//! The `teams-bridge-bench` binary: parses the command line and hands over to the library.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;

/// glibc's allocator would weigh on the floor measurement like it did on the service.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load-test a running teams-bridge (open or closed loop), then check the ledger.
#[derive(Debug, Parser)]
#[command(name = "teams-bridge-bench", version, about)]
struct Cli {
    /// The service's TOML settings file, for the ledger check (the environment wins).
    #[arg(long, env = "TEAMS_BRIDGE_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    args: teams_bridge_bench::BenchArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let run = teams_bridge_bench::run_cli(cli.args, cli.config.as_deref());
    teams_bridge::cli::block_on_main(run)
}
