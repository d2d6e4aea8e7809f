//! The console in a real browser (#13): Debian's Chromium driven by playwright-core
//! (`tests/browser/console.mjs`) against the real service with real data. Screenshots of
//! every page go to `target/console-screenshots/`. A missing browser or package fails the
//! test, never skips it: `.ci/run` (and `scripts/test.sh`) install both.

use std::path::Path;

use crate::console::seeded;

#[tokio::test]
async fn an_auditor_uses_the_console_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("tests/browser/console.mjs");
    let modules = root.join("tests/browser/node_modules/playwright-core");
    assert!(
        modules.exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/browser` (scripts/test.sh does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: install Debian's `chromium` package (scripts/test.sh does)"
    );
    let s = seeded().await;
    let (code, token, err) = s.cli(&["console", "add-user", "ann.auditor"]);
    assert_eq!(code, 0, "{err}");
    let shots = root.join("target/console-screenshots");
    // Async: the service runs on this test's runtime and must keep answering meanwhile.
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .env("CONSOLE_URL", s.app.url("").trim_end_matches('/'))
        .env("CONSOLE_USER", "ann.auditor")
        .env("CONSOLE_TOKEN", token.trim())
        .env("SCREENSHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .output()
        .await
        .expect("node runs");
    let (out, err) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(
        run.status.success(),
        "the browser test failed:\n{out}\n{err}"
    );
    for name in [
        "1-sign-in",
        "2-search",
        "3-record-timeline",
        "4-entry-evidence",
        "5-access-log",
        "6-signed-out",
    ] {
        let file = shots.join(format!("{name}.png"));
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 10_000,
            "{} is a real screenshot ({size} bytes)",
            file.display()
        );
    }
    s.stop().await;
}
