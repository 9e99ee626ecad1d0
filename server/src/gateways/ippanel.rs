//! IPPanel's Edge API (`POST /api/send` under `https://edge.ippanel.com/v1`, the key in the
//! `Authorization` header, `{"sending_type": "webservice", "from_number", "message", "params":
//! {"recipients": [E.164]}}`), as its documentation repository (ippanelcom/Edge-Document) gives
//! it. The answer is `{"data": {"message_outbox_ids": […]}, "meta": {"status", "message",
//! "message_code", …}}`; `meta.status` false is a refusal, inside a 200 or not.

use async_trait::async_trait;

use crate::replies::{ReplySender, SendError};

pub const BASE: &str = "https://edge.ippanel.com/v1";

pub struct Ippanel {
    pub client: reqwest::Client,
    pub base: String,
    pub key: String,
    /// The sender line, in E.164 (`+983000505`).
    pub line: String,
}

#[async_trait]
impl ReplySender for Ippanel {
    async fn send(&self, to: &str, text: &str) -> Result<Option<String>, SendError> {
        let url = format!("{}/api/send", self.base.trim_end_matches('/'));
        let recipient = shared::sms::international(to).unwrap_or_else(|| to.to_owned());
        let body = serde_json::json!({
            "sending_type": "webservice",
            "from_number": self.line,
            "message": text,
            "params": {"recipients": [recipient]},
        });
        let request = self.client.post(url).header("authorization", &self.key).json(&body);
        let (_, json) = super::json_of(request.send().await?).await?;
        read(&json)
    }
}

fn read(json: &serde_json::Value) -> Result<Option<String>, SendError> {
    if json["meta"]["status"].as_bool() == Some(true) {
        return Ok(json["data"]["message_outbox_ids"].get(0).map(super::text_of));
    }
    Err(SendError::Rejected {
        code: super::text_of(&json["meta"]["message_code"]),
        message: super::text_of(&json["meta"]["message"]),
        // "400-2" is a request the API will not take as it is (a field missing or invalid).
        permanent: json["meta"]["message_code"].as_str() == Some("400-2"),
    })
}
