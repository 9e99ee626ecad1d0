//! `cargo xtask lighthouse`: Google's Lighthouse against the web app as the release `kontor serve`
//! sends it (compressed, cached), in Debian's Chromium, under Lighthouse's default mobile
//! conditions (a Moto G-class screen, simulated slow 4G, a 4× slower processor). Prints each
//! category's score and the paint figures, and keeps the reports in `target/artifacts/`
//! (`lighthouse.report.html` to read, `.json` for tools). Lighthouse comes from npm into
//! `target/tools` on first use (12.8, the last release that runs on this machine's Node 20).
//!
//! A measurement on a shared machine, not a test: run it a few times and quote the median.

use std::path::PathBuf;
use std::process::Command;

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
    tools::cargo(&["build", "--release", "-p", "server", "--bin", "kontor"])?;
    let web_root = root.join("dist/pwa");
    let web_root = web_root.to_str().context("a UTF-8 path")?;
    let served = tools::Served::start(
        tools::release_binary("kontor"),
        &root.join("target/lighthouse"),
        &["--web-root", web_root],
    )?;
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
