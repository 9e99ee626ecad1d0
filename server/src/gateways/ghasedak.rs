//! Ghasedak's web service (`POST …/Rest/api/v1/WebService/SendSingleSMS` with the `ApiKey`
//! header and a JSON body `{"LineNumber", "Receptor", "Message", …}`), as Ghasedak's official
//! Python SDK (`ghasedakapi/ghasedak_sms_python`) sends it. The answer is `{"isSuccess",
//! "statusCode", "message", "data": {"messageId", …}}`; `isSuccess` false is a refusal, retried
//! until the attempts run out (its codes say nothing final about a number).
//!
//! Its inbox: `GET …/GetReceivedSmses?LineNumber=…&IsRead=False`, as both official SDKs call it
//! (Python's and .NET's, `ghasedakapi/GhasedakSms.Framework`, whose models read the answer in
//! camelCase): `{"isSuccess", "statusCode", "message", "data": {"items": [{"id", "message",
//! "sender", "lineNumber", "receiveDate"}]}}`, the date in Iran's time without an offset. Whether
//! a read marks the messages read is not documented, so the largest id taken is kept as the
//! cursor and messages at or below it are passed over.

use async_trait::async_trait;

use super::{Fetched, InboxReader};
use crate::replies::{ReplySender, SendError};
use crate::store::PulledMessage;

pub const BASE: &str = "https://gw.ghasedak.me/Rest/api/v1/WebService";

pub struct Ghasedak {
    pub client: reqwest::Client,
    pub base: String,
    pub key: String,
    pub line: String,
}

#[async_trait]
impl ReplySender for Ghasedak {
    async fn send(&self, to: &str, text: &str) -> Result<Option<String>, SendError> {
        let url = format!("{}/SendSingleSMS", self.base.trim_end_matches('/'));
        let body = serde_json::json!({
            "SendDate": null,
            "LineNumber": self.line,
            "Receptor": to,
            "Message": text,
            "ClientReferenceId": null,
            "Udh": false,
        });
        let request = self.client.post(url).header("ApiKey", &self.key).json(&body);
        let (_, json) = super::json_of(request.send().await?).await?;
        read(&json)
    }
}

/// A field by its camelCase name or its PascalCase one (ASP.NET answers either way).
fn field<'a>(json: &'a serde_json::Value, camel: &str) -> &'a serde_json::Value {
    let pascal: String = camel.chars().take(1).flat_map(char::to_uppercase).chain(camel.chars().skip(1)).collect();
    json.get(camel).or_else(|| json.get(pascal.as_str())).unwrap_or(&serde_json::Value::Null)
}

fn read(json: &serde_json::Value) -> Result<Option<String>, SendError> {
    if field(json, "isSuccess").as_bool() == Some(true) {
        let id = field(field(json, "data"), "messageId");
        return Ok((!id.is_null()).then(|| super::text_of(id)));
    }
    Err(SendError::Rejected {
        code: super::text_of(field(json, "statusCode")),
        message: super::text_of(field(json, "message")),
        permanent: false,
    })
}

#[async_trait]
impl InboxReader for Ghasedak {
    fn name(&self) -> &'static str {
        "ghasedak"
    }

    async fn fetch(&self, cursor: Option<&str>) -> Result<Fetched, SendError> {
        let url = format!("{}/GetReceivedSmses", self.base.trim_end_matches('/'));
        let query = [("LineNumber", self.line.as_str()), ("IsRead", "False")];
        let request = self.client.get(url).query(&query).header("ApiKey", &self.key);
        let (_, json) = super::json_of(request.send().await?).await?;
        if field(&json, "isSuccess").as_bool() != Some(true) {
            return Err(SendError::Rejected {
                code: super::text_of(field(&json, "statusCode")),
                message: super::text_of(field(&json, "message")),
                permanent: false,
            });
        }
        let after: i64 = cursor.and_then(|c| c.parse().ok()).unwrap_or(i64::MIN);
        let items = field(field(&json, "data"), "items").as_array().map(Vec::as_slice).unwrap_or_default();
        let mut newest = None;
        let mut messages = Vec::new();
        for item in items {
            let id = field(item, "id");
            let number = id.as_i64().or_else(|| id.as_str()?.parse().ok());
            if number.is_some_and(|n| n <= after) {
                continue;
            }
            newest = newest.max(number);
            let text_id = super::text_of(id);
            messages.push(PulledMessage {
                message_id: if text_id.is_empty() {
                    super::derived_id("ghasedak", item)
                } else {
                    format!("ghasedak:{text_id}")
                },
                sender: super::mobile(field(item, "sender")),
                recipient: Some(super::text_of(field(item, "lineNumber"))).filter(|n| !n.is_empty()),
                body: super::text_of(field(item, "message")),
                received_at: super::tehran_time(field(item, "receiveDate")),
            });
        }
        Ok(Fetched { messages, cursor: newest.map(|n| n.to_string()) })
    }
}
