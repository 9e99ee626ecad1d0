//! The HTTP API: routes, handlers and their errors (sync API v1, `sync-api.md`).

use std::net::{IpAddr, SocketAddr};
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
use shared::{Code, Lang, MeterSerial, Status, SubscriptionNumber, TrackingCode};
use time::OffsetDateTime;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::TraceLayer;
use uuid::Uuid;

use crate::AppState;
use crate::limits::{Claims, Key, Refused};
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
        .route("/api/v1/sms/kavenegar/{secret}", post(crate::sms::kavenegar))
        .route("/api/v1/sms/twilio", post(crate::sms::twilio))
        .route("/api/v1/billing/readings", get(crate::billing::readings))
        .route("/api/v1/complaints", post(crate::complaints::file))
        .route("/api/v1/updates", post(crate::complaints::updates))
        .route("/api/v1/declarations/{id}/photo", axum::routing::put(crate::photo::upload));
    router = crate::console::routes(router);
    if let Some(root) = state.web_root.as_ref() {
        router = crate::pwa::routes(router, root);
    } else if state.embedded_web
        && let Some(web) = crate::pwa::Embedded::built_in()
    {
        router = crate::pwa::embedded_routes(router, web);
    }
    router
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), security_headers))
        // Every answer: never sniffed as another type, and no address leaks to other sites.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // A body that stops arriving (a client gone, or a slowloris) is cut off after 10 s of
        // silence and answered 400, rather than holding its connection to the 30 s limit.
        .layer(RequestBodyTimeoutLayer::new(BODY_SILENCE))
        // A body that keeps trickling in is cut off too, soon after a short grace.
        .layer(axum::middleware::from_fn(crate::body_rate::enforce))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30)))
        .layer(CatchPanicLayer::new())
        // Every answer carries its request's id (`x-request-id`: the proxy's when it sent one,
        // else one from `RequestIds`), and so does every log line written while it is handled.
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::extract::Request| {
            let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %request.method(), path = %redacted_path(request.uri().path()),
                request_id = %id)
        }))
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(RequestIds::new()))
        .with_state(state)
}

/// Request ids made here: a random prefix drawn once per process and a counter, in hex
/// (`9c1e07d2a4b35f60-1a`), unique across instances and restarts without a system call per
/// request (a UUID each, from the system's random source, cost about 4 µs of CPU a request).
#[derive(Clone)]
struct RequestIds {
    prefix: std::sync::Arc<str>,
    next: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl RequestIds {
    fn new() -> Self {
        let prefix = Uuid::new_v4().simple().to_string()[..16].to_owned();
        Self { prefix: prefix.into(), next: std::sync::Arc::default() }
    }
}

impl tower_http::request_id::MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<tower_http::request_id::RequestId> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n:x}", self.prefix)).ok().map(tower_http::request_id::RequestId::new)
    }
}

/// A request's path as the logs may show it: no query string (never logged), and no secret that
/// a gateway can only send in the URL (`/api/v1/sms/kavenegar/{secret}`).
pub fn redacted_path(path: &str) -> &str {
    const SECRET_IN_PATH: &str = "/api/v1/sms/kavenegar/";
    if path.starts_with(SECRET_IN_PATH) { "/api/v1/sms/kavenegar/…" } else { path }
}

/// The console's pages: no script, styles and images only from the console itself, forms posted
/// only to it, never in a frame; and, but for the stylesheet, never kept by a browser or a proxy
/// (they show citizens' readings to a signed-in operator).
const CONSOLE_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The console's policy, and HSTS and `Secure` cookies when this server speaks HTTPS itself
/// (behind a proxy, the proxy sets HSTS, and its `X-Forwarded-Proto` makes cookies `Secure`).
async fn security_headers(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let console = path == "/office" || path.starts_with("/office/");
    let stylesheet = path == "/office/console.css";
    let mut response = next.run(request).await;
    if state.tls {
        let headers = response.headers_mut();
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
        // The console marks its cookies `Secure` when a proxy says the request came over TLS; a
        // server speaking TLS itself marks them all.
        let cookies: Vec<HeaderValue> = headers.get_all(header::SET_COOKIE).iter().cloned().collect();
        if !cookies.is_empty() {
            headers.remove(header::SET_COOKIE);
            for cookie in cookies {
                let secure = match cookie.to_str() {
                    Ok(text) if !text.contains("; Secure") => HeaderValue::from_str(&format!("{text}; Secure")).ok(),
                    _ => None,
                };
                headers.append(header::SET_COOKIE, secure.unwrap_or(cookie));
            }
        }
    }
    if console {
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONSOLE_POLICY));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        if !stylesheet {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
    response
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

    /// The HTTP status it answers.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// Its status and code, for a log line where it is not answered to anyone (`crate::pull`).
    pub(crate) fn summary(&self) -> String {
        format!("{} {:?}", self.status.as_u16(), self.code)
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

pub(crate) fn lang_of(headers: &HeaderMap) -> Lang {
    Lang::from_accept_language(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()))
}

/// A request's media type, lowercased and without its parameters (`application/json` of
/// `Application/JSON; charset=utf-8`); empty when there is none.
pub(crate) fn media_type(headers: &HeaderMap) -> String {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

fn require_json(headers: &HeaderMap, lang: Lang) -> Result<(), ApiError> {
    if media_type(headers) == "application/json" {
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
    let client = Key::Client(client_ip(&state, peer, &headers));
    let subscription = SubscriptionNumber::parse(&request.subscription);
    let mut wanted = vec![(client, 1)];
    if let Ok(sub) = &subscription {
        wanted.push((Key::Subscription(sub.to_string()), 1));
    }
    let mut tries = state.limiter.reserve(&wanted).await.map_err(|r| refused(r, lang))?;

    let serial = MeterSerial::parse(&request.meter_serial).ok();
    let meter = match &subscription {
        Ok(sub) => state.store.meter(sub).await.map_err(|e| {
            tracing::error!(error = %e, "looking up a meter failed");
            ApiError::from_write(&WriteError::from(&e), lang)
        })?,
        Err(_) => None,
    };
    let Some(meter) = meter.filter(|m| serial.as_ref() == Some(&m.meter_serial)) else {
        for (key, _) in &wanted {
            tries.failed(key, 1).await;
        }
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

/// The client's address for the per-client limits: the TCP peer, unless the peer is one of
/// `--trusted-proxies`. Then the hops the proxies recorded (`Forwarded: for=…`, or else
/// `X-Forwarded-For`) are read from the nearest back, and the first that is not itself a trusted
/// proxy is the client. A header from any other peer is ignored: anyone can write one.
pub(crate) fn client_ip(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    forwarded_client(&state.trusted_proxies, peer.ip(), headers)
}

fn forwarded_client(trusted: &[ipnet::IpNet], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // Each header may come more than once; hops are in order, the nearest last.
    let mut hops: Vec<Option<IpAddr>> = Vec::new();
    let forwarded: Vec<&str> = headers.get_all(header::FORWARDED).iter().filter_map(|v| v.to_str().ok()).collect();
    if forwarded.is_empty() {
        for value in headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()) {
            hops.extend(value.split(',').map(|hop| hop.trim().parse().ok()));
        }
    } else {
        for element in forwarded.iter().flat_map(|v| v.split(',')) {
            let node = element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim().eq_ignore_ascii_case("for").then(|| value.trim().trim_matches('"'))
            });
            hops.push(node.and_then(forwarded_node));
        }
    }
    for hop in hops.into_iter().rev() {
        match hop {
            Some(ip) if is_trusted(&ip) => {}
            Some(ip) => return ip,
            // A hop that cannot be read (`unknown`, an obfuscated name): the proxy's own view
            // stops there, so the peer itself is the client.
            None => return peer,
        }
    }
    peer
}

/// The address of a `Forwarded` node: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]` or
/// `[2001:db8::1]:4711`.
fn forwarded_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    node.parse().ok().or_else(|| node.rsplit_once(':')?.0.parse().ok())
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
        let too_long = |text: &str| text.chars().count() > wire::MAX_IDENTIFIER_CHARS;
        match serde_json::from_str::<Submission>(raw.get()) {
            Ok(submission) if too_long(&submission.subscription) || too_long(&submission.meter_serial) => {
                slots.push(Err(Some(submission.id)));
            }
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

    // One try for each meter an item claims by its serial (a device token's items claim none):
    // reserved before anything is judged, so a batch or a burst of guesses gets no more answers
    // than the limits allow. A phone whose token covers its items is never held up by failures
    // that other people caused on its subscription or its address.
    let client = Key::Client(client_ip(&state, peer, &headers));
    let mut claims = Claims::default();
    for item in incoming.iter().filter(|i| !matches!(i.proof, Proof::Device)) {
        claims.claim(&item.subscription, item.parsed_subscription.is_some(), &item.meter_serial);
    }
    let mut tries = state.limiter.reserve(&claims.tries(&client)).await.map_err(|r| refused(r, lang))?;
    drop(claims);
    let subscriptions: Vec<String> = incoming.iter().map(|i| i.subscription.clone()).collect();
    let serials: Vec<String> = incoming.iter().map(|i| i.meter_serial.clone()).collect();

    let outcomes = if incoming.is_empty() {
        Vec::new()
    } else {
        state.writer.submit(incoming).await.map_err(|e| {
            tracing::error!(error = %e, "sync not stored");
            ApiError::from_write(&e, lang)
        })?
    };
    // Each meter claimed wrongly is one failure, however many items claimed it.
    let mut failed = Claims::default();
    for ((subscription, serial), outcome) in subscriptions.iter().zip(&serials).zip(&outcomes) {
        if outcome.code == Some(Code::IdentityMismatch) && !outcome.replayed {
            failed.claim(subscription, true, serial);
        }
    }
    tries.failed_claims(&client, &failed).await;
    drop(tries);

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
                supersedes: None,
            },
        })
        .collect();
    let meters = baselines(&state, &subscriptions, &outcomes).await;
    let server_time = OffsetDateTime::now_utc().to_offset(wire::SERVER_OFFSET);
    let answer = SyncResponse { results, server_time, meters };
    Ok(json_answer(&answer, ANSWER_BYTES_PER_RESULT * answer.results.len()))
}

/// The meters the batch proved it holds, as they stand now: a phone's fresh baseline for its
/// offline checks. Best effort: the batch is stored whatever happens here, so a meter that cannot
/// be read is left out (the phone keeps its older baseline) rather than failing the answer.
async fn baselines(state: &AppState, subscriptions: &[String], outcomes: &[Outcome]) -> Vec<wire::MeterInfo> {
    let mut proven: Vec<&str> = Vec::new();
    for (subscription, outcome) in subscriptions.iter().zip(outcomes) {
        let identity_failed = matches!(outcome.code, Some(Code::IdentityMismatch | Code::Malformed | Code::IdConflict));
        if !identity_failed && !proven.contains(&subscription.as_str()) && proven.len() < wire::MAX_BASELINES {
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
        supersedes: outcome.supersedes,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("a name"),
                value.parse().expect("a value"),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn only_a_trusted_proxy_names_the_client() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().expect("cidr"), "::1/128".parse().expect("cidr")];
        let xff = headers(&[("x-forwarded-for", "203.0.113.7, 10.1.1.1")]);
        // From the proxy: the nearest hop that is not a proxy.
        assert_eq!(forwarded_client(&trusted, ip("10.0.0.2"), &xff), ip("203.0.113.7"));
        // From anyone else: the header is ignored.
        assert_eq!(forwarded_client(&trusted, ip("198.51.100.1"), &xff), ip("198.51.100.1"));
        assert_eq!(forwarded_client(&[], ip("10.0.0.2"), &xff), ip("10.0.0.2"));
        // A client that writes its own header gets the hop the proxy appended, not its claim.
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9")]);
        assert_eq!(forwarded_client(&trusted, ip("10.0.0.2"), &spoofed), ip("203.0.113.9"));
        // Two headers, as two proxies may write them.
        let split = headers(&[("x-forwarded-for", "203.0.113.7"), ("x-forwarded-for", "10.2.2.2")]);
        assert_eq!(forwarded_client(&trusted, ip("::1"), &split), ip("203.0.113.7"));
        // No header, or nothing readable: the proxy is the client.
        assert_eq!(forwarded_client(&trusted, ip("10.0.0.2"), &HeaderMap::new()), ip("10.0.0.2"));
        let junk = headers(&[("x-forwarded-for", "not-an-address")]);
        assert_eq!(forwarded_client(&trusted, ip("10.0.0.2"), &junk), ip("10.0.0.2"));
    }

    #[test]
    fn the_forwarded_header_in_its_forms() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let from = |value: &str| forwarded_client(&trusted, ip("10.0.0.2"), &headers(&[("forwarded", value)]));
        assert_eq!(from("for=192.0.2.60;proto=https;by=203.0.113.43"), ip("192.0.2.60"));
        assert_eq!(from("for=\"[2001:db8:cafe::17]:4711\""), ip("2001:db8:cafe::17"));
        assert_eq!(from("for=192.0.2.43:8080, for=10.9.9.9"), ip("192.0.2.43"));
        assert_eq!(from("for=unknown"), ip("10.0.0.2"));
        // Forwarded wins over X-Forwarded-For when both are there.
        let both = headers(&[("forwarded", "for=192.0.2.1"), ("x-forwarded-for", "192.0.2.2")]);
        assert_eq!(forwarded_client(&trusted, ip("10.0.0.2"), &both), ip("192.0.2.1"));
    }
}
