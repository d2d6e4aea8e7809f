//! `teams-bridge healthcheck [--url URL]`: exit 0 iff the URL (default this configuration's
//! own `/healthz`) answers 2xx; for container health checks.

use std::{path::Path, process::ExitCode, time::Duration};

use crate::config::Config;

/// Checks the URL once, within 3 s.
pub async fn run(url: Option<String>, config_file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (url, own_tls) = match url {
        Some(u) => (u, false),
        None => {
            let config = Config::load(config_file)?;
            let tls = config.tls_cert.is_some();
            let scheme = if tls { "https" } else { "http" };
            let port = config.listen_addr.port();
            (format!("{scheme}://127.0.0.1:{port}/healthz"), tls)
        }
    };
    // Checking our own process on 127.0.0.1: its certificate names the public host, not
    // 127.0.0.1, so it cannot verify here and need not.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .danger_accept_invalid_certs(own_tls)
        .build()?;
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => return Ok(ExitCode::SUCCESS),
        Ok(r) => eprintln!("unhealthy: {url} answered {}", r.status()),
        Err(e) => eprintln!("unhealthy: {url}: {:#}", anyhow::Error::from(e)),
    }
    Ok(ExitCode::FAILURE)
}
