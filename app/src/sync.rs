//! The sync loop: declarations, then complaints, then the news about both (reviewers' decisions,
//! staff answers). One sync at a time, across tabs too (a Web Lock where the browser has them);
//! at start, when the network returns, when the app becomes visible, every so often with backoff,
//! and on "send now". Network errors and 5xx keep items queued; 429 and 503 wait for
//! `Retry-After`.

use leptos::prelude::*;
use shared::Lang;
use shared::clock::Offset;
use shared::outbox::{answered, next_batch, replace_by_id};
use shared::wire::{ComplaintsRequest, SyncRequest, UpdatesRequest, VerifyRequest};
use uuid::Uuid;

use crate::api::{self, ApiError};
use crate::model::{Complaint, Declaration, Meter};
use crate::outbox;

/// Everything the screens and the sync loop share.
#[derive(Clone, Copy)]
pub struct AppState {
    pub lang: RwSignal<Lang>,
    pub meters: RwSignal<Vec<Meter>>,
    pub declarations: RwSignal<Vec<Declaration>>,
    pub complaints: RwSignal<Vec<Complaint>>,
    pub syncing: RwSignal<bool>,
    pub last_sync: RwSignal<Option<time::OffsetDateTime>>,
    pub online: RwSignal<bool>,
    /// Seconds to wait before the next automatic attempt (grows while the server is away).
    pub backoff: RwSignal<u32>,
    /// The declare form's meter and reading, so that "correct and send again" can fill it.
    pub form_meter: RwSignal<String>,
    pub form_reading: RwSignal<String>,
    /// The complaint form's tracking code, so that "dispute" on a declaration can fill it.
    pub form_about: RwSignal<String>,
    pub form_complaint_meter: RwSignal<String>,
    /// Whether the browser promised to keep this app's storage.
    pub persistent: RwSignal<Option<bool>>,
    /// How far the server's clock is from the phone's, once an answer has told.
    pub clock: RwSignal<Option<Offset>>,
    /// The screen on show (`location.hash` follows it, so the back button works).
    pub screen: RwSignal<crate::ui::Screen>,
    /// The declaration saved last on the declare screen: its outcome card follows it.
    pub last_saved: RwSignal<Option<Uuid>>,
    /// The complaint form's subject, so that "dispute" on a declaration can set it.
    pub form_kind: RwSignal<shared::wire::ComplaintKind>,
    /// The answered declaration the declare form is correcting, if any.
    pub form_corrects: RwSignal<Option<Uuid>>,
    /// The meter photos on this phone: declaration, a URL to show it, its size, whether sent.
    pub photos: RwSignal<Vec<PhotoShown>>,
    /// The declaration saved last, when the phone's own check said it will be held for review:
    /// its card asks for a photo before the server has answered.
    pub expects_review: RwSignal<Option<Uuid>>,
}

/// A meter photo as the screen shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PhotoShown {
    pub id: Uuid,
    /// A `blob:` URL of the kept picture.
    pub url: String,
    pub bytes: u32,
    pub sent: bool,
}

impl PhotoShown {
    pub fn of(photo: &outbox::Photo) -> Self {
        Self {
            id: photo.id,
            url: web_sys::Url::create_object_url_with_blob(&photo.blob).unwrap_or_default(),
            bytes: photo.blob.size() as u32,
            sent: photo.sent,
        }
    }
}

/// Shows the photos kept on the phone (at start).
pub async fn load_photos(state: AppState) {
    if let Ok(photos) = outbox::photos().await {
        state.photos.set(photos.iter().map(PhotoShown::of).collect());
    }
}

/// Sends the photos whose declarations the server has answered; one not wanted yet waits.
async fn send_photos(state: AppState) -> Result<(), ApiError> {
    let Ok(photos) = outbox::photos().await else { return Ok(()) };
    let declarations = state.declarations.get_untracked();
    for photo in photos.into_iter().filter(|p| !p.sent) {
        // A reading taken back before it was sent has nothing on the server to go with.
        let answered = declarations.iter().any(|d| d.id == photo.id && d.answered());
        if !answered {
            continue;
        }
        match api::put_photo(photo.id, &photo.blob).await? {
            api::PhotoSent::NotYet => continue,
            api::PhotoSent::Kept | api::PhotoSent::Refused => {
                let sent = outbox::Photo { sent: true, ..photo };
                if outbox::save_photo(&sent).await.is_ok() {
                    state.photos.update(|all| {
                        if let Some(shown) = all.iter_mut().find(|p| p.id == sent.id) {
                            shown.sent = true;
                        }
                    });
                }
            }
        }
    }
    Ok(())
}

/// The offset to date readings with: what the server's answers taught, or none.
pub fn clock(state: AppState) -> Offset {
    state.clock.get_untracked().unwrap_or_default()
}

/// The offset an earlier session learnt, kept on the device.
pub fn saved_clock() -> Option<Offset> {
    let ms: i64 = local_storage()?.get_item("kontor.clock_offset_ms").ok()??.parse().ok()?;
    let offset = Offset(time::Duration::milliseconds(ms));
    crate::api::remember_clock(offset);
    Some(offset)
}

/// Takes what the latest answer taught of the server's clock: on screen, and kept.
fn note_clock(state: AppState) {
    let Some(offset) = crate::api::learnt_clock() else { return };
    if state.clock.get_untracked() == Some(offset) {
        return;
    }
    state.clock.set(Some(offset));
    if let Some(s) = local_storage() {
        let _ = s.set_item("kontor.clock_offset_ms", &crate::model::offset_ms(offset).to_string());
    }
}

pub fn now() -> time::OffsetDateTime {
    let nanos = (js_sys::Date::now() * 1_000_000.0) as i128;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// This device's id, made once and kept.
pub fn device_id() -> Uuid {
    let storage = local_storage();
    if let Some(id) = storage.as_ref().and_then(|s| s.get_item("kontor.device_id").ok()?).and_then(|s| s.parse().ok()) {
        return id;
    }
    let id = Uuid::now_v7();
    if let Some(s) = storage {
        let _ = s.set_item("kontor.device_id", &id.to_string());
    }
    id
}

pub fn saved_lang() -> Lang {
    match local_storage().and_then(|s| s.get_item("kontor.lang").ok()?) {
        Some(l) if l == "en" => Lang::En,
        _ => Lang::Fa,
    }
}

pub fn save_lang(lang: Lang) {
    if let Some(s) = local_storage() {
        let _ = s.set_item("kontor.lang", if lang == Lang::En { "en" } else { "fa" });
    }
}

/// Asks the browser to keep this app's storage, and answers whether it is persistent.
pub async fn persistent_storage() -> bool {
    let Some(window) = web_sys::window() else { return false };
    let storage = window.navigator().storage();
    let asked = match storage.persist() {
        Ok(promise) => wasm_bindgen_futures::JsFuture::from(promise).await.ok(),
        Err(_) => None,
    };
    if asked.and_then(|v| v.as_bool()) == Some(true) {
        return true;
    }
    match storage.persisted() {
        Ok(promise) => {
            wasm_bindgen_futures::JsFuture::from(promise).await.ok().and_then(|v| v.as_bool()).unwrap_or(false)
        }
        Err(_) => false,
    }
}

/// An iPhone or iPad browser tab, where there is no install prompt.
pub fn ios_tab() -> bool {
    let Some(window) = web_sys::window() else { return false };
    let agent = window.navigator().user_agent().unwrap_or_default();
    let standalone = js_sys::Reflect::get(&window.navigator(), &"standalone".into()).ok().and_then(|v| v.as_bool());
    (agent.contains("iPhone") || agent.contains("iPad")) && standalone != Some(true)
}

/// When the last sync succeeded, kept across reloads.
pub fn saved_last_sync() -> Option<time::OffsetDateTime> {
    let ms: i64 = local_storage()?.get_item("kontor.last_sync_ms").ok()??.parse().ok()?;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

fn save_last_sync(at: time::OffsetDateTime) {
    if let Some(s) = local_storage() {
        let _ = s.set_item("kontor.last_sync_ms", &((at.unix_timestamp_nanos() / 1_000_000) as i64).to_string());
    }
}

pub fn lang_tag(lang: Lang) -> &'static str {
    if lang == Lang::En { "en" } else { "fa" }
}

/// Verifies a meter online; answers whether the pair was refused.
pub async fn verify_meter(state: AppState, meter: Meter) -> Result<Meter, ApiError> {
    let request = VerifyRequest {
        subscription: meter.subscription.clone(),
        meter_serial: meter.meter_serial.clone(),
        device_id: device_id(),
    };
    let verified = api::verify(&request, lang_tag(state.lang.get_untracked())).await;
    note_clock(state);
    let (info, token) = verified?;
    Ok(Meter { info: Some(info), device_token: Some(token), ..meter })
}

/// Sends what is waiting, once; does nothing while another sync runs, in this tab or another.
pub async fn sync_once(state: AppState) {
    if state.syncing.get_untracked() {
        return;
    }
    state.syncing.set(true);
    let result = match with_sync_lock(state).await {
        Some(result) => result,
        // Another tab holds the lock and is sending the same outbox.
        None => Ok(()),
    };
    state.syncing.set(false);
    note_clock(state);
    match result {
        Ok(()) => {
            state.online.set(true);
            state.backoff.set(0);
        }
        Err(ApiError::RetryAfter(seconds)) => state.backoff.set(seconds),
        Err(_) => {
            state.online.set(false);
            state.backoff.update(|b| *b = (*b * 2).clamp(5, 300));
        }
    }
}

/// The outcome of a sync that ran under this origin's `kontor-sync` Web Lock, or `None` when
/// another tab held it. Where the browser has no Web Locks, the sync runs unguarded: replays are
/// answered with their first outcome, so two tabs sending at once cost bandwidth, not data.
async fn with_sync_lock(state: AppState) -> Option<Result<(), ApiError>> {
    use wasm_bindgen::{JsCast as _, JsValue};
    let navigator = web_sys::window()?.navigator();
    let locks = js_sys::Reflect::get(&navigator, &"locks".into()).ok().filter(|l| l.is_object());
    let request = locks
        .as_ref()
        .and_then(|l| js_sys::Reflect::get(l, &"request".into()).ok())
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
    let (Some(locks), Some(request)) = (locks, request) else {
        return Some(send_with_fresh_outbox(state).await);
    };
    let outcome = std::rc::Rc::new(std::cell::Cell::new(None));
    let slot = outcome.clone();
    let granted = wasm_bindgen::closure::Closure::once_into_js(move |lock: JsValue| -> js_sys::Promise {
        if lock.is_null() {
            return js_sys::Promise::resolve(&JsValue::FALSE);
        }
        wasm_bindgen_futures::future_to_promise(async move {
            slot.set(Some(send_with_fresh_outbox(state).await));
            Ok(JsValue::TRUE)
        })
    });
    let options = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&options, &"ifAvailable".into(), &JsValue::TRUE);
    let promise = request.call3(&locks, &"kontor-sync".into(), &options, &granted).ok()?;
    let _ = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::resolve(&promise)).await;
    outcome.take()
}

/// Sends what is waiting after reading the outbox again: another tab may have sent some of it,
/// or saved more, since this tab last looked.
/// Items on screen that the read did not see (saved while it ran) are kept: nothing is ever
/// deleted from the outbox, so what the screen has and the device lacks can only be newer.
async fn send_with_fresh_outbox(state: AppState) -> Result<(), ApiError> {
    if let Ok(mut stored) = outbox::declarations().await {
        let shown = state.declarations.get_untracked();
        stored.extend(shown.into_iter().filter(|d| !stored.iter().any(|s| s.id == d.id)).collect::<Vec<_>>());
        crate::model::newest_first(&mut stored);
        state.declarations.set(stored);
    }
    if let Ok(mut stored) = outbox::complaints().await {
        let shown = state.complaints.get_untracked();
        stored.extend(shown.into_iter().filter(|c| !stored.iter().any(|s| s.id == c.id)).collect::<Vec<_>>());
        crate::model::newest_first_complaints(&mut stored);
        state.complaints.set(stored);
    }
    send_waiting(state).await
}

async fn send_waiting(state: AppState) -> Result<(), ApiError> {
    // Meters added offline are verified at their first sync.
    for meter in state.meters.get_untracked().into_iter().filter(|m| m.info.is_none()) {
        if let Ok(verified) = verify_meter(state, meter).await {
            let _ = outbox::save_meter(&verified).await;
            state.meters.update(|ms| {
                if let Some(m) = ms.iter_mut().find(|m| m.subscription == verified.subscription) {
                    *m = verified.clone();
                }
            });
        }
    }
    loop {
        let batch = next_batch(&state.declarations.get_untracked(), shared::wire::MAX_BATCH);
        if batch.is_empty() {
            send_complaints(state).await?;
            send_photos(state).await?;
            learn_updates(state).await;
            return Ok(());
        }
        let request =
            SyncRequest { device_id: device_id(), submissions: batch.iter().map(Declaration::submission).collect() };
        // The token of the first item's meter: it covers that meter's items; the server checks
        // the others by their serials.
        let meters = state.meters.get_untracked();
        let token = batch
            .first()
            .and_then(|d| meters.iter().find(|m| m.subscription == d.subscription))
            .and_then(|m| m.device_token.clone());
        let synced = api::sync(&request, token.as_deref(), lang_tag(state.lang.get_untracked())).await?;
        let results = synced.outcomes;
        let mut updated: Vec<Declaration> =
            answered(&batch, &results, |r| r.id).map(|(d, r)| d.with_result(r)).collect();
        let settled = updated.len();
        // A correction the server took in place of an earlier reading: that one no longer counts.
        let all = state.declarations.get_untracked();
        for result in &results {
            if let (Some(by), Some(earlier)) = (result.id, result.supersedes)
                && let Some(d) = all.iter().find(|d| d.id == earlier)
            {
                updated.push(Declaration { replaced_by: Some(by), ..d.clone() });
            }
        }
        take_baselines(state, &synced.meters).await;
        // The outcome is on the device before the item leaves the queue.
        if outbox::save_declarations(&updated).await.is_err() {
            return Err(ApiError::Server);
        }
        state.declarations.update(|all| replace_by_id(all, &updated));
        state.last_sync.set(Some(now()));
        save_last_sync(now());
        if settled < batch.len() {
            return Err(ApiError::Server);
        }
    }
}

/// Keeps the meters' fresh baselines from a sync answer, so that the next readings are checked
/// offline against the latest chain. A baseline the device cannot store is still used on screen
/// until the app is reloaded.
async fn take_baselines(state: AppState, baselines: &[shared::wire::MeterInfo]) {
    let meters = state.meters.get_untracked();
    let fresher: Vec<Meter> = baselines
        .iter()
        .filter_map(|info| {
            let meter = meters.iter().find(|m| m.subscription == info.subscription)?;
            (meter.info.as_ref() != Some(info)).then(|| meter.with_baseline(info))
        })
        .collect();
    for meter in &fresher {
        let _ = outbox::save_meter(meter).await;
    }
    if !fresher.is_empty() {
        state.meters.update(|all| {
            for meter in all.iter_mut() {
                if let Some(fresh) = fresher.iter().find(|f| f.subscription == meter.subscription) {
                    *meter = fresh.clone();
                }
            }
        });
    }
}

/// Sends the waiting complaints, and keeps what became of each before it leaves the queue.
async fn send_complaints(state: AppState) -> Result<(), ApiError> {
    loop {
        let batch = next_batch(&state.complaints.get_untracked(), shared::wire::MAX_COMPLAINTS);
        if batch.is_empty() {
            return Ok(());
        }
        let meters = state.meters.get_untracked();
        let complaints = batch.iter().map(|c| c.submission(&meters)).collect();
        let request = ComplaintsRequest { device_id: device_id(), complaints };
        let results = api::complaints(&request, lang_tag(state.lang.get_untracked())).await?;
        let updated: Vec<Complaint> = answered(&batch, &results, |r| Some(r.id))
            .map(|(c, r)| Complaint {
                received: Some(r.received),
                message: r.message.clone(),
                number: r.number.clone(),
                ..c.clone()
            })
            .collect();
        if outbox::save_complaints(&updated).await.is_err() {
            return Err(ApiError::Server);
        }
        state.complaints.update(|all| replace_by_id(all, &updated));
        if updated.len() < batch.len() {
            return Err(ApiError::Server);
        }
    }
}

/// Asks what staff decided about the declarations held for review and answered to the
/// complaints, and keeps the news. Best effort: without an answer, the next sync asks again.
async fn learn_updates(state: AppState) {
    let held = crate::model::awaiting_review(&state.declarations.get_untracked());
    let open = crate::model::awaiting_answer(&state.complaints.get_untracked());
    if held.is_empty() && open.is_empty() {
        return;
    }
    let request = UpdatesRequest { device_id: device_id(), declarations: held, complaints: open };
    let Ok((decided, answered)) = api::updates(&request).await else { return };
    let updated: Vec<Declaration> = state
        .declarations
        .get_untracked()
        .iter()
        .filter_map(|d| decided.iter().find(|u| u.id == d.id).map(|u| d.with_review(u)))
        .collect();
    if !updated.is_empty() && outbox::save_declarations(&updated).await.is_ok() {
        state.declarations.update(|all| replace_by_id(all, &updated));
    }
    let updated: Vec<Complaint> = state
        .complaints
        .get_untracked()
        .iter()
        .filter_map(|c| {
            answered.iter().find(|a| a.id == c.id).map(|a| Complaint { answer: Some(a.answer.clone()), ..c.clone() })
        })
        .collect();
    if !updated.is_empty() && outbox::save_complaints(&updated).await.is_ok() {
        state.complaints.update(|all| replace_by_id(all, &updated));
    }
}
