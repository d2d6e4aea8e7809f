//! Ingest: a webhook request becomes a committed activity. [`receive`] checks the request
//! (in-flight limit, webhook name, body, signature, activity) and stores it through
//! [`committer`], the group commit, whose statement is [`insert`]. Refusals are
//! [`IngestError`]s with a stable code and an outcome label. The HTTP adapter around it is
//! `http::webhook`; ingest itself knows nothing of HTTP.

pub mod answer;
mod attempt;
pub mod committer;
pub mod editors;
mod error;
pub mod insert;
pub mod receive;

pub use committer::{Committer, Store, StoreError};
pub use error::IngestError;
pub use insert::{NewActivity, Stored};
pub use receive::{Ingest, Receipt};
