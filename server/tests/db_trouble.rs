//! Database trouble under a running `kontor serve`: a SQLite file another process keeps locked,
//! a full disk (a file-size limit on the server process), and PostgreSQL stopped under load. Requests meanwhile fail cleanly — 503 with
//! `Retry-After`, so that phones keep their outboxes — `/readyz` tells the load balancer, and
//! once the database is back every declaration is stored, once.
//!
//! The PostgreSQL case restarts the local cluster with `pg_ctlcluster`; it is the only test of
//! this binary that uses PostgreSQL, and cargo runs test binaries one after another, so no other
//! test sees the restart. It fails, saying so, when the cluster cannot be restarted.

mod common;

use std::time::{Duration, Instant};

use common::{Instance, import, post, request};
use serde_json::{Value, json};
use server::store::{SqlStore, Store as _};
use sqlx::Connection as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

const SUB: &str = "4440001111";
const SERIAL: &str = "DT000001";

fn registry(database: &str, dir: &std::path::Path) -> OffsetDateTime {
    let billed = OffsetDateTime::now_utc() - time::Duration::days(30);
    import(database, dir, &format!("{SUB},{SERIAL},5,10000,{},3.0,\n", billed.format(&Rfc3339).expect("time")));
    billed
}

/// SQLite's own verdict on the file.
async fn integrity(path: &std::path::Path) -> String {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.expect("open");
    sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut conn).await.expect("integrity check")
}

/// Declaration `n`: an hour after the one before, a cubic metre more.
fn declaration(billed: OffsetDateTime, n: u64) -> Value {
    json!({
        "device_id": Uuid::now_v7(),
        "submissions": [{
            "id": Uuid::now_v7(), "subscription": SUB, "meter_serial": SERIAL, "reading": 10_000 + n,
            "read_at": (billed + time::Duration::hours(n as i64)).format(&Rfc3339).expect("time"),
        }],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_file_gets_503_and_nothing_is_lost() {
    let dir = common::scratch("locked-sqlite");
    let path = dir.join("kontor.db");
    let database = format!("sqlite://{}?mode=rwc", path.display());
    let billed = registry(&database, &dir);
    let mut server = Instance::start(&database, &dir, "sqlite");
    server.wait_ready();

    // Another process (a backup script gone wrong, say) holds the write lock.
    let mut intruder = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.expect("open");
    sqlx::raw_sql("BEGIN EXCLUSIVE").execute(&mut intruder).await.expect("lock the database");
    let body = declaration(billed, 1);
    let addr = server.addr.clone();
    let sent = body.clone();
    let (status, answer) = tokio::task::spawn_blocking(move || post(&addr, "/api/v1/sync", &sent)).await.expect("post");
    assert_eq!(status, 503, "a locked database is trouble to wait out, not a fault: {answer}");
    assert_eq!(answer["error"]["code"], json!("unavailable"), "{answer}");
    sqlx::raw_sql("ROLLBACK").execute(&mut intruder).await.expect("unlock");
    intruder.close().await.expect("close");

    // The phone sends it again: stored now, once.
    let addr = server.addr.clone();
    let (status, answer) = tokio::task::spawn_blocking(move || post(&addr, "/api/v1/sync", &body)).await.expect("post");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["results"][0]["status"].clone(), answer["results"][0]["replayed"].clone()),
        (json!("accepted"), json!(false))
    );
    server.kill();
    let store = SqlStore::connect(&database).await.expect("reopen");
    assert_eq!(store.declarations_of(SUB).await.expect("read back").len(), 1);
    assert_eq!(integrity(&path).await, "ok");
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gets_503_and_nothing_is_corrupted() {
    let dir = common::scratch("full-disk");
    let path = dir.join("kontor.db");
    let database = format!("sqlite://{}?mode=rwc", path.display());
    let billed = registry(&database, &dir);
    // Room for the database as it is and a little more: the write-ahead log soon hits the end.
    let size_kib = std::fs::metadata(&path).expect("the database").len() / 1024;
    let mut server = Instance::start_limited(&database, &dir, "full", Some(size_kib + 256));
    server.wait_ready();
    let addr = server.addr.clone();
    let (stored, refused) = tokio::task::spawn_blocking(move || {
        let mut stored = Vec::new();
        for n in 1..=5_000 {
            let body = declaration(billed, n);
            let (status, answer) = post(&addr, "/api/v1/sync", &body);
            if status != 200 {
                assert_eq!(status, 503, "a full disk is trouble to wait out, not a fault: {answer}");
                assert_eq!(answer["error"]["code"], json!("unavailable"), "{answer}");
                return (stored, body);
            }
            stored.push(body);
        }
        panic!("the disk never filled");
    })
    .await
    .expect("the phone");
    assert!(!stored.is_empty(), "some declarations fitted before the disk filled");
    server.kill();

    // Room again: the refused declaration is sent again and stored; the earlier ones are intact.
    let mut server = Instance::start(&database, &dir, "room");
    server.wait_ready();
    let addr = server.addr.clone();
    let first = stored[0].clone();
    tokio::task::spawn_blocking(move || {
        let (status, answer) = post(&addr, "/api/v1/sync", &refused);
        assert_eq!((status, answer["results"][0]["replayed"].clone()), (200, json!(false)), "{answer}");
        let (status, answer) = post(&addr, "/api/v1/sync", &first);
        assert_eq!((status, answer["results"][0]["replayed"].clone()), (200, json!(true)), "{answer}");
    })
    .await
    .expect("the phone again");
    server.kill();
    let store = SqlStore::connect(&database).await.expect("reopen");
    assert_eq!(store.declarations_of(SUB).await.expect("read back").len(), stored.len() + 1);
    store.close().await;
    assert_eq!(integrity(&path).await, "ok");
    println!("{} declarations stored before the disk filled", stored.len());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The local cluster's version, for `pg_ctlcluster`.
fn cluster_version() -> String {
    let versions = std::fs::read_dir("/etc/postgresql").expect("a Debian PostgreSQL cluster under /etc/postgresql");
    versions.filter_map(|v| v.ok()?.file_name().into_string().ok()).max().expect("a cluster version")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_loses_nothing() {
    let dir = common::scratch("pg-restart");
    let name = format!("kontor_restart_{}", std::process::id());
    let database = common::create_database(&name, &[]).await;
    let billed = registry(&database, &dir);
    let mut server = Instance::start(&database, &dir, "postgres");
    server.wait_ready();
    let addr = server.addr.clone();

    let outcome = tokio::task::spawn_blocking(move || {
        // A phone declaring all along, keeping each declaration until it is acknowledged.
        let phone = std::thread::spawn({
            let addr = addr.clone();
            move || {
                let mut answers: Vec<u16> = Vec::new();
                for n in 1..=60 {
                    let body = declaration(billed, n);
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        let (status, answer) =
                            request(&addr, "POST", "/api/v1/sync", &body.to_string()).unwrap_or((0, Value::Null));
                        answers.push(status);
                        if status == 200 {
                            break;
                        }
                        assert_eq!(status, 503, "only clean refusals while the database is away: {answer}");
                        assert!(Instant::now() < deadline, "the database never came back");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                answers
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        // Down for seven seconds — longer than a readiness check (2 s) or a request (5 s) waits for
        // a connection — then up again.
        let cluster = |action: &str| {
            let status = std::process::Command::new("pg_ctlcluster")
                .args(["--skip-systemctl-redirect", &cluster_version(), "main", action, "-m", "fast"])
                .status()
                .expect("run pg_ctlcluster");
            assert!(status.success(), "pg_ctlcluster {action} failed");
        };
        cluster("stop");
        let down = Instant::now();
        let mut unready = false;
        while down.elapsed() < Duration::from_secs(7) {
            unready |= request(&addr, "GET", "/readyz", "").map(|(s, _)| s) != Some(200);
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster("start");
        // Readiness follows the database: true again once it is back.
        let deadline = Instant::now() + Duration::from_secs(60);
        while request(&addr, "GET", "/readyz", "").map(|(s, _)| s) != Some(200) {
            assert!(Instant::now() < deadline, "/readyz never came back");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(unready, "/readyz said ready while PostgreSQL was down");
        phone.join().expect("the phone")
    })
    .await
    .expect("the load");
    let refused = outcome.iter().filter(|s| **s != 200).count();
    println!("{} requests, {refused} refused while PostgreSQL was down", outcome.len());
    assert!(refused > 0, "requests while the database was down were refused: {outcome:?}");

    server.kill();
    let store = SqlStore::connect(&database).await.expect("reopen");
    let stored = store.declarations_of(SUB).await.expect("read back");
    assert_eq!(stored.len(), 60, "every declaration stored once");
    store.close().await;
    common::drop_database(&name).await;
    let _ = std::fs::remove_dir_all(&dir);
}
