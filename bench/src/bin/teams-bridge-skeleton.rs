//! `teams-bridge-skeleton serve | worker [hr-audit]`: the lower bound the cost comparison
//! sets beside teams-bridge (see `teams_bridge_bench::skeleton`). Takes the service's
//! environment; the extra word after `worker` is accepted so scripts start both alike.

use std::process::ExitCode;

/// The same allocator as the service, so the two are compared on equal terms.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run = async move {
        let config = teams_bridge::config::Config::load(None)?;
        match args.first().map(String::as_str) {
            Some("serve") => teams_bridge_bench::skeleton::serve(config).await?,
            Some("worker") => teams_bridge_bench::skeleton::worker(config).await?,
            _ => anyhow::bail!("usage: teams-bridge-skeleton serve | worker [hr-audit]"),
        }
        Ok(ExitCode::SUCCESS)
    };
    teams_bridge::cli::block_on_main(run)
}
