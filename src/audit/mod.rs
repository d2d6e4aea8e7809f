//! The audit log as people read it and an auditor checks it: [`entry`] is one row of
//! `audit_log`, [`query`] the filters and pages the CLI and `/api/audit` share, [`export`] the
//! CLI's CSV and table; [`seal`] puts every entry in a signed Merkle tree, [`verify`] checks
//! the database against it (its [`report`]) and [`bundle`] carries one record's evidence for an offline check.
//! The worker that writes entries is `worker::hr_audit`.

pub mod bundle;
pub mod entry;
pub mod export;
pub mod query;
mod redaction;
pub mod report;
pub mod seal;
pub mod verify;

pub use entry::{AuditEntry, NotAnEntry, Seal};
