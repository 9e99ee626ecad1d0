//! A province moves from SQLite to PostgreSQL with `kontor migrate-store`: a server on SQLite
//! takes declarations, a complaint and a device; it stops; the store is moved and verified; a
//! server on PostgreSQL then answers every replay with the first outcome, continues the
//! numbering of tracking codes and complaint numbers, and hands billing the same readings.
//!
//! Needs the local PostgreSQL (`KONTOR_TEST_POSTGRES`); fails, saying so, when it is missing.

mod common;

use std::process::Command;

use common::{Instance, KONTOR, import, post};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

fn hours_ago(hours: i64) -> String {
    (OffsetDateTime::now_utc() - time::Duration::hours(hours)).format(&Rfc3339).expect("time")
}

fn kontor(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(KONTOR).args(args).env("RUST_LOG", "warn").output().expect("run kontor");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What an answer said about each item, in order.
fn outcomes(answer: &Value) -> Vec<(Value, Value, Value)> {
    let results = answer["results"].as_array().expect("results");
    results.iter().map(|r| (r["status"].clone(), r["tracking_code"].clone(), r["consumption_m3"].clone())).collect()
}

#[test]
fn a_sqlite_province_moves_to_postgres_with_nothing_lost() {
    let dir = common::scratch("migrate-store");
    let sqlite = format!("sqlite://{}/kontor.db?mode=rwc", dir.display());
    let billed = (OffsetDateTime::now_utc() - time::Duration::days(30)).format(&Rfc3339).expect("time");
    import(
        &sqlite,
        &dir,
        &format!("5550001111,MS000001,5,10000,{billed},3.0,\n5550002222,MS000002,5,20000,{billed},3.0,\n"),
    );

    // A day of work on SQLite: declarations (accepted, rejected, held for review), a device, a
    // complaint, an export.
    let mut first = Instance::start(&sqlite, &dir, "sqlite");
    first.wait_ready();
    let declaration = |sub: &str, serial: &str, reading: u64, hours: i64| json!({"id": Uuid::now_v7(), "subscription": sub, "meter_serial": serial, "reading": reading, "read_at": hours_ago(hours)});
    let batch = json!({"device_id": Uuid::now_v7(), "submissions": [
        declaration("5550001111", "MS000001", 10_050, 5),
        declaration("5550001111", "MS000001", 10_051, 4),
        declaration("5550001111", "MS000001", 10_700, 3), // 649 m³ in an hour: impossible
        declaration("5550001111", "MS000001", 9_000, 2), // lower: held for review
        declaration("5550002222", "MS000002", 20_080, 1),
    ]});
    let (status, before) = post(&first.addr, "/api/v1/sync", &batch);
    assert_eq!(status, 200, "{before}");
    let said = outcomes(&before);
    let statuses: Vec<&str> = said.iter().map(|(s, _, _)| s.as_str().expect("status")).collect();
    assert_eq!(statuses, ["accepted", "accepted", "rejected", "needs_review", "accepted"]);
    let device = json!({"subscription": "5550002222", "meter_serial": "MS000002", "device_id": Uuid::now_v7()});
    assert_eq!(post(&first.addr, "/api/v1/meters/verify", &device).0, 200);
    let complaint = json!({"device_id": Uuid::now_v7(), "complaints": [{
        "id": Uuid::now_v7(), "subscription": "5550001111", "meter_serial": "MS000001", "kind": "dispute",
        "about": said[3].1, "text": "رقم را درست خوانده‌ام.", "made_at": hours_ago(0),
    }]});
    let (status, filed) = post(&first.addr, "/api/v1/complaints", &complaint);
    assert_eq!(status, 200, "{filed}");
    let number = filed["results"][0]["complaint_number"].clone();
    assert!(number.is_string(), "{filed}");
    drop(first);
    let (ok, billing_before, err) = kontor(&["export-readings", "--database", &sqlite, "--format", "csv"]);
    assert!(ok, "{err}");

    // The move, verified table by table; a second move into the now full target is refused.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let name = format!("kontor_migrate_{}", std::process::id());
    let postgres = runtime.block_on(common::create_database(&name, &[]));
    let (ok, report, err) = kontor(&["migrate-store", "--from", &sqlite, "--to", &postgres]);
    assert!(ok, "{report}{err}");
    assert!(report.contains("moved and verified"), "{report}");
    let rows = |table: &str| {
        let line = report.lines().find(|l| l.split_whitespace().next() == Some(table)).expect(table);
        line.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()).expect("a row count")
    };
    assert_eq!((rows("declarations"), rows("meters"), rows("devices"), rows("complaints")), (5, 2, 1, 1));
    assert_eq!(rows("billing_feed"), 3, "the three accepted readings");
    assert!(rows("audit") >= 1, "the export was audited: {report}");
    let (ok, _, err) = kontor(&["migrate-store", "--from", &sqlite, "--to", &postgres]);
    assert!(!ok && err.contains("already holds data"), "{err}");

    // The province now runs on PostgreSQL.
    let mut second = Instance::start(&postgres, &dir, "postgres");
    second.wait_ready();
    let (status, again) = post(&second.addr, "/api/v1/sync", &batch);
    assert_eq!(status, 200, "{again}");
    assert_eq!(outcomes(&again), said, "every replay answers the first outcome");
    assert!(again["results"].as_array().expect("results").iter().all(|r| r["replayed"] == json!(true)));
    let (_, replayed) = post(&second.addr, "/api/v1/complaints", &complaint);
    assert_eq!(replayed["results"][0]["complaint_number"], number);
    let next = json!({"device_id": Uuid::now_v7(), "submissions": [declaration("5550002222", "MS000002", 20_081, 0)]});
    let (_, answer) = post(&second.addr, "/api/v1/sync", &next);
    let (status, code, consumption) = outcomes(&answer).remove(0);
    assert_eq!((status, consumption), (json!("accepted"), json!(1)), "measured from the moved chain: {answer}");
    assert!(code.is_string() && !said.iter().any(|(_, c, _)| *c == code), "a new tracking code: {answer}");
    let other = json!({"device_id": Uuid::now_v7(), "complaints": [{
        "id": Uuid::now_v7(), "subscription": "5550002222", "meter_serial": "MS000002", "kind": "service", "text": "ممنون", "made_at": hours_ago(0),
    }]});
    let (_, filed) = post(&second.addr, "/api/v1/complaints", &other);
    let new_number = &filed["results"][0]["complaint_number"];
    assert!(new_number.is_string() && *new_number != number, "a new complaint number: {filed}");
    drop(second);
    let (ok, billing_after, err) = kontor(&["export-readings", "--database", &postgres, "--format", "csv"]);
    assert!(ok, "{err}");
    assert!(billing_after.starts_with(&billing_before), "billing gets the same readings, then the new one");
    assert_eq!(billing_after.lines().count(), billing_before.lines().count() + 1);

    runtime.block_on(common::drop_database(&name));
    let _ = std::fs::remove_dir_all(&dir);
}
