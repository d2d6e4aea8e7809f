//! The `teams-bridge` binary: parses the command line and hands over to the library.

/// glibc's allocator spent about a third of the receiver's CPU under load (request bodies,
/// the group commit's column arrays, publish buffers freed on other threads); mimalloc's
/// thread-local free lists do the same work for a fraction (numbers in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    teams_bridge::cli::main()
}
