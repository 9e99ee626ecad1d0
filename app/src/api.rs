//! The sync API over HTTP, with the shared wire types: the browser's `fetch`, and the bodies
//! converted through `JSON.stringify`/`Response.json()` (the browser's own JSON, so the app
//! carries no JSON parser of its own). Requests are the wire types, written through serde;
//! answers are read field by field (`crate::js`).

use std::cell::Cell;

use shared::clock::Offset;
use shared::wire::{ComplaintsRequest, MeterInfo, SyncRequest, UpdatesRequest, VerifyRequest};
use wasm_bindgen::{JsCast as _, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::js::{self, Fields, Outcome};

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

fn to_js<T: serde::Serialize>(value: &T) -> Result<JsValue, ApiError> {
    value.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|_| ApiError::Server)
}

thread_local! {
    /// How far the server's clock is from the phone's, from the latest answer that told.
    static CLOCK: Cell<Option<Offset>> = const { Cell::new(None) };
}

/// What the latest answer showed of the server's clock against the phone's, if any has.
pub fn learnt_clock() -> Option<Offset> {
    CLOCK.get()
}

/// Starts from what an earlier session learnt (kept on the device).
pub fn remember_clock(offset: Offset) {
    CLOCK.set(Some(offset));
}

fn at_ms(ms: f64) -> Option<time::OffsetDateTime> {
    if !ms.is_finite() {
        return None;
    }
    time::OffsetDateTime::from_unix_timestamp_nanos((ms * 1_000_000.0) as i128).ok()
}

/// Learns the clock offset from the server's time `server_ms`, read between `sent_ms` and
/// `received_ms` on the phone's clock.
fn learn_clock(sent_ms: f64, received_ms: f64, server_ms: f64) {
    let times = (at_ms(sent_ms), at_ms(received_ms), at_ms(server_ms));
    if let (Some(sent), Some(received), Some(server)) = times
        && let Some(learnt) = Offset::learn(sent, received, server)
    {
        CLOCK.set(Some(CLOCK.get().map_or(learnt, |known| known.updated(learnt))));
    }
}

/// When a request left and its answer came back, on the phone's clock, in milliseconds.
struct Timing {
    sent_ms: f64,
    received_ms: f64,
}

/// How long a request may take, answer included, before it is given up as offline: a stalled
/// connection must never hold the outbox (the next try goes out on its own schedule).
const REQUEST_TIMEOUT_MS: u32 = 20_000;

/// POSTs a body and answers the browser's parsed JSON answer as [`Fields`].
async fn post(url: &str, headers: &[(&str, &str)], body: JsValue) -> Result<Fields, ApiError> {
    exchange(url, headers, &body).await.map(|(answer, _)| Fields(answer))
}

/// The request itself, sorting failures the way the sync loop acts on them. Not generic: one
/// copy of the fetch and its state machine serves every call (the shell's budget).
/// Every answer's `Date` header (whole seconds, so taken as the middle of its second) teaches
/// the clock offset, whatever the status.
async fn exchange(url: &str, headers: &[(&str, &str)], body: &JsValue) -> Result<(JsValue, Timing), ApiError> {
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
    // Aborts the request and the reading of its answer alike (where the browser has
    // `AbortSignal.timeout`: Chromium 103, Safari 16, Firefox 100; elsewhere no timeout).
    let abort_signal = js_sys::Reflect::get(&js_sys::global(), &"AbortSignal".into()).unwrap_or_default();
    if !abort_signal.is_undefined() && js_sys::Reflect::has(&abort_signal, &"timeout".into()).unwrap_or(false) {
        init.set_signal(Some(&web_sys::AbortSignal::timeout_with_u32(REQUEST_TIMEOUT_MS)));
    }
    let window = web_sys::window().ok_or(ApiError::Offline)?;
    let sent_ms = js_sys::Date::now();
    let answer = JsFuture::from(window.fetch_with_str_and_init(url, &init)).await.map_err(|_| ApiError::Offline)?;
    let timing = Timing { sent_ms, received_ms: js_sys::Date::now() };
    let response: web_sys::Response = answer.dyn_into().map_err(|_| ApiError::Server)?;
    if let Ok(Some(date)) = response.headers().get("date") {
        learn_clock(timing.sent_ms, timing.received_ms, js_sys::Date::parse(&date) + 500.0);
    }
    match response.status() {
        200 => {
            let json = response.json().map_err(|_| ApiError::Server)?;
            JsFuture::from(json).await.map(|answer| (answer, timing)).map_err(|_| ApiError::Server)
        }
        429 | 503 => Err(ApiError::RetryAfter(retry_after(&response))),
        400..=499 => Err(ApiError::Refused),
        _ => Err(ApiError::Server),
    }
}

/// A verified meter: what the server knows of it, and this device's token for it.
pub async fn verify(request: &VerifyRequest, lang: &str) -> Result<(MeterInfo, String), ApiError> {
    let answer = post("/api/v1/meters/verify", &[("accept-language", lang)], to_js(request)?).await?;
    let meter = answer.object("meter").and_then(|m| js::meter_info(&m));
    meter.zip(answer.text("device_token")).ok_or(ApiError::Server)
}

/// What a sync answered: one outcome per submission, and the meters' fresh baselines.
pub struct Synced {
    pub outcomes: Vec<Outcome>,
    pub meters: Vec<MeterInfo>,
}

/// Sends declarations; one result per submission, in order. An answer that cannot be read is a
/// server error: every item stays queued. Its `server_time` (to the millisecond) refines the
/// clock offset the `Date` header gave.
pub async fn sync(request: &SyncRequest, token: Option<&str>, lang: &str) -> Result<Synced, ApiError> {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("accept-language", lang)];
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    let (answer, timing) = exchange("/api/v1/sync", &headers, &to_js(request)?).await?;
    let answer = Fields(answer);
    if let Some(server) = answer.text("server_time") {
        learn_clock(timing.sent_ms, timing.received_ms, js_sys::Date::parse(&server));
    }
    let results = answer.list("results").ok_or(ApiError::Server)?;
    let outcomes = results.iter().map(js::outcome).collect::<Option<Vec<_>>>().ok_or(ApiError::Server)?;
    // A baseline that cannot be read is left out: the phone keeps the one it had.
    let meters = answer.list("meters").unwrap_or_default().iter().filter_map(js::meter_info).collect();
    Ok(Synced { outcomes, meters })
}

/// A reviewer's decision as the app keeps it (see `shared::wire::ReviewUpdate`).
pub struct Decided {
    pub id: uuid::Uuid,
    pub accepted: bool,
    pub reason: Option<String>,
}

/// Staff's answer to a complaint (see `shared::wire::ComplaintAnswer`).
pub struct Answered {
    pub id: uuid::Uuid,
    pub answer: String,
}

/// What became of a complaint sent (see `shared::wire::ComplaintResult`).
pub struct Filed {
    pub id: uuid::Uuid,
    pub received: bool,
    pub message: Option<String>,
    pub number: Option<String>,
}

/// Asks what staff decided about held declarations and answered to complaints. An item that
/// cannot be read is left out, and asked about again at the next sync.
pub async fn updates(request: &UpdatesRequest) -> Result<(Vec<Decided>, Vec<Answered>), ApiError> {
    let answer = post("/api/v1/updates", &[], to_js(request)?).await?;
    let (decisions, answers) = answer.list("decisions").zip(answer.list("answers")).ok_or(ApiError::Server)?;
    let decided = decisions.iter().filter_map(|f| {
        Some(Decided { id: f.uuid("id")?, accepted: f.text("status")? == "accepted", reason: f.text("reason") })
    });
    let answered = answers.iter().filter_map(|f| Some(Answered { id: f.uuid("id")?, answer: f.text("answer")? }));
    Ok((decided.collect(), answered.collect()))
}

/// Sends complaints; one result per complaint, in order.
pub async fn complaints(request: &ComplaintsRequest, lang: &str) -> Result<Vec<Filed>, ApiError> {
    let answer = post("/api/v1/complaints", &[("accept-language", lang)], to_js(request)?).await?;
    let results = answer.list("results").ok_or(ApiError::Server)?;
    let filed = results.iter().map(|f| {
        Some(Filed {
            id: f.uuid("id")?,
            received: f.text("status")? == "received",
            message: f.text("message"),
            number: f.text("complaint_number"),
        })
    });
    filed.collect::<Option<Vec<_>>>().ok_or(ApiError::Server)
}

/// What sending a meter photo came to.
pub enum PhotoSent {
    /// The server has it (stored now, or before).
    Kept,
    /// Its declaration has not reached the server yet: the photo waits.
    NotYet,
    /// Refused for good (not a picture the server takes, or another photo is there).
    Refused,
}

/// Sends a declaration's photo on a request of its own; the same bytes again are a replay.
pub async fn put_photo(id: uuid::Uuid, blob: &web_sys::Blob) -> Result<PhotoSent, ApiError> {
    let headers = web_sys::Headers::new().map_err(|_| ApiError::Server)?;
    headers.set("content-type", "image/jpeg").map_err(|_| ApiError::Server)?;
    let init = web_sys::RequestInit::new();
    init.set_method("PUT");
    init.set_headers(&headers);
    init.set_body(blob);
    let window = web_sys::window().ok_or(ApiError::Offline)?;
    let url = format!("/api/v1/declarations/{id}/photo");
    let answer = JsFuture::from(window.fetch_with_str_and_init(&url, &init)).await.map_err(|_| ApiError::Offline)?;
    let response: web_sys::Response = answer.dyn_into().map_err(|_| ApiError::Server)?;
    match response.status() {
        200 | 201 => Ok(PhotoSent::Kept),
        404 => Ok(PhotoSent::NotYet),
        429 | 503 => Err(ApiError::RetryAfter(retry_after(&response))),
        400..=499 => Ok(PhotoSent::Refused),
        _ => Err(ApiError::Server),
    }
}

/// Shrinks a picture to a JPEG of at most `budget` bytes (public/photo.js, loaded the first time).
pub async fn shrink(file: &web_sys::Blob, budget: u32) -> Option<web_sys::Blob> {
    let window = web_sys::window()?;
    let shrink: js_sys::Function = js_sys::Reflect::get(&window, &"kontorShrink".into()).ok()?.dyn_into().ok()?;
    let promise: js_sys::Promise = shrink.call2(&window, file, &budget.into()).ok()?.dyn_into().ok()?;
    JsFuture::from(promise).await.ok()?.dyn_into().ok()
}
