//! The HR audit worker and the ways people read the audit log.

use std::{process::Command, time::Duration};

use serde_json::Value;
use teams_bridge::{
    app, audit,
    domain::event::Event,
    worker::{hr_audit::HrAudit, Handler},
};
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

fn hr_message(id: &str, text: &str, who: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": "message",
        "id": id,
        "timestamp": "2026-11-27T10:00:00.123Z",
        "text": format!("<at>HR Audit</at>&nbsp;{text}\n"),
        "from": {"id": "29:x", "name": who, "aadObjectId": format!("aad-{}", who.to_lowercase().replace(' ', "-"))},
        "conversation": {"id": "19:chan@thread.tacv2;messageid=1"},
        "channelData": {"team": {"id": "team-1"}, "channel": {"id": "chan-1"}, "tenant": {"id": "tenant-1"}}
    }))
    .unwrap()
}

struct RunningWorker {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start_worker(app: &TestApp) -> RunningWorker {
    let worker = app::hr_audit_worker(&app.config)
        .await
        .expect("worker connects");
    assert!(worker.heartbeat().age() < Duration::from_secs(5));
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move { worker.run(s).await });
    RunningWorker { stop, task }
}

impl RunningWorker {
    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

async fn audit_count(app: &TestApp) -> i64 {
    app.count("audit_log").await
}

async fn wait_audit_count(app: &TestApp, n: i64, within: Duration) {
    eventually(within, &format!("{n} audit rows"), || async {
        (audit_count(app).await == n).then_some(())
    })
    .await;
}

fn cli(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_teams-bridge"))
        .args(args)
        .env_clear()
        .env("DATABASE_URL", app.config.database_url.expose())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test]
async fn an_update_flows_from_a_signed_post_to_the_reply_the_audit_log_the_cli_and_the_api() {
    let app = TestApp::spawn().await;
    let worker = start_worker(&app).await;
    let body = hr_message(
        "a-1",
        r#"update employee E-1042 title="Senior Engineer" salary_band=7"#,
        "Jane Doe",
    );
    let resp = app.post_signed("contoso", &body).await;
    assert_eq!(resp.status(), 200);
    let reply: Value = resp.json().await.unwrap();
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.starts_with("Recorded UPDATE of employee E-1042 (title, salary_band) — receipt "),
        "{text}"
    );
    let receipt = text.rsplit(' ').next().unwrap().to_string();

    wait_audit_count(&app, 1, Duration::from_secs(5)).await;
    let row: audit::AuditEntry = sqlx::query_as("select * from audit_log")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        row.event_id.to_string(),
        receipt,
        "the audit row carries the receipt the user saw"
    );
    assert_eq!(row.operation, "update");
    assert_eq!(row.entity.as_deref(), Some("employee"));
    assert_eq!(row.record_id.as_deref(), Some("E-1042"));
    assert_eq!(
        row.changes,
        serde_json::json!({"title": "Senior Engineer", "salary_band": "7"})
    );
    assert_eq!(
        row.message,
        r#"update employee E-1042 title="Senior Engineer" salary_band=7"#
    );
    assert_eq!(row.actor_name.as_deref(), Some("Jane Doe"));
    assert_eq!(row.actor_aad_object_id.as_deref(), Some("aad-jane-doe"));
    assert_eq!(
        (
            row.team_id.as_deref(),
            row.channel_id.as_deref(),
            row.tenant_id.as_deref()
        ),
        (Some("team-1"), Some("chan-1"), Some("tenant-1"))
    );
    assert_eq!(
        row.activity_at.to_rfc3339(),
        "2026-11-27T10:00:00.123+00:00"
    );

    let (ok, out, err) = cli(&app, &["audit", "--record", "E-1042", "--format", "json"]);
    assert!(ok, "{err}");
    let entries: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 1);
    assert_eq!(entries[0]["event_id"], receipt.as_str());

    let api: Value = app
        .http
        .get(app.url("/api/audit?record=E-1042"))
        .bearer_auth("test-audit-token-0123456789abcdef0123")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api["entries"][0]["event_id"], receipt.as_str());
    assert_eq!(api["entries"][0]["operation"], "update");
    worker.stop().await;
    app.stop().await;
}

/// Posts `body` (200), waits until it is on the stream, and returns the last message there
/// with the event the worker decodes from it.
async fn posted_and_published(
    app: &TestApp,
    body: &[u8],
) -> (async_nats::jetstream::Message, Event) {
    assert_eq!(app.post_signed("contoso", body).await.status(), 200);
    app.wait_outbox_empty(Duration::from_secs(10)).await;
    let m = app.read_stream().await.pop().unwrap();
    let event = Event::decode(m.subject.as_str(), m.headers.as_ref(), m.payload.clone()).unwrap();
    (m, event)
}

#[tokio::test]
async fn duplicate_deliveries_redeliveries_and_a_crash_before_ack_give_one_row() {
    let app = TestApp::spawn().await;
    let body = hr_message("dup-1", "view employee E-7", "Ann");
    assert_eq!(app.post_signed("contoso", &body).await.status(), 200);
    let (original, event) = posted_and_published(&app, &body).await;

    // A crash between the worker's commit and its ack: the entry is already committed when
    // the message arrives (again).
    let handler = HrAudit {
        pool: app.pool.clone(),
    };
    assert_eq!(
        handler.handle(std::slice::from_ref(&event)).await,
        vec![Ok(())]
    );
    // A second copy of the same event on the stream (another publisher, a replay).
    let mut headers = original.headers.clone().unwrap();
    headers.insert("Nats-Msg-Id", "replayed-copy");
    app.js
        .publish_with_headers(original.subject.clone(), headers, original.payload.clone())
        .await
        .unwrap()
        .await
        .unwrap();

    let worker = start_worker(&app).await;
    eventually(Duration::from_secs(10), "the consumer to drain", || async {
        let mut c: async_nats::jetstream::consumer::PullConsumer = app
            .js
            .get_stream(&app.config.stream_name)
            .await
            .ok()?
            .get_consumer(&app.config.hr_audit_consumer)
            .await
            .ok()?;
        let info = c.info().await.ok()?;
        (info.num_pending == 0 && info.num_ack_pending == 0 && info.delivered.stream_sequence >= 2)
            .then_some(())
    })
    .await;
    assert_eq!(audit_count(&app).await, 1);
    worker.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_after_bounded_deliveries_and_acked() {
    let app = TestApp::spawn_with(&[("WORKER_MAX_DELIVERIES", "3")]).await;
    let mut headers = async_nats::HeaderMap::new();
    let id = uuid::Uuid::now_v7().to_string();
    headers.insert("ce-id", id.as_str());
    headers.insert("Nats-Msg-Id", id.as_str());
    let subject = format!("{}.contoso.message", app.config.subject_prefix);
    app.js
        .publish_with_headers(subject.clone(), headers, "this is not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    // And one that is JSON but has nobody to attribute it to.
    let mut h2 = async_nats::HeaderMap::new();
    h2.insert("ce-id", uuid::Uuid::now_v7().to_string().as_str());
    app.js
        .publish_with_headers(
            subject,
            h2,
            r#"{"type":"message","text":"delete employee E-1"}"#.into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();

    let worker = start_worker(&app).await;
    let rows: Vec<(String, i64, Vec<u8>, Option<String>)> =
        eventually(Duration::from_secs(20), "two dead letters", || async {
            let rows: Vec<(String, i64, Vec<u8>, Option<String>)> = sqlx::query_as(
                "select reason, deliveries, raw, event_id from dead_letters order by stream_seq",
            )
            .fetch_all(&app.pool)
            .await
            .unwrap();
            (rows.len() == 2).then_some(rows)
        })
        .await;
    assert!(rows[0].0.contains("not an activity"), "{}", rows[0].0);
    assert_eq!(
        rows[0].1, 3,
        "dead-lettered on the bounded delivery, not before"
    );
    assert_eq!(rows[0].2, b"this is not json");
    assert_eq!(rows[0].3.as_deref(), Some(id.as_str()));
    assert!(rows[1].0.contains("no sender"), "{}", rows[1].0);
    // Acked: nothing left for the consumer, nothing redelivered into a third row.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let n: i64 = app.count("dead_letters").await;
    assert_eq!(n, 2);
    assert_eq!(audit_count(&app).await, 0);
    worker.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_worker_stopped_and_restarted_mid_stream_loses_and_duplicates_nothing() {
    let app = TestApp::spawn_with(&[("WORKER_BATCH", "10")]).await;
    let bodies: Vec<Vec<u8>> = (0..300)
        .map(|i| {
            hr_message(
                &format!("r-{i}"),
                &format!("update employee E-{i} band={i}"),
                "Bob",
            )
        })
        .collect();
    for chunk in bodies.chunks(50) {
        let rs =
            futures::future::join_all(chunk.iter().map(|b| app.post_signed("contoso", b))).await;
        assert!(rs.iter().all(|r| r.status() == 200));
    }
    let first = start_worker(&app).await;
    eventually(Duration::from_secs(10), "some progress", || async {
        (audit_count(&app).await > 0).then_some(())
    })
    .await;
    first.stop().await;
    let after_stop = audit_count(&app).await;
    assert!(
        after_stop > 0 && after_stop <= 300,
        "stopped after {after_stop} of 300"
    );
    // Two workers of the same name share what is left.
    let (a, b) = (start_worker(&app).await, start_worker(&app).await);
    wait_audit_count(&app, 300, Duration::from_secs(20)).await;
    let distinct: i64 = sqlx::query_scalar("select count(distinct record_id) from audit_log")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(distinct, 300);
    a.stop().await;
    b.stop().await;
    app.stop().await;
}

async fn seed(app: &TestApp) {
    let rows = [
        (
            "create employee E-1 name=\"Jane Doe\" dept=Finance",
            "Alice",
            "2026-11-01T09:00:00Z",
            "team-a",
            "chan-1",
        ),
        (
            "update employee E-1 title=\"Lead, \\\"Ops\\\"\"",
            "Bob",
            "2026-11-10T09:00:00Z",
            "team-a",
            "chan-2",
        ),
        (
            "view employee E-1",
            "alice",
            "2026-11-11T09:00:00Z",
            "team-b",
            "chan-3",
        ),
        (
            "delete employee E-2 reason=\"left the company\"",
            "Bob",
            "2026-11-20T09:00:00Z",
            "team-a",
            "chan-1",
        ),
        (
            "what is the policy on leave?",
            "Carol",
            "2026-11-21T09:00:00Z",
            "team-b",
            "chan-3",
        ),
    ];
    let handler = HrAudit {
        pool: app.pool.clone(),
    };
    for (i, (text, who, at, team, chan)) in rows.iter().enumerate() {
        let body = serde_json::json!({
            "type": "message", "id": format!("s-{i}"), "timestamp": at,
            "text": format!("<at>HR</at> {text}"),
            "from": {"name": who, "aadObjectId": format!("aad-{}", who.to_lowercase())},
            "channelData": {"team": {"id": team}, "channel": {"id": chan}}
        });
        let event = Event {
            event_id: uuid::Uuid::now_v7(),
            webhook: "contoso".into(),
            subject: "t.contoso.message".into(),
            time: None,
            traceparent: None,
            body: serde_json::to_vec(&body).unwrap().into(),
        };
        assert_eq!(handler.handle(&[event]).await, vec![Ok(())]);
    }
}

#[tokio::test]
async fn the_cli_filters_and_formats_the_audit_log() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let records = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["audit", "--format", "json"];
        all.extend_from_slice(args);
        let (ok, out, err) = cli(&app, &all);
        assert!(ok, "{args:?}: {err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{}:{}",
                    e["operation"].as_str().unwrap(),
                    e["record_id"].as_str().unwrap_or("-")
                )
            })
            .collect()
    };
    assert_eq!(
        records(&["--record", "E-1"]),
        ["read:E-1", "update:E-1", "create:E-1"],
        "newest first"
    );
    assert_eq!(
        records(&["--actor", "ALICE"]),
        ["read:E-1", "create:E-1"],
        "names match case-insensitively"
    );
    assert_eq!(
        records(&["--actor", "aad-bob"]),
        ["delete:E-2", "update:E-1"]
    );
    assert_eq!(records(&["--operation", "delete"]), ["delete:E-2"]);
    assert_eq!(
        records(&["--team", "team-b", "--channel", "chan-3"]),
        ["note:-", "read:E-1"]
    );
    assert_eq!(
        records(&["--since", "2026-11-10", "--until", "2026-11-20"]),
        ["read:E-1", "update:E-1"]
    );
    assert_eq!(records(&["--limit", "2"]).len(), 2);
    assert!(
        records(&["--record", "'; drop table audit_log; --"]).is_empty(),
        "a hostile value is just a value"
    );
    assert_eq!(audit_count(&app).await, 5);

    let (ok, csv_out, _) = cli(
        &app,
        &[
            "audit",
            "--format",
            "csv",
            "--record",
            "E-1",
            "--operation",
            "update",
        ],
    );
    assert!(ok);
    let mut reader = csv::Reader::from_reader(csv_out.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    let changes = &rows[0][headers.iter().position(|h| h == "changes").unwrap()];
    assert_eq!(
        serde_json::from_str::<Value>(changes).unwrap()["title"],
        "Lead, \"Ops\"",
        "quotes and commas survive CSV"
    );

    let (ok, table, _) = cli(&app, &["audit"]);
    assert!(ok);
    assert!(table.starts_with("WHEN (UTC)"), "{table}");
    assert!(table.contains("(5 entries)"));
    assert!(
        table.lines().all(|l| l.chars().count() <= 120),
        "fits a terminal:\n{table}"
    );

    let (ok, _, err) = cli(&app, &["audit", "--operation", "promote"]);
    assert!(!ok && err.contains("--operation"), "{err}");
    let (ok, _, err) = cli(&app, &["audit", "--since", "last tuesday"]);
    assert!(!ok && err.contains("--since"), "{err}");
    app.stop().await;
}

#[tokio::test]
async fn the_http_api_authenticates_filters_and_pages() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let get = |q: &str, token: Option<&str>| {
        let mut r = app.http.get(app.url(&format!("/api/audit{q}")));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(get("", None).await.unwrap().status(), 401);
    assert_eq!(get("", Some("wrong")).await.unwrap().status(), 401);
    assert_eq!(get("", Some("")).await.unwrap().status(), 401);
    let t = Some("test-audit-token-0123456789abcdef0123");

    let mut seen = Vec::new();
    let mut q = "?limit=2".to_string();
    loop {
        let page: Value = get(&q, t).await.unwrap().json().await.unwrap();
        for e in page["entries"].as_array().unwrap() {
            seen.push(e["activity_at"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(c) => q = format!("?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "every entry exactly once across pages");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first");

    let page: Value = get("?actor=bob&operation=update", t)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    let page: Value = get("?actor=%27%3B%20drop%20table%20audit_log%3B%20--", t)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["entries"].as_array().unwrap().len(), 0);

    for (q, param) in [
        ("?operation=promote", "operation"),
        ("?since=soon", "since"),
        ("?limit=0", "limit"),
        ("?cursor=zzz", "cursor"),
        ("?colour=red", "colour"),
        (
            "?record=%27%3B%20drop%20table%20audit_log%3B%20--",
            "record",
        ),
        ("?record=", "record"),
        ("?operation=UPDATE", "operation"),
        ("?since=%207d", "since"),
    ] {
        let r = get(q, t).await.unwrap();
        assert_eq!(r.status(), 400, "{q}");
        let err: Value = r.json().await.unwrap();
        assert!(
            err["message"].as_str().unwrap().contains(param),
            "{q}: {err}"
        );
    }
    let spec = app.get_json("/api/openapi.json").await;
    assert!(spec["paths"]["/api/audit"]["get"].is_object());
    app.stop().await;

    let off = TestApp::spawn_with(&[("AUDIT_API_TOKEN", "")]).await;
    let r = off
        .http
        .get(off.url("/api/audit"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "no token configured: the endpoint is off");
    off.stop().await;
}

#[tokio::test]
async fn a_worker_whose_database_is_down_retries_and_never_dead_letters() {
    let app = TestApp::spawn_with(&[("WORKER_MAX_DELIVERIES", "2")]).await;
    assert_eq!(
        app.post_signed("contoso", &hr_message("t-1", "view employee E-9", "Dan"))
            .await
            .status(),
        200
    );
    app.wait_outbox_empty(Duration::from_secs(10)).await;

    // The handler's Postgres goes through a proxy we cut; the dead-letter table stays
    // reachable, so only the policy can keep the message out of it.
    let (port, mode) = pg_proxy().await;
    let db_name = app
        .config
        .database_url
        .expose()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let proxied = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy(&format!("postgres://postgres@127.0.0.1:{port}/{db_name}"))
        .unwrap();
    mode.send(Mode::Refuse).unwrap();
    let spec = small_spec(&app);
    let worker = teams_bridge::worker::Worker::connect(
        &app.js,
        app.pool.clone(),
        spec,
        HrAudit { pool: proxied },
    )
    .await
    .unwrap();
    let mut retried = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while retried < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected redeliveries while the database is down"
        );
        retried += worker
            .run_once(Duration::from_secs(3))
            .await
            .unwrap()
            .retried;
    }
    let dead: i64 = app.count("dead_letters").await;
    assert_eq!(
        dead, 0,
        "delivered {retried} times past the bound of 2, still not dead-lettered"
    );

    mode.send(Mode::Forward).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while audit_count(&app).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the entry arrives once the database is back"
        );
        worker.run_once(Duration::from_secs(3)).await.unwrap();
    }
    assert_eq!(audit_count(&app).await, 1);
    app.stop().await;
}

/// The HR audit consumer of `app` with 2 deliveries before a dead letter, batches of 10.
fn small_spec(app: &TestApp) -> teams_bridge::worker::ConsumerSpec {
    teams_bridge::worker::ConsumerSpec {
        stream: app.config.stream_name.clone(),
        durable: app.config.hr_audit_consumer.clone(),
        filter_subject: format!("{}.*.message", app.config.subject_prefix),
        max_deliveries: 2,
        ack_wait: Duration::from_secs(30),
        batch: 10,
    }
}

#[tokio::test]
async fn a_running_worker_reports_healthy_and_serves_its_metrics() {
    let app = TestApp::spawn().await;
    let worker = app::hr_audit_worker(&app.config).await.unwrap();
    let router = teams_bridge::http::worker_router(worker.heartbeat());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move { worker.run(s).await });
    let body = hr_message("h-1", "view employee E-5", "Eve");
    assert_eq!(app.post_signed("contoso", &body).await.status(), 200);
    wait_audit_count(&app, 1, Duration::from_secs(10)).await;
    let health: Value = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert!(health["last_step_seconds_ago"].as_f64().unwrap() < 5.0);
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("teams_bridge_worker_processed_total"),
        "{metrics}"
    );
    stop.cancel();
    let _ = task.await;
    app.stop().await;
}

/// A worker cut off from NATS is not healthy, however idle it looks: its steps then cannot
/// reach the server (the fetch is queued and times out on the client's side), so they do not
/// count as life and its `/healthz` turns 503 once the connection stays down; reconnected,
/// it beats and consumes again.
#[tokio::test]
async fn a_worker_cut_off_from_nats_stops_beating_and_beats_again_once_reconnected() {
    let app = TestApp::spawn().await;
    let (port, nats) = nats_proxy().await;
    let client = async_nats::ConnectOptions::new()
        .connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    let spec = small_spec(&app);
    let js = async_nats::jetstream::new(client.clone());
    let handler = HrAudit {
        pool: app.pool.clone(),
    };
    let worker = teams_bridge::worker::Worker::connect(&js, app.pool.clone(), spec, handler)
        .await
        .unwrap();
    let heartbeat = worker.heartbeat();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move { worker.run(s).await });
    let live = Duration::from_millis(1500);
    eventually(Duration::from_secs(5), "a live step", || async {
        (heartbeat.age() < live).then_some(())
    })
    .await;

    nats.send(Mode::Refuse).unwrap();
    eventually(
        Duration::from_secs(5),
        "the client sees the cut",
        || async {
            (client.connection_state() != async_nats::connection::State::Connected).then_some(())
        },
    )
    .await;
    // A step on a dead connection ends after ~6 s (1 s of expiry and the client's 5 s): counted
    // as life, the age would never pass that.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let age = heartbeat.age();
    assert!(
        age > Duration::from_secs(8),
        "no life while cut off: {age:?}"
    );

    nats.send(Mode::Forward).unwrap();
    eventually(
        Duration::from_secs(20),
        "life again once reconnected",
        || async { (heartbeat.age() < live).then_some(()) },
    )
    .await;
    let body = hr_message("cut-1", "view employee E-7", "Eve");
    assert_eq!(app.post_signed("contoso", &body).await.status(), 200);
    wait_audit_count(&app, 1, Duration::from_secs(20)).await;
    stop.cancel();
    let _ = task.await;
    app.stop().await;
}

/// The worker's statements are planned for each execution: a plan cached while the tables
/// were empty (a seq scan joined by hash) would otherwise be kept while they grow, wherever
/// autovacuum never analyzes them (as on CI). The request path keeps its cached plans.
#[tokio::test]
async fn the_worker_plans_each_statement_for_its_own_execution() {
    let app = TestApp::spawn().await;
    let worker = teams_bridge::infra::db::prepare_worker(&app.config)
        .await
        .unwrap();
    let mode = |pool: sqlx::PgPool| async move {
        let mode: String = sqlx::query_scalar("show plan_cache_mode")
            .fetch_one(&pool)
            .await
            .unwrap();
        mode
    };
    assert_eq!(mode(worker).await, "force_custom_plan");
    assert_eq!(mode(app.pool.clone()).await, "auto");
    app.stop().await;
}

/// The leaf seals the stored bytes' SHA-256: an event on the stream whose bytes are not the
/// stored ones (another publisher) cannot make the seal speak for them.
#[tokio::test]
async fn an_entry_is_sealed_with_the_digest_of_the_stored_bytes_not_of_a_forged_copy() {
    let app = TestApp::spawn().await;
    let body = hr_message("forged-1", "update employee E-9 band=3", "Ann");
    let (_, event) = posted_and_published(&app, &body).await;
    let forged = hr_message(
        "forged-1",
        "update employee E-9 band=3 salary=1000000",
        "Ann",
    );
    let forged = Event {
        body: forged.into(),
        ..event
    };
    let handler = HrAudit {
        pool: app.pool.clone(),
    };
    assert_eq!(handler.handle(&[forged]).await, vec![Ok(())]);
    let sealed_stored: bool = sqlx::query_scalar(
        "select l.raw_sha256 = sha256(a.raw) from audit_log l join activities a using (event_id)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(sealed_stored, "the seal must cover the stored bytes");
    app.stop().await;
}

/// The service's request pool (migrated) and one for a fixture's inserts, which run without
/// the request pool's statement timeout (a fraction of the reply budget) that they can
/// outlast while the suite shares the machine.
async fn question_pools(config: &teams_bridge::config::Config) -> (sqlx::PgPool, sqlx::PgPool) {
    let pool = teams_bridge::infra::db::prepare(config).await.unwrap();
    let load = sqlx::PgPool::connect(config.database_url.expose())
        .await
        .unwrap();
    (pool, load)
}

/// The buffers a question's statement reads, with its plan (`EXPLAIN (ANALYZE, BUFFERS)`).
async fn question_blocks(pool: &sqlx::PgPool, webhook: &str, record: &str) -> (i64, Value) {
    let explain = format!(
        "explain (analyze, buffers, format json) {}",
        teams_bridge::ingest::answer::CHANGES
    );
    let plan: Value = sqlx::query_scalar(&explain)
        .bind(webhook)
        .bind(record)
        .fetch_one(pool)
        .await
        .unwrap();
    let top = &plan[0]["Plan"];
    let blocks =
        top["Shared Hit Blocks"].as_i64().unwrap() + top["Shared Read Blocks"].as_i64().unwrap();
    (blocks, plan)
}

/// A question reads from the heap only the entries its answer uses: a record with a long
/// history on another webhook (and reads, which do not count) costs it index pages, not one
/// heap page per entry (migration 16: the webhook, the operation and the authorization are
/// tested in the record index).
#[tokio::test]
async fn a_question_reads_from_the_heap_only_the_entries_of_its_webhook_that_count() {
    let (config, _cleanup) = test_config(&[]);
    let (pool, load) = question_pools(&config).await;
    // 301 records with ~200 entries each on the webhook `big`, a quarter reads, interleaved
    // so that one record's entries lie on 200 heap pages; E-7 has 3 changes on `new` too.
    let entries = |webhook: &str, n: u32, record: &str| {
        format!(
            "insert into audit_log (event_id, webhook, tenant_id, actor_name, operation, entity, \
                                    record_id, changes, message, activity_at, recorded_at) \
             select gen_random_uuid(), '{webhook}', 't', 'P', \
                    case when g % 4 = 0 then 'read' else 'update' end, 'employee', \
                    {record}, '{{\"title\": \"x\"}}', repeat('m', 200), \
                    now() - g * interval '1 second', now() \
             from generate_series(1, {n}) g"
        )
    };
    crate::seal::exec(&load, &entries("big", 60_000, "'E-' || (g % 301)")).await;
    crate::seal::exec(&load, &entries("new", 3, "'E-7'")).await;
    crate::seal::exec(&load, "analyze audit_log").await;

    let (blocks, plan) = question_blocks(&pool, "new", "E-7").await;
    assert!(blocks < 40, "{blocks} blocks for one question: {plan:#}");
    let answers = teams_bridge::ingest::answer::Answers { pool: pool.clone() };
    let changes = answers.changes("new", "E-7").await.unwrap();
    assert_eq!(changes.len(), 3, "only new's changes of E-7: {changes:?}");
    // `big`'s E-7: 200 entries, of which the 50 reads do not count.
    assert_eq!(answers.changes("big", "E-7").await.unwrap().len(), 150);
    pool.close().await;
}

/// A webhook added to a large database is unknown to `activities`' statistics until the next
/// ANALYZE (at 10 M rows autovacuum waits for a million changes). A question on it must still
/// read its record's few activities by index, not every activity the webhook has.
#[tokio::test]
async fn a_question_on_a_webhook_the_statistics_do_not_know_yet_reads_only_its_record() {
    let (config, _cleanup) = test_config(&[]);
    let (pool, load) = question_pools(&config).await;
    let rows = |webhook: &str, n: u32, spacing: &str| {
        format!(
            "insert into activities (event_id, webhook, activity_id, activity_type, raw, received_at, \
                                     authorized, change_record, text, sender_name) \
             select gen_random_uuid(), '{webhook}', '{webhook}-' || g, 'message', 'x', \
                    now() - g * interval '{spacing}', true, 'E-' || (g % 5000), \
                    'update employee E-' || (g % 5000) || ' title=x', 'P' \
             from generate_series(1, {n}) g"
        )
    };
    crate::seal::exec(&load, &rows("known", 100_000, "1 second")).await;
    crate::seal::exec(&load, "analyze activities").await;
    crate::seal::exec(&load, &rows("new", 20_000, "1 millisecond")).await;

    let (blocks, plan) = question_blocks(&pool, "new", "E-42").await;
    assert!(blocks < 200, "{blocks} blocks for one question: {plan:#}");

    // The answer: the new webhook's four changes of E-42 (its activities 42, 5042, 10042 and
    // 15042), not the known webhook's change of E-42 in the same hour (its activity 42).
    let answers = teams_bridge::ingest::answer::Answers { pool: pool.clone() };
    let changes = answers.changes("new", "E-42").await.unwrap();
    assert_eq!(changes.len(), 4, "{changes:?}");
    assert!(changes
        .iter()
        .all(|c| c.changes == [("title".to_string(), "x".to_string())]));
    pool.close().await;
}
