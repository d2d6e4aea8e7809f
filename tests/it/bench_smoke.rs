//! A short bench run in CI: the service and the HR audit worker in-process, 2 s of open-loop
//! load at 200 req/s, then the ledger check, which must match, and must catch a missing row.
//! It asserts no timing: speed is measured by `scripts/bench.sh`, not by tests.

use std::time::Duration;

use sqlx::PgPool;
use teams_bridge::app;
use teams_bridge_bench::{self as bench, DrainLimits, LedgerScope, LoadSpec, Mode, Scenario};
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, CONTOSO_TOKEN};

/// `secs` of 200 webhooks a second to `contoso` at `addr` on `connections`, then `ledger`.
fn contoso_open_loop(
    addr: std::net::SocketAddr,
    run_id: &str,
    connections: usize,
    secs: u64,
    ledger: (LedgerScope, DrainLimits),
) -> Scenario {
    Scenario {
        label: run_id.into(),
        load: LoadSpec {
            addr,
            path: "/webhooks/contoso".into(),
            mode: Mode::Open { rate: 200.0 },
            connections,
            duration: Duration::from_secs(secs),
            timeout: Duration::from_secs(5),
            grace: Duration::from_secs(5),
        },
        secret: CONTOSO_TOKEN.into(),
        run_id: run_id.into(),
        ledger: Some(ledger),
        watch: vec![],
        service_pid: None,
        pg_database: None,
        // Timing is the bench's business, not a test's: a debug build on a busy machine
        // proves nothing about latency. The tests check behaviour: the ledger.
        max_latency_ms: None,
        target: "bridge",
    }
}

/// The ledger of the `contoso` webhook in a test's database and stream, with 20 s for the
/// relay and again for the worker to drain.
fn contoso_ledger(
    pool: &PgPool,
    js: &async_nats::jetstream::Context,
    config: &teams_bridge::config::Config,
) -> (LedgerScope, DrainLimits) {
    let scope = LedgerScope {
        pool: pool.clone(),
        js: js.clone(),
        stream: config.stream_name.clone(),
        subject_prefix: config.subject_prefix.clone(),
        webhook: "contoso".into(),
        consumer: Some(config.hr_audit_consumer.clone()),
    };
    let drain = Duration::from_secs(20);
    let limits = DrainLimits {
        relay: drain,
        worker: drain,
    };
    (scope, limits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_open_loop_run_answers_everything_and_the_ledger_matches_exactly() {
    let app = TestApp::spawn().await;
    let worker = app::hr_audit_worker(&app.config)
        .await
        .expect("worker connects");
    let stop = CancellationToken::new();
    let s = stop.clone();
    let worker_task = tokio::spawn(async move { worker.run(s).await });

    let (scope, limits) = contoso_ledger(&app.pool, &app.js, &app.config);
    let mut scenario = contoso_open_loop(app.addr, "smoke", 16, 2, (scope.clone(), limits));
    scenario.service_pid = Some(std::process::id());
    let outcome = bench::run_scenario(&scenario)
        .await
        .expect("the run completes");
    let summary = &outcome.summary;
    println!("{}", outcome.table());
    assert!(summary.pass, "{:?}", summary.failures);
    assert_eq!(summary.sent, 400);
    assert_eq!(summary.status.get("200"), Some(&400));
    assert_eq!(
        summary.connections_opened, 16,
        "keep-alive: no connection was re-opened"
    );
    assert_eq!(
        outcome.result.samples.len(),
        400,
        "every answer was recorded"
    );
    assert!(summary.service_peak_rss_kib.is_some());
    let ledger = summary.ledger.as_ref().expect("the ledger was checked");
    assert!(ledger.ok(), "{ledger}");
    assert_eq!(
        (
            ledger.activities_matched,
            ledger.stream_new,
            ledger.audit_matched
        ),
        (400, 400, 400)
    );

    // The check must see a difference: remove one stored activity and check again.
    let victim = outcome.result.accepted[7].event_id.expect("a receipt");
    sqlx::query("delete from activities where event_id = $1")
        .bind(victim)
        .execute(&app.pool)
        .await
        .unwrap();
    let baseline = bench::Baseline::default();
    let again = scope
        .check(
            &baseline,
            &outcome.result.accepted,
            "smoke-",
            DrainLimits {
                relay: Duration::from_secs(2),
                worker: Duration::from_secs(2),
            },
        )
        .await
        .unwrap();
    assert!(!again.ok(), "a missing activity row must be reported");
    assert_eq!(again.activities_matched, 399);
    assert_eq!(again.activities_of_run, 399);
    assert!(
        again
            .problems
            .iter()
            .any(|p| p.starts_with("activities rows")),
        "{again}"
    );

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), worker_task).await;
    app.stop().await;
}

/// The skeleton (the lower bound `scripts/cost-compare.sh` sets beside the service) must
/// keep the promises its cost stands for, or the bound would be a bound on less: every 200
/// stored, on the stream and in the audit log (the same ledger as the service), and a
/// repeated delivery stored once and answered with the first receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_skeleton_keeps_the_ledger_exact_and_stores_a_repeat_once() {
    let port = crate::helpers::free_port().to_string();
    let (config, _cleanup) =
        crate::helpers::test_config(&[("LISTEN_ADDR", &format!("127.0.0.1:{port}"))]);
    let serve = tokio::spawn(bench::skeleton::serve(config.clone()));
    let worker = tokio::spawn(bench::skeleton::worker(config.clone()));
    let http = reqwest::Client::new();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    crate::helpers::eventually(Duration::from_secs(20), "the skeleton answers", || {
        let (http, ready) = (http.clone(), ready.clone());
        async move {
            http.get(&ready)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        }
    })
    .await;
    assert!(!serve.is_finished() && !worker.is_finished());
    let pool = PgPool::connect(config.database_url.expose()).await.unwrap();
    let js = teams_bridge::infra::nats::context(
        teams_bridge::infra::nats::connect(&config).await.unwrap(),
    );
    let (scope, limits) = contoso_ledger(&pool, &js, &config);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let scenario = contoso_open_loop(addr, "skel", 8, 1, (scope, limits));
    let outcome = bench::run_scenario(&scenario)
        .await
        .expect("the run completes");
    println!("{}", outcome.table());
    let ledger = outcome
        .summary
        .ledger
        .as_ref()
        .expect("the ledger was checked");
    assert!(outcome.summary.pass && ledger.ok(), "{ledger}");
    assert_eq!(
        (
            ledger.activities_matched,
            ledger.stream_new,
            ledger.audit_matched
        ),
        (200, 200, 200)
    );

    // A repeat: the same bytes again get the first receipt, and no second row.
    let signed = bench::payload::Generator::new("skelrepeat", CONTOSO_TOKEN)
        .unwrap()
        .make(3);
    let post = || {
        http.post(format!("http://127.0.0.1:{port}/webhooks/contoso"))
            .header("authorization", &signed.authorization)
            .body(signed.body.clone())
            .send()
    };
    let first = bench::load::receipt(&post().await.unwrap().bytes().await.unwrap());
    let again = bench::load::receipt(&post().await.unwrap().bytes().await.unwrap());
    assert!(first.is_some());
    assert_eq!(
        first, again,
        "a repeat is answered with the original's receipt"
    );
    let rows: i64 = sqlx::query_scalar("select count(*) from activities where activity_id = $1")
        .bind(&signed.activity_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    // A bad signature is refused.
    let refused = http
        .post(format!("http://127.0.0.1:{port}/webhooks/contoso"))
        .header("authorization", crate::helpers::CONTOSO_HEADER)
        .body(signed.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    serve.abort();
    worker.abort();
    pool.close().await;
}
