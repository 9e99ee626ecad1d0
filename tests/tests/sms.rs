//! The SMS channel over HTTP, as the gateway uses it: real-world messages, replays of one
//! `message_id`, the shared secret, unregistered senders, order with the web app's declarations,
//! and replies sent through a real local HTTP receiver. On SQLite and on PostgreSQL.

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use serde_json::{Value, json};
use server::gateways::UrlTemplate;
use server::gateways::{Gateway as Kind, GatewaySettings};
use server::replies::{ReplySender, Retry, SendError};
use server::sms::{PullSettings, TwilioWebhook};
use server::store::{NewReply, PulledMessage, Store as _};
use shared::TrackingCode;
use tests::{Backend, PHONE, SMS_SECRET, SMS_SECRET_HEADER, SUB, TestServer, submission};
use uuid::Uuid;

tests::on_both_backends!(
    a_text_from_the_registered_phone_is_accepted,
    one_message_id_is_one_declaration,
    other_phones_go_to_review,
    the_secret_is_required,
    form_fields_work_too,
    messages_that_are_not_declarations_get_the_format,
    an_unknown_subscription_is_named_as_such,
    sms_and_app_share_one_chain,
    the_apps_fallback_sms_is_the_same_reading_however_late,
    replies_reach_the_gateway,
    the_gateways_own_doors,
    replies_wait_out_an_outage_and_fail_visibly,
    two_instances_never_claim_one_reply,
    messages_fetched_from_a_gateways_inbox,
    one_instance_reads_an_inbox_at_a_time,
);

fn persian_digits_only(text: &str) -> String {
    text.chars().filter_map(|c| shared::digits::digit_value(c).map(|d| char::from(b'0' + d))).collect()
}

async fn a_text_from_the_registered_phone_is_accepted(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server.sms("+989121111111", "\u{200F}۱۰۰۸۷ ٭ ۵ ٭ ۱۱۱۱۲۲۲۲۳۳", "gw-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted", "{body}");
    let code = body["tracking_code"].as_str().expect("a tracking code").to_owned();
    assert!(TrackingCode::parse(&code).is_some());
    let reply = body["reply"].as_str().expect("a reply");
    assert!(reply.contains("کد رهگیری"), "{reply}");
    // The reply spells the tracking code and the consumption in Persian digits.
    assert!(persian_digits_only(reply).contains(&code), "{reply}");
    assert!(reply.contains("۸۷ مترمکعب"), "{reply}");
    let stored = server.store.declarations_of(SUB).await.expect("read back");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].reading, Some(10_087));
    server.finish().await;
}

async fn one_message_id_is_one_declaration(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = server.sms(PHONE, "10050*5*1111222233", "gw-7").await;
    let again = server.sms(PHONE, "10050*5*1111222233", "gw-7").await;
    assert_eq!(first, again, "a redelivered message gets the first reply");
    assert_eq!(server.stored().await, 1);
    // A different message id with the same reading is the same declaration sent twice.
    let twice = server.sms(PHONE, "10050*5*1111222233", "gw-8").await;
    assert_eq!(twice.1["tracking_code"], first.1["tracking_code"], "{}", twice.1);
    // A message without an id cannot be told from a redelivery: refused, nothing stored, and the
    // next sender is not taken for a conflict with it.
    for id in ["", "  "] {
        let (status, body) = server.sms("09123330000", "10090*5*4444555566", id).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_envelope")), "{body}");
    }
    assert_eq!(server.stored().await, 2);
    server.finish().await;
}

async fn other_phones_go_to_review(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server.sms("09350000000", "10050*5*1111222233", "gw-2").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "needs_review", "{body}");
    assert!(body["tracking_code"].is_string());
    let stored = server.store.declarations_of(SUB).await.expect("read back");
    assert_eq!((stored[0].code, stored[0].counts), (Some(shared::Code::UnverifiedSender), false));
    // An unknown subscription is refused whatever the phone.
    let (_, body) = server.sms(PHONE, "10050*5*99998888", "gw-3").await;
    assert_eq!(body["status"], "rejected", "{body}");
    server.finish().await;
}

async fn the_secret_is_required(backend: Backend) {
    let server = TestServer::start(backend).await;
    let post = |secret: Option<&'static str>| {
        let mut request = server
            .http
            .post(format!("{}/api/v1/sms/inbound", server.base))
            .json(&json!({"from": PHONE, "text": "10050*5*1111222233", "message_id": "gw-9"}));
        if let Some(secret) = secret {
            request = request.header(SMS_SECRET_HEADER, secret);
        }
        request.send()
    };
    assert_eq!(post(None).await.expect("answer").status().as_u16(), 401);
    let wrong = post(Some("test-secreT")).await.expect("answer");
    assert_eq!(wrong.status().as_u16(), 401);
    let body: Value = wrong.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(server.stored().await, 0, "nothing stored without the secret");
    assert_eq!(post(Some(SMS_SECRET)).await.expect("answer").status().as_u16(), 200);
    server.finish().await;
}

async fn form_fields_work_too(backend: Backend) {
    let server = TestServer::start(backend).await;
    let body = "from=%2B989121111111&to=500025194&text=10050*5*1111222233&message_id=gw-form";
    let response = server
        .http
        .post(format!("{}/api/v1/sms/inbound", server.base))
        .header(SMS_SECRET_HEADER, SMS_SECRET)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "accepted", "{body}");
    server.finish().await;
}

async fn messages_that_are_not_declarations_get_the_format(backend: Backend) {
    let server = TestServer::start(backend).await;
    for (i, text) in ["سلام", "10050*4*1111222233", "10050", "abc*5*1111222233", ""].iter().enumerate() {
        let (status, body) = server.sms(PHONE, text, &format!("gw-bad-{i}")).await;
        assert_eq!(status, 200, "{text:?}: {body}");
        let reply = body["reply"].as_str().unwrap_or("");
        assert!(reply.contains("رقم کنتور*۵*کد اشتراک"), "{text:?}: {reply}");
        assert!(body.get("status").is_none());
    }
    assert_eq!(server.stored().await, 0);
    server.finish().await;
}

async fn an_unknown_subscription_is_named_as_such(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server.sms(PHONE, "10050*5*9999888877", "gw-unknown").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "rejected", "{body}");
    let reply = body["reply"].as_str().expect("a reply");
    // The sender typed no serial: the reply speaks of the subscription code only.
    assert!(reply.contains("کد اشتراک") && !reply.contains("سریال"), "{reply}");
    server.finish().await;
}

async fn sms_and_app_share_one_chain(backend: Backend) {
    let server = TestServer::start(backend).await;
    // The app's reading of two hours ago arrives first; an SMS received yesterday arrives after.
    let app = server.sync(vec![submission(Uuid::new_v4(), 10_100, &server.hours_ago(2))]).await;
    assert_eq!(app[0]["consumption_m3"], 100);
    let (_, body) = server
        .sms_fields(&json!({"from": PHONE, "text": "10060*5*1111222233", "message_id": "gw-late",
            "received_at": server.hours_ago(24)}))
        .await;
    assert_eq!(body["status"], "accepted", "{body}");
    let chain: Vec<(Option<u64>, Option<u64>)> = server
        .store
        .declarations_of(SUB)
        .await
        .expect("read back")
        .iter()
        .map(|d| (d.reading, d.consumption_m3))
        .collect();
    assert_eq!(chain, [(Some(10_060), Some(60)), (Some(10_100), Some(40))]);
    server.finish().await;
}

async fn the_apps_fallback_sms_is_the_same_reading_however_late(backend: Backend) {
    let server = TestServer::start(backend).await;
    // Read and entered in the app ten days ago; the app's declaration got through, and so, ten
    // days later, did the SMS the subscriber had tapped as a fallback (it sat in the phone's
    // outbox out of coverage). The gateway dates it today, past the window that pairs repeats.
    let id = Uuid::now_v7();
    let app = server.sync(vec![submission(id, 10_030, &server.hours_ago(240))]).await;
    let tracking = app[0]["tracking_code"].as_str().expect("a tracking code").to_owned();
    let subscription = shared::SubscriptionNumber::parse(SUB).expect("a subscription");
    let reading = shared::Reading::new(10_030).expect("a reading");
    let text = shared::sms::body(reading, &subscription, &shared::Receipt::of(id));
    let (_, body) = server
        .sms_fields(
            &json!({"from": PHONE, "text": text, "message_id": "gw-fallback", "received_at": server.hours_ago(0)}),
        )
        .await;
    assert_eq!(
        (body["status"].as_str(), body["tracking_code"].as_str()),
        (Some("accepted"), Some(tracking.as_str())),
        "one reading, one tracking code: {body}"
    );
    // The same without the receipt, as a person would type it: a second declaration of the
    // same number ten days on, which counts nothing more.
    let (_, plain) = server
        .sms_fields(&json!({"from": PHONE, "text": "10030*5*1111222233", "message_id": "gw-typed",
            "received_at": server.hours_ago(0)}))
        .await;
    assert_ne!(plain["tracking_code"].as_str(), Some(tracking.as_str()), "{plain}");
    let mut stored = server.store.declarations_of(SUB).await.expect("read back");
    stored.sort_by_key(|d| d.seq);
    let counting: Vec<(Option<u64>, Option<u64>)> =
        stored.iter().filter(|d| d.counts).map(|d| (d.reading, d.consumption_m3)).collect();
    assert_eq!(counting, [(Some(10_030), Some(30)), (Some(10_030), Some(0))]);
    assert!(stored[1].duplicate_of.is_some(), "the fallback SMS is a repeat of the app's declaration");
    server.finish().await;
}

/// A stand-in for the SMS gateway's send API: a real HTTP server on a local port that fails the
/// first request and records the rest.
#[derive(Clone, Default)]
struct Gateway {
    received: Arc<Mutex<Vec<(String, String)>>>,
    calls: Arc<Mutex<u32>>,
}

async fn gateway_send(
    State(gateway): State<Gateway>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> axum::http::StatusCode {
    let mut calls = gateway.calls.lock().expect("lock");
    *calls += 1;
    if *calls == 1 {
        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
    }
    let to = query.get("to").cloned().unwrap_or_default();
    let text = query.get("text").cloned().unwrap_or_default();
    gateway.received.lock().expect("lock").push((to, text));
    axum::http::StatusCode::OK
}

async fn replies_reach_the_gateway(backend: Backend) {
    let gateway = Gateway::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let app = axum::Router::new().route("/send", axum::routing::get(gateway_send)).with_state(gateway.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let template = format!("http://{address}/send?to={{to}}&text={{text}}");
    let server = TestServer::start_with(backend, |options| {
        if let Some(sms) = options.sms.as_mut() {
            sms.sender = Arc::new(UrlTemplate::new(template).expect("template"));
            sms.retry = Retry {
                attempts: 4,
                first_delay: std::time::Duration::from_millis(10),
                max_delay: std::time::Duration::from_secs(1),
            };
        }
    })
    .await;
    let (_, body) = server.sms(PHONE, "10050*5*1111222233", "gw-send").await;
    let reply = body["reply"].as_str().expect("reply").to_owned();
    // The first attempt fails; the retry delivers. Wait for the background send, boundedly.
    let mut delivered = Vec::new();
    for _ in 0..500 {
        delivered = gateway.received.lock().expect("lock").clone();
        if !delivered.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(delivered, [(PHONE.to_owned(), reply)]);
    assert_eq!(*gateway.calls.lock().expect("lock"), 2, "one failure, one success");
    assert_eq!(server.stored().await, 1, "the declaration was stored whatever the gateway did");

    // Staff void it later: the subscriber, told it was accepted, is told by SMS that it is not.
    server.add_operator("rev", server::store::Role::Reviewer, "Billing", "correct horse battery").await;
    let reviewer = server.console();
    assert_eq!(reviewer.login("rev", "correct horse battery").await.status, 303);
    let seq = server.store.declarations_of(SUB).await.expect("read")[0].seq;
    let path = format!("/office/review/{seq}");
    let csrf = reviewer.csrf(&path).await;
    let voided =
        reviewer.post(&path, &[("csrf", &csrf), ("decision", "void"), ("reason", "خوانش مأمور ۱۰۰۲۰ است")]).await;
    assert_eq!(voided.status, 303, "{}", voided.body);
    for _ in 0..500 {
        delivered = gateway.received.lock().expect("lock").clone();
        if delivered.len() > 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let told = delivered.get(1).map(|(to, text)| (to.as_str(), text.as_str()));
    assert!(
        told.is_some_and(|(to, text)| to == PHONE
            && text.contains("باطل شد")
            && text.contains("خوانش مأمور ۱۰۰۲۰ است")),
        "{delivered:?}"
    );
    server.finish().await;
}

const TWILIO_TOKEN: &str = "twilio-auth-token-0123456789abcdef";
/// The webhook's address as Twilio calls it: a TLS proxy's, not the test server's own.
const TWILIO_URL: &str = "https://kontor.example/api/v1/sms/twilio";

/// Kavenegar's forward (form fields, the secret in the URL) and Twilio's signed webhook, each in
/// the gateway's own shape, lead to the same declarations and replies as Kontor's own webhook.
async fn the_gateways_own_doors(backend: Backend) {
    let server = TestServer::start_with(backend, |options| {
        if let Some(sms) = options.sms.as_mut() {
            sms.twilio = Some(TwilioWebhook { auth_token: TWILIO_TOKEN.into(), url: TWILIO_URL.into() });
        }
    })
    .await;
    let kavenegar = |secret: &str| format!("{}/api/v1/sms/kavenegar/{secret}", server.base);
    let form = [("messageid", "4175921"), ("from", PHONE), ("to", "10004346"), ("message", "10050*5*1111222233")];
    let wrong = server.http.post(kavenegar("not-the-secret")).form(&form).send().await.expect("answers");
    assert_eq!(wrong.status(), 401);
    assert_eq!(server.stored().await, 0, "nothing stored without the secret");
    let first = server.http.post(kavenegar(SMS_SECRET)).form(&form).send().await.expect("answers");
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.expect("json");
    assert_eq!(first["status"], "accepted", "{first}");
    let again: Value =
        server.http.post(kavenegar(SMS_SECRET)).form(&form).send().await.expect("answers").json().await.expect("json");
    assert_eq!(again["tracking_code"], first["tracking_code"], "a redelivery is the same declaration");
    let missing = server.http.post(kavenegar(SMS_SECRET)).form(&form[1..]).send().await.expect("answers");
    assert_eq!(missing.status(), 400, "no messageid");
    assert_eq!(server.stored().await, 1);

    let fields: Vec<(String, String)> = [
        ("ToCountry", "US"),
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("From", "+989121111111"),
        ("To", "+15005550006"),
        ("Body", "۱۰۰۶۰*۵*۱۱۱۱۲۲۲۲۳۳"),
        ("NumMedia", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let twilio = |fields: &[(String, String)], signature: &str| {
        server
            .http
            .post(format!("{}/api/v1/sms/twilio", server.base))
            .header("x-twilio-signature", signature)
            .form(fields)
            .send()
    };
    let signature = server::sms::twilio_signature(TWILIO_TOKEN, TWILIO_URL, &fields);
    let signed = twilio(&fields, &signature).await.expect("answers");
    assert_eq!(signed.status(), 200);
    assert!(signed.headers()["content-type"].to_str().is_ok_and(|t| t.starts_with("text/xml")));
    assert!(signed.text().await.expect("body").contains("<Response>"), "TwiML");
    let mut tampered = fields.clone();
    tampered[5].1 = "99999*5*1111222233".into();
    assert_eq!(twilio(&tampered, &signature).await.expect("answers").status(), 401, "the body is signed");
    assert_eq!(twilio(&fields, "").await.expect("answers").status(), 401, "no signature");
    let stored = server.store.declarations_of(SUB).await.expect("read");
    let readings: Vec<_> = stored.iter().map(|d| d.reading).collect();
    assert_eq!(readings, [Some(10_050), Some(10_060)]);

    // Each message is answered once, however often it came.
    let mut counts = server::store::ReplyCounts::default();
    for _ in 0..500 {
        counts = server.store.replies().reply_counts().await.expect("counts");
        if counts.waiting == 0 && counts.sent == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!((counts.waiting, counts.sent, counts.failed), (0, 2, 0), "one reply per message");
    server.finish().await;
}

/// A gateway that refuses everything until it is told to take messages.
#[derive(Default)]
struct Flaky {
    up: std::sync::atomic::AtomicBool,
    sent: Mutex<Vec<(String, String)>>,
    tries: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl ReplySender for Flaky {
    async fn send(&self, to: &str, text: &str) -> Result<Option<String>, SendError> {
        self.tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if !self.up.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SendError::Refused(reqwest::StatusCode::SERVICE_UNAVAILABLE));
        }
        self.sent.lock().expect("lock").push((to.to_owned(), text.to_owned()));
        Ok(Some(format!("gw-{}", self.sent.lock().expect("lock").len())))
    }
}

/// While the gateway is down a reply is retried, then given up and listed for the console; sent
/// again from there once the gateway is back, it arrives. A reply queued by an instance that
/// then stopped is sent by this one.
async fn replies_wait_out_an_outage_and_fail_visibly(backend: Backend) {
    let gateway = Arc::new(Flaky::default());
    let sender = gateway.clone();
    let server = TestServer::start_with(backend, move |options| {
        if let Some(sms) = options.sms.as_mut() {
            sms.sender = sender;
            sms.retry = Retry {
                attempts: 3,
                first_delay: std::time::Duration::from_millis(20),
                max_delay: std::time::Duration::from_millis(40),
            };
        }
    })
    .await;
    let (status, body) = server.sms(PHONE, "10050*5*1111222233", "gw-down").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("accepted")), "the reading does not wait for the reply");
    let mut failed = Vec::new();
    for _ in 0..500 {
        failed = server.store.replies().failed_replies(10).await.expect("failed");
        if !failed.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(failed.len(), 1, "given up after its attempts");
    assert_eq!((failed[0].attempts, failed[0].recipient.as_str()), (3, PHONE));
    assert!(failed[0].last_error.as_deref().is_some_and(|e| e.contains("503")), "{failed:?}");
    assert_eq!(gateway.tries.load(std::sync::atomic::Ordering::SeqCst), 3);

    gateway.up.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(server.store.replies().send_again(failed[0].id, server::store::now_ms()).await.expect("again"));
    // Another instance queued this one and stopped before sending it.
    let orphan = NewReply { answers: "sms:orphan-1", recipient: "09350000000", body: "orphan", now_ms: 0 };
    assert!(server.store.replies().queue_reply(&orphan).await.expect("queue"));
    let mut sent = Vec::new();
    for _ in 0..500 {
        sent = gateway.sent.lock().expect("lock").clone();
        if sent.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let recipients: std::collections::BTreeSet<&str> = sent.iter().map(|(to, _)| to.as_str()).collect();
    assert_eq!(recipients, [PHONE, "09350000000"].into_iter().collect(), "{sent:?}");
    assert!(sent.iter().any(|(_, text)| text == body["reply"].as_str().unwrap_or("-")), "the webhook's reply");
    let counts = server.store.replies().reply_counts().await.expect("counts");
    assert_eq!((counts.waiting, counts.sent, counts.failed), (0, 2, 0));
    server.finish().await;
}

/// Two instances polling one database at once (two claimers on one store here, each on its own
/// connections): every reply is claimed by exactly one of them.
async fn two_instances_never_claim_one_reply(backend: Backend) {
    let server = TestServer::start_with(backend, |options| options.sms = None).await;
    let now = server::store::now_ms();
    for n in 0..60 {
        let answers = format!("sms:claim-{n}");
        let reply = NewReply { answers: &answers, recipient: PHONE, body: "text", now_ms: now - 1 };
        server.store.replies().queue_reply(&reply).await.expect("queue");
    }
    let claimer = |store: Arc<server::store::SqlStore>| async move {
        let mut mine = Vec::new();
        loop {
            let claimed = store.replies().claim_replies(now, now + 60_000, 7).await.expect("claim");
            if claimed.is_empty() {
                return mine;
            }
            mine.extend(claimed.into_iter().map(|r| r.id));
        }
    };
    let (a, b) = tokio::join!(tokio::spawn(claimer(server.store.clone())), tokio::spawn(claimer(server.store.clone())));
    let (a, b) = (a.expect("first claimer"), b.expect("second claimer"));
    let all: std::collections::BTreeSet<i64> = a.iter().chain(&b).copied().collect();
    assert_eq!(a.len() + b.len(), 60, "each claimed once: {} + {}", a.len(), b.len());
    assert_eq!(all.len(), 60);
    server.finish().await;
}

/// An SMS.ir account as its API shows it: an inbox that hands each message out once
/// (`GET /v1/receive/latest`) and the send API (`POST /v1/send/bulk`), which records what it sent.
#[derive(Default)]
struct SmsirAccount {
    inbox: Mutex<Vec<Value>>,
    sent: Mutex<Vec<(String, String)>>,
}

const SMSIR_KEY: &str = "smsir-test-key";

async fn smsir_account(account: Arc<SmsirAccount>) -> String {
    use axum::routing::{get, post};
    async fn latest(State(account): State<Arc<SmsirAccount>>, headers: axum::http::HeaderMap) -> axum::Json<Value> {
        if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(SMSIR_KEY) {
            return axum::Json(json!({"status": 10, "message": "کلید نامعتبر", "data": null}));
        }
        let taken: Vec<Value> = std::mem::take(&mut *account.inbox.lock().expect("lock"));
        axum::Json(json!({"status": 1, "message": "موفق", "data": taken}))
    }
    async fn send(State(account): State<Arc<SmsirAccount>>, axum::Json(body): axum::Json<Value>) -> axum::Json<Value> {
        let to = body["mobiles"][0].as_str().unwrap_or_default().to_owned();
        let text = body["messageText"].as_str().unwrap_or_default().to_owned();
        account.sent.lock().expect("lock").push((to, text));
        axum::Json(json!({"status": 1, "message": "موفق", "data": {"packId": "p", "messageIds": [1], "cost": 1.0}}))
    }
    let app = axum::Router::new()
        .route("/v1/receive/latest", get(latest))
        .route("/v1/send/bulk", post(send))
        .with_state(account);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

fn smsir_message(id: u64, mobile: u64, text: &str) -> Value {
    json!({"receiveReturnId": id, "messageText": text, "number": 30004505000017_u64, "mobile": mobile,
        "receivedDateTime": time::OffsetDateTime::now_utc().unix_timestamp()})
}

/// With `--sms-pull` and SMS.ir, messages are fetched from its inbox, judged like pushed ones
/// and answered through its send API: once each, however often they are handed out; a message
/// stored by an instance that stopped before judging it is judged by this one. No shared secret
/// is set, and the doors for pushed messages stay shut.
async fn messages_fetched_from_a_gateways_inbox(backend: Backend) {
    let account = Arc::new(SmsirAccount::default());
    let base = smsir_account(account.clone()).await;
    let settings = GatewaySettings {
        key: Some(SMSIR_KEY.into()),
        line: Some("30004505000017".into()),
        base_url: Some(base),
        ..GatewaySettings::default()
    };
    let server = TestServer::start_with(backend, |options| {
        if let Some(sms) = options.sms.as_mut() {
            sms.secret = String::new();
            sms.sender = server::gateways::sender(Kind::Smsir, &settings).expect("sender");
            sms.pull = Some(PullSettings {
                reader: server::gateways::reader(Kind::Smsir, &settings).expect("reader"),
                every: std::time::Duration::from_millis(50),
            });
        }
    })
    .await;
    account.inbox.lock().expect("lock").extend([
        smsir_message(9001, 9121111111, "۱۰۰۵۰*۵*۱۱۱۱۲۲۲۲۳۳"),
        smsir_message(9002, 9350000000, "99960*5*4444555566"),
        smsir_message(9003, 9121111111, "what is my bill"),
    ]);
    // Stored by an instance that stopped before it judged it.
    let orphan = PulledMessage {
        message_id: "smsir:9000".into(),
        sender: "09121111111".into(),
        recipient: None,
        body: "10040*5*1111222233".into(),
        received_at: Some(server.hours_ago(48)),
    };
    let stored = server.store.inbox().keep_pulled("smsir", "gone", &[orphan], None, 0).await.expect("store");
    assert_eq!(stored, 1);

    let wait_for_sends = |n: usize| {
        let account = account.clone();
        async move {
            for _ in 0..500 {
                if account.sent.lock().expect("lock").len() >= n {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            account.sent.lock().expect("lock").clone()
        }
    };
    let sent = wait_for_sends(4).await;
    assert_eq!(sent.len(), 4, "one reply per message: {sent:?}");
    // SMS.ir hands 9001 out again (a retry on its side): the same declaration, no second reply.
    account.inbox.lock().expect("lock").push(smsir_message(9001, 9121111111, "۱۰۰۵۰*۵*۱۱۱۱۲۲۲۲۳۳"));
    for _ in 0..500 {
        if account.inbox.lock().expect("lock").is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut counts = server::store::InboxCounts::default();
    for _ in 0..500 {
        counts = server.store.inbox().inbox_counts().await.expect("counts");
        if counts.waiting == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!((counts.waiting, counts.done, counts.failed), (0, 4, 0), "the one handed out twice is one row");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let sent = account.sent.lock().expect("lock").clone();
    assert_eq!(sent.len(), 4, "{sent:?}");

    let stored = server.store.declarations_of(SUB).await.expect("read");
    let readings: Vec<_> = stored.iter().map(|d| (d.reading, d.status)).collect();
    let accepted = shared::Status::Accepted;
    assert_eq!(readings, [(Some(10_040), accepted), (Some(10_050), accepted)], "in the order they were read");
    let other = server.store.declarations_of(tests::SUB_WRAP).await.expect("read");
    let held: Vec<_> = other.iter().map(|d| (d.reading, d.status)).collect();
    assert_eq!(held, [(Some(99_960), shared::Status::NeedsReview)], "another phone's reading is held");
    let to = |phone: &str| sent.iter().filter(|(to, _)| to == phone).map(|(_, text)| text.clone()).collect::<Vec<_>>();
    let registered = to("09121111111");
    assert_eq!(registered.len(), 3, "{sent:?}");
    assert_eq!(registered.iter().filter(|t| t.contains("کد رهگیری")).count(), 2, "{registered:?}");
    assert_eq!(to("09350000000").len(), 1);

    // No secret: the push doors are shut.
    let (status, _) = server.sms(PHONE, "10070*5*1111222233", "gw-push").await;
    assert_eq!(status, 404);
    server.finish().await;
}

/// The lease on a gateway's inbox: one holder at a time, taken over only once it runs out, and
/// a holder that lost it cannot move the cursor. Stored messages are claimed by one judge each.
async fn one_instance_reads_an_inbox_at_a_time(backend: Backend) {
    let server = TestServer::start_with(backend, |options| options.sms = None).await;
    let inbox = server.store.inbox();
    assert_eq!(inbox.hold_pull("ippanel", "a", 1_000, 61_000).await.expect("hold"), Some(None));
    assert_eq!(inbox.hold_pull("ippanel", "b", 2_000, 62_000).await.expect("hold"), None, "held by a");
    assert_eq!(inbox.hold_pull("ippanel", "a", 30_000, 90_000).await.expect("hold"), Some(None), "renewed");
    let message = |n: u32| PulledMessage {
        message_id: format!("ippanel:{n}"),
        sender: PHONE.into(),
        recipient: None,
        body: "10050*5*1111222233".into(),
        received_at: None,
    };
    assert_eq!(inbox.keep_pulled("ippanel", "a", &[message(1)], Some("1"), 30_000).await.expect("keep"), 1);
    assert_eq!(inbox.hold_pull("ippanel", "b", 90_000, 150_000).await.expect("hold"), Some(Some("1".into())));
    // a, whose lease ran out mid-read, stores what it read but cannot move b's cursor.
    let late = [message(1), message(2)];
    assert_eq!(inbox.keep_pulled("ippanel", "a", &late, Some("2"), 95_000).await.expect("keep"), 1);
    assert_eq!(inbox.hold_pull("ippanel", "b", 96_000, 156_000).await.expect("hold"), Some(Some("1".into())));
    inbox.release_pull("ippanel", "b").await.expect("release");
    assert!(inbox.hold_pull("ippanel", "a", 97_000, 157_000).await.expect("hold").is_some(), "let go");

    // Racing holders at the same moment: exactly one wins each round.
    for round in 0..20_i64 {
        let at = 1_000_000 + round * 100_000;
        let (x, y) = tokio::join!(
            server.store.inbox().hold_pull("race", "x", at, at + 60_000),
            server.store.inbox().hold_pull("race", "y", at, at + 60_000)
        );
        let winners = usize::from(x.expect("x").is_some()) + usize::from(y.expect("y").is_some());
        assert_eq!(winners, 1, "round {round}");
    }

    let many: Vec<PulledMessage> = (10..50).map(message).collect();
    inbox.keep_pulled("ippanel", "a", &many, None, 0).await.expect("keep");
    let judge = |store: Arc<server::store::SqlStore>| async move {
        let mut mine = Vec::new();
        loop {
            let claimed = store.inbox().claim_pulled(1_000, 61_000, 7).await.expect("claim");
            if claimed.is_empty() {
                return mine;
            }
            mine.extend(claimed.into_iter().map(|m| m.id));
        }
    };
    let (a, b) = tokio::join!(tokio::spawn(judge(server.store.clone())), tokio::spawn(judge(server.store.clone())));
    let (a, b) = (a.expect("first"), b.expect("second"));
    let all: std::collections::BTreeSet<i64> = a.iter().chain(&b).copied().collect();
    assert_eq!((a.len() + b.len(), all.len()), (40, 40), "each claimed once: {} + {}", a.len(), b.len());
    server.finish().await;
}
