//! `cargo xtask lighthouse`: Google's Lighthouse against the web app as the release `kontor serve`
//! sends it (compressed, cached), in Debian's Chromium, under Lighthouse's default mobile
//! conditions (a Moto G-class screen, simulated slow 4G, a 4× slower processor). Prints each
//! category's score and the paint figures, and keeps the reports in `target/artifacts/`
//! (`lighthouse.report.html` to read, `.json` for tools). Lighthouse comes from npm into
//! `target/tools` on first use (12.8, the last release that runs on this machine's Node 20).
//!
//! A measurement on a shared machine, not a test: run it a few times and quote the median.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{dist, tools};

const LIGHTHOUSE: &str = "lighthouse@12.8.2";

/// The figures Lighthouse reports, by audit id, and how each is shown.
const FIGURES: [(&str, &str); 6] = [
    ("first-contentful-paint", "first contentful paint"),
    ("largest-contentful-paint", "largest contentful paint"),
    ("speed-index", "speed index"),
    ("total-blocking-time", "total blocking time"),
    ("interactive", "time to interactive"),
    ("total-byte-weight", "bytes transferred"),
];

/// `kontor serve --demo` on a free port over a fresh SQLite file; stopped on drop.
struct Served {
    child: Child,
    base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

fn lighthouse_cli() -> anyhow::Result<PathBuf> {
    let tools_dir = tools::workspace_root().join("target/tools");
    let cli = tools_dir.join("node_modules/lighthouse/cli/index.js");
    let package = std::fs::read_to_string(tools_dir.join("node_modules/lighthouse/package.json")).unwrap_or_default();
    let version = LIGHTHOUSE.rsplit('@').next().unwrap_or_default();
    if cli.exists() && package.contains(&format!("\"version\": \"{version}\"")) {
        return Ok(cli);
    }
    println!("==> installing {LIGHTHOUSE} (npm, into target/tools, once)");
    std::fs::create_dir_all(&tools_dir)?;
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&tools_dir)
        .arg(LIGHTHOUSE)
        .status()
        .context("running npm")?;
    if !status.success() {
        bail!("npm could not install {LIGHTHOUSE}");
    }
    Ok(cli)
}

fn serve(dir: &std::path::Path) -> anyhow::Result<Served> {
    tools::cargo(&["build", "--release", "-p", "server", "--bin", "kontor"])?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let database = format!("sqlite://{}/lighthouse.db?mode=rwc", dir.display());
    let web_root = tools::workspace_root().join("dist/pwa");
    let child = Command::new(tools::release_binary("kontor"))
        .args(["serve", "--demo", "--database", &database, "--listen", &format!("127.0.0.1:{port}"), "--web-root"])
        .arg(&web_root)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("starting kontor")?;
    let served = Served { child, base: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("kontor did not start listening within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(served)
}

/// Builds the app and the server, serves them, and runs Lighthouse on `/pwa/`.
pub fn lighthouse() -> anyhow::Result<()> {
    dist::dist()?;
    let cli = lighthouse_cli()?;
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .map(|name| PathBuf::from("/usr/bin").join(name))
        .find(|p| p.exists())
        .context("Chromium is needed (Debian's package `chromium`)")?;
    let root = tools::workspace_root();
    let served = serve(&root.join("target/lighthouse"))?;
    let artifacts = root.join("target/artifacts");
    std::fs::create_dir_all(&artifacts)?;
    let output = artifacts.join("lighthouse");
    let url = format!("{}/pwa/", served.base);
    println!("==> lighthouse {url} (mobile, simulated slow 4G, 4x CPU slowdown)");
    let status = Command::new("node")
        .arg(&cli)
        .arg(&url)
        .args([
            "--quiet",
            "--only-categories=performance,accessibility,best-practices",
            "--output=json",
            "--output=html",
            "--chrome-flags=--headless=new --no-sandbox --disable-gpu",
            "--output-path",
        ])
        .arg(&output)
        .env("CHROME_PATH", &chromium)
        .status()
        .context("running node (Node.js is needed for Lighthouse)")?;
    drop(served);
    if !status.success() {
        bail!("lighthouse failed");
    }
    let report: Value = serde_json::from_str(&std::fs::read_to_string(output.with_extension("report.json"))?)?;
    for (id, category) in report["categories"].as_object().into_iter().flatten() {
        let score = category["score"].as_f64().map_or_else(|| "n/a".to_owned(), |s| format!("{:.0}", s * 100.0));
        println!("{:<28} {score:>8}", format!("{id} score"));
    }
    for (id, label) in FIGURES {
        let value = report["audits"][id]["numericValue"].as_f64();
        let shown = match (id, value) {
            (_, None) => "n/a".to_owned(),
            ("total-byte-weight", Some(bytes)) => format!("{:.1} KiB", bytes / 1024.0),
            (_, Some(ms)) => format!("{:.2} s", ms / 1000.0),
        };
        println!("{label:<28} {shown:>8}");
    }
    println!("reports: {}.report.html and .report.json", output.display());
    Ok(())
}
