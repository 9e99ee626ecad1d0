//! The staff console at `/office/`: counter-office operators declare on behalf of subscribers,
//! reviewers decide held declarations, admins read the audit log.
//!
//! Pages are Leptos views rendered on the server (`pages`); every action is a plain form post
//! answered with a redirect, so it works with JavaScript off. Every page checks the session and
//! the role; every post checks the session's CSRF token and the request's origin (`auth`).
//! Declarations go through the same writer, checks and reconciliation as every other channel,
//! and reviewers' decisions through the same writer, so a meter's chain has one writer.

// A refused request is a whole page (`Response`) on the error side, like the page on the success
// side; boxing it would only add an allocation to the rare path.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod calendar;
pub mod pages;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use leptos::prelude::*;
use shared::wire::{ReadingInput, SERVER_OFFSET, Submission};
use shared::{Code, Lang, MeterSerial, Reading, SubscriptionNumber, sms};
use time::OffsetDateTime;
use uuid::Uuid;

use self::auth::{BROWSER_COOKIE, LANG_COOKIE, LOGIN_COOKIE, SESSION_COOKIE};
use self::pages::{DeclareForm, Frame, tr};
use crate::AppState;
use crate::limits::{IdentityLimiter, Key, Limits, Refused};
use crate::store::{
    AuditEntry, Incoming, MeterRecord, NewSession, ReviewDecision, ReviewRequest, ReviewResult, Session, Staff, Store,
    StoreError, StoredDeclaration, TrustedBrowser,
};
use crate::tokens::{new_token, same_secret, token_hash};
use crate::writer::WriteError;

/// How the console behaves.
#[derive(Debug, Clone, Copy)]
pub struct ConsoleOptions {
    /// The longest a session lasts after sign-in, however busy (a working day by default).
    pub session_ttl: Duration,
    /// A session unused this long ends (30 minutes by default): a counter screen left signed
    /// in does not stay open to the next person at the desk.
    pub session_idle: Duration,
    /// Failed sign-ins allowed per username (`per_subscription`) and per client; a trusted
    /// browser has the username's allowance of its own instead of both.
    pub login_limits: Limits,
    /// How long a browser stays trusted after a sign-in from it (90 days by default).
    pub browser_trust: Duration,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        Self {
            session_ttl: Duration::from_secs(10 * 3600),
            session_idle: Duration::from_secs(30 * 60),
            login_limits: Limits::default(),
            browser_trust: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// The console's share of the server state.
pub struct Console {
    pub options: ConsoleOptions,
    login_limiter: IdentityLimiter,
    /// Password checks running at once (argon2 with 19 MiB each): the rest wait their turn, so a
    /// flood of sign-ins costs time, not memory.
    hashing: tokio::sync::Semaphore,
}

/// Password checks at once: two processors' worth.
const HASHING_AT_ONCE: usize = 2;

impl Console {
    pub fn new(options: ConsoleOptions, store: &Arc<dyn Store>) -> Self {
        Self {
            options,
            login_limiter: IdentityLimiter::for_store(options.login_limits, store, "console"),
            hashing: tokio::sync::Semaphore::new(HASHING_AT_ONCE),
        }
    }
}

/// Adds the console's routes.
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/office", get(|| async { Redirect::permanent("/office/") }))
        .route("/office/", get(home))
        .route("/office/console.css", get(css))
        .route("/office/login", get(login_page).post(login))
        .route("/office/logout", post(logout))
        .route("/office/lang/{lang}", get(choose_lang))
        .route("/office/declare", get(declare_page).post(declare))
        .route("/office/declarations/{id}", get(declaration_page))
        .route("/office/review", get(review_queue))
        .route("/office/review/{seq}", get(review_page).post(decide))
        .route("/office/photos/{seq}", get(photo))
        .route("/office/audit", get(audit_page))
        .route("/office/replies", get(replies_page))
        .route("/office/replies/{id}", post(send_again))
        .route("/office/complaints", get(complaints_page))
        .route("/office/complaints/new", get(complaint_form).post(file_complaint))
        .route("/office/complaints/{seq}", get(complaint_page).post(answer_complaint))
}

type Page = Result<Response, Response>;

fn lang_of(headers: &HeaderMap) -> Lang {
    match auth::cookie(headers, LANG_COOKIE) {
        Some("en") => Lang::En,
        Some("fa") => Lang::Fa,
        _ => Lang::from_accept_language(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok())),
    }
}

fn html(status: StatusCode, frame: &Frame<'_>, body: impl IntoView + 'static) -> Response {
    let mut response = (status, Html(pages::document(frame, body))).into_response();
    // Pages show personal data: never kept by a shared cache, never shown in a frame.
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", header::HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    response
}

fn refusal(lang: Lang, session: Option<&Session>, status: StatusCode, text: &'static str) -> Response {
    let title = tr(lang, "انجام نشد", "Not done");
    let back = Some(("/office/", tr(lang, "بازگشت به خانه", "Back to the console")));
    html(status, &Frame { lang, title, session }, pages::message(text, back))
}

fn store_failed(lang: Lang, err: &StoreError) -> Response {
    tracing::error!(error = %crate::writer::error_chain(err), "console: the store failed");
    match err {
        StoreError::Unavailable(_) => refusal(
            lang,
            None,
            StatusCode::SERVICE_UNAVAILABLE,
            tr(
                lang,
                "پایگاه داده در دسترس نیست؛ کمی بعد دوباره امتحان کنید.",
                "The database is unavailable; try again shortly.",
            ),
        ),
        _ => refusal(
            lang,
            None,
            StatusCode::INTERNAL_SERVER_ERROR,
            tr(lang, "خطای داخلی رخ داد.", "Something went wrong on our side."),
        ),
    }
}

fn write_failed(lang: Lang, err: &WriteError) -> Response {
    match err {
        WriteError::Unavailable(_) | WriteError::Busy => refusal(
            lang,
            None,
            StatusCode::SERVICE_UNAVAILABLE,
            tr(lang, "ثبت ممکن نشد؛ کمی بعد دوباره امتحان کنید.", "It could not be stored; try again shortly."),
        ),
        WriteError::Failed(_) => refusal(
            lang,
            None,
            StatusCode::INTERNAL_SERVER_ERROR,
            tr(lang, "خطای داخلی رخ داد.", "Something went wrong on our side."),
        ),
    }
}

fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}

/// A signed-in staff member.
struct Signed {
    session: Session,
    token_hash: String,
    lang: Lang,
}

impl Signed {
    /// The session the request's cookie stands for; otherwise a redirect to the sign-in page.
    async fn from_request(state: &AppState, headers: &HeaderMap) -> Result<Self, Response> {
        let lang = lang_of(headers);
        let Some(token) = auth::cookie(headers, SESSION_COOKIE) else { return Err(see_other("/office/login")) };
        let token_hash = token_hash(token);
        let now = OffsetDateTime::now_utc();
        match state.store.session(&token_hash, now).await {
            Ok(Some(mut session)) => {
                // Use keeps the session alive, up to its absolute end; it is written down at
                // most about once a minute.
                let options = state.console.options;
                let end = (now + options.session_idle).min(session.created_at + options.session_ttl);
                if end > session.expires_at + (options.session_idle / 2).min(Duration::from_secs(60)) {
                    match state.store.extend_session(&token_hash, end).await {
                        Ok(()) => session.expires_at = end,
                        Err(e) => {
                            tracing::warn!(error = %crate::writer::error_chain(&e), "console: extending a session failed")
                        }
                    }
                }
                Ok(Self { session, token_hash, lang })
            }
            Ok(None) => {
                let mut response = see_other("/office/login");
                if let Some(clear) = auth::set_cookie(headers, SESSION_COOKIE, "", 0) {
                    response.headers_mut().insert(header::SET_COOKIE, clear);
                }
                Err(response)
            }
            Err(e) => Err(store_failed(lang, &e)),
        }
    }

    /// The session, for a page only some roles may see.
    async fn with_role(
        state: &AppState,
        headers: &HeaderMap,
        allowed: impl FnOnce(crate::store::Role) -> bool,
    ) -> Result<Self, Response> {
        let signed = Self::from_request(state, headers).await?;
        signed.require(allowed(signed.session.role))?;
        Ok(signed)
    }

    fn frame<'a>(&'a self, title: &'a str) -> Frame<'a> {
        Frame { lang: self.lang, title, session: Some(&self.session) }
    }

    /// `403` unless the role allows it.
    fn require(&self, allowed: bool) -> Result<(), Response> {
        if allowed {
            return Ok(());
        }
        let text = tr(self.lang, "این بخش برای نقش شما نیست.", "Your role does not give access to this page.");
        Err(refusal(self.lang, Some(&self.session), StatusCode::FORBIDDEN, text))
    }

    /// `403` unless a post carries this session's CSRF token and comes from our own pages.
    fn check_post(&self, headers: &HeaderMap, csrf: &str) -> Result<(), Response> {
        if auth::same_origin(headers) && same_secret(csrf.as_bytes(), self.session.csrf.as_bytes()) {
            return Ok(());
        }
        let text = tr(
            self.lang,
            "این فرم معتبر نیست یا منقضی شده است؛ صفحه را دوباره باز کنید.",
            "This form is not valid or has expired; open the page again.",
        );
        Err(refusal(self.lang, Some(&self.session), StatusCode::FORBIDDEN, text))
    }

    async fn audit(&self, state: &AppState, action: &str, detail: &str) {
        let entry = AuditEntry { at: OffsetDateTime::now_utc(), username: &self.session.username, action, detail };
        if let Err(e) = state.store.audit(&entry).await {
            tracing::error!(error = %crate::writer::error_chain(&e), action, "console: recording an audit entry failed");
        }
    }
}

/// A form that carries the session's CSRF token.
trait Posted {
    fn csrf(&self) -> &str;
}

macro_rules! posted {
    ($($form:ty),*) => { $( impl Posted for $form { fn csrf(&self) -> &str { &self.csrf } } )* };
}
posted!(CsrfForm, DeclareForm, DecideForm, AnswerForm, pages::ComplaintForm);

impl Signed {
    /// A form post by a signed-in staff member whose role allows it, with its token and origin
    /// checked: the prologue of every console action.
    async fn post<T: Posted>(
        state: &AppState,
        headers: &HeaderMap,
        form: Result<Form<T>, FormRejection>,
        allowed: impl FnOnce(crate::store::Role) -> bool,
    ) -> Result<(Self, T), Response> {
        let signed = Self::with_role(state, headers, allowed).await?;
        let Form(form) = form.map_err(|r| bad_form(signed.lang, &r))?;
        signed.check_post(headers, form.csrf())?;
        Ok((signed, form))
    }
}

fn bad_form(lang: Lang, rejection: &FormRejection) -> Response {
    tracing::debug!(%rejection, "console: unreadable form");
    refusal(lang, None, StatusCode::BAD_REQUEST, tr(lang, "فرم خوانا نبود.", "The form could not be read."))
}

async fn css() -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], pages::CSS).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("public, max-age=3600"));
    response
}

async fn choose_lang(Path(lang): Path<String>, headers: HeaderMap) -> Response {
    let lang = if lang == "en" { "en" } else { "fa" };
    // Back to the page the link was on, when it was one of ours.
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.split_once("://"))
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()))
        .filter(|path| path.starts_with("/office/") && !path.starts_with("/office/lang/") && !path.contains("//"))
        .unwrap_or_else(|| "/office/".to_owned());
    let mut response = see_other(&back);
    if let Some(cookie) = auth::set_cookie(&headers, LANG_COOKIE, lang, 365 * 24 * 3600) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

// Signing in and out.

async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Page {
    if Signed::from_request(&state, &headers).await.is_ok() {
        return Ok(see_other("/office/"));
    }
    Ok(login_form(&headers, lang_of(&headers), StatusCode::OK, "", None))
}

fn login_form(
    headers: &HeaderMap,
    lang: Lang,
    status: StatusCode,
    username: &str,
    error: Option<&'static str>,
) -> Response {
    // The sign-in form's token: a cookie and a hidden field that must match (double submit).
    let token = match auth::cookie(headers, LOGIN_COOKIE).filter(|t| t.len() == 64) {
        Some(token) => token.to_owned(),
        None => match new_token() {
            Ok(token) => token,
            Err(e) => {
                tracing::error!(error = %e, "console: no token for the sign-in form");
                return refusal(
                    lang,
                    None,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    tr(lang, "خطای داخلی رخ داد.", "Something went wrong on our side."),
                );
            }
        },
    };
    let title = tr(lang, "ورود کارکنان", "Staff sign-in");
    let mut response = html(status, &Frame { lang, title, session: None }, pages::login(lang, &token, username, error));
    if let Some(cookie) = auth::set_cookie(headers, LOGIN_COOKIE, &token, 3600) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(serde::Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Page {
    let lang = lang_of(&headers);
    let Form(form) = form.map_err(|r| bad_form(lang, &r))?;
    let expected = auth::cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if !auth::same_origin(&headers) || !same_secret(form.csrf.as_bytes(), expected.as_bytes()) {
        let text = tr(lang, "فرم ورود منقضی شده است؛ دوباره امتحان کنید.", "The sign-in form expired; try again.");
        return Ok(login_form(&headers, lang, StatusCode::FORBIDDEN, &form.username, Some(text)));
    }
    let username: String = form.username.trim().chars().take(64).collect();
    let now = OffsetDateTime::now_utc();
    let client = crate::http::client_ip(&state, peer, &headers);
    // A browser this username signed in from before is counted on its own (OWASP's device
    // cookies): a guesser hammering the username, from anywhere, cannot lock its owner out of
    // the browser they use every day, and a stolen cookie still gets only a few tries.
    let browser = match auth::cookie(&headers, BROWSER_COOKIE).filter(|t| t.len() == 64) {
        Some(token) => {
            let hash = token_hash(token);
            let owner = state.store.trusted_browser(&hash, now).await.map_err(|e| store_failed(lang, &e))?;
            owner.filter(|owner| *owner == username).map(|_| hash)
        }
        None => None,
    };
    let keys = match &browser {
        Some(hash) => vec![Key::Browser(hash.clone())],
        None => vec![Key::Operator(username.clone()), Key::Client(client)],
    };
    let limiter = &state.console.login_limiter;
    // The try is reserved before the password is checked: parallel guesses get no more
    // answers than the limit.
    let claims: Vec<(Key, u32)> = keys.iter().map(|key| (key.clone(), 1)).collect();
    let reserved = limiter.reserve(&claims).await;
    let mut tries = match reserved {
        Ok(tries) => tries,
        Err(refusal) => {
            let wait = match refusal {
                Refused::Wait(wait) => wait,
                Refused::Store(e) => return Err(store_failed(lang, &e)),
            };
            let text = tr(
                lang,
                "تلاش‌های ناموفق زیاد بود؛ کمی بعد دوباره امتحان کنید.",
                "Too many failed attempts; try again later.",
            );
            let mut response = login_form(&headers, lang, StatusCode::TOO_MANY_REQUESTS, &username, Some(text));
            if let Ok(value) = header::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return Ok(response);
        }
    };
    let operator = state.store.operator(&username).await.map_err(|e| store_failed(lang, &e))?;
    let hash = operator.as_ref().map(|o| o.password_hash.clone());
    let password = form.password;
    // Each check holds ~19 MiB for a moment: a few at a time, however many sign-ins arrive.
    let verified = match state.console.hashing.acquire().await {
        Ok(_permit) => tokio::task::spawn_blocking(move || auth::verify_password(&password, hash.as_deref()))
            .await
            .unwrap_or(false),
        Err(_) => false,
    };
    let Some(operator) = operator.filter(|_| verified) else {
        for key in &keys {
            tries.failed(key, 1).await;
        }
        drop(tries);
        let trusted = if browser.is_some() { " (trusted browser)" } else { "" };
        let detail = format!("{client}{trusted}");
        let entry = AuditEntry { at: now, username: &username, action: "login_failed", detail: &detail };
        if let Err(e) = state.store.audit(&entry).await {
            tracing::error!(error = %crate::writer::error_chain(&e), "console: recording a failed sign-in failed");
        }
        let text = tr(lang, "نام کاربری یا گذرواژه درست نیست.", "The username or the password is not correct.");
        return Ok(login_form(&headers, lang, StatusCode::UNAUTHORIZED, &username, Some(text)));
    };
    let (token, csrf) = match (new_token(), new_token()) {
        (Ok(token), Ok(csrf)) => (token, csrf),
        _ => {
            return Err(refusal(
                lang,
                None,
                StatusCode::INTERNAL_SERVER_ERROR,
                tr(lang, "خطای داخلی رخ داد.", "Something went wrong on our side."),
            ));
        }
    };
    let ttl = state.console.options.session_ttl;
    let token_hash = token_hash(&token);
    let session = NewSession {
        token_hash: &token_hash,
        username: &operator.username,
        csrf: &csrf,
        created_at: now,
        expires_at: now + ttl.min(state.console.options.session_idle),
    };
    state.store.create_session(&session).await.map_err(|e| store_failed(lang, &e))?;
    let entry = AuditEntry { at: now, username: &operator.username, action: "login", detail: &peer.ip().to_string() };
    state.store.audit(&entry).await.map_err(|e| store_failed(lang, &e))?;
    let mut response = see_other("/office/");
    let mut cookies = vec![
        auth::set_cookie(&headers, SESSION_COOKIE, &token, ttl.as_secs()),
        auth::set_cookie(&headers, LOGIN_COOKIE, "", 0),
    ];
    if browser.is_none() {
        // From now on this browser is known to be theirs. Without it the sign-in still stands.
        let trust = state.console.options.browser_trust;
        match new_token() {
            Ok(browser_token) => {
                let hash = crate::tokens::token_hash(&browser_token);
                let row = TrustedBrowser {
                    token_hash: &hash,
                    username: &operator.username,
                    created_at: now,
                    expires_at: now + trust,
                };
                match state.store.trust_browser(&row).await {
                    Ok(()) => cookies.push(auth::set_cookie(&headers, BROWSER_COOKIE, &browser_token, trust.as_secs())),
                    Err(e) => {
                        tracing::warn!(error = %crate::writer::error_chain(&e), "console: remembering a browser failed")
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "console: no token for a trusted browser"),
        }
    }
    for cookie in cookies.into_iter().flatten() {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Page {
    let (signed, _) = Signed::post(&state, &headers, form, |_| true).await?;
    state.store.end_session(&signed.token_hash).await.map_err(|e| store_failed(signed.lang, &e))?;
    signed.audit(&state, "logout", "").await;
    let mut response = see_other("/office/login");
    if let Some(clear) = auth::set_cookie(&headers, SESSION_COOKIE, "", 0) {
        response.headers_mut().insert(header::SET_COOKIE, clear);
    }
    Ok(response)
}

// The pages.

/// The start of today in Iran's time.
fn start_of_today() -> OffsetDateTime {
    OffsetDateTime::now_utc().to_offset(SERVER_OFFSET).replace_time(time::Time::MIDNIGHT)
}

async fn home(State(state): State<AppState>, headers: HeaderMap) -> Page {
    let signed = Signed::from_request(&state, &headers).await?;
    let lang = signed.lang;
    let role = signed.session.role;
    let today = if role.declares() {
        let rows = state
            .store
            .office_declarations(&signed.session.office, start_of_today(), 200)
            .await
            .map_err(|e| store_failed(lang, &e))?;
        Some(rows)
    } else {
        None
    };
    let waiting =
        if role.reviews() { Some(state.store.backlog().await.map_err(|e| store_failed(lang, &e))?) } else { None };
    let body = view! {
        {today.map(|rows| view! {
            <p><a href="/office/declare">{tr(lang, "ثبت رقم برای مشترک", "Declare a reading for a subscriber")}</a></p>
            <h2>{tr(lang, "ثبت‌های امروز این دفتر", "This office's declarations today")}</h2>
            {pages::declarations(lang, &rows, false)}
        })}
        {waiting.map(|(held, open)| {
            let held = format!("{} {}", pages::digits(lang, held), tr(lang, "مورد در انتظار", "waiting"));
            let open = format!("{} {}", pages::digits(lang, open), tr(lang, "بی‌پاسخ", "unanswered"));
            view! {
                <p><a href="/office/review">{tr(lang, "صف بررسی", "Review queue")}</a>" — "<span class="count">{held}</span></p>
                <p><a href="/office/complaints">{tr(lang, "شکایت‌ها", "Complaints")}</a>" — "<span class="count">{open}</span></p>
            }
        })}
    };
    Ok(html(StatusCode::OK, &signed.frame(tr(lang, "میز کار", "Console")), body))
}

async fn declare_page(State(state): State<AppState>, headers: HeaderMap) -> Page {
    let signed = Signed::with_role(&state, &headers, |role| role.declares()).await?;
    let now = OffsetDateTime::now_utc().to_offset(SERVER_OFFSET);
    let (y, m, d) = calendar::to_solar_hijri(now.date());
    let form = DeclareForm {
        id: Uuid::now_v7().to_string(),
        date: pages::digits(signed.lang, format!("{y}/{m:02}/{d:02}")),
        time: pages::digits(signed.lang, format!("{:02}:{:02}", now.hour(), now.minute())),
        ..DeclareForm::default()
    };
    let lang = signed.lang;
    let body = pages::declare(lang, &signed.session.csrf, &form, None);
    Ok(html(StatusCode::OK, &signed.frame(tr(lang, "ثبت رقم برای مشترک", "Declare for a subscriber")), body))
}

/// Reads the declare form into a submission, or says which field to fix.
fn submission_of(lang: Lang, form: &DeclareForm) -> Result<Submission, &'static str> {
    let subscription = SubscriptionNumber::parse(&form.subscription)
        .map_err(|_| tr(lang, "شماره اشتراک درست نیست.", "The subscription number is not valid."))?;
    let serial = MeterSerial::parse(&form.meter_serial)
        .map_err(|_| tr(lang, "شماره سریال کنتور درست نیست.", "The meter serial number is not valid."))?;
    let reading = Reading::parse(&form.reading).map_err(|_| Code::ReadingOutOfRange.message(lang))?;
    let date = calendar::parse_solar_hijri(&form.date).ok_or_else(|| {
        tr(
            lang,
            "تاریخ را به شکل سال/ماه/روز شمسی بنویسید، مثل ۱۴۰۵/۰۹/۰۶.",
            "Write the date as a Solar Hijri Y/M/D, like 1405/09/06.",
        )
    })?;
    let time = calendar::parse_time(&form.time).ok_or_else(|| {
        tr(lang, "ساعت را به شکل ساعت:دقیقه بنویسید، مثل ۰۹:۳۰.", "Write the time as HH:MM, like 09:30.")
    })?;
    Ok(Submission {
        id: Uuid::parse_str(form.id.trim()).unwrap_or_else(|_| Uuid::now_v7()),
        subscription: subscription.to_string(),
        meter_serial: serial.to_string(),
        reading: ReadingInput::from(reading),
        read_at: time::PrimitiveDateTime::new(date, time).assume_offset(SERVER_OFFSET),
        note: None,
        corrects: None,
    })
}

async fn declare(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<DeclareForm>, FormRejection>,
) -> Page {
    let (signed, mut form) = Signed::post(&state, &headers, form, |role| role.declares()).await?;
    let lang = signed.lang;
    let title = tr(lang, "ثبت رقم برای مشترک", "Declare for a subscriber");
    let again = |form: &DeclareForm, error: String| {
        let body = pages::declare(lang, &signed.session.csrf, form, Some(error));
        html(StatusCode::UNPROCESSABLE_ENTITY, &signed.frame(title), body)
    };
    let submission = match submission_of(lang, &form) {
        Ok(s) => s,
        Err(error) => return Ok(again(&form, error.to_owned())),
    };
    let staff = Staff { operator: signed.session.username.clone(), office: signed.session.office.clone() };
    let incoming = Incoming::from_office(&submission, staff);
    let outcome = match state.writer.submit(vec![incoming]).await {
        Ok(mut outcomes) if outcomes.len() == 1 => outcomes.remove(0),
        Ok(_) => return Err(write_failed(lang, &WriteError::Failed("one outcome expected".into()))),
        Err(e) => return Err(write_failed(lang, &e)),
    };
    if outcome.code == Some(Code::IdConflict) {
        // The form was sent before with other values (edited after going back): a new one.
        form.id = Uuid::now_v7().to_string();
        let error = tr(
            lang,
            "این فرم پیش‌تر با مقادیر دیگری ثبت شده بود؛ برای ثبت تازه دوباره «ثبت» را بزنید.",
            "This form was sent before with other values; press Declare again to store these as new.",
        );
        return Ok(again(&form, error.to_owned()));
    }
    if !outcome.replayed {
        let detail = format!(
            "declaration {} for {}: reading {} read at {} → {}{}",
            outcome.id,
            submission.subscription,
            submission.reading.reading().map(|r| r.value()).unwrap_or_default(),
            submission.read_at,
            outcome.status.as_str(),
            outcome.code.map(|c| format!(" ({})", c.as_str())).unwrap_or_default()
        );
        signed.audit(&state, "declare", &detail).await;
    }
    Ok(see_other(&format!("/office/declarations/{}", outcome.id)))
}

async fn declaration_page(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Page {
    let signed = Signed::from_request(&state, &headers).await?;
    let lang = signed.lang;
    let not_found = || {
        let text = tr(lang, "چنین ثبتی نیست.", "No such declaration.");
        refusal(lang, Some(&signed.session), StatusCode::NOT_FOUND, text)
    };
    let Ok(id) = Uuid::parse_str(&id) else { return Err(not_found()) };
    let found = state.store.declaration_by_id(id).await.map_err(|e| store_failed(lang, &e))?;
    // An office sees its own declarations; staff who review see every one.
    let visible = found.filter(|d| {
        signed.session.role.reviews() || d.staff.as_ref().is_some_and(|s| s.office == signed.session.office)
    });
    let Some(declaration) = visible else { return Err(not_found()) };
    let body = pages::outcome(lang, &declaration);
    Ok(html(StatusCode::OK, &signed.frame(tr(lang, "نتیجهٔ ثبت", "Declaration outcome")), body))
}

#[derive(serde::Deserialize)]
struct QueueQuery {
    decided: Option<u64>,
}

async fn review_queue(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<QueueQuery>, QueryRejection>,
) -> Page {
    let signed = Signed::with_role(&state, &headers, |role| role.reviews()).await?;
    let lang = signed.lang;
    let rows = state.store.review_queue(200).await.map_err(|e| store_failed(lang, &e))?;
    let decided = query.ok().and_then(|Query(q)| q.decided);
    let body = view! {
        {decided.map(|_| view! { <p role="status">{tr(lang, "تصمیم ثبت شد.", "The decision is stored.")}</p> })}
        <p>{tr(lang, "قدیمی‌ترین‌ها اول.", "Oldest first.")}</p>
        {pages::declarations(lang, &rows, true)}
    };
    Ok(html(StatusCode::OK, &signed.frame(tr(lang, "صف بررسی", "Review queue")), body))
}

async fn review_body(
    state: &AppState,
    signed: &Signed,
    seq: u64,
    status: StatusCode,
    error: Option<&'static str>,
) -> Page {
    let lang = signed.lang;
    let found = state.store.declaration(seq).await.map_err(|e| store_failed(lang, &e))?;
    let Some(declaration) = found else {
        return Err(refusal(
            lang,
            Some(&signed.session),
            StatusCode::NOT_FOUND,
            tr(lang, "چنین ثبتی نیست.", "No such declaration."),
        ));
    };
    let meter = match SubscriptionNumber::parse(&declaration.subscription) {
        Ok(sub) => state.store.meter(&sub).await.map_err(|e| store_failed(lang, &e))?,
        Err(_) => None,
    };
    let mut chain = state.store.declarations_of(&declaration.subscription).await.map_err(|e| store_failed(lang, &e))?;
    let effect = effect(&declaration, meter.as_ref(), &chain);
    // The newest dozen in reading time is what a reviewer compares against.
    let keep = chain.len().saturating_sub(12);
    chain.drain(..keep);
    chain.reverse();
    let photo = state.store.photos().photo(seq).await.map_err(|e| store_failed(lang, &e))?;
    let photo = photo.map(|p| (p.width, p.height));
    let body = view! {
        {error.map(|e| view! { <p class="error" role="alert">{e}</p> })}
        {pages::review(lang, &signed.session.csrf, &declaration, meter.as_ref(), &chain, &effect, photo)}
    };
    Ok(html(status, &signed.frame(tr(lang, "بررسی رقم", "Review a declaration")), body))
}

/// What deciding on `d` would do, worked out by `shared::rules` from its meter's declarations
/// (`all`, every one of the meter's) and billed reading: the figures a reviewer sees before
/// choosing.
fn effect(d: &StoredDeclaration, meter: Option<&MeterRecord>, all: &[StoredDeclaration]) -> pages::Effect {
    use shared::rules::{self, Chain, Conflict, Point, Source};
    let (Some(meter), Some(reading)) = (meter, d.reading) else { return pages::Effect::Nothing };
    let counting = |except: Option<u64>| {
        let declared = all.iter().filter(|x| x.counts && Some(x.seq) != except).filter_map(|x| {
            x.reading.map(|reading| Point { source: Source::Declaration(x.seq), reading, read_at: x.read_at })
        });
        Chain::new(meter.billed.into_iter().chain(declared).collect())
    };
    let change = |next: u64, becomes: Option<u64>| {
        all.iter().find(|x| x.seq == next).and_then(|x| {
            Some(pages::NextChange { reading: x.reading?, read_at: x.read_at, was: x.consumption_m3, becomes })
        })
    };
    let context = meter.context();
    if d.pending_review() {
        let point = Point { source: Source::Declaration(d.seq), reading, read_at: d.read_at };
        let chain = counting(Some(d.seq));
        return match rules::approve(&context, &chain, &point) {
            Ok(approval) => match approval.repeat_of {
                Some(of) => pages::Effect::Repeat {
                    of: shared::TrackingCode::from_sequence(of).map(|c| c.to_string()).unwrap_or_default(),
                },
                None => {
                    let (prev, _) = chain.neighbours(d.read_at);
                    pages::Effect::Approve {
                        consumption: approval.consumption_m3,
                        from: prev.map(|p| (p.reading, p.read_at)),
                        next: approval.next_consumption.and_then(|(next, m3)| change(next, Some(m3))),
                    }
                }
            },
            Err(Conflict::AboveNext(p)) => pages::Effect::Conflict { reading: p.reading, at: p.read_at, after: true },
            Err(Conflict::BelowPrevious(p)) => {
                pages::Effect::Conflict { reading: p.reading, at: p.read_at, after: false }
            }
        };
    }
    if d.counts && d.void.is_none() {
        let next = rules::void(&context, &counting(None), d.seq).and_then(|(next, m3)| change(next, m3));
        return pages::Effect::Void { next };
    }
    pages::Effect::Nothing
}

/// A declaration's meter photo, for the review and complaint pages of reviewers and admins; every
/// look is recorded in the audit log.
async fn photo(State(state): State<AppState>, headers: HeaderMap, Path(seq): Path<u64>) -> Page {
    let signed = Signed::with_role(&state, &headers, |role| role.reviews()).await?;
    let lang = signed.lang;
    let found = state.store.photos().photo(seq).await.map_err(|e| store_failed(lang, &e))?;
    let Some(photo) = found else {
        let missing = tr(lang, "این ثبت عکسی ندارد.", "This declaration has no photo.");
        return Err(refusal(lang, Some(&signed.session), StatusCode::NOT_FOUND, missing));
    };
    signed.audit(&state, "photo_viewed", &seq.to_string()).await;
    let media_type = axum::http::HeaderValue::from_str(&photo.media_type)
        .unwrap_or(axum::http::HeaderValue::from_static("image/jpeg"));
    Ok(([(header::CONTENT_TYPE, media_type)], photo.bytes).into_response())
}

async fn review_page(State(state): State<AppState>, headers: HeaderMap, Path(seq): Path<u64>) -> Page {
    let signed = Signed::with_role(&state, &headers, |role| role.reviews()).await?;
    review_body(&state, &signed, seq, StatusCode::OK, None).await
}

#[derive(serde::Deserialize)]
struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    reason: String,
}

async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(seq): Path<u64>,
    form: Result<Form<DecideForm>, FormRejection>,
) -> Page {
    let (signed, form) = Signed::post(&state, &headers, form, |role| role.reviews()).await?;
    let lang = signed.lang;
    let reason: String = form.reason.trim().chars().take(500).collect();
    let decision = match form.decision.as_str() {
        "approve" => ReviewDecision::Approve,
        "reject" if !reason.is_empty() => ReviewDecision::Reject { reason },
        "void" if !reason.is_empty() => ReviewDecision::Void { reason },
        // Reject and void without a reason.
        decision @ ("reject" | "void") => {
            let error = match decision {
                "reject" => tr(
                    lang,
                    "برای رد، دلیل را بنویسید؛ مشترک آن را می‌بیند.",
                    "Give a reason to reject; the subscriber will see it.",
                ),
                _ => tr(
                    lang,
                    "برای باطل کردن، دلیل را بنویسید؛ در گزارش رویدادها می‌ماند و مشترک آن را می‌بیند.",
                    "Give a reason to void; it stays in the audit log and the subscriber will see it.",
                ),
            };
            return review_body(&state, &signed, seq, StatusCode::UNPROCESSABLE_ENTITY, Some(error)).await;
        }
        _ => {
            return Err(refusal(
                lang,
                Some(&signed.session),
                StatusCode::BAD_REQUEST,
                tr(lang, "فرم خوانا نبود.", "The form could not be read."),
            ));
        }
    };
    let request = ReviewRequest { seq, decision, reviewer: signed.session.username.clone() };
    match state.writer.review(request).await.map_err(|e| write_failed(lang, &e))? {
        ReviewResult::Decided(declaration) => {
            notify_by_sms(&state, &declaration).await;
            Ok(see_other(&format!("/office/review?decided={seq}")))
        }
        ReviewResult::NotPending(_) => {
            let error = tr(lang, "این مورد پیش‌تر تصمیم گرفته شده است.", "This one was already decided.");
            review_body(&state, &signed, seq, StatusCode::CONFLICT, Some(error)).await
        }
        ReviewResult::NotCounting(_) => {
            let error = tr(
                lang,
                "این رقم شمرده نمی‌شود (یا پیش‌تر باطل شده است) و باطل کردن ندارد.",
                "This reading does not count (or was voided already): there is nothing to void.",
            );
            review_body(&state, &signed, seq, StatusCode::CONFLICT, Some(error)).await
        }
        ReviewResult::Conflict(..) => {
            let error = tr(
                lang,
                "تأیید انجام نشد: کنتور با این رقم به عقب می‌رفت. توضیح زیر را ببینید.",
                "Not approved: with this reading the meter would go back. See below.",
            );
            review_body(&state, &signed, seq, StatusCode::CONFLICT, Some(error)).await
        }
        ReviewResult::CannotCount => {
            let error = tr(
                lang,
                "این ثبت رقم یا کنتور معتبری ندارد و فقط رد می‌شود.",
                "This declaration has no valid reading or meter; it can only be rejected.",
            );
            review_body(&state, &signed, seq, StatusCode::UNPROCESSABLE_ENTITY, Some(error)).await
        }
        ReviewResult::NotFound => Err(refusal(
            lang,
            Some(&signed.session),
            StatusCode::NOT_FOUND,
            tr(lang, "چنین ثبتی نیست.", "No such declaration."),
        )),
    }
}

/// A declaration that came by SMS hears the decision by SMS: an approval, a rejection, or a
/// void (the one decision that can follow an acceptance the subscriber was already told of).
async fn notify_by_sms(state: &AppState, declaration: &crate::store::StoredDeclaration) {
    let (Some(config), Some(to), Some(code)) =
        (state.sms.as_ref(), declaration.sender.as_ref(), declaration.tracking_code())
    else {
        return;
    };
    if declaration.channel != crate::store::Channel::Sms.as_str() {
        return;
    }
    let (text, decision) = match (&declaration.void, &declaration.review) {
        (Some(void), _) => (sms::void_reply(code.as_str(), &void.reason), "void"),
        (None, Some(review)) => (
            sms::review_reply(code.as_str(), review.approved, review.reason.as_deref()),
            if review.approved { "approved" } else { "rejected" },
        ),
        (None, None) => return,
    };
    // One reply per decision on a declaration, however often the page is sent.
    let answers = format!("decision:{}:{decision}", declaration.seq);
    if let Err(e) = crate::replies::queue(&*state.store, &config.wake, &answers, to, &text).await {
        tracing::error!(error = %crate::writer::error_chain(&e), seq = declaration.seq,
            "the decision was stored; its sms to the subscriber could not be queued");
    }
}

#[derive(serde::Deserialize)]
struct AuditQuery {
    before: Option<u64>,
}

async fn audit_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Page {
    let signed = Signed::with_role(&state, &headers, |role| role.audits()).await?;
    let lang = signed.lang;
    const PAGE: u32 = 50;
    let before = query.ok().and_then(|Query(q)| q.before);
    let rows = state.store.audit_log(before, PAGE).await.map_err(|e| store_failed(lang, &e))?;
    let older = (rows.len() == PAGE as usize).then(|| rows.last().map(|r| r.seq)).flatten();
    let body = pages::audit(lang, &rows, older);
    Ok(html(StatusCode::OK, &signed.frame(tr(lang, "گزارش رویدادها", "Audit log")), body))
}

// SMS replies that failed for good.

async fn replies_page(State(state): State<AppState>, headers: HeaderMap) -> Page {
    let signed = Signed::with_role(&state, &headers, |role| role.audits()).await?;
    let lang = signed.lang;
    let queue = state.store.replies();
    let counts = queue.reply_counts().await.map_err(|e| store_failed(lang, &e))?;
    let failed = queue.failed_replies(100).await.map_err(|e| store_failed(lang, &e))?;
    let inbox = state.store.inbox().inbox_counts().await.map_err(|e| store_failed(lang, &e))?;
    let body = pages::replies(lang, &signed.session.csrf, counts, inbox, &failed);
    Ok(html(StatusCode::OK, &signed.frame(tr(lang, "پیامک‌های پاسخ", "SMS replies")), body))
}

/// Puts a reply that failed for good back in the queue, as it was.
async fn send_again(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Page {
    let (signed, _) = Signed::post(&state, &headers, form, |role| role.audits()).await?;
    let lang = signed.lang;
    let queued =
        state.store.replies().send_again(id, crate::store::now_ms()).await.map_err(|e| store_failed(lang, &e))?;
    if queued {
        signed.audit(&state, "reply_sent_again", &id.to_string()).await;
        if let Some(sms) = state.sms.as_ref() {
            sms.wake.notify_one();
        }
    }
    Ok(see_other("/office/replies"))
}

// Complaints.

#[derive(serde::Deserialize)]
struct AnsweredQuery {
    answered: Option<u64>,
}

async fn complaints_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<AnsweredQuery>, QueryRejection>,
) -> Page {
    let signed = Signed::from_request(&state, &headers).await?;
    let lang = signed.lang;
    let role = signed.session.role;
    let open = if role.reviews() {
        Some(state.store.open_complaints(200).await.map_err(|e| store_failed(lang, &e))?)
    } else {
        None
    };
    let filed = if role.declares() {
        let rows = state
            .store
            .office_complaints(&signed.session.office, start_of_today(), 200)
            .await
            .map_err(|e| store_failed(lang, &e))?;
        Some(rows)
    } else {
        None
    };
    let answered = query.ok().and_then(|Query(q)| q.answered);
    let body = view! {
        {answered.map(|_| view! { <p role="status">{tr(lang, "پاسخ ثبت شد.", "The answer is stored.")}</p> })}
        {filed.map(|rows| view! {
            <p><a href="/office/complaints/new">{tr(lang, "ثبت شکایت برای مشترک", "File a complaint for a subscriber")}</a></p>
            <h2>{tr(lang, "شکایت‌های امروز این دفتر", "This office's complaints today")}</h2>
            {pages::complaints(lang, &rows)}
        })}
        {open.map(|rows| view! {
            <h2>{tr(lang, "شکایت‌های بی‌پاسخ (قدیمی‌ترین اول)", "Unanswered complaints (oldest first)")}</h2>
            {pages::complaints(lang, &rows)}
        })}
    };
    Ok(html(StatusCode::OK, &signed.frame(tr(lang, "شکایت‌ها", "Complaints")), body))
}

async fn complaint_form(State(state): State<AppState>, headers: HeaderMap) -> Page {
    let signed = Signed::with_role(&state, &headers, |role| role.declares()).await?;
    let lang = signed.lang;
    let form = pages::ComplaintForm { id: Uuid::now_v7().to_string(), ..pages::ComplaintForm::default() };
    let body = pages::complaint_form(lang, &signed.session.csrf, &form, None);
    Ok(html(StatusCode::OK, &signed.frame(tr(lang, "ثبت شکایت", "File a complaint")), body))
}

async fn file_complaint(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<pages::ComplaintForm>, FormRejection>,
) -> Page {
    let (signed, mut form) = Signed::post(&state, &headers, form, |role| role.declares()).await?;
    let lang = signed.lang;
    let title = tr(lang, "ثبت شکایت", "File a complaint");
    let again = |form: &pages::ComplaintForm, error: &'static str| {
        let body = pages::complaint_form(lang, &signed.session.csrf, form, Some(error));
        html(StatusCode::UNPROCESSABLE_ENTITY, &signed.frame(title), body)
    };
    let id = Uuid::parse_str(form.id.trim()).unwrap_or_else(|_| Uuid::now_v7());
    // Written when the form was opened: the time in its UUIDv7, so that the same form sent twice
    // is the same complaint.
    let made_at = id
        .get_timestamp()
        .map(|t| t.to_unix())
        .and_then(|(secs, nanos)| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(secs) * 1_000_000_000 + i128::from(nanos)).ok()
        })
        .unwrap_or_else(OffsetDateTime::now_utc);
    let submission = shared::wire::ComplaintSubmission {
        id,
        subscription: form.subscription.clone(),
        // The operator has the citizen in front of them: the office vouches for the meter.
        meter_serial: None,
        kind: shared::wire::ComplaintKind::from_str_opt(&form.kind).unwrap_or(shared::wire::ComplaintKind::Service),
        about: Some(form.about.clone()),
        text: form.text.clone(),
        made_at,
    };
    let staff = Staff { operator: signed.session.username.clone(), office: signed.session.office.clone() };
    let store = state.store.as_ref();
    let checked = crate::complaints::check(store, &submission, crate::store::Channel::Office, None, Some(staff))
        .await
        .map_err(|e| store_failed(lang, &e))?;
    let complaint = match checked {
        Ok(complaint) => complaint,
        Err(code) => return Ok(again(&form, code.message(lang))),
    };
    let seq =
        match store.file_complaint(&complaint, OffsetDateTime::now_utc()).await.map_err(|e| store_failed(lang, &e))? {
            crate::store::Filed::New(seq) => {
                let number = shared::ComplaintNumber::from_sequence(seq).map(|n| n.to_string()).unwrap_or_default();
                let detail = format!("complaint {number} for {}", complaint.subscription);
                signed.audit(&state, "complaint_filed", &detail).await;
                seq
            }
            crate::store::Filed::Replayed(seq) => seq,
            crate::store::Filed::Conflict => {
                form.id = Uuid::now_v7().to_string();
                return Ok(again(&form, shared::wire::ComplaintCode::IdConflict.message(lang)));
            }
        };
    Ok(see_other(&format!("/office/complaints/{seq}")))
}

async fn complaint_body(
    state: &AppState,
    signed: &Signed,
    seq: u64,
    status: StatusCode,
    error: Option<&'static str>,
) -> Page {
    let lang = signed.lang;
    let not_found = || {
        refusal(lang, Some(&signed.session), StatusCode::NOT_FOUND, tr(lang, "چنین شکایتی نیست.", "No such complaint."))
    };
    let found = state.store.complaint(seq).await.map_err(|e| store_failed(lang, &e))?;
    let role = signed.session.role;
    let visible =
        found.filter(|c| role.reviews() || c.staff.as_ref().is_some_and(|s| s.office == signed.session.office));
    let Some(complaint) = visible else { return Err(not_found()) };
    let about = match complaint.about_seq {
        Some(seq) => state.store.declaration(seq).await.map_err(|e| store_failed(lang, &e))?,
        None => None,
    };
    // Reviewers see the disputed declaration's photo (only they may open photos).
    let photo = match (complaint.about_seq, role.reviews()) {
        (Some(seq), true) => state.store.photos().photo(seq).await.map_err(|e| store_failed(lang, &e))?,
        _ => None,
    };
    let photo = photo.zip(complaint.about_seq).map(|(p, seq)| (seq, p.width, p.height));
    let body = view! {
        {error.map(|e| view! { <p class="error" role="alert">{e}</p> })}
        {pages::complaint(lang, &signed.session.csrf, &complaint, about.as_ref(), photo, role.reviews())}
    };
    Ok(html(status, &signed.frame(tr(lang, "شکایت", "Complaint")), body))
}

async fn complaint_page(State(state): State<AppState>, headers: HeaderMap, Path(seq): Path<u64>) -> Page {
    let signed = Signed::from_request(&state, &headers).await?;
    complaint_body(&state, &signed, seq, StatusCode::OK, None).await
}

#[derive(serde::Deserialize)]
struct AnswerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    answer: String,
}

async fn answer_complaint(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(seq): Path<u64>,
    form: Result<Form<AnswerForm>, FormRejection>,
) -> Page {
    let (signed, form) = Signed::post(&state, &headers, form, |role| role.reviews()).await?;
    let lang = signed.lang;
    let answer: String = form.answer.trim().chars().take(2000).collect();
    if answer.is_empty() {
        let error = tr(lang, "متن پاسخ را بنویسید.", "Write the answer.");
        return complaint_body(&state, &signed, seq, StatusCode::UNPROCESSABLE_ENTITY, Some(error)).await;
    }
    if state.store.complaint(seq).await.map_err(|e| store_failed(lang, &e))?.is_none() {
        return complaint_body(&state, &signed, seq, StatusCode::NOT_FOUND, None).await;
    }
    let stored = state
        .store
        .answer_complaint(seq, &answer, &signed.session.username, OffsetDateTime::now_utc())
        .await
        .map_err(|e| store_failed(lang, &e))?;
    if !stored {
        let error = tr(lang, "به این شکایت پیش‌تر پاسخ داده شده است.", "This complaint was already answered.");
        return complaint_body(&state, &signed, seq, StatusCode::CONFLICT, Some(error)).await;
    }
    Ok(see_other(&format!("/office/complaints?answered={seq}")))
}
