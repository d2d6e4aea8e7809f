//! The core pipeline over real HTTP, Postgres and NATS.

use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use crate::helpers::*;

async fn receipt_of(resp: reqwest::Response) -> (Value, Uuid) {
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["type"], "message", "{reply}");
    let text = reply["text"].as_str().unwrap();
    let id = text.rsplit("receipt ").next().unwrap();
    let id = Uuid::parse_str(id.trim())
        .unwrap_or_else(|_| panic!("reply text ends in a receipt: {text}"));
    (reply, id)
}

#[tokio::test]
async fn the_official_contoso_vector_is_answered_stored_byte_exact_and_published() {
    let app = TestApp::spawn().await;
    let body = fixture("contoso-docs-example.json");
    let resp = app.post("contoso", &body, Some(CONTOSO_HEADER)).await;
    let (_, event_id) = receipt_of(resp).await;

    type Row = (
        Vec<u8>,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let (raw, webhook, kind, team, channel, text): Row =
        sqlx::query_as("select raw, webhook, activity_type, team_id, channel_id, text from activities where event_id = $1")
            .bind(event_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(raw, body, "stored bytes are exactly the signed bytes");
    assert_eq!(webhook, "contoso");
    assert_eq!(kind.as_deref(), Some("message"));
    assert!(team.is_some() && channel.is_some());
    assert!(text.unwrap().contains("<at>"));
    let jsonb_type: String =
        sqlx::query_scalar("select body->>'type' from activity_documents where event_id = $1")
            .bind(event_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(jsonb_type, "message");

    app.wait_outbox_empty(Duration::from_secs(10)).await;
    let messages = app.read_stream().await;
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(
        m.subject.as_str(),
        format!("{}.contoso.message", app.config.subject_prefix)
    );
    assert_eq!(
        m.payload.as_ref(),
        body.as_slice(),
        "published body is the exact signed bytes"
    );
    let h = m.headers.as_ref().expect("headers");
    let id = event_id.to_string();
    assert_eq!(h.get("Nats-Msg-Id").unwrap().as_str(), id);
    assert_eq!(h.get("ce-id").unwrap().as_str(), id);
    assert_eq!(h.get("ce-specversion").unwrap().as_str(), "1.0");
    assert_eq!(
        h.get("ce-type").unwrap().as_str(),
        "com.microsoft.teams.activity.message"
    );
    assert_eq!(
        h.get("ce-source").unwrap().as_str(),
        "/teams-bridge/webhooks/contoso"
    );
    assert_eq!(h.get("content-type").unwrap().as_str(), "application/json");
    assert!(h.get("ce-time").unwrap().as_str().starts_with("20"));
    assert!(h.get("ce-subject").unwrap().as_str().starts_with("19:"));
    assert!(h.get("traceparent").unwrap().as_str().starts_with("00-"));
    app.stop().await;
}

#[tokio::test]
async fn every_fixture_payload_is_accepted_and_stored_byte_exact() {
    // The two docs examples are the same Teams message (same activity id) formatted twice, so
    // each fixture goes to its own webhook; on one webhook the second would be a repeat.
    let hooks =
        format!("w0={CONTOSO_TOKEN},w1={CONTOSO_TOKEN},w2={CONTOSO_TOKEN},w3={CONTOSO_TOKEN}");
    let app = TestApp::spawn_with(&[("TEAMS_WEBHOOKS", &hooks)]).await;
    for (i, name) in REQUEST_FIXTURES.iter().enumerate() {
        let body = fixture(name);
        let (_, id) = receipt_of(app.post_signed(&format!("w{i}"), &body).await).await;
        let raw: Vec<u8> = sqlx::query_scalar("select raw from activities where event_id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(raw, body, "{name} stored byte-exact");
    }
    // The emoji payload keeps its raw UTF-8 in the JSON derived on read too.
    let aad: Option<String> = sqlx::query_scalar(
        "select a.sender_aad_object_id from activities a join activity_documents d using (event_id) \
         where d.body->>'text' like '%&nbsp;%' limit 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(aad.is_some());
    assert_eq!(app.activity_count().await, 4);
    app.stop().await;
}

#[tokio::test]
async fn a_message_delivered_twice_is_stored_and_published_once_with_the_same_reply() {
    let app = TestApp::spawn().await;
    let body = fixture("real-botframework-channel-mention-tacv2.json");
    let first = app.post_signed("contoso", &body).await;
    let (reply1, id1) = receipt_of(first).await;
    let (reply2, id2) = receipt_of(app.post_signed("contoso", &body).await).await;
    assert_eq!(id1, id2);
    assert_eq!(reply1, reply2, "the repeat gets the same reply");
    assert_eq!(app.activity_count().await, 1);
    app.wait_outbox_empty(Duration::from_secs(10)).await;
    assert_eq!(app.stream_messages().await, 1);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_repeats_of_one_message_all_get_the_one_receipt() {
    let app = TestApp::spawn().await;
    let body = fixture("contoso-docs-example.json");
    let requests = (0..12).map(|_| app.post("contoso", &body, Some(CONTOSO_HEADER)));
    let responses = futures::future::join_all(requests).await;
    let mut ids = Vec::new();
    for r in responses {
        ids.push(receipt_of(r).await.1);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one receipt for every delivery: {ids:?}");
    assert_eq!(app.activity_count().await, 1);
    app.wait_outbox_empty(Duration::from_secs(10)).await;
    assert_eq!(app.stream_messages().await, 1);
    app.stop().await;
}

#[tokio::test]
async fn many_distinct_messages_at_once_are_all_stored_and_published_once() {
    let app = TestApp::spawn().await;
    let bodies: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            format!(r#"{{"type":"message","id":"m-{i}","text":"<at>HR</at> note {i}"}}"#)
                .into_bytes()
        })
        .collect();
    let responses =
        futures::future::join_all(bodies.iter().map(|b| app.post_signed("contoso", b))).await;
    assert!(responses.iter().all(|r| r.status() == 200));
    assert_eq!(app.activity_count().await, 200);
    app.wait_outbox_empty(Duration::from_secs(20)).await;
    assert_eq!(app.stream_messages().await, 200);
    app.stop().await;
}

#[tokio::test]
async fn the_documented_negative_vectors_are_refused_and_store_nothing() {
    let app = TestApp::spawn().await;
    let body = fixture("contoso-docs-example.json");
    let mut trailing = body.clone();
    trailing.push(b'\n');
    let crlf = String::from_utf8(body.clone())
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes();
    let reserialised =
        serde_json::to_vec(&serde_json::from_slice::<Value>(&body).unwrap()).unwrap();
    for (what, b) in [
        ("trailing newline", &trailing),
        ("CRLF", &crlf),
        ("re-serialised", &reserialised),
    ] {
        let resp = app.post("contoso", b, Some(CONTOSO_HEADER)).await;
        assert_eq!(resp.status(), 401, "{what}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"], "bad_signature", "{what}");
    }
    let token_as_text = "HMAC f02WnK4FzS/zvR1qL2B0KBhOc47u4//BV3+eNl5A4cU=";
    assert_eq!(
        app.post("contoso", &body, Some(token_as_text))
            .await
            .status(),
        401
    );
    assert_eq!(app.activity_count().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_store_nothing() {
    let app = TestApp::spawn().await;
    let body = fixture("contoso-docs-example.json");
    let cases: Vec<(&str, reqwest::Response, u16, &str)> = vec![
        (
            "no header",
            app.post("contoso", &body, None).await,
            401,
            "missing_signature",
        ),
        (
            "garbled header",
            app.post("contoso", &body, Some("HMAC !!!")).await,
            401,
            "malformed_signature",
        ),
        (
            "other scheme",
            app.post("contoso", &body, Some("Bearer abc")).await,
            401,
            "malformed_signature",
        ),
        (
            "unknown webhook",
            app.post("nope", &body, Some(CONTOSO_HEADER)).await,
            401,
            "unknown_webhook",
        ),
        (
            "empty body",
            app.post_signed("contoso", b"").await,
            400,
            "empty_body",
        ),
        (
            "not json",
            app.post_signed("contoso", b"hello, world").await,
            400,
            "not_json",
        ),
        (
            "json array",
            app.post_signed("contoso", b"[1,2]").await,
            400,
            "not_json",
        ),
        (
            "nul",
            app.post_signed("contoso", br#"{"text":"a\u0000"}"#).await,
            400,
            "unstorable",
        ),
        (
            "too large",
            app.post_signed("contoso", &vec![b' '; 70_000]).await,
            413,
            "too_large",
        ),
    ];
    for (what, resp, status, code) in cases {
        assert_eq!(resp.status().as_u16(), status, "{what}");
        let err: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("{what}: JSON error body: {e}"));
        assert_eq!(err["error"], code, "{what}: {err}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(!err.to_string().contains(CONTOSO_TOKEN));
    }
    assert_eq!(app.activity_count().await, 0);
    assert_eq!(app.outbox_count().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn both_tokens_of_a_key_ring_verify() {
    let app = TestApp::spawn().await;
    let body = fixture("contoso-docs-example.json");
    assert_eq!(
        app.post("ring", &body, Some(CONTOSO_HEADER)).await.status(),
        200
    );
    let other = br#"{"type":"message","id":"fabrikam-1","text":"hi"}"#;
    let by_fabrikam = teams_bridge::domain::signature::sign(FABRIKAM_TOKEN, other).unwrap();
    assert_eq!(
        app.post("ring", other, Some(&by_fabrikam)).await.status(),
        200
    );
    // contoso has only the first token.
    assert_eq!(
        app.post("contoso", other, Some(&by_fabrikam))
            .await
            .status(),
        401
    );
    assert_eq!(app.activity_count().await, 2);
    app.stop().await;
}

#[tokio::test]
async fn an_activity_of_another_type_goes_to_its_own_subject_and_hostile_types_are_tamed() {
    let app = TestApp::spawn().await;
    let body = br#"{"type":"conversation.Update >*","id":"x1"}"#;
    assert_eq!(app.post_signed("contoso", body).await.status(), 200);
    app.wait_outbox_empty(Duration::from_secs(10)).await;
    let messages = app.read_stream().await;
    assert_eq!(
        messages[0].subject.as_str(),
        format!(
            "{}.contoso.conversation_Update___",
            app.config.subject_prefix
        )
    );
    app.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = TestApp::spawn().await;
    let health = app.get_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    let ready = eventually(Duration::from_secs(5), "readiness", || async {
        let r = app.http.get(app.url("/readyz")).send().await.unwrap();
        (r.status() == 200).then_some(r)
    })
    .await;
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(app.post_signed("contoso", b"{}").await.status(), 200);
    assert_eq!(
        app.post("contoso", b"{}", Some("HMAC AAAA")).await.status(),
        401
    );
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("teams_bridge_webhook_requests_total{outcome=\"accepted\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("teams_bridge_webhook_requests_total{outcome=\"bad_signature\"}"));
    assert!(metrics.contains("teams_bridge_reply_seconds_bucket"));
    assert!(metrics.contains("le=\"7.5\""), "buckets go past 5 s");
    app.stop().await;
}

#[tokio::test]
async fn the_request_trace_context_travels_on_the_published_message() {
    let app = TestApp::spawn().await;
    let resp = app
        .http
        .post(app.url("/webhooks/contoso"))
        .header("authorization", CONTOSO_HEADER)
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(fixture("contoso-docs-example.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    app.wait_outbox_empty(Duration::from_secs(10)).await;
    let m = app.read_stream().await.pop().unwrap();
    let tp = m
        .headers
        .as_ref()
        .unwrap()
        .get("traceparent")
        .unwrap()
        .as_str()
        .to_string();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{tp}"
    );
    assert!(
        !tp.contains("00f067aa0ba902b7"),
        "a new span id for our hop: {tp}"
    );
    app.stop().await;
}

/// Walks an action tree of a card: every action an outgoing webhook sends must be
/// `Action.OpenUrl`.
fn actions_are_open_url(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Object(m) => m.iter().all(|(k, v)| {
            let ok = match (k.as_str(), v.as_str()) {
                ("type", Some(t)) if t.starts_with("Action.") => t == "Action.OpenUrl",
                _ => true,
            };
            ok && actions_are_open_url(v)
        }),
        serde_json::Value::Array(a) => a.iter().all(actions_are_open_url),
        _ => true,
    }
}

#[tokio::test]
async fn every_reply_card_is_an_adaptive_card_1_4_with_open_url_actions_only_and_under_28_kb() {
    let app = TestApp::spawn_with(&[("PUBLIC_URL", "https://hr.example.test/")]).await;
    let many: String = (0..120)
        .map(|i| format!(" f{i}=\"{}\"", "v".repeat(500)))
        .collect();
    let texts = [
        r#"update employee E-1042 title="Senior Engineer" salary_band=7"#.to_string(),
        "view employee E-1042".to_string(),
        r#"create employee E-9 name="[click](http://evil.example) <at>Boss</at> **x**""#
            .to_string(),
        format!("update employee E-7{many}"),
        "just chatting".to_string(),
        "history E-1042".to_string(),
        "help".to_string(),
        "history E-7".to_string(),
    ];
    let mut bodies: Vec<Vec<u8>> = REQUEST_FIXTURES.iter().map(|f| fixture(f)).collect();
    for (i, text) in texts.iter().enumerate() {
        let activity = serde_json::json!({"type": "message", "id": format!("card-{i}"),
            "text": format!("<at>HR</at> {text}"), "from": {"name": "Jane Doe"}});
        bodies.push(serde_json::to_vec(&activity).unwrap());
    }
    let (mut cards, mut opens) = (0, 0);
    for body in &bodies {
        let r = app.post_signed("contoso", body).await;
        assert_eq!(r.status(), 200);
        let bytes = r.bytes().await.unwrap();
        assert!(bytes.len() < 28 * 1024, "a reply of {} bytes", bytes.len());
        let reply: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(
            reply["text"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("receipt"),
            "{reply}"
        );
        for a in reply["attachments"].as_array().into_iter().flatten() {
            cards += 1;
            let links = a["content"]["actions"].as_array().into_iter().flatten();
            for link in links {
                let url = link["url"].as_str().unwrap();
                assert!(
                    url.starts_with("https://hr.example.test/console/records/E-"),
                    "{url}"
                );
                opens += 1;
            }
            assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
            assert_eq!(a["content"]["version"], "1.4", "{a}");
            assert!(actions_are_open_url(a), "{a}");
            let shown = a.to_string();
            assert!(
                !shown.contains("[click](") && !shown.contains("<at>Boss"),
                "{shown}"
            );
        }
    }
    assert_eq!(
        cards, 7,
        "one card per recorded operation and per answer; notes are text"
    );
    assert_eq!(
        opens, 6,
        "every card about a record links to its page (help has none)"
    );
    app.stop().await;

    let text_only = TestApp::spawn_with(&[("REPLY_FORMAT", "text")]).await;
    let r: serde_json::Value = text_only
        .post_signed("contoso", &bodies[4])
        .await
        .json()
        .await
        .unwrap();
    assert!(r.get("attachments").is_none(), "{r}");
    assert!(r["text"]
        .as_str()
        .unwrap()
        .starts_with("Recorded UPDATE of employee E-1042"));
    text_only.stop().await;
}

#[tokio::test]
async fn questions_in_the_thread_are_answered_at_once_even_before_the_worker_has_written_the_log() {
    // No worker runs here: the answers come from the activities the grammar reads, the gap
    // an entry spends on its way through the stream closed.
    let app = TestApp::spawn().await;
    let post = |id: &str, text: &str, who: &str| {
        let activity = serde_json::json!({"type": "message", "id": id,
            "timestamp": format!("2026-11-27T10:00:0{}Z", id.len() % 10),
            "text": format!("<at>HR</at> {text}"), "from": {"name": who, "aadObjectId": "aad-1"}});
        let body = serde_json::to_vec(&activity).unwrap();
        let app = &app;
        async move {
            let r = app.post_signed("contoso", &body).await;
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    post(
        "q",
        r#"create employee E-1042 name="Jane Doe" title=Engineer"#,
        "Ann",
    )
    .await;
    post("qq", "update employee E-1042 title=Lead", "Bob").await;
    post("qqq", "update employee E-1043 title=Other", "Bob").await;
    let history = post("qqqq", "history E-1042", "Cy").await;
    let text = history["text"].as_str().unwrap();
    assert!(text.starts_with("Employee E\\-1042 — 2 changes"), "{text}");
    let (lead, create) = (
        text.find("title=Lead").unwrap(),
        text.find("CREATE").unwrap(),
    );
    assert!(lead < create, "newest first: {text}");
    assert!(!text.contains("Other"), "{text}");
    let view = post("qqqqq", "view employee E-1042", "Cy").await;
    let text = view["text"].as_str().unwrap();
    assert!(text.contains("title: Lead (set by Bob at"), "{text}");
    assert!(text.contains("name: Jane Doe (set by Ann at"), "{text}");
    let help = post("qqqqqq", "help", "Cy").await;
    assert!(help["text"].as_str().unwrap().contains("history E-1042"));
    let none = post("qqqqqqq", "history E-404", "Cy").await;
    assert!(none["text"]
        .as_str()
        .unwrap()
        .starts_with("No recorded changes of employee E\\-404"));
    // The receiver stored which record each change names, and only for changes: the
    // questions above name E-1042 too and carry none.
    let named: Vec<(String, Option<String>)> =
        sqlx::query_as("select activity_id, change_record from activities order by activity_id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let changed: Vec<(&str, &str)> = named
        .iter()
        .filter_map(|(id, r)| Some((id.as_str(), r.as_deref()?)))
        .collect();
    assert_eq!(
        changed,
        [("q", "E-1042"), ("qq", "E-1042"), ("qqq", "E-1043")],
        "{named:?}"
    );
    app.stop().await;
}
