//! Twilio's Messages API (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP basic
//! authentication with the account SID and auth token, form fields `To`, `From`, `Body`), as
//! Twilio's API reference gives it. `201 Created` with the message's `sid` is success; a refusal
//! is a 4xx with `{"code", "message", "status"}` (21211: not a valid `To` number, 21610: the
//! recipient unsubscribed, 21614: not a mobile; none worth retrying).

use async_trait::async_trait;

use crate::replies::{ReplySender, SendError};

pub const BASE: &str = "https://api.twilio.com";

pub struct Twilio {
    pub client: reqwest::Client,
    pub base: String,
    pub account: String,
    pub token: String,
    /// A Twilio number in E.164, or a messaging service SID (`MG…`).
    pub line: String,
}

#[async_trait]
impl ReplySender for Twilio {
    async fn send(&self, to: &str, text: &str) -> Result<Option<String>, SendError> {
        let url = format!("{}/2010-04-01/Accounts/{}/Messages.json", self.base.trim_end_matches('/'), self.account);
        let to = shared::sms::international(to).unwrap_or_else(|| to.to_owned());
        let from = if self.line.starts_with("MG") { "MessagingServiceSid" } else { "From" };
        let form = [("To", to.as_str()), (from, self.line.as_str()), ("Body", text)];
        let request = self.client.post(url).basic_auth(&self.account, Some(&self.token)).form(&form);
        let (status, json) = super::json_of(request.send().await?).await?;
        read(status, &json)
    }
}

fn read(status: reqwest::StatusCode, json: &serde_json::Value) -> Result<Option<String>, SendError> {
    if status.is_success() && json["sid"].is_string() {
        return Ok(json["sid"].as_str().map(str::to_owned));
    }
    if json["code"].is_null() && !status.is_success() {
        return Err(SendError::Refused(status));
    }
    Err(SendError::Rejected {
        permanent: matches!(json["code"].as_i64(), Some(21211 | 21610 | 21614)),
        code: super::text_of(&json["code"]),
        message: super::text_of(&json["message"]),
    })
}
