//! Personal data (#12): HR editors decide what counts as a change, retention removes the old
//! and keeps the recent and the held, erasure by actor and by record leaves nothing in a
//! `pg_dump` or the stream and the sealed log still verifies; holds refuse erasure.

use std::{process::Command, time::Duration};

use crate::{
    helpers::*,
    seal::{exec, one, Sealed},
};

const EDITOR: &str = "6f1c2a3b-0000-4a5b-9c8d-00000000e017";
const OUTSIDER: &str = "6f1c2a3b-0000-4a5b-9c8d-0000000000f1";
const ZED: &str = "6f1c2a3b-0000-4a5b-9c8d-00000000a2ed";

/// A Teams message from a person, at a time (RFC 3339).
fn message(id: &str, text: &str, who: (&str, &str, &str), at: &str) -> Vec<u8> {
    let (name, aad, teams_id) = who;
    serde_json::to_vec(&serde_json::json!({
        "type": "message",
        "id": id,
        "timestamp": at,
        "text": format!("<at>HR Audit</at>&nbsp;{text}\n"),
        "from": {"id": teams_id, "name": name, "aadObjectId": aad},
        "conversation": {"id": "19:chan-1@thread.tacv2;messageid=1"},
        "channelData": {"team": {"id": "team-1"}, "channel": {"id": "chan-1"}, "tenant": {"id": "tenant-1"}}
    }))
    .unwrap()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

async fn post(s: &Sealed, body: &[u8]) -> serde_json::Value {
    let r = s.app.post_signed("contoso", body).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_change_by_someone_not_an_editor_is_recorded_but_not_counted_and_list_changes_are_audited(
) {
    let s = Sealed::start().await;
    let (code, out, err) = s.cli(&["editors", "add", "--webhook", "nowhere", EDITOR]);
    assert_eq!(code, 2, "an unknown webhook is bad usage: {out}{err}");
    let (code, out, err) = s.cli(&[
        "editors",
        "add",
        "--webhook",
        "contoso",
        EDITOR,
        "--name",
        "Erin Editor",
        "--by",
        "it-admin",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("is an HR editor of contoso (audit entry "),
        "{out}"
    );
    let (_, again, _) = s.cli(&["editors", "add", "--webhook", "contoso", EDITOR]);
    assert!(again.contains("already; nothing changed"), "{again}");
    let (_, list, _) = s.cli(&["editors", "list"]);
    assert!(
        list.starts_with(&format!("contoso\t{EDITOR}\tErin Editor\t")),
        "{list}"
    );

    // The receiver learns of the list from Postgres' notification (or its periodic reload).
    let outsider = ("Oscar Outsider", OUTSIDER, "29:oscar");
    let mut probe = 0;
    let service = &s;
    eventually(
        Duration::from_secs(10),
        "the receiver uses the list",
        || {
            probe += 1;
            let body = message(
                &format!("probe-{probe}"),
                "delete employee E-0",
                outsider,
                &now(),
            );
            async move {
                let reply = post(service, &body).await;
                reply["text"]
                    .as_str()?
                    .starts_with("Not recorded")
                    .then_some(())
            }
        },
    )
    .await;

    let editor = ("Erin Editor", EDITOR, "29:erin");
    let ok = post(
        &s,
        &message("m-1", "update employee E-1042 title=Lead", editor, &now()),
    )
    .await;
    assert!(ok["text"]
        .as_str()
        .unwrap()
        .starts_with("Recorded UPDATE of employee E-1042"));
    assert_eq!(ok["attachments"].as_array().map(Vec::len), Some(1));
    let body = message("m-2", "update employee E-1042 title=Boss", outsider, &now());
    let refused = post(&s, &body).await;
    let text = refused["text"].as_str().unwrap().to_string();
    let want = "Not recorded as a change: you are not an HR editor for this team — receipt ";
    assert!(text.starts_with(want), "{text}");
    assert!(
        refused.get("attachments").is_none(),
        "no card says it was recorded"
    );
    assert_eq!(
        post(&s, &body).await["text"],
        text.as_str(),
        "a repeat gets the same answer"
    );
    let read = post(
        &s,
        &message("m-3", "view employee E-1042", outsider, &now()),
    )
    .await;
    let state = read["text"].as_str().unwrap();
    assert!(
        state.contains("title: Lead (set by Erin Editor"),
        "reads are open, and the refused change does not count: {state}"
    );
    s.wait_sealed().await;
    let history = post(&s, &message("m-4", "history E-1042", outsider, &now())).await;
    let history = history["text"].as_str().unwrap();
    assert!(
        history.contains("title=Lead") && !history.contains("Boss"),
        "{history}"
    );

    let pool = &s.app.pool;
    let receipt = text.rsplit(' ').next().unwrap();
    let flag = |id: &str| format!("select authorized::text from audit_log where event_id = '{id}'");
    assert_eq!(one(pool, &flag(receipt)).await, "false");
    let ok_id = ok["text"]
        .as_str()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(one(pool, &flag(&ok_id)).await, "true");
    let (_, json, _) = s.cli(&["audit", "--record", "E-1042", "--format", "json"]);
    let entries: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let boss = entries
        .iter()
        .find(|e| e["changes"]["title"] == "Boss")
        .expect("recorded");
    assert_eq!(boss["authorized"], false, "{json}");
    let grant = one(
        pool,
        "select changes::text from audit_log where operation = 'grant'",
    )
    .await;
    assert!(
        grant.contains(EDITOR) && grant.contains("Erin Editor"),
        "{grant}"
    );

    let (code, out, _) = s.cli(&["verify", "--evidence"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 operator entries"),
        "the grant has no Teams activity: {out}"
    );
    // The decision is sealed: counting the refused change by SQL is found.
    exec(
        pool,
        &format!("update audit_log set authorized = true where event_id = '{receipt}'"),
    )
    .await;
    let (code, out, _) = s.cli(&["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("MODIFIED  entry {receipt}")), "{out}");
    exec(
        pool,
        &format!("update audit_log set authorized = false where event_id = '{receipt}'"),
    )
    .await;

    let (code, out, _) = s.cli(&["editors", "remove", "--webhook", "contoso", EDITOR]);
    assert_eq!(code, 0);
    assert!(
        out.contains("everyone in its team may record changes again"),
        "{out}"
    );
    assert_eq!(
        one(
            pool,
            "select count(*)::text from audit_log where operation = 'revoke'"
        )
        .await,
        "1"
    );
    s.wait_sealed().await;
    assert_eq!(s.cli(&["verify"]).0, 0);
    s.stop().await;
}

#[tokio::test]
async fn a_retention_pass_walks_in_batches_past_what_it_keeps() {
    use teams_bridge::privacy::retention::{dry_run, run_in_batches_of, Policy};
    let s = Sealed::start().await;
    let old = (chrono::Utc::now() - chrono::TimeDelta::days(40)).to_rfc3339();
    let jane = ("Jane Old", "aad-jane", "29:jane");
    let held = ("Hal Held", "aad-hal", "29:hal");
    // Held rows first and in the middle: every batch must move on past them.
    for (i, who) in [held, jane, jane, held, jane, jane, jane]
        .into_iter()
        .enumerate()
    {
        let text = format!("update employee E-{i} title=Old");
        post(&s, &message(&format!("w-{i}"), &text, who, &old)).await;
    }
    s.wait_sealed().await;
    let pool = &s.app.pool;
    // Last in the walk, a message the worker dead-lettered (no entry): its dead letter, first
    // by id, must not go before the batch that expires it, or it would never expire.
    exec(
        pool,
        "insert into activities select * from jsonb_populate_record(null::activities, \
         (select to_jsonb(a) || jsonb_build_object('event_id', gen_random_uuid(), 'activity_id', 'w-7') \
          from activities a where activity_id = 'w-6'))",
    )
    .await;
    exec(
        pool,
        "insert into dead_letters (consumer, stream, stream_seq, subject, event_id, reason, deliveries, raw, created_at) \
         select 'c', 's', 1, 'x', event_id::text, 'test', 1, '\\x00', now() - interval '40 days' \
         from activities where activity_id = 'w-7'",
    )
    .await;
    exec(
        pool,
        "update activities set received_at = now() - interval '40 days' + interval '1 second' * \
         substr(activity_id, 3)::int",
    )
    .await;
    assert_eq!(s.cli(&["hold", "add", "--actor", "aad-hal"]).0, 0);
    let policy = Policy {
        activity_days: Some(30),
        audit_days: Some(30),
    };
    let dry = dry_run(pool, policy).await.unwrap();
    assert_eq!((dry.activities, dry.dead_letters), (6, 1), "{dry:?}");
    let pass = run_in_batches_of(pool, policy, 2).await.unwrap();
    let r = pass.removed;
    assert_eq!((r.activities, r.dead_letters, r.audit_entries), (6, 1, 5));
    // 2 + 2 + 2, then one that finds nothing after the last key.
    assert_eq!(pass.batches, 4, "{pass:?}");
    let state = "select string_agg(activity_id || ':' || coalesce(redacted, 'kept'), ' ' \
                 order by activity_id) from activities";
    assert_eq!(
        one(pool, state).await,
        "w-0:kept w-1:expired w-2:expired w-3:kept w-4:expired w-5:expired w-6:expired \
         w-7:expired"
    );
    let kept = "select count(*)::text from audit_log where redacted is null";
    assert_eq!(one(pool, kept).await, "2", "the held person's entries");
    let again = run_in_batches_of(pool, policy, 2).await.unwrap();
    assert_eq!((again.removed.activities, again.batches), (0, 1));
    s.stop().await;
}

#[tokio::test]
async fn retention_removes_the_old_and_keeps_the_recent_and_the_held() {
    // The worker keeps everything (its own pass would race the holds placed below); the
    // commands run with the policy.
    let s = Sealed::start().await;
    let policy = [
        ("ACTIVITY_RETENTION_DAYS", "30"),
        ("AUDIT_RETENTION_DAYS", "30"),
    ];
    let old = (chrono::Utc::now() - chrono::TimeDelta::days(40)).to_rfc3339();
    let jane = ("Jane Old", "aad-jane", "29:jane");
    let held = ("Hal Held", "aad-hal", "29:hal");
    post(
        &s,
        &message("r-1", "update employee E-1 title=Old", jane, &old),
    )
    .await;
    post(
        &s,
        &message("r-2", "update employee E-2 title=Held", held, &old),
    )
    .await;
    post(
        &s,
        &message("r-3", "update employee E-9 title=Case", jane, &old),
    )
    .await;
    post(
        &s,
        &message("r-4", "update employee E-1 title=New", jane, &now()),
    )
    .await;
    s.wait_sealed().await;
    let pool = &s.app.pool;
    // Teams' timestamp dates the entries; the receipt time of the old ones is moved back.
    exec(
        pool,
        "update activities set received_at = now() - interval '40 days' where activity_id <> 'r-4'",
    )
    .await;
    assert_eq!(
        s.cli(&["hold", "add", "--actor", "aad-hal", "--reason", "case 7"])
            .0,
        0
    );
    assert_eq!(s.cli(&["hold", "add", "--record", "E-9"]).0, 0);
    let (_, holds, _) = s.cli(&["hold", "list"]);
    assert!(
        holds.contains("actor\taad-hal\tcase 7") && holds.contains("record\tE-9"),
        "{holds}"
    );

    // Three old dead letters: one of the held person's activity (kept), one of nothing and one
    // whose `ce-id` is no uuid at all (both pruned; the second must not break the pass).
    exec(
        pool,
        "insert into dead_letters (consumer, stream, stream_seq, subject, event_id, reason, deliveries, raw, created_at) \
         select 'c', 's', n, 'x', case when n = 1 then (select event_id::text from activities where activity_id = 'r-2') \
                                       when n = 3 then 'not-a-uuid' end, \
                'test', 1, '\\x00', now() - interval '40 days' from generate_series(1, 3) n",
    )
    .await;
    let (code, dry, err) = s.cli_with(&policy, &["retention", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        dry.contains("would remove: 1 activities") && dry.contains("of 1 audit entries"),
        "{dry}"
    );
    assert!(
        dry.contains("legal hold: 2 activities, 2 audit entries"),
        "{dry}"
    );
    let untouched = "select count(*)::text from activities where raw is not null";
    assert_eq!(one(pool, untouched).await, "4", "a dry run changes nothing");

    let (code, out, _) = s.cli_with(&policy, &["retention"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("removed: 1 activities") && out.contains("2 dead letters"),
        "{out}"
    );
    let kept = "select count(*)::text from dead_letters where event_id is not null";
    assert_eq!(
        one(pool, kept).await,
        "1",
        "the held person's dead letter stays"
    );
    assert_eq!(
        one(pool, "select count(*)::text from dead_letters").await,
        "1"
    );
    let state = "select string_agg(activity_id || ':' || coalesce(redacted, 'kept') || ':' || \
                 coalesce(sender_name, '-'), ' ' order by activity_id) from activities";
    assert_eq!(
        one(pool, state).await,
        "r-1:expired:- r-2:kept:Hal Held r-3:kept:Jane Old r-4:kept:Jane Old"
    );
    let entries = "select string_agg(coalesce(l.redacted, 'kept') || ':' || l.message, ' ' \
                   order by x.activity_id) from audit_log l join activities x using (event_id)";
    assert_eq!(
        one(pool, entries).await,
        "expired: kept:update employee E-2 title=Held kept:update employee E-9 title=Case \
         kept:update employee E-1 title=New"
    );
    let (_, again, _) = s.cli_with(&policy, &["retention"]);
    assert_eq!(again.lines().next(), Some("removed: 0 activities (bytes and names; tombstones stay), 0 dead letters, personal fields of 0 audit entries"), "{again}");
    assert!(
        again.contains("in 1 batch (one transaction each)"),
        "{again}"
    );

    let (code, out, _) = s.cli(&["verify"]);
    assert_eq!(
        code, 1,
        "without the policy, an expired entry is unexplained: {out}"
    );
    assert!(
        out.contains("AUDIT_RETENTION_DAYS is not set here"),
        "{out}"
    );
    let (code, out, _) = s.cli_with(&policy, &["verify", "--evidence"]);
    assert_eq!(code, 0, "pruned leaves still verify: {out}");
    assert!(
        out.contains("erased 0, expired 1") && out.contains("evidence skipped for 1"),
        "{out}"
    );
    // Wiping a recent entry and calling it retention is tampering.
    exec(
        pool,
        "update audit_log set actor_name = null, actor_aad_object_id = null, changes = '{}', \
         message = '', personal_salt = null, redacted = 'expired', redacted_at = now() + interval '99 days' \
         where event_id = (select event_id from activities where activity_id = 'r-4')",
    )
    .await;
    let (code, out, _) = s.cli_with(&policy, &["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("marked expired before AUDIT_RETENTION_DAYS ended"),
        "{out}"
    );
    s.stop().await;
}

/// Everything a person could find the erased data in: the database dump (text and the hex
/// of bytea) and every message of the stream (headers and payload).
async fn traces(s: &Sealed, needles: &[&str]) -> Vec<String> {
    let url = s.app.config.database_url.expose().to_string();
    let dump = Command::new("pg_dump").arg(&url).output().unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8(dump.stdout).unwrap();
    assert!(dump.contains("COPY public.audit_log"), "a real dump");
    let mut stream = String::new();
    for m in s.app.read_stream().await {
        stream.push_str(&format!("{:?}", m.headers));
        stream.push_str(&String::from_utf8_lossy(&m.payload));
    }
    let mut found = Vec::new();
    for n in needles {
        let hex: String = n.bytes().map(|b| format!("{b:02x}")).collect();
        if dump.contains(n) || dump.contains(&hex) {
            found.push(format!("{n:?} in the database dump"));
        }
        if stream.contains(n) {
            found.push(format!("{n:?} in the stream"));
        }
    }
    found
}

#[tokio::test]
async fn erasing_an_actor_leaves_nothing_in_a_dump_or_the_stream_and_the_log_verifies() {
    let s = Sealed::start().await;
    let zed = ("Zed Erasable", ZED, "29:zed-teams-id");
    let jane = ("Jane Doe", "aad-jane", "29:jane");
    post(
        &s,
        &message("z-1", "update employee E-5 title=Astronaut", zed, &now()),
    )
    .await;
    post(&s, &message("z-2", "hello from the moon", zed, &now())).await;
    post(
        &s,
        &message(
            "z-3",
            r#"update employee E-6 mentor="Zed Erasable""#,
            jane,
            &now(),
        ),
    )
    .await;
    post(
        &s,
        &message("z-4", "update employee E-7 title=Keeper", jane, &now()),
    )
    .await;
    let zed_editor = [
        "editors",
        "add",
        "--webhook",
        "contoso",
        ZED,
        "--name",
        "Zed Erasable",
    ];
    assert_eq!(s.cli(&zed_editor).0, 0);
    s.wait_sealed().await;
    s.app.wait_outbox_empty(Duration::from_secs(10)).await;
    let needles = [
        "Zed Erasable",
        ZED,
        "29:zed-teams-id",
        "hello from the moon",
        "Astronaut",
    ];
    assert_eq!(
        traces(&s, &needles).await.len(),
        10,
        "the data is there before"
    );

    let (code, out, _) = s.cli(&["erase", "--actor", ZED]);
    assert_eq!(code, 2, "no reason, no erasure: {out}");
    let (code, out, _) = s.cli(&["erase", "--actor", ZED, "--dry-run"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("would erase actor") && out.contains("3 activities"),
        "{out}"
    );
    assert_eq!(s.cli(&["hold", "add", "--actor", ZED]).0, 0);
    let (code, _, err) = s.cli(&[
        "erase",
        "--actor",
        ZED,
        "--reason",
        "GDPR art. 17 request 88",
    ]);
    assert_eq!(code, 1, "a hold refuses: {err}");
    assert!(err.contains(&format!("hold on actor {ZED}")), "{err}");
    assert_eq!(s.cli(&["hold", "remove", "--actor", ZED]).0, 0);

    let (code, out, err) = s.cli(&[
        "erase",
        "--actor",
        ZED,
        "--reason",
        "GDPR art. 17 request 88",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("erased actor") && out.contains("1 places on editors lists"),
        "{out}"
    );
    assert!(
        out.contains("3 deleted"),
        "the stream's three messages of theirs: {out}"
    );
    assert_eq!(traces(&s, &needles).await, Vec::<String>::new());
    let pool = &s.app.pool;
    let kept = one(
        pool,
        "select message from audit_log where changes ->> 'title' = 'Keeper'",
    )
    .await;
    assert_eq!(
        kept, "update employee E-7 title=Keeper",
        "others' data stays"
    );
    let erase = one(
        pool,
        "select changes::text || message || actor_name from audit_log where operation = 'erase'",
    )
    .await;
    assert!(
        erase.contains("scope_digest") && erase.contains("request 88"),
        "{erase}"
    );

    s.wait_sealed().await;
    let (code, out, _) = s.cli(&["verify", "--evidence"]);
    assert_eq!(code, 0, "the erased log verifies: {out}");
    assert!(out.contains("erased 4, expired 0"), "{out}");
    let (code, out, _) = s.cli(&["erase", "--actor", ZED, "--reason", "again"]);
    assert_eq!(code, 0, "idempotent");
    assert!(out.contains("nothing matched"), "{out}");
    let erasures = "select count(*)::text from audit_log where operation = 'erase'";
    assert_eq!(one(pool, erasures).await, "1");

    // A tombstone queued again (by hand) leaves the outbox instead of blocking it.
    exec(pool, "insert into outbox (event_id) select event_id from activities where redacted is not null limit 1").await;
    s.app.wait_outbox_empty(Duration::from_secs(10)).await;
    // Wiping another entry and blaming the erasure is found: the erase entry's count disagrees.
    exec(
        pool,
        "update audit_log set changes = '{}', message = '', personal_salt = null, redacted = 'erased', \
         erased_by = (select event_id from audit_log where operation = 'erase') \
         where changes ->> 'title' = 'Keeper'",
    )
    .await;
    let (code, out, _) = s.cli(&["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("it says it erased 4 entries; 5 name it"),
        "{out}"
    );
    s.stop().await;
}

#[tokio::test]
async fn erasing_a_record_removes_its_values_keeps_its_id_and_its_bundle_still_verifies() {
    let s = Sealed::start().await;
    let jane = ("Jane Doe", "aad-jane", "29:jane");
    post(
        &s,
        &message(
            "e-1",
            r#"create employee E-77 clearance_level="Cosmic Secret""#,
            jane,
            &now(),
        ),
    )
    .await;
    post(
        &s,
        &message(
            "e-2",
            "update employee E-77 salary_band=Zeta9Band",
            jane,
            &now(),
        ),
    )
    .await;
    post(
        &s,
        &message("e-3", "update employee E-78 title=Other", jane, &now()),
    )
    .await;
    post(
        &s,
        &message("e-4", "the E-77 spaceship story", jane, &now()),
    )
    .await;
    s.wait_sealed().await;
    s.app.wait_outbox_empty(Duration::from_secs(10)).await;
    let needles = [
        "Cosmic Secret",
        "clearance_level",
        "salary_band",
        "Zeta9Band",
        "spaceship",
    ];
    assert!(!traces(&s, &needles).await.is_empty());

    assert_eq!(
        s.cli(&["hold", "add", "--record", "E-77", "--reason", "litigation"])
            .0,
        0
    );
    let (code, _, err) = s.cli(&["erase", "--record", "E-77", "--reason", "retention order"]);
    assert_eq!(code, 1);
    assert!(err.contains("hold on record E-77 (litigation)"), "{err}");
    assert_eq!(s.cli(&["hold", "remove", "--record", "E-77"]).0, 0);
    let (code, out, err) = s.cli(&["erase", "--record", "E-77", "--reason", "retention order"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("3 activities, 3 audit entries"),
        "a note naming it too: {out}"
    );
    assert_eq!(traces(&s, &needles).await, Vec::<String>::new());
    let pool = &s.app.pool;
    let note = "select message from audit_log where operation = 'note'";
    assert_eq!(one(pool, note).await, "", "the note naming it is erased");
    let ids = "select string_agg(record_id, ',' order by activity_at) from audit_log where redacted = 'erased'";
    assert_eq!(
        one(pool, ids).await,
        "E-77,E-77",
        "the record id itself remains"
    );
    assert_eq!(
        one(
            pool,
            "select message from audit_log where record_id = 'E-78'"
        )
        .await,
        "update employee E-78 title=Other"
    );

    s.wait_sealed().await;
    let (code, out, _) = s.cli(&["verify", "--evidence"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("erased 3") && out.contains("evidence skipped for 3"),
        "{out}"
    );
    let (code, bundle, err) = s.cli(&["audit", "export", "--record", "E-77", "--proofs"]);
    assert_eq!(code, 0, "{err}");
    let path = s.dir.path().join("e77.json");
    std::fs::write(&path, &bundle).unwrap();
    let pubkey = format!("{}.pub", s.key().display());
    let (code, out, _) = s.cli(&[
        "verify",
        "--bundle",
        path.to_str().unwrap(),
        "--pubkey",
        &pubkey,
    ]);
    assert_eq!(
        code, 0,
        "an erased record's bundle still proves its leaves: {out}"
    );
    assert_eq!(
        s.cli(&["erase", "--record", "E-77", "--reason", "again"]).0,
        0
    );
    s.stop().await;
}

#[tokio::test]
async fn the_worker_prunes_on_its_own() {
    let s = Sealed::start_with(&[
        ("AUDIT_RETENTION_DAYS", "30"),
        ("RETENTION_INTERVAL_SECS", "1"),
    ])
    .await;
    let old = (chrono::Utc::now() - chrono::TimeDelta::days(31)).to_rfc3339();
    let jane = ("Jane Doe", "aad-jane", "29:jane");
    post(
        &s,
        &message("w-1", "update employee E-1 title=Old", jane, &old),
    )
    .await;
    post(
        &s,
        &message("w-2", "update employee E-1 title=New", jane, &now()),
    )
    .await;
    let pool = &s.app.pool;
    let state = "select string_agg(coalesce(redacted, 'kept'), ' ' order by activity_at) \
                 from audit_log having count(*) = 2";
    eventually(Duration::from_secs(20), "the old entry expired", || async {
        let got: Option<String> = sqlx::query_scalar(state).fetch_optional(pool).await.ok()?;
        (got.as_deref() == Some("expired kept")).then_some(())
    })
    .await;
    s.wait_sealed().await;
    assert_eq!(s.cli(&["verify"]).0, 0);
    s.stop().await;
}
