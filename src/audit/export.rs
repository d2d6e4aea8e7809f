//! The audit log as the CLI prints it: CSV (through the `csv` writer) and a terminal table.

use super::AuditEntry;

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
    ])?;
    for e in entries {
        w.write_record([
            e.activity_at.to_rfc3339().as_str(),
            &e.operation,
            e.entity.as_deref().unwrap_or(""),
            e.record_id.as_deref().unwrap_or(""),
            e.actor_name.as_deref().unwrap_or(""),
            e.actor_aad_object_id.as_deref().unwrap_or(""),
            &e.changes.to_string(),
            &e.message,
            e.team_id.as_deref().unwrap_or(""),
            e.channel_id.as_deref().unwrap_or(""),
            e.tenant_id.as_deref().unwrap_or(""),
            &e.webhook,
            &e.event_id.to_string(),
            &e.recorded_at.to_rfc3339(),
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes).expect("csv of UTF-8 strings is UTF-8"))
}

/// Renders entries as a table that fits an 80–120 column terminal (long cells are cut).
pub fn to_table(entries: &[AuditEntry]) -> String {
    let cut = |s: &str, n: usize| -> String {
        let one_line = s.replace(['\n', '\r', '\t'], " ");
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
