//! Crash safety with real processes: clients send batches to `kontor serve` while it is killed
//! with SIGKILL mid-load, then restarted on the same database; the clients retry what was not
//! acknowledged. Afterwards every declaration acknowledged before the kill is stored, nothing is
//! stored twice, and every replay answers the first outcome. On SQLite and on PostgreSQL.
//!
//! The PostgreSQL case needs the local server (`KONTOR_TEST_POSTGRES`); it fails, saying so,
//! when it is missing.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use common::{Instance, import, request};
use serde_json::{Value, json};
use server::store::{SqlStore, Store as _};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

const METERS: usize = 8;
const PER_METER: u64 = 40;
const CLIENTS: usize = 4;
const BATCH: usize = 4;
/// The server is killed once this many declarations have been acknowledged.
const KILL_AFTER: usize = 80;

fn subscription(meter: usize) -> String {
    format!("88{meter:08}")
}

fn serial(meter: usize) -> String {
    format!("KC{meter:06}")
}

/// What an answer said about one item; a replay must say the same.
fn said(result: &Value) -> Value {
    json!([result["status"], result["code"], result["tracking_code"], result["consumption_m3"]])
}

fn run(database: &str, dir: &std::path::Path) {
    let billed = OffsetDateTime::now_utc() - time::Duration::days(30);
    let billed_text = billed.format(&Rfc3339).expect("time");
    let rows: String =
        (0..METERS).map(|m| format!("{},{},5,10000,{billed_text},3.0,\n", subscription(m), serial(m))).collect();
    import(database, dir, &rows);
    let items: Vec<Value> = (1..=PER_METER)
        .flat_map(|step| {
            (0..METERS).map(move |m| {
                json!({
                    "id": Uuid::now_v7(), "subscription": subscription(m), "meter_serial": serial(m),
                    "reading": 10_000 + 2 * step,
                    "read_at": (billed + time::Duration::hours(step as i64)).format(&Rfc3339).expect("time"),
                })
            })
        })
        .collect();

    let mut server = Instance::start(database, dir, "before-kill");
    server.wait_ready();
    let addr = RwLock::new(server.addr.clone());
    let acknowledged = AtomicUsize::new(0);
    let first: Mutex<HashMap<String, Value>> = Mutex::new(HashMap::new());
    let (mut before_kill, mut failures) = (0, 0);
    std::thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (addr, acknowledged, first) = (&addr, &acknowledged, &first);
                let mine: Vec<Value> = items.iter().skip(client).step_by(CLIENTS).cloned().collect();
                scope.spawn(move || {
                    let mut failed = 0;
                    for batch in mine.chunks(BATCH) {
                        let body = json!({"device_id": Uuid::now_v7(), "submissions": batch}).to_string();
                        // The client's outbox: the batch stays until an answer arrives.
                        let deadline = Instant::now() + Duration::from_secs(60);
                        let answer = loop {
                            let to = addr.read().expect("addr").clone();
                            match request(&to, "POST", "/api/v1/sync", &body) {
                                Some((200, answer)) => break answer,
                                _ => {
                                    failed += 1;
                                    assert!(Instant::now() < deadline, "the server never came back");
                                    std::thread::sleep(Duration::from_millis(50));
                                }
                            }
                        };
                        let mut first = first.lock().expect("first");
                        for (item, result) in batch.iter().zip(answer["results"].as_array().expect("results")) {
                            first.entry(item["id"].as_str().expect("id").to_owned()).or_insert_with(|| said(result));
                        }
                        acknowledged.fetch_add(batch.len(), Ordering::SeqCst);
                    }
                    failed
                })
            })
            .collect();
        // SIGKILL in the middle of the load, then a new process on the same database.
        while acknowledged.load(Ordering::SeqCst) < KILL_AFTER {
            std::thread::sleep(Duration::from_millis(1));
        }
        server.kill();
        before_kill = acknowledged.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        server = Instance::start(database, dir, "after-kill");
        server.wait_ready();
        *addr.write().expect("addr") = server.addr.clone();
        failures = clients.into_iter().map(|c| c.join().expect("a client")).sum::<usize>();
    });
    assert!(before_kill >= KILL_AFTER && before_kill < items.len(), "killed mid-load ({before_kill} acknowledged)");
    println!(
        "{} declarations; killed after {before_kill} acknowledged; {failures} requests failed meanwhile",
        items.len()
    );

    // Every id once more: stored, with its first outcome.
    let first = first.into_inner().expect("first");
    for batch in items.chunks(50) {
        let body = json!({"device_id": Uuid::now_v7(), "submissions": batch}).to_string();
        let (status, answer) = request(&server.addr, "POST", "/api/v1/sync", &body).expect("an answer");
        assert_eq!(status, 200);
        for (item, result) in batch.iter().zip(answer["results"].as_array().expect("results")) {
            assert_eq!(result["replayed"], json!(true), "acknowledged, so stored: {result}");
            assert_eq!(said(result), first[item["id"].as_str().expect("id")], "a replay got another outcome");
        }
    }
    drop(server);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = SqlStore::connect(database).await.expect("open the store");
        let mut stored = 0;
        for m in 0..METERS {
            stored += store.declarations_of(&subscription(m)).await.expect("read back").len();
        }
        assert_eq!(stored, items.len(), "nothing lost, nothing stored twice");
        store.close().await;
    });
}

#[test]
fn sqlite_survives_sigkill_mid_load() {
    let dir = common::scratch("crash-sqlite");
    run(&format!("sqlite://{}/kontor.db?mode=rwc", dir.display()), &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn postgres_survives_sigkill_mid_load() {
    let dir = common::scratch("crash-postgres");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let name = format!("kontor_crash_{}", std::process::id());
    let database = runtime.block_on(common::create_database(&name, &[]));
    run(&database, &dir);
    runtime.block_on(common::drop_database(&name));
    let _ = std::fs::remove_dir_all(&dir);
}
