//! What the process-level tests share: `kontor serve` processes on real ports, plain HTTP/1.1
//! requests to them, and PostgreSQL databases made for one test.

#![allow(dead_code)] // Each test file uses its own part of this module.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Connection as _;

pub const KONTOR: &str = env!("CARGO_BIN_EXE_kontor");

/// A `kontor serve` process; killed on drop. Its log is kept for a failing test to show.
pub struct Instance {
    child: Child,
    pub addr: String,
    pub log: PathBuf,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Instance {
    /// Starts `kontor serve` on a free port over `database`, logging to `dir/<name>.log`.
    pub fn start(database: &str, dir: &Path, name: &str) -> Self {
        Self::start_limited(database, dir, name, None)
    }

    /// Like [`Instance::start`], with no file of the process allowed past `max_file_kib` KiB
    /// (`ulimit -f`, SIGXFSZ ignored): a write past it fails as on a full disk.
    pub fn start_limited(database: &str, dir: &Path, name: &str, max_file_kib: Option<u64>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let addr = format!("127.0.0.1:{port}");
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = match max_file_kib {
            None => Command::new(KONTOR),
            Some(kib) => {
                let mut bash = Command::new("bash");
                bash.args(["-c", &format!("ulimit -f {kib}; trap '' XFSZ; exec \"$0\" \"$@\""), KONTOR]);
                bash
            }
        };
        let child = command
            .args(["serve", "--listen", &addr, "--database", database])
            .env("RUST_LOG", "warn,server::store=info")
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("start kontor serve");
        Self { child, addr, log }
    }

    /// Waits until `/readyz` answers 200, boundedly; panics with the log if the process ends.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("poll") {
                panic!("kontor serve on {} exited ({status}): {}", self.addr, self.log_text());
            }
            if request(&self.addr, "GET", "/readyz", "").is_some_and(|(status, _)| status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("kontor serve on {} never became ready: {}", self.addr, self.log_text());
    }

    /// Ends the process at once (SIGKILL): no drain, no last commit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// One HTTP/1.1 request on its own connection, with `headers` (each line ending in `\r\n`) besides
/// the JSON content type; the whole response as sent, or `None` if the server could not be
/// reached or did not answer within 30 s.
pub fn exchange(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         {headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// One HTTP/1.1 request on its own connection; the status and the JSON body (`Null` if none).
pub fn request(addr: &str, method: &str, path: &str, body: &str) -> Option<(u16, Value)> {
    let response = exchange(addr, method, path, "", body)?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let json = response.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
    Some((status, json))
}

pub fn post(addr: &str, path: &str, body: &Value) -> (u16, Value) {
    request(addr, "POST", path, &body.to_string()).unwrap_or_else(|| panic!("no answer from {addr}{path}"))
}

/// The local PostgreSQL server (`KONTOR_TEST_POSTGRES`).
pub fn admin_url() -> String {
    std::env::var("KONTOR_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A PostgreSQL database made for one test; its URL. `setup` runs on it right after creation.
pub async fn create_database(name: &str, setup: &[&str]) -> String {
    let admin = admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is needed for this test and is not reachable at {admin}: {e}"));
    for sql in [format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), format!("CREATE DATABASE {name}")]
        .into_iter()
        .chain(setup.iter().map(|s| s.replace("{name}", name)))
    {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.expect("set up the test database");
    }
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base).to_owned();
    format!("{base}/{name}")
}

pub async fn drop_database(name: &str) {
    let mut conn = sqlx::PgConnection::connect(&admin_url()).await.expect("reconnect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut conn)
        .await
        .expect("drop the test database");
}

/// An empty scratch folder of this test run.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kontor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Imports a registry CSV (the header is added) into `database` with `kontor import-subscribers`.
pub fn import(database: &str, dir: &Path, rows: &str) {
    let csv = dir.join("registry.csv");
    let header = "subscription,meter_serial,meter_digits,last_reading,last_read_at,avg_daily_m3,phone\n";
    std::fs::write(&csv, format!("{header}{rows}")).expect("write csv");
    let out = Command::new(KONTOR)
        .args(["import-subscribers", "--database", database])
        .arg(&csv)
        .env("RUST_LOG", "warn")
        .output()
        .expect("import");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
