//! SMS.ir's send API (`POST /v1/send/bulk` with the `x-api-key` header and a JSON body
//! `{"lineNumber", "messageText", "mobiles": […]}`), as its API documentation and official
//! clients give it. The answer is `{"status", "message", "data": {"packId", "messageIds", …}}`,
//! `status` 1 meaning sent; any other is a refusal (a wrong key, no credit, a line not the
//! account's), retried until the attempts run out.
//!
//! Its inbox: `GET /v1/receive/latest?count=N`, which hands each received message out once
//! (SMS.ir's documentation: read once, then marked read), as `{"status", "message", "data":
//! [{"receiveReturnId", "messageText", "number", "mobile", "receivedDateTime"}]}`, the mobile a
//! bare number and the time in Unix seconds. `receiveReturnId` is the message's id.

use async_trait::async_trait;

use super::{Fetched, InboxReader};
use crate::replies::{ReplySender, SendError};
use crate::store::PulledMessage;

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

/// Messages asked for per read: SMS.ir's most.
const LATEST: u32 = 100;

#[async_trait]
impl InboxReader for Smsir {
    fn name(&self) -> &'static str {
        "smsir"
    }

    async fn fetch(&self, _cursor: Option<&str>) -> Result<Fetched, SendError> {
        let url = format!("{}/v1/receive/latest", self.base.trim_end_matches('/'));
        let request = self.client.get(url).query(&[("count", LATEST)]).header("x-api-key", &self.key);
        let (_, json) = super::json_of(request.send().await?).await?;
        if json["status"].as_i64() != Some(1) {
            return Err(SendError::Rejected {
                code: super::text_of(&json["status"]),
                message: super::text_of(&json["message"]),
                permanent: false,
            });
        }
        let items = json["data"].as_array().map(Vec::as_slice).unwrap_or_default();
        let messages = items
            .iter()
            .map(|item| {
                let id = super::text_of(&item["receiveReturnId"]);
                PulledMessage {
                    message_id: if id.is_empty() { super::derived_id("smsir", item) } else { format!("smsir:{id}") },
                    sender: super::mobile(&item["mobile"]),
                    recipient: Some(super::text_of(&item["number"])).filter(|n| !n.is_empty()),
                    body: super::text_of(&item["messageText"]),
                    received_at: super::unix_time(&item["receivedDateTime"]),
                }
            })
            .collect();
        Ok(Fetched { messages, cursor: None })
    }
}
