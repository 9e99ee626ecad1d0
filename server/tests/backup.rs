//! Backups of a live SQLite store, with real processes: `kontor backup` runs while four clients
//! send batches to `kontor serve`; the copy passes `kontor verify-backup`, and a server started on
//! it answers every declaration acknowledged before the backup began as a replay of its first
//! outcome. A backup never overwrites a file, and a damaged one is refused.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Instance, KONTOR, import, request, scratch};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

const METERS: usize = 8;
const PER_METER: u64 = 40;
const CLIENTS: usize = 4;
const BATCH: usize = 4;
/// The backup starts once this many declarations have been acknowledged.
const BACKUP_AFTER: usize = 80;

/// What an answer said about one item; a replay must say the same.
fn said(result: &Value) -> Value {
    json!([result["status"], result["code"], result["tracking_code"], result["consumption_m3"]])
}

fn kontor(args: &[&str]) -> (bool, String) {
    let out = Command::new(KONTOR).args(args).env("RUST_LOG", "warn").output().expect("run kontor");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn a_backup_taken_under_load_restores_every_acknowledged_declaration() {
    let dir = scratch("backup");
    let database = format!("sqlite://{}/live.db?mode=rwc", dir.display());
    let billed = OffsetDateTime::now_utc() - time::Duration::days(30);
    let billed_text = billed.format(&Rfc3339).expect("time");
    let rows: String = (0..METERS).map(|m| format!("88{m:08},KB{m:06},5,10000,{billed_text},3.0,\n")).collect();
    import(&database, &dir, &rows);
    let items: Vec<Value> = (1..=PER_METER)
        .flat_map(|step| {
            (0..METERS).map(move |m| {
                json!({
                    "id": Uuid::now_v7(), "subscription": format!("88{m:08}"), "meter_serial": format!("KB{m:06}"),
                    "reading": 10_000 + 2 * step,
                    "read_at": (billed + time::Duration::hours(step as i64)).format(&Rfc3339).expect("time"),
                })
            })
        })
        .collect();

    let mut server = Instance::start(&database, &dir, "live");
    server.wait_ready();
    let backup = dir.join("backup.db");
    let acknowledged = AtomicUsize::new(0);
    // Each acknowledged id, in the order acknowledged, with what its answer said.
    let answered: Mutex<Vec<(String, Value)>> = Mutex::new(Vec::new());
    let mut before_backup = 0;
    let mut printed = String::new();
    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let (addr, acknowledged, answered) = (&server.addr, &acknowledged, &answered);
            let mine: Vec<Value> = items.iter().skip(client).step_by(CLIENTS).cloned().collect();
            scope.spawn(move || {
                for batch in mine.chunks(BATCH) {
                    let body = json!({"device_id": Uuid::now_v7(), "submissions": batch}).to_string();
                    let (status, answer) = request(addr, "POST", "/api/v1/sync", &body).expect("an answer");
                    assert_eq!(status, 200, "{answer}");
                    let mut answered = answered.lock().expect("answered");
                    for (item, result) in batch.iter().zip(answer["results"].as_array().expect("results")) {
                        answered.push((item["id"].as_str().expect("id").to_owned(), said(result)));
                    }
                    acknowledged.fetch_add(batch.len(), Ordering::SeqCst);
                }
            });
        }
        while acknowledged.load(Ordering::SeqCst) < BACKUP_AFTER {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Everything acknowledged from here on was committed before the copy began.
        before_backup = answered.lock().expect("answered").len();
        let (ok, text) = kontor(&["backup", "--database", &database, "--to", backup.to_str().expect("utf-8")]);
        assert!(ok, "{text}");
        printed = text;
    });
    assert!(before_backup >= BACKUP_AFTER && before_backup < items.len(), "backed up mid-load ({before_backup})");
    assert!(printed.contains("backed up to") && printed.contains("declarations"), "{printed}");
    drop(server);

    let (ok, text) = kontor(&["verify-backup", backup.to_str().expect("utf-8")]);
    assert!(ok && text.contains("is whole"), "{text}");
    println!("{} of {} acknowledged before the backup; {}", before_backup, items.len(), text.trim());

    // A server on the copy knows every declaration acknowledged before the backup began.
    let restored = format!("sqlite://{}?mode=rwc", backup.display());
    let mut server = Instance::start(&restored, &dir, "restored");
    server.wait_ready();
    let first: HashMap<String, Value> =
        answered.into_inner().expect("answered").into_iter().take(before_backup).collect();
    let wanted: Vec<&Value> = items.iter().filter(|i| first.contains_key(i["id"].as_str().expect("id"))).collect();
    assert_eq!(wanted.len(), before_backup);
    for batch in wanted.chunks(50) {
        let body = json!({"device_id": Uuid::now_v7(), "submissions": batch}).to_string();
        let (status, answer) = request(&server.addr, "POST", "/api/v1/sync", &body).expect("an answer");
        assert_eq!(status, 200);
        for (item, result) in batch.iter().zip(answer["results"].as_array().expect("results")) {
            assert_eq!(result["replayed"], json!(true), "acknowledged before the backup, so in it: {result}");
            assert_eq!(said(result), first[item["id"].as_str().expect("id")], "the backup holds another outcome");
        }
    }
    drop(server);

    // A backup never overwrites; a damaged file is refused.
    let (ok, text) = kontor(&["backup", "--database", &database, "--to", backup.to_str().expect("utf-8")]);
    assert!(!ok && text.contains("never overwrites"), "{text}");
    let bytes = std::fs::read(&backup).expect("read the backup");
    let damaged = dir.join("damaged.db");
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).expect("write a half");
    let (ok, text) = kontor(&["verify-backup", damaged.to_str().expect("utf-8")]);
    assert!(!ok, "half a database is not a backup: {text}");
    let _ = std::fs::remove_dir_all(&dir);
}
