//! The API description is exact (#13): schemathesis (pinned in tests/requirements.txt,
//! installed by scripts/test.sh) generates requests from `openapi.json`, both ones it allows
//! and ones it forbids, against the real service holding every kind of entry (changes, reads,
//! notes, a grant, an erasure's entry and erased entries, a change that did not count). It
//! fails on any 5xx, a schema-valid request refused, a forbidden one accepted, or a response
//! that does not match its schema.

use std::path::Path;

use crate::console::seeded;

#[tokio::test]
async fn the_api_and_its_openapi_description_agree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let st = root.join("target/contract-venv/bin/schemathesis");
    assert!(
        st.exists(),
        "schemathesis is not installed: run scripts/test.sh (it makes target/contract-venv)"
    );
    let s = seeded().await;
    let editor = "6f1c2a3b-0000-4a5b-9c8d-00000000e017";
    assert_eq!(
        s.cli(&["editors", "add", "--webhook", "contoso", editor]).0,
        0
    );
    let (code, out, err) = s.cli(&[
        "erase",
        "--actor",
        "aad-jane",
        "--reason",
        "contract test",
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    // An outsider's change (it does not count once the receiver has reloaded the list), then
    // the erasure of its record.
    let body = serde_json::to_vec(&serde_json::json!({"type": "message", "id": "k-1",
        "text": "<at>HR</at> update employee E-2001 band=9", "from": {"name": "Oscar", "aadObjectId": "aad-oscar"}}))
    .unwrap();
    assert_eq!(s.app.post_signed("contoso", &body).await.status(), 200);
    s.wait_sealed().await;
    assert_eq!(
        s.cli(&["erase", "--record", "E-2001", "--reason", "contract test"])
            .0,
        0
    );
    let token = "test-audit-token-0123456789abcdef0123";
    let run = tokio::process::Command::new(&st)
        .args(["run", root.join("openapi.json").to_str().unwrap()])
        .args(["--url", s.app.url("").trim_end_matches('/')])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "all", "--max-examples", "150", "--workers", "1"])
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("schemathesis runs");
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the API and openapi.json disagree:\n{out}"
    );
    assert!(out.contains("No issues found"), "{out}");
    let entries: i64 = sqlx::query_scalar("select count(*) from audit_log where authorized = false or redacted is not null or operation in ('grant', 'erase')")
        .fetch_one(&s.app.pool)
        .await
        .unwrap();
    assert!(
        entries >= 4,
        "every kind of entry was there to be described ({entries})"
    );
    s.stop().await;
}
