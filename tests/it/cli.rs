//! The binary's command line: sign, migrate, start-up validation, simulate, healthcheck,
//! logs without secrets, graceful shutdown.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::helpers::*;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_teams-bridge"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

#[test]
fn sign_prints_the_official_header_for_the_contoso_body_from_a_file_and_from_stdin() {
    let path = format!(
        "{}/tests/fixtures/teams/contoso-docs-example.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = bin()
        .args(["sign", "--secret", CONTOSO_TOKEN, &path])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim_end(),
        CONTOSO_HEADER
    );

    let mut child = bin()
        .args(["sign", "-"])
        .env("TEAMS_BRIDGE_SECRET", CONTOSO_TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&fixture("contoso-docs-example.json"))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim_end(),
        CONTOSO_HEADER
    );

    let out = bin()
        .args(["sign", "--secret", "not base64!", &path])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("not base64!"));
}

#[test]
fn invalid_settings_stop_start_up_with_a_message_naming_the_setting_and_no_secret() {
    let secret = "c2VjcmV0LXRva2VuLXZhbHVl!!";
    for (var, value, needle) in [
        (
            "TEAMS_WEBHOOKS",
            format!("contoso={secret}"),
            "TEAMS_WEBHOOKS",
        ),
        ("TEAMS_WEBHOOKS", String::new(), "TEAMS_WEBHOOKS"),
        ("NATS_URL", "localhost:4222".into(), "NATS_URL"),
        ("DATABASE_URL", "mysql://root@db/x".into(), "DATABASE_URL"),
        ("LISTEN_ADDR", "everywhere".into(), "LISTEN_ADDR"),
    ] {
        let mut cmd = bin();
        cmd.arg("serve")
            .env("TEAMS_WEBHOOKS", format!("contoso={CONTOSO_TOKEN}"))
            .env(var, &value);
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{var}={value}: {stderr}");
        assert!(stderr.contains(needle), "{var}: {stderr}");
        assert!(!stderr.contains("panicked"), "{var}: {stderr}");
        assert!(
            !stderr.contains(secret) && !stderr.contains(CONTOSO_TOKEN),
            "{var}: {stderr}"
        );
    }
}

#[tokio::test]
async fn migrate_creates_the_database_and_its_tables() {
    let url = format!("{}/tb_test_{}", pg_base(), unique());
    let _cleanup = Cleanup {
        databases: vec![database_name(&url)],
        streams: vec![],
    };
    let out = bin()
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "select tablename::text from pg_tables where schemaname = 'public' order by 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for t in ["activities", "audit_log", "dead_letters", "outbox"] {
        assert!(tables.iter().any(|x| x == t), "{t} in {tables:?}");
    }
    // Running it again is a no-op.
    assert!(bin()
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .unwrap()
        .status
        .success());
    pool.close().await;
}

#[tokio::test]
async fn simulate_gets_a_reply_from_a_running_service_and_a_duplicate_gets_the_same_receipt() {
    let app = TestApp::spawn().await;
    let url = app.url("/webhooks/contoso");
    let out = tokio::task::spawn_blocking(move || {
        bin()
            .args([
                "simulate",
                "--url",
                &url,
                "--secret",
                CONTOSO_TOKEN,
                "--from",
                "Jane Doe",
                "--duplicate",
            ])
            .arg(r#"update employee E-1042 title="Senior Engineer""#)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("reply: Recorded UPDATE of employee E-1042 (title) — receipt "),
        "{stdout}"
    );
    assert!(lines[0].contains("(200 in "), "{stdout}");
    let receipt = |l: &str| {
        l.split("receipt ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    // The card follows each reply, as Teams shows it.
    assert!(
        lines[1..]
            .iter()
            .any(|l| l.trim() == "|   title: Senior Engineer"),
        "{stdout}"
    );
    let repeat = lines
        .iter()
        .find(|l| l.starts_with("repeat: "))
        .expect("a repeat line");
    assert_eq!(receipt(lines[0]), receipt(repeat));
    assert_eq!(app.activity_count().await, 1);
    let name: String = sqlx::query_scalar("select sender_name from activities")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(name, "Jane Doe");
    app.stop().await;
}

#[tokio::test]
async fn healthcheck_succeeds_against_a_live_service_and_fails_against_nothing() {
    let app = TestApp::spawn().await;
    let url = app.url("/healthz");
    let ok = tokio::task::spawn_blocking(move || {
        bin().args(["healthcheck", "--url", &url]).status().unwrap()
    })
    .await
    .unwrap();
    assert!(ok.success());
    let dead = format!("http://127.0.0.1:{}/healthz", free_port());
    let bad = tokio::task::spawn_blocking(move || {
        bin()
            .args(["healthcheck", "--url", &dead])
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!bad.success());
    app.stop().await;
}

/// Runs `serve` as a real process with JSON debug logs, sends a bad and a good request,
/// stops it with SIGTERM, and reads everything it wrote.
#[tokio::test]
async fn a_full_run_logs_request_ids_and_reasons_but_never_a_token_or_an_expected_mac() {
    let port = free_port();
    let env = test_env(&[
        ("LISTEN_ADDR", &format!("127.0.0.1:{port}")),
        ("LOG_FORMAT", "json"),
    ]);
    let _cleanup = Cleanup::of(&teams_bridge::config::Config::from_map(&env, None).unwrap());
    let mut cmd = bin();
    cmd.arg("serve")
        .envs(&env)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let [stdout, stderr] = drain_output(&mut child);
    let started = Instant::now();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    eventually(
        Duration::from_secs(20),
        "the service to be ready",
        || async {
            let r = http.get(format!("{base}/readyz")).send().await.ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    let ready_after = started.elapsed();

    let good = fixture("contoso-docs-example.json");
    let mut bad = good.clone();
    bad.extend_from_slice(b"\n");
    let expected_mac_for_bad = teams_bridge::domain::signature::sign(CONTOSO_TOKEN, &bad).unwrap();
    let r = http
        .post(format!("{base}/webhooks/contoso"))
        .header("authorization", CONTOSO_HEADER)
        .header("x-request-id", "req-bad-1")
        .body(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{base}/webhooks/contoso"))
        .header("authorization", CONTOSO_HEADER)
        .header("x-request-id", "req-good-1")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "req-good-1");

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let logs = stdout.join().unwrap() + &stderr.join().unwrap();
        (status, logs)
    })
    .await
    .unwrap();
    let (status, logs) = status;
    assert!(
        status.success(),
        "SIGTERM is a graceful, successful stop:\n{logs}"
    );
    assert!(
        logs.contains("req-bad-1") && logs.contains("req-good-1"),
        "request ids appear in the logs"
    );
    assert!(logs.contains("bad_signature"), "the reason is logged");
    assert!(
        logs.contains("4bf92f3577b34da6a3ce929d0e0e4736"),
        "the trace id is logged"
    );
    assert!(
        logs.contains("\"stopped\"") || logs.contains("stopped"),
        "{logs}"
    );
    for secret in [
        CONTOSO_TOKEN,
        expected_mac_for_bad.trim_start_matches("HMAC "),
        "03TCao0i55H1eVKUusZOTZRjtvYTs",
    ] {
        assert!(
            !logs.contains(secret),
            "a secret or MAC leaked into the logs: {secret}"
        );
    }
    for line in logs.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("LOG_FORMAT=json lines are JSON ({e}): {line}"));
    }
    eprintln!("serve was ready {ready_after:?} after start");
    let _ = async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap())
        .delete_stream(&env["NATS_STREAM"])
        .await;
}
