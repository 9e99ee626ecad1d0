//! IPPanel's Edge API (`POST /api/send` under `https://edge.ippanel.com/v1`, the key in the
//! `Authorization` header, `{"sending_type": "webservice", "from_number", "message", "params":
//! {"recipients": [E.164]}}`), as its documentation repository (ippanelcom/Edge-Document) gives
//! it. The answer is `{"data": {"message_outbox_ids": […]}, "meta": {"status", "message",
//! "message_code", …}}`; `meta.status` false is a refusal, inside a 200 or not.
//!
//! Its inbox: `POST /api/report/messages-inbox` with `{"page", "per_page", "filters":
//! {"from_id"}}`, the messages received after message `from_id`, newest first, as `{"data":
//! [{"messages_inbox_id", "from", "number", "message", "time", …}], "meta": {"last_page", …}}`.
//! It keeps its messages, so the largest id taken is the cursor. The first read starts after
//! the newest message there is, not at the inbox's whole history. When more than [`MAX_PAGES`]
//! pages wait, the oldest ones are taken and the rest on the next read.

use async_trait::async_trait;

use super::{Fetched, InboxReader};
use crate::replies::{ReplySender, SendError};
use crate::store::PulledMessage;

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

/// Messages asked for per page of the inbox.
const PER_PAGE: u32 = 100;
/// Pages read at most in one read of the inbox.
pub const MAX_PAGES: u32 = 20;

impl Ippanel {
    async fn inbox_page(&self, page: u32, per_page: u32, from_id: Option<i64>) -> Result<serde_json::Value, SendError> {
        let url = format!("{}/api/report/messages-inbox", self.base.trim_end_matches('/'));
        let mut body = serde_json::json!({"page": page, "per_page": per_page});
        if let Some(from_id) = from_id {
            body["filters"] = serde_json::json!({"from_id": from_id});
        }
        let request = self.client.post(url).header("authorization", &self.key).json(&body);
        let (_, json) = super::json_of(request.send().await?).await?;
        if json["meta"]["status"].as_bool() != Some(true) {
            return Err(SendError::Rejected {
                code: super::text_of(&json["meta"]["message_code"]),
                message: super::text_of(&json["meta"]["message"]),
                permanent: false,
            });
        }
        Ok(json)
    }
}

fn inbox_id(item: &serde_json::Value) -> Option<i64> {
    let id = &item["messages_inbox_id"];
    id.as_i64().or_else(|| id.as_str()?.parse().ok())
}

fn items(page: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    page["data"].as_array().into_iter().flatten()
}

#[async_trait]
impl InboxReader for Ippanel {
    fn name(&self) -> &'static str {
        "ippanel"
    }

    async fn fetch(&self, cursor: Option<&str>) -> Result<Fetched, SendError> {
        let Some(from_id) = cursor.and_then(|c| c.parse::<i64>().ok()) else {
            let newest = self.inbox_page(1, 1, None).await?;
            let newest = items(&newest).filter_map(inbox_id).max().unwrap_or(0);
            tracing::info!(after = newest, "reading IPPanel's inbox from its newest message on");
            return Ok(Fetched { messages: Vec::new(), cursor: Some(newest.to_string()) });
        };
        let first = self.inbox_page(1, PER_PAGE, Some(from_id)).await?;
        let last = u32::try_from(first["meta"]["last_page"].as_u64().unwrap_or(1)).unwrap_or(u32::MAX).max(1);
        let mut pages = vec![];
        // Newest first: a message received while the pages are read pushes every older one a
        // place further, so one page past the last is read too, lest the oldest slip past the
        // cursor unseen.
        let end = if last > 1 { last + 1 } else { last };
        let rest = if last <= MAX_PAGES {
            pages.push(first);
            2..=end
        } else {
            // The last pages hold the oldest, which are taken first.
            (last - MAX_PAGES + 1)..=end
        };
        for page in rest {
            pages.push(self.inbox_page(page, PER_PAGE, Some(from_id)).await?);
        }
        let mut seen = std::collections::HashSet::new();
        let mut messages = Vec::new();
        let mut newest = from_id;
        for item in pages.iter().flat_map(items) {
            let Some(id) = inbox_id(item).filter(|id| *id > from_id) else { continue };
            if !seen.insert(id) {
                continue;
            }
            newest = newest.max(id);
            messages.push(PulledMessage {
                message_id: format!("ippanel:{id}"),
                sender: super::text_of(&item["from"]),
                recipient: Some(super::text_of(&item["number"])).filter(|n| !n.is_empty()),
                body: super::text_of(&item["message"]),
                received_at: super::unix_time(&item["time"]),
            });
        }
        // Oldest first, as they were received.
        messages.sort_by_key(|m| m.message_id.trim_start_matches("ippanel:").parse::<i64>().unwrap_or(0));
        Ok(Fetched { messages, cursor: Some(newest.to_string()) })
    }
}
