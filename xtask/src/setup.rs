//! What the tests need on this machine, put in place when it is missing, so that `cargo xtask
//! test` alone gives a newcomer a green run:
//!
//! - Debian's packages: Chromium and chromedriver (browser tests), the PostgreSQL client, npm
//!   (wasm-opt and axe-core), openssl (the HTTPS test). Installed through apt when xtask runs as
//!   root; otherwise the one command to run is printed.
//! - A PostgreSQL server at `KONTOR_TEST_POSTGRES` (`postgres://postgres@127.0.0.1:5432/test`
//!   unless set): when nothing answers there, the machine's own cluster is started
//!   (`pg_ctlcluster`), or, where the machine has none and may not install one (not root), a
//!   throw-away cluster of this checkout under `target/postgres` on a free port, whose address the
//!   tests are then given. The `test` database is created when missing.
//!
//! Each step looks first and does nothing when all is there.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::tools::workspace_root;

/// The server the tests use unless `KONTOR_TEST_POSTGRES` says otherwise.
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn quiet(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn has_command(name: &str) -> bool {
    quiet("sh", &["-c", &format!("command -v {name}")])
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Installs Debian packages, as root, or says how.
fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    let list = packages.join(" ");
    if !is_root() {
        bail!("the tests need Debian's {list}: run `sudo apt-get install -y {list}`, then this again");
    }
    println!("==> installing {list} (apt)");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .context("running apt-get")
    };
    if !apt(&["update", "-qq"])?.success() {
        bail!("apt-get update failed");
    }
    let mut args = vec!["install", "-y", "-qq"];
    args.extend(packages);
    if !apt(&args)?.success() {
        bail!("apt-get could not install {list}");
    }
    Ok(())
}

/// Node.js's npm, which the build needs for wasm-opt (`cargo xtask run` on a bare machine).
pub fn npm() -> anyhow::Result<()> {
    if has_command("npm") { Ok(()) } else { apt_install(&["npm"]) }
}

/// The browser, the database client and the build's helpers from Debian.
pub fn packages() -> anyhow::Result<()> {
    let mut missing = Vec::new();
    if !has_command("chromium") {
        missing.push("chromium");
    }
    if !Path::new("/usr/bin/chromedriver").exists() && std::env::var_os("CHROMEDRIVER").is_none() {
        missing.push("chromium-driver");
    }
    if !has_command("psql") {
        missing.push("postgresql-client");
    }
    if !has_command("npm") {
        missing.push("npm");
    }
    if !has_command("openssl") {
        missing.push("openssl");
    }
    // `kontor ivr-prompts` speaks the IVR's prompts with espeak-ng and converts them with SoX.
    for program in ["espeak-ng", "sox"] {
        if !has_command(program) {
            missing.push(program);
        }
    }
    apt_install(&missing)
}

fn answers(url: &str) -> bool {
    quiet("psql", &[url, "-tAc", "SELECT 1"])
}

/// `url` with another database name.
fn with_database(url: &str, database: &str) -> String {
    match url.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{database}"),
        None => url.to_owned(),
    }
}

fn wait_until_it_answers(url: &str) -> bool {
    let admin = with_database(url, "postgres");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if answers(&admin) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    false
}

/// The machine's own clusters (Debian's layout), as (version, name).
fn machine_clusters() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for version in std::fs::read_dir("/etc/postgresql").into_iter().flatten().flatten() {
        for cluster in std::fs::read_dir(version.path()).into_iter().flatten().flatten() {
            if cluster.path().join("postgresql.conf").exists() {
                found.push((
                    version.file_name().to_string_lossy().into_owned(),
                    cluster.file_name().to_string_lossy().into_owned(),
                ));
            }
        }
    }
    found.sort();
    found
}

/// Debian's server binaries (`initdb`, `pg_ctl`), newest first.
fn server_binaries() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// A cluster of this checkout's own under `target/postgres`, on a free port, trusting local
/// connections; its `test` database's URL.
fn own_cluster(bin: &Path) -> anyhow::Result<String> {
    let dir = workspace_root().join("target/postgres");
    let data = dir.join("data");
    let port_file = dir.join("port");
    if !data.join("PG_VERSION").exists() {
        println!("==> creating a throw-away PostgreSQL cluster in {}", data.display());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let status = Command::new(bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync"])
            .stdout(Stdio::null())
            .status()
            .context("running initdb")?;
        if !status.success() {
            bail!("initdb failed");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        std::fs::write(&port_file, port.to_string())?;
    }
    let port = std::fs::read_to_string(&port_file)?.trim().to_owned();
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    if !answers(&with_database(&url, "postgres")) {
        println!("==> starting the throw-away PostgreSQL cluster on port {port}");
        let options = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", dir.display());
        let status = Command::new(bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(dir.join("log"))
            .args(["-w", "start"])
            .stdout(Stdio::null())
            .status()
            .context("running pg_ctl")?;
        if !status.success() {
            bail!("the throw-away cluster did not start (see {})", dir.join("log").display());
        }
    }
    Ok(url)
}

/// A PostgreSQL server for the tests, running and holding the `test` database; its URL.
pub fn postgres() -> anyhow::Result<String> {
    let wanted = std::env::var("KONTOR_TEST_POSTGRES").ok();
    let url = wanted.clone().unwrap_or_else(|| DEFAULT_URL.to_owned());
    if !answers(&with_database(&url, "postgres")) && wanted.is_none() {
        let clusters = machine_clusters();
        if clusters.is_empty() && server_binaries().is_none() && is_root() {
            apt_install(&["postgresql"])?;
        }
        if let Some((version, name)) = machine_clusters().first() {
            println!("==> starting PostgreSQL {version}/{name}");
            let _ = Command::new("pg_ctlcluster")
                .args(["--skip-systemctl-redirect", version, name, "start"])
                .stdout(Stdio::null())
                .status();
            if !wait_until_it_answers(&url) {
                bail!("PostgreSQL {version}/{name} did not start answering at {url}");
            }
        } else if let Some(bin) = server_binaries().filter(|_| !is_root()) {
            let own = own_cluster(&bin)?;
            if !wait_until_it_answers(&own) {
                bail!("the throw-away PostgreSQL cluster does not answer at {own}");
            }
            return with_test_database(own);
        } else {
            bail!("no PostgreSQL answers at {url}: install Debian's `postgresql` or set KONTOR_TEST_POSTGRES");
        }
    }
    with_test_database(url)
}

fn with_test_database(url: String) -> anyhow::Result<String> {
    if answers(&url) {
        return Ok(url);
    }
    let name = url.rsplit('/').next().unwrap_or("test").to_owned();
    let admin = with_database(&url, "postgres");
    if !quiet("psql", &[&admin, "-tAc", &format!("CREATE DATABASE \"{name}\"")]) || !answers(&url) {
        bail!("PostgreSQL answers, but the database {name} at {url} could not be created");
    }
    Ok(url)
}
