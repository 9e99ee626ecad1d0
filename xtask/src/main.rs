//! `cargo xtask`: the project's automation, in Rust (matklad's cargo-xtask).
//!
//! - `cargo xtask run`: installs what is missing, builds, and serves on SQLite with demo data;
//! - `cargo xtask test`: every check CI runs, after putting in place what the tests need
//!   (`setup.rs`; `cargo xtask setup` does only that);
//! - `cargo xtask dist`: the release web app into `dist/pwa`; `cargo xtask size`: its weight;
//! - `cargo xtask bench`: the throughput and latency benchmark.
//! - `cargo xtask load`: a sustained open-loop load of mixed traffic (`load.rs`).
//! - `cargo xtask count`: instructions per one-declaration request, under callgrind (`count.rs`).
//! - `cargo xtask siege`: the abuse suite's siege (`tests/tests/siege.rs`), longer and in release.
//! - `cargo xtask lighthouse`: Lighthouse's mobile audit of the web app as served (`lighthouse.rs`).
//! - `cargo xtask contract`: the OpenAPI document validated, and schemathesis against a live
//!   server (`contract.rs`; bounded, inside `test`).

mod bench;
mod contract;
mod count;
mod dist;
mod lighthouse;
mod load;
mod setup;
mod tools;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("test") => test(),
        Some("bench") => bench::bench(&args[1..]),
        Some("load") => load::load(&args[1..]),
        Some("count") => count::count(&args[1..]),
        Some("siege") => siege(&args[1..]),
        Some("dist") => dist::dist(),
        Some("size") => dist::size(),
        Some("setup") => setup::packages().and_then(|()| setup::postgres()).map(|url| {
            println!("ready: Chromium, chromedriver, npm, openssl, espeak-ng, SoX, and PostgreSQL at {url}");
        }),
        Some("lighthouse") => lighthouse::lighthouse(),
        Some("contract") => match &args[1..] {
            [] => contract::contract(contract::EXAMPLES),
            [flag, n] if flag == "--examples" => {
                n.parse().map_err(|_| anyhow::anyhow!("--examples takes a number")).and_then(contract::contract)
            }
            _ => Err(anyhow::anyhow!("usage: cargo xtask contract [--examples N]")),
        },
        _ => {
            eprintln!("usage: cargo xtask <run | test | bench> [options]\n");
            eprintln!("  run [ARGS…]   build and serve on SQLite with demo subscribers (ARGS go to `kontor serve`)");
            eprintln!(
                "  test          fmt, clippy, native tests on SQLite and PostgreSQL, shared on wasm32 in Chromium"
            );
            eprintln!("  setup         install and start what the tests need (`test` does this first)");
            eprintln!("  dist          build the release web app into dist/pwa");
            eprintln!("  size          the app shell's weight (raw, gzip, brotli) against its budget");
            eprintln!("  lighthouse    Lighthouse's mobile audit (scores, paint times) of the app as served");
            eprintln!("  contract [--examples N]   openapi-spec-validator and schemathesis against a live server");
            eprintln!(
                "  bench [--seconds N] [--backend sqlite|postgres|both] [--ids v7|v4] [--repeat N] [--connections N[,N…]]"
            );
            eprintln!("  load [--seconds 60] [--rate 1000] [--backend sqlite|postgres]   sustained mixed load");
            eprintln!("  count [--requests 1000]   instructions per one-declaration request (callgrind)");
            eprintln!("  siege [--seconds 120]   honest phones through parallel abuse, release build, both stores");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(extra: &[String]) -> anyhow::Result<()> {
    dist::dist()?;
    tools::cargo(&["build", "--release", "-p", "server", "--bin", "kontor"])?;
    // `--demo` is what `run` is for; said again among the flags, it is said once.
    let mut args = vec!["serve", "--demo"];
    args.extend(extra.iter().map(String::as_str).filter(|a| *a != "--demo"));
    tools::exec(tools::release_binary("kontor"), &args)
}

/// The siege of `tests/tests/siege.rs` for `--seconds` (120 unless told) on each store, against
/// a release build: its figures are the ones to quote.
fn siege(args: &[String]) -> anyhow::Result<()> {
    let seconds = match args {
        [] => "120".to_owned(),
        [flag, n] if flag == "--seconds" && n.parse::<u64>().is_ok() => n.clone(),
        _ => anyhow::bail!("usage: cargo xtask siege [--seconds N]"),
    };
    let postgres = setup::postgres()?;
    tools::cargo_test(
        &["test", "--release", "-p", "tests", "--test", "siege", "--locked", "--", "--nocapture"],
        &[("KONTOR_SIEGE_SECONDS", seconds.as_str()), ("KONTOR_TEST_POSTGRES", postgres.as_str())],
    )?;
    Ok(())
}

fn test() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    tools::ensure_wasm_target()?;
    tools::ensure_wasm_bindgen()?;
    setup::packages()?;
    let chromedriver = tools::require_browser()?;
    let postgres = setup::postgres()?;
    tools::drop_stale_test_databases(&postgres);
    let database = [("KONTOR_TEST_POSTGRES", postgres.as_str())];

    tools::step("format", || tools::cargo(&["fmt", "--all", "--check"]))?;
    // The web app is built for the browser only: natively, its Leptos (`csr`) would share one
    // build with the server's console Leptos (`ssr`), and the two are not meant to meet.
    tools::step("clippy", || {
        tools::cargo(&[
            "clippy",
            "--workspace",
            "--exclude",
            "app",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ])
    })?;
    tools::step("clippy (shared and the app on wasm32)", || {
        tools::cargo(&[
            "clippy",
            "-p",
            "shared",
            "-p",
            "app",
            "--target",
            "wasm32-unknown-unknown",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
    })?;
    tools::step("build the web app (release, for the browser tests)", dist::dist)?;
    let mut totals = tools::Totals::default();
    tools::step("native tests: SQLite, PostgreSQL, and the app in Chromium", || {
        totals.add(&tools::cargo_test(&["test", "--workspace", "--exclude", "app", "--locked"], &database)?);
        Ok(())
    })?;
    tools::step("the contract: openapi-spec-validator, then schemathesis against a live server", || {
        contract::contract(contract::EXAMPLES)
    })?;
    tools::step("shared on wasm32 in headless Chromium", || {
        totals.add(&tools::cargo_test(
            &["test", "-p", "shared", "--target", "wasm32-unknown-unknown", "--locked"],
            &[("CHROMEDRIVER", chromedriver.as_str())],
        )?);
        Ok(())
    })?;
    println!("\nall checks passed in {:.0?}", started.elapsed());
    println!("{} passed, {} failed", totals.passed, totals.failed);
    Ok(())
}
