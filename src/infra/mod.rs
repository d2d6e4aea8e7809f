//! What every layer runs on: the Postgres pool and migrations ([`db`]), the NATS connection
//! and stream ([`nats`]), logs and metrics ([`telemetry`]), and the shape of every
//! long-running task ([`run_loop`] with its [`backoff`]). Depends on `config` and `domain`.

pub mod backoff;
pub mod db;
pub mod nats;
pub mod run_loop;
pub mod telemetry;
