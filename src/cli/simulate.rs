//! A local stand-in for Teams: builds a realistic outgoing-webhook activity (the shape of the
//! captured fixtures: `<at>` mention, HTML attachment, channelData with team, channel and
//! tenant, fresh ids and timestamp), signs it like Teams does, posts it and reports the reply.

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use chrono::{SecondsFormat, Utc};
use serde_json::json;

use crate::domain::signature;

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
    let at = now.to_rfc3339_opts(SecondsFormat::Micros, true);
    let mention = format!(
        "<at>{}</at>",
        html_escape::encode_text(&sender.webhook_name)
    );
    let activity = json!({
        "type": "message",
        "id": format!("{id}{:03}", rand::random::<u16>() % 1000),
        "timestamp": at,
        "localTimestamp": at,
        "serviceUrl": "https://smba.trafficmanager.net/emea/",
        "channelId": "msteams",
        "from": from(sender),
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
        "attachments": [html_attachment(sender, text)],
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

/// `from`: ids derived from the name unless an AAD object id is given.
fn from(sender: &Sender) -> serde_json::Value {
    let aad = sender.aad_object_id.clone().unwrap_or_else(|| {
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, sender.name.as_bytes()).to_string()
    });
    let user = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, aad.as_bytes()).simple();
    json!({
        "id": format!("29:1{}", &user.to_string()[..24]),
        "name": sender.name,
        "aadObjectId": aad
    })
}

/// The HTML copy of the message Teams attaches, with the mention as a span.
fn html_attachment(sender: &Sender, text: &str) -> serde_json::Value {
    let name = html_escape::encode_text(&sender.webhook_name);
    let text = html_escape::encode_text(text);
    json!({
        "contentType": "text/html",
        "contentUrl": null,
        "content": format!("<div><div><span itemscope=\"\" itemtype=\"http://schema.skype.com/Mention\" itemid=\"0\">{name}</span>&nbsp;{text}</div>\n</div>"),
        "name": null,
        "thumbnailUrl": null
    })
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
    /// The reply's cards, as the lines Teams shows.
    pub card: Vec<String>,
}

/// Each card of a reply as the lines Teams shows (facts as `title: value`), unescaped.
fn card_lines(reply: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    let unescape = |s: &str| {
        let mut chars = s.chars().peekable();
        let mut plain = String::with_capacity(s.len());
        while let Some(c) = chars.next() {
            match (c, chars.peek()) {
                ('\\', Some(n)) if n.is_ascii_punctuation() => {}
                _ => plain.push(c),
            }
        }
        plain
    };
    let cards = reply["attachments"].as_array().into_iter().flatten();
    for card in cards {
        let body = card["content"]["body"].as_array().into_iter().flatten();
        out.extend(body.flat_map(|e| element_lines(e, &unescape)));
        for action in card["content"]["actions"].as_array().into_iter().flatten() {
            let (title, url) = (action["title"].as_str(), action["url"].as_str());
            let (title, url) = (title.unwrap_or_default(), url.unwrap_or_default());
            out.push(format!("  | [{title}] {url}"));
        }
    }
    out
}

/// One card element as lines: a text block line by line, facts as `title: value`.
fn element_lines(element: &serde_json::Value, unescape: &dyn Fn(&str) -> String) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(text) = element["text"].as_str() {
        let text = unescape(text);
        let lines = text.lines().filter(|l| !l.is_empty());
        out.extend(lines.map(|l| format!("  | {l}")));
    }
    for fact in element["facts"].as_array().into_iter().flatten() {
        let (title, value) = (fact["title"].as_str(), fact["value"].as_str());
        let (title, value) = (title.unwrap_or_default(), value.unwrap_or_default());
        out.push(format!("  |   {}: {}", unescape(title), unescape(value)));
    }
    out
}

/// Signs `body` with `secret` and posts it to `url`.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    body: &[u8],
) -> anyhow::Result<Delivery> {
    let auth = signature::sign(secret, body).context("--secret")?;
    let started = Instant::now();
    let resp = client
        .post(url)
        .header("content-type", "application/json; charset=utf-8")
        .header("authorization", auth)
        .body(body.to_vec())
        .send()
        .await
        .with_context(|| format!("posting to {url}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let latency = started.elapsed();
    let shown = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) if status == 200 => v["text"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or(text.clone()),
        // What Teams itself shows when a webhook fails or is too slow.
        _ => format!("Sorry, there was a problem encountered with your request ({status}: {text})"),
    };
    let card = serde_json::from_str(&text).map_or(Vec::new(), |v| card_lines(&v));
    Ok(Delivery {
        status,
        shown,
        latency,
        card,
    })
}

/// Options of `teams-bridge simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The webhook URL, e.g. http://127.0.0.1:3978/webhooks/contoso.
    #[arg(
        long,
        env = "TEAMS_BRIDGE_URL",
        default_value = "http://127.0.0.1:3978/webhooks/contoso"
    )]
    pub url: String,
    /// The webhook's security token (base64, as Teams shows it).
    #[arg(long, env = "TEAMS_BRIDGE_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Sender display name.
    #[arg(long = "from", default_value = "Jane Doe")]
    pub from: String,
    /// Sender AAD object id (default: derived from the name).
    #[arg(long)]
    pub aad_object_id: Option<String>,
    /// Team id.
    #[arg(long, default_value = "19:a1b2c3d4e5f6@thread.tacv2")]
    pub team: String,
    /// Channel id.
    #[arg(long, default_value = "19:f6e5d4c3b2a1@thread.tacv2")]
    pub channel: String,
    /// Tenant id.
    #[arg(long, default_value = "72f988bf-86f1-41af-91ab-2d7cd011db47")]
    pub tenant: String,
    /// The webhook's display name in the mention.
    #[arg(long, default_value = "HR Audit")]
    pub mention: String,
    /// Send the same activity a second time, as Teams sometimes does.
    #[arg(long)]
    pub duplicate: bool,
    /// What the user types after the mention.
    pub text: String,
}

/// `teams-bridge simulate`: posts one activity (twice with `--duplicate`) and prints each
/// reply as Teams shows it; fails unless every delivery got 200.
pub async fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let sender = Sender {
        name: args.from,
        aad_object_id: args.aad_object_id,
        team: args.team,
        channel: args.channel,
        tenant: args.tenant,
        webhook_name: args.mention,
    };
    let body = build_activity(&sender, &args.text);
    let client = reqwest::Client::new();
    let mut ok = true;
    for attempt in 0..if args.duplicate { 2 } else { 1 } {
        let d = deliver(&client, &args.url, &args.secret, &body).await?;
        let label = if attempt == 0 { "reply" } else { "repeat" };
        let ms = d.latency.as_secs_f64() * 1e3;
        println!("{label}: {} ({} in {ms:.1} ms)", d.shown, d.status);
        d.card.iter().for_each(|line| println!("{line}"));
        ok &= d.status == 200;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{activity::Activity, hr_command};

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
        let cmd = hr_command::parse(a.text.as_deref().unwrap());
        assert_eq!(cmd.record_id.as_deref(), Some("E-1042"));
        assert_eq!(
            cmd.changes,
            vec![("title".to_string(), "Senior Engineer".to_string())]
        );
    }
}
