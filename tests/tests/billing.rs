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

tests::on_both_backends!(each_reading_is_handed_over_once_while_new_ones_arrive, the_feed_needs_its_token);

const TOKEN: &str = "billing-test-token";

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
    assert!(approved.contains(SERIAL) && approved.ends_with(",true"), "{approved}");
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
