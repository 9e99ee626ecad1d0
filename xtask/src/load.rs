//! `cargo xtask load`: a sustained open-loop load against the release `kontor` binary — by
//! default 1,000 requests a second for 60 s — of mixed traffic as phones make it: single
//! declarations, small batches (an outbox after a day offline), meter verifications, the news
//! asked for after a sync, and health checks. Open loop: a request leaves every millisecond
//! whether or not the earlier ones have been answered, so a slow server shows as latency and
//! errors instead of hiding behind a slower client. Not a timed test: a report whose numbers go
//! in closing notes.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use time::OffsetDateTime;

use crate::bench::{self, METERS, Server};
use crate::tools;

struct Options {
    seconds: u64,
    rate: u64,
    backend: &'static str,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut options = Options { seconds: 60, rate: 1_000, backend: "sqlite" };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => options.seconds = args.next().context("--seconds needs a number")?.parse()?,
            "--rate" => options.rate = args.next().context("--rate needs a number")?.parse()?,
            "--backend" => {
                options.backend = match args.next().map(String::as_str) {
                    Some("sqlite") => "sqlite",
                    Some("postgres") => "postgres",
                    other => bail!("--backend takes sqlite or postgres, not {other:?}"),
                }
            }
            other => bail!("unknown option {other:?} (load [--seconds N] [--rate N] [--backend sqlite|postgres])"),
        }
    }
    Ok(options)
}

/// The kinds of request in the mix, with their share in hundredths.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Declaration,
    Batch,
    Verify,
    Updates,
    Health,
}

const MIX: [(Kind, u64); 5] =
    [(Kind::Declaration, 60), (Kind::Batch, 10), (Kind::Verify, 10), (Kind::Updates, 15), (Kind::Health, 5)];

fn kind_of(n: u64) -> Kind {
    let mut slot = n % 100;
    for (kind, share) in MIX {
        if slot < share {
            return kind;
        }
        slot -= share;
    }
    Kind::Health
}

pub fn load(args: &[String]) -> anyhow::Result<()> {
    let options = parse(args)?;
    if let Some(outcome) = tools::rerun_in_release("load", args) {
        return outcome;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(&options))
}

async fn run(options: &Options) -> anyhow::Result<()> {
    let (url, dir, kontor) = bench::prepare_store(options.backend, "load")?;
    let server = Server::start(&kontor, &url, &dir.join("server.log"))?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(1024).timeout(Duration::from_secs(30)).build()?;
    bench::wait_ready(&http, &server.base).await?;
    let start_read = OffsetDateTime::now_utc() - time::Duration::days(60) + time::Duration::hours(1);
    let counter = Arc::new(AtomicU64::new(0));
    let results: Arc<Mutex<Vec<(Kind, Duration, bool)>>> = Arc::default();
    let total = options.seconds * options.rate;
    println!("==> {} requests at {}/s for {} s on {}", total, options.rate, options.seconds, options.backend);

    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / options.rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        ticker.tick().await;
        let kind = kind_of(n);
        let meter = n % METERS;
        let base = server.base.clone();
        let request = match kind {
            Kind::Declaration => http
                .post(format!("{base}/api/v1/sync"))
                .header("content-type", "application/json")
                .body(bench::batch(&counter, 1, start_read, false)),
            Kind::Batch => http
                .post(format!("{base}/api/v1/sync"))
                .header("content-type", "application/json")
                .body(bench::batch(&counter, 10, start_read, false)),
            Kind::Verify => http
                .post(format!("{base}/api/v1/meters/verify"))
                .header("content-type", "application/json")
                .body(format!(
                    r#"{{"subscription":"{}","meter_serial":"BN{meter:06}","device_id":"{}"}}"#,
                    bench::subscription(meter),
                    uuid::Uuid::now_v7()
                )),
            Kind::Updates => {
                http.post(format!("{base}/api/v1/updates")).header("content-type", "application/json").body(format!(
                    r#"{{"device_id":"{}","declarations":["{}"]}}"#,
                    uuid::Uuid::now_v7(),
                    uuid::Uuid::now_v7()
                ))
            }
            Kind::Health => http.get(format!("{base}/healthz")),
        };
        let results = results.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let ok = match request.send().await {
                Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
                Err(_) => false,
            };
            results.lock().unwrap_or_else(|p| p.into_inner()).push((kind, sent.elapsed(), ok));
        }));
    }
    let sending = started.elapsed();
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed();
    let memory = server.peak_memory_kib().map_or_else(|| "unknown".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    drop(server);
    if options.backend == "postgres" {
        let _ = std::process::Command::new("psql")
            .args([&bench::admin_url(), "-qtAc", "DROP DATABASE IF EXISTS kontor_load WITH (FORCE)"])
            .status();
    }

    let results = std::mem::take(&mut *results.lock().unwrap_or_else(|p| p.into_inner()));
    println!("\n{:<22} {:>9} {:>8} {:>9} {:>9}", "request", "count", "errors", "p50 ms", "p99 ms");
    let mut all: Vec<Duration> = Vec::new();
    let mut errors = 0;
    for (kind, _) in MIX {
        let mut times: Vec<Duration> = results.iter().filter(|r| r.0 == kind).map(|r| r.1).collect();
        let failed = results.iter().filter(|r| r.0 == kind && !r.2).count();
        times.sort();
        println!(
            "{:<22} {:>9} {:>8} {:>9.2} {:>9.2}",
            format!("{kind:?}"),
            times.len(),
            failed,
            pct(&times, 0.5),
            pct(&times, 0.99)
        );
        all.extend(times);
        errors += failed;
    }
    all.sort();
    println!("{:<22} {:>9} {:>8} {:>9.2} {:>9.2}", "all", all.len(), errors, pct(&all, 0.5), pct(&all, 0.99));
    println!(
        "offered {:.0} req/s (sent in {:.1} s), completed {:.0} req/s; server peak memory (VmHWM) {memory}",
        total as f64 / sending.as_secs_f64(),
        sending.as_secs_f64(),
        all.len() as f64 / elapsed.as_secs_f64(),
    );
    if errors > 0 {
        bail!("{errors} request(s) failed");
    }
    Ok(())
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}
