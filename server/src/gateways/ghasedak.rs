//! Ghasedak's web service (`POST …/Rest/api/v1/WebService/SendSingleSMS` with the `ApiKey`
//! header and a JSON body `{"LineNumber", "Receptor", "Message", …}`), as Ghasedak's official
//! Python SDK (`ghasedakapi/ghasedak_sms_python`) sends it. The answer is `{"isSuccess",
//! "statusCode", "message", "data": {"messageId", …}}`; `isSuccess` false is a refusal, retried
//! until the attempts run out (its codes say nothing final about a number).

use async_trait::async_trait;

use crate::replies::{ReplySender, SendError};

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
