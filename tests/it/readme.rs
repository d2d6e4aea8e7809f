//! Every example in the README runs as written (#13). The snippets are read from README.md
//! itself (each follows a `<!-- readme-test: NAME -->` marker), so they cannot drift from what
//! the tests run; the only changes are the test's own addresses (its port, database, stream and
//! subject prefix, and the debug build's folder for `target/release`). Where the README shows
//! what a block prints, the output must match it line by line in order (`…` matches anything).

use std::{collections::HashMap, path::Path, process::Stdio, time::Duration};

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{helpers::*, seal::Sealed};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The README's tested blocks by name.
fn blocks() -> HashMap<String, String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut found = HashMap::new();
    let mut rest = readme.as_str();
    while let Some(at) = rest.find("<!-- readme-test: ") {
        let after = &rest[at + 18..];
        let name = after[..after.find(" -->").unwrap()].to_string();
        let fence = after.find("```").unwrap();
        let body = &after[fence..];
        let body = &body[body.find('\n').unwrap() + 1..];
        let end = body.find("\n```").unwrap();
        found.insert(name, body[..end].to_string() + "\n");
        rest = &body[end..];
    }
    found
}

/// Every expected line matches an output line, in order; `…` matches anything.
fn matches_in_order(expected: &str, output: &str) -> Result<(), String> {
    let mut lines = output.lines().map(str::trim_end);
    for want in expected.lines().filter(|l| !l.trim().is_empty()) {
        let parts: Vec<&str> = want.trim_end().split('…').collect();
        let fits = |line: &str| {
            let mut at = 0;
            for (i, part) in parts.iter().enumerate() {
                match line[at..].find(part) {
                    Some(0) => at += part.len(),
                    Some(n) if i > 0 => at += n + part.len(),
                    _ => return false,
                }
            }
            parts.last().is_some_and(|p| p.is_empty()) || at == line.len()
        };
        if !lines.any(fits) {
            return Err(format!("no line (in order) matches {want:?} in:\n{output}"));
        }
    }
    Ok(())
}

async fn bash(script: &str, env: &[(&str, String)]) -> String {
    let out = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(root())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "the README's block failed:\n{script}\n{stdout}\n{stderr}"
    );
    stdout
}

fn bin_dir() -> String {
    let exe = Path::new(env!("CARGO_BIN_EXE_teams-bridge"));
    exe.parent().unwrap().display().to_string()
}

#[tokio::test]
async fn the_quick_start_runs_as_written_and_prints_what_it_shows() {
    let b = blocks();
    let s = Sealed::start().await;
    let addr = s
        .app
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let local = |script: &str| {
        script
            .replace("$PWD/target/release", &bin_dir())
            .replace("127.0.0.1:3978", &addr)
    };
    // The blocks run in one terminal, one after the other: the first one's PATH holds.
    let path = format!(
        "{}:{}",
        bin_dir(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [
        ("PATH", path),
        ("TEAMS_BRIDGE_URL", s.app.url("/webhooks/contoso")),
        (
            "AUDIT_API_TOKEN",
            "test-audit-token-0123456789abcdef0123".to_string(),
        ),
        (
            "DATABASE_URL",
            s.app.config.database_url.expose().to_string(),
        ),
    ];
    let out = bash(&local(&b["try"]), &env).await;
    matches_in_order(&b["try output"], &out).unwrap();
    s.wait_sealed().await;
    let database = database_name(s.app.config.database_url.expose());
    let read = local(&b["read"]).replace(" teams_bridge ", &format!(" {database} "));
    let out = bash(&read, &env).await;
    matches_in_order(&b["read output"], &out).unwrap();
    s.stop().await;
}

#[tokio::test]
async fn the_python_consumer_prints_each_activity_and_waits_through_quiet_periods() {
    let python = root().join("target/contract-venv/bin/python");
    assert!(
        python.exists(),
        "nats-py is not installed: run scripts/test.sh"
    );
    let app = TestApp::spawn().await;
    let b = blocks();
    let prefix = &app.config.subject_prefix;
    let script = b["python"]
        .replace("\"TEAMS\"", &format!("\"{}\"", app.config.stream_name))
        .replace("\"teams.*.message\"", &format!("\"{prefix}.*.message\""));
    let mut child = tokio::process::Command::new(&python)
        .args(["-u", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut errors = child.stderr.take().unwrap();
    let post = |id: &str| {
        let body = serde_json::to_vec(&serde_json::json!({"type": "message", "id": id,
            "text": format!("<at>HR</at> update employee E-1042 title={id}"), "from": {"name": "Jane Doe"}}))
        .unwrap();
        let app = &app;
        async move {
            let r = app.post_signed("contoso", &body).await;
            assert_eq!(r.status(), 200);
            let reply: serde_json::Value = r.json().await.unwrap();
            reply["text"]
                .as_str()
                .unwrap()
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string()
        }
    };
    for id in ["first", "after-a-quiet-period"] {
        let receipt = post(id).await;
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the consumer printed the activity")
            .unwrap()
            .expect("the consumer is still running");
        assert!(
            line.starts_with(&receipt) && line.contains("Jane Doe") && line.contains(id),
            "{line}"
        );
        // Longer than the snippet's 5 s fetch: the consumer must wait through it.
        tokio::time::sleep(Duration::from_secs(7)).await;
    }
    if let Some(status) = child.try_wait().unwrap() {
        let mut err = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut errors, &mut err)
            .await
            .unwrap();
        panic!("the consumer stopped after a quiet period ({status}):\n{err}");
    }
    child.kill().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn the_toml_example_starts_the_service_and_a_broken_one_names_the_file() {
    let b = blocks();
    let (config, _cleanup) = test_config(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("teams-bridge.toml");
    std::fs::write(&file, &b["toml"]).unwrap();
    let serve = |file: &Path| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_teams-bridge"))
            .args(["--config", file.to_str().unwrap(), "serve"])
            .env_clear()
            .env("DATABASE_URL", config.database_url.expose())
            .env("NATS_STREAM", &config.stream_name)
            .env("NATS_SUBJECT_PREFIX", &config.subject_prefix)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut child = serve(&file);
    let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = log.next_line().await.unwrap() {
            if line.contains("listening") {
                return true;
            }
        }
        false
    });
    assert!(
        listening.await.unwrap_or(false),
        "the README's TOML starts `serve`"
    );
    child.kill().await.unwrap();
    let broken = b["toml"].replace("vqF0En+Z0ucuRTM", "not base64!");
    std::fs::write(&file, broken).unwrap();
    let out = serve(&file).wait_with_output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("invalid setting [[webhook]] (config file)"),
        "{err}"
    );
}

#[test]
fn the_output_matcher_can_fail() {
    assert!(matches_in_order("a … c", "x\na b c\n").is_ok());
    assert!(
        matches_in_order("a … c\nd", "d\na b c\n").is_err(),
        "in order"
    );
    assert!(matches_in_order("exact", "exactly").is_err());
}
