//! The audit log as people read it: [`entry`] is one row of `audit_log`, [`query`] the
//! filters and pages the CLI and `/api/audit` share, [`export`] the CLI's CSV and table.
//! The worker that writes it is `worker::hr_audit`.

pub mod entry;
pub mod export;
pub mod query;

pub use entry::AuditEntry;
