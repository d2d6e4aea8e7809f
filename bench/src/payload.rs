//! Realistic, unique, signed Teams activities, made fast enough to offer >10k/s from one core.
//!
//! The body is a Teams channel-message activity shaped like the captured fixtures (~2 KB:
//! `<at>` mention, HTML attachment, clientInfo and mention entities, channelData). It is
//! serialised once with `serde_json` around `@@SLOT@@` markers; each request then only
//! splices its own id, timestamp, sender and text into that template and signs the bytes
//! with [`teams_bridge::domain::signature::sign`], exactly as Teams does.

use anyhow::Context as _;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use serde_json::json;

/// The slots a request fills, in the order of [`Slot`]'s discriminants.
const SLOTS: [&str; 7] = ["ID", "TS", "TEXT", "HTML", "NAME", "AAD", "FROM"];

#[derive(Clone, Copy)]
enum Slot {
    Id = 0,
    Ts,
    Text,
    Html,
    Name,
    Aad,
    From,
}

enum Part {
    Lit(String),
    Slot(usize),
}

/// People who type HR commands (display name, AAD object id, Bot Framework user id).
const SENDERS: [(&str, &str, &str); 6] = [
    (
        "Jane Doe",
        "6f1c2f6e-8b1d-4d0e-9a57-1b5f0e9f4c21",
        "29:1Jx8kd2HfA9c0PqL3mN7oZr4Ts6Uv8Wy",
    ),
    (
        "Ola Nordmann",
        "0b7d6a2e-5c44-4f0a-b3a9-7e2c91d8f0a3",
        "29:1Kd93jfLq0aZ8xVbN2mC4vB6nM8qW0eR",
    ),
    (
        "Amara Okafor",
        "c9e0f1a2-3b4c-4d5e-8f60-718293a4b5c6",
        "29:1Pq7Wn3Xe5Rt9Yu1Io3Pa5Sd7Fg9Hj1K",
    ),
    (
        "Li Wei",
        "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        "29:1Zx2Cv4Bn6Mq8Wr0Ty2Ui4Op6As8Df0G",
    ),
    (
        "María García",
        "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
        "29:1Lk9Jh7Gf5Ds3Aq1Wz3Ex5Rc7Tv9Yb1N",
    ),
    (
        "Søren Kierkegaard",
        "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
        "29:1Mn8Bv6Cx4Za2Sd0Fg8Hj6Kl4Qw2Er0T",
    ),
];

const TITLES: [&str; 6] = [
    "Senior Engineer",
    "Staff Engineer",
    "Engineering Manager",
    "HR Business Partner",
    "Principal Designer",
    "Payroll Specialist",
];

/// Makes the run's activities: activity ids are `{run_id}-{n}` so a run's rows can be found.
pub struct Generator {
    parts: Vec<Part>,
    secret: String,
    run_id: Arc<str>,
}

/// One signed request body.
pub struct Signed {
    /// Teams' activity id (`{run_id}-{n}`).
    pub activity_id: String,
    /// The exact bytes.
    pub body: Vec<u8>,
    /// The `Authorization` header value.
    pub authorization: String,
}

impl Generator {
    /// A generator for `run_id` (letters, digits, `-`) signing with `secret` (base64 token).
    pub fn new(run_id: &str, secret: &str) -> anyhow::Result<Self> {
        teams_bridge::domain::signature::sign(secret, b"{}")
            .context("--secret must be the webhook's base64 token")?;
        Ok(Self {
            parts: template(),
            secret: secret.to_owned(),
            run_id: Arc::from(run_id),
        })
    }

    /// The prefix every activity id of this run starts with (`{run_id}-`).
    pub fn id_prefix(&self) -> String {
        format!("{}-", self.run_id)
    }

    /// The `n`th activity of the run, signed.
    pub fn make(&self, n: u64) -> Signed {
        let activity_id = format!("{}-{n}", self.run_id);
        let (name, aad, from) = SENDERS[(n % SENDERS.len() as u64) as usize];
        let text = command_text(n);
        let ts = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        let html = html_escape::encode_text(&text).into_owned();
        let mut values: [&str; 7] = [""; 7];
        values[Slot::Id as usize] = &activity_id;
        values[Slot::Ts as usize] = &ts;
        values[Slot::Text as usize] = &text;
        values[Slot::Html as usize] = &html;
        values[Slot::Name as usize] = name;
        values[Slot::Aad as usize] = aad;
        values[Slot::From as usize] = from;
        let mut body = Vec::with_capacity(2304);
        for part in &self.parts {
            match part {
                Part::Lit(s) => body.extend_from_slice(s.as_bytes()),
                Part::Slot(i) => json_escape_into(values[*i], &mut body),
            }
        }
        let authorization = teams_bridge::domain::signature::sign(&self.secret, &body)
            .expect("the secret was checked in new()");
        Signed {
            activity_id,
            body,
            authorization,
        }
    }
}

/// What the user typed after the mention: mostly updates, some creates, reads and chat.
fn command_text(n: u64) -> String {
    let record = 1000 + (n * 7919) % 90_000;
    let title = TITLES[(n % TITLES.len() as u64) as usize];
    match n % 10 {
        0 => format!("create employee E-{record} title=\"{title}\" location=Oslo"),
        1 => format!("read employee E-{record}"),
        2 => "thanks, that looks right to me".to_owned(),
        _ => format!(
            "update employee E-{record} title=\"{title}\" salary_band={}",
            3 + n % 6
        ),
    }
}

/// Escapes `s` as the inside of a JSON string.
fn json_escape_into(s: &str, out: &mut Vec<u8>) {
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

fn template() -> Vec<Part> {
    let m = |s: &str| format!("@@{s}@@");
    let team = "19:5c8f2b6a9d3e4f1b8a7c6d5e4f3a2b1c@thread.tacv2";
    let channel = "19:0e1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b@thread.tacv2";
    let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let activity = json!({
        "text": format!("<at>HR Audit</at> {}\n", m("TEXT")),
        "textFormat": "plain",
        "attachments": [{
            "contentType": "text/html",
            "content": format!("<div><div><span itemscope=\"\" itemtype=\"http://schema.skype.com/Mention\" itemid=\"0\">HR Audit</span>&nbsp;{}</div>\n</div>", m("HTML"))
        }],
        "type": "message",
        "timestamp": m("TS"),
        "localTimestamp": m("TS"),
        "id": m("ID"),
        "channelId": "msteams",
        "serviceUrl": "https://smba.trafficmanager.net/emea/",
        "from": {"id": m("FROM"), "name": m("NAME"), "aadObjectId": m("AAD")},
        "conversation": {
            "isGroup": true,
            "conversationType": "channel",
            "tenantId": tenant,
            "id": format!("{channel};messageid={}", m("ID"))
        },
        "recipient": {"id": "28:a888d256-6f0e-4358-b23e-9b644fe0fd64", "name": "HR Audit"},
        "entities": [
            {"mentioned": {"id": "28:a888d256-6f0e-4358-b23e-9b644fe0fd64", "name": "HR Audit"}, "text": "<at>HR Audit</at>", "type": "mention"},
            {"locale": "en-US", "country": "US", "platform": "Web", "timezone": "Europe/Oslo", "type": "clientInfo"}
        ],
        "channelData": {
            "teamsChannelId": channel,
            "teamsTeamId": team,
            "channel": {"id": channel},
            "team": {"id": team},
            "tenant": {"id": tenant}
        },
        "locale": "en-US",
        "localTimezone": "Europe/Oslo",
        "attachmentLayout": null,
        "membersAdded": [],
        "membersRemoved": [],
        "topicName": null,
        "historyDisclosed": null,
        "speak": null,
        "inputHint": null,
        "summary": null,
        "suggestedActions": null,
        "action": null,
        "replyToId": null,
        "value": null,
        "name": null,
        "relatesTo": {"activityId": null, "user": null, "bot": null, "conversation": {"id": format!("{channel};messageid={}", m("ID")), "isGroup": true}, "channelId": "msteams", "serviceUrl": "https://smba.trafficmanager.net/emea/"},
        "code": null
    });
    let text = serde_json::to_string(&activity).expect("a JSON value serialises");
    split_template(&text)
}

fn split_template(text: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = text;
    'outer: while let Some(start) = rest.find("@@") {
        for (i, name) in SLOTS.iter().enumerate() {
            let marker = format!("@@{name}@@");
            if rest[start..].starts_with(&marker) {
                parts.push(Part::Lit(rest[..start].to_owned()));
                parts.push(Part::Slot(i));
                rest = &rest[start + marker.len()..];
                continue 'outer;
            }
        }
        parts.push(Part::Lit(rest[..start + 2].to_owned()));
        rest = &rest[start + 2..];
    }
    parts.push(Part::Lit(rest.to_owned()));
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use teams_bridge::domain::{activity::Activity, hr_command as command, signature::KeyRing};

    const TOKEN: &str = "vqF0En+Z0ucuRTM/01o2GuhMH3hKKk/N2bOmlM31zaA=";

    #[test]
    fn generated_activities_are_realistic_unique_and_verify() {
        let g = Generator::new("run1", TOKEN).unwrap();
        let ring = KeyRing::from_tokens([TOKEN]).unwrap();
        let mut ids = std::collections::HashSet::new();
        for n in 0..40 {
            let s = g.make(n);
            assert!((1900..2400).contains(&s.body.len()), "{}", s.body.len());
            assert!(ring
                .verify(Some(s.authorization.as_bytes()), &s.body)
                .is_ok());
            let a = Activity::parse(&s.body).unwrap();
            assert_eq!(a.id.as_deref(), Some(s.activity_id.as_str()));
            assert!(a.timestamp().is_some() && a.sender_name().is_some());
            assert!(a.team_id().is_some() && a.channel_id().is_some() && a.tenant_id().is_some());
            assert!(ids.insert(s.activity_id.clone()));
            let cmd = command::parse(a.text.as_deref().unwrap());
            if n % 10 >= 3 {
                assert_eq!(cmd.operation, command::Operation::Update, "{:?}", a.text);
                assert_eq!(cmd.changes[0].0, "title");
            }
        }
        assert!(g.id_prefix() == "run1-");
    }

    #[test]
    fn a_bad_secret_is_refused_up_front() {
        assert!(Generator::new("r", "not base64!").is_err());
    }
}
