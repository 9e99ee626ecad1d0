//! The sync API over HTTP, as a client sees it: every code of the contract, replays, concurrency,
//! malformed items and envelope errors, on SQLite and on PostgreSQL.

use serde_json::{Value, json};
use server::store::Store as _;
use shared::TrackingCode;
use tests::{Backend, SERIAL, SERIAL_WRAP, SUB, SUB_WRAP, TestServer, submission};
use uuid::Uuid;

tests::on_both_backends!(
    accepted_then_replayed,
    every_rejection_code,
    review_codes,
    accepted_flags,
    id_conflict_leaves_the_first_untouched,
    order_by_reading_time,
    concurrent_replays_store_one_outcome,
    one_malformed_item_does_not_block_the_batch,
    envelope_errors,
    verify_a_meter,
    a_device_token_covers_its_own_meter,
    a_sync_answer_brings_the_meters_fresh_baseline,
    identity_guessing_is_limited,
    checks_at_once_are_each_judged_by_their_own_keys,
    messages_follow_accept_language,
    health_readiness_and_openapi,
);

/// The status, code and consumption of one result (`null` where absent).
fn summary(result: &Value) -> (String, Value, Value) {
    (result["status"].as_str().unwrap_or("?").to_owned(), result["code"].clone(), result["consumption_m3"].clone())
}

fn expect(result: &Value, status: &str, code: Option<&str>, consumption: Option<u64>) {
    let code = code.map_or(Value::Null, |c| json!(c));
    let consumption = consumption.map_or(Value::Null, |c| json!(c));
    assert_eq!(summary(result), (status.to_owned(), code, consumption), "result {result}");
}

fn tracking(result: &Value) -> String {
    let code = result["tracking_code"].as_str().unwrap_or_else(|| panic!("no tracking code in {result}"));
    assert!(TrackingCode::parse(code).is_some(), "{code} fails its check digit");
    code.to_owned()
}

async fn accepted_then_replayed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let id = Uuid::new_v4();
    let item = submission(id, 10_087, &server.hours_ago(1));
    let first = server.sync(vec![item.clone()]).await;
    expect(&first[0], "accepted", None, Some(87));
    assert_eq!(first[0]["replayed"], false);
    assert_eq!(first[0]["id"], json!(id));
    let code = tracking(&first[0]);

    let again = server.sync(vec![item]).await;
    assert_eq!(again[0]["replayed"], true);
    assert_eq!(tracking(&again[0]), code);
    expect(&again[0], "accepted", None, Some(87));
    assert_eq!(server.stored().await, 1);

    // The meter's context now starts from the new reading.
    let (status, body) = server
        .post(
            "/api/v1/meters/verify",
            &json!({"subscription": SUB, "meter_serial": SERIAL, "device_id": Uuid::new_v4()}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["meter"]["last_reading"], 10_087);
    server.finish().await;
}

async fn every_rejection_code(backend: Backend) {
    let server = TestServer::start(backend).await;
    let now = server.hours_ago(0);
    let other_serial = json!({"id": Uuid::new_v4(), "subscription": SUB, "meter_serial": "ZZ999999", "reading": 10_050, "read_at": now});
    let unknown = json!({"id": Uuid::new_v4(), "subscription": "9999888877", "meter_serial": SERIAL, "reading": 10_050, "read_at": now});
    let letters = json!({"id": Uuid::new_v4(), "subscription": "12ab", "meter_serial": SERIAL, "reading": 10_050, "read_at": now});
    let results = server
        .sync(vec![
            other_serial,
            unknown,
            letters,
            submission(Uuid::new_v4(), 100_000, &now),
            submission(Uuid::new_v4(), -5, &now),
            submission(Uuid::new_v4(), 10_050.5, &now),
            submission(Uuid::new_v4(), 10_050, &server.hours_ago(-1)),
            submission(Uuid::new_v4(), 10_050, &server.hours_ago(24 * 91)),
            submission(Uuid::new_v4(), 15_000, &now),
        ])
        .await;
    let codes = [
        "identity_mismatch",
        "identity_mismatch",
        "identity_mismatch",
        "reading_out_of_range",
        "reading_out_of_range",
        "reading_out_of_range",
        "read_at_in_future",
        "read_at_too_old",
        "impossible_consumption",
    ];
    assert_eq!(results.len(), codes.len());
    for (result, code) in results.iter().zip(codes) {
        assert_eq!(result["status"], "rejected", "{result}");
        assert_eq!(result["code"], code, "{result}");
        assert!(result.get("tracking_code").is_none(), "a rejection has no tracking code: {result}");
        assert!(!result["message"].as_str().unwrap_or("").is_empty());
    }
    // Rejections are stored with their reason; none of them moved the meter.
    assert_eq!(server.stored().await, codes.len() as u64);
    let ok = server.sync(vec![submission(Uuid::new_v4(), 10_050, &now)]).await;
    expect(&ok[0], "accepted", None, Some(50));
    server.finish().await;
}

async fn review_codes(backend: Backend) {
    let server = TestServer::start(backend).await;
    let now = server.hours_ago(0);
    // Lower than the bill and no plausible wrap.
    let decreased = server.sync(vec![submission(Uuid::new_v4(), 9_990, &now)]).await;
    expect(&decreased[0], "needs_review", Some("reading_decreased"), None);
    tracking(&decreased[0]);
    // 30 days at 3 m³ a day: above 5 × 90 + 20 = 470 m³ is unusual, but possible.
    let unusual = server.sync(vec![submission(Uuid::new_v4(), 10_600, &now)]).await;
    expect(&unusual[0], "needs_review", Some("unusual_consumption"), Some(600));
    tracking(&unusual[0]);
    // A reading that arrives late and does not fit the readings around it.
    let later = server.sync(vec![submission(Uuid::new_v4(), 10_100, &server.hours_ago(2))]).await;
    expect(&later[0], "accepted", None, Some(100));
    let between = server.sync(vec![submission(Uuid::new_v4(), 10_300, &server.hours_ago(24))]).await;
    expect(&between[0], "needs_review", Some("out_of_order"), Some(300));
    server.finish().await;
}

async fn accepted_flags(backend: Backend) {
    let server = TestServer::start(backend).await;
    let wrapped = server
        .sync(vec![json!({"id": Uuid::new_v4(), "subscription": SUB_WRAP, "meter_serial": SERIAL_WRAP,
            "reading": 25, "read_at": server.hours_ago(0)})])
        .await;
    expect(&wrapped[0], "accepted", Some("rollover"), Some(85));
    tracking(&wrapped[0]);

    // A double tap offline: two ids, one reading. The second is the first, with its tracking code.
    let first = server.sync(vec![submission(Uuid::new_v4(), 10_090, &server.hours_ago(3))]).await;
    let second = server.sync(vec![submission(Uuid::new_v4(), 10_090, &server.hours_ago(3))]).await;
    expect(&first[0], "accepted", None, Some(90));
    expect(&second[0], "accepted", Some("duplicate_declaration"), None);
    assert_eq!(tracking(&second[0]), tracking(&first[0]));
    assert_eq!(second[0]["replayed"], false);
    // Only the first counts: the next reading is measured from it.
    let next = server.sync(vec![submission(Uuid::new_v4(), 10_095, &server.hours_ago(1))]).await;
    expect(&next[0], "accepted", None, Some(5));
    server.finish().await;
}

async fn id_conflict_leaves_the_first_untouched(backend: Backend) {
    let server = TestServer::start(backend).await;
    let id = Uuid::new_v4();
    let read_at = server.hours_ago(1);
    let first = server.sync(vec![submission(id, 10_010, &read_at)]).await;
    let conflict = server.sync(vec![submission(id, 10_020, &read_at)]).await;
    expect(&conflict[0], "rejected", Some("id_conflict"), None);
    assert_eq!(conflict[0]["replayed"], false);
    // The same content in another digit script and with spaces is not a conflict.
    let persian = json!({"id": id, "subscription": "۱۱۱۱ ۲۲۲۲ ۳۳", "meter_serial": "ts-000001", "reading": "۱۰۰۱۰", "read_at": read_at});
    let replay = server.sync(vec![persian]).await;
    assert_eq!(replay[0]["replayed"], true, "{}", replay[0]);
    assert_eq!(tracking(&replay[0]), tracking(&first[0]));
    let stored = server.store.declarations_of(SUB).await.expect("read back");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].reading, Some(10_010));
    server.finish().await;
}

async fn order_by_reading_time(backend: Backend) {
    let server = TestServer::start(backend).await;
    // Tuesday's reading arrives first; Monday's, sent from a phone that was offline, after it.
    let tuesday = server.sync(vec![submission(Uuid::new_v4(), 10_100, &server.hours_ago(24))]).await;
    expect(&tuesday[0], "accepted", None, Some(100));
    let monday = server.sync(vec![submission(Uuid::new_v4(), 10_060, &server.hours_ago(48))]).await;
    expect(&monday[0], "accepted", None, Some(60));
    let chain: Vec<(Option<u64>, Option<u64>)> = server
        .store
        .declarations_of(SUB)
        .await
        .expect("read back")
        .iter()
        .map(|d| (d.reading, d.consumption_m3))
        .collect();
    assert_eq!(chain, [(Some(10_060), Some(60)), (Some(10_100), Some(40))], "consumption follows reading time");
    // The meter's latest reading is still Tuesday's.
    let (_, body) = server
        .post(
            "/api/v1/meters/verify",
            &json!({"subscription": SUB, "meter_serial": SERIAL, "device_id": Uuid::new_v4()}),
        )
        .await;
    assert_eq!(body["meter"]["last_reading"], 10_100);
    server.finish().await;
}

async fn concurrent_replays_store_one_outcome(backend: Backend) {
    let server = std::sync::Arc::new(TestServer::start(backend).await);
    let item = submission(Uuid::new_v4(), 10_042, &server.hours_ago(1));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let server = server.clone();
        let item = item.clone();
        tasks.push(tokio::spawn(async move { server.sync(vec![item]).await.remove(0) }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("request task"));
    }
    let codes: std::collections::BTreeSet<String> = results.iter().map(tracking).collect();
    assert_eq!(codes.len(), 1, "one tracking code for all: {codes:?}");
    assert_eq!(results.iter().filter(|r| r["replayed"] == false).count(), 1, "exactly one first answer");
    assert!(results.iter().all(|r| r["status"] == "accepted" && r["consumption_m3"] == 42));
    assert_eq!(server.stored().await, 1);
    let Ok(server) = std::sync::Arc::try_unwrap(server) else { panic!("tasks still hold the server") };
    server.finish().await;
}

async fn one_malformed_item_does_not_block_the_batch(backend: Backend) {
    let server = TestServer::start(backend).await;
    let missing_reading = Uuid::new_v4();
    let body = json!({"device_id": Uuid::new_v4(), "submissions": [
        submission(Uuid::new_v4(), 10_010, &server.hours_ago(5)),
        {"id": missing_reading, "subscription": SUB, "meter_serial": SERIAL, "read_at": server.hours_ago(4)},
        {"id": "not-a-uuid", "subscription": SUB, "meter_serial": SERIAL, "reading": 1, "read_at": server.hours_ago(4)},
        submission(Uuid::new_v4(), 10_020, "yesterday"),
        42,
        submission(Uuid::new_v4(), 10_015, &server.hours_ago(3)),
        // Identifiers no meter has, of any size: junk is not stored.
        {"id": Uuid::new_v4(), "subscription": "1".repeat(65), "meter_serial": SERIAL, "reading": 1,
         "read_at": server.hours_ago(4)},
        {"id": Uuid::new_v4(), "subscription": SUB, "meter_serial": "x".repeat(100_000), "reading": 1,
         "read_at": server.hours_ago(4)},
    ]});
    let (status, body) = server.post("/api/v1/sync", &body).await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 8);
    expect(&results[6], "rejected", Some("malformed"), None);
    expect(&results[7], "rejected", Some("malformed"), None);
    assert!(results[7]["id"].is_string());
    expect(&results[0], "accepted", None, Some(10));
    expect(&results[1], "rejected", Some("malformed"), None);
    assert_eq!(results[1]["id"], json!(missing_reading));
    expect(&results[2], "rejected", Some("malformed"), None);
    assert_eq!(results[2]["id"], Value::Null);
    expect(&results[3], "rejected", Some("malformed"), None);
    assert!(results[3]["id"].is_string());
    expect(&results[4], "rejected", Some("malformed"), None);
    expect(&results[5], "accepted", None, Some(5));
    assert_eq!(server.stored().await, 2);
    server.finish().await;
}

async fn envelope_errors(backend: Backend) {
    let server = TestServer::start(backend).await;
    let item = submission(Uuid::new_v4(), 10_010, &server.hours_ago(1));
    let check = |status: u16, code: &'static str| {
        move |(got, body): (u16, Value)| {
            assert_eq!(got, status, "{body}");
            assert_eq!(body["error"]["code"], code, "{body}");
            assert!(!body["error"]["message"].as_str().unwrap_or("").is_empty());
        }
    };
    let json = "application/json";
    check(400, "invalid_json")(server.post_with("/api/v1/sync", json, b"{not json".to_vec(), None).await);
    check(400, "invalid_json")(server.post_with("/api/v1/sync", json, vec![0xff, 0xfe, 0x00], None).await);
    check(400, "invalid_envelope")(server.post("/api/v1/sync", &json!({"device_id": Uuid::new_v4()})).await);
    check(400, "invalid_envelope")(server.post("/api/v1/sync", &json!({"submissions": {"a": 1}})).await);
    check(400, "invalid_envelope")(server.post("/api/v1/sync", &json!([item])).await);
    check(400, "batch_size")(
        server.post("/api/v1/sync", &json!({"device_id": Uuid::new_v4(), "submissions": []})).await,
    );
    let many: Vec<Value> = (0..501).map(|_| submission(Uuid::new_v4(), 10_010, &server.hours_ago(1))).collect();
    check(400, "batch_size")(
        server.post("/api/v1/sync", &json!({"device_id": Uuid::new_v4(), "submissions": many})).await,
    );
    let body = json!({"device_id": Uuid::new_v4(), "submissions": [item]}).to_string().into_bytes();
    check(415, "unsupported_media_type")(server.post_with("/api/v1/sync", "text/plain", body.clone(), None).await);
    check(415, "unsupported_media_type")(
        server.post_with("/api/v1/sync", "application/x-www-form-urlencoded", body, None).await,
    );
    let huge = format!("{{\"submissions\": [], \"pad\": \"{}\"}}", "x".repeat(1024 * 1024));
    check(413, "payload_too_large")(server.post_with("/api/v1/sync", json, huge.into_bytes(), None).await);
    let (status, _) = server.post("/api/v1/nothing-here", &json!({})).await;
    assert_eq!(status, 404);
    // Nothing of it was stored, and the server still serves.
    assert_eq!(server.stored().await, 0);
    let ok = server.sync(vec![submission(Uuid::new_v4(), 10_010, &server.hours_ago(1))]).await;
    expect(&ok[0], "accepted", None, Some(10));
    server.finish().await;
}

async fn verify_a_meter(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server
        .post(
            "/api/v1/meters/verify",
            &json!({"subscription": "\u{200F}۱۱۱۱۲۲۲۲۳۳", "meter_serial": "ts 000001", "device_id": Uuid::new_v4()}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["device_token"].as_str().is_some_and(|t| t.len() >= 32));
    let meter = &body["meter"];
    assert_eq!(meter["subscription"], SUB);
    assert_eq!(meter["digits"], 5);
    assert_eq!(meter["last_reading"], 10_000);
    assert!(meter["last_read_at"].as_str().is_some_and(|t| t.ends_with("+03:30")));
    assert_eq!(meter["avg_daily_m3"], 3.0);
    assert_eq!(meter["max_daily_m3"], 144.0);

    // A wrong serial and an unknown subscription answer alike.
    let wrong_serial = server
        .post(
            "/api/v1/meters/verify",
            &json!({"subscription": SUB, "meter_serial": "XX1", "device_id": Uuid::new_v4()}),
        )
        .await;
    let unknown = server
        .post(
            "/api/v1/meters/verify",
            &json!({"subscription": "5555", "meter_serial": SERIAL, "device_id": Uuid::new_v4()}),
        )
        .await;
    assert_eq!(wrong_serial.0, 404);
    assert_eq!(wrong_serial, unknown);
    assert_eq!(wrong_serial.1["error"]["code"], "identity_mismatch");
    server.finish().await;
}

async fn a_device_token_covers_its_own_meter(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = server
        .post(
            "/api/v1/meters/verify",
            &json!({"subscription": SUB, "meter_serial": SERIAL, "device_id": Uuid::new_v4()}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["device_token"].as_str().expect("a token").to_owned();
    let send = |auth: Option<String>, subscription: &str, serial: &str, reading: u64| {
        let mut request = server.http.post(format!("{}/api/v1/sync", server.base)).json(&json!({
            "device_id": Uuid::new_v4(),
            "submissions": [{"id": Uuid::new_v4(), "subscription": subscription, "meter_serial": serial,
                             "reading": reading, "read_at": server.hours_ago(1)}],
        }));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        async move {
            let body: Value = request.send().await.expect("answer").json().await.expect("json");
            body["results"][0].clone()
        }
    };
    // The serial the device kept is stale (say the meter was replaced): the token still vouches.
    let covered = send(Some(format!("Bearer {token}")), SUB, "ZZ999999", 10_010).await;
    expect(&covered, "accepted", None, Some(10));
    // Without the token, or with a token that is not one, the serial decides.
    let bare = send(None, SUB, "ZZ999999", 10_011).await;
    expect(&bare, "rejected", Some("identity_mismatch"), None);
    let forged = send(Some("Bearer not-a-token".into()), SUB, "ZZ999999", 10_011).await;
    expect(&forged, "rejected", Some("identity_mismatch"), None);
    // The token covers only the subscription it was issued for.
    let other = send(Some(format!("Bearer {token}")), SUB_WRAP, "ZZ999999", 99_950).await;
    expect(&other, "rejected", Some("identity_mismatch"), None);
    let other_ok = send(Some(format!("Bearer {token}")), SUB_WRAP, SERIAL_WRAP, 99_950).await;
    assert_eq!(other_ok["status"], "accepted", "{other_ok}");
    server.finish().await;
}

async fn a_sync_answer_brings_the_meters_fresh_baseline(backend: Backend) {
    let server = TestServer::start(backend).await;
    let post = async |submissions: Value| {
        let (status, body) =
            server.post("/api/v1/sync", &json!({"device_id": Uuid::new_v4(), "submissions": submissions})).await;
        assert_eq!(status, 200, "{body}");
        body
    };
    // Yesterday's reading, then an older one from another phone: the baseline is the latest
    // reading in reading time, whichever arrived last.
    let yesterday = server.hours_ago(24);
    let answer = post(json!([submission(Uuid::new_v4(), 10_090, &yesterday)])).await;
    let meters = answer["meters"].as_array().expect("a baseline for the proven meter");
    assert_eq!(meters.len(), 1, "{answer}");
    assert_eq!(meters[0]["subscription"], SUB);
    assert_eq!(meters[0]["last_reading"], 10_090);
    let parse = |t: &Value| {
        time::OffsetDateTime::parse(t.as_str().unwrap_or_default(), &time::format_description::well_known::Rfc3339)
            .expect("an RFC 3339 time")
    };
    let off = parse(&meters[0]["last_read_at"]) - parse(&json!(yesterday));
    assert!(off.abs() < time::Duration::seconds(1), "{answer}");
    assert_eq!(meters[0]["digits"], 5);
    assert_eq!(meters[0]["max_daily_m3"], 144.0);
    let older = post(json!([submission(Uuid::new_v4(), 10_060, &server.hours_ago(48))])).await;
    assert_eq!(older["results"][0]["status"], "accepted", "{older}");
    assert_eq!(older["meters"][0]["last_reading"], 10_090);

    // A held reading does not move the baseline, but the meter was proven: it is described.
    let held = post(json!([submission(Uuid::new_v4(), 10_010, &server.hours_ago(1))])).await;
    assert_eq!(held["results"][0]["status"], "needs_review", "{held}");
    assert_eq!(held["meters"][0]["last_reading"], 10_090);

    // A wrong serial proves nothing: no meter is described, not even whether it exists.
    let mut wrong = submission(Uuid::new_v4(), 10_100, &server.hours_ago(1));
    wrong["meter_serial"] = json!("ZZ999999");
    let refused = post(json!([wrong])).await;
    assert_eq!(refused["results"][0]["code"], "identity_mismatch", "{refused}");
    assert!(refused.get("meters").is_none(), "{refused}");

    // Two meters in one batch: both described, once each.
    let both = post(json!([
        submission(Uuid::new_v4(), 10_095, &server.hours_ago(1)),
        submission(Uuid::new_v4(), 10_096, &server.hours_ago(0)),
        {"id": Uuid::new_v4(), "subscription": SUB_WRAP, "meter_serial": SERIAL_WRAP, "reading": 99_950,
         "read_at": server.hours_ago(1)},
    ]))
    .await;
    let described: Vec<(&str, u64)> = both["meters"]
        .as_array()
        .expect("baselines")
        .iter()
        .map(|m| (m["subscription"].as_str().unwrap_or("?"), m["last_reading"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(described, vec![(SUB, 10_096), (SUB_WRAP, 99_950)], "{both}");
    server.finish().await;
}

async fn identity_guessing_is_limited(backend: Backend) {
    let server = TestServer::start(backend).await;
    let guess = |serial: String| json!({"subscription": SUB, "meter_serial": serial, "device_id": Uuid::new_v4()});
    for i in 0..5 {
        let (status, _) = server.post("/api/v1/meters/verify", &guess(format!("GUESS{i}"))).await;
        assert_eq!(status, 404);
    }
    // Even the right pair waits now, and the answer says for how long.
    let response = server
        .http
        .post(format!("{}/api/v1/meters/verify", server.base))
        .json(&guess(SERIAL.into()))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 429);
    let retry: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=900).contains(&retry), "{retry}");
    // Sync of the guessed subscription waits too; nothing is stored meanwhile.
    let before = server.stored().await;
    let (status, body) = server
        .post("/api/v1/sync", &json!({"device_id": Uuid::new_v4(), "submissions": [submission(Uuid::new_v4(), 10_010, &server.hours_ago(1))]}))
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(server.stored().await, before);
    // Many serials for one subscription in one batch are refused before any is answered.
    let guesses: Vec<Value> = (0..6)
        .map(|i| {
            json!({"id": Uuid::new_v4(), "subscription": SUB_WRAP, "meter_serial": format!("GUESS{i}"),
            "reading": 1, "read_at": server.hours_ago(1)})
        })
        .collect();
    let (status, _) = server.post("/api/v1/sync", &json!({"device_id": Uuid::new_v4(), "submissions": guesses})).await;
    assert_eq!(status, 429);
    assert_eq!(server.stored().await, before);
    // Another meter is not affected.
    let (status, _) = server
        .post(
            "/api/v1/meters/verify",
            &json!({"subscription": SUB_WRAP, "meter_serial": SERIAL_WRAP, "device_id": Uuid::new_v4()}),
        )
        .await;
    assert_eq!(status, 200);
    server.finish().await;
}

/// On PostgreSQL the checks that arrive together are read by one query: each must still be
/// answered by its own keys' counters, not by another's in the same read.
async fn checks_at_once_are_each_judged_by_their_own_keys(backend: Backend) {
    let server = std::sync::Arc::new(TestServer::start(backend).await);
    for i in 0..5 {
        let guess = json!({"subscription": SUB, "meter_serial": format!("GUESS{i}"), "device_id": Uuid::new_v4()});
        assert_eq!(server.post("/api/v1/meters/verify", &guess).await.0, 404);
    }
    let mut tasks = Vec::new();
    for i in 0..32 {
        let server = server.clone();
        let (sub, serial) = if i % 2 == 0 { (SUB, SERIAL) } else { (SUB_WRAP, SERIAL_WRAP) };
        let body = json!({"subscription": sub, "meter_serial": serial, "device_id": Uuid::new_v4()});
        tasks.push(tokio::spawn(async move { (sub, server.post("/api/v1/meters/verify", &body).await.0) }));
    }
    for task in tasks {
        let (sub, status) = task.await.expect("request task");
        let expected = if sub == SUB { 429 } else { 200 };
        assert_eq!(status, expected, "subscription {sub}");
    }
    let Ok(server) = std::sync::Arc::try_unwrap(server) else { panic!("tasks still hold the server") };
    server.finish().await;
}

async fn messages_follow_accept_language(backend: Backend) {
    let server = TestServer::start(backend).await;
    let body = |id| {
        json!({"device_id": Uuid::new_v4(), "submissions": [submission(id, 100_000, &server.hours_ago(1))]})
            .to_string()
            .into_bytes()
    };
    let (_, fa) = server.post_with("/api/v1/sync", "application/json", body(Uuid::new_v4()), None).await;
    let (_, en) =
        server.post_with("/api/v1/sync", "application/json", body(Uuid::new_v4()), Some("en-US,en;q=0.9")).await;
    let fa = fa["results"][0]["message"].as_str().unwrap_or("").to_owned();
    let en = en["results"][0]["message"].as_str().unwrap_or("").to_owned();
    assert!(fa.contains("رقم کنتور"), "{fa}");
    assert!(en.contains("whole number"), "{en}");
    let (_, error) = server.post_with("/api/v1/sync", "text/plain", vec![], Some("en")).await;
    assert_eq!(error["error"]["message"], "The content type must be application/json.");
    server.finish().await;
}

async fn health_readiness_and_openapi(backend: Backend) {
    let server = TestServer::start(backend).await;
    let get = |path: &str| server.http.get(format!("{}{path}", server.base)).send();
    assert_eq!(get("/healthz").await.expect("answer").status().as_u16(), 200);
    assert_eq!(get("/readyz").await.expect("answer").status().as_u16(), 200);
    let doc: Value = get("/api/v1/openapi.json").await.expect("answer").json().await.expect("json");
    for path in ["/api/v1/sync", "/api/v1/meters/verify", "/api/v1/sms/inbound", "/healthz", "/readyz"] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }
    let codes = doc["components"]["schemas"]["Code"].to_string();
    for code in shared::Code::ALL {
        assert!(codes.contains(code.as_str()), "{code} missing from the OpenAPI document");
    }
    // The billing page's cursor and size are query parameters (openapi-spec-validator refused
    // them as path parameters); corrections are documented on both sides.
    let params = &doc["paths"]["/api/v1/billing/readings"]["get"]["parameters"];
    let places: Vec<(&str, &str)> = params
        .as_array()
        .expect("parameters")
        .iter()
        .map(|p| (p["name"].as_str().unwrap_or("?"), p["in"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(places, [("after", "query"), ("limit", "query")]);
    assert!(doc["components"]["schemas"]["Submission"]["properties"].get("corrects").is_some());
    assert!(doc["components"]["schemas"]["SyncResult"]["properties"].get("supersedes").is_some());
    server.finish().await;
}
