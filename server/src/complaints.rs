//! Complaints and disputes over the API (`POST /api/v1/complaints`, queued offline by the web app
//! like declarations), and the news a client asks for afterwards (`POST /api/v1/updates`:
//! reviewers' decisions on its held declarations, staff answers to its complaints).
//!
//! A complaint over the API must prove its meter as a declaration does: the meter's serial, or the
//! device token that verify issued for the subscription. Without that proof it is refused as
//! `identity_mismatch`, whether or not the subscription exists, and the failure counts against
//! the identity limits (per subscription and per client), which are checked first. A proven
//! complaint is checked where a person can fix it (a tracking code whose check digit holds and
//! that names one of that subscription's declarations, a text of sensible length) and stored once
//! per client-made id; it gets a complaint number of its own.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use shared::wire::{
    ApiErrorCode, ComplaintCode, ComplaintResult, ComplaintStatus, ComplaintSubmission, ComplaintsRequest,
    ComplaintsResponse, ErrorBody, MAX_COMPLAINTS, MAX_UPDATE_IDS, UpdatesRequest, UpdatesResponse,
};
use shared::{ComplaintNumber, Lang, MeterSerial, Receipt, SubscriptionNumber, TrackingCode};
use time::OffsetDateTime;

use crate::AppState;
use crate::http::{ApiError, HeadersAndBody, bearer_token, json_body, refused};
use crate::limits::{Claims, Key};
use crate::store::{Channel, Filed, Identity, NewComplaint, Proof, Staff, Store, StoreError};

/// Checks a complaint against the registry and the store; the complaint to file, or why not.
pub async fn check(
    store: &dyn Store,
    submission: &ComplaintSubmission,
    channel: Channel,
    device_id: Option<uuid::Uuid>,
    staff: Option<Staff>,
) -> Result<Result<NewComplaint, ComplaintCode>, StoreError> {
    let Some(subscription) = SubscriptionNumber::parse(&submission.subscription).ok() else {
        return Ok(Err(ComplaintCode::UnknownSubscription));
    };
    if store.meter(&subscription).await?.is_none() {
        return Ok(Err(ComplaintCode::UnknownSubscription));
    }
    // A tracking code, or the receipt the phone showed before there was one.
    let about_seq = match submission.about.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        None => None,
        Some(code) => {
            let declaration = match (TrackingCode::parse(code).and_then(|c| c.sequence()), Receipt::parse(code)) {
                (Some(seq), _) => store.declaration(seq).await?,
                (None, Some(receipt)) => crate::store::by_receipt(store, &subscription, &receipt).await?,
                (None, None) => None,
            };
            match declaration {
                Some(d) if d.subscription == subscription.as_str() => Some(d.seq),
                _ => return Ok(Err(ComplaintCode::TrackingCodeInvalid)),
            }
        }
    };
    let text = match shared::wire::complaint_text(&submission.text) {
        Ok(text) => text,
        Err(code) => return Ok(Err(code)),
    };
    Ok(Ok(NewComplaint {
        id: submission.id,
        channel,
        device_id,
        subscription: subscription.to_string(),
        kind: submission.kind,
        about_seq,
        text: text.to_owned(),
        made_at: submission.made_at,
        staff,
    }))
}

/// The message for a received complaint.
pub fn received_message(lang: Lang) -> &'static str {
    match lang {
        Lang::Fa => "شکایت شما ثبت شد؛ پاسخ کارشناس در همین برنامه نمایش داده می‌شود.",
        Lang::En => "Your complaint is recorded; staff's answer will appear here.",
    }
}

fn result(id: uuid::Uuid, filed: Result<Filed, ComplaintCode>, lang: Lang) -> ComplaintResult {
    let rejected = |code: ComplaintCode| ComplaintResult {
        id,
        status: ComplaintStatus::Rejected,
        code: Some(code),
        message: code.message(lang).to_owned(),
        complaint_number: None,
        replayed: false,
    };
    let (seq, replayed) = match filed {
        Ok(Filed::New(seq)) => (seq, false),
        Ok(Filed::Replayed(seq)) => (seq, true),
        Ok(Filed::Conflict) => return rejected(ComplaintCode::IdConflict),
        Err(code) => return rejected(code),
    };
    ComplaintResult {
        id,
        status: ComplaintStatus::Received,
        code: None,
        message: received_message(lang).to_owned(),
        complaint_number: ComplaintNumber::from_sequence(seq).map(|n| n.to_string()),
        replayed,
    }
}

/// Files complaints; answers one result per complaint, in request order.
#[utoipa::path(post, path = "/api/v1/complaints", request_body = ComplaintsRequest, responses(
    (status = 200, description = "One result per complaint, in request order", body = ComplaintsResponse),
    (status = 400, description = "Not JSON, not the shape above, or not 1 to 50 complaints", body = ErrorBody),
    (status = 415, description = "Not `application/json`", body = ErrorBody),
    (status = 429, description = "Too many identity failures; see `Retry-After`", body = ErrorBody),
    (status = 503, description = "The database is unavailable: keep them queued", body = ErrorBody),
))]
pub async fn file(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    HeadersAndBody { headers, body }: HeadersAndBody,
) -> Result<Json<ComplaintsResponse>, ApiError> {
    let (lang, body) = json_body(&headers, body)?;
    let request: ComplaintsRequest = serde_json::from_slice(&body).map_err(|_| ApiError::envelope(&body, lang))?;
    if request.complaints.is_empty() || request.complaints.len() > MAX_COMPLAINTS {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, ApiErrorCode::BatchSize, lang));
    }
    let store = state.store.as_ref();
    let now = OffsetDateTime::now_utc();
    let client = Key::Client(crate::http::client_ip(&state, peer, &headers));
    let subscriptions: Vec<Option<SubscriptionNumber>> =
        request.complaints.iter().map(|c| SubscriptionNumber::parse(&c.subscription).ok()).collect();
    // A device token covers the subscription it was issued for.
    let covered = match bearer_token(&headers) {
        Some(token) => store
            .device_subscription(&crate::tokens::token_hash(token))
            .await
            .map_err(|e| ApiError::from_store(&e, lang))?,
        None => None,
    };
    let by_token = |subscription: &Option<SubscriptionNumber>| matches!((subscription, &covered), (Some(s), Some(c)) if s.as_str() == c.as_str());
    // The identity limits, as for declarations: a try for each meter the complaints claim by a
    // serial (or by nothing), reserved before any is judged; the token's complaints claim none.
    let mut claims = Claims::default();
    for (submission, subscription) in request.complaints.iter().zip(&subscriptions).filter(|(_, s)| !by_token(s)) {
        let serial = submission.meter_serial.as_deref().unwrap_or("");
        let named = subscription.as_ref().map_or(submission.subscription.as_str(), SubscriptionNumber::as_str);
        claims.claim(named, subscription.is_some(), serial);
    }
    let mut tries = state.limiter.reserve(&claims.tries(&client)).await.map_err(|r| refused(r, lang))?;
    let mut failed = Claims::default();
    let mut results = Vec::with_capacity(request.complaints.len());
    for (submission, subscription) in request.complaints.iter().zip(&subscriptions) {
        let meter = match subscription {
            Some(subscription) => store.meter(subscription).await.map_err(|e| ApiError::from_store(&e, lang))?,
            None => None,
        };
        // The proof a sync item gives, judged by the same rule.
        let proof = if by_token(subscription) {
            Proof::Device
        } else {
            Proof::Serial(submission.meter_serial.as_deref().and_then(|s| MeterSerial::parse(s).ok()))
        };
        let proven = meter.is_some_and(|m| proof.identifies(&m) == Identity::Verified);
        if !proven {
            let serial = submission.meter_serial.as_deref().unwrap_or("");
            let named = subscription.as_ref().map_or(submission.subscription.as_str(), SubscriptionNumber::as_str);
            failed.claim(named, subscription.is_some(), serial);
            results.push(result(submission.id, Err(ComplaintCode::IdentityMismatch), lang));
            continue;
        }
        let checked = check(store, submission, Channel::App, Some(request.device_id), None)
            .await
            .map_err(|e| ApiError::from_store(&e, lang))?;
        let filed = match checked {
            Ok(complaint) => {
                Ok(store.file_complaint(&complaint, now).await.map_err(|e| ApiError::from_store(&e, lang))?)
            }
            Err(code) => Err(code),
        };
        results.push(result(submission.id, filed, lang));
    }
    // Each meter claimed wrongly is one failure, however many complaints claimed it.
    tries.failed_claims(&client, &failed).await;
    drop(tries);
    Ok(Json(ComplaintsResponse { results }))
}

/// What staff did about the declarations and complaints a client holds: the decisions on the
/// ones that were held for review, the answers to the ones that were received.
#[utoipa::path(post, path = "/api/v1/updates", request_body = UpdatesRequest, responses(
    (status = 200, description = "Only the items that have news", body = UpdatesResponse),
    (status = 400, description = "Not JSON, not the shape above, or more than 500 ids of a kind", body = ErrorBody),
    (status = 415, description = "Not `application/json`", body = ErrorBody),
    (status = 503, description = "The database is unavailable: ask again later", body = ErrorBody),
))]
pub async fn updates(
    State(state): State<AppState>,
    HeadersAndBody { headers, body }: HeadersAndBody,
) -> Result<Json<UpdatesResponse>, ApiError> {
    let (lang, body) = json_body(&headers, body)?;
    let request: UpdatesRequest = serde_json::from_slice(&body).map_err(|_| ApiError::envelope(&body, lang))?;
    if request.declarations.len() > MAX_UPDATE_IDS || request.complaints.len() > MAX_UPDATE_IDS {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, ApiErrorCode::BatchSize, lang));
    }
    let (decisions, answers) = state
        .store
        .updates(&request.declarations, &request.complaints)
        .await
        .map_err(|e| ApiError::from_store(&e, lang))?;
    Ok(Json(UpdatesResponse { decisions, answers }))
}
