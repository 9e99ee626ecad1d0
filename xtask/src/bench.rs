//! `cargo xtask bench`: declarations per second and latency, measured against the release
//! `kontor` binary on SQLite and PostgreSQL, beside a bare handler (`GET /healthz`) in the same
//! run. Not a timed test: a report to read, with the numbers quoted in closing notes.
//!
//! Ids are UUIDv7 by default, as Kontor's own clients make them: time-ordered keys keep the
//! UNIQUE index's inserts at its right edge. `--ids v4` measures random ids, which a third-party
//! client may send; they cost a random index page per declaration.
//!
//! The server's CPU time is read from `/proc` around each scenario, in all and by thread name:
//! per declaration, the HTTP runtime's threads (`tokio-rt-worker`: requests read and answered)
//! beside SQLite's writer (`kontor-writer`: judging and storing) and log flusher
//! (`kontor-flush`), which tells where a durable request's cost lies without a profiler.
//!
//! Every declaration is distinct and plausible: meter `i mod METERS` gets one more cubic metre an
//! hour after the previous one, so the server does the full work of judging, storing and
//! committing each declaration durably.
//!
//! The bare handler and the one-declaration requests take turns of one second each, `--seconds`
//! each in all. A shared machine's speed changes from one minute to the next (the bare handler
//! ran at 61k a second in one run and at 88k in the next), so two scenarios measured one after
//! the other could meet two different machines; their ratio is the target, so both meet the same
//! ones. Both run the same number of closed-loop clients (`--connections`, 64 unless told). A
//! client waits for each answer before it sends again, so the one-declaration rate is at most the
//! clients over the time a declaration takes to become durable: with group commit, more clients
//! make larger groups and a higher rate, while the bare handler has used all the CPU it can get
//! from 64 on. `--connections 64,128,256` shows that curve: the pair is measured at each, and
//! the two rates are also compared each at its best count of the list ([`at_best`]).
//!
//! On PostgreSQL the sync scenarios run a second time through two `kontor serve` instances on
//! the same database, to show what a second instance buys on this machine.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::tools;

pub(crate) const METERS: u64 = 20_000;
const BASE_READING: u64 = 10_000;

struct Options {
    seconds: u64,
    backends: Vec<&'static str>,
    /// Time-ordered ids (UUIDv7, as the web app makes them) or random ones (UUIDv4).
    random_ids: bool,
    /// Runs per backend; more than one reports each figure's median.
    repeat: usize,
    /// Closed-loop clients for the bare handler and the one-declaration requests: one pair of
    /// rows for each number.
    connections: Vec<usize>,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut options = Options {
        seconds: 10,
        backends: vec!["sqlite", "postgres"],
        random_ids: false,
        repeat: 1,
        connections: vec![64],
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => options.seconds = args.next().context("--seconds needs a number")?.parse()?,
            "--repeat" => {
                options.repeat = args.next().context("--repeat needs a number")?.parse()?;
                anyhow::ensure!(options.repeat > 0, "--repeat takes 1 or more");
            }
            "--connections" => {
                let list = args.next().context("--connections needs a number, or numbers separated by commas")?;
                options.connections =
                    list.split(',').map(|n| n.trim().parse()).collect::<Result<_, _>>().context("--connections")?;
                anyhow::ensure!(options.connections.iter().all(|&n| n > 0), "--connections takes 1 or more");
            }
            "--backend" => {
                options.backends = match args.next().map(String::as_str) {
                    Some("sqlite") => vec!["sqlite"],
                    Some("postgres") => vec!["postgres"],
                    Some("both") => vec!["sqlite", "postgres"],
                    other => bail!("--backend takes sqlite, postgres or both, not {other:?}"),
                }
            }
            "--ids" => {
                options.random_ids = match args.next().map(String::as_str) {
                    Some("v7") => false,
                    Some("v4") => true,
                    other => bail!("--ids takes v7 or v4, not {other:?}"),
                }
            }
            other => bail!("unknown option {other}"),
        }
    }
    Ok(options)
}

pub fn bench(args: &[String]) -> anyhow::Result<()> {
    let options = parse(args)?;
    if let Some(outcome) = tools::rerun_in_release("bench", args) {
        return outcome;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut rows = Vec::new();
    for backend in &options.backends {
        let mut runs = Vec::with_capacity(options.repeat);
        for _ in 0..options.repeat {
            runs.push(runtime.block_on(bench_backend(backend, &options))?);
        }
        rows.extend(medians(runs));
    }
    // Server time per request or declaration: steadier than the rates on a shared machine, where
    // the load client and other tenants take what the server leaves.
    println!(
        "\n{:<10} {:<42} {:>10} {:>10} {:>8} {:>8} {:>12} {:>12}",
        "backend", "scenario", "decl/s", "req/s", "p50 ms", "p99 ms", "server cores", "server µs/op"
    );
    for r in &rows {
        println!(
            "{:<10} {:<42} {:>10.0} {:>10.0} {:>8.2} {:>8.2} {:>12.2} {:>12.1}",
            r.backend,
            r.scenario,
            r.declarations_per_sec,
            r.requests_per_sec,
            r.p50_ms,
            r.p99_ms,
            r.server_cpu_share,
            r.micros_per_op(r.server_cpu_share)
        );
    }
    println!("server µs/op: the server's CPU time per declaration (per request for the bare handler)");
    println!("\nserver µs/op by thread (tokio-rt-worker: HTTP and the handlers; threads under 0.1 µs left out)");
    for r in &rows {
        let mut threads: Vec<(&String, f64)> = r
            .threads
            .iter()
            .map(|(name, cores)| (name, r.micros_per_op(*cores)))
            .filter(|(_, us)| *us >= 0.1)
            .collect();
        threads.sort_by(|a, b| b.1.total_cmp(&a.1));
        let threads: Vec<String> = threads.iter().map(|(name, us)| format!("{name} {us:.1}")).collect();
        println!("{:<10} {:<42} {}", r.backend, r.scenario, threads.join(", "));
    }
    if options.repeat > 1 {
        println!("each figure: the median of {} runs (each run on a fresh database)", options.repeat);
    }
    println!(
        "clients: {} connections for the bare handler and one declaration/request, 4 for batches",
        options.connections.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    );
    println!(
        "ids: {}",
        if options.random_ids { "random (UUIDv4)" } else { "time-ordered (UUIDv7, as the web app makes them)" }
    );
    for r in rows.iter().filter(|r| !r.note.is_empty()) {
        println!("{} / {}: {}", r.backend, r.scenario, r.note);
    }
    if options.connections.len() > 1 {
        for backend in &options.backends {
            println!("{backend} / {}", at_best(&rows, backend));
        }
    }
    Ok(())
}

/// The ratio of the two scenarios' rates, each at the client count of the list where it was
/// highest: a closed-loop client waits for each answer, so too few clients measure the requests'
/// latency rather than what the server can take, and the durable requests need more clients to
/// keep it busy than the bare handler does.
fn at_best(rows: &[Row], backend: &str) -> String {
    let best = |prefix: &str, rate: fn(&Row) -> f64| {
        rows.iter()
            .filter(|r| r.backend == backend && r.scenario.starts_with(prefix))
            .max_by(|a, b| rate(a).total_cmp(&rate(b)))
            .map(|r| (rate(r), r.scenario.rsplit(", ").next().unwrap_or_default().to_owned()))
    };
    match (best(BARE, |r| r.requests_per_sec), best(SINGLE, |r| r.declarations_per_sec)) {
        (Some((bare, bare_at)), Some((single, single_at))) => format!(
            "each at its best client count: 1 declaration/request {single:.0}/s ({single_at}), bare handler \
             {bare:.0}/s ({bare_at}): {:.0} %",
            percent_of(single, bare)
        ),
        _ => "no pair of rates to compare".into(),
    }
}

/// The one-declaration rate as a percentage of the bare handler's: the target's ratio.
fn percent_of(single: f64, bare: f64) -> f64 {
    single / bare.max(1.0) * 100.0
}

/// One row per scenario, each figure the median of the runs' (a shared machine's noise moves single
/// runs by a fifth). The notes are the last run's, but for the share of the bare handler's rate,
/// taken from the medians (of one run, its own figures).
fn medians(runs: Vec<Vec<Row>>) -> Vec<Row> {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let Some(last) = runs.last() else { return Vec::new() };
    let mut rows: Vec<Row> = (0..last.len())
        .map(|i| {
            let column = |f: fn(&Row) -> f64| median(runs.iter().map(|run| f(&run[i])).collect());
            Row {
                backend: last[i].backend,
                scenario: last[i].scenario.clone(),
                declarations_per_sec: column(|r| r.declarations_per_sec),
                requests_per_sec: column(|r| r.requests_per_sec),
                p50_ms: column(|r| r.p50_ms),
                p99_ms: column(|r| r.p99_ms),
                server_cpu_share: column(|r| r.server_cpu_share),
                threads: last[i]
                    .threads
                    .keys()
                    .map(|name| {
                        let cores = runs.iter().map(|run| run[i].threads.get(name).copied().unwrap_or(0.0)).collect();
                        (name.clone(), median(cores))
                    })
                    .collect(),
                note: last[i].note.clone(),
            }
        })
        .collect();
    for i in 1..rows.len() {
        if rows[i - 1].scenario.starts_with(BARE) && rows[i].scenario.starts_with(SINGLE) {
            let share = percent_of(rows[i].declarations_per_sec, rows[i - 1].requests_per_sec);
            rows[i].note = format!("{share:.0} % of the bare handler's rate");
        }
    }
    rows
}

/// The scenarios whose rates make the target's ratio.
const BARE: &str = "bare handler (GET /healthz)";
const SINGLE: &str = "sync, 1 declaration/request";

struct Row {
    backend: &'static str,
    scenario: String,
    declarations_per_sec: f64,
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Cores the server kept busy (the load client uses the rest of the machine).
    server_cpu_share: f64,
    /// The same, by the name of the server's thread that used them.
    threads: BTreeMap<String, f64>,
    note: String,
}

impl Row {
    /// `cores` spent per declaration (per request for the bare handler), in microseconds.
    fn micros_per_op(&self, cores: f64) -> f64 {
        let per = if self.declarations_per_sec > 0.0 { self.declarations_per_sec } else { self.requests_per_sec };
        cores * 1e6 / per.max(1.0)
    }
}

/// CPU time a server has used (user + system): in all, and by thread name, threads of one name
/// summed. A thread that has ended counts in the total only.
#[derive(Default)]
struct CpuTime {
    total: Duration,
    threads: BTreeMap<String, Duration>,
}

impl CpuTime {
    /// What was used between `earlier` and this.
    fn since(&self, earlier: &CpuTime) -> CpuTime {
        let threads = self
            .threads
            .iter()
            .map(|(name, t)| (name.clone(), t.saturating_sub(earlier.threads.get(name).copied().unwrap_or_default())))
            .collect();
        CpuTime { total: self.total.saturating_sub(earlier.total), threads }
    }

    fn add(&mut self, other: &CpuTime) {
        self.total += other.total;
        for (name, t) in &other.threads {
            *self.threads.entry(name.clone()).or_default() += *t;
        }
    }
}

/// The command name and the CPU time (user + system) of a `/proc/…/stat` line.
fn stat_times(stat: &str) -> Option<(String, Duration)> {
    let (head, after) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    // Fields after the command name, which is in parentheses: utime and stime are 14 and 15, in
    // ticks of 10 ms.
    let fields: Vec<u64> = after.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    let ticks = fields.get(11)? + fields.get(12)?;
    Some((name, Duration::from_millis(ticks * 10)))
}

pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the release `kontor serve` on a free port, logging to `log`
    /// (`KONTOR_BENCH_LOG=server=debug` shows where the server spends its time).
    pub(crate) fn start(kontor: &std::path::Path, url: &str, log: &std::path::Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(kontor)
            .args(["serve", "--database", url, "--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", std::env::var("KONTOR_BENCH_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(std::fs::File::create(log)?)
            .spawn()
            .context("starting kontor")?;
        Ok(Self { child, base: format!("http://127.0.0.1:{port}") })
    }

    /// CPU time the server process has used so far, in all and by thread.
    fn cpu_time(&self) -> CpuTime {
        let proc = format!("/proc/{}", self.child.id());
        let read = |path: std::path::PathBuf| stat_times(&std::fs::read_to_string(path).unwrap_or_default());
        let mut threads = BTreeMap::new();
        for task in std::fs::read_dir(format!("{proc}/task")).into_iter().flatten().flatten() {
            if let Some((name, time)) = read(task.path().join("stat")) {
                *threads.entry(name).or_insert(Duration::ZERO) += time;
            }
        }
        let total = read(format!("{proc}/stat").into()).map_or(Duration::ZERO, |(_, time)| time);
        CpuTime { total, threads }
    }

    pub(crate) fn peak_memory_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

/// A fresh store for `backend` (a SQLite file under `target/<purpose>/`, or the database
/// `kontor_<purpose>` on the local PostgreSQL) holding [`METERS`] meters billed sixty days ago;
/// its URL, the folder for logs, and the release `kontor` binary.
pub(crate) fn prepare_store(
    backend: &str,
    purpose: &str,
) -> anyhow::Result<(String, std::path::PathBuf, std::path::PathBuf)> {
    let root = tools::workspace_root();
    let dir = root.join("target").join(purpose).join(backend);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let url = match backend {
        "sqlite" => format!("sqlite://{}/{purpose}.db?mode=rwc", dir.display()),
        _ => {
            let admin = admin_url();
            let name = format!("kontor_{purpose}");
            psql(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
            psql(&admin, &format!("CREATE DATABASE {name}"))?;
            format!("{}/{name}", admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b))
        }
    };
    let billed = OffsetDateTime::now_utc() - time::Duration::days(60);
    let csv = dir.join("meters.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&csv)?);
    writeln!(file, "subscription,meter_serial,meter_digits,last_reading,last_read_at,avg_daily_m3,phone")?;
    for m in 0..METERS {
        writeln!(file, "{},BN{m:06},6,{BASE_READING},{},3.0,", subscription(m), billed.format(&Rfc3339)?)?;
    }
    file.flush()?;
    drop(file);
    let kontor = tools::release_binary("kontor");
    let status = Command::new(&kontor)
        .args(["import-subscribers", "--database", &url])
        .arg(&csv)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("importing the meters failed");
    }
    Ok((url, dir, kontor))
}

/// The local PostgreSQL server (`KONTOR_TEST_POSTGRES`).
pub(crate) fn admin_url() -> String {
    std::env::var("KONTOR_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn bench_backend(backend: &'static str, options: &Options) -> anyhow::Result<Vec<Row>> {
    let (seconds, random_ids) = (options.seconds, options.random_ids);
    let (url, dir, kontor) = prepare_store(backend, "bench")?;
    let billed = OffsetDateTime::now_utc() - time::Duration::days(60);
    let server = Server::start(&kontor, &url, &dir.join("server.log"))?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    wait_ready(&http, &server.base).await?;

    let duration = Duration::from_secs(seconds);
    let counter = Arc::new(AtomicU64::new(0));
    let start_read = billed + time::Duration::hours(1);
    let mut rows = Vec::new();

    // The bodies are made before the clock starts, so that the load client spends its core on
    // HTTP rather than on JSON, and the server is measured rather than the client.
    let made = SINGLE_CEILING * seconds * options.connections.len() as u64;
    let bodies = Arc::new(Bodies::new(&counter, 1, made, start_read, random_ids));
    for &connections in &options.connections {
        // The bare handler and the one-declaration requests take turns, a slice each, so that
        // both meet the same states of a shared machine and their ratio is a fair one.
        let (mut bare, mut single) = (Measured::default(), Measured::default());
        let (mut bare_cpu, mut single_cpu) = (CpuTime::default(), CpuTime::default());
        for _ in 0..slices(duration) {
            let cpu = server.cpu_time();
            bare.add(load(&http, &[&server.base], connections, SLICE, |_| None).await);
            bare_cpu.add(&server.cpu_time().since(&cpu));
            let cpu = server.cpu_time();
            let sent = bodies.clone();
            single.add(load(&http, &[&server.base], connections, SLICE, move |_| Some(sent.next())).await);
            single_cpu.add(&server.cpu_time().since(&cpu));
            // The log's flush and checkpoint of the last slice end before the bare handler's next.
            tokio::time::sleep(SETTLE).await;
        }
        let label = |scenario: &str| match options.connections.len() {
            1 => scenario.to_owned(),
            _ => format!("{scenario}, {connections} clients"),
        };
        rows.push(bare.row(backend, &label(BARE), 0, &bare_cpu));
        rows.push(single.row(backend, &label(SINGLE), 1, &single_cpu));
    }
    bodies.rewind();

    let bodies = Arc::new(Bodies::new(&counter, 500, BATCH_CEILING * seconds / 500, start_read, random_ids));
    let cpu = server.cpu_time();
    let batched = send_bodies(&http, &[&server.base], 4, duration, &bodies).await;
    rows.push(batched.row(backend, "sync, 500 declarations/request", 500, &server.cpu_time().since(&cpu)));

    if backend == "postgres" {
        // What a second instance on the same database buys: the same load spread over two.
        let second = Server::start(&kontor, &url, &dir.join("server-2.log"))?;
        wait_ready(&http, &second.base).await?;
        let both = [server.base.as_str(), second.base.as_str()];
        let cpu = (server.cpu_time(), second.cpu_time());
        let bodies = Arc::new(Bodies::new(&counter, 1, SINGLE_CEILING * seconds, start_read, random_ids));
        let single = send_bodies(&http, &both, options.connections[0], duration, &bodies).await;
        let used = both_since(&server, &second, &cpu);
        rows.push(single.row(backend, "sync, 1 declaration, 2 instances", 1, &used));
        let cpu = (server.cpu_time(), second.cpu_time());
        let bodies = Arc::new(Bodies::new(&counter, 500, BATCH_CEILING * seconds / 500, start_read, random_ids));
        let batched = send_bodies(&http, &both, 4, duration, &bodies).await;
        let used = both_since(&server, &second, &cpu);
        rows.push(batched.row(backend, "sync, 500 declarations, 2 instances", 500, &used));
    }

    let memory = server.peak_memory_kib().map_or_else(|| "unknown".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    if let Some(last) = rows.last_mut() {
        last.note = format!("server peak memory (VmHWM) {memory}");
    }
    drop(server);
    if backend == "postgres" {
        let _ = psql(&admin_url(), "DROP DATABASE IF EXISTS kontor_bench WITH (FORCE)");
    }
    Ok(rows)
}

/// What two servers used together since `earlier` (theirs, in the same order).
fn both_since(first: &Server, second: &Server, earlier: &(CpuTime, CpuTime)) -> CpuTime {
    let mut used = first.cpu_time().since(&earlier.0);
    used.add(&second.cpu_time().since(&earlier.1));
    used
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let status =
        Command::new("psql").args([url, "-qtAc", sql]).stdout(Stdio::null()).status().context("running psql")?;
    if !status.success() {
        bail!("psql failed: {sql}");
    }
    Ok(())
}

pub(crate) fn subscription(meter: u64) -> String {
    format!("{}", 1_000_000_000 + meter)
}

/// Requests a second the made bodies last for; past it, they are made on the fly.
const SINGLE_CEILING: u64 = 60_000;
/// Declarations a second the made batch bodies last for.
const BATCH_CEILING: u64 = 250_000;

/// Sync bodies made ahead of the measurement, handed out once each.
struct Bodies {
    /// The counter's value before the first body was made.
    first: u64,
    made: Vec<bytes::Bytes>,
    next: AtomicU64,
    counter: Arc<AtomicU64>,
    size: u64,
    start_read: OffsetDateTime,
    random_ids: bool,
}

impl Bodies {
    fn new(counter: &Arc<AtomicU64>, size: u64, count: u64, start_read: OffsetDateTime, random_ids: bool) -> Self {
        let first = counter.load(Ordering::Relaxed);
        let made = (0..count).map(|_| batch(counter, size, start_read, random_ids)).collect();
        Self { first, made, next: AtomicU64::new(0), counter: counter.clone(), size, start_read, random_ids }
    }

    /// Gives back the numbers of the bodies made but not sent, so that the next scenario's
    /// readings follow this one's by an hour, not by days (which would make them "unusual").
    fn rewind(&self) {
        let sent = self.next.load(Ordering::Relaxed);
        if (sent as usize) < self.made.len() {
            self.counter.store(self.first + sent * self.size, Ordering::Relaxed);
        }
    }

    fn next(&self) -> bytes::Bytes {
        let index = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        match self.made.get(index) {
            Some(body) => body.clone(),
            None => batch(&self.counter, self.size, self.start_read, self.random_ids),
        }
    }
}

/// A sync body of `size` distinct, plausible declarations, written straight as JSON text (a
/// million of them are made before a run, so they must be cheap to make).
pub(crate) fn batch(counter: &AtomicU64, size: u64, start_read: OffsetDateTime, random_ids: bool) -> bytes::Bytes {
    use std::fmt::Write as _;
    let first = counter.fetch_add(size, Ordering::Relaxed);
    let mut body = String::with_capacity(64 + 160 * size as usize);
    let _ = write!(body, r#"{{"device_id":"{}","submissions":["#, uuid::Uuid::new_v4());
    let mut read_at: Option<(u64, String)> = None;
    for i in first..first + size {
        let (meter, round) = (i % METERS, i / METERS);
        if read_at.as_ref().is_none_or(|(r, _)| *r != round) {
            let at = start_read + time::Duration::hours(round as i64);
            read_at = Some((round, at.format(&Rfc3339).unwrap_or_default()));
        }
        let at = read_at.as_ref().map_or("", |(_, text)| text.as_str());
        let id = if random_ids { uuid::Uuid::new_v4() } else { uuid::Uuid::now_v7() };
        if i != first {
            body.push(',');
        }
        let _ = write!(
            body,
            r#"{{"id":"{id}","subscription":"{}","meter_serial":"BN{meter:06}","reading":{},"read_at":"{at}"}}"#,
            subscription(meter),
            BASE_READING + round + 1,
        );
    }
    body.push_str("]}");
    bytes::Bytes::from(body)
}

pub(crate) async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("kontor did not become ready at {base}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Default)]
struct Measured {
    latencies: Vec<Duration>,
    elapsed: Duration,
    errors: u64,
    not_accepted: u64,
}

/// One turn of the bare handler or of the one-declaration requests.
const SLICE: Duration = Duration::from_secs(1);
/// The pause after each turn of one-declaration requests: longer than the checkpoint interval
/// (250 ms), so that the store's work for them is not done in the bare handler's time.
const SETTLE: Duration = Duration::from_millis(400);

/// How many turns of [`SLICE`] each make up `duration` (at least one).
fn slices(duration: Duration) -> u32 {
    ((duration.as_secs_f64() / SLICE.as_secs_f64()).round() as u32).max(1)
}

impl Measured {
    /// Adds another slice of the same scenario.
    fn add(&mut self, other: Measured) {
        self.latencies.extend(other.latencies);
        self.latencies.sort();
        self.elapsed += other.elapsed;
        self.errors += other.errors;
        self.not_accepted += other.not_accepted;
    }

    fn requests_per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn declarations_per_sec(&self, per_request: u64) -> f64 {
        self.requests_per_sec() * per_request as f64
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[index].as_secs_f64() * 1000.0
    }

    fn row(&self, backend: &'static str, scenario: &str, per_request: u64, server_cpu: &CpuTime) -> Row {
        let mut note = String::new();
        if self.errors > 0 || self.not_accepted > 0 {
            note = format!("{} failed requests, {} declarations not accepted", self.errors, self.not_accepted);
        }
        Row {
            backend,
            scenario: scenario.to_owned(),
            declarations_per_sec: self.declarations_per_sec(per_request),
            requests_per_sec: self.requests_per_sec(),
            p50_ms: self.percentile_ms(0.50),
            p99_ms: self.percentile_ms(0.99),
            server_cpu_share: server_cpu.total.as_secs_f64() / self.elapsed.as_secs_f64(),
            threads: server_cpu
                .threads
                .iter()
                .map(|(name, t)| (name.clone(), t.as_secs_f64() / self.elapsed.as_secs_f64()))
                .collect(),
            note,
        }
    }
}

/// Sends `bodies` as [`load`] does, then gives back the numbers of those not sent.
async fn send_bodies(
    http: &reqwest::Client,
    bases: &[&str],
    concurrency: usize,
    duration: Duration,
    bodies: &Arc<Bodies>,
) -> Measured {
    let sent = bodies.clone();
    let measured = load(http, bases, concurrency, duration, move |_| Some(sent.next())).await;
    bodies.rewind();
    measured
}

/// Runs `concurrency` closed-loop clients for `duration`, client `i` against `bases[i % n]`;
/// `body(i)` is a sync body to POST, or `None` for `GET /healthz`.
async fn load(
    http: &reqwest::Client,
    bases: &[&str],
    concurrency: usize,
    duration: Duration,
    body: impl Fn(usize) -> Option<bytes::Bytes> + Send + Sync + 'static,
) -> Measured {
    let body = Arc::new(body);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (http, base, body) = (http.clone(), bases[worker % bases.len()].to_owned(), body.clone());
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors, mut not_accepted) = (Vec::new(), 0u64, 0u64);
            while started.elapsed() < duration {
                let request = match body(worker) {
                    Some(json) => http
                        .post(format!("{base}/api/v1/sync"))
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(json),
                    None => http.get(format!("{base}/healthz")),
                };
                let sent = Instant::now();
                match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        let text = response.text().await.unwrap_or_default();
                        latencies.push(sent.elapsed());
                        if text.starts_with('{') {
                            not_accepted += text.matches("\"status\":\"").count() as u64
                                - text.matches("\"status\":\"accepted\"").count() as u64;
                        }
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors, not_accepted)
        }));
    }
    let mut measured = Measured { latencies: Vec::new(), elapsed: Duration::ZERO, errors: 0, not_accepted: 0 };
    for task in tasks {
        if let Ok((latencies, errors, not_accepted)) = task.await {
            measured.latencies.extend(latencies);
            measured.errors += errors;
            measured.not_accepted += not_accepted;
        }
    }
    measured.elapsed = started.elapsed();
    measured.latencies.sort();
    measured
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threads_name_and_time_are_read_from_its_stat_line() {
        // A name may hold spaces and parentheses; the last `)` ends it. utime 150, stime 50 ticks.
        let line = "4242 (kontor (x) w) S 1 4242 4242 0 -1 4194368 900 0 0 0 150 50 0 0 20 0 7 0 100 0 0";
        assert_eq!(stat_times(line), Some(("kontor (x) w".to_owned(), Duration::from_secs(2))));
        assert_eq!(stat_times("4242 kontor S"), None, "no parenthesised name");
        assert_eq!(stat_times(""), None);
    }

    #[test]
    fn what_was_used_since_is_taken_thread_by_thread() {
        let at = |total: u64, threads: &[(&str, u64)]| CpuTime {
            total: Duration::from_millis(total),
            threads: threads.iter().map(|(n, t)| ((*n).to_owned(), Duration::from_millis(*t))).collect(),
        };
        let earlier = at(100, &[("tokio-rt-worker", 60), ("kontor-writer", 40), ("gone", 5)]);
        let later = at(180, &[("tokio-rt-worker", 100), ("kontor-writer", 70), ("kontor-flush", 10)]);
        let mut used = later.since(&earlier);
        assert_eq!(used.total, Duration::from_millis(80));
        assert_eq!(used.threads.get("kontor-writer"), Some(&Duration::from_millis(30)));
        assert_eq!(used.threads.get("kontor-flush"), Some(&Duration::from_millis(10)), "a new thread counts whole");
        assert_eq!(used.threads.get("gone"), None, "an ended thread counts in the total only");
        used.add(&at(20, &[("kontor-writer", 5)]));
        assert_eq!(used.total, Duration::from_millis(100));
        assert_eq!(used.threads.get("kontor-writer"), Some(&Duration::from_millis(35)));
    }
}
