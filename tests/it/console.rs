//! The auditor's console over real HTTP (#13): sign-in with a token from the CLI, cookie
//! attributes, CSRF, pages with real data, CSV export, the access log, sign-out; an
//! unauthenticated request goes to the sign-in page. The browser test is `browser.rs`.

use std::time::Duration;

use crate::seal::Sealed;

/// Posts HR messages as Jane and waits for their sealed entries.
pub(crate) async fn seeded() -> Sealed {
    let s = Sealed::start().await;
    for (id, text) in [
        (
            "c-1",
            r#"create employee E-1042 name="Ann Lee" title=Engineer"#,
        ),
        (
            "c-2",
            r#"update employee E-1042 title="Senior Engineer" note="=HYPERLINK(\"x\")""#,
        ),
        ("c-3", "update employee E-2001 band=7"),
        ("c-4", "view employee E-1042"),
        ("c-5", r#"=HYPERLINK("http://evil.example","click")"#),
    ] {
        let body = serde_json::to_vec(&serde_json::json!({
            "type": "message", "id": id, "timestamp": "2026-11-27T10:00:00Z",
            "text": format!("<at>HR Audit</at>&nbsp;{text}\n"),
            "from": {"id": "29:jane", "name": "Jane Doe", "aadObjectId": "aad-jane"},
            "channelData": {"team": {"id": "team-1"}, "channel": {"id": "chan-1"}, "tenant": {"id": "tenant-1"}}
        }))
        .unwrap();
        assert_eq!(s.app.post_signed("contoso", &body).await.status(), 200);
    }
    s.wait_sealed().await;
    s
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The value of a hidden input in a page.
fn hidden(html: &str, name: &str) -> String {
    let at = html.find(&format!(r#"name="{name}" value=""#)).expect(name);
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

#[tokio::test]
async fn an_auditor_signs_in_searches_reads_exports_is_logged_and_signs_out() {
    let s = seeded().await;
    let (code, token, err) = s.cli(&["console", "add-user", "ann.auditor"]);
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_string();
    assert_eq!(
        s.cli(&["console", "add-user", "ann.auditor"]).0,
        1,
        "names are unique"
    );
    let http = no_redirects();
    let url = |p: &str| s.app.url(p);

    let r = http
        .get(url("/console/records/E-1042"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        303,
        "an unauthenticated request goes to the sign-in page"
    );
    let to = r.headers()["location"].to_str().unwrap();
    assert_eq!(to, "/console/login?next=%2Fconsole%2Frecords%2FE-1042");

    let form = http.get(url(to)).send().await.unwrap();
    let login_cookie = form.headers()["set-cookie"].to_str().unwrap().to_string();
    let page = form.text().await.unwrap();
    let (csrf, next) = (hidden(&page, "csrf"), hidden(&page, "next"));
    assert_eq!(next, "/console/records/E-1042");
    let login = |name: &str, token: &str, csrf: &str| {
        let body = serde_urlencoded::to_string([
            ("name", name),
            ("token", token),
            ("csrf", csrf),
            ("next", &next),
        ])
        .unwrap();
        http.post(url("/console/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "cookie",
                format!("tb_console_login={}", cookie_value(&login_cookie)),
            )
            .body(body)
            .send()
    };
    assert_eq!(
        login("ann.auditor", "wrong", &csrf).await.unwrap().status(),
        401
    );
    assert_eq!(
        login("ann.auditor", &token, "forged")
            .await
            .unwrap()
            .status(),
        403
    );
    let r = login("ann.auditor", &token, &csrf).await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/records/E-1042");
    let set = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string());
    let session = set
        .into_iter()
        .find(|c| c.starts_with("tb_console="))
        .expect("a session cookie");
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=28800",
        "Path=/console",
    ] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(!session.contains("Secure"), "plain HTTP here: {session}");
    let cookie = format!("tb_console={}", cookie_value(&session));
    let get = |p: &str| http.get(url(p)).header("cookie", cookie.clone()).send();

    let record = get("/console/records/E-1042").await.unwrap();
    assert_eq!(record.status(), 200);
    let html = record.text().await.unwrap();
    assert!(
        html.contains("Senior Engineer") && html.contains("Changes over time"),
        "{html}"
    );
    let search = get("/console?record=E-2001&operation=update")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        search.contains("band=7") && !search.contains("Senior Engineer"),
        "{search}"
    );
    let bad = get("/console?since=yesterday-ish").await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(
        bad.text().await.unwrap().contains("parameter since"),
        "a clear error"
    );
    let id = one_id(&s, "c-2").await;
    let evidence = get(&format!("/console/entries/{id}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        evidence.contains("valid")
            && evidence.contains("sealed")
            && evidence.contains("&quot;aadObjectId&quot;"),
        "{evidence}"
    );
    let raw = get(&format!("/console/entries/{id}/raw"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let stored: Vec<u8> = sqlx::query_scalar(&format!(
        "select raw from activities where event_id = '{id}'"
    ))
    .fetch_one(&s.app.pool)
    .await
    .unwrap();
    assert_eq!(raw.to_vec(), stored, "the exact bytes");

    let csv = get("/console/export.csv?record=E-1042").await.unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let records: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    assert_eq!(
        records.len(),
        3,
        "create, update and the read of E-1042: {csv}"
    );
    let all = get("/console/export.csv")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut rows = csv::Reader::from_reader(all.as_bytes());
    let messages: Vec<String> = rows.records().map(|r| r.unwrap()[7].to_string()).collect();
    assert_eq!(messages.len(), 5, "{all}");
    let formula = messages
        .iter()
        .find(|m| m.contains("HYPERLINK("))
        .expect("the note");
    assert!(
        formula.starts_with("'="),
        "a cell that would be a formula is neutralised: {all}"
    );

    let access = get("/console/access").await.unwrap().text().await.unwrap();
    for seen in [
        "GET /console/records/E-1042",
        "GET /console/export.csv?record=E-1042",
        "GET /console/export.csv",
        "ann.auditor",
    ] {
        assert!(
            access.contains(seen),
            "{seen} is in the access log: {access}"
        );
    }
    let logged: i64 =
        sqlx::query_scalar("select count(*) from console_access where user_name = 'ann.auditor'")
            .fetch_one(&s.app.pool)
            .await
            .unwrap();
    assert!(logged >= 7, "every view is logged: {logged}");

    let signout_csrf = hidden(&access, "csrf");
    let logout = |csrf: &str| {
        http.post(url("/console/logout"))
            .header("cookie", cookie.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}"))
            .send()
    };
    assert_eq!(
        logout("forged").await.unwrap().status(),
        403,
        "CSRF refused"
    );
    assert_eq!(
        get("/console").await.unwrap().status(),
        200,
        "still signed in"
    );
    assert_eq!(logout(&signout_csrf).await.unwrap().status(), 303);
    assert_eq!(
        get("/console").await.unwrap().status(),
        303,
        "the session is over"
    );
    s.stop().await;
}

async fn one_id(s: &Sealed, activity_id: &str) -> String {
    sqlx::query_scalar(&format!(
        "select event_id::text from activities where activity_id = '{activity_id}'"
    ))
    .fetch_one(&s.app.pool)
    .await
    .unwrap()
}
