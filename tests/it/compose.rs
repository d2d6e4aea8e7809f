//! docker-compose.yml runs what the code reads. There is no container engine here, so the
//! test takes the `bridge` and `hr-audit` services' commands, settings and health checks
//! from the file and runs them with the real binary against the machine's Postgres and NATS:
//! a setting renamed in the code but not in the compose file, a health check naming a
//! subcommand that does not exist, or a worker that cannot see the bridge's stream fails here.

use std::{
    collections::BTreeMap,
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use clap::Parser;
use serde_yaml::Value;
use teams_bridge::{cli::simulate, cli::Cli, config};

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_teams-bridge");

/// The compose services that run the binary.
const SERVICES: [&str; 2] = ["bridge", "hr-audit"];

/// What compose gives one service: its arguments, settings and health check.
#[derive(Debug, Clone)]
struct Service {
    name: String,
    command: Vec<String>,
    environment: BTreeMap<String, String>,
    /// The health check's command line without the `CMD` marker.
    healthcheck: Vec<String>,
}

fn compose_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docker-compose.yml")
}

fn compose_file() -> Value {
    compose_file_at(&compose_path())
}

/// A compose file, `<<:` merges resolved.
pub(crate) fn compose_file_at(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} must exist: {e}", path.display()));
    let mut doc: Value = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    // `<<: *anchor` merge keys, as compose resolves them.
    doc.apply_merge().unwrap();
    doc
}

/// What the test's "shell" sets for the variables the compose file requires (`${VAR:?…}`):
/// the secrets, which have no default on purpose.
const SHELL: [(&str, &str); 2] = [
    (
        "TEAMS_WEBHOOKS",
        "hr=QgyNSToQjf4p6+YzDpjKks1/tXeJQ7FhVHqRwTnugVI=",
    ),
    (
        "AUDIT_API_TOKEN",
        "compose-test-audit-token-0123456789abcdef",
    ),
];

/// Resolves compose interpolation the way `docker compose up` does with only [`SHELL`] set:
/// `${VAR:-default}` and `${VAR-default}` give the default, `${VAR:?message}` takes the
/// shell's value (only the two secrets may be required), `$$` is a `$`. Any other variable
/// without a default would make a bare `docker compose up` depend on the caller's shell, so
/// it fails the test.
pub(crate) fn interpolate(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in compose value {s:?}"));
            let expr = &r[..end];
            let name_len = expr
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expr.len());
            let (name, op) = expr.split_at(name_len);
            let required = SHELL.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
            let value = match (op.strip_prefix(":?"), required) {
                (Some(_), Some(value)) => value,
                _ => op
                    .strip_prefix(":-")
                    .or_else(|| op.strip_prefix('-'))
                    .unwrap_or_else(|| {
                        panic!("${{{expr}}} in compose value {s:?} needs a default: use ${{VAR:-default}}")
                    }),
            };
            out.push_str(value);
            rest = &r[end + 1..];
        } else {
            panic!("bare $ in compose value {s:?}: use ${{VAR:-default}}, or $$ for a dollar sign");
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn the_compose_file_has_no_default_for_either_secret_and_no_published_token() {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docker-compose.yml"),
    )
    .unwrap();
    for secret in SHELL.map(|(k, _)| k) {
        assert!(
            text.contains(&format!("{secret}: ${{{secret}:?")),
            "{secret} must be required"
        );
    }
    assert!(!text.contains(CONTOSO_TOKEN) && !text.contains("change-me"));
}

fn scalar(v: &Value, what: &str) -> String {
    match v {
        Value::String(s) => interpolate(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("{what}: expected a string, got {other:?}"),
    }
}

/// A command in list form, or in string form (split on whitespace, as compose does for
/// strings without quotes).
pub(crate) fn words(v: &Value, what: &str) -> Vec<String> {
    match v {
        Value::Sequence(items) => items.iter().map(|i| scalar(i, what)).collect(),
        Value::String(s) => interpolate(s)
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        other => panic!("{what}: expected a list or a string, got {other:?}"),
    }
}

/// `environment:` as a map (`KEY: value`) or a list (`- KEY=value`).
pub(crate) fn environment(v: &Value, service: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    match v {
        Value::Mapping(map) => {
            for (k, v) in map {
                let k = scalar(k, &format!("{service}: environment key"));
                assert!(
                    !v.is_null(),
                    "{service}: {k} has no value, so it would come from the caller's shell"
                );
                let v = scalar(v, &format!("{service}: {k}"));
                env.insert(k, v);
            }
        }
        Value::Sequence(items) => {
            for item in items {
                let item = scalar(item, &format!("{service}: environment"));
                let (k, v) = item.split_once('=').unwrap_or_else(|| {
                    panic!(
                        "{service}: {item} has no value, so it would come from the caller's shell"
                    )
                });
                env.insert(k.to_string(), v.to_string());
            }
        }
        other => panic!("{service}: environment must be a map or a list, got {other:?}"),
    }
    env
}

fn service(doc: &Value, name: &str) -> Service {
    let s = &doc["services"][name];
    assert!(
        s.is_mapping(),
        "docker-compose.yml must define the service {name}"
    );
    let command = words(&s["command"], &format!("{name}: command"));
    let environment = environment(&s["environment"], name);
    let mut healthcheck = words(&s["healthcheck"]["test"], &format!("{name}: healthcheck"));
    assert_eq!(
        healthcheck.first().map(String::as_str),
        Some("CMD"),
        "{name}: the health check must run the binary itself (CMD form): the image has no shell tools"
    );
    healthcheck.remove(0);
    Service {
        name: name.to_string(),
        command,
        environment,
        healthcheck,
    }
}

/// The `bridge` and `hr-audit` services, checked against what the binary accepts.
fn services() -> Vec<Service> {
    let doc = compose_file();
    let services: Vec<Service> = SERVICES.iter().map(|n| service(&doc, n)).collect();
    for s in &services {
        for k in s.environment.keys() {
            assert!(
                config::env_vars().any(|v| v == k),
                "{}: the compose file sets {k}, which teams-bridge does not read (see SETTINGS in src/config/mod.rs)",
                s.name
            );
        }
        Cli::try_parse_from(std::iter::once("teams-bridge".to_string()).chain(s.command.clone()))
            .unwrap_or_else(|e| {
                panic!(
                    "{}: command {:?} is not one teams-bridge has: {e}",
                    s.name, s.command
                )
            });
        assert_eq!(
            s.healthcheck.first().map(String::as_str),
            Some("teams-bridge"),
            "{}: the health check must run teams-bridge (the image's only program)",
            s.name
        );
        let check = Cli::try_parse_from(&s.healthcheck).unwrap_or_else(|e| {
            panic!(
                "{}: health check {:?} is not a teams-bridge command: {e}",
                s.name, s.healthcheck
            )
        });
        assert!(
            matches!(
                check.command,
                teams_bridge::cli::Command::Healthcheck { .. }
            ),
            "{}: the health check {:?} must use `teams-bridge healthcheck`",
            s.name,
            s.healthcheck
        );
    }
    // The worker reads what the bridge writes: both must name the same stream.
    for k in ["NATS_URL", "NATS_STREAM", "NATS_SUBJECT_PREFIX"] {
        assert_eq!(
            services[0].environment.get(k),
            services[1].environment.get(k),
            "bridge and hr-audit must agree on {k}"
        );
    }
    services
}

#[test]
fn compose_services_set_only_settings_the_binary_reads_and_check_health_with_real_subcommands() {
    let services = services();
    assert_eq!(services[0].command, ["serve"]);
    assert_eq!(services[1].command, ["worker", "hr-audit"]);
    // Teams must reach the port the bridge listens on.
    let doc = compose_file();
    let listen = services[0]
        .environment
        .get("LISTEN_ADDR")
        .map_or(3978, |a| a.parse::<SocketAddr>().unwrap().port());
    let published: Vec<u16> = doc["services"]["bridge"]["ports"]
        .as_sequence()
        .expect("the bridge publishes its port")
        .iter()
        .map(|p| match p {
            Value::Mapping(_) => p["target"].as_u64().unwrap() as u16,
            p => {
                let p = scalar(p, "bridge: ports");
                let container = p.rsplit(':').next().unwrap();
                container.split('/').next().unwrap().parse().unwrap()
            }
        })
        .collect();
    assert!(
        published.contains(&listen),
        "the bridge listens on {listen} but publishes {published:?}"
    );
    // The health checks call `teams-bridge` by name: the image must put it on PATH and run it.
    let dockerfile =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"))
            .expect("Dockerfile exists");
    assert!(
        dockerfile.contains("/usr/local/bin/teams-bridge")
            && dockerfile.contains(r#"ENTRYPOINT ["teams-bridge"]"#),
        "the Dockerfile must install /usr/local/bin/teams-bridge and use it as ENTRYPOINT"
    );
}

/// `host:port` of a local URL such as `postgres://user@127.0.0.1:5432`.
fn authority(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let after_user = after_scheme
        .rsplit_once('@')
        .map_or(after_scheme, |(_, r)| r);
    after_user.split('/').next().unwrap().to_string()
}

/// Where the compose hosts are on this machine.
fn local_hosts() -> [(&'static str, String); 2] {
    [
        ("postgres:5432", authority(&pg_base())),
        ("nats:4222", authority(&nats_url())),
    ]
}

/// Replaces `name` in `postgres://…/name?…`.
fn with_database(url: &str, name: &str) -> String {
    let start = url.find("://").expect("DATABASE_URL is a URL") + 3;
    let slash = url[start..]
        .find('/')
        .map(|i| start + i)
        .expect("DATABASE_URL names a database");
    let query = url[slash..].find('?').map_or("", |i| &url[slash + i..]);
    format!("{}/{name}{query}", &url[..slash])
}

fn with_port(addr: &str, port: u16) -> String {
    let mut a: SocketAddr = addr
        .parse()
        .unwrap_or_else(|e| panic!("{addr:?} is not host:port: {e}"));
    a.set_port(port);
    a.to_string()
}

/// The settings each service gets here, and what was changed to get them.
///
/// Everything is as the compose file says, but for what lets this test share the machine's
/// Postgres and NATS with the tests running beside it, and find them on 127.0.0.1:
/// - the compose host names `postgres` and `nats` become the local servers' addresses;
/// - the database in DATABASE_URL gets a unique name (the schema is the same, the rows are
///   this test's own);
/// - LISTEN_ADDR and WORKER_LISTEN_ADDR keep their host but get free ports (compose gives
///   each container its own network namespace; here all share one), and the health check
///   URLs follow;
/// - NATS_STREAM and NATS_SUBJECT_PREFIX get unique values, so the stream this test
///   creates, reads and deletes is its own. The compose file leaves them at their defaults;
///   were it to set them, the test keeps those values as a prefix.
struct Local {
    services: Vec<Service>,
    databases: Vec<String>,
    stream: String,
}

fn localize(mut services: Vec<Service>) -> Local {
    let id = unique();
    let mut databases: BTreeMap<String, String> = BTreeMap::new();
    let setting = |name: &str, default: &'static str| {
        services[0]
            .environment
            .get(name)
            .map_or(default, String::as_str)
            .to_string()
    };
    let stream = format!("{}_C{id}", setting("NATS_STREAM", "TEAMS"));
    let prefix = format!("{}c{id}", setting("NATS_SUBJECT_PREFIX", "teams"));
    for s in &mut services {
        // Original port → local port, for this service (containers do not share ports).
        let mut ports: BTreeMap<u16, u16> = BTreeMap::new();
        // The binary's own defaults, made explicit so that their ports can be changed too.
        match s.command.first().map(String::as_str) {
            Some("serve") => {
                s.environment
                    .entry("LISTEN_ADDR".into())
                    .or_insert_with(|| "0.0.0.0:3978".into());
            }
            Some("worker") => {
                s.environment
                    .entry("WORKER_LISTEN_ADDR".into())
                    .or_insert_with(|| "0.0.0.0:9464".into());
            }
            _ => {}
        }
        for (k, v) in s.environment.iter_mut() {
            for (host, local) in local_hosts() {
                for sep in ["@", "//"] {
                    *v = v.replace(&format!("{sep}{host}"), &format!("{sep}{local}"));
                }
            }
            for url in v.split(',').filter(|u| u.contains("://")) {
                let host = authority(url.trim());
                let host = host.split(':').next().unwrap();
                assert!(
                    !["postgres", "nats"].contains(&host),
                    "{}: {k} names the compose host {host} on a port this test does not map",
                    s.name
                );
            }
            match k.as_str() {
                "DATABASE_URL" => {
                    let original = v
                        .rsplit('/')
                        .next()
                        .unwrap()
                        .split('?')
                        .next()
                        .unwrap()
                        .to_string();
                    let n = databases.len();
                    let local = databases.entry(original).or_insert_with(|| match n {
                        0 => format!("tb_compose_{id}"),
                        n => format!("tb_compose_{id}_{n}"),
                    });
                    *v = with_database(v, local);
                }
                "LISTEN_ADDR" | "WORKER_LISTEN_ADDR" => {
                    let original: SocketAddr = v.parse().unwrap();
                    let port = *ports.entry(original.port()).or_insert_with(free_port);
                    *v = with_port(v, port);
                }
                _ => {}
            }
        }
        s.environment.insert("NATS_STREAM".into(), stream.clone());
        s.environment
            .insert("NATS_SUBJECT_PREFIX".into(), prefix.clone());
        for arg in s.healthcheck.iter_mut() {
            for (from, to) in &ports {
                *arg = arg.replace(&format!(":{from}/"), &format!(":{to}/"));
            }
        }
    }
    Local {
        services,
        databases: databases.into_values().collect(),
        stream,
    }
}

/// The running services. Dropping it kills them (also when an assertion fails); then it
/// deletes the test's stream and databases if the test passed, or shows the services' logs
/// and keeps both for inspection if it failed.
struct Running {
    children: Vec<(String, Child, PathBuf)>,
    logs: tempfile::TempDir,
    stream: String,
    databases: Vec<String>,
}

impl Running {
    fn start(local: &Local) -> Self {
        let logs = tempfile::tempdir().unwrap();
        let mut running = Running {
            children: Vec::new(),
            logs,
            stream: local.stream.clone(),
            databases: local.databases.clone(),
        };
        for s in &local.services {
            let log = running.logs.path().join(format!("{}.log", s.name));
            let out = File::create(&log).unwrap();
            let child = Command::new(BIN)
                .args(&s.command)
                .env_clear()
                .envs(&s.environment)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
            running.children.push((s.name.clone(), child, log));
        }
        running
    }

    /// Panics with the service's log if it has exited.
    fn assert_alive(&mut self) {
        for (name, child, log) in &mut self.children {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "{name} exited ({status}); are Postgres ({}) and NATS ({}) running? Its log:\n{}",
                    pg_base(),
                    nats_url(),
                    read_log(log)
                );
            }
        }
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Drop for Running {
    fn drop(&mut self) {
        for (name, child, log) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("--- {name} log ---\n{}", read_log(log));
            }
        }
        // A failed test keeps its stream and databases for inspection, and names them.
        if std::thread::panicking() {
            let (dbs, stream) = (&self.databases, &self.stream);
            eprintln!("kept for inspection: databases {dbs:?}, stream {stream}");
            return;
        }
        remove_test_resources(std::slice::from_ref(&self.stream), &self.databases);
    }
}

/// Runs a health check command line (`teams-bridge healthcheck …`) with a service's settings.
fn healthcheck(s: &Service) -> std::process::Output {
    Command::new(BIN)
        .args(&s.healthcheck[1..])
        .env_clear()
        .envs(&s.environment)
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_compose_bridge_and_hr_audit_services_turn_a_signed_update_into_an_audit_row() {
    let local = localize(services());
    let bridge = local.services[0].clone();
    let worker = local.services[1].clone();
    let mut running = Running::start(&local);

    let listen: SocketAddr = bridge.environment["LISTEN_ADDR"].parse().unwrap();
    let base = format!("http://127.0.0.1:{}", listen.port());
    let http = reqwest::Client::new();

    // Ready: Postgres answers, the stream exists, the relay keeps up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        running.assert_alive();
        let ready = match http.get(format!("{base}/readyz")).send().await {
            Ok(r) if r.status() == 200 => break,
            Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => e.to_string(),
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bridge is not ready after 20 s ({ready}); are Postgres ({}) and NATS ({}) running?",
            pg_base(),
            nats_url()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The health checks the compose file declares pass, with the ports this test chose.
    let out = healthcheck(&bridge);
    assert!(
        out.status.success(),
        "bridge health check {:?} failed: {}",
        bridge.healthcheck,
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        running.assert_alive();
        let out = healthcheck(&worker);
        if out.status.success() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "hr-audit health check {:?} still fails after 20 s: {}",
            worker.healthcheck,
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Teams posts a signed update to the webhook the compose file configures.
    let webhooks = bridge
        .environment
        .get("TEAMS_WEBHOOKS")
        .expect("the bridge service sets TEAMS_WEBHOOKS");
    let (name, token) = webhooks
        .split(',')
        .next()
        .and_then(|p| p.split_once('='))
        .map(|(n, t)| (n.trim(), t.trim()))
        .expect("TEAMS_WEBHOOKS is name=token");
    let sender = simulate::Sender {
        name: "Jane Doe".into(),
        aad_object_id: None,
        team: "19:a1b2c3d4e5f6@thread.tacv2".into(),
        channel: "19:f6e5d4c3b2a1@thread.tacv2".into(),
        tenant: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
        webhook_name: "HR Audit".into(),
    };
    let body =
        simulate::build_activity(&sender, r#"update employee E-1042 title="Senior Engineer""#);
    let auth =
        teams_bridge::domain::signature::sign(token, &body).expect("the compose token is base64");
    let resp = http
        .post(format!("{base}/webhooks/{name}"))
        .header("content-type", "application/json")
        .header("authorization", auth)
        .body(body)
        .send()
        .await
        .expect("the bridge answers");
    let status = resp.status();
    let reply = resp.text().await.unwrap();
    assert_eq!(status, 200, "{reply}");
    assert!(reply.contains("E-1042"), "{reply}");

    // The worker, through the stream, writes the audit row.
    let db_url = worker
        .environment
        .get("DATABASE_URL")
        .expect("hr-audit sets DATABASE_URL")
        .clone();
    let pool = sqlx::PgPool::connect(&db_url)
        .await
        .expect("the worker's database exists");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        running.assert_alive();
        let n: i64 = sqlx::query_scalar(
            "select count(*) from audit_log where record_id = 'E-1042' and operation = 'update'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if n == 1 {
            break;
        }
        assert_eq!(n, 0, "one update, one audit row");
        assert!(
            tokio::time::Instant::now() < deadline,
            "no audit_log row for E-1042 after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pool.close().await;
    drop(running);
}
