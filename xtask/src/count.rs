//! `cargo xtask count`: the instructions the whole server runs per one-declaration sync
//! request, counted by callgrind. Rates on a shared machine move by a fifth from one minute to
//! the next; instruction counts move by about half a percent, so this is how two builds of the
//! HTTP path (extractors, answers, the writer's hand-offs) are compared. Not a test: a report.
//!
//! The release `kontor serve` runs under `valgrind --tool=callgrind` on a fresh SQLite store
//! (the bench's 20,000 meters), and one client sends one-declaration syncs one after another,
//! each to a meter not yet declared. Two runs, of `WARM_UP` requests and of `WARM_UP` + N;
//! the difference over N leaves out start-up and shutdown. The requests go one at a time, so
//! each group commit holds one request: the writer's share is larger than under load, where
//! groups hold a dozen (`server/examples/apply_cost.rs` counts the store at any group size).
//! Kernel time (system calls, `fdatasync`) is not counted.

use std::process::{Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::{Context as _, bail};
use time::OffsetDateTime;

use crate::bench::{self, prepare_store, wait_ready};
use crate::tools;

/// Requests in the shorter run, whose count is taken away from the longer one's.
const WARM_UP: u64 = 200;

pub fn count(args: &[String]) -> anyhow::Result<()> {
    let mut requests = 1_000;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--requests" => requests = rest.next().context("--requests needs a number")?.parse()?,
            other => bail!("unknown option {other:?} (count [--requests N])"),
        }
    }
    anyhow::ensure!(requests > 0, "--requests takes 1 or more");
    if let Some(outcome) = tools::rerun_in_release("count", args) {
        return outcome;
    }
    let valgrind = Command::new("valgrind").arg("--version").stdout(Stdio::null()).status();
    if !valgrind.is_ok_and(|s| s.success()) {
        bail!("valgrind is not installed (Debian: apt-get install valgrind)");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let short = runtime.block_on(counted(WARM_UP))?;
    let long = runtime.block_on(counted(WARM_UP + requests))?;
    let per_request = long.saturating_sub(short) as f64 / requests as f64;
    println!("instructions: {short} for {WARM_UP} requests, {long} for {}", WARM_UP + requests);
    println!("per one-declaration request (sequential, groups of one): {per_request:.0}");
    Ok(())
}

/// Instructions callgrind collected over a server's whole life, serving `requests` syncs.
async fn counted(requests: u64) -> anyhow::Result<u64> {
    let (url, dir, kontor) = prepare_store("sqlite", "count")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let report = dir.join("valgrind.txt");
    let mut server = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", dir.join("callgrind.out").display()))
        .arg(&kontor)
        .args(["serve", "--database", &url, "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&report)?)
        .spawn()
        .context("starting kontor under valgrind")?;
    let base = format!("http://127.0.0.1:{port}");
    let sent = send(&base, requests).await;
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let stopped = server.wait()?;
    sent?;
    if !stopped.success() {
        bail!("kontor under valgrind ended with {stopped}; see {}", report.display());
    }
    let text = std::fs::read_to_string(&report)?;
    text.lines()
        .find_map(|l| l.split_once("Collected :").and_then(|(_, n)| n.trim().parse().ok()))
        .with_context(|| format!("no instruction count in {}", report.display()))
}

/// Sends `requests` one-declaration syncs one after another; each must be accepted.
async fn send(base: &str, requests: u64) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    wait_ready(&http, base).await?;
    let counter = AtomicU64::new(0);
    let start_read = OffsetDateTime::now_utc() - time::Duration::days(60) + time::Duration::hours(1);
    for _ in 0..requests {
        let body = bench::batch(&counter, 1, start_read, false);
        let answer = http
            .post(format!("{base}/api/v1/sync"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?
            .text()
            .await?;
        if !answer.contains(r#""status":"accepted""#) {
            bail!("a declaration was not accepted: {answer}");
        }
    }
    Ok(())
}
