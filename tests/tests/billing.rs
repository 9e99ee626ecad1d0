//! The billing hand-off: the feed endpoint pages through every counting reading once while new
//! ones arrive, its token and cursor are checked, and the command line's export writes the same
//! readings. On SQLite and on PostgreSQL.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use server::billing::{self, Format};
use server::store::{Role, Store as _, SubscriberRow};
use shared::{MeterSerial, SubscriptionNumber};
use tests::{Backend, SERIAL, SUB, TestServer, submission};
use time::Duration;
use uuid::Uuid;

tests::on_both_backends!(
    each_reading_is_handed_over_once_while_new_ones_arrive,
    the_feed_needs_its_token,
    a_late_reading_and_a_void_correct_the_bill,
    a_subscribers_correction_replaces_their_typo,
    a_correction_withdraws_a_reading_held_for_review,
);

const TOKEN: &str = "billing-test-token-0123456789abcdef";

async fn start(backend: Backend) -> TestServer {
    TestServer::start_with(backend, |o| o.billing_token = Some(TOKEN.into())).await
}

async fn fetch(server: &TestServer, query: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = server.http.get(format!("{}/api/v1/billing/readings{query}", server.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Ten more meters, each billed 1,000 m³ twenty days ago.
async fn add_meters(server: &TestServer) -> Vec<(String, String)> {
    let meters: Vec<(String, String)> = (0..10).map(|i| (format!("77700000{i:02}"), format!("BL{i:06}"))).collect();
    let rows: Vec<SubscriberRow> = meters
        .iter()
        .map(|(sub, serial)| SubscriberRow {
            subscription: SubscriptionNumber::parse(sub).expect("subscription"),
            meter_serial: MeterSerial::parse(serial).expect("serial"),
            digits: 5,
            last_reading: Some(1_000),
            last_read_at: Some(server.now - Duration::days(20)),
            avg_daily_m3: None,
            phone: None,
        })
        .collect();
    server.store.upsert_subscribers(&rows, server.now).await.expect("seed meters");
    meters
}

async fn each_reading_is_handed_over_once_while_new_ones_arrive(backend: Backend) {
    let server = Arc::new(start(backend).await);
    let meters = add_meters(&server).await;
    // One reading held for review first (unusual use on the test meter), approved midway.
    let held = server.sync(vec![submission(Uuid::now_v7(), 10_340, &server.hours_ago(24 * 10))]).await;
    assert_eq!(held[0]["status"], "needs_review");

    // Ten clients declare readings for their own meter, in rising order, a few per request…
    let writing = Arc::new(AtomicBool::new(true));
    let mut writers = Vec::new();
    for (sub, serial) in meters {
        let server = server.clone();
        writers.push(tokio::spawn(async move {
            for round in 0..12u64 {
                let items: Vec<Value> = (0..3u64)
                    .map(|k| {
                        let step = round * 3 + k;
                        json!({"id": Uuid::now_v7(), "subscription": sub, "meter_serial": serial,
                            "reading": 1_000 + (step + 1) * 5, "read_at": server.hours_ago(400 - i64::try_from(step).unwrap_or(0) * 10)})
                    })
                    .collect();
                let results = server.sync(items).await;
                assert!(results.iter().all(|r| r["status"] == "accepted"), "{results:?}");
            }
        }));
    }
    // …while billing pages through the feed, a few readings at a time.
    let reader = {
        let server = server.clone();
        let writing = writing.clone();
        tokio::spawn(async move {
            let (mut cursor, mut seen, mut last_position) = ("0".to_owned(), Vec::new(), 0u64);
            loop {
                let still_writing = writing.load(Ordering::SeqCst);
                let (status, page) = fetch(&server, &format!("?after={cursor}&limit=7"), Some(TOKEN)).await;
                assert_eq!(status, 200, "{page}");
                for reading in page["readings"].as_array().expect("readings") {
                    let position: u64 = reading["cursor"].as_str().and_then(|c| c.parse().ok()).expect("a cursor");
                    assert!(position > last_position, "the feed moves forward");
                    last_position = position;
                    seen.push(reading["tracking_code"].as_str().expect("a code").to_owned());
                }
                cursor = page["next"].as_str().expect("next").to_owned();
                if !still_writing && page["more"] == false {
                    return seen;
                }
            }
        })
    };
    // Midway, a reviewer approves the held reading in the console: it joins the feed then.
    server.add_operator("rev", Role::Reviewer, "Billing", "correct horse battery").await;
    let reviewer = server.console();
    assert_eq!(reviewer.login("rev", "correct horse battery").await.status, 303);
    let seq = server.store.declarations_of(SUB).await.expect("read")[0].seq;
    let csrf = reviewer.csrf(&format!("/office/review/{seq}")).await;
    let approved = reviewer.post(&format!("/office/review/{seq}"), &[("csrf", &csrf), ("decision", "approve")]).await;
    assert_eq!(approved.status, 303, "{}", approved.body);
    for writer in writers {
        writer.await.expect("a writer");
    }
    writing.store(false, Ordering::SeqCst);
    let seen = reader.await.expect("the reader");

    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no reading handed over twice");
    let mut counting = BTreeSet::new();
    for sub in (0..10).map(|i| format!("77700000{i:02}")).chain([SUB.to_owned()]) {
        for d in server.store.declarations_of(&sub).await.expect("read") {
            if d.counts {
                counting.insert(d.tracking_code().expect("a code").to_string());
            }
        }
    }
    assert_eq!(counting.len(), 10 * 36 + 1);
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), counting, "every counting reading, none skipped");

    // The command line's export writes the same readings, from any cursor.
    let mut csv = Vec::new();
    let (count, next) = billing::export(server.store.as_ref(), 0, Format::Csv, &mut csv).await.expect("export");
    assert_eq!(count, 361);
    let text = String::from_utf8(csv).expect("utf-8");
    assert_eq!(text.lines().count(), 362, "a header and one line per reading");
    assert!(text.starts_with("cursor,tracking_code,subscription,meter_serial,reading,read_at,consumption_m3"));
    let approved = text.lines().find(|l| l.contains(&format!(",{SUB},"))).expect("the approved reading");
    assert!(approved.contains(SERIAL) && approved.ends_with(",true,reading,,"), "{approved}");
    let mut json = Vec::new();
    let (rest, end) = billing::export(server.store.as_ref(), next - 5, Format::Json, &mut json).await.expect("export");
    assert_eq!((rest, end), (5, next));
    let doc: Value = serde_json::from_slice(&json).expect("one JSON document");
    assert_eq!(doc["readings"].as_array().map(Vec::len), Some(5));
    assert_eq!(doc["next"], next.to_string());
    let log = server.store.audit_log(None, 1000).await.expect("audit");
    assert!(log.iter().any(|r| r.action == "export" && r.username == "billing"));

    match Arc::try_unwrap(server) {
        Ok(server) => server.finish().await,
        Err(_) => panic!("the server is still shared"),
    }
}

async fn the_feed_needs_its_token(backend: Backend) {
    let server = start(backend).await;
    assert_eq!(fetch(&server, "", None).await.0, 401);
    assert_eq!(fetch(&server, "", Some("wrong")).await.0, 401);
    let (status, body) = fetch(&server, "?after=abc", Some(TOKEN)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_cursor")));
    // A cursor this server never handed out is refused, not answered with an empty page.
    let (status, body) = fetch(&server, "?after=5", Some(TOKEN)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_cursor")));
    let (status, empty) = fetch(&server, "", Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(
        (empty["readings"].as_array().map(Vec::len), empty["next"].as_str(), empty["more"].as_bool()),
        (Some(0), Some("0"), Some(false))
    );
    let openapi: Value = server
        .http
        .get(format!("{}/api/v1/openapi.json", server.base))
        .send()
        .await
        .expect("doc")
        .json()
        .await
        .expect("json");
    assert!(openapi["paths"]["/api/v1/billing/readings"]["get"].is_object(), "documented");
    server.finish().await;
    // Without a token configured, there is no feed at all.
    let closed = TestServer::start(backend).await;
    assert_eq!(fetch(&closed, "", Some(TOKEN)).await.0, 404);
    closed.finish().await;
}

/// Everything on the feed, read in order as a billing system does.
async fn whole_feed(server: &TestServer) -> Vec<Value> {
    let (status, page) = fetch(server, "?after=0&limit=10000", Some(TOKEN)).await;
    assert_eq!(status, 200, "{page}");
    page["readings"].as_array().expect("readings").clone()
}

/// What a billing system derives per tracking code: the consumption of its latest entry.
fn billed(feed: &[Value]) -> u64 {
    let mut latest = std::collections::HashMap::new();
    for entry in feed {
        latest.insert(entry["tracking_code"].as_str().expect("a code").to_owned(), entry["consumption_m3"].as_u64());
    }
    latest.values().map(|c| c.unwrap_or(0)).sum()
}

/// The case: Tuesday's reading arrives first, Monday's later. Billing must be charged the
/// gas the meter passed (from the billed 10,000 to Tuesday's 10,090), not 90 + 60.
async fn a_late_reading_and_a_void_correct_the_bill(backend: Backend) {
    let server = start(backend).await;
    let (tuesday, monday) = (Uuid::now_v7(), Uuid::now_v7());
    let results = server.sync(vec![submission(tuesday, 10_090, &server.hours_ago(24))]).await;
    assert_eq!((results[0]["status"].as_str(), results[0]["consumption_m3"].as_u64()), (Some("accepted"), Some(90)));
    let results = server.sync(vec![submission(monday, 10_060, &server.hours_ago(48))]).await;
    assert_eq!((results[0]["status"].as_str(), results[0]["consumption_m3"].as_u64()), (Some("accepted"), Some(60)));

    let feed = whole_feed(&server).await;
    assert_eq!(feed.len(), 3, "{feed:?}");
    let tuesday_code = feed[0]["tracking_code"].clone();
    assert_eq!(feed[2]["tracking_code"], tuesday_code, "the correction is for Tuesday's reading");
    assert_eq!(feed[2]["kind"], "correction");
    assert_eq!(feed[2]["consumption_m3"], 30);
    assert_eq!(feed[2]["replaces"], feed[0]["cursor"]);
    assert_eq!(feed[2]["replaced_consumption_m3"], 90);
    assert_eq!(billed(&feed), 90, "billed for the gas the meter passed");

    // Staff void Monday's reading (say the subscriber misread it): Tuesday is measured from the
    // billed reading again, and the phone hears the reading no longer counts.
    server.add_operator("rev", Role::Reviewer, "Billing", "correct horse battery").await;
    let reviewer = server.console();
    assert_eq!(reviewer.login("rev", "correct horse battery").await.status, 303);
    let monday_seq = server.store.declaration_by_id(monday).await.expect("read").expect("stored").seq;
    let page = reviewer.get(&format!("/office/review/{monday_seq}")).await;
    assert!(page.body.contains("Void this reading") || page.body.contains("باطل کردن رقم"), "{}", page.body);
    let csrf = page.field("csrf").expect("a form token");
    let path = format!("/office/review/{monday_seq}");
    let refused = reviewer.post(&path, &[("csrf", &csrf), ("decision", "void"), ("reason", "")]).await;
    assert_eq!(refused.status, 422, "a void needs a reason");
    let voided =
        reviewer.post(&path, &[("csrf", &csrf), ("decision", "void"), ("reason", "misread at the cabinet")]).await;
    assert_eq!(voided.status, 303, "{}", voided.body);
    let again = reviewer.post(&path, &[("csrf", &csrf), ("decision", "void"), ("reason", "twice")]).await;
    assert_eq!(again.status, 409, "a reading is voided once");

    let feed = whole_feed(&server).await;
    assert_eq!(feed.len(), 5, "{feed:?}");
    assert_eq!((feed[3]["kind"].as_str(), feed[3]["consumption_m3"].as_u64()), (Some("void"), None));
    assert_eq!(feed[3]["replaces"], feed[1]["cursor"]);
    assert_eq!((feed[4]["kind"].as_str(), feed[4]["consumption_m3"].as_u64()), (Some("correction"), Some(90)));
    assert_eq!(feed[4]["replaces"], feed[2]["cursor"]);
    assert_eq!(billed(&feed), 90);

    let (status, news) = server
        .post("/api/v1/updates", &json!({"device_id": Uuid::new_v4(), "declarations": [monday], "complaints": []}))
        .await;
    assert_eq!(status, 200, "{news}");
    assert_eq!(news["decisions"][0]["status"], "rejected", "{news}");
    assert_eq!(news["decisions"][0]["reason"], "misread at the cabinet");
    let log = server.store.audit_log(None, 100).await.expect("audit");
    assert!(log.iter().any(|r| r.action == "void" && r.username == "rev" && r.detail.contains("misread")));

    // The export follows the same rule: the correction rows say what they replace.
    let mut csv = Vec::new();
    billing::export(server.store.as_ref(), 0, Format::Csv, &mut csv).await.expect("export");
    let text = String::from_utf8(csv).expect("utf-8");
    assert!(text.lines().next().is_some_and(|h| h.ends_with(",kind,replaces,replaced_consumption_m3")), "{text}");
    assert!(text.lines().any(|l| l.ends_with(",correction,3,30")), "{text}");
    server.finish().await;
}

/// Sends `submissions` from one phone (`device`), as the app does; the results.
async fn sync_from(server: &TestServer, device: Uuid, submissions: Vec<Value>) -> Vec<Value> {
    let (status, body) = server.post("/api/v1/sync", &json!({"device_id": device, "submissions": submissions})).await;
    assert_eq!(status, 200, "{body}");
    body["results"].as_array().expect("results").clone()
}

fn correcting(id: Uuid, reading: u64, read_at: &str, corrects: Uuid) -> Value {
    let mut item = submission(id, reading, read_at);
    item["corrects"] = json!(corrects);
    item
}

fn outcome(result: &Value) -> (Option<&str>, Option<&str>, Option<u64>) {
    (result["status"].as_str(), result["code"].as_str(), result["consumption_m3"].as_u64())
}

/// The case: 10,039 typed for 10,093 and corrected an hour later. Judged as a second
/// reading the correction would be "impossible" (54 m³ in an hour); as a correction it replaces
/// the typo, in the record and in the bill, and only its own phone may make it.
async fn a_subscribers_correction_replaces_their_typo(backend: Backend) {
    let server = start(backend).await;
    let (phone, other_phone) = (Uuid::new_v4(), Uuid::new_v4());
    let typo = Uuid::now_v7();
    let results = sync_from(&server, phone, vec![submission(typo, 10_039, &server.hours_ago(2))]).await;
    assert_eq!(outcome(&results[0]), (Some("accepted"), None, Some(39)));

    // Without `corrects` the same reading is refused: the typo stands in its way.
    let plain = sync_from(&server, phone, vec![submission(Uuid::now_v7(), 10_093, &server.hours_ago(1))]).await;
    assert_eq!(outcome(&plain[0]).1, Some("impossible_consumption"), "{plain:?}");

    // A correction that cannot be accepted replaces nothing.
    let refused =
        sync_from(&server, phone, vec![correcting(Uuid::now_v7(), 1_000_000, &server.hours_ago(1), typo)]).await;
    assert_eq!(outcome(&refused[0]), (Some("rejected"), Some("reading_out_of_range"), None));
    assert!(refused[0].get("supersedes").is_none(), "{refused:?}");

    let fix = Uuid::now_v7();
    let item = correcting(fix, 10_093, &server.hours_ago(1), typo);
    let results = sync_from(&server, phone, vec![item.clone()]).await;
    assert_eq!(outcome(&results[0]), (Some("accepted"), None, Some(93)), "measured from the billed 10,000");
    assert_eq!(results[0]["supersedes"], json!(typo));
    let again = sync_from(&server, phone, vec![item]).await;
    assert_eq!((again[0]["replayed"].as_bool(), &again[0]["supersedes"]), (Some(true), &json!(typo)));
    assert_eq!(again[0]["tracking_code"], results[0]["tracking_code"]);

    // The record: the typo voided by the subscriber, the correction counting.
    let stored = server.store.declarations_of(SUB).await.expect("read back");
    let typo_row = stored.iter().find(|d| d.reading == Some(10_039)).expect("the typo is kept");
    assert!(!typo_row.counts, "the typo no longer counts");
    assert!(typo_row.void.is_some(), "{typo_row:?}");
    assert_eq!(stored.iter().filter(|d| d.counts).map(|d| d.reading).collect::<Vec<_>>(), [Some(10_093)]);

    // The bill: the typo's 39 m³ voided, the correction's 93 m³ billed, nothing twice.
    let feed = whole_feed(&server).await;
    let kinds: Vec<(&str, Option<u64>)> =
        feed.iter().map(|e| (e["kind"].as_str().unwrap_or("?"), e["consumption_m3"].as_u64())).collect();
    assert_eq!(kinds, [("reading", Some(39)), ("reading", Some(93)), ("void", None)], "{feed:?}");
    assert_eq!(feed[2]["replaces"], feed[0]["cursor"]);
    assert_eq!(billed(&feed), 93);

    // The phone hears the typo no longer counts, and why.
    let (status, news) = server.post("/api/v1/updates", &json!({"device_id": phone, "declarations": [typo]})).await;
    assert_eq!(status, 200, "{news}");
    assert_eq!(news["decisions"][0]["status"], "rejected", "{news}");
    assert!(news["decisions"][0]["reason"].as_str().is_some_and(|r| r.contains("corrected")), "{news}");

    // Another phone cannot replace this phone's reading: its "correction" is a reading of its own.
    let foreign = Uuid::now_v7();
    let results = sync_from(&server, other_phone, vec![correcting(foreign, 10_094, &server.hours_ago(0), fix)]).await;
    assert_eq!(outcome(&results[0]), (Some("accepted"), None, Some(1)));
    assert!(results[0].get("supersedes").is_none(), "{results:?}");
    // And a reading with a later one after it is no longer open to correction.
    let late = sync_from(&server, phone, vec![correcting(Uuid::now_v7(), 10_095, &server.hours_ago(0), fix)]).await;
    assert!(late[0].get("supersedes").is_none(), "{late:?}");
    let counting = server.store.declarations_of(SUB).await.expect("read back");
    assert!(counting.iter().any(|d| d.reading == Some(10_093) && d.counts), "the corrected reading stands");
    server.finish().await;
}

/// A typo held for review (far above the usual use) and corrected: the correction is judged in
/// its place, and the held one leaves the review queue.
async fn a_correction_withdraws_a_reading_held_for_review(backend: Backend) {
    let server = start(backend).await;
    let phone = Uuid::new_v4();
    let typo = Uuid::now_v7();
    let results = sync_from(&server, phone, vec![submission(typo, 10_900, &server.hours_ago(2))]).await;
    assert_eq!(outcome(&results[0]).0, Some("needs_review"), "{results:?}");
    assert_eq!(server.store.review_queue(100).await.expect("queue").len(), 1);

    let fix = Uuid::now_v7();
    let results = sync_from(&server, phone, vec![correcting(fix, 10_090, &server.hours_ago(1), typo)]).await;
    assert_eq!(outcome(&results[0]), (Some("accepted"), None, Some(90)));
    assert_eq!(results[0]["supersedes"], json!(typo));
    assert!(server.store.review_queue(100).await.expect("queue").is_empty(), "nothing left to review");
    let feed = whole_feed(&server).await;
    assert_eq!(feed.len(), 1, "the held typo never reached billing: {feed:?}");
    assert_eq!(billed(&feed), 90);
    server.finish().await;
}
