//! How long the parsers that face hostile input take on 256 KiB built to be slow: thousands
//! of unclosed mentions, tags that never close, entity runs, a grammar line of 256 KiB.
//! Prints each figure; run it in a release build:
//!
//! ```sh
//! cargo run --release --example parse_worst_case
//! ```

use std::time::Instant;

use teams_bridge::domain::{activity::Activity, hr_command, markup, signature};

const SIZE: usize = 256 * 1024;

fn fill(unit: &str) -> String {
    unit.repeat(SIZE / unit.len())
}

fn time(what: &str, f: impl Fn()) {
    f(); // warm-up
    let runs = 5;
    let started = Instant::now();
    for _ in 0..runs {
        f();
    }
    let ms = started.elapsed().as_secs_f64() * 1e3 / runs as f64;
    println!("{what:<48} {ms:>8.2} ms");
}

fn main() {
    let inputs = [
        ("unclosed <at> mentions", fill("<at>")),
        (
            "unclosed <at> then one </at> at the end",
            fill("<at>x") + "</at>",
        ),
        ("tags that never close", fill("<a ")),
        ("entities and nbsp", fill("&nbsp;&amp;&#x1F37A;")),
        (
            "a 256 KiB update line",
            format!("update employee E-1 {}", fill("f=\"v\" ")),
        ),
        (
            "quotes and backslashes",
            format!("update employee E-1 x=\"{}\"", fill("\\\\\\\"")),
        ),
    ];
    for (what, text) in &inputs {
        time(&format!("markup: {what}"), || {
            std::hint::black_box(markup::plain_text(text));
        });
        time(&format!("grammar: {what}"), || {
            std::hint::black_box(hr_command::parse(text));
        });
    }
    let body = serde_json::to_vec(&serde_json::json!({ "type": "message", "text": fill("<at>") }))
        .expect("JSON");
    time("activity: 256 KiB body of mentions", || {
        std::hint::black_box(Activity::parse(&body).ok());
    });
    let nul = fill("\\\\\\u0000");
    time("activity: NUL-escape scan of backslash runs", || {
        std::hint::black_box(Activity::parse(nul.as_bytes()).ok());
    });
    let ring = signature::KeyRing::from_tokens(["QgyNSToQjf4p6+YzDpjKks1/tXeJQ7FhVHqRwTnugVI="])
        .expect("a token");
    let header = format!("HMAC {}", "A".repeat(SIZE));
    time("signature: 256 KiB Authorization header", || {
        std::hint::black_box(ring.verify(Some(header.as_bytes()), b"{}").ok());
    });
}
