//! The sealed audit trail (#11): a sealed log verifies, and every kind of tampering an
//! auditor worries about is found and named; a record's bundle verifies offline and fails
//! when edited; sealers running side by side build one tree.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use teams_bridge::{audit::seal::Sealer, domain::note::NoteSigner};

use crate::helpers::*;

fn hr_message(id: &str, text: &str, who: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": "message",
        "id": id,
        "timestamp": "2026-11-27T10:00:00.1234567Z",
        "text": format!("<at>HR Audit</at>&nbsp;{text}\n"),
        "from": {"id": "29:x", "name": who, "aadObjectId": format!("aad-{}", who.len())},
        "channelData": {"team": {"id": "team-1"}, "channel": {"id": "chan-1"}, "tenant": {"id": "tenant-1"}}
    }))
    .unwrap()
}

/// A service, its HR audit worker with the sealer (the `worker hr-audit` binary), and a
/// signing key in a temporary folder.
pub(crate) struct Sealed {
    pub(crate) app: TestApp,
    pub(crate) dir: tempfile::TempDir,
    worker: WorkerProcess,
    env: std::collections::BTreeMap<String, String>,
}

/// The worker process; killed when dropped, also when an assertion failed, so that it never
/// outlives its test.
struct WorkerProcess(std::process::Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `worker hr-audit` process with exactly these settings.
fn spawn_worker(env: &std::collections::BTreeMap<String, String>) -> WorkerProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_teams-bridge"))
        .args(["worker", "hr-audit"])
        .env_clear()
        .envs(env)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    WorkerProcess(child)
}

impl Sealed {
    pub(crate) async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// With more settings, for the service, its worker and every command.
    pub(crate) async fn start_with(extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("audit.key");
        let signer = NoteSigner::generate("teams-bridge.test/hr-audit").unwrap();
        std::fs::write(&key, signer.to_text().expose()).unwrap();
        let public = signer.verifier().to_text();
        std::fs::write(dir.path().join("audit.key.pub"), public).unwrap();
        let key = key.to_str().unwrap().to_string();
        let mut settings = vec![
            ("AUDIT_SIGNING_KEY_FILE", key.as_str()),
            ("AUDIT_LOG_ORIGIN", "teams-bridge.test/hr-audit"),
            ("AUDIT_SEAL_INTERVAL_SECS", "1"),
            ("WORKER_LISTEN_ADDR", "127.0.0.1:0"),
        ];
        settings.extend_from_slice(extra);
        let env = test_env(&settings);
        let app = TestApp::spawn_env(env.clone()).await;
        let worker = spawn_worker(&env);
        Self {
            app,
            dir,
            worker,
            env,
        }
    }

    pub(crate) fn key(&self) -> PathBuf {
        self.dir.path().join("audit.key")
    }

    /// Runs the binary with this service's settings.
    pub(crate) fn cli(&self, args: &[&str]) -> (i32, String, String) {
        self.cli_with(&[], args)
    }

    /// Runs the binary with this service's settings and `extra` ones.
    pub(crate) fn cli_with(&self, extra: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_teams-bridge"))
            .args(args)
            .env_clear()
            .envs(&self.env)
            .envs(extra.iter().copied())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (
            out.status.code().unwrap_or(-1),
            text(out.stdout),
            text(out.stderr),
        )
    }

    /// Posts messages and waits until all are sealed.
    async fn post_and_seal(&self, messages: &[(&str, &str)]) {
        for (id, text) in messages {
            let r = self
                .app
                .post_signed("contoso", &hr_message(id, text, "Jane Doe"))
                .await;
            assert_eq!(r.status(), 200);
        }
        self.wait_sealed().await;
    }

    /// Waits until every activity has its entry and every entry is sealed.
    pub(crate) async fn wait_sealed(&self) {
        // One statement, one snapshot: every activity has its entry, and none waits.
        let query = "select (select count(*) from activities a where not exists \
                         (select 1 from audit_log l where l.event_id = a.event_id)) \
                          + (select count(*) from audit_log where leaf_index is null \
                             or leaf_index >= (select coalesce(max(size), 0) from audit_checkpoints))";
        eventually(
            Duration::from_secs(20),
            "every entry written and sealed",
            || async {
                let waiting: i64 = sqlx::query_scalar(query)
                    .fetch_one(&self.app.pool)
                    .await
                    .ok()?;
                (waiting == 0).then_some(())
            },
        )
        .await;
    }

    pub(crate) async fn stop(self) {
        let Sealed {
            app, mut worker, ..
        } = self;
        let pid = worker.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = worker.0.wait();
        app.stop().await;
    }
}

pub(crate) async fn one(pool: &sqlx::PgPool, sql: &str) -> String {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

pub(crate) async fn exec(pool: &sqlx::PgPool, sql: &str) {
    sqlx::query(sql).execute(pool).await.unwrap();
}

#[tokio::test]
async fn a_sealed_log_verifies_and_every_kind_of_tampering_is_found_and_named() {
    let s = Sealed::start().await;
    s.post_and_seal(&[
        ("s-1", r#"create employee E-1 name="Ann Lee""#),
        ("s-2", "update employee E-1 title=Engineer"),
        ("s-3", "update employee E-2 band=7"),
        ("s-4", "hello there"),
    ])
    .await;
    let (code, out, err) = s.cli(&["verify", "--evidence"]);
    assert_eq!(code, 0, "an untouched log verifies:\n{out}{err}");
    assert!(
        out.contains("sealed 4, pending 0") && out.contains("HMACs checked 4"),
        "{out}"
    );
    let (code, saved, _) = s.cli(&["audit", "checkpoint"]);
    assert_eq!(code, 0);
    let saved_path = s.dir.path().join("saved.checkpoint");
    std::fs::write(&saved_path, &saved).unwrap();
    let pool = &s.app.pool;
    let id = one(
        pool,
        "select event_id::text from audit_log where leaf_index = 1",
    )
    .await;

    // An entry's changes or message changed by SQL, then put back.
    let original = one(
        pool,
        &format!("select changes::text from audit_log where event_id = '{id}'"),
    )
    .await;
    exec(
        pool,
        &format!("update audit_log set changes = '{{\"title\":\"CEO\"}}' where event_id = '{id}'"),
    )
    .await;
    let (code, out, _) = s.cli(&["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("MODIFIED  entry {id} (leaf 1)")),
        "{out}"
    );
    exec(
        pool,
        &format!("update audit_log set changes = '{original}' where event_id = '{id}'"),
    )
    .await;
    let (code, out, err) = s.cli(&["verify"]);
    assert_eq!(code, 0, "restored:\n{out}{err}");

    // An activity's exact bytes changed.
    exec(
        pool,
        &format!("update activities set raw = raw || '\\x20'::bytea where event_id = '{id}'"),
    )
    .await;
    let (code, out, _) = s.cli(&["verify"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("its activity's bytes differ from what was sealed"),
        "{out}"
    );
    exec(pool, &format!("update activities set raw = substring(raw from 1 for length(raw) - 1) where event_id = '{id}'")).await;

    // A checkpoint row altered: its root, then its signed note.
    let first = "(select min(size) from audit_checkpoints)";
    let (root, note) = (
        one(
            pool,
            &format!("select encode(root, 'hex') from audit_checkpoints where size = {first}"),
        )
        .await,
        one(
            pool,
            &format!("select note from audit_checkpoints where size = {first}"),
        )
        .await,
    );
    exec(pool, &format!("update audit_checkpoints set root = decode(md5('x') || md5('y'), 'hex') where size = {first}")).await;
    let (code, out, _) = s.cli(&["verify"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("its row differs from its signed note"),
        "{out}"
    );
    exec(pool, &format!("update audit_checkpoints set root = decode('{root}', 'hex'), note = note || 'x' where size = {first}")).await;
    let (code, out, _) = s.cli(&["verify"]);
    assert_eq!(code, 1);
    assert!(out.contains("its note does not hold"), "{out}");
    sqlx::query(&format!(
        "update audit_checkpoints set note = $1 where size = {first}"
    ))
    .bind(&note)
    .execute(pool)
    .await
    .unwrap();
    assert_eq!(s.cli(&["verify"]).0, 0, "restored");

    // An entry deleted.
    let row = one(
        pool,
        &format!("select row_to_json(a)::text from audit_log a where event_id = '{id}'"),
    )
    .await;
    exec(
        pool,
        &format!("delete from audit_log where event_id = '{id}'"),
    )
    .await;
    let (code, out, _) = s.cli(&["verify"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("MISSING   leaf 1: its entry was deleted"),
        "{out}"
    );
    sqlx::query(
        "insert into audit_log select * from json_populate_record(null::audit_log, $1::json)",
    )
    .bind(&row)
    .execute(pool)
    .await
    .unwrap();
    let (code, out, _) = s.cli(&["verify", "--checkpoint", saved_path.to_str().unwrap()]);
    assert_eq!(
        code, 0,
        "restored, and consistent with the saved checkpoint:\n{out}"
    );

    // A tree rewritten from leaf 0 and re-signed with the key: it verifies on its own, but
    // not against the checkpoint saved before.
    exec(
        pool,
        &format!("update audit_log set changes = '{{\"title\":\"CEO\"}}' where event_id = '{id}'"),
    )
    .await;
    exec(
        pool,
        "update audit_log set leaf_index = null, sealed_in = null",
    )
    .await;
    exec(pool, "delete from audit_checkpoints").await;
    exec(pool, "update audit_tree set size = 0, frontier = '{}'").await;
    s.post_and_seal(&[]).await;
    assert_eq!(
        s.cli(&["verify"]).0,
        0,
        "a consistent rewrite verifies on its own"
    );
    let (code, out, _) = s.cli(&["verify", "--checkpoint", saved_path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("REWRITTEN saved checkpoint 4: today's tree of 4 entries does not extend it"),
        "{out}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_forged_entry_with_no_activity_is_found_by_evidence_sealed_or_not() {
    let s = Sealed::start().await;
    s.post_and_seal(&[("f-1", "update employee E-9 title=Engineer")])
        .await;
    let forged = uuid::Uuid::now_v7();
    sqlx::query(
        "insert into audit_log (event_id, webhook, actor_name, operation, entity, record_id, changes, message, activity_at)
         values ($1, 'contoso', 'Jane Doe', 'delete', 'employee', 'E-9', '{}', 'delete employee E-9', now())",
    )
    .bind(forged)
    .execute(&s.app.pool)
    .await
    .unwrap();
    let (code, out, _) = s.cli(&["verify", "--evidence"]);
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!("INSERTED  entry {forged}")),
        "unsealed: {out}"
    );
    s.post_and_seal(&[]).await;
    let (code, out, _) = s.cli(&["verify", "--evidence", "--format", "json"]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["sealed"], 2, "{report}");
    let kinds: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["inserted"], "sealed, and still found: {report}");
    // The seal shows in the JSON the CLI and the API give.
    let (_, json, _) = s.cli(&["audit", "--record", "E-9", "--format", "json"]);
    let entries: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        entries[0]["seal"]["leaf_index"].is_i64() && entries[0]["seal"]["checkpoint_size"] == 2,
        "{entries}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_records_bundle_verifies_offline_and_fails_when_edited_in_any_byte() {
    let s = Sealed::start().await;
    s.post_and_seal(&[
        ("b-1", r#"create employee E-7 name="Ann Lee""#),
        ("b-2", "update employee E-8 band=3"),
        ("b-3", "update employee E-7 title=Lead"),
    ])
    .await;
    let (code, bundle, err) = s.cli(&["audit", "export", "--record", "E-7", "--proofs"]);
    assert_eq!(code, 0, "{err}");
    let path = s.dir.path().join("bundle.json");
    std::fs::write(&path, &bundle).unwrap();
    let pubkey = s.dir.path().join("audit.key.pub");
    // Offline: no database, no NATS, nothing but the files and the key.
    let offline = |bundle: &Path, token: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_teams-bridge"))
            .args([
                "verify",
                "--bundle",
                bundle.to_str().unwrap(),
                "--pubkey",
                pubkey.to_str().unwrap(),
                "--webhook-key",
                token,
            ])
            .env_clear()
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout).unwrap(),
        )
    };
    let (code, out) = offline(&path, CONTOSO_TOKEN);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("2 entries") && out.contains("HMACs checked 2"),
        "{out}"
    );
    let (code, out) = offline(&path, FABRIKAM_TOKEN);
    assert_eq!(code, 1, "another webhook's key: {out}");
    let bytes = bundle.as_bytes();
    let edited = s.dir.path().join("edited.json");
    for at in (0..bytes.len()).step_by(bytes.len() / 40 + 1) {
        let mut copy = bytes.to_vec();
        copy[at] = if copy[at] == b'A' { b'B' } else { b'A' };
        std::fs::write(&edited, &copy).unwrap();
        let (code, out) = offline(&edited, CONTOSO_TOKEN);
        assert_eq!(
            code, 1,
            "byte {at} edited ({:?}) must fail:\n{out}",
            bytes[at] as char
        );
    }
    s.stop().await;
}

/// The worker writes each entry with its leaf; until a checkpoint covers it, it is pending,
/// not a problem; the sealer's next checkpoint seals it without touching the row again.
#[tokio::test]
async fn entries_are_written_with_their_leaf_and_are_pending_until_a_checkpoint_covers_them() {
    // No checkpoint on its own for an hour: the test signs one itself.
    let s = Sealed::start_with(&[
        ("AUDIT_SEAL_INTERVAL_SECS", "3600"),
        ("AUDIT_SEAL_MAX_ENTRIES", "1000"),
    ])
    .await;
    for (id, text) in [("w-1", "update employee E-1 band=1"), ("w-2", "hello")] {
        let r = s
            .app
            .post_signed("contoso", &hr_message(id, text, "Jane Doe"))
            .await;
        assert_eq!(r.status(), 200);
    }
    let pool = &s.app.pool;
    eventually(Duration::from_secs(20), "both entries written", || async {
        let n: i64 = sqlx::query_scalar("select count(*) from audit_log")
            .fetch_one(pool)
            .await
            .ok()?;
        (n == 2).then_some(())
    })
    .await;
    let leaves = one(
        pool,
        "select string_agg(leaf_index::text || ':' || (leaf_hash is not null and personal_salt \
         is not null and raw_sha256 is not null)::text || ':' || \
         coalesce(audit_sealed_in(leaf_index)::text, 'none'), ',' order by leaf_index) \
         from audit_log",
    )
    .await;
    assert_eq!(leaves, "0:true:none,1:true:none");
    assert_eq!(one(pool, "select size::text from audit_tree").await, "2");
    let (code, out, err) = s.cli(&["verify", "--evidence"]);
    assert_eq!(
        code, 0,
        "entries awaiting their checkpoint are no problem:\n{out}{err}"
    );
    assert!(out.contains("sealed 0, pending 2"), "{out}");

    let sealer = teams_bridge::app::worker::sealer_for(&s.app.config, None)
        .await
        .unwrap();
    let mut sealer: Sealer = sealer.expect("a key is set");
    assert_eq!(sealer.seal_once().await.unwrap(), 2);
    assert_eq!(sealer.seal_once().await.unwrap(), 0, "nothing new to sign");
    let sealed_in = one(
        pool,
        "select string_agg(audit_sealed_in(leaf_index)::text, ',') from audit_log",
    )
    .await;
    assert_eq!(sealed_in, "2,2");
    let (code, out, err) = s.cli(&["verify", "--evidence"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("sealed 2, pending 0"), "{out}");
    s.stop().await;
}

/// Two HR audit workers on one database hand out leaves one writer at a time: one tree, no
/// index twice, none missing.
#[tokio::test]
async fn two_workers_writing_at_once_build_one_gapless_tree() {
    let s = Sealed::start().await;
    let second = spawn_worker(&s.env);
    let posts = (0..80).map(|i| {
        let body = hr_message(
            &format!("p-{i}"),
            &format!("update employee E-{} band={i}", i % 7),
            "Jane Doe",
        );
        let app = &s.app;
        async move { app.post_signed("contoso", &body).await.status() }
    });
    for status in futures::future::join_all(posts).await {
        assert_eq!(status, 200);
    }
    s.wait_sealed().await;
    let (code, out, err) = s.cli(&["verify", "--evidence"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("sealed 80, pending 0") && out.contains("tree size 80"),
        "{out}"
    );
    let indexes = one(
        &s.app.pool,
        "select (count(distinct leaf_index) = 80 and min(leaf_index) = 0 and max(leaf_index) = 79)::text from audit_log",
    )
    .await;
    assert_eq!(indexes, "true");
    drop(second);
    s.stop().await;
}

#[tokio::test]
async fn two_sealers_at_once_build_one_consistent_tree_and_checkpoints_reach_the_stream() {
    let s = Sealed::start().await;
    let second = teams_bridge::app::worker::sealer_for(&s.app.config, None)
        .await
        .unwrap();
    let mut second: Sealer = second.expect("a key is set");
    let posting = async {
        for i in 0..60 {
            let body = hr_message(
                &format!("t-{i}"),
                &format!("update employee E-{} band={i}", i % 5),
                "Jane Doe",
            );
            assert_eq!(s.app.post_signed("contoso", &body).await.status(), 200);
        }
    };
    let racing = async {
        for _ in 0..40 {
            second.seal_once().await.unwrap();
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    tokio::join!(posting, racing);
    s.post_and_seal(&[]).await;
    let (code, out, _) = s.cli(&["verify", "--evidence"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("sealed 60, pending 0"), "{out}");
    let subject = format!("{}._audit.checkpoint", s.app.config.subject_prefix);
    let latest = eventually(
        Duration::from_secs(10),
        "a checkpoint on the stream",
        || async {
            let stream = s.app.js.get_stream(&s.app.config.stream_name).await.ok()?;
            let m = stream
                .get_last_raw_message_by_subject(&subject)
                .await
                .ok()?;
            String::from_utf8(m.payload.to_vec()).ok()
        },
    )
    .await;
    assert!(
        latest.starts_with("teams-bridge.test/hr-audit\n"),
        "{latest}"
    );
    s.stop().await;
}

#[test]
fn keygen_writes_a_private_key_and_its_verifier_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_teams-bridge"))
            .args(["audit", "keygen", "--out", out.to_str().unwrap()])
            .env_clear()
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let line = String::from_utf8(first.stdout).unwrap();
    let public = std::fs::read_to_string(dir.path().join("k.pub")).unwrap();
    assert_eq!(line, public);
    assert!(public.starts_with("teams-bridge/hr-audit+"), "{public}");
    let private = std::fs::read_to_string(&out).unwrap();
    let signer = NoteSigner::from_text(&private).unwrap();
    assert_eq!(signer.verifier().to_text(), public.trim());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the private key is readable by its owner only"
        );
    }
    assert!(
        !run().status.success(),
        "an existing key is never overwritten"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), private);
}
