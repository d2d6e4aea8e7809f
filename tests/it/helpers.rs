//! Test harness: every test gets its own database, its own stream and subject prefix, and a
//! real HTTP server on a free port, against the machine's real Postgres and NATS. Missing
//! services fail the test loudly; nothing is skipped.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use async_nats::jetstream;
use sqlx::PgPool;
use teams_bridge::{app::Application, config::Config};
use tokio_util::sync::CancellationToken;

pub const CONTOSO_TOKEN: &str = "vqF0En+Z0ucuRTM/01o2GuhMH3hKKk/N2bOmlM31zaA=";
pub const CONTOSO_HEADER: &str = "HMAC 03TCao0i55H1eVKUusZOTZRjtvYTs+mO41mPL+R1e1U=";
pub const FABRIKAM_TOKEN: &str = "QgyNSToQjf4p6+YzDpjKks1/tXeJQ7FhVHqRwTnugVI=";

pub fn pg_base() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/teams")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {} must exist: {e}", path.display()))
}

pub const REQUEST_FIXTURES: [&str; 4] = [
    "contoso-docs-example.json",
    "docs-example-inbound-2018-04.json",
    "real-outgoing-webhook-capcoins-emoji.json",
    "real-botframework-channel-mention-tacv2.json",
];

/// A unique lowercase suffix for names.
pub fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// Settings for an isolated test: own database, stream and subject prefix.
pub fn test_env(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let id = unique();
    let mut env: BTreeMap<String, String> = [
        ("DATABASE_URL", format!("{}/tb_test_{id}", pg_base())),
        ("NATS_URL", nats_url()),
        ("NATS_STREAM", format!("T_{id}")),
        ("NATS_SUBJECT_PREFIX", format!("t{id}")),
        ("LISTEN_ADDR", "127.0.0.1:0".into()),
        (
            "TEAMS_WEBHOOKS",
            format!("contoso={CONTOSO_TOKEN},ring={CONTOSO_TOKEN},ring={FABRIKAM_TOKEN}"),
        ),
        ("BODY_LIMIT_BYTES", "65536".into()),
        (
            "AUDIT_API_TOKEN",
            "test-audit-token-0123456789abcdef0123".into(),
        ),
        // The tests sign with the token published in Microsoft's documentation.
        ("DEV_MODE", "1".into()),
        ("HR_AUDIT_CONSUMER", format!("hr-audit-{id}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

/// What a test created on the shared servers. When the test passes, dropping this removes
/// them; when it fails, they are kept for inspection and named on stderr.
pub struct Cleanup {
    pub databases: Vec<String>,
    pub streams: Vec<String>,
}

impl Cleanup {
    /// The database and stream of a test's configuration.
    pub fn of(config: &Config) -> Self {
        let database = database_name(config.database_url.expose());
        eprintln!("test database {database}, stream {}", config.stream_name);
        Self {
            databases: vec![database],
            streams: vec![config.stream_name.clone()],
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let (dbs, streams) = (&self.databases, &self.streams);
            eprintln!("kept for inspection: databases {dbs:?}, streams {streams:?}");
            return;
        }
        remove_test_resources(&self.streams, &self.databases);
    }
}

/// The last path segment of a Postgres URL.
pub fn database_name(url: &str) -> String {
    let path = url.rsplit('/').next().unwrap_or_default();
    path.split('?').next().unwrap_or_default().to_string()
}

/// Deletes streams and drops databases (closing their connections). Runs on a thread and a
/// runtime of its own, because it is called from `Drop`, possibly inside a test's runtime.
pub fn remove_test_resources(streams: &[String], databases: &[String]) {
    let (streams, databases) = (streams.to_vec(), databases.to_vec());
    let cleanup = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let wait = Duration::from_secs(5);
            if let Ok(Ok(client)) =
                tokio::time::timeout(wait, async_nats::connect(nats_url())).await
            {
                let js = jetstream::new(client);
                for stream in &streams {
                    let _ = tokio::time::timeout(wait, js.delete_stream(stream)).await;
                }
            }
            let admin = format!("{}/postgres", pg_base());
            let pool = tokio::time::timeout(wait, PgPool::connect(&admin)).await;
            let pool = pool
                .expect("Postgres answers in time")
                .expect("Postgres is reachable");
            for db in databases {
                let drop = format!("drop database if exists \"{db}\" with (force)");
                sqlx::query(&drop)
                    .execute(&pool)
                    .await
                    .expect("the test database drops");
            }
            pool.close().await;
        });
    });
    cleanup.join().expect("cleanup ran");
}

/// A test configuration and the guard that removes what it creates.
/// The configuration of an environment made by [`test_env`], and its cleanup guard.
pub fn test_config_from(env: &BTreeMap<String, String>) -> (Config, Cleanup) {
    let config = Config::from_map(env, None).unwrap();
    let cleanup = Cleanup::of(&config);
    (config, cleanup)
}

pub fn test_config(extra: &[(&str, &str)]) -> (Config, Cleanup) {
    let config = Config::from_map(&test_env(extra), None).expect("test config is valid");
    let cleanup = Cleanup::of(&config);
    (config, cleanup)
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// Where `/readyz` and `/metrics` are served when `ADMIN_LISTEN_ADDR` is set.
    #[allow(dead_code)]
    pub admin: Option<SocketAddr>,
    pub config: Config,
    pub pool: PgPool,
    pub js: jetstream::Context,
    #[allow(dead_code)]
    pub nats: async_nats::Client,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub cleanup: Cleanup,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(extra: &[(&str, &str)]) -> Self {
        Self::spawn_env(test_env(extra)).await
    }

    pub async fn spawn_env(env: BTreeMap<String, String>) -> Self {
        let config = Config::from_map(&env, None).expect("test config is valid");
        let cleanup = Cleanup::of(&config);
        let app = Application::build(config.clone()).await.expect(
            "the app builds: are Postgres (127.0.0.1:5432) and NATS (127.0.0.1:4222) running?",
        );
        let (addr, admin) = (app.local_addr(), app.admin_addr());
        let pool = app.pool().clone();
        let nats = async_nats::connect(config.nats_url.expose())
            .await
            .expect("NATS must be reachable for tests");
        let js = jetstream::new(nats.clone());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self {
            addr,
            admin,
            config,
            pool,
            js,
            nats,
            http: reqwest::Client::new(),
            shutdown,
            task,
            cleanup,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs `body` to `/webhooks/{name}` with the given Authorization header.
    pub async fn post(&self, name: &str, body: &[u8], auth: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url(&format!("/webhooks/{name}")))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        req.send().await.expect("the service answers")
    }

    /// POSTs `body` signed with the contoso token.
    pub async fn post_signed(&self, name: &str, body: &[u8]) -> reqwest::Response {
        let auth = teams_bridge::domain::signature::sign(CONTOSO_TOKEN, body).unwrap();
        self.post(name, body, Some(&auth)).await
    }

    /// Rows in one of our tables.
    pub async fn count(&self, table: &str) -> i64 {
        assert!(table.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn activity_count(&self) -> i64 {
        self.count("activities").await
    }

    pub async fn outbox_count(&self) -> i64 {
        self.count("outbox").await
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("the service answers")
    }

    /// GETs a path and returns the body as text, whatever the status.
    pub async fn get_text(&self, path: &str) -> String {
        self.get(path).await.text().await.expect("a text body")
    }

    /// GETs a path and decodes the JSON body, whatever the status.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.get(path).await.json().await.expect("a JSON body")
    }

    /// Waits until the relay has published everything committed.
    pub async fn wait_outbox_empty(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let n = self.outbox_count().await;
            if n == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "outbox still holds {n} rows after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stream_messages(&self) -> u64 {
        let mut stream = self
            .js
            .get_stream(&self.config.stream_name)
            .await
            .expect("stream exists");
        stream.info().await.unwrap().state.messages
    }

    /// Reads every message of the test's stream in order (ephemeral ordered consumer).
    pub async fn read_stream(&self) -> Vec<async_nats::jetstream::Message> {
        use futures::StreamExt;
        let n = self.stream_messages().await as usize;
        let stream = self.js.get_stream(&self.config.stream_name).await.unwrap();
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::Config {
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ack_policy: jetstream::consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut out = Vec::with_capacity(n);
        if n == 0 {
            return out;
        }
        let mut messages = consumer
            .fetch()
            .max_messages(n)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .unwrap();
        while let Some(m) = messages.next().await {
            out.push(m.unwrap());
            if out.len() == n {
                break;
            }
        }
        out
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        let _ = self.js.delete_stream(&self.config.stream_name).await;
        self.pool.close().await;
    }
}

/// Polls `f` until it returns Some, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TestApp {
    /// Stops the service (HTTP and relay) but keeps the database and stream, for the test
    /// to go on with: they are removed when the returned guard drops.
    pub async fn stop_http_only(self) -> Cleanup {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        self.cleanup
    }
}

/// A TCP proxy in front of Postgres or NATS that a test can cut or stall.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Forward,
    Refuse,
    Stall,
}

pub async fn pg_proxy() -> (u16, tokio::sync::watch::Sender<Mode>) {
    let base = pg_base();
    let upstream = base.rsplit('@').next().unwrap();
    tcp_proxy(upstream.trim_end_matches('/').to_string()).await
}

/// [`pg_proxy`] for the machine's NATS.
pub async fn nats_proxy() -> (u16, tokio::sync::watch::Sender<Mode>) {
    let url = nats_url();
    tcp_proxy(url.trim_start_matches("nats://").to_string()).await
}

async fn tcp_proxy(upstream: String) -> (u16, tokio::sync::watch::Sender<Mode>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::watch::channel(Mode::Forward);
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let mut rx = rx.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mode = *rx.borrow_and_update();
                match mode {
                    Mode::Refuse => return,
                    Mode::Stall => {
                        let _ = rx.changed().await;
                        return;
                    }
                    Mode::Forward => {}
                }
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    // Any change of mode cuts live connections, like a network failure.
                    _ = rx.changed() => {}
                }
            });
        }
    });
    (port, tx)
}

/// A private nats-server with JetStream on its own port and store, so stopping it disturbs
/// no other test.
pub struct PrivateNats {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Extra lines of the server's configuration file (e.g. `max_payload: 8192`).
    config: String,
}

impl PrivateNats {
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// A server with `config` added to its configuration file.
    pub fn start_with(config: &str) -> Self {
        let mut n = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
            config: config.to_string(),
        };
        n.restart();
        n
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        let bin = if Path::new("/usr/sbin/nats-server").exists() && bin == "nats-server" {
            "/usr/sbin/nats-server".into()
        } else {
            bin
        };
        let conf = self.dir.path().join("nats.conf");
        let store = self.dir.path().join("store");
        std::fs::write(
            &conf,
            format!("jetstream {{ store_dir: {store:?} }}\n{}\n", self.config),
        )
        .unwrap();
        let child = Command::new(&bin)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin} must be installed for the outage tests: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "private nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads a child's piped stdout and stderr on their own threads while it runs, so that a
/// child writing more than a pipe holds (a service at debug level: every migration's
/// statement, NATS' connection steps) is not blocked for ever; join for the text.
pub fn drain_output(child: &mut std::process::Child) -> [std::thread::JoinHandle<String>; 2] {
    use std::io::Read;
    fn reader(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).unwrap();
            text
        })
    }
    [
        reader(child.stdout.take().expect("stdout piped")),
        reader(child.stderr.take().expect("stderr piped")),
    ]
}
