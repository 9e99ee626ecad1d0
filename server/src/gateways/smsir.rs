//! SMS.ir's send API (`POST /v1/send/bulk` with the `x-api-key` header and a JSON body
//! `{"lineNumber", "messageText", "mobiles": […]}`), as its API documentation and official
//! clients give it. The answer is `{"status", "message", "data": {"packId", "messageIds", …}}`,
//! `status` 1 meaning sent; any other is a refusal (a wrong key, no credit, a line not the
//! account's), retried until the attempts run out.

use async_trait::async_trait;

use crate::replies::{ReplySender, SendError};

pub const BASE: &str = "https://api.sms.ir";

pub struct Smsir {
    pub client: reqwest::Client,
    pub base: String,
    pub key: String,
    pub line: u64,
}

#[async_trait]
impl ReplySender for Smsir {
    async fn send(&self, to: &str, text: &str) -> Result<Option<String>, SendError> {
        let url = format!("{}/v1/send/bulk", self.base.trim_end_matches('/'));
        let body = serde_json::json!({
            "lineNumber": self.line,
            "messageText": text,
            "mobiles": [to],
            "sendDateTime": null,
        });
        let request = self.client.post(url).header("x-api-key", &self.key).json(&body);
        let (_, json) = super::json_of(request.send().await?).await?;
        read(&json)
    }
}

fn read(json: &serde_json::Value) -> Result<Option<String>, SendError> {
    if json["status"].as_i64() == Some(1) {
        return Ok(json["data"]["messageIds"].get(0).map(super::text_of));
    }
    Err(SendError::Rejected {
        code: super::text_of(&json["status"]),
        message: super::text_of(&json["message"]),
        permanent: false,
    })
}
