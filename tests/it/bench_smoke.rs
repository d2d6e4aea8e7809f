//! A short bench run in CI: the service and the HR audit worker in-process, 2 s of open-loop
//! load at 200 req/s, then the ledger check, which must match, and must catch a missing row.
//! It asserts no timing: speed is measured by `scripts/bench.sh`, not by tests.

use std::time::Duration;

use teams_bridge::app;
use teams_bridge_bench::{self as bench, DrainLimits, LedgerScope, LoadSpec, Mode, Scenario};
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, CONTOSO_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_open_loop_run_answers_everything_and_the_ledger_matches_exactly() {
    let app = TestApp::spawn().await;
    let worker = app::hr_audit_worker(&app.config)
        .await
        .expect("worker connects");
    let stop = CancellationToken::new();
    let s = stop.clone();
    let worker_task = tokio::spawn(async move { worker.run(s).await });

    let scope = LedgerScope {
        pool: app.pool.clone(),
        js: app.js.clone(),
        stream: app.config.stream_name.clone(),
        subject_prefix: app.config.subject_prefix.clone(),
        webhook: "contoso".into(),
        consumer: Some(app.config.hr_audit_consumer.clone()),
    };
    let limits = DrainLimits {
        relay: Duration::from_secs(20),
        worker: Duration::from_secs(20),
    };
    let scenario = Scenario {
        label: "smoke".into(),
        load: LoadSpec {
            addr: app.addr,
            path: "/webhooks/contoso".into(),
            mode: Mode::Open { rate: 200.0 },
            connections: 16,
            duration: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            grace: Duration::from_secs(5),
        },
        secret: CONTOSO_TOKEN.into(),
        run_id: "smoke".into(),
        ledger: Some((scope.clone(), limits)),
        watch: vec![],
        service_pid: Some(std::process::id()),
        pg_database: None,
        // Timing is the bench's business, not a test's: a debug build on a busy machine
        // proves nothing about latency. The test checks behaviour: the ledger.
        max_latency_ms: None,
        target: "bridge",
    };
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
