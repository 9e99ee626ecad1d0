//! Magfa's HTTP API v2 (`POST …/api/http/sms/v2/send`, HTTP basic authentication as
//! `username/domain` with the password, JSON `{"senders", "recipients", "messages"}`), as its v2
//! documentation and the clients built on it give it. The answer is `{"status", "messages":
//! [{"status", "id", …}]}`, 0 meaning done at both levels; anything else is a refusal inside an
//! HTTP 200 (1: not a valid recipient, 27 and 28: the recipient is barred; none worth retrying).

use async_trait::async_trait;

use crate::replies::{ReplySender, SendError};

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
