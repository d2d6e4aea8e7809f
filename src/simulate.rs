//! A local stand-in for Teams: builds a realistic outgoing-webhook activity (the shape of the
//! captured fixtures: `<at>` mention, HTML attachment, channelData with team, channel and
//! tenant, fresh ids and timestamp), signs it like Teams does, posts it and reports the reply.

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use serde_json::json;

use crate::signature;

/// Who and where the simulated message comes from.
#[derive(Debug, Clone)]
pub struct Sender {
    /// Display name.
    pub name: String,
    /// AAD object id (derived from the name when not given).
    pub aad_object_id: Option<String>,
    /// Team id.
    pub team: String,
    /// Channel id.
    pub channel: String,
    /// Tenant id.
    pub tenant: String,
    /// Name of the webhook as it is mentioned.
    pub webhook_name: String,
}

/// A Teams-shaped activity for `text` typed by `sender`, with a fresh activity id.
pub fn build_activity(sender: &Sender, text: &str) -> Vec<u8> {
    let now = Utc::now();
    let id = format!("{}", now.timestamp_millis());
    let aad = sender.aad_object_id.clone().unwrap_or_else(|| {
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, sender.name.as_bytes()).to_string()
    });
    let escaped = html_escape::encode_text(text);
    let mention = format!(
        "<at>{}</at>",
        html_escape::encode_text(&sender.webhook_name)
    );
    let activity = json!({
        "type": "message",
        "id": format!("{id}{:03}", rand::random::<u16>() % 1000),
        "timestamp": now.to_rfc3339_opts(SecondsFormat::Micros, true),
        "localTimestamp": now.to_rfc3339_opts(SecondsFormat::Micros, true),
        "serviceUrl": "https://smba.trafficmanager.net/emea/",
        "channelId": "msteams",
        "from": {
            "id": format!("29:1{}", &uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, aad.as_bytes()).simple().to_string()[..24]),
            "name": sender.name,
            "aadObjectId": aad
        },
        "conversation": {
            "isGroup": true,
            "conversationType": "channel",
            "tenantId": sender.tenant,
            "id": format!("{};messageid={id}", sender.channel)
        },
        "recipient": null,
        "textFormat": "plain",
        "attachmentLayout": null,
        "membersAdded": [],
        "membersRemoved": [],
        "topicName": null,
        "historyDisclosed": null,
        "locale": "en-US",
        "text": format!("{mention} {text}\n"),
        "speak": null,
        "inputHint": null,
        "summary": null,
        "suggestedActions": null,
        "attachments": [{
            "contentType": "text/html",
            "contentUrl": null,
            "content": format!("<div><div><span itemscope=\"\" itemtype=\"http://schema.skype.com/Mention\" itemid=\"0\">{}</span>&nbsp;{escaped}</div>\n</div>", html_escape::encode_text(&sender.webhook_name)),
            "name": null,
            "thumbnailUrl": null
        }],
        "entities": [{"locale": "en-US", "country": "US", "platform": "Web", "timezone": "Europe/Oslo", "type": "clientInfo"}],
        "channelData": {
            "teamsChannelId": sender.channel,
            "teamsTeamId": sender.team,
            "channel": {"id": sender.channel},
            "team": {"id": sender.team},
            "tenant": {"id": sender.tenant}
        },
        "action": null,
        "replyToId": null,
        "value": null,
        "name": null,
        "relatesTo": null,
        "code": null
    });
    serde_json::to_vec(&activity).expect("a JSON value serialises")
}

/// What one simulated delivery got back.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// HTTP status.
    pub status: u16,
    /// The reply text as Teams would show it, or the error body.
    pub shown: String,
    /// Time from send to the full reply.
    pub latency: Duration,
}

/// Signs `body` with `secret` and posts it to `url`.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    body: &[u8],
) -> anyhow::Result<Delivery> {
    let auth = signature::sign(secret, body).map_err(|e| anyhow::anyhow!("--secret: {e}"))?;
    let started = Instant::now();
    let resp = client
        .post(url)
        .header("content-type", "application/json; charset=utf-8")
        .header("authorization", auth)
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("posting to {url}: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let latency = started.elapsed();
    let shown = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) if status == 200 => v["text"].as_str().map(str::to_owned).unwrap_or(text),
        // What Teams itself shows when a webhook fails or is too slow.
        _ => format!("Sorry, there was a problem encountered with your request ({status}: {text})"),
    };
    Ok(Delivery {
        status,
        shown,
        latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{activity::Activity, command};

    #[test]
    fn a_simulated_activity_reads_like_a_real_one() {
        let sender = Sender {
            name: "Jane Doe".into(),
            aad_object_id: None,
            team: "19:team@thread.tacv2".into(),
            channel: "19:chan@thread.tacv2".into(),
            tenant: "tenant".into(),
            webhook_name: "HR Audit".into(),
        };
        let body = build_activity(&sender, r#"update employee E-1042 title="Senior Engineer""#);
        let a = Activity::parse(&body).unwrap();
        assert_eq!(a.sender_name(), Some("Jane Doe"));
        assert_eq!(a.team_id(), Some("19:team@thread.tacv2"));
        assert_eq!(a.tenant_id(), Some("tenant"));
        assert!(a.timestamp().is_some() && a.id.is_some());
        let cmd = command::parse(a.text.as_deref().unwrap());
        assert_eq!(cmd.record_id.as_deref(), Some("E-1042"));
        assert_eq!(
            cmd.changes,
            vec![("title".to_string(), "Senior Engineer".to_string())]
        );
    }
}
