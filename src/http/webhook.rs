//! `POST /webhooks/{name}`: the HTTP side of [`crate::ingest`]. Reads the raw body (no JSON
//! extractor runs before the signature holds), gives the request an id and a trace, hands
//! it to [`Ingest::receive`], and turns the result into the reply or a refusal with a
//! stable code. Counts every outcome and logs every refusal.

use std::time::{Duration, Instant};

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use tracing::{Instrument, Span};
use uuid::Uuid;

use super::error::ApiError;
use crate::{
    domain::trace,
    ingest::{Ingest, IngestError},
};

/// The webhook handler.
pub async fn receive(
    State(ingest): State<Ingest>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let request_id = request_id(&headers);
    let traceparent = trace::continue_or_start(header_str(&headers, "traceparent"));
    let trace_id = trace::trace_id(&traceparent).to_owned();
    let span = tracing::info_span!("webhook", %request_id, webhook = %name, %trace_id);
    let body = body.map_err(|r| body_error(&r, ingest.body_limit()));
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

/// The caller's `x-request-id` when usable, else a fresh one.
fn request_id(headers: &HeaderMap) -> String {
    header_str(headers, "x-request-id")
        .filter(|v| v.len() <= 64 && !v.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::new_v4().to_string())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn body_error(rejection: &BytesRejection, limit: usize) -> IngestError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => IngestError::TooLarge { limit },
        _ => IngestError::BadBody,
    }
}

fn log_refusal(span: &Span, e: &IngestError) {
    let outcome = e.outcome();
    span.in_scope(|| match e {
        // Shedding is counted in metrics; a log line per shed request would add load
        // exactly when there is too much of it.
        IngestError::Overloaded => tracing::debug!(outcome, "webhook refused"),
        IngestError::Unavailable(cause) => {
            tracing::error!(outcome, %cause, "webhook refused: database unavailable")
        }
        IngestError::Rejected(cause) => {
            tracing::warn!(outcome, %cause, "webhook refused: database refused the activity")
        }
        _ => tracing::warn!(status = status(e).as_u16(), outcome, reason = %e, "webhook refused"),
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
        IngestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
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
        fn store(&self, a: NewActivity) -> BoxFuture<'_, Result<Stored, StoreError>> {
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

    fn app(store: Arc<Memory>) -> axum::Router {
        let env = [
            ("TEAMS_WEBHOOKS", format!("contoso={TOKEN}")),
            ("BODY_LIMIT_BYTES", "1024".into()),
        ];
        let env = env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let config = Config::from_map(&env, None).unwrap();
        let pool = sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
        router(AppState {
            ingest: Ingest::new(&config, store),
            api: ApiState::new(pool, Some(crate::domain::secret::Secret::new("t".into()))),
            health: health::Health(Arc::new(Ready)),
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
            let (got_status, got) = code(post(app(store.clone()), path, body, auth).await).await;
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

    #[tokio::test]
    async fn a_signed_activity_is_stored_and_answered_with_its_receipt() {
        let store = Arc::new(Memory::default());
        let body =
            br#"{"type":"message","id":"1","text":"<at>HR</at> update employee E-1 title=x"}"#;
        let auth = signature::sign(TOKEN, body).unwrap();
        let response = post(app(store.clone()), "/webhooks/contoso", body, Some(&auth)).await;
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
        let get = |uri: &str, token: &str| {
            let req = Request::get(uri).header("authorization", format!("Bearer {token}"));
            app(Arc::default()).oneshot(req.body(Body::empty()).unwrap())
        };
        let (status, c) = code(get("/api/audit", "wrong").await.unwrap()).await;
        assert_eq!((status.as_u16(), c.as_str()), (401, "unauthorized"));
        let (status, c) = code(get("/api/audit?limit=0", "t").await.unwrap()).await;
        assert_eq!((status.as_u16(), c.as_str()), (400, "bad_parameter"));
    }
}
