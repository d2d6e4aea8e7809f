//! The load generator's HTTP/1.1 client: hyper's connection-level API over a fixed pool.
//!
//! The bench needs exactly the pool it asked for — each [`Conn`] is one kept-alive socket
//! carrying one request at a time, reconnected only when the server closes it or a request
//! fails — so it drives `hyper::client::conn::http1` directly rather than a pooling client.

use std::{io, net::SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    client::conn::http1,
    header::{AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER},
    Request,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The parts of a response the bench looks at.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Whether a `Retry-After` header was present.
    pub retry_after: bool,
    /// The body.
    pub body: Bytes,
}

/// A signed request, ready to send.
#[derive(Debug, Clone)]
pub struct Prepared {
    host: String,
    path: String,
    authorization: String,
    body: Bytes,
}

/// Prepares a signed webhook POST.
pub fn request(host: &str, path: &str, authorization: &str, body: &[u8]) -> Prepared {
    Prepared {
        host: host.to_owned(),
        path: path.to_owned(),
        authorization: authorization.to_owned(),
        body: Bytes::copy_from_slice(body),
    }
}

/// One keep-alive connection.
pub struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Opens a connection (`TCP_NODELAY`, as every HTTP client sets it).
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        // The connection task ends when the server closes it or the sender is dropped.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { sender })
    }

    /// Whether the connection may carry another request.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends one request and reads its whole response.
    pub async fn send(&mut self, r: &Prepared) -> io::Result<Response> {
        self.sender.ready().await.map_err(io::Error::other)?;
        let request = Request::post(r.path.as_str())
            .header(HOST, r.host.as_str())
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .header(AUTHORIZATION, r.authorization.as_str())
            .body(Full::new(r.body.clone()))
            .map_err(io::Error::other)?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(io::Error::other)?;
        let status = response.status().as_u16();
        let retry_after = response.headers().contains_key(RETRY_AFTER);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(io::Error::other)?
            .to_bytes();
        Ok(Response {
            status,
            retry_after,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_is_kept_alive_across_requests_and_reads_retry_after() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let app = axum::Router::new().route(
            "/webhooks/x",
            axum::routing::post(|body: Bytes| async move {
                ([(RETRY_AFTER, "1")], format!("got {}", body.len()))
            }),
        );
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let svc = hyper_util::service::TowerToHyperService::new(app.clone());
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        let mut conn = Conn::connect(addr).await.unwrap();
        let req = request(&addr.to_string(), "/webhooks/x", "HMAC abc", b"{}");
        for _ in 0..3 {
            let r = conn.send(&req).await.unwrap();
            assert_eq!(
                (r.status, r.retry_after, r.body.as_ref()),
                (200, true, &b"got 2"[..])
            );
        }
        assert!(conn.is_open());
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::Relaxed),
            1,
            "one socket for all requests"
        );
    }
}
