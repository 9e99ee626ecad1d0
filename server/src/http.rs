//! The HTTP API: routes, handlers and their errors (sync API v1, `sync-api.md`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::value::RawValue;
use shared::codes::accepted_message;
use shared::wire::{
    self, ApiErrorCode, ErrorBody, MAX_BATCH, MAX_BODY_BYTES, Submission, SyncResponse, SyncResult, VerifyRequest,
    VerifyResponse,
};
use shared::{Code, Lang, MeterSerial, Status, SubscriptionNumber, TrackingCode, digits};
use time::OffsetDateTime;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::TraceLayer;
use uuid::Uuid;

use crate::AppState;
use crate::limits::{Key, Refused};
use crate::store::{Channel, Incoming, Outcome, Proof};
use crate::writer::WriteError;

/// Builds the application's routes.
pub fn router(state: AppState) -> axum::Router {
    let mut router = axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/meters/verify", post(verify))
        .route("/api/v1/sync", post(sync))
        .route("/api/v1/sms/inbound", post(crate::sms::inbound))
        .route("/api/v1/billing/readings", get(crate::billing::readings))
        .route("/api/v1/complaints", post(crate::complaints::file))
        .route("/api/v1/updates", post(crate::complaints::updates));
    router = crate::console::routes(router);
    if let Some(root) = state.web_root.as_ref().filter(|root| root.is_dir()) {
        // The built web app. No fallback to index.html: a missing `.wasm` must be a 404, never
        // HTML that a service worker would cache under the wrong name.
        router = router
            .route("/pwa", get(|| async { axum::response::Redirect::permanent("/pwa/") }))
            .nest_service("/pwa/", tower_http::services::ServeDir::new(root));
    }
    router
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // A body that stops arriving (a client gone, or a slowloris) is cut off after 10 s of
        // silence and answered 400, rather than holding its connection to the 30 s limit.
        .layer(RequestBodyTimeoutLayer::new(BODY_SILENCE))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30)))
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// How long a request body may fall silent before the request is refused.
const BODY_SILENCE: Duration = Duration::from_secs(10);

/// A refused request: a status, a stable code and a message in the request's language.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ApiErrorCode,
    lang: Lang,
    retry_after: Option<Duration>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: ApiErrorCode, lang: Lang) -> Self {
        Self { status, code, lang, retry_after: None }
    }

    fn rate_limited(lang: Lang, wait: Duration) -> Self {
        Self { retry_after: Some(wait), ..Self::new(StatusCode::TOO_MANY_REQUESTS, ApiErrorCode::RateLimited, lang) }
    }

    pub(crate) fn from_write(err: &WriteError, lang: Lang) -> Self {
        match err {
            WriteError::Unavailable(_) | WriteError::Busy => Self {
                retry_after: Some(Duration::from_secs(5)),
                ..Self::new(StatusCode::SERVICE_UNAVAILABLE, ApiErrorCode::Unavailable, lang)
            },
            WriteError::Failed(_) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, ApiErrorCode::Internal, lang),
        }
    }

    /// A store failure, logged once here.
    pub(crate) fn from_store(err: &crate::store::StoreError, lang: Lang) -> Self {
        tracing::error!(error = %crate::writer::error_chain(err), "the store failed");
        Self::from_write(&WriteError::from(err), lang)
    }

    pub(crate) fn envelope(body: &[u8], lang: Lang) -> Self {
        envelope_error(body, lang)
    }

    pub(crate) fn from_body(rejection: &BytesRejection, lang: Lang) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(StatusCode::PAYLOAD_TOO_LARGE, ApiErrorCode::PayloadTooLarge, lang)
        } else {
            Self::new(StatusCode::BAD_REQUEST, ApiErrorCode::InvalidJson, lang)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorBody::new(self.code, self.lang))).into_response();
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

fn lang_of(headers: &HeaderMap) -> Lang {
    Lang::from_accept_language(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()))
}

fn require_json(headers: &HeaderMap, lang: Lang) -> Result<(), ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, ApiErrorCode::UnsupportedMediaType, lang))
    }
}

/// About what one result of a sync answer takes as JSON (its message in Persian included).
const ANSWER_BYTES_PER_RESULT: usize = 400;

/// `value` as a JSON response, written into a buffer of `expected` bytes to start with: axum's
/// `Json` starts at 128 bytes and grows the buffer, copying it each time, as the text is written.
fn json_answer(value: &impl serde::Serialize, expected: usize) -> Response {
    let mut text = Vec::with_capacity(expected.max(128));
    match serde_json::to_writer(&mut text, value) {
        Ok(()) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "writing an answer failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A request's headers and its body (at most the body limit), for the handlers that read both.
/// The headers are moved out of the request: axum's own `HeaderMap` extractor copies every one
/// of them, which was ~1 % of the server's time on one-declaration syncs.
pub struct HeadersAndBody {
    pub headers: HeaderMap,
    pub body: Result<Bytes, BytesRejection>,
}

impl<S: Send + Sync> FromRequest<S> for HeadersAndBody {
    type Rejection = std::convert::Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let headers = std::mem::take(&mut parts.headers);
        let body = Bytes::from_request(Request::from_parts(parts, body), state).await;
        Ok(Self { headers, body })
    }
}

/// The request's language and its body, which must be JSON and at most 1 MiB.
pub(crate) fn json_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<(Lang, Bytes), ApiError> {
    let lang = lang_of(headers);
    require_json(headers, lang)?;
    let body = body.map_err(|r| ApiError::from_body(&r, lang))?;
    Ok((lang, body))
}

/// Tells "not JSON at all" from "JSON of the wrong shape".
fn envelope_error(body: &[u8], lang: Lang) -> ApiError {
    let code = if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        ApiErrorCode::InvalidEnvelope
    } else {
        ApiErrorCode::InvalidJson
    };
    ApiError::new(StatusCode::BAD_REQUEST, code, lang)
}

async fn not_found(headers: HeaderMap) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ApiErrorCode::NotFound, lang_of(&headers))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "The process is up", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "Ready to take traffic", body = String),
    (status = 503, description = "The database does not answer", body = ErrorBody),
))]
pub async fn readyz(State(state): State<AppState>, headers: HeaderMap) -> Result<&'static str, ApiError> {
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Ok("ready"),
        _ => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ApiErrorCode::Unavailable, lang_of(&headers))),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::document_json()).into_response()
}

/// Verifies a meter while online and hands the app a device token and the meter's context.
#[utoipa::path(post, path = "/api/v1/meters/verify", request_body = VerifyRequest, responses(
    (status = 200, description = "The pair matches", body = VerifyResponse),
    (status = 400, description = "Not JSON, or not a verify request", body = ErrorBody),
    (status = 404, description = "`identity_mismatch`, whichever half was wrong", body = ErrorBody),
    (status = 415, description = "Not `application/json`", body = ErrorBody),
    (status = 429, description = "Too many failures; see `Retry-After`", body = ErrorBody),
))]
pub async fn verify(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    HeadersAndBody { headers, body }: HeadersAndBody,
) -> Result<Json<VerifyResponse>, ApiError> {
    let (lang, body) = json_body(&headers, body)?;
    let request: VerifyRequest = serde_json::from_slice(&body).map_err(|_| envelope_error(&body, lang))?;
    let client = Key::Client(peer.ip());
    let subscription = SubscriptionNumber::parse(&request.subscription);
    let sub_key = Key::Subscription(
        subscription.as_ref().map_or_else(|_| digits::normalize(&request.subscription), ToString::to_string),
    );
    state.limiter.check([&client, &sub_key]).await.map_err(|r| refused(r, lang))?;

    let serial = MeterSerial::parse(&request.meter_serial).ok();
    let meter = match &subscription {
        Ok(sub) => state.store.meter(sub).await.map_err(|e| {
            tracing::error!(error = %e, "looking up a meter failed");
            ApiError::from_write(&WriteError::from(&e), lang)
        })?,
        Err(_) => None,
    };
    let Some(meter) = meter.filter(|m| serial.as_ref() == Some(&m.meter_serial)) else {
        state.limiter.record_failure(client).await;
        state.limiter.record_failure(sub_key).await;
        return Err(ApiError::new(StatusCode::NOT_FOUND, ApiErrorCode::IdentityMismatch, lang));
    };

    let token = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    state
        .store
        .register_device(
            &crate::tokens::token_hash(&token),
            request.device_id,
            &meter.subscription,
            OffsetDateTime::now_utc(),
        )
        .await
        .map_err(|e| ApiError::from_write(&WriteError::from(&e), lang))?;
    Ok(Json(VerifyResponse { device_token: token, meter: meter.info() }))
}

/// The token of an `Authorization: Bearer …` header.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The stored form of a device token: its SHA-256, so a copy of the database holds no tokens.

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    device_id: Option<Uuid>,
    #[serde(borrow)]
    submissions: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct IdOnly {
    #[serde(default)]
    id: Option<serde_json::Value>,
}

/// Sends queued declarations; answers one result per submission, in request order. An
/// `Authorization: Bearer <device_token>` from `/api/v1/meters/verify` vouches for the items of
/// the subscription it was issued for; every other item is checked by its `meter_serial`.
#[utoipa::path(post, path = "/api/v1/sync", request_body = wire::SyncRequest, responses(
    (status = 200, description = "One result per submission, in request order", body = SyncResponse),
    (status = 400, description = "Not JSON, no `submissions` array, or not 1 to 500 submissions", body = ErrorBody),
    (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
    (status = 415, description = "Not `application/json`", body = ErrorBody),
    (status = 429, description = "Too many identity failures; see `Retry-After`", body = ErrorBody),
    (status = 503, description = "The database is unavailable: keep the batch queued", body = ErrorBody),
))]
pub async fn sync(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    HeadersAndBody { headers, body }: HeadersAndBody,
) -> Result<Response, ApiError> {
    let (lang, body) = json_body(&headers, body)?;
    let envelope: Envelope = serde_json::from_slice(&body).map_err(|_| envelope_error(&body, lang))?;
    if envelope.submissions.is_empty() || envelope.submissions.len() > MAX_BATCH {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, ApiErrorCode::BatchSize, lang));
    }

    // Read every item on its own: one that cannot be read is answered `malformed`, the rest go on.
    let mut slots: Vec<Result<usize, Option<Uuid>>> = Vec::with_capacity(envelope.submissions.len());
    let mut incoming = Vec::with_capacity(envelope.submissions.len());
    for raw in &envelope.submissions {
        match serde_json::from_str::<Submission>(raw.get()) {
            Ok(submission) => {
                slots.push(Ok(incoming.len()));
                incoming.push(Incoming::from_submission(&submission, Channel::App, envelope.device_id));
            }
            Err(_) => slots.push(Err(usable_id(raw))),
        }
    }

    // A device token covers the subscription it was issued for: those items need no serial.
    // An unknown token is no error; its items are checked by their serials like any other.
    if let Some(token) = bearer_token(&headers) {
        match state.store.device_subscription(&crate::tokens::token_hash(token)).await {
            Ok(Some(covered)) => {
                for item in incoming.iter_mut().filter(|i| i.subscription == covered) {
                    item.proof = Proof::Device;
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "looking up a device token failed; checking serials instead"),
        }
    }

    let client = Key::Client(peer.ip());
    let mut keys = vec![client.clone()];
    keys.extend(incoming.iter().map(|i| Key::Subscription(i.subscription.clone())));
    state.limiter.check(&keys).await.map_err(|r| refused(r, lang))?;
    // More serials for one subscription than its failure limit, in one batch, is guessing: it
    // would be answered before the limit could count it.
    let limits = state.limiter.limits();
    let mut serials: HashMap<&str, HashSet<&str>> = HashMap::new();
    for item in &incoming {
        serials.entry(item.subscription.as_str()).or_default().insert(item.meter_serial.as_str());
    }
    if serials.values().any(|s| s.len() as u32 > limits.per_subscription) {
        state.limiter.record_failure(client.clone()).await;
        return Err(ApiError::rate_limited(lang, limits.window));
    }

    let outcomes = if incoming.is_empty() {
        Vec::new()
    } else {
        state.writer.submit(incoming).await.map_err(|e| {
            tracing::error!(error = %e, "sync not stored");
            ApiError::from_write(&e, lang)
        })?
    };
    // After the client's, `keys` holds each item's subscription, in the items' order.
    for (key, outcome) in keys[1..].iter().zip(&outcomes) {
        if outcome.code == Some(Code::IdentityMismatch) && !outcome.replayed {
            state.limiter.record_failure(client.clone()).await;
            state.limiter.record_failure(key.clone()).await;
        }
    }

    let results = slots
        .into_iter()
        .map(|slot| match slot {
            Ok(index) => result_of(&outcomes[index], lang),
            Err(id) => SyncResult {
                id,
                status: Status::Rejected,
                code: Some(Code::Malformed),
                message: Code::Malformed.message(lang).to_owned(),
                tracking_code: None,
                consumption_m3: None,
                replayed: false,
            },
        })
        .collect();
    let meters = baselines(&state, &keys[1..], &outcomes).await;
    let server_time = OffsetDateTime::now_utc().to_offset(wire::SERVER_OFFSET);
    let answer = SyncResponse { results, server_time, meters };
    Ok(json_answer(&answer, ANSWER_BYTES_PER_RESULT * answer.results.len()))
}

/// The meters the batch proved it holds, as they stand now: a phone's fresh baseline for its
/// offline checks. Best effort: the batch is stored whatever happens here, so a meter that cannot
/// be read is left out (the phone keeps its older baseline) rather than failing the answer.
async fn baselines(state: &AppState, subscriptions: &[Key], outcomes: &[Outcome]) -> Vec<wire::MeterInfo> {
    let mut proven: Vec<&str> = Vec::new();
    for (key, outcome) in subscriptions.iter().zip(outcomes) {
        let identity_failed = matches!(outcome.code, Some(Code::IdentityMismatch | Code::Malformed | Code::IdConflict));
        if let Key::Subscription(subscription) = key
            && !identity_failed
            && !proven.contains(&subscription.as_str())
            && proven.len() < wire::MAX_BASELINES
        {
            proven.push(subscription);
        }
    }
    let mut meters = Vec::with_capacity(proven.len());
    for subscription in proven {
        let Ok(number) = SubscriptionNumber::parse(subscription) else { continue };
        match state.store.meter(&number).await {
            Ok(Some(meter)) => meters.push(meter.info()),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "reading a meter's baseline failed; answered without it"),
        }
    }
    meters
}

fn usable_id(raw: &RawValue) -> Option<Uuid> {
    let id = serde_json::from_str::<IdOnly>(raw.get()).ok()?.id?;
    id.as_str().and_then(|s| Uuid::parse_str(s.trim()).ok())
}

fn result_of(outcome: &Outcome, lang: Lang) -> SyncResult {
    SyncResult {
        id: Some(outcome.id),
        status: outcome.status,
        code: outcome.code,
        message: outcome.code.map_or_else(|| accepted_message(lang), |c| c.message(lang)).to_owned(),
        tracking_code: outcome.tracking_seq.and_then(TrackingCode::from_sequence).map(|c| c.to_string()),
        consumption_m3: outcome.consumption_m3,
        replayed: outcome.replayed,
    }
}

/// The answer to a request the identity limits stop: 429 with `Retry-After`, or 503 when the
/// shared counters could not be read (the client keeps its outbox and tries again).
pub(crate) fn refused(refusal: Refused, lang: Lang) -> ApiError {
    match refusal {
        Refused::Wait(wait) => ApiError::rate_limited(lang, wait),
        Refused::Store(e) => {
            tracing::error!(error = %crate::writer::error_chain(&*e), "reading the identity limits failed");
            ApiError::from_write(&WriteError::from(&*e), lang)
        }
    }
}
