//! A minimal HTTP/1.1 client over one kept-alive TCP connection.
//!
//! The load generator shares two cores with the service, Postgres and NATS, so it must be
//! cheap per request, and the connection pool must be exactly the size asked for: each
//! [`Conn`] is one socket used for one request at a time (no pipelining), reconnecting only
//! when the server closes it or a request fails. Responses must carry `Content-Length`
//! (axum and hyper always send it for these bodies).

use std::{io, net::SocketAddr};

use bytes::{Bytes, BytesMut};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

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

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    open: bool,
}

/// Builds the request bytes: headers and body in one buffer, written with one syscall.
pub fn request(host: &str, path: &str, authorization: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 256);
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: application/json; charset=utf-8\r\nauthorization: ");
    out.extend_from_slice(authorization.as_bytes());
    out.extend_from_slice(b"\r\ncontent-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

impl Conn {
    /// Opens a connection (`TCP_NODELAY`, as every HTTP client sets it).
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: BytesMut::with_capacity(4096),
            open: true,
        })
    }

    /// Whether the connection may carry another request.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Sends one request and reads its whole response.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<Response> {
        if !self.buf.is_empty() {
            self.open = false;
            return Err(io::Error::other("unexpected bytes before a request"));
        }
        let result = self.exchange(request).await;
        if result.is_err() {
            self.open = false;
        }
        result
    }

    async fn exchange(&mut self, request: &[u8]) -> io::Result<Response> {
        self.stream.write_all(request).await?;
        let head_len = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > 64 * 1024 {
                return Err(io::Error::other("response head too large"));
            }
            self.fill().await?;
        };
        let head = parse_head(&self.buf[..head_len])?;
        if !head.keep_alive {
            self.open = false;
        }
        while self.buf.len() < head_len + head.content_length {
            self.fill().await?;
        }
        let mut message = self.buf.split_to(head_len + head.content_length);
        let body = message.split_off(head_len).freeze();
        Ok(Response {
            status: head.status,
            retry_after: head.retry_after,
            body,
        })
    }

    async fn fill(&mut self) -> io::Result<()> {
        self.buf.reserve(4096);
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        Ok(())
    }
}

struct Head {
    status: u16,
    content_length: usize,
    retry_after: bool,
    keep_alive: bool,
}

fn parse_head(head: &[u8]) -> io::Result<Head> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let text = std::str::from_utf8(head).map_err(|_| bad("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.split(' ');
    let version = words.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(bad("not an HTTP/1.x response"));
    }
    let status = words
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let mut out = Head {
        status,
        content_length: usize::MAX,
        retry_after: false,
        keep_alive: version == "HTTP/1.1",
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad("bad header line"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            out.content_length = value.parse().map_err(|_| bad("bad content-length"))?;
        } else if name.eq_ignore_ascii_case("retry-after") {
            out.retry_after = !value.is_empty();
        } else if name.eq_ignore_ascii_case("connection") {
            out.keep_alive = !value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad(
                "chunked responses are not supported by the bench client",
            ));
        }
    }
    if out.content_length == usize::MAX {
        // 1xx/204/304 have no body; anything else must say how long it is.
        if status == 204 || status == 304 || status < 200 {
            out.content_length = 0;
        } else {
            return Err(bad("response without content-length"));
        }
    }
    Ok(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_are_read() {
        let h = parse_head(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nRetry-After: 1\r\ncontent-length: 42\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (h.status, h.content_length, h.retry_after, h.keep_alive),
            (503, 42, true, true)
        );
        let h = parse_head(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n")
            .unwrap();
        assert_eq!((h.status, h.retry_after, h.keep_alive), (200, false, false));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn requests_carry_length_and_signature() {
        let r = request("127.0.0.1:1", "/webhooks/x", "HMAC abc", b"{}");
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("POST /webhooks/x HTTP/1.1\r\n"));
        assert!(text.contains("\r\nauthorization: HMAC abc\r\n"));
        assert!(text.ends_with("content-length: 2\r\n\r\n{}"));
    }
}
