//! Why a webhook request was refused. Each kind has a stable `code` (the HTTP body's
//! `error`) and an `outcome` (the metrics label); the HTTP status is the web layer's choice.
//! None of the messages carries a secret, a MAC or a database detail.

use crate::domain::{activity::ActivityError, signature::SignatureError};

/// A refused webhook request. Nothing of it was stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// More requests in flight than `MAX_IN_FLIGHT`: shed before any work.
    #[error("too many requests in flight; retry shortly")]
    Overloaded,
    /// No webhook of that name.
    #[error("unknown webhook")]
    UnknownWebhook,
    /// The body is over `BODY_LIMIT_BYTES`.
    #[error("body exceeds {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body could not be read.
    #[error("could not read the request body")]
    BadBody,
    /// The body did not arrive within the reply budget.
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// A signed request with an empty body.
    #[error("the request body is empty")]
    EmptyBody,
    /// The signature is missing, garbled or wrong.
    #[error("{0}")]
    Signature(#[from] SignatureError),
    /// Verified, but not an activity that can be stored.
    #[error("{0}")]
    NotAnActivity(#[from] ActivityError),
    /// Postgres refused the row itself (the reason is for the log only).
    #[error("the activity could not be stored")]
    Rejected(String),
    /// Postgres is unreachable or failing (the reason is for the log only).
    #[error("storage is unavailable; nothing was stored")]
    Unavailable(String),
    /// The commit did not finish within the reply budget.
    #[error("could not store the message in time; nothing was stored")]
    Timeout,
    /// The commit was sent and its outcome lost (the connection broke): the message may be
    /// stored. Teams' retry is safe, a repeat is recognised.
    #[error("the message may have been stored; a retry is safe (a repeat is recognised)")]
    OutcomeUnknown,
}

impl IngestError {
    /// The label of `teams_bridge_webhook_requests_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Overloaded => "overloaded",
            Self::UnknownWebhook => "unknown_webhook",
            Self::TooLarge { .. } => "too_large",
            Self::BadBody => "bad_body",
            Self::BodyTimeout => "body_timeout",
            Self::EmptyBody => "empty",
            Self::Signature(_) => "bad_signature",
            Self::NotAnActivity(_) => "not_json",
            Self::Rejected(_) => "rejected",
            Self::Unavailable(_) | Self::Timeout => "unavailable",
            Self::OutcomeUnknown => "outcome_unknown",
        }
    }

    /// The stable code callers match on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Signature(SignatureError::Missing) => "missing_signature",
            Self::Signature(SignatureError::Malformed) => "malformed_signature",
            Self::Signature(SignatureError::Mismatch) => "bad_signature",
            Self::NotAnActivity(ActivityError::NotJson(_)) => "not_json",
            Self::NotAnActivity(ActivityError::NulCharacter) | Self::Rejected(_) => "unstorable",
            Self::EmptyBody => "empty_body",
            other => other.outcome(),
        }
    }

    /// Whether a later attempt may succeed (the caller is told to retry).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Overloaded | Self::Unavailable(_) | Self::Timeout
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_outcomes_stay_what_callers_and_dashboards_know() {
        let cases = [
            (IngestError::Overloaded, "overloaded", "overloaded"),
            (
                IngestError::UnknownWebhook,
                "unknown_webhook",
                "unknown_webhook",
            ),
            (IngestError::TooLarge { limit: 1 }, "too_large", "too_large"),
            (IngestError::EmptyBody, "empty_body", "empty"),
            (
                SignatureError::Missing.into(),
                "missing_signature",
                "bad_signature",
            ),
            (
                SignatureError::Mismatch.into(),
                "bad_signature",
                "bad_signature",
            ),
            (ActivityError::NulCharacter.into(), "unstorable", "not_json"),
            (
                IngestError::Rejected("23505".into()),
                "unstorable",
                "rejected",
            ),
            (IngestError::Timeout, "unavailable", "unavailable"),
        ];
        for (err, code, outcome) in cases {
            assert_eq!((err.code(), err.outcome()), (code, outcome), "{err:?}");
        }
    }
}
