//! `teams-bridge sign --secret TOKEN [FILE|-]`: the `Authorization` value Teams would send
//! for a body, its bytes signed exactly.

use std::{io::Read, path::Path};

use anyhow::Context as _;

use crate::domain::signature;

/// Prints the header for the file's (or standard input's) bytes.
pub fn run(secret: &str, file: Option<&Path>) -> anyhow::Result<()> {
    let body = read_body(file)?;
    let header = signature::sign(secret, &body).context("--secret")?;
    println!("{header}");
    Ok(())
}

fn read_body(file: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match file {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::read(p).with_context(|| format!("reading {}", p.display()))
        }
        _ => {
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body)?;
            Ok(body)
        }
    }
}
