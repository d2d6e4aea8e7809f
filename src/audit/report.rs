//! What `teams-bridge verify` reports: the counts, and each thing that does not hold, named
//! so an auditor can act on it.

use uuid::Uuid;

/// One thing that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// An entry's fields changed since it was sealed.
    Modified {
        /// The entry.
        event_id: Uuid,
        /// Its leaf.
        leaf_index: i64,
        /// What changed.
        detail: String,
    },
    /// A leaf index no entry holds: an entry was deleted.
    Missing {
        /// The index.
        leaf_index: i64,
    },
    /// The activity behind an entry changed, or the entry is not what it says.
    Evidence {
        /// The entry.
        event_id: Uuid,
        /// Why.
        detail: String,
    },
    /// An entry with no activity behind it: not received from Teams.
    Inserted {
        /// The entry.
        event_id: Uuid,
    },
    /// A stored checkpoint that does not hold.
    Checkpoint {
        /// Its tree size.
        size: i64,
        /// Why.
        detail: String,
    },
    /// A saved checkpoint today's tree does not extend: history was rewritten.
    Rewritten {
        /// The saved checkpoint's size.
        saved_size: u64,
        /// Why.
        detail: String,
    },
}

/// What `verify` found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// Entries in `audit_log`.
    pub entries: u64,
    /// Of which sealed.
    pub sealed: u64,
    /// Of which still waiting for the sealer.
    pub pending: u64,
    /// Leaves in the tree the sealer says it built.
    pub tree_size: u64,
    /// Stored checkpoints checked.
    pub checkpoints_checked: u64,
    /// Saved checkpoints checked against today's tree.
    pub saved_checkpoints_checked: u64,
    /// Entries whose activity's HMAC was checked (with `evidence`).
    pub hmac_checked: u64,
    /// Sealed entries whose personal fields were erased (`teams-bridge erase`): their leaves
    /// still recompute from the kept digest; the fields themselves are no longer covered.
    pub erased: u64,
    /// Sealed entries whose personal fields were removed by retention (`AUDIT_RETENTION_DAYS`).
    pub expired: u64,
    /// The leaf indexes of the erased entries.
    pub erased_leaves: Vec<i64>,
    /// Entries `--evidence` skipped: their activity, or their own content, was erased or expired.
    pub evidence_skipped: u64,
    /// Entries written by an operator (`grant`, `revoke`, `erase`): no Teams activity by design.
    pub operator_entries: u64,
    /// Everything that does not hold; empty when the log verifies.
    pub problems: Vec<Problem>,
}

impl Report {
    /// Whether everything holds.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "entries {} (sealed {}, pending {}), tree size {}, checkpoints checked {}, saved checkpoints checked {}, HMACs checked {}",
            self.entries,
            self.sealed,
            self.pending,
            self.tree_size,
            self.checkpoints_checked,
            self.saved_checkpoints_checked,
            self.hmac_checked
        )?;
        if self.erased + self.expired > 0 {
            writeln!(
                f,
                "erased {}, expired {}: their personal fields were removed; their leaves still verify from the kept digest",
                self.erased, self.expired
            )?;
        }
        if self.evidence_skipped + self.operator_entries > 0 {
            writeln!(
                f,
                "evidence skipped for {} entries (their activity or content was erased or expired); {} operator entries (grant, revoke, erase) have no Teams activity by design",
                self.evidence_skipped, self.operator_entries
            )?;
        }
        for p in &self.problems {
            let line = match p {
                Problem::Modified {
                    event_id,
                    leaf_index,
                    detail,
                } => {
                    format!("MODIFIED  entry {event_id} (leaf {leaf_index}): {detail}")
                }
                Problem::Missing { leaf_index } => {
                    format!("MISSING   leaf {leaf_index}: its entry was deleted")
                }
                Problem::Evidence { event_id, detail } => {
                    format!("EVIDENCE  entry {event_id}: {detail}")
                }
                Problem::Inserted { event_id } => {
                    format!("INSERTED  entry {event_id}: no activity holds its event id; it was not received from Teams")
                }
                Problem::Checkpoint { size, detail } => format!("CHECKPOINT {size}: {detail}"),
                Problem::Rewritten { saved_size, detail } => {
                    format!("REWRITTEN saved checkpoint {saved_size}: {detail}")
                }
            };
            writeln!(f, "{line}")?;
        }
        match self.ok() {
            true => writeln!(f, "ok: the audit log verifies"),
            false => writeln!(f, "FAILED: {} problems", self.problems.len()),
        }
    }
}
