//! `POST /webhooks/{name}`: the HTTP side of [`crate::ingest`]. Reads the raw body (no JSON
//! extractor runs before the signature holds), gives the request an id and a trace, hands
//! it to [`Ingest::receive`], and turns the result into the reply or a refusal with a
//! stable code. Counts every outcome and logs every refusal.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use axum::{
    body::{Body, Bytes},
    extract::{Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use http_body_util::BodyExt;
use tracing::{Instrument, Span};
use uuid::Uuid;

use super::error::ApiError;
use crate::{
    domain::{event, trace},
    ingest::{Ingest, IngestError},
};

/// The webhook handler.
pub async fn receive(
    State(ingest): State<Ingest>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let request_id = request_id(&headers);
    let traceparent = trace::continue_or_start(header_str(&headers, "traceparent"));
    let trace_id = trace::trace_id(&traceparent).to_owned();
    // Every value in the span is checked or generated here: nothing the client sent can
    // start a log line or fake a field. At the `error` level, so that refusals logged at
    // `warn` or `error` keep these fields whatever the filter.
    let webhook = loggable_name(&name);
    let span = tracing::error_span!("webhook", %request_id, %webhook, %trace_id);
    let body = read_body(
        body,
        &headers,
        ingest.body_limit(),
        ingest.reply_budget(),
        started,
    );
    let auth = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let result = ingest
        .receive(&name, auth, body, traceparent, started)
        .instrument(span.clone())
        .await;
    let (outcome, mut response) = match result {
        Ok(receipt) => (receipt.outcome(), Json(receipt.reply).into_response()),
        Err(e) => {
            log_refusal(&span, &e);
            (e.outcome(), e.into_response())
        }
    };
    record(&span, outcome, response.status(), started.elapsed());
    if let Ok(v) = request_id.parse() {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// The caller's `x-request-id` when it is 1 to 64 of `A-Z a-z 0-9 . _ : -`, else a fresh one:
/// it is logged and echoed, so it must not carry spaces, `=` or quotes.
fn request_id(headers: &HeaderMap) -> String {
    let safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-');
    header_str(headers, "x-request-id")
        .filter(|v| (1..=64).contains(&v.len()) && v.bytes().all(safe))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::new_v4().to_string())
}

/// The webhook name as logged: the name itself when it could be one (a token), else only
/// its length, so a hostile path segment is never echoed.
fn loggable_name(name: &str) -> String {
    match event::is_token(name) {
        true => name.to_string(),
        false => format!("<invalid:{}-bytes>", name.len()),
    }
}

/// At most one warning a second about unknown webhooks: anyone can send them, as fast as
/// they like. The others are counted (the metric counts every one) and summed up in the next.
struct Throttle {
    second: AtomicU64,
    suppressed: AtomicU64,
}

static UNKNOWN_WEBHOOKS: Throttle = Throttle {
    second: AtomicU64::new(0),
    suppressed: AtomicU64::new(0),
};

impl Throttle {
    /// `Some(suppressed since the last)` when a line may be logged now.
    fn allow(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.second.swap(now, Ordering::Relaxed);
        if last == now {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Reads the body when ingest asks for it (after the permit and the name): refused at once
/// when its declared length is over `limit`, cut at `limit` bytes, and given only what is
/// left of the reply budget to arrive.
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    budget: Duration,
    started: Instant,
) -> Result<Bytes, IngestError> {
    let declared = header_str(headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(IngestError::TooLarge { limit });
    }
    let read = http_body_util::Limited::new(body, limit).collect();
    match tokio::time::timeout(budget.saturating_sub(started.elapsed()), read).await {
        Err(_) => Err(IngestError::BodyTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(IngestError::TooLarge { limit })
        }
        Ok(Err(_)) => Err(IngestError::BadBody),
    }
}

fn log_refusal(span: &Span, e: &IngestError) {
    let outcome = e.outcome();
    let status = status(e).as_u16();
    span.in_scope(|| match e {
        // Shedding is counted in metrics; a log line per shed request would add load
        // exactly when there is too much of it.
        IngestError::Overloaded => tracing::debug!(outcome, "webhook refused"),
        IngestError::UnknownWebhook => {
            if let Some(suppressed) = UNKNOWN_WEBHOOKS.allow() {
                tracing::warn!(status, outcome, reason = %e, suppressed, "webhook refused")
            }
        }
        _ => {
            match e {
                // Database messages can quote the request's own values: logged escaped.
                IngestError::Unavailable(reason) => {
                    tracing::error!(?reason, "database unavailable")
                }
                IngestError::Rejected(reason) => {
                    tracing::warn!(?reason, "database refused the activity")
                }
                _ => {}
            }
            tracing::warn!(status, outcome, reason = %e, "webhook refused")
        }
    });
}

fn record(span: &Span, outcome: &'static str, status: StatusCode, elapsed: Duration) {
    // One line per request is an access log; at thousands per second it costs a good share
    // of a core, so it is debug. Refusals are warnings (see `log_refusal`).
    let elapsed_ms = elapsed.as_secs_f64() * 1e3;
    let status = status.as_u16();
    span.in_scope(|| tracing::debug!(outcome, status, elapsed_ms, "webhook answered"));
    metrics::counter!("teams_bridge_webhook_requests_total", "outcome" => outcome).increment(1);
    metrics::histogram!("teams_bridge_reply_seconds").record(elapsed.as_secs_f64());
}

/// The HTTP status of a refusal.
fn status(e: &IngestError) -> StatusCode {
    match e {
        IngestError::Overloaded | IngestError::Unavailable(_) | IngestError::Timeout => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        IngestError::UnknownWebhook | IngestError::Signature(_) => StatusCode::UNAUTHORIZED,
        // Not 503: that would say nothing was stored.
        IngestError::OutcomeUnknown => StatusCode::INTERNAL_SERVER_ERROR,
        IngestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        IngestError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
        IngestError::BadBody
        | IngestError::EmptyBody
        | IngestError::NotAnActivity(_)
        | IngestError::Rejected(_) => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let mut err = ApiError::new(status(&self), self.code(), self.to_string());
        if self.is_transient() {
            err.retry_after = Some(1);
        }
        err.into_response()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::{body::Body, http::Request};
    use futures::future::BoxFuture;
    use tower::ServiceExt;

    use super::*;
    use crate::{
        config::Config,
        domain::signature,
        http::{api::ApiState, health, router, AppState},
        ingest::{NewActivity, Store, StoreError, Stored},
    };

    const TOKEN: &str = "vqF0En+Z0ucuRTM/01o2GuhMH3hKKk/N2bOmlM31zaA=";

    /// Keeps what it is given in memory: the router's tests are about HTTP, not Postgres
    /// (the integration tests store for real).
    #[derive(Default)]
    struct Memory(Mutex<Vec<Uuid>>);

    impl Store for Memory {
        fn store(&self, a: NewActivity, _: Instant) -> BoxFuture<'_, Result<Stored, StoreError>> {
            self.0.lock().unwrap().push(a.event_id);
            Box::pin(async move { Ok(Stored::New(a.event_id)) })
        }
    }

    struct Ready;
    impl health::Probe for Ready {
        fn check(&self) -> BoxFuture<'_, health::Readiness> {
            Box::pin(async { health::Readiness::default() })
        }
    }

    async fn app(store: Arc<Memory>) -> axum::Router {
        let env = [
            ("TEAMS_WEBHOOKS", format!("contoso={TOKEN}")),
            ("BODY_LIMIT_BYTES", "1024".into()),
        ];
        let env = env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let config = Config::from_map(&env, None).unwrap();
        let pool = sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
        router(AppState {
            ingest: Ingest::new(&config, store),
            api: ApiState::new(
                pool.clone(),
                Some(crate::domain::secret::Secret::new("t".into())),
            ),
            console: crate::http::console::ConsoleState::new(pool, Vec::new(), false),
            health: health::Health::spawn(Arc::new(Ready)).await,
            metrics: crate::infra::telemetry::metrics(),
        })
    }

    async fn post(app: axum::Router, path: &str, body: &[u8], auth: Option<&str>) -> Response {
        let mut req = Request::post(path).header("content-type", "application/json");
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        app.oneshot(req.body(Body::from(body.to_vec())).unwrap())
            .await
            .unwrap()
    }

    async fn code(response: Response) -> (StatusCode, String) {
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        (status, v["error"].as_str().unwrap_or_default().to_string())
    }

    /// Path, body, `Authorization`, expected status and code.
    type Case<'a> = (&'a str, &'a [u8], Option<&'a str>, u16, &'a str);

    #[tokio::test]
    async fn refusals_carry_their_status_and_code_and_store_nothing() {
        let store = Arc::new(Memory::default());
        let body = br#"{"type":"message","id":"1","text":"hi"}"#;
        let good = signature::sign(TOKEN, body).unwrap();
        let other = signature::sign("QgyNSToQjf4p6+YzDpjKks1/tXeJQ7FhVHqRwTnugVI=", body).unwrap();
        let big = vec![b' '; 2048];
        let cases: [Case; 7] = [
            (
                "/webhooks/nobody",
                body,
                Some(&good),
                401,
                "unknown_webhook",
            ),
            ("/webhooks/contoso", body, None, 401, "missing_signature"),
            (
                "/webhooks/contoso",
                body,
                Some("HMAC AAAA"),
                401,
                "malformed_signature",
            ),
            (
                "/webhooks/contoso",
                body,
                Some(&other),
                401,
                "bad_signature",
            ),
            ("/webhooks/contoso", b"", Some(&good), 400, "empty_body"),
            ("/webhooks/contoso", &big, Some(&good), 413, "too_large"),
            (
                "/webhooks/contoso",
                b"[1]",
                Some(&signature::sign(TOKEN, b"[1]").unwrap()),
                400,
                "not_json",
            ),
        ];
        for (path, body, auth, status, want) in cases {
            let (got_status, got) =
                code(post(app(store.clone()).await, path, body, auth).await).await;
            assert_eq!(
                (got_status.as_u16(), got.as_str()),
                (status, want),
                "{path} {auth:?}"
            );
        }
        assert!(
            store.0.lock().unwrap().is_empty(),
            "no refusal reaches the store"
        );
    }

    #[test]
    fn request_ids_and_names_that_could_fake_a_log_field_are_not_taken_as_they_are() {
        let with = |id: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-request-id", id.parse().unwrap());
            request_id(&h)
        };
        assert_eq!(with("req-1.a:b_c"), "req-1.a:b_c");
        for bad in ["a b", "x=1", "\"q\"", &"r".repeat(65)] {
            assert_ne!(with(bad), bad);
        }
        assert_eq!(loggable_name("contoso"), "contoso");
        assert_eq!(loggable_name("a\nfake=1"), "<invalid:8-bytes>");
    }

    #[tokio::test]
    async fn a_signed_activity_is_stored_and_answered_with_its_receipt() {
        let store = Arc::new(Memory::default());
        let body =
            br#"{"type":"message","id":"1","text":"<at>HR</at> update employee E-1 title=x"}"#;
        let auth = signature::sign(TOKEN, body).unwrap();
        let response = post(
            app(store.clone()).await,
            "/webhooks/contoso",
            body,
            Some(&auth),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().contains_key("x-request-id"));
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let reply: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let id = store.0.lock().unwrap()[0];
        let want = format!("Recorded UPDATE of employee E-1 (title) — receipt {id}");
        assert_eq!(reply["text"], want);
    }

    #[tokio::test]
    async fn the_audit_api_refuses_a_wrong_token_and_a_bad_parameter_before_any_query() {
        async fn get(uri: &str, token: &str) -> Response {
            let req = Request::get(uri).header("authorization", format!("Bearer {token}"));
            let app = app(Arc::default()).await;
            app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
        }
        let (status, c) = code(get("/api/audit", "wrong").await).await;
        assert_eq!((status.as_u16(), c.as_str()), (401, "unauthorized"));
        let (status, c) = code(get("/api/audit?limit=0", "t").await).await;
        assert_eq!((status.as_u16(), c.as_str()), (400, "bad_parameter"));
    }
}
