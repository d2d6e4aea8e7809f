//! Hostile clients, poison messages and safe defaults (#10): each test here fails without
//! the fix it names.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde_json::Value;

use crate::helpers::*;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_teams-bridge"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

fn message(id: &str, text: &str) -> Vec<u8> {
    format!(r#"{{"type":"message","id":"{id}","text":"<at>HR</at> {text}","from":{{"name":"Jane Doe"}}}}"#)
        .into_bytes()
}

/// Stores an activity whose body is larger than the NATS server will ever take, as rows
/// committed under an earlier, larger limit would be.
async fn store_unpublishable(app: &TestApp, size: usize) -> uuid::Uuid {
    let id = uuid::Uuid::now_v7();
    let raw = format!(
        r#"{{"type":"message","id":"huge","text":"{}"}}"#,
        "x".repeat(size)
    );
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query(
        "insert into activities (event_id, webhook, activity_id, activity_type, raw)
         values ($1, 'contoso', 'huge', 'message', $2)",
    )
    .bind(id)
    .bind(raw.as_bytes())
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("insert into outbox (event_id) values ($1)")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

/// Finding 3: one row JetStream refuses must not stop publishing. It backs off, moves to
/// `outbox_dead` after RELAY_MAX_REFUSALS, and every other row keeps flowing meanwhile.
#[tokio::test]
async fn a_row_jetstream_refuses_moves_to_outbox_dead_and_the_rows_behind_it_keep_flowing() {
    let nats = PrivateNats::start_with("max_payload: 8192");
    let app = TestApp::spawn_with(&[
        ("NATS_URL", &nats.url()),
        ("BODY_LIMIT_BYTES", "2048"),
        ("RELAY_MAX_REFUSALS", "2"),
    ])
    .await;
    let poison = store_unpublishable(&app, 20_000).await;
    for i in 0..20 {
        let body = message(&format!("ok-{i}"), &format!("view employee E-{i}"));
        assert_eq!(app.post_signed("contoso", &body).await.status(), 200);
    }
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let stream = app.config.stream_name.clone();
    eventually(
        Duration::from_secs(20),
        "the 20 good rows on the stream",
        || {
            let js = js.clone();
            let stream = stream.clone();
            async move {
                let mut s = js.get_stream(&stream).await.ok()?;
                (s.info().await.ok()?.state.messages == 20).then_some(())
            }
        },
    )
    .await;
    let dead: (uuid::Uuid, i32, String) = eventually(
        Duration::from_secs(20),
        "the refused row in outbox_dead",
        || async {
            sqlx::query_as("select event_id, attempts, last_error from outbox_dead")
                .fetch_optional(&app.pool)
                .await
                .unwrap()
        },
    )
    .await;
    assert_eq!(dead.0, poison);
    assert!(
        dead.1 >= 2,
        "it was tried at least RELAY_MAX_REFUSALS times: {dead:?}"
    );
    assert!(
        dead.2.contains("max payload"),
        "the reason is kept: {}",
        dead.2
    );
    assert_eq!(app.outbox_count().await, 0);
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("teams_bridge_outbox_dead_total 1"),
        "{metrics}"
    );
    app.stop().await;
}

/// Finding 3: a body limit whose bodies the NATS server could never carry is refused at
/// start, naming both numbers.
#[tokio::test]
async fn a_body_limit_the_nats_server_could_never_carry_is_refused_at_start() {
    let nats = PrivateNats::start_with("max_payload: 8192");
    let env = test_env(&[("NATS_URL", &nats.url()), ("BODY_LIMIT_BYTES", "65536")]);
    let config = teams_bridge::config::Config::from_map(&env, None).unwrap();
    let _cleanup = Cleanup::of(&config);
    let err = match teams_bridge::app::Application::build(config).await {
        Ok(_) => panic!("the service must refuse to start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("BODY_LIMIT_BYTES") && err.contains("65536"),
        "{err}"
    );
    assert!(err.contains("8192"), "{err}");
}

/// Finding 11: a repeat is answered from the stored activity, not from its own text.
#[tokio::test]
async fn a_repeat_delivery_is_answered_from_what_was_stored() {
    let app = TestApp::spawn().await;
    let first = message("same-id", "update employee E-1 title=Engineer");
    let reply: Value = app
        .post_signed("contoso", &first)
        .await
        .json()
        .await
        .unwrap();
    let forged = message("same-id", "delete employee E-666");
    let again: Value = app
        .post_signed("contoso", &forged)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        again["text"], reply["text"],
        "the receipt of what was stored"
    );
    assert!(reply["text"]
        .as_str()
        .unwrap()
        .contains("UPDATE of employee E-1 "));
    assert_eq!(app.activity_count().await, 1);
    app.stop().await;
}

/// Finding 8: text typed in Teams cannot run as a spreadsheet formula or drive a terminal.
#[tokio::test]
async fn csv_and_table_output_cannot_be_turned_against_their_reader() {
    let app = TestApp::spawn().await;
    sqlx::query(
        "insert into audit_log (event_id, webhook, actor_name, operation, message, activity_at)
         values ($1, 'contoso', '@evil', 'note', $2, now())",
    )
    .bind(uuid::Uuid::now_v7())
    .bind("=HYPERLINK(\"http://evil\",\"x\") \u{1b}[2J\u{7}")
    .execute(&app.pool)
    .await
    .unwrap();
    let run = |format: &str| {
        let out = bin()
            .args(["audit", "--format", format])
            .env("DATABASE_URL", app.config.database_url.expose())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let csv = run("csv");
    assert!(
        csv.contains("'@evil") && csv.contains("\"'=HYPERLINK("),
        "{csv}"
    );
    assert!(
        !csv.contains(",=HYPERLINK") && !csv.contains(",@evil"),
        "{csv}"
    );
    let table = run("table");
    assert!(
        !table.contains('\u{1b}') && !table.contains('\u{7}'),
        "{table:?}"
    );
    assert!(table.contains("@evil"), "{table}");
    let json = run("json");
    assert!(json.contains("\\u001b[2J"), "JSON stays exact: {json}");
    app.stop().await;
}

/// Finding 10: every out-of-range filter is a 400 naming its parameter, the bearer scheme is
/// case-insensitive, and refused calls are counted.
#[tokio::test]
async fn api_edges_are_400s_the_scheme_is_case_insensitive_and_refusals_are_counted() {
    let app = TestApp::spawn().await;
    let get = |path: &str, auth: &str| {
        app.http
            .get(app.url(path))
            .header("authorization", auth.to_string())
            .send()
    };
    let token = app
        .config
        .audit_api_token
        .as_ref()
        .unwrap()
        .expose()
        .clone();
    // A well-formed cursor whose time no database holds (146,000 years from now).
    let far = format!("{}|{}", i64::MAX / 2, uuid::Uuid::nil());
    let cursor = format!("/api/audit?cursor={}", URL_SAFE_NO_PAD.encode(far));
    for (path, param) in [
        ("/api/audit?since=13000000w", "since"),
        ("/api/audit?until=13000000w", "until"),
        (cursor.as_str(), "cursor"),
    ] {
        let r = get(path, &format!("Bearer {token}")).await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().contains(param), "{body}");
    }
    let r = get("/api/audit", &format!("bearer {token}")).await.unwrap();
    assert_eq!(r.status(), 200, "the scheme is case-insensitive");
    let r = get("/api/audit", &format!("Bearer {token}x"))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("teams_bridge_api_refused_total{reason=\"wrong_token\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("teams_bridge_api_refused_total{reason=\"bad_parameter\"}"),
        "{metrics}"
    );
    app.stop().await;
}

/// Finding 6: an existing stream keeps what an operator set; a new one gets the limits.
#[tokio::test]
async fn an_existing_stream_is_never_rewritten_and_a_new_one_gets_the_limits() {
    let (config, _cleanup) = test_config(&[]);
    let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: config.stream_name.clone(),
        subjects: vec![format!("{}.>", config.subject_prefix)],
        max_messages: 1000,
        ..Default::default()
    })
    .await
    .unwrap();
    teams_bridge::infra::nats::ensure_stream(&js, &config)
        .await
        .unwrap();
    let mut s = js.get_stream(&config.stream_name).await.unwrap();
    let kept = s.info().await.unwrap().config.clone();
    assert_eq!(kept.max_messages, 1000, "the operator's limit stays");
    assert_eq!(
        kept.max_age,
        Duration::ZERO,
        "and nothing is changed behind their back"
    );

    let (fresh, _fresh_cleanup) = test_config(&[("NATS_STREAM_MAX_AGE", "2d")]);
    teams_bridge::infra::nats::ensure_stream(&js, &fresh)
        .await
        .unwrap();
    let mut s = js.get_stream(&fresh.stream_name).await.unwrap();
    let made = s.info().await.unwrap().config.clone();
    assert_eq!(made.max_age, Duration::from_secs(2 * 86_400));
    assert_eq!(made.num_replicas, 1);

    let (other, _other_cleanup) = test_config(&[("NATS_STREAM", &config.stream_name)]);
    let err = teams_bridge::infra::nats::ensure_stream(&js, &other)
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("does not hold the subjects"),
        "{err:#}"
    );
}

/// Finding 2: no request-controlled byte starts a log line or fakes a field, request ids are
/// checked, unknown names are not echoed and are throttled, and refusal lines keep the
/// request's fields when the filter is `warn`.
#[tokio::test]
async fn no_request_byte_starts_a_log_line_and_unknown_names_are_throttled() {
    let port = free_port();
    let env = test_env(&[("LISTEN_ADDR", &format!("127.0.0.1:{port}"))]);
    let _cleanup = Cleanup::of(&teams_bridge::config::Config::from_map(&env, None).unwrap());
    let mut child = bin()
        .arg("serve")
        .envs(&env)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let [stdout, stderr] = drain_output(&mut child);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(20), "the service to answer", || async {
        let r = http.get(format!("{base}/healthz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let post = |path: String, request_id: &'static str| {
        http.post(format!("{base}{path}"))
            .header("x-request-id", request_id)
            .body("{}")
            .send()
    };
    let r = post(
        "/webhooks/a%0Afake%20line%20level=ERROR".into(),
        "id with spaces=1",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    assert_ne!(r.headers()["x-request-id"], "id with spaces=1");
    let long = "n".repeat(5000);
    for _ in 0..50 {
        assert_eq!(
            post(format!("/webhooks/{long}"), "ok-id")
                .await
                .unwrap()
                .status(),
            401
        );
    }
    let r = post("/webhooks/contoso".into(), "req-missing-sig")
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let logs = tokio::task::spawn_blocking(move || {
        child.wait().unwrap();
        stderr.join().unwrap() + &stdout.join().unwrap()
    })
    .await
    .unwrap();
    assert!(!logs.lines().any(|l| l.starts_with("fake")), "{logs}");
    assert!(
        !logs.contains("fake line") && !logs.contains("id with spaces"),
        "{logs}"
    );
    assert!(!logs.contains(&long[..100]), "long names are not echoed");
    let unknown = logs
        .lines()
        .filter(|l| l.contains("unknown webhook"))
        .count();
    assert!(
        (1..=5).contains(&unknown),
        "unknown names are throttled: {unknown} lines\n{logs}"
    );
    let refused = logs.lines().find(|l| l.contains("req-missing-sig"));
    let refused =
        refused.unwrap_or_else(|| panic!("the refusal keeps its request id at warn:\n{logs}"));
    assert!(
        refused.contains("trace_id=") && refused.contains("webhook=contoso"),
        "{refused}"
    );
}

/// Recovery: a deleted stream is refilled from Postgres by `teams-bridge replay`, with exactly
/// one message per activity, while the service runs.
#[tokio::test]
async fn replay_refills_a_deleted_stream_with_one_message_per_activity() {
    let app = TestApp::spawn().await;
    for i in 0..12 {
        let body = message(&format!("r-{i}"), &format!("view employee E-{i}"));
        assert_eq!(app.post_signed("contoso", &body).await.status(), 200);
    }
    app.wait_outbox_empty(Duration::from_secs(10)).await;
    app.js.delete_stream(&app.config.stream_name).await.unwrap();
    let run = |args: &[&str]| {
        let out = bin()
            .arg("replay")
            .args(args)
            .env("DATABASE_URL", app.config.database_url.expose())
            .env("NATS_URL", nats_url())
            .env("NATS_STREAM", &app.config.stream_name)
            .env("NATS_SUBJECT_PREFIX", &app.config.subject_prefix)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        run(&["--all", "--dry-run"]).trim(),
        "would queue 12 activities (dry run: nothing changed)"
    );
    assert_eq!(app.outbox_count().await, 0, "a dry run changes nothing");
    assert_eq!(
        run(&["--all"]).trim(),
        "queued 12 activities for publishing"
    );
    app.wait_outbox_empty(Duration::from_secs(15)).await;
    assert_eq!(app.stream_messages().await, 12);
    // Again: the repeats are inside the duplicate window and JetStream drops them.
    run(&["--webhook", "contoso"]);
    app.wait_outbox_empty(Duration::from_secs(15)).await;
    assert_eq!(app.stream_messages().await, 12);
    assert_eq!(
        run(&["--dead"]).trim(),
        "queued 0 dead outbox rows for publishing"
    );
    app.stop().await;
}

/// Finding 9: no configuration error echoes a secret or a rejected value.
#[tokio::test]
async fn configuration_errors_never_echo_a_secret_or_a_rejected_value() {
    let cases = [
        ("TEAMS_WEBHOOKS", CONTOSO_TOKEN.to_string()),
        ("DATABASE_POOL_SIZE", "hunter2".to_string()),
        ("RUST_LOG", "hunter2=[".to_string()),
        ("NATS_URL", "hunter2://user:pw@x".to_string()),
        ("AUDIT_API_TOKEN", "hunter2".to_string()),
    ];
    for (name, value) in cases {
        let out = bin().arg("serve").env(name, &value).output().unwrap();
        assert!(!out.status.success(), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("invalid setting {name}")),
            "{name}: {stderr}"
        );
        let echoed = [&value[..], &value[..value.len().min(12)], "hunter2", "pw@x"];
        assert!(
            !echoed.iter().any(|v| stderr.contains(v)),
            "{name} echoed: {stderr}"
        );
    }
}

/// Finding 7: `serve` refuses the token published in Microsoft's documentation unless
/// DEV_MODE=1, which the tests and `scripts/run.sh` set.
#[test]
fn serve_refuses_the_published_test_token_outside_dev_mode() {
    let out = bin()
        .arg("serve")
        .env("TEAMS_WEBHOOKS", format!("contoso={CONTOSO_TOKEN}"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("invalid setting TEAMS_WEBHOOKS") && stderr.contains("DEV_MODE=1"),
        "{stderr}"
    );
    assert!(!stderr.contains(CONTOSO_TOKEN), "{stderr}");
}

/// Finding 5: ready means "can verify and commit now": a Postgres that does not answer makes
/// the replica unready within seconds; `/readyz` and `/metrics` can live on their own listener.
#[tokio::test]
async fn readiness_follows_postgres_and_admin_routes_can_leave_the_public_listener() {
    let (port, mode) = pg_proxy().await;
    let db = format!("postgres://postgres@127.0.0.1:{port}/tb_test_{}", unique());
    let app =
        TestApp::spawn_with(&[("DATABASE_URL", &db), ("ADMIN_LISTEN_ADDR", "127.0.0.1:0")]).await;
    let admin = format!("http://{}", app.admin.expect("an admin listener"));
    let public = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(
        public.status(),
        404,
        "metrics are not public when an admin listener is set"
    );
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics = app
        .http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let ready = |expect: u16| {
        let (http, url) = (app.http.clone(), format!("{admin}/readyz"));
        async move {
            let r = http.get(url).send().await.ok()?;
            (r.status() == expect).then_some(())
        }
    };
    eventually(Duration::from_secs(10), "ready", || ready(200)).await;
    mode.send(Mode::Refuse).unwrap();
    eventually(Duration::from_secs(10), "unready without Postgres", || {
        ready(503)
    })
    .await;
    mode.send(Mode::Forward).unwrap();
    eventually(Duration::from_secs(15), "ready again", || ready(200)).await;
    app.stop().await;
}

/// Finding 4: a 503 is only ever sent for a request that is not and will not be stored. With
/// a Postgres that stalls and refuses under load, every 200's activity is stored and every
/// 503's is not, after recovery.
#[tokio::test]
async fn under_a_stalling_postgres_every_503_is_absent_and_every_200_present() {
    let (port, mode) = pg_proxy().await;
    let db = format!("postgres://postgres@127.0.0.1:{port}/tb_test_{}", unique());
    let app = TestApp::spawn_with(&[("DATABASE_URL", &db), ("REPLY_BUDGET_MS", "1500")]).await;
    assert_eq!(
        app.post_signed("contoso", &message("warm", "hello"))
            .await
            .status(),
        200
    );
    let senders = (0..60).map(|i| {
        let (http, url) = (app.http.clone(), app.url("/webhooks/contoso"));
        async move {
            tokio::time::sleep(Duration::from_millis(100 * i)).await;
            let id = format!("slow-{i}");
            let body = message(&id, "view employee E-1");
            let auth = teams_bridge::domain::signature::sign(CONTOSO_TOKEN, &body).unwrap();
            let r = http
                .post(url)
                .header("authorization", auth)
                .body(body)
                .send()
                .await;
            (id, r.map(|r| r.status().as_u16()).unwrap_or(0))
        }
    });
    let faults = async {
        for (after, m) in [
            (800, Mode::Stall),
            (1500, Mode::Forward),
            (900, Mode::Refuse),
            (900, Mode::Forward),
            (700, Mode::Stall),
            (1200, Mode::Forward),
        ] {
            tokio::time::sleep(Duration::from_millis(after)).await;
            mode.send(m).unwrap();
        }
    };
    let (answers, ()) = tokio::join!(futures::future::join_all(senders), faults);
    mode.send(Mode::Forward).unwrap();
    let stored: Vec<String> = eventually(Duration::from_secs(20), "Postgres back", || async {
        sqlx::query_scalar("select activity_id from activities where activity_id like 'slow-%'")
            .fetch_all(&app.pool)
            .await
            .ok()
    })
    .await;
    let (mut ok, mut refused) = (0, 0);
    for (id, status) in &answers {
        match status {
            200 => {
                ok += 1;
                assert!(
                    stored.contains(id),
                    "{id} was answered 200 but is not stored"
                );
            }
            503 => {
                refused += 1;
                assert!(!stored.contains(id), "{id} was answered 503 but is stored");
            }
            500 => {} // the outcome was lost with the connection; either is true
            other => panic!("{id}: unexpected status {other}"),
        }
    }
    assert!(
        ok > 0 && refused > 0,
        "the faults were felt: {ok} stored, {refused} refused"
    );
    app.stop().await;
}
