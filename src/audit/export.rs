//! The audit log as the CLI prints it: CSV (through the `csv` writer) and a terminal table.
//!
//! HR text is typed by any Teams user, so neither output may be turned against its reader:
//! a CSV cell that a spreadsheet would run as a formula is neutralised (OWASP's rule: a
//! leading `'` before `=`, `+`, `-`, `@`, tab or CR), and the table drops control characters
//! (a terminal would obey an ESC sequence). The JSON output stays exact.

use std::borrow::Cow;

use super::AuditEntry;

/// A cell a spreadsheet will show as text, never evaluate.
fn csv_cell(s: &str) -> Cow<'_, str> {
    match s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        true => Cow::Owned(format!("'{s}")),
        false => Cow::Borrowed(s),
    }
}

/// One line of text a terminal shows as it is: whitespace becomes a space, other control
/// characters (ESC, BEL, …) are dropped.
fn terminal_text(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            '\n' | '\r' | '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// Renders entries as CSV (header row first), through the `csv` writer.
pub fn to_csv(entries: &[AuditEntry]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "activity_at",
        "operation",
        "entity",
        "record_id",
        "actor_name",
        "actor_aad_object_id",
        "changes",
        "message",
        "team_id",
        "channel_id",
        "tenant_id",
        "webhook",
        "event_id",
        "recorded_at",
        "authorized",
        "redacted",
    ])?;
    for e in entries {
        let (activity_at, changes) = (e.activity_at.to_rfc3339(), e.changes.to_string());
        let (event_id, recorded_at) = (e.event_id.to_string(), e.recorded_at.to_rfc3339());
        let row = [
            activity_at.as_str(),
            &e.operation,
            e.entity.as_deref().unwrap_or(""),
            e.record_id.as_deref().unwrap_or(""),
            e.actor_name.as_deref().unwrap_or(""),
            e.actor_aad_object_id.as_deref().unwrap_or(""),
            &changes,
            &e.message,
            e.team_id.as_deref().unwrap_or(""),
            e.channel_id.as_deref().unwrap_or(""),
            e.tenant_id.as_deref().unwrap_or(""),
            &e.webhook,
            &event_id,
            &recorded_at,
            if e.authorized { "true" } else { "false" },
            e.redacted.as_deref().unwrap_or(""),
        ];
        w.write_record(row.map(csv_cell).iter().map(|c| c.as_bytes()))?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes).expect("csv of UTF-8 strings is UTF-8"))
}

/// Renders entries as a table that fits an 80–120 column terminal (long cells are cut).
pub fn to_table(entries: &[AuditEntry]) -> String {
    let cut = |s: &str, n: usize| -> String {
        let one_line = terminal_text(s);
        if one_line.chars().count() <= n {
            one_line
        } else {
            format!("{}…", one_line.chars().take(n - 1).collect::<String>())
        }
    };
    let mut out = format!(
        "{:<20} {:<7} {:<12} {:<18} {}\n",
        "WHEN (UTC)", "OP", "RECORD", "ACTOR", "CHANGES / MESSAGE"
    );
    for e in entries {
        let detail = match &e.changes {
            serde_json::Value::Object(m) if !m.is_empty() => m
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string())
                    )
                })
                .collect::<Vec<_>>()
                .join(" "),
            _ => e.message.clone(),
        };
        let detail = match (e.authorized, e.redacted.as_deref()) {
            (_, Some(why)) if detail.is_empty() => format!("[{why}]"),
            (false, _) => format!("[not a change: not an HR editor] {detail}"),
            _ => detail,
        };
        out.push_str(&format!(
            "{:<20} {:<7} {:<12} {:<18} {}\n",
            e.activity_at.format("%Y-%m-%d %H:%M:%S"),
            e.operation,
            cut(e.record_id.as_deref().unwrap_or("-"), 12),
            cut(
                e.actor_name
                    .as_deref()
                    .or(e.actor_aad_object_id.as_deref())
                    .unwrap_or("-"),
                18
            ),
            cut(&detail, 50),
        ));
    }
    out.push_str(&format!("({} entries)\n", entries.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_plain_ones_kept() {
        for bad in [
            "=HYPERLINK(\"http://x\")",
            "+1",
            "-2",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            assert_eq!(csv_cell(bad), format!("'{bad}"));
        }
        for fine in ["Jane", "E-1042", "", "a=b", "1+1"] {
            assert_eq!(csv_cell(fine), fine);
        }
    }

    #[test]
    fn the_table_drops_escape_sequences_and_keeps_text() {
        assert_eq!(terminal_text("a\u{1b}[31mred\u{7}\nb"), "a[31mred b");
        assert_eq!(terminal_text("øl 🍺"), "øl 🍺");
    }
}
