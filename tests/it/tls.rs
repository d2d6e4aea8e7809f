//! HTTPS served by the binary itself (rustls), with a certificate generated in the test.

use crate::helpers::*;

#[tokio::test]
async fn with_tls_cert_and_key_the_service_speaks_https() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let app = TestApp::spawn_with(&[
        ("TLS_CERT", cert_path.to_str().unwrap()),
        ("TLS_KEY", key_path.to_str().unwrap()),
    ])
    .await;

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", app.addr.port());
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.version(), reqwest::Version::HTTP_11);
    let body = fixture("contoso-docs-example.json");
    let r = client
        .post(format!("{base}/webhooks/contoso"))
        .header("authorization", CONTOSO_HEADER)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.activity_count().await, 1);
    // The container health check finds HTTPS by itself from the same settings.
    // (Run off the test's runtime thread: the server under test lives on it.)
    let port = app.addr.port();
    let (cp, kp) = (cert_path.clone(), key_path.clone());
    let hc = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_teams-bridge"))
            .arg("healthcheck")
            .env_clear()
            .env("LISTEN_ADDR", format!("0.0.0.0:{port}"))
            .env("TLS_CERT", cp)
            .env("TLS_KEY", kp)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        hc.status.success(),
        "{}",
        String::from_utf8_lossy(&hc.stderr)
    );
    // Plain HTTP on the TLS port gets nowhere.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{}/healthz", app.addr.port()))
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
    );
    app.stop().await;
}
