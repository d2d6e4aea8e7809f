//! The `teams-bridge` binary: parses the command line and hands over to the library.

fn main() -> std::process::ExitCode {
    teams_bridge::cli::main()
}
