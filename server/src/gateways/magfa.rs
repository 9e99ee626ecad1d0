//! Magfa's HTTP API v2 (`POST …/api/http/sms/v2/send`, HTTP basic authentication as
//! `username/domain` with the password, JSON `{"senders", "recipients", "messages"}`), as its v2
//! documentation and the clients built on it give it. The answer is `{"status", "messages":
//! [{"status", "id", …}]}`, 0 meaning done at both levels; anything else is a refusal inside an
//! HTTP 200 (1: not a valid recipient, 27 and 28: the recipient is barred; none worth retrying).
//!
//! Its inbox: `GET …/v2/messages/{count}`, which removes the messages it hands out, as
//! `{"status", "messages": [{"body", "senderNumber", "recipientNumber", "date"}]}`, the date in
//! Iran's time (`yyyy-mm-dd hh:mm:ss`). Magfa gives a received message no id, so one is derived
//! from the message (`gateways::derived_id`); the same text from the same phone in the same second
//! twice in one read is numbered (`#2`), and across reads it is taken for the one message.

use async_trait::async_trait;

use super::{Fetched, InboxReader};
use crate::replies::{ReplySender, SendError};
use crate::store::PulledMessage;

pub const BASE: &str = "https://sms.magfa.com/api/http/sms/v2";

pub struct Magfa {
    pub client: reqwest::Client,
    pub base: String,
    /// `username/domain`.
    pub account: String,
    pub password: String,
    pub line: String,
}

#[async_trait]
impl ReplySender for Magfa {
    async fn send(&self, to: &str, text: &str) -> Result<Option<String>, SendError> {
        let url = format!("{}/send", self.base.trim_end_matches('/'));
        let body = serde_json::json!({"senders": [self.line], "recipients": [to], "messages": [text]});
        let request = self.client.post(url).basic_auth(&self.account, Some(&self.password)).json(&body);
        let (_, json) = super::json_of(request.send().await?).await?;
        read(&json)
    }
}

fn read(json: &serde_json::Value) -> Result<Option<String>, SendError> {
    // The request's status first, then the one message's.
    let message = &json["messages"][0];
    let status = match json["status"].as_i64() {
        Some(0) => message["status"].as_i64(),
        other => other,
    };
    if status == Some(0) {
        return Ok(message.get("id").map(super::text_of));
    }
    Err(SendError::Rejected {
        code: status.map_or_else(|| "?".to_owned(), |s| s.to_string()),
        message: String::new(),
        permanent: matches!(status, Some(1 | 27 | 28)),
    })
}

/// Messages asked for per read.
const COUNT: u32 = 100;

#[async_trait]
impl InboxReader for Magfa {
    fn name(&self) -> &'static str {
        "magfa"
    }

    async fn fetch(&self, _cursor: Option<&str>) -> Result<Fetched, SendError> {
        let url = format!("{}/messages/{COUNT}", self.base.trim_end_matches('/'));
        let request = self.client.get(url).basic_auth(&self.account, Some(&self.password));
        let (_, json) = super::json_of(request.send().await?).await?;
        if json["status"].as_i64() != Some(0) {
            return Err(SendError::Rejected {
                code: super::text_of(&json["status"]),
                message: String::new(),
                permanent: false,
            });
        }
        let items = json["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
        let mut seen: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
        let messages = items
            .iter()
            .map(|item| {
                let derived = super::derived_id("magfa", item);
                let repeat = seen.entry(derived.clone()).or_insert(0);
                *repeat += 1;
                PulledMessage {
                    message_id: if *repeat == 1 { derived } else { format!("{derived}#{repeat}") },
                    sender: super::mobile(&item["senderNumber"]),
                    recipient: Some(super::text_of(&item["recipientNumber"])).filter(|n| !n.is_empty()),
                    body: super::text_of(&item["body"]),
                    received_at: super::tehran_time(&item["date"]),
                }
            })
            .collect();
        Ok(Fetched { messages, cursor: None })
    }
}
