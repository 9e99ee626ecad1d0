//! Helpers for xtask: running cargo and other programs, and installing what is missing (the
//! wasm32 target, the pinned wasm-bindgen CLI) only when it is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// The wasm-bindgen CLI version that matches the pinned `wasm-bindgen` crate.
pub const WASM_BINDGEN_VERSION: &str = "0.2.130";

pub fn workspace_root() -> PathBuf {
    // `cargo run` says where the manifest is at run time: a build of xtask shared between two
    // checkouts (one `CARGO_TARGET_DIR`) is not rebuilt for the second, and the path compiled in
    // would be the first's.
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// A binary of the release build: under `CARGO_TARGET_DIR` when it is set (relative to the
/// workspace root, as cargo takes it there), else under the workspace's `target`.
pub fn release_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    workspace_root().join(target).join("release").join(name)
}

/// A binary of the debug build, as `release_binary` finds the release one.
pub fn debug_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    workspace_root().join(target).join("debug").join(name)
}

/// `kontor serve --demo` on a free port over a fresh SQLite file in `dir`, with `extra` flags;
/// stopped when dropped.
pub struct Served {
    child: std::process::Child,
    pub base: String,
}

impl Served {
    pub fn start(binary: PathBuf, dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let database = format!("sqlite://{}/kontor.db?mode=rwc", dir.display());
        let child = Command::new(&binary)
            .args(["serve", "--demo", "--database", &database, "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let served = Self { child, base: format!("http://127.0.0.1:{port}") };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                bail!("kontor did not start listening within 30 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(served)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs `cargo ARGS` in the workspace root, failing when it fails.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(cargo_bin())
        .args(args)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed", args.join(" "));
    }
    Ok(())
}

/// Test counts read from the test harness's `test result:` lines.
#[derive(Default, Debug, Clone, Copy)]
pub struct Totals {
    pub passed: u64,
    pub failed: u64,
}

impl Totals {
    pub fn add(&mut self, other: &Totals) {
        self.passed += other.passed;
        self.failed += other.failed;
    }
}

/// Runs `cargo test …`, echoing its output, and adds up its `test result:` lines.
pub fn cargo_test(args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<Totals> {
    let output = Command::new(cargo_bin())
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    let mut totals = Totals::default();
    // "test result: ok. 24 passed; 0 failed; 0 ignored; …"
    for line in stdout.lines().filter(|l| l.starts_with("test result:")) {
        let Some((_, counts)) = line.split_once(". ") else { continue };
        for part in counts.split(';') {
            let mut words = part.split_whitespace();
            let (Some(n), Some(word)) = (words.next().and_then(|n| n.parse::<u64>().ok()), words.next()) else {
                continue;
            };
            match word {
                "passed" => totals.passed += n,
                "failed" => totals.failed += n,
                _ => {}
            }
        }
    }
    if !output.status.success() {
        bail!("`cargo {}` failed", args.join(" "));
    }
    if totals.passed == 0 {
        bail!("`cargo {}` ran no test", args.join(" "));
    }
    Ok(totals)
}

/// Runs a step with a heading.
pub fn step(name: &str, f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    println!("\n==> {name}");
    let started = std::time::Instant::now();
    f().with_context(|| format!("step `{name}` failed"))?;
    println!("==> {name}: ok ({:.1?})", started.elapsed());
    Ok(())
}

/// Replaces this process's work with `program ARGS` and waits for it.
pub fn exec(program: PathBuf, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(&program)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("starting {}", program.display()))?;
    if !status.success() {
        bail!("{} exited with {status}", program.display());
    }
    Ok(())
}

fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Adds the wasm32 target to the pinned toolchain when it is missing.
pub fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = output_of("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if installed.lines().any(|l| l.trim() == "wasm32-unknown-unknown") {
        return Ok(());
    }
    println!("==> installing the wasm32-unknown-unknown target");
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-unknown-unknown"])
        .current_dir(workspace_root())
        .status()
        .context("running rustup")?;
    if !status.success() {
        bail!("rustup could not add the wasm32-unknown-unknown target");
    }
    Ok(())
}

/// Installs the wasm-bindgen CLI (and its test runner) at the pinned version when missing.
pub fn ensure_wasm_bindgen() -> anyhow::Result<()> {
    let version = output_of("wasm-bindgen", &["--version"]).unwrap_or_default();
    if version.split_whitespace().nth(1) == Some(WASM_BINDGEN_VERSION)
        && output_of("wasm-bindgen-test-runner", &["--version"]).is_some()
    {
        return Ok(());
    }
    println!("==> installing wasm-bindgen-cli {WASM_BINDGEN_VERSION} (about a minute, once)");
    // Not --locked: its lock file names a dependency version the registry no longer has.
    install_tool(&["wasm-bindgen-cli", "--version", WASM_BINDGEN_VERSION])
}

/// `cargo install ARGS`, unoptimised. The build tools (wasm-bindgen, Trunk) run a few seconds a
/// build, on files the optimiser then works over anyway, and are compiled once per machine, on
/// the way to a first served app: built at `opt-level = 0`, without LTO, Trunk took 3 min 6 s to
/// install against 6 min 19 s optimised (7 min 34 s with its own fat LTO), wasm-bindgen-cli 68 s
/// against 2 min 18 s (2 cores), and a whole `trunk build --release` of the app after cargo's part
/// took about as long (9 s, most of it wasm-opt, which comes built from npm) and wrote the same
/// files. A release profile still: no debug assertions, no debug info.
pub fn install_tool(args: &[&str]) -> anyhow::Result<()> {
    let mut full = vec!["install"];
    full.extend_from_slice(args);
    let status = Command::new(cargo_bin())
        .args(&full)
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "0")
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "256")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("running cargo {}", full.join(" ")))?;
    if !status.success() {
        bail!("cargo could not install {}", args.join(" "));
    }
    Ok(())
}

/// The chromedriver path; Chromium and chromedriver come from Debian (`setup::packages`).
pub fn require_browser() -> anyhow::Result<String> {
    let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    if !Path::new(&driver).exists() || output_of("chromium", &["--version"]).is_none() {
        bail!(
            "Chromium and chromedriver are needed for the browser tests: \
             `apt-get install -y chromium chromium-driver` (or set CHROMEDRIVER)"
        );
    }
    Ok(driver)
}

/// Drops test databases left behind by an interrupted run, on the server of `url`.
pub fn drop_stale_test_databases(url: &str) {
    let Some(names) =
        output_of("psql", &[url, "-tAc", "SELECT datname FROM pg_database WHERE datname LIKE 'kontor\\_test\\_%'"])
    else {
        return;
    };
    for name in names.lines().map(str::trim).filter(|n| !n.is_empty()) {
        let _ = output_of("psql", &[url, "-tAc", &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")]);
    }
}

/// In a debug build, builds the server and xtask in release and runs `command` again from the
/// release xtask, answering `Some` with its outcome: a load client that shares the machine with
/// the server must not be the bottleneck. `None` in the release xtask itself.
pub fn rerun_in_release(command: &str, args: &[String]) -> Option<anyhow::Result<()>> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let run = || {
        cargo(&["build", "--release", "-p", "server", "--bin", "kontor"])?;
        cargo(&["build", "--release", "-p", "xtask"])?;
        let mut forwarded = vec![command];
        forwarded.extend(args.iter().map(String::as_str));
        exec(release_binary("xtask"), &forwarded)
    };
    Some(run())
}
