//! Kavenegar's send API (`POST /v1/{API-KEY}/sms/send.json`, form fields `receptor`, `sender`,
//! `message`), as its REST documentation and official clients give it. Every answer carries
//! `{"return": {"status", "message"}, "entries": [{"messageid", …}]}`; `status` 200 is success,
//! anything else a refusal whatever the HTTP status (411: the receptor is not a valid number,
//! 413: the message is empty or too long, neither worth retrying; 418: no credit).

use async_trait::async_trait;

use crate::replies::{ReplySender, SendError};

pub const BASE: &str = "https://api.kavenegar.com";

pub struct Kavenegar {
    pub client: reqwest::Client,
    pub base: String,
    /// Part of the URL's path: never logged (errors are made without the URL).
    pub key: String,
    /// The line to send from; the account's default without it.
    pub line: Option<String>,
}

#[async_trait]
impl ReplySender for Kavenegar {
    async fn send(&self, to: &str, text: &str) -> Result<Option<String>, SendError> {
        let url = format!("{}/v1/{}/sms/send.json", self.base.trim_end_matches('/'), self.key);
        let mut form = vec![("receptor", to), ("message", text)];
        if let Some(line) = &self.line {
            form.push(("sender", line));
        }
        let (_, json) = super::json_of(self.client.post(url).form(&form).send().await?).await?;
        read(&json)
    }
}

fn read(json: &serde_json::Value) -> Result<Option<String>, SendError> {
    let status = json["return"]["status"].as_i64();
    if status == Some(200) {
        return Ok(json["entries"][0].get("messageid").map(super::text_of));
    }
    let code = status.map_or_else(|| "?".to_owned(), |s| s.to_string());
    Err(SendError::Rejected {
        permanent: matches!(status, Some(411 | 413)),
        message: super::text_of(&json["return"]["message"]),
        code,
    })
}
