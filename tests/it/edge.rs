//! The public edge against slow and greedy clients (#10, finding 1), over raw sockets: what
//! a browser or reqwest would never send, an attacker will.

use std::time::{Duration, Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::*;

/// Reads until the server closes the connection (or `within` passes); returns what was read
/// and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&out).into(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// A well-formed `Authorization` value (a request without one is refused before its body).
const SOME_MAC: &str = "HMAC 03TCao0i55H1eVKUusZOTZRjtvYTs+mO41mPL+R1e1U=";

fn status_of(response: &str) -> Option<u16> {
    response.split(' ').nth(1)?.parse().ok()
}

#[tokio::test]
async fn a_partial_request_head_and_an_idle_keep_alive_connection_are_closed_after_the_header_timeout(
) {
    let app = TestApp::spawn_with(&[("HTTP_HEADER_TIMEOUT_SECS", "1")]).await;
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"POST /webhooks/contoso HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(closed, "a head that never ends must not hold a connection");
    eprintln!("partial head closed after {:?}", started.elapsed());

    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut idle, Duration::from_secs(10)).await;
    assert_eq!(status_of(&answer), Some(200), "{answer}");
    assert!(closed, "an idle keep-alive connection is closed");
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_stalls_is_cut_within_the_reply_budget() {
    let app = TestApp::spawn_with(&[("REPLY_BUDGET_MS", "1000")]).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let head = format!("POST /webhooks/contoso HTTP/1.1\r\nHost: x\r\nAuthorization: {SOME_MAC}\r\nContent-Length: 100\r\n\r\n{{\"type\":");
    s.write_all(head.as_bytes()).await.unwrap();
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(status_of(&answer), Some(408), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert_eq!(app.activity_count().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn an_oversized_declared_body_and_an_unknown_name_are_refused_before_the_body_is_read() {
    let app = TestApp::spawn().await;
    for (path, want) in [("/webhooks/contoso", 413), ("/webhooks/nobody", 401)] {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {SOME_MAC}\r\nContent-Length: 10000000\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        // No body follows: only an answer given before reading it can come.
        let (answer, _) = read_until_closed(&mut s, Duration::from_secs(3)).await;
        assert_eq!(status_of(&answer), Some(want), "{path}: {answer}");
    }
    app.stop().await;
}

#[tokio::test]
async fn connections_beyond_max_connections_are_refused_fast() {
    let app = TestApp::spawn_with(&[("MAX_CONNECTIONS", "20")]).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        assert!(
            s.read(&mut buf).await.unwrap() > 0,
            "the first 20 are served"
        );
        held.push(s);
    }
    let mut extra = TcpStream::connect(app.addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let (answer, closed) = read_until_closed(&mut extra, Duration::from_secs(3)).await;
    assert!(
        closed && answer.is_empty(),
        "the 21st is closed at once: {answer:?}"
    );
    drop(held);
    let metrics = eventually(
        Duration::from_secs(5),
        "a connection free again",
        || async {
            app.http
                .get(app.url("/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()
        },
    )
    .await;
    assert!(
        metrics.contains("teams_bridge_connections_refused_total"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn with_thousands_of_idle_connections_open_a_signed_request_is_still_answered() {
    let app = TestApp::spawn().await;
    let mut idle = Vec::with_capacity(3000);
    for _ in 0..3000 {
        idle.push(TcpStream::connect(app.addr).await.expect("connect"));
    }
    let body = br#"{"type":"message","id":"among-idle","text":"hi"}"#;
    let started = Instant::now();
    let r = app.post_signed("contoso", body).await;
    assert_eq!(r.status(), 200);
    eprintln!(
        "answered among 3000 idle connections in {:?}",
        started.elapsed()
    );
    drop(idle);
    app.stop().await;
}
