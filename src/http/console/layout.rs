//! The console's page frame and stylesheet: one readable, responsive layout with a skip link,
//! labelled navigation, visible focus and colours that keep WCAG AA contrast. No script.

use maud::{html, Markup, DOCTYPE};

/// Who is signed in, for the frame: their name and the CSRF token of the sign-out form.
pub struct Frame<'a> {
    /// The auditor.
    pub user: &'a str,
    /// The session's CSRF token.
    pub csrf: &'a str,
}

/// A whole page.
pub fn page(title: &str, frame: Option<&Frame<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · teams-bridge audit console" }
                link rel="stylesheet" href="/console/console.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "teams-bridge · audit console" }
                    @if let Some(f) = frame {
                        nav aria-label="Console" {
                            a href="/console" { "Search" }
                            a href="/console/dead-letters" { "Dead letters" }
                            a href="/console/access" { "Access log" }
                        }
                        form.signout method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(f.csrf);
                            span.who { "Signed in as " strong { (f.user) } }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" { h1 { (title) } (body) }
                footer { "Every page you open here is written to the access log." }
            }
        }
    }
}

/// A notice: `error`, `empty` or `info`.
pub fn notice(kind: &str, text: &str) -> Markup {
    html! { p class=(format!("notice {kind}")) role=[(kind == "error").then_some("alert")] { (text) } }
}

/// The stylesheet (served at `/console/console.css`).
pub const CSS: &str = r#"
:root { --ink: #1b1f24; --muted: #4f5965; --line: #d5dbe1; --bg: #f6f8fa; --card: #fff;
        --accent: #0b5cad; --warn-bg: #fff4e5; --warn: #7a4100; --bad-bg: #fdecec; --bad: #8a1c1c;
        --ok: #1a6b35; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: var(--bg); }
a { color: var(--accent); }
a:focus, button:focus, input:focus, select:focus { outline: 3px solid #ffbf47; outline-offset: 1px; }
.skip { position: absolute; left: -999px; } .skip:focus { left: 8px; top: 8px; background: #fff; padding: 4px 8px; }
header.top { display: flex; flex-wrap: wrap; gap: 12px 24px; align-items: center; padding: 10px 24px;
             background: #14324f; color: #fff; }
header.top a { color: #fff; text-decoration: none; padding: 4px 2px; border-bottom: 2px solid transparent; }
header.top a:hover { border-bottom-color: #fff; }
.brand { font-weight: 700; letter-spacing: .02em; }
nav { display: flex; gap: 18px; flex: 1; }
form.signout { display: flex; gap: 10px; align-items: center; margin: 0; }
form.signout button { background: transparent; color: #fff; border: 1px solid #fff; }
main { max-width: 1200px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 1.6rem; margin: 8px 0 16px; } h2 { font-size: 1.2rem; margin: 28px 0 8px; }
footer { max-width: 1200px; margin: 0 auto; padding: 0 24px 24px; color: var(--muted); font-size: .85rem; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px; }
form.filters { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 12px; }
label { display: block; font-size: .85rem; font-weight: 600; color: var(--muted); margin-bottom: 2px; }
input, select { width: 100%; padding: 7px 9px; font: inherit; border: 1px solid #8a96a3; border-radius: 5px; background: #fff; }
button, .button { padding: 7px 14px; font: inherit; border-radius: 5px; border: 1px solid var(--accent);
                  background: var(--accent); color: #fff; cursor: pointer; text-decoration: none; display: inline-block; }
.actions { display: flex; gap: 12px; align-items: end; flex-wrap: wrap; }
.button.secondary { background: #fff; color: var(--accent); }
table { width: 100%; border-collapse: collapse; background: var(--card); font-size: .93rem; }
th, td { text-align: left; padding: 7px 9px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #eef2f6; font-weight: 600; }
.scroll { overflow-x: auto; border: 1px solid var(--line); border-radius: 8px; }
td.mono, code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .85rem; }
pre { background: #0f1720; color: #e6edf3; padding: 14px; border-radius: 8px; overflow-x: auto; white-space: pre-wrap; word-break: break-word; }
.tag { display: inline-block; padding: 1px 7px; border-radius: 10px; font-size: .78rem; font-weight: 600; }
.tag.warn { background: var(--warn-bg); color: var(--warn); } .tag.bad { background: var(--bad-bg); color: var(--bad); }
.tag.ok { background: #e7f5ec; color: var(--ok); } .tag.op { background: #e8f0fb; color: #0b3d75; }
.notice { padding: 10px 14px; border-radius: 6px; border: 1px solid var(--line); background: var(--card); }
.notice.error { background: var(--bad-bg); color: var(--bad); border-color: #e8b4b4; }
.notice.empty { color: var(--muted); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 6px 18px; margin: 0; }
dl.facts dt { font-weight: 600; color: var(--muted); } dl.facts dd { margin: 0; word-break: break-word; }
.login { max-width: 420px; margin: 40px auto; } .login form > div { margin-bottom: 12px; }
@media (max-width: 640px) { main { padding: 12px; } header.top { padding: 10px 12px; } dl.facts { grid-template-columns: 1fr; } }
"#;
