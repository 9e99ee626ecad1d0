//! The sync API over HTTP, with the shared wire types: the browser's `fetch`, and the bodies
//! converted through `JSON.stringify`/`Response.json()` (the browser's own JSON, so the app
//! carries no JSON parser of its own).

use shared::wire::{SyncRequest, SyncResponse, UpdatesRequest, VerifyRequest, VerifyResponse};
use wasm_bindgen::{JsCast as _, JsValue};
use wasm_bindgen_futures::JsFuture;

/// What went wrong talking to the server, as the sync loop acts on it.
#[derive(Debug)]
pub enum ApiError {
    /// No network or no server: keep everything queued.
    Offline,
    /// The server asks to wait this many seconds (429, 503).
    RetryAfter(u32),
    /// The server refused the request itself (a wrong pair: 404 on verify).
    Refused,
    /// A 5xx or an unreadable answer: keep everything queued.
    Server,
}

fn retry_after(response: &web_sys::Response) -> u32 {
    response.headers().get("retry-after").ok().flatten().and_then(|v| v.trim().parse().ok()).unwrap_or(30)
}

/// POSTs a wire type as JSON and reads the answer as another.
async fn post<Req: serde::Serialize, Res: serde::de::DeserializeOwned>(
    url: &str,
    headers: &[(&str, &str)],
    body: &Req,
) -> Result<Res, ApiError> {
    let value = body.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|_| ApiError::Server)?;
    let answer = exchange(url, headers, &value).await?;
    serde_wasm_bindgen::from_value(answer).map_err(|_| ApiError::Server)
}

/// The request itself, sorting failures the way the sync loop acts on them. Not generic: one
/// copy of the fetch and its state machine serves every call (the shell's budget).
async fn exchange(url: &str, headers: &[(&str, &str)], body: &JsValue) -> Result<JsValue, ApiError> {
    let text = js_sys::JSON::stringify(body).map_err(|_| ApiError::Server)?;
    let header_map = web_sys::Headers::new().map_err(|_| ApiError::Server)?;
    header_map.set("content-type", "application/json").map_err(|_| ApiError::Server)?;
    for (name, value) in headers {
        header_map.set(name, value).map_err(|_| ApiError::Server)?;
    }
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_headers(&header_map);
    init.set_body(&text);
    let window = web_sys::window().ok_or(ApiError::Offline)?;
    let answer = JsFuture::from(window.fetch_with_str_and_init(url, &init)).await.map_err(|_| ApiError::Offline)?;
    let response: web_sys::Response = answer.dyn_into().map_err(|_| ApiError::Server)?;
    match response.status() {
        200 => {
            let json = response.json().map_err(|_| ApiError::Server)?;
            JsFuture::from(json).await.map_err(|_| ApiError::Server)
        }
        429 | 503 => Err(ApiError::RetryAfter(retry_after(&response))),
        400..=499 => Err(ApiError::Refused),
        _ => Err(ApiError::Server),
    }
}

pub async fn verify(request: &VerifyRequest, lang: &str) -> Result<VerifyResponse, ApiError> {
    post("/api/v1/meters/verify", &[("accept-language", lang)], request).await
}

pub async fn sync(request: &SyncRequest, token: Option<&str>, lang: &str) -> Result<SyncResponse, ApiError> {
    match token {
        Some(token) => {
            let bearer = format!("Bearer {token}");
            post("/api/v1/sync", &[("accept-language", lang), ("authorization", &bearer)], request).await
        }
        None => post("/api/v1/sync", &[("accept-language", lang)], request).await,
    }
}

/// A reviewer's decision as the app keeps it (see `shared::wire::ReviewUpdate`).
pub struct Decided {
    pub id: uuid::Uuid,
    pub accepted: bool,
    pub reason: Option<String>,
}

/// Asks what staff decided about held declarations. The request is the wire type; the answer's
/// `decisions` are read field by field from the browser's parsed JSON rather than through serde:
/// a typed reader for this one small list cost the shell more than the rest of the feature.
pub async fn decisions(request: &UpdatesRequest) -> Result<Vec<Decided>, ApiError> {
    use serde::Serialize as _;
    let body = request.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|_| ApiError::Server)?;
    let answer = exchange("/api/v1/updates", &[], &body).await?;
    let list = js_sys::Reflect::get(&answer, &"decisions".into()).map_err(|_| ApiError::Server)?;
    let list: js_sys::Array = list.dyn_into().map_err(|_| ApiError::Server)?;
    let decided = list.iter().filter_map(|item| {
        let text = |key: &str| js_sys::Reflect::get(&item, &key.into()).ok().and_then(|v| v.as_string());
        Some(Decided { id: text("id")?.parse().ok()?, accepted: text("status")? == "accepted", reason: text("reason") })
    });
    Ok(decided.collect())
}
