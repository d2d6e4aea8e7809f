//! One integration test binary against the machine's real Postgres and NATS.

mod audit;
mod bench_smoke;
mod browser;
mod cli;
mod cluster;
mod compose;
mod console;
mod contract;
mod edge;
mod helpers;
mod hostile;
mod outage;
mod personal;
mod readme;
mod receiver;
mod seal;
mod tls;
