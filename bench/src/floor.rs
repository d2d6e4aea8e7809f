//! The floor: the least a webhook receiver can do on this machine. An axum server on its own
//! two-thread runtime that reads the same bodies on the same route and answers a small JSON
//! reply with a receipt, with no verification and no storage. The bridge's throughput over
//! the floor's, measured in the same run, says how much the real work costs.

use std::net::SocketAddr;

use axum::{body::Bytes, extract::Path, routing::post, Json, Router};
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// A running floor server; stops when dropped or [`Floor::stop`]ped.
pub struct Floor {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

async fn answer(Path(_webhook): Path<String>, body: Bytes) -> Json<Value> {
    std::hint::black_box(&body);
    Json(json!({
        "type": "message",
        "text": format!("floor — receipt {}", uuid::Uuid::now_v7()),
    }))
}

impl Floor {
    /// Binds 127.0.0.1 on a free port and serves on a dedicated runtime with `threads`
    /// worker threads (the service's runtime has one per core).
    pub fn start(threads: usize) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("bench-floor")
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bench-floor".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let app = Router::new().route("/webhooks/{name}", post(answer));
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await;
                });
                runtime.shutdown_background();
            })?;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving. Kept-alive client connections must be closed first (the bench drops
    /// its pool at the end of a run), else the graceful shutdown waits for them.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.shutdown();
    }
}
