//! Honest phones and attackers at once, behind a trusted proxy as in production. While waves of
//! abuse run in parallel — serial guesses on random and junk subscriptions from ever new
//! addresses, wrong console passwords (each one an argon2 hash unless refused), wrong billing
//! tokens, hundreds of idle connections and bodies trickled a byte a second — a phone holding its
//! device token syncs a reading every 50 ms, and at the end a new phone verifies its meter and an
//! operator signs in. Every honest request must be served; the server's peak memory (this
//! process's, the attackers' small share included) must stay bounded. The latencies and the peak
//! are printed for closing notes.
//!
//! The suite's run lasts `KONTOR_SIEGE_SECONDS` (8 unless told); `cargo xtask siege --seconds N`
//! runs it longer against a release build.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server::store::Role;
use tests::{Backend, SERIAL, SERIAL_WRAP, SUB, SUB_WRAP, TestServer};
use uuid::Uuid;

/// The allocator the `kontor` binary runs on: with glibc's, each blocking thread that ran a
/// password hash keeps its 19 MiB block in an arena of its own, and the figure would be the test
/// process's, not the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BILLING_TOKEN: &str = "siege-billing-token-0123456789abcdef";

tests::on_both_backends!(honest_phones_are_served_through_a_siege);

/// A number from `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// What the attackers were answered: how many of each status (0: no answer).
#[derive(Default)]
struct Tally(std::sync::Mutex<std::collections::BTreeMap<u16, u64>>);

impl Tally {
    fn count(&self, status: Option<u16>) {
        *self.0.lock().expect("tally").entry(status.unwrap_or(0)).or_default() += 1;
    }

    fn of(&self, status: u16) -> u64 {
        self.0.lock().expect("tally").get(&status).copied().unwrap_or(0)
    }

    fn show(&self) -> String {
        let counts = self.0.lock().expect("tally");
        let sent: u64 = counts.values().sum();
        let each: Vec<String> = counts.iter().map(|(status, n)| format!("{n}×{status}")).collect();
        format!("{sent} ({})", each.join(" "))
    }
}

/// One siege at a time: each measures this process's memory.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn honest_phones_are_served_through_a_siege(backend: Backend) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let seconds: u64 = std::env::var("KONTOR_SIEGE_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    let server = Arc::new(
        TestServer::start_with(backend, |o| {
            o.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
            o.billing_token = Some(BILLING_TOKEN.into());
        })
        .await,
    );
    server.add_operator("rev", Role::Reviewer, "Billing", "correct horse battery").await;
    let base = server.base.clone();
    let addr = base.trim_start_matches("http://").to_owned();

    // The subscriber's phone verified its meter before the siege.
    let phone = reqwest::Client::new();
    let verified: Value = phone
        .post(format!("{base}/api/v1/meters/verify"))
        .header("x-forwarded-for", "198.51.100.1")
        .json(&json!({"subscription": SUB, "meter_serial": SERIAL, "device_id": Uuid::new_v4()}))
        .send()
        .await
        .expect("verify")
        .json()
        .await
        .expect("json");
    let token = verified["device_token"].as_str().expect("a device token").to_owned();

    // From here the peak is the siege's own (Linux: 5 resets this process's peak RSS).
    let _ = std::fs::OpenOptions::new().write(true).open("/proc/self/clear_refs").and_then(|mut f| f.write_all(b"5"));
    let before_kib = status_kib("VmRSS:");
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut attackers = Vec::new();
    let tally = || Arc::new(Tally::default());
    let (guesses, targeted, sign_ins, tokens, trickles) = (tally(), tally(), tally(), tally(), tally());

    // Serial guesses: 40 at a time, each from a new address, on random subscriptions, some of
    // them junk of the longest length a key may have and beyond.
    for worker in 0..40u64 {
        let (stop, base, tally, targeted) = (stop.clone(), base.clone(), guesses.clone(), targeted.clone());
        attackers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let subscription = match n % 3 {
                    0 => format!("{:010}", (worker * 7_919 + n * 104_729) % 10_000_000_000),
                    1 => format!("{}{n}", "9".repeat(60)),
                    // The phone's own subscription: its token keeps it out of this.
                    _ => SUB.to_owned(),
                };
                let status = http
                    .post(format!("{base}/api/v1/meters/verify"))
                    .header("x-forwarded-for", format!("10.{}.{}.{}", worker, (n >> 8) & 255, n & 255))
                    .json(&json!({"subscription": subscription, "meter_serial": format!("G{worker}-{n}"),
                                  "device_id": Uuid::new_v4()}))
                    .send()
                    .await
                    .ok()
                    .map(|r| r.status().as_u16());
                if subscription == SUB { &targeted } else { &tally }.count(status);
            }
        }));
    }
    // Wrong console passwords: 20 at a time, for usernames that do not exist, so that each one
    // costs a hash. (Guesses at a real username slow that username down: `abuse.rs`.)
    for worker in 0..20u64 {
        let (stop, server, tally) = (stop.clone(), server.clone(), sign_ins.clone());
        attackers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let username = format!("user{worker}-{n}");
                let console = server.console_from(&format!("10.200.{worker}.{}", n & 255));
                let status = console.login(&username, &format!("guess {n}")).await.status;
                tally.count(Some(status));
            }
        }));
    }
    // Wrong billing tokens: 10 at a time.
    for worker in 0..10u64 {
        let (stop, base, tally) = (stop.clone(), base.clone(), tokens.clone());
        attackers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let status = http
                    .get(format!("{base}/api/v1/billing/readings"))
                    .header("x-forwarded-for", format!("10.250.{worker}.{}", n & 255))
                    .header("authorization", format!("Bearer guess-{worker}-{n}"))
                    .send()
                    .await
                    .ok()
                    .map(|r| r.status().as_u16());
                tally.count(status);
            }
        }));
    }
    // Idle connections (300) and trickled bodies (30 at a time), on threads of their own.
    let mut threads = Vec::new();
    for _ in 0..300 {
        let (stop, addr) = (stop.clone(), addr.clone());
        threads.push(std::thread::spawn(move || {
            let connection = std::net::TcpStream::connect(&addr);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
            drop(connection);
        }));
    }
    for _ in 0..30 {
        let (stop, addr, tally) = (stop.clone(), addr.clone(), trickles.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut stream) = std::net::TcpStream::connect(&addr) else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                let head = format!(
                    "POST /api/v1/sync HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                     Content-Length: 1000\r\n\r\n"
                );
                let _ = stream.write_all(head.as_bytes());
                let opened = Instant::now();
                // A byte a second until the server gives up on it (or the siege ends).
                while !stop.load(Ordering::Relaxed) && stream.write_all(b" ").is_ok() {
                    std::thread::sleep(Duration::from_secs(1));
                    if opened.elapsed() > Duration::from_secs(40) {
                        break;
                    }
                }
                let mut answer = [0u8; 12];
                let status = std::io::Read::read(&mut stream, &mut answer)
                    .ok()
                    .filter(|&n| n >= 12)
                    .and_then(|_| std::str::from_utf8(&answer[9..12]).ok()?.parse().ok());
                tally.count(status);
            }
        }));
    }

    // The honest phone, every 50 ms, with its token.
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    let mut reading = 10_001u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let sent = Instant::now();
        let answer = phone
            .post(format!("{base}/api/v1/sync"))
            .header("x-forwarded-for", "198.51.100.1")
            .header("authorization", format!("Bearer {token}"))
            .timeout(Duration::from_secs(30))
            .json(&json!({"device_id": Uuid::new_v4(), "submissions": [
                {"id": Uuid::now_v7(), "subscription": SUB, "meter_serial": SERIAL, "reading": reading,
                 "read_at": tests::rfc3339(time::OffsetDateTime::now_utc() - time::Duration::minutes(1))}]}))
            .send()
            .await;
        let took = sent.elapsed();
        match answer {
            Ok(response) if response.status() == 200 => {
                let body: Value = response.json().await.expect("json");
                if body["results"][0]["status"] == "accepted" {
                    latencies.push(took);
                } else {
                    failures.push(body.to_string());
                }
            }
            Ok(response) => failures.push(format!("status {}", response.status())),
            Err(e) => failures.push(format!("no answer: {e}")),
        }
        reading += 1;
        tokio::time::sleep(Duration::from_millis(50).saturating_sub(took)).await;
    }
    // Still under siege: a new phone verifies its meter, an operator signs in.
    let new_phone = phone
        .post(format!("{base}/api/v1/meters/verify"))
        .header("x-forwarded-for", "198.51.100.2")
        .json(&json!({"subscription": SUB_WRAP, "meter_serial": SERIAL_WRAP, "device_id": Uuid::new_v4()}))
        .send()
        .await
        .map(|r| r.status().as_u16());
    let operator = server.console_from("198.51.100.3").login("rev", "correct horse battery").await.status;

    stop.store(true, Ordering::Relaxed);
    let siege = started.elapsed();
    let peak_kib = status_kib("VmHWM:");
    for attacker in attackers {
        attacker.abort();
    }
    tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| t.join().expect("an attacker thread")))
        .await
        .expect("join");

    latencies.sort();
    println!(
        "{backend:?}: {siege:.1?} of siege. Honest syncs: {} served, {} not; p50 {:?}, p99 {:?}, max {:?}. \
         Peak RSS {} MiB (was {} MiB). Answers (count×status, 0: none) to serial guesses: {}, at the phone's subscription {}; to sign-ins: {}; to billing tokens: {}; \
         to trickled bodies: {}.",
        latencies.len(),
        failures.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        peak_kib / 1024,
        before_kib / 1024,
        guesses.show(),
        targeted.show(),
        sign_ins.show(),
        tokens.show(),
        trickles.show(),
    );
    assert!(failures.is_empty(), "honest syncs not served: {:?}", &failures[..failures.len().min(5)]);
    assert!(latencies.len() as u64 >= seconds * 5, "the phone synced only {} times", latencies.len());
    assert_eq!(new_phone.ok(), Some(200), "a new phone verifying its meter during the siege");
    assert_eq!(operator, 303, "the operator's sign-in during the siege");
    assert_eq!(trickles.of(200), 0, "no trickled body was taken");
    // At the phone's subscription: 5 free tries, then one after 30 s, 60 s more, 120 s more…
    let mut allowed = 5;
    let (mut at, mut wait) = (0, 30);
    while at + wait <= seconds + 1 {
        (at, wait, allowed) = (at + wait, wait * 2, allowed + 1);
    }
    assert!(targeted.of(404) <= allowed, "{} guesses at one subscription answered", targeted.of(404));
    // Argon2's 19 MiB per hash, two at a time, and bounded counters: well under 300 MiB more.
    let grown_mib = peak_kib.saturating_sub(before_kib) / 1024;
    assert!(grown_mib < 300, "the siege grew the peak RSS by {grown_mib} MiB");
    Arc::into_inner(server).expect("the attackers are gone").finish().await;
}
