//! The `kontor` command line as an operator uses it: importing the registry (all or nothing,
//! bad rows reported by line), and a server process that stops cleanly on SIGTERM.

mod common;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::KONTOR;
const HEADER: &str = "subscription,meter_serial,meter_digits,last_reading,last_read_at,avg_daily_m3,phone\n";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kontor-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn import(db: &str, csv: &Path) -> (bool, String) {
    let out = Command::new(KONTOR)
        .args(["import-subscribers", "--database", db])
        .arg(csv)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run kontor");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Asks a running server for `path`; answers the status line.
fn get(addr: &str, path: &str) -> Option<String> {
    let response = common::exchange(addr, "GET", path, "", "")?;
    response.lines().next().map(str::to_owned)
}

/// POSTs a JSON body with `headers`; answers the whole response.
fn post_json(addr: &str, path: &str, headers: &str, body: &str) -> String {
    common::exchange(addr, "POST", path, headers, body).unwrap_or_else(|| panic!("no answer from {addr}{path}"))
}

#[test]
fn import_is_all_or_nothing_and_updates_on_reimport() {
    let dir = scratch("import");
    let db = format!("sqlite://{}/k.db?mode=rwc", dir.display());
    let csv = dir.join("subscribers.csv");

    std::fs::write(
        &csv,
        format!("{HEADER}1234567890,AB123456,5,10234,2026-10-01T09:00:00+03:30,3.2,09120000001\n12x4,CD1234,5,,,,\n"),
    )
    .expect("write csv");
    let (ok, text) = import(&db, &csv);
    assert!(!ok, "a bad row must fail the import: {text}");
    assert!(text.contains("line 3") && text.contains("subscription"), "{text}");
    assert!(text.contains("nothing imported"), "{text}");

    std::fs::write(&csv, format!("{HEADER}۱۲۳۴۵۶۷۸۹۰,ab-123456,5,10234,2026-10-01,3.2,\n2345678901,CD234567,,,,,\n"))
        .expect("write csv");
    let (ok, text) = import(&db, &csv);
    assert!(ok, "{text}");
    assert!(text.contains("imported 2 subscriber(s)"), "{text}");
    let (ok, text) = import(&db, &csv);
    assert!(ok && text.contains("imported 2"), "importing again updates: {text}");
    assert!(!dir.join("k.db-wal").exists(), "the log is folded into the database file on exit: it alone is a backup");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts `kontor serve` on `db` and a free port, and waits until it is ready.
fn serve(db: &str, extra: &[&str]) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(KONTOR)
        .args(["serve", "--database", db, "--listen", &addr])
        .args(extra)
        .env("RUST_LOG", "warn")
        .env("KONTOR_SMS_SECRET", "cli-secret")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start kontor");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&addr, "/readyz").as_deref() != Some("HTTP/1.1 200 OK") {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kontor did not become ready");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, addr)
}

#[test]
fn serve_answers_and_stops_on_sigterm() {
    let dir = scratch("serve");
    let db = format!("sqlite://{}/k.db?mode=rwc", dir.display());
    let (mut child, addr) = serve(&db, &["--demo", "--http-threads", "2"]);
    assert_eq!(get(&addr, "/pwa/kontor.wasm").as_deref(), Some("HTTP/1.1 404 Not Found"), "no HTML for a missing file");
    assert_eq!(get(&addr, "/office/login").as_deref(), Some("HTTP/1.1 200 OK"), "the console is served");

    // The service card's SMS, from the demo subscriber's registered phone.
    let sms = r#"{"from": "09120000001", "to": "500025194", "text": "۱۰۳۲۱*۵*۱۲۳۴۵۶۷۸۹۰", "message_id": "cli-1"}"#;
    let response = post_json(&addr, "/api/v1/sms/inbound", "x-kontor-sms-secret: cli-secret\r\n", sms);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"status\":\"accepted\"") && response.contains("\"tracking_code\":\""), "{response}");

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let exit = child.wait().expect("wait for kontor");
    assert!(exit.success(), "kontor exits cleanly on SIGTERM: {exit}");
    assert!(!dir.join("k.db-wal").exists(), "and folds the write-ahead log into the database file");
    let mut out = String::new();
    child.stdout.take().map(|mut s| s.read_to_string(&mut out));
    assert!(out.contains("1234567890") && out.contains("AB123456"), "the demo subscribers are printed: {out}");
    assert!(out.contains("office, reviewer, admin (password kontor-demo-password)"), "and the console accounts: {out}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn kontor(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(KONTOR)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kontor");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait for kontor");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn operators_are_created_from_stdin_and_exports_start_empty() {
    let dir = scratch("operator");
    let db = format!("sqlite://{}/k.db?mode=rwc", dir.display());
    let create = ["create-operator", "--database", &db, "--role", "reviewer", "--office", "Billing", "rev"];
    let (ok, out, err) = kontor(&create, "correct horse battery\n");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "created rev (reviewer, Billing)");
    let (ok, out, _) = kontor(&create, "another long password\n");
    assert!(ok);
    assert!(out.starts_with("updated rev"), "{out}");
    let (ok, _, err) = kontor(&create, "short\n");
    assert!(!ok && err.contains("at least 10 characters"), "{err}");
    let (ok, _, err) = kontor(&["create-operator", "--database", &db, "--role", "boss", "--office", "x", "y"], "");
    assert!(!ok && err.contains("boss"), "{err}");

    let (ok, out, err) = kontor(&["export-readings", "--database", &db, "--format", "csv"], "");
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "a header and nothing else: {out}");
    assert!(err.contains("0 reading(s); next cursor: 0"), "{err}");
    let (ok, _, err) = kontor(&["export-readings", "--database", &db, "--since", "x"], "");
    assert!(!ok && err.contains("--since"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `kontor ivr-prompts` speaks every sound file the IVR can play, and the digits, into WAV files
/// Asterisk plays as they are: 8 kHz, mono, 16-bit, each long enough to hold speech.
#[test]
fn the_ivr_prompts_are_spoken_for_asterisk() {
    let dir = scratch("prompts");
    let (ok, out, err) = kontor(&["ivr-prompts", "--out", dir.to_str().expect("utf-8 path")], "");
    assert!(ok, "espeak-ng and sox are installed by `cargo xtask setup`: {err}");
    let expected: Vec<String> = server::ivr::prompts()
        .into_iter()
        .map(|(file, _, _)| format!("{file}.wav"))
        .chain((0..10).map(|d| format!("digits/{d}.wav")))
        .collect();
    assert!(out.contains(&format!("{} sound files", expected.len())), "{out}");
    assert!(expected.iter().any(|f| f == "kontor/reason-unverified_sender.wav"), "reasons included");
    for file in &expected {
        let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let u32_at = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        assert!(bytes.len() > 44 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE", "{file} is a WAV file");
        assert_eq!(
            (u16_at(20), u16_at(22), u32_at(24), u16_at(34)),
            (1, 1, 8000, 16),
            "{file}: PCM, mono, 8 kHz, 16-bit"
        );
        // A fifth of a second at least: "یک" is short, a sentence is seconds long.
        assert!(bytes.len() > 44 + 8000 * 2 / 5, "{file} holds speech: {} bytes", bytes.len());
    }
    let welcome = std::fs::metadata(dir.join("kontor/welcome.wav")).expect("welcome").len();
    let one = std::fs::metadata(dir.join("digits/1.wav")).expect("one").len();
    assert!(welcome > 4 * one, "a sentence is longer than a digit: {welcome} against {one} bytes");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serving_on_no_http_threads_is_refused() {
    let (ok, _, err) = kontor(&["serve", "--http-threads", "0"], "");
    assert!(!ok, "kontor does not start");
    assert!(err.contains("--http-threads"), "and names the flag: {err}");
}

#[test]
fn an_in_memory_database_is_refused() {
    let dir = scratch("memory");
    let csv = dir.join("meters.csv");
    std::fs::write(&csv, format!("{HEADER}1234567890,AB123456,5,10234,2026-10-01T09:00:00+03:30,2.5,\n")).expect("csv");
    for url in ["sqlite::memory:", "sqlite://kontor.db?mode=memory"] {
        let (ok, text) = import(url, &csv);
        assert!(!ok, "{url} is refused");
        assert!(text.contains("in-memory database"), "and the operator is told why: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `kontor serve` process, stopped with SIGTERM when dropped, so that a failed assertion does
/// not leave it running.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

impl Running {
    /// `kontor serve` on `db`, until dropped; its address.
    fn start(db: &str) -> (Self, String) {
        let (child, addr) = serve(db, &[]);
        (Self(child), addr)
    }
}

/// A scratch SQLite store whose registry holds one meter, 1234567890 / AB123456, and the days
/// the declaring tests speak of: `day(n)` is n days after ten days ago.
struct OneMeter {
    dir: PathBuf,
    db: String,
    csv: PathBuf,
    start: time::OffsetDateTime,
}

impl OneMeter {
    fn new(name: &str) -> Self {
        let dir = scratch(name);
        let db = format!("sqlite://{}/k.db?mode=rwc", dir.display());
        let csv = dir.join("meters.csv");
        Self { dir, db, csv, start: time::OffsetDateTime::now_utc() - time::Duration::days(10) }
    }

    fn day(&self, n: i64) -> String {
        use time::format_description::well_known::Rfc3339;
        (self.start + time::Duration::days(n)).format(&Rfc3339).expect("format")
    }

    /// Imports the registry (from another process) with the company's reading of day `on`.
    fn bill(&self, reading: u64, on: i64) {
        std::fs::write(&self.csv, format!("{HEADER}1234567890,AB123456,5,{reading},{},3.2,\n", self.day(on)))
            .expect("csv");
        let (ok, text) = import(&self.db, &self.csv);
        assert!(ok, "{text}");
    }
}

impl Drop for OneMeter {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Syncs one declaration for the meter 1234567890 / AB123456; the whole response.
fn declare(addr: &str, id: &str, reading: u64, at: &str) -> String {
    let item = format!(
        r#"{{"id":"{id}","subscription":"1234567890","meter_serial":"AB123456","reading":{reading},"read_at":"{at}"}}"#
    );
    let body = format!(r#"{{"device_id":"8d7f5a52-7f4e-4f55-9a57-8c3b0e6f7a10","submissions":[{item}]}}"#);
    post_json(addr, "/api/v1/sync", "", &body)
}

/// The server keeps the meters it stores declarations for in memory; an import run by another
/// process while it serves must still be what the next declaration is measured against.
#[test]
fn a_reimport_while_serving_is_what_the_next_declaration_meets() {
    let store = OneMeter::new("reimport");
    store.bill(10_000, 0);
    let (server, addr) = Running::start(&store.db);
    let first = declare(&addr, "0190a3c4-0000-7000-8000-000000000001", 10_003, &store.day(1));
    assert!(first.contains(r#""status":"accepted""#), "{first}");

    // The company reads the meter on day 2 and the registry is imported again, by another process.
    store.bill(10_010, 2);

    // Below the company's reading of day 2, though above the declaration of day 1.
    let second = declare(&addr, "0190a3c4-0000-7000-8000-000000000002", 10_005, &store.day(3));
    assert!(second.contains(r#""code":"reading_decreased""#), "measured against the imported reading: {second}");
    drop(server);
}

/// A meter's latest reading is not stored beside the meter but found in its chain of
/// declarations. After a restart (nothing in memory), it must still be the last declaration
/// that counts, unless the company's billed reading is later; an older billed reading imported
/// again changes nothing.
#[test]
fn a_restarted_server_finds_each_meters_latest_reading() {
    let store = OneMeter::new("latest");
    store.bill(10_000, 0);
    let id = |n: u32| format!("0190a3c4-0000-7000-8000-{n:012}");
    let latest = |addr: &str| {
        let body = r#"{"subscription":"1234567890","meter_serial":"AB123456","device_id":"8d7f5a52-7f4e-4f55-9a57-8c3b0e6f7a10"}"#;
        let answer = post_json(addr, "/api/v1/meters/verify", "", body);
        let json = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let value: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {answer}"));
        value["meter"]["last_reading"].as_u64().map(|r| r.to_string()).unwrap_or_default()
    };

    let (server, addr) = Running::start(&store.db);
    let first = declare(&addr, &id(1), 10_010, &store.day(3));
    assert!(first.contains(r#""status":"accepted""#), "{first}");
    // Read before the latest: it counts, and the latest stays the later one.
    let earlier = declare(&addr, &id(2), 10_004, &store.day(1));
    assert!(earlier.contains(r#""status":"accepted""#), "{earlier}");
    assert_eq!(latest(&addr), "10010");
    drop(server);

    // An older company reading imported again (day 2) does not hide the declaration of day 3.
    store.bill(10_008, 2);
    let (server, addr) = Running::start(&store.db);
    assert_eq!(latest(&addr), "10010", "after a restart");
    let lower = declare(&addr, &id(3), 10_009, &store.day(4));
    assert!(lower.contains(r#""code":"reading_decreased""#), "measured against day 3's 10010: {lower}");
    drop(server);

    // A later company reading (day 5) is the latest.
    store.bill(10_020, 5);
    let (server, addr) = Running::start(&store.db);
    assert_eq!(latest(&addr), "10020");
    let next = declare(&addr, &id(4), 10_023, &store.day(6));
    assert!(next.contains(r#""status":"accepted""#), "{next}");
    assert!(next.contains(r#""consumption_m3":3"#), "measured from the billed 10020: {next}");
    drop(server);
}

/// With no `--web-root`, `kontor serve` serves the web app built into the binary (from
/// `dist/pwa` when it was compiled): one file to deploy, compressed and cached as from a folder.
#[test]
fn the_binary_carries_the_web_app() {
    let dir = scratch("embedded");
    let db = format!("sqlite://{}/k.db?mode=rwc", dir.display());
    // Stopped when dropped, also by a failed assertion: a server left running would hold the
    // test's output open and keep `cargo test` waiting.
    let (server, addr) = Running::start(&db);
    let exchange = |method: &str, path: &str, headers: &str| {
        common::exchange(&addr, method, path, headers, "").map(|r| r.to_ascii_lowercase()).unwrap_or_default()
    };
    let page = exchange("GET", "/pwa/", "Accept-Encoding: identity\r\n");
    assert!(
        page.starts_with("http/1.1 200"),
        "the binary carries the app (`cargo xtask dist` before building it): {}",
        page.lines().next().unwrap_or("no answer")
    );
    assert!(page.contains("content-security-policy: default-src 'none'") && page.contains("sw.js"), "{page}");
    let compressed = exchange("HEAD", "/pwa/", "Accept-Encoding: gzip, br\r\n");
    assert!(
        compressed.contains("content-encoding: br") && compressed.contains("cache-control: no-cache"),
        "{compressed}"
    );
    let etag = compressed
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|| panic!("an etag: {compressed}"));
    // The tag is compared as sent; the lowercased copy is only for reading the headers.
    let original = common::exchange(&addr, "HEAD", "/pwa/", "", "").unwrap_or_default();
    let tag = original.lines().find(|l| l.to_ascii_lowercase().starts_with("etag:")).map(|l| l[5..].trim().to_owned());
    assert_eq!(tag.as_deref().map(str::to_ascii_lowercase).as_deref(), Some(etag.as_str()));
    let again = exchange("GET", "/pwa/", &format!("If-None-Match: {}\r\n", tag.unwrap_or_default()));
    assert!(again.starts_with("http/1.1 304"), "{again}");
    assert!(exchange("GET", "/pwa/missing.wasm", "").starts_with("http/1.1 404"), "no HTML for a missing file");
    let root = exchange("GET", "/", "");
    assert!(root.starts_with("http/1.1 307") && root.contains("location: /pwa/"), "{root}");
    let favicon = exchange("HEAD", "/favicon.ico", "");
    assert!(favicon.starts_with("http/1.1 200") && favicon.contains("content-type: image/png"), "{favicon}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--log-format json`: every log line is one JSON object, and a line written while a request
/// is handled carries that request's id, which its answer carries too (`x-request-id`, the
/// caller's own when it sent one).
#[test]
fn json_logs_carry_the_request_id() {
    let dir = scratch("json-logs");
    let db = format!("sqlite://{}/k.db?mode=rwc", dir.display());
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(KONTOR)
        .args(["serve", "--demo", "--log-format", "json", "--database", &db, "--listen", &addr])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start kontor");
    let mut server = Running(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&addr, "/readyz").as_deref() != Some("HTTP/1.1 200 OK") {
        assert!(Instant::now() < deadline, "kontor did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let id = "0b7f2a5e-1c7e-4d0e-9a8b-5b5a3f7c9d21";
    let synced = declare(&addr, id, 10_330, "2026-11-26T08:15:00+03:30");
    assert!(synced.contains("\"results\""), "{synced}");

    // The photo, with the caller's own request id.
    let photo =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/meter.jpg")).expect("fixture");
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let head = format!(
        "PUT /api/v1/declarations/{id}/photo HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: image/jpeg\r\nX-Request-Id: cli-req-8\r\nContent-Length: {}\r\n\r\n",
        photo.len()
    );
    stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&photo)).expect("send");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let answer = answer.to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 201") && answer.contains("x-request-id: cli-req-8"), "{answer}");
    // Without one, the server makes one up.
    let made = || {
        let plain = common::exchange(&addr, "GET", "/healthz", "", "").unwrap_or_default().to_ascii_lowercase();
        plain.lines().find_map(|l| l.strip_prefix("x-request-id: ")).unwrap_or_default().trim().to_owned()
    };
    let (first, second) = (made(), made());
    assert!(first.len() > 16 && second.len() > 16 && first != second, "{first} {second}");

    // Stopped (SIGTERM, waited for) before its output is read to the end.
    let stdout = server.0.stdout.take();
    drop(server);
    let mut out = String::new();
    stdout.map(|mut s| s.read_to_string(&mut out));
    let lines: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.iter().any(|l| l["fields"]["message"] == "kontor is serving"), "{out}");
    let stored =
        lines.iter().find(|l| l["fields"]["message"] == "meter photo stored").unwrap_or_else(|| panic!("{out}"));
    assert_eq!(stored["span"]["request_id"], "cli-req-8", "{stored}");
    assert_eq!(stored["level"], "INFO");
    let _ = std::fs::remove_dir_all(&dir);
}
