//! The sync API over HTTP, with the shared wire types.

use gloo_net::http::Request;
use shared::wire::{SyncRequest, SyncResponse, VerifyRequest, VerifyResponse};

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

fn retry_after(response: &gloo_net::http::Response) -> u32 {
    response.headers().get("retry-after").and_then(|v| v.trim().parse().ok()).unwrap_or(30)
}

/// POSTs JSON and reads the answer, sorting failures the way the sync loop acts on them.
async fn post<Req: serde::Serialize, Res: serde::de::DeserializeOwned>(
    builder: gloo_net::http::RequestBuilder,
    body: &Req,
) -> Result<Res, ApiError> {
    let response = builder.json(body).map_err(|_| ApiError::Server)?.send().await.map_err(|_| ApiError::Offline)?;
    match response.status() {
        200 => response.json().await.map_err(|_| ApiError::Server),
        429 | 503 => Err(ApiError::RetryAfter(retry_after(&response))),
        400..=499 => Err(ApiError::Refused),
        _ => Err(ApiError::Server),
    }
}

pub async fn verify(request: &VerifyRequest, lang: &str) -> Result<VerifyResponse, ApiError> {
    post(Request::post("/api/v1/meters/verify").header("accept-language", lang), request).await
}

pub async fn sync(request: &SyncRequest, token: Option<&str>, lang: &str) -> Result<SyncResponse, ApiError> {
    let mut builder = Request::post("/api/v1/sync").header("accept-language", lang);
    if let Some(token) = token {
        builder = builder.header("authorization", &format!("Bearer {token}"));
    }
    post(builder, request).await
}
