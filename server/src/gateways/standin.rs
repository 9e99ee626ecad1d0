//! Each adapter against a local stand-in that speaks its gateway's documented format: the
//! request's shape is checked the way the gateway would (where the key goes, which fields), and
//! the answers are the documented ones, successes and refusals, refusals inside a 200 included.
//! The stand-in refuses a request of the wrong shape, so an adapter that drifts fails here.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Form, Path};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

use super::{Gateway, GatewaySettings, sender};
use crate::replies::SendError;

const KEY: &str = "key-0123456789";
/// Recipients the stand-ins refuse: a number that is not one, and an account out of credit.
const BAD_NUMBER: &str = "09120000000";
const NO_CREDIT: &str = "09129999999";

fn is(to: &str, number: &str) -> bool {
    shared::sms::normalize_phone(to) == shared::sms::normalize_phone(number)
}

async fn kavenegar(Path(key): Path<String>, Form(form): Form<HashMap<String, String>>) -> (StatusCode, Json<Value>) {
    let refusal = |http: StatusCode, status: u16, message: &str| {
        (http, Json(json!({"return": {"status": status, "message": message}, "entries": null})))
    };
    if key != KEY {
        return refusal(StatusCode::FORBIDDEN, 403, "کلید شناسایی معتبر نمی‌باشد");
    }
    let (Some(to), Some(_)) = (form.get("receptor"), form.get("message")) else {
        return refusal(StatusCode::BAD_REQUEST, 400, "پارامترها ناقص هستند");
    };
    if is(to, BAD_NUMBER) {
        return refusal(StatusCode::from_u16(411).expect("status"), 411, "دریافت کننده نامعتبر است");
    }
    if is(to, NO_CREDIT) {
        return refusal(StatusCode::from_u16(418).expect("status"), 418, "اعتبار حساب شما کافی نیست");
    }
    (
        StatusCode::OK,
        Json(json!({"return": {"status": 200, "message": "تایید شد"},
            "entries": [{"messageid": 8792343, "message": form["message"], "status": 1, "statustext": "در صف ارسال",
                "sender": "10004346", "receptor": to, "date": 1356619709, "cost": 120}]})),
    )
}

async fn smsir(headers: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"status": 10, "message": "کلید وب سرویس نامعتبر است", "data": null})),
        );
    }
    let to = body["mobiles"][0].as_str().unwrap_or_default();
    if !body["lineNumber"].is_u64() || body["messageText"].as_str().is_none() || to.is_empty() {
        return (StatusCode::BAD_REQUEST, Json(json!({"status": 0, "message": "درخواست نامعتبر", "data": null})));
    }
    if is(to, NO_CREDIT) {
        // Refused inside an HTTP 200.
        return (StatusCode::OK, Json(json!({"status": 102, "message": "اعتبار کافی نیست", "data": null})));
    }
    (
        StatusCode::OK,
        Json(json!({"status": 1, "message": "موفق",
        "data": {"packId": "0b2b6a3c-0000-4000-8000-000000000001", "messageIds": [76543210], "cost": 1.0}})),
    )
}

async fn ippanel(headers: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let refusal = |http: StatusCode, code: &str, message: &str| {
        (
            http,
            Json(json!({"data": null, "meta": {"status": false, "message": message,
            "message_parameters": [], "message_code": code, "errors": {}}})),
        )
    };
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return refusal(StatusCode::UNAUTHORIZED, "400-1", "اطلاعات وارد شده صحیح نمی باشد");
    }
    let to = body["params"]["recipients"][0].as_str().unwrap_or_default();
    if body["sending_type"] != "webservice" || !to.starts_with("+98") || body["message"].as_str().is_none() {
        return refusal(StatusCode::UNPROCESSABLE_ENTITY, "400-2", "تکمیل گزینه پیام الزامی است");
    }
    if is(to, NO_CREDIT) {
        return refusal(StatusCode::OK, "400-4", "اعتبار کافی نیست");
    }
    (
        StatusCode::OK,
        Json(json!({"data": {"message_outbox_ids": [1123544244]},
        "meta": {"status": true, "message": "انجام شد", "message_parameters": [], "message_code": "200-1"}})),
    )
}

async fn twilio(
    Path(account): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    use base64::Engine as _;
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{account}:{KEY}")));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"code": 20003, "message": "Authenticate", "status": 401})));
    }
    let to = form.get("To").map(String::as_str).unwrap_or_default();
    if !form.contains_key("Body") || !form.contains_key("From") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"code": 21602, "message": "Message body is required.", "status": 400})),
        );
    }
    if !to.starts_with('+') || is(to, BAD_NUMBER) {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"code": 21211, "message": format!("The 'To' number {to} is not a valid phone number."), "status": 400}),
            ),
        );
    }
    (StatusCode::CREATED, Json(json!({"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued", "to": to})))
}

async fn magfa(headers: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    use base64::Engine as _;
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("kontor/gasco:{KEY}")));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::OK, Json(json!({"status": 18, "messages": null})));
    }
    let to = body["recipients"][0].as_str().unwrap_or_default();
    if body["senders"][0].as_str().is_none() || body["messages"][0].as_str().is_none() || to.is_empty() {
        return (StatusCode::OK, Json(json!({"status": 31, "messages": null})));
    }
    let status = if is(to, BAD_NUMBER) {
        1
    } else if is(to, NO_CREDIT) {
        14
    } else {
        0
    };
    let id = if status == 0 { json!(5_432_109_876_u64) } else { Value::Null };
    (
        StatusCode::OK,
        Json(json!({"status": 0, "messages": [{"status": status, "id": id, "userId": 7, "parts": 1,
        "tariff": 1.0, "alphabet": "UCS2", "recipient": to}]})),
    )
}

async fn ghasedak(headers: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    if headers.get("apikey").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"isSuccess": false, "statusCode": 401, "message": "کلید نامعتبر", "data": null})),
        );
    }
    let to = body["Receptor"].as_str().unwrap_or_default();
    if body["LineNumber"].as_str().is_none() || body["Message"].as_str().is_none() || to.is_empty() {
        return (
            StatusCode::OK,
            Json(json!({"isSuccess": false, "statusCode": 400, "message": "ورودی نامعتبر", "data": null})),
        );
    }
    if is(to, NO_CREDIT) {
        return (
            StatusCode::OK,
            Json(json!({"isSuccess": false, "statusCode": 402, "message": "اعتبار کافی نیست", "data": null})),
        );
    }
    (
        StatusCode::OK,
        Json(json!({"isSuccess": true, "statusCode": 200, "message": "با موفقیت انجام شد",
        "data": {"receptor": to, "lineNumber": body["LineNumber"], "cost": 1, "messageId": "3391127", "message": body["Message"]}})),
    )
}

async fn start() -> String {
    let app = axum::Router::new()
        .route("/v1/{key}/sms/send.json", post(kavenegar))
        .route("/v1/send/bulk", post(smsir))
        .route("/edge/api/send", post(ippanel))
        .route("/2010-04-01/Accounts/{account}/Messages.json", post(twilio))
        .route("/magfa/send", post(magfa))
        .route("/ghasedak/SendSingleSMS", post(ghasedak));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

fn settings(base: String, line: &str) -> GatewaySettings {
    GatewaySettings {
        key: Some(KEY.into()),
        account: Some("AC0123456789abcdef0123456789abcdef".into()),
        line: Some(line.into()),
        base_url: Some(base),
        url_template: None,
    }
}

/// What a send came to, in short: the gateway's id, or the refusal's code and whether it is final.
async fn outcome(gateway: Gateway, settings: &GatewaySettings, to: &str) -> Result<Option<String>, (String, bool)> {
    let sender = sender(gateway, settings).expect("configured");
    sender.send(to, "رقم کنتور ثبت شد. کد رهگیری: ۱۲۳").await.map_err(|e| {
        let code = match &e {
            SendError::Rejected { code, .. } => code.clone(),
            SendError::Refused(status) => status.as_u16().to_string(),
            other => other.to_string(),
        };
        (code, e.is_permanent())
    })
}

#[tokio::test]
async fn each_adapter_speaks_its_gateways_format() {
    let base = start().await;
    let ok = "09121234567";

    let kavenegar = settings(base.clone(), "10004346");
    assert_eq!(outcome(Gateway::Kavenegar, &kavenegar, ok).await, Ok(Some("8792343".into())));
    assert_eq!(outcome(Gateway::Kavenegar, &kavenegar, BAD_NUMBER).await, Err(("411".into(), true)));
    assert_eq!(outcome(Gateway::Kavenegar, &kavenegar, NO_CREDIT).await, Err(("418".into(), false)));
    let wrong_key = GatewaySettings { key: Some("other".into()), ..kavenegar.clone() };
    assert_eq!(outcome(Gateway::Kavenegar, &wrong_key, ok).await, Err(("403".into(), false)));

    let smsir = settings(base.clone(), "30007732903879");
    assert_eq!(outcome(Gateway::Smsir, &smsir, ok).await, Ok(Some("76543210".into())));
    assert_eq!(outcome(Gateway::Smsir, &smsir, NO_CREDIT).await, Err(("102".into(), false)), "refused inside a 200");
    let wrong_key = GatewaySettings { key: Some("other".into()), ..smsir.clone() };
    assert_eq!(outcome(Gateway::Smsir, &wrong_key, ok).await, Err(("10".into(), false)));

    let ippanel = settings(format!("{base}/edge"), "+983000505");
    assert_eq!(outcome(Gateway::Ippanel, &ippanel, ok).await, Ok(Some("1123544244".into())), "sent in E.164");
    assert_eq!(outcome(Gateway::Ippanel, &ippanel, NO_CREDIT).await, Err(("400-4".into(), false)), "inside a 200");

    let magfa =
        GatewaySettings { account: Some("kontor/gasco".into()), ..settings(format!("{base}/magfa"), "3000123") };
    assert_eq!(outcome(Gateway::Magfa, &magfa, ok).await, Ok(Some("5432109876".into())));
    assert_eq!(outcome(Gateway::Magfa, &magfa, BAD_NUMBER).await, Err(("1".into(), true)), "refused inside a 200");
    assert_eq!(outcome(Gateway::Magfa, &magfa, NO_CREDIT).await, Err(("14".into(), false)));
    let wrong_password = GatewaySettings { key: Some("other".into()), ..magfa.clone() };
    assert_eq!(outcome(Gateway::Magfa, &wrong_password, ok).await, Err(("18".into(), false)));

    let ghasedak = settings(format!("{base}/ghasedak"), "30005088");
    assert_eq!(outcome(Gateway::Ghasedak, &ghasedak, ok).await, Ok(Some("3391127".into())));
    assert_eq!(outcome(Gateway::Ghasedak, &ghasedak, NO_CREDIT).await, Err(("402".into(), false)), "inside a 200");
    let wrong_key = GatewaySettings { key: Some("other".into()), ..ghasedak.clone() };
    assert_eq!(outcome(Gateway::Ghasedak, &wrong_key, ok).await, Err(("401".into(), false)));

    let twilio = settings(base.clone(), "+15005550006");
    assert_eq!(outcome(Gateway::Twilio, &twilio, ok).await, Ok(Some("SM0123456789abcdef0123456789abcdef".into())));
    assert_eq!(outcome(Gateway::Twilio, &twilio, BAD_NUMBER).await, Err(("21211".into(), true)));
    let wrong_token = GatewaySettings { key: Some("other".into()), ..twilio.clone() };
    assert_eq!(outcome(Gateway::Twilio, &wrong_token, ok).await, Err(("20003".into(), false)));
}

/// An error page that is not JSON (a proxy's 502) is judged by its status; a 200 that is not
/// JSON is unreadable and retried, never taken as sent.
#[tokio::test]
async fn answers_that_are_not_json() {
    let app = axum::Router::new()
        .route("/down/v1/send/bulk", post(|| async { (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>") }))
        .route("/odd/v1/send/bulk", post(|| async { (StatusCode::OK, "OK") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let down = settings(format!("http://{address}/down"), "3000");
    assert_eq!(outcome(Gateway::Smsir, &down, "09121234567").await, Err(("502".into(), false)));
    let odd = settings(format!("http://{address}/odd"), "3000");
    let (error, permanent) = outcome(Gateway::Smsir, &odd, "09121234567").await.expect_err("not sent");
    assert!(error.contains("not JSON") && !permanent, "{error}");
}

#[test]
fn a_gateway_without_its_settings_does_not_start() {
    let none = GatewaySettings::default();
    for (gateway, flag) in [
        (Gateway::Kavenegar, "--sms-gateway-key"),
        (Gateway::Smsir, "--sms-gateway-key"),
        (Gateway::Ippanel, "--sms-gateway-key"),
        (Gateway::Ghasedak, "--sms-gateway-key"),
        (Gateway::Magfa, "--sms-gateway-account"),
        (Gateway::Twilio, "--sms-gateway-account"),
        (Gateway::Generic, "--sms-reply-url"),
    ] {
        let error = sender(gateway, &none).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains(flag), "{gateway:?}: {error}");
    }
    assert!(sender(Gateway::None, &none).is_ok());
    let set = GatewaySettings {
        url_template: Some("https://gw/send?key=SECRET&to={to}".into()),
        ..settings("b".into(), "1")
    };
    let shown = format!("{set:?}");
    assert!(!shown.contains(KEY) && !shown.contains("SECRET"), "{shown}");
}

/// What the inbox stand-ins hold: messages as each gateway lists them, and which have been
/// handed out by the gateways that hand a message out once.
#[derive(Default)]
struct Inboxes {
    smsir: Vec<Value>,
    magfa: Vec<Value>,
    ghasedak: Vec<Value>,
    /// Newest last here; listed newest first.
    ippanel: Vec<Value>,
}

type Shared = std::sync::Arc<std::sync::Mutex<Inboxes>>;

async fn smsir_latest(
    axum::extract::State(inboxes): axum::extract::State<Shared>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"status": 10, "message": "کلید نامعتبر", "data": null})));
    }
    let count: usize = query.get("count").and_then(|c| c.parse().ok()).unwrap_or(100).min(100);
    let mut inboxes = inboxes.lock().expect("lock");
    let held = &mut inboxes.smsir;
    let taken: Vec<Value> = held.drain(..count.min(held.len())).collect();
    (StatusCode::OK, Json(json!({"status": 1, "message": "موفق", "data": taken})))
}

async fn magfa_messages(
    axum::extract::State(inboxes): axum::extract::State<Shared>,
    headers: HeaderMap,
    Path(count): Path<usize>,
) -> (StatusCode, Json<Value>) {
    use base64::Engine as _;
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("kontor/gasco:{KEY}")));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::OK, Json(json!({"status": 18, "messages": null})));
    }
    let mut inboxes = inboxes.lock().expect("lock");
    let held = &mut inboxes.magfa;
    let taken: Vec<Value> = held.drain(..count.min(held.len())).collect();
    (StatusCode::OK, Json(json!({"status": 0, "messages": taken})))
}

async fn ghasedak_received(
    axum::extract::State(inboxes): axum::extract::State<Shared>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    if headers.get("apikey").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"isSuccess": false, "statusCode": 401, "message": "کلید نامعتبر", "data": null})),
        );
    }
    if query.get("LineNumber").is_none_or(String::is_empty) || query.get("IsRead").map(String::as_str) != Some("False")
    {
        return (
            StatusCode::OK,
            Json(json!({"isSuccess": false, "statusCode": 400, "message": "ورودی نامعتبر", "data": null})),
        );
    }
    // Unread messages stay unread: every read lists them all again.
    let items = inboxes.lock().expect("lock").ghasedak.clone();
    (StatusCode::OK, Json(json!({"isSuccess": true, "statusCode": 200, "message": "موفق", "data": {"items": items}})))
}

async fn ippanel_inbox(
    axum::extract::State(inboxes): axum::extract::State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"data": null, "meta": {"status": false, "message": "اطلاعات وارد شده صحیح نمی باشد",
                "message_parameters": [], "message_code": "400-1", "errors": {}}})),
        );
    }
    let page = body["page"].as_u64().unwrap_or(1).max(1) as usize;
    let per_page = body["per_page"].as_u64().unwrap_or(10).max(1) as usize;
    let from_id = body["filters"]["from_id"].as_i64().unwrap_or(0);
    let inboxes = inboxes.lock().expect("lock");
    let matching: Vec<&Value> =
        inboxes.ippanel.iter().rev().filter(|m| m["messages_inbox_id"].as_i64().unwrap_or(0) > from_id).collect();
    let last_page = matching.len().div_ceil(per_page).max(1);
    let data: Vec<&Value> = matching.iter().skip((page - 1) * per_page).take(per_page).copied().collect();
    (
        StatusCode::OK,
        Json(json!({"data": data, "meta": {"current_page": page, "last_page": last_page, "per_page": per_page,
            "total": matching.len(), "status": true, "message": "انجام شد", "message_code": "200-1"}})),
    )
}

async fn start_inboxes(inboxes: Shared) -> String {
    let app = axum::Router::new()
        .route("/v1/receive/latest", axum::routing::get(smsir_latest))
        .route("/magfa/messages/{count}", axum::routing::get(magfa_messages))
        .route("/ghasedak/GetReceivedSmses", axum::routing::get(ghasedak_received))
        .route("/edge/api/report/messages-inbox", post(ippanel_inbox))
        .with_state(inboxes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

/// What a read gave, in short: (id, sender, text, time) per message, and the cursor.
async fn read(
    gateway: Gateway,
    settings: &GatewaySettings,
    cursor: Option<&str>,
) -> (Vec<(String, String, String, Option<String>)>, Option<String>) {
    let reader = super::reader(gateway, settings).expect("configured");
    let fetched = reader.fetch(cursor).await.expect("read");
    let messages = fetched.messages.into_iter().map(|m| (m.message_id, m.sender, m.body, m.received_at)).collect();
    (messages, fetched.cursor)
}

#[tokio::test]
async fn each_inbox_reader_speaks_its_gateways_format() {
    let inboxes = Shared::default();
    let base = start_inboxes(inboxes.clone()).await;
    {
        let mut held = inboxes.lock().expect("lock");
        held.smsir = vec![
            json!({"receiveReturnId": 123456789, "messageText": "۱۰۰۵۰*۵*۱۱۱۱۲۲۲۲۳۳", "number": 30004505000017_u64,
                "mobile": 9121111111_u64, "receivedDateTime": 1796634000}),
            json!({"receiveReturnId": 123456790, "messageText": "hello", "number": 30004505000017_u64,
                "mobile": 9350000000_u64, "receivedDateTime": 1796634060}),
        ];
        let magfa = json!({"body": "10050*5*1111222233", "senderNumber": "989121111111",
            "recipientNumber": "3000123", "date": "2026-12-07 14:05:09"});
        held.magfa = vec![
            magfa.clone(),
            magfa,
            json!({"body": "x", "senderNumber": "989350000000",
            "recipientNumber": "3000123", "date": "2026-12-07 14:05:10"}),
        ];
        held.ghasedak = vec![
            json!({"id": 41, "message": "10050*5*1111222233", "sender": "09121111111", "lineNumber": "30005088",
                "receiveDate": "2026-12-07T14:05:09.123"}),
            json!({"id": 42, "message": "10060*5*1111222233", "sender": "09121111111", "lineNumber": "30005088",
                "receiveDate": "2026-12-07T14:06:00"}),
        ];
        held.ippanel = (1..=250)
            .map(|id| {
                json!({"messages_inbox_id": id, "from": "+989121111111", "number": "+983000505",
                    "message": format!("m{id}"), "type": "normal", "time": 1796634000 + id, "seen": "0"})
            })
            .collect();
    }

    // SMS.ir: read once; its id, the mobile dialled as it is dialled, Unix time.
    let smsir = settings(base.clone(), "30004505000017");
    let (messages, cursor) = read(Gateway::Smsir, &smsir, None).await;
    assert_eq!(cursor, None);
    assert_eq!(
        messages[0],
        (
            "smsir:123456789".into(),
            "09121111111".into(),
            "۱۰۰۵۰*۵*۱۱۱۱۲۲۲۲۳۳".into(),
            Some("2026-12-07T09:00:00Z".into())
        )
    );
    assert_eq!(messages.len(), 2);
    assert!(read(Gateway::Smsir, &smsir, None).await.0.is_empty(), "handed out once");

    // Magfa: no ids, so derived; the same message twice in one read is two, numbered.
    let magfa =
        GatewaySettings { account: Some("kontor/gasco".into()), ..settings(format!("{base}/magfa"), "3000123") };
    let (messages, _) = read(Gateway::Magfa, &magfa, None).await;
    let ids: Vec<&str> = messages.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids[0].starts_with("magfa:") && ids[1] == format!("{}#2", ids[0]) && ids[2] != ids[0], "{ids:?}");
    assert_eq!(messages[0].3.as_deref(), Some("2026-12-07T14:05:09+03:30"), "Iran's time");
    let wrong = GatewaySettings { key: Some("other".into()), ..magfa.clone() };
    let error = super::reader(Gateway::Magfa, &wrong).expect("configured").fetch(None).await.expect_err("refused");
    assert!(error.to_string().contains("18"), "{error}");

    // Ghasedak: lists unread messages every time; the cursor passes over those taken.
    let ghasedak = settings(format!("{base}/ghasedak"), "30005088");
    let (messages, cursor) = read(Gateway::Ghasedak, &ghasedak, None).await;
    assert_eq!(messages.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(), ["ghasedak:41", "ghasedak:42"]);
    assert_eq!(messages[0].3.as_deref(), Some("2026-12-07T14:05:09+03:30"));
    assert_eq!(cursor.as_deref(), Some("42"));
    assert!(read(Gateway::Ghasedak, &ghasedak, cursor.as_deref()).await.0.is_empty(), "nothing new");

    // IPPanel: the first read starts after the newest message; then every page past the cursor.
    let ippanel = settings(format!("{base}/edge"), "+983000505");
    let (messages, cursor) = read(Gateway::Ippanel, &ippanel, None).await;
    assert_eq!((messages.len(), cursor.as_deref()), (0, Some("250")));
    let (messages, cursor) = read(Gateway::Ippanel, &ippanel, Some("20")).await;
    assert_eq!(messages.len(), 230, "three pages of a hundred, oldest first");
    assert_eq!((messages[0].0.as_str(), messages[229].0.as_str()), ("ippanel:21", "ippanel:250"));
    assert_eq!(cursor.as_deref(), Some("250"));
    assert!(read(Gateway::Ippanel, &ippanel, Some("250")).await.0.is_empty());

    // A backlog of more pages than one read takes: the oldest first, the rest next time.
    inboxes.lock().expect("lock").ippanel = (1..=2150)
        .map(|id| {
            json!({"messages_inbox_id": id, "from": "+989121111111", "number": "+983000505",
            "message": "m", "type": "normal", "time": 1796634000 + id, "seen": "0"})
        })
        .collect();
    let (messages, cursor) = read(Gateway::Ippanel, &ippanel, Some("0")).await;
    assert_eq!((messages.len(), cursor.as_deref()), (1950, Some("1950")), "the oldest twenty pages");
    let (messages, cursor) = read(Gateway::Ippanel, &ippanel, cursor.as_deref()).await;
    assert_eq!((messages.len(), cursor.as_deref()), (200, Some("2150")), "then the rest");
}

#[test]
fn only_the_gateways_with_an_inbox_are_read() {
    let set = settings("http://127.0.0.1:9".into(), "3000");
    for gateway in [Gateway::Kavenegar, Gateway::Twilio, Gateway::Generic, Gateway::None] {
        let error = super::reader(gateway, &set).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("--sms-pull"), "{gateway:?}: {error}");
    }
}
