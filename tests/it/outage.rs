//! NATS and Postgres going away: requests keep their promises, nothing is lost or doubled.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use teams_bridge::{
    config::Config,
    handoff::Handoff,
    infra::{db, nats as stream},
    relay::{Published, Relay},
};

use crate::helpers::*;

fn note(i: usize) -> Vec<u8> {
    format!(r#"{{"type":"message","id":"outage-{i}","text":"<at>HR</at> view employee E-{i}"}}"#)
        .into_bytes()
}

#[tokio::test]
async fn requests_are_answered_while_nats_is_down_and_the_outbox_drains_without_duplicates_after() {
    let mut nats = PrivateNats::start();
    let app = TestApp::spawn_with(&[("NATS_URL", &nats.url())]).await;
    for i in 0..5 {
        assert_eq!(app.post_signed("contoso", &note(i)).await.status(), 200);
    }
    app.wait_outbox_empty(Duration::from_secs(10)).await;

    nats.stop();
    // The HTTP path never waits on NATS: every request is stored and answered 200 while it
    // is down (how fast is the bench's business).
    for i in 5..25 {
        let resp = app.post_signed("contoso", &note(i)).await;
        assert_eq!(resp.status(), 200, "answered while NATS is down");
    }
    assert_eq!(app.activity_count().await, 25);
    assert!(
        app.outbox_count().await >= 1,
        "nothing can be published while NATS is down"
    );
    // A NATS outage is what the outbox absorbs: the replica stays ready, and says why the
    // outbox grows.
    let ready: serde_json::Value =
        eventually(Duration::from_secs(10), "/readyz to notice", || async {
            let r = app.http.get(app.url("/readyz")).send().await.ok()?;
            assert_eq!(
                r.status(),
                200,
                "a NATS outage must not take the replica out"
            );
            let v: serde_json::Value = r.json().await.ok()?;
            v["warnings"].to_string().contains("nats").then_some(v)
        })
        .await;
    assert_eq!(ready["status"], "ready");
    assert!(ready["outbox_backlog"].as_i64().unwrap() >= 1, "{ready}");

    nats.restart();
    app.wait_outbox_empty(Duration::from_secs(40)).await;
    // The test's own client reconnects to the restarted server as well.
    let messages = eventually(
        Duration::from_secs(20),
        "the stream after the restart",
        || async {
            let mut s = app.js.get_stream(&app.config.stream_name).await.ok()?;
            Some(s.info().await.ok()?.state.messages)
        },
    )
    .await;
    assert_eq!(
        messages, 25,
        "one message per activity, none lost, none doubled"
    );
    app.stop().await;
}

/// What a relay crash between JetStream's ack and the outbox delete looks like: the rows are
/// still there and get published again; JetStream answers "duplicate" and nothing is doubled.
#[tokio::test]
async fn a_relay_that_republishes_after_a_crash_does_not_double_messages() {
    let app = TestApp::spawn().await;
    for i in 0..30 {
        assert_eq!(app.post_signed("contoso", &note(i)).await.status(), 200);
    }
    app.wait_outbox_empty(Duration::from_secs(10)).await;
    assert_eq!(app.stream_messages().await, 30);
    // Put every row back, as if the deletes had never committed.
    sqlx::query("insert into outbox (event_id) select event_id from activities")
        .execute(&app.pool)
        .await
        .unwrap();
    app.wait_outbox_empty(Duration::from_secs(10)).await;
    assert_eq!(app.stream_messages().await, 30);
    app.stop().await;
}

#[tokio::test]
async fn two_relays_side_by_side_publish_each_row_once() {
    let app = TestApp::spawn().await;
    // Stop the app's own relay so that only the two relays below publish.
    let config = app.config.clone();
    let pool = app.pool.clone();
    let js = app.js.clone();
    let _cleanup = app.stop_http_only().await;
    let bodies: Vec<Vec<u8>> = (0..300).map(note).collect();
    insert_directly(&config, &bodies).await;
    let relay = |size| Relay {
        pool: pool.clone(),
        js: stream::context(js.client().clone()),
        subject_prefix: config.subject_prefix.clone(),
        batch_size: size,
        max_refusals: 10,
    };
    let (a, b) = (relay(40), relay(40));
    let run = |r: Relay| async move {
        let mut acked = 0;
        loop {
            match r.run_once().await.unwrap() {
                Published::ZERO => return acked,
                Published { acked: n, .. } => acked += n,
            }
        }
    };
    let (na, nb) = tokio::join!(run(a), run(b));
    assert_eq!(
        na + nb,
        300,
        "every row published by exactly one relay ({na} + {nb})"
    );
    let left: i64 = sqlx::query_scalar("select count(*) from outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    let mut s = js.get_stream(&config.stream_name).await.unwrap();
    assert_eq!(s.info().await.unwrap().state.messages, 300);
    let _ = js.delete_stream(&config.stream_name).await;
}

async fn insert_directly(config: &Config, bodies: &[Vec<u8>]) {
    insert_with_handoff(config, bodies, Arc::default()).await;
}

/// Commits `bodies` through the group committer, which hands the new events to `handoff`.
async fn insert_with_handoff(config: &Config, bodies: &[Vec<u8>], handoff: Arc<Handoff>) {
    let pool = db::prepare(config).await.unwrap();
    let committer = teams_bridge::ingest::Committer::spawn(pool, 2, 64, handoff);
    let name: Arc<str> = Arc::from("contoso");
    let jobs = bodies.iter().map(|b| {
        committer.commit(
            teams_bridge::ingest::NewActivity {
                event_id: uuid::Uuid::now_v7(),
                webhook: name.clone(),
                activity: teams_bridge::domain::activity::Activity::parse(b).unwrap(),
                raw: bytes::Bytes::from(b.clone()),
                mac: [0; 32],
                traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
                authorized: true,
                change_record: None,
            },
            std::time::Instant::now() + Duration::from_secs(30),
        )
    });
    for r in futures::future::join_all(jobs).await {
        r.unwrap();
    }
}

/// The two ways to JetStream carry the same message: what the receiver hands its relay in
/// memory is byte for byte what a sweep reads back from Postgres (headers included), and
/// publishing a row both ways stores it once.
#[tokio::test]
async fn handoff_and_sweep_publish_the_same_message_once() {
    let (config, _cleanup) = test_config(&[]);
    let pool = db::prepare(&config).await.unwrap();
    let js = stream::context(stream::connect(&config).await.unwrap());
    stream::ensure_stream(&js, &config).await.unwrap();
    let bodies: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            // Teams' timestamps carry 7 fractional digits; half of these have none.
            let ts = if i % 2 == 0 {
                format!(r#","timestamp":"2026-11-27T10:00:0{}.123456{i:01}Z""#, i % 10)
            } else {
                String::new()
            };
            format!(
                r#"{{"type":"message","id":"both-{i}","conversation":{{"id":"19:c{i}@thread.tacv2"}}{ts},"text":"<at>HR</at> view employee E-{i}"}}"#
            )
            .into_bytes()
        })
        .collect();
    let handoff = Arc::new(Handoff::default());
    insert_with_handoff(&config, &bodies, handoff.clone()).await;
    let relay = |config: &Config| Relay {
        pool: pool.clone(),
        js: js.clone(),
        subject_prefix: config.subject_prefix.clone(),
        batch_size: 100,
        max_refusals: 10,
    };

    // 1. The hand-off publishes all 40 and deletes their rows.
    let events = handoff.take(1000);
    assert_eq!(events.len(), 40);
    let outcome = relay(&config).publish_committed(&events).await.unwrap();
    assert_eq!(
        outcome,
        Published {
            acked: 40,
            failed: 0
        }
    );
    let left: i64 = sqlx::query_scalar("select count(*) from outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);

    // 2. A sweep of the same rows (queued again) is de-duplicated: still 40 messages.
    let requeue = "insert into outbox (event_id) select event_id from activities";
    sqlx::query(requeue).execute(&pool).await.unwrap();
    assert_eq!(
        relay(&config).run_once().await.unwrap(),
        Published {
            acked: 40,
            failed: 0
        }
    );
    let mut s = js.get_stream(&config.stream_name).await.unwrap();
    assert_eq!(s.info().await.unwrap().state.messages, 40);

    // 3. The sweep's messages, published to a second stream, equal the hand-off's.
    let (other, _other_cleanup) = test_config(&[]);
    stream::ensure_stream(&js, &other).await.unwrap();
    sqlx::query(requeue).execute(&pool).await.unwrap();
    assert_eq!(
        relay(&other).run_once().await.unwrap(),
        Published {
            acked: 40,
            failed: 0
        }
    );
    let s2 = js.get_stream(&other.stream_name).await.unwrap();
    let header_list = |m: &async_nats::jetstream::message::StreamMessage| {
        let mut h: Vec<(String, String)> = m
            .headers
            .iter()
            .flat_map(|(k, vs)| vs.iter().map(move |v| (k.to_string(), v.to_string())))
            .collect();
        h.sort();
        h
    };
    for seq in 1..=40u64 {
        let a = s.get_raw_message(seq).await.unwrap();
        let b = s2.get_raw_message(seq).await.unwrap();
        assert_eq!(a.payload, b.payload, "message {seq}: body");
        assert_eq!(
            a.subject.trim_start_matches(&config.subject_prefix),
            b.subject.trim_start_matches(&other.subject_prefix),
        );
        assert_eq!(header_list(&a), header_list(&b), "message {seq}: headers");
    }
    let with_teams_time = s.get_raw_message(1).await.unwrap();
    assert!(
        header_list(&with_teams_time)
            .iter()
            .any(|(k, v)| k == "ce-time" && v.contains(".123456")),
        "{:?}",
        header_list(&with_teams_time)
    );
    let _ = js.delete_stream(&config.stream_name).await;
    let _ = js.delete_stream(&other.stream_name).await;
}

/// teams-bridge's own commits do not send `NOTIFY` (a notifying commit takes a cluster-wide
/// lock until it is over, so notifying commits cannot overlap); any other writer's do, so a
/// refill typed in psql still wakes a relay running alone.
#[tokio::test]
async fn only_other_writers_notify_relays() {
    use sqlx::Connection;
    let (config, _cleanup) = test_config(&[]);
    let pool = db::prepare(&config).await.unwrap();
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .unwrap();
    listener.listen("teams_bridge_outbox").await.unwrap();
    insert_directly(&config, &(0..5).map(note).collect::<Vec<_>>()).await;
    let heard = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await;
    assert!(heard.is_err(), "our own commit notified: {heard:?}");

    sqlx::query("delete from outbox")
        .execute(&pool)
        .await
        .unwrap();
    let mut plain = sqlx::PgConnection::connect(config.database_url.expose())
        .await
        .unwrap();
    sqlx::query("insert into outbox (event_id) select event_id from activities")
        .execute(&mut plain)
        .await
        .unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("a refill from an ordinary connection wakes relays")
        .unwrap();
    assert_eq!(heard.channel(), "teams_bridge_outbox");
}

#[tokio::test]
async fn an_unreachable_or_stalled_postgres_gets_a_fast_503_and_nothing_is_stored() {
    let (port, mode) = pg_proxy().await;
    let db = format!("postgres://postgres@127.0.0.1:{port}/tb_test_{}", unique());
    let app = TestApp::spawn_with(&[("DATABASE_URL", &db), ("REPLY_BUDGET_MS", "1500")]).await;
    assert_eq!(app.post_signed("contoso", &note(1)).await.status(), 200);

    for (what, m) in [("refused", Mode::Refuse), ("stalled", Mode::Stall)] {
        mode.send(m).unwrap();
        let started = Instant::now();
        let resp = app.post_signed("contoso", &note(2)).await;
        let took = started.elapsed();
        assert_eq!(resp.status(), 503, "{what}");
        assert!(resp.headers().contains_key("retry-after"), "{what}");
        let err: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(err["error"], "unavailable", "{what}");
        assert!(
            took < Duration::from_millis(2500),
            "{what}: answered in {took:?}, well before Teams' 5 s"
        );
    }

    mode.send(Mode::Forward).unwrap();
    // Once Postgres is back, the refused message was not stored behind the caller's back...
    let direct = sqlx::PgPool::connect(&db.replace(
        &format!("127.0.0.1:{port}"),
        pg_base().rsplit('@').next().unwrap(),
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n: i64 = sqlx::query_scalar("select count(*) from activities")
        .fetch_one(&direct)
        .await
        .unwrap();
    assert_eq!(n, 1, "nothing of the refused requests was stored");
    // ...and the service recovers by itself.
    let resp = eventually(Duration::from_secs(10), "recovery", || async {
        let r = app.post_signed("contoso", &note(3)).await;
        (r.status() == 200).then_some(r)
    })
    .await;
    assert_eq!(resp.status(), 200);
    direct.close().await;
    app.stop().await;
}

/// `teams-bridge relay` on its own: woken by Postgres NOTIFY, it publishes what another
/// process committed.
#[tokio::test]
async fn a_relay_running_alone_publishes_what_another_process_committed() {
    let (config, _cleanup) = test_config(&[]);
    let pool = db::prepare(&config).await.unwrap();
    let js = stream::context(stream::connect(&config).await.unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let relay = Relay {
        pool: pool.clone(),
        js: js.clone(),
        subject_prefix: config.subject_prefix.clone(),
        batch_size: 100,
        max_refusals: 10,
    };
    let task = tokio::spawn(teams_bridge::app::run_relay(
        relay,
        Arc::new(config.clone()),
        None,
        stop.clone(),
    ));
    let bodies: Vec<Vec<u8>> = (0..250).map(note).collect();
    insert_directly(&config, &bodies).await;
    eventually(Duration::from_secs(15), "the outbox to drain", || async {
        let left: i64 = sqlx::query_scalar("select count(*) from outbox")
            .fetch_one(&pool)
            .await
            .ok()?;
        (left == 0).then_some(())
    })
    .await;
    let mut s = js.get_stream(&config.stream_name).await.unwrap();
    assert_eq!(s.info().await.unwrap().state.messages, 250);
    stop.cancel();
    let _ = task.await;
    let _ = js.delete_stream(&config.stream_name).await;
}
