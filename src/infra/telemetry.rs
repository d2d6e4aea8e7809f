//! Logs (tracing: text or JSON) and metrics (Prometheus text format via `metrics`).

use std::{io::IsTerminal, sync::OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::config::LogFormat;

/// Installs the global log subscriber once (later calls are no-ops), filtered by `filter`
/// (`RUST_LOG`, checked when the configuration was read).
pub fn init_logs(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    // Logs go to stderr, so a command's own output (`audit`, `replay`) stays clean on stdout;
    // colours only on a terminal, so a log file or collector gets plain text.
    let layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => registry
            .with(layer.json().flatten_event(true).with_current_span(true))
            .try_init(),
        LogFormat::Text => registry.with(layer).try_init(),
    };
}

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Teams gives up at 5 s: buckets reach past it so a slow tail is visible.
            let latency = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 4.0, 5.0, 7.5,
                10.0,
            ];
            let sizes = [
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_size".into()), &sizes))
                .expect("static buckets are valid")
                .install_recorder()
                .expect("the metrics recorder is installed once per process")
        })
        .clone()
}
