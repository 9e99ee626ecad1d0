//! `cargo xtask dist`: builds the release web app into `dist/pwa` (what `kontor serve` serves)
//! with the pinned Trunk, wasm-bindgen and wasm-opt, writes the service worker's precache list
//! and version from the build's hashed file names, and a brotli and a gzip copy of every file
//! worth compressing, which the server sends to browsers that accept them (`server/src/pwa.rs`).
//! `cargo xtask size` reports the weight, as files and as the server sends them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::tools::{self, workspace_root};

const TRUNK_VERSION: &str = "0.21.14";
/// Binaryen's wasm-opt from npm; Debian's (108) builds an app that dies at load.
const BINARYEN: &str = "binaryen@132.0.0";

fn tools_dir() -> PathBuf {
    workspace_root().join("target/tools")
}

fn ensure_trunk() -> anyhow::Result<()> {
    let version =
        Command::new("trunk").arg("--version").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    if version.as_deref().is_some_and(|v| v.contains(TRUNK_VERSION)) {
        return Ok(());
    }
    println!("==> installing trunk {TRUNK_VERSION} (about three minutes, once)");
    tools::install_tool(&["trunk", "--version", TRUNK_VERSION, "--locked"])
}

/// Deque's accessibility checker, whose script the browser tests run on every screen
/// (`target/tools/node_modules/axe-core/axe.min.js`).
const AXE: &str = "axe-core@4.14.1";

/// The npm tools, installed together into `target/tools` when one is missing or of another
/// version: Binaryen's wasm-opt (for Trunk) and axe-core (for the browser tests' accessibility
/// check). The directory holding wasm-opt.
fn ensure_node_tools() -> anyhow::Result<PathBuf> {
    let bin = tools_dir().join("node_modules/.bin");
    let version = Command::new(bin.join("wasm-opt")).arg("--version").output().ok();
    let wasm_opt_ok = version.is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains("132"));
    let axe_package =
        std::fs::read_to_string(tools_dir().join("node_modules/axe-core/package.json")).unwrap_or_default();
    let axe_version = AXE.rsplit('@').next().unwrap_or_default();
    let axe_ok = axe_package.contains(&format!("\"version\": \"{axe_version}\""));
    if wasm_opt_ok && axe_ok {
        return Ok(bin);
    }
    crate::setup::npm()?;
    println!("==> installing {BINARYEN} and {AXE} (npm, into target/tools)");
    std::fs::create_dir_all(tools_dir())?;
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(tools_dir())
        .args([BINARYEN, AXE])
        .status()
        .context("running npm (Node.js is needed to install wasm-opt and axe-core)")?;
    if !status.success() {
        bail!("npm could not install {BINARYEN} and {AXE}");
    }
    Ok(bin)
}

/// Builds the release app into `dist/pwa`.
pub fn dist() -> anyhow::Result<()> {
    tools::ensure_wasm_target()?;
    tools::ensure_wasm_bindgen()?;
    ensure_trunk()?;
    let wasm_opt = ensure_node_tools()?;
    // Trunk runs cargo offline: the crates must be here first (a no-op once they are).
    tools::cargo(&["fetch", "--locked"])?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![wasm_opt];
    paths.extend(std::env::split_paths(&path));
    println!("==> trunk build --release");
    let status = Command::new("trunk")
        .args(["build", "--release"])
        .env("PATH", std::env::join_paths(paths)?)
        .env("TRUNK_SKIP_VERSION_CHECK", "true")
        .current_dir(workspace_root())
        .status()
        .context("running trunk")?;
    if !status.success() {
        bail!("trunk build failed");
    }
    let dist = workspace_root().join("dist/pwa");
    write_service_worker(&dist)?;
    compress_all(&dist)
}

/// The files worth compressing (images and WOFF2 fonts are compressed already).
const COMPRESSIBLE: [&str; 7] = [".html", ".js", ".wasm", ".css", ".webmanifest", ".svg", ".json"];

/// Writes `file.br` and `file.gz` beside every compressible file, where they are smaller.
fn compress_all(dist: &Path) -> anyhow::Result<()> {
    let mut files = Vec::new();
    files_under(dist, dist, &mut files)?;
    files.retain(|f| COMPRESSIBLE.iter().any(|ext| f.ends_with(ext)));
    let (mut raw, mut br) = (0, 0);
    for file in &files {
        let path = dist.join(file);
        let bytes = std::fs::read(&path)?;
        let brotli = brotli_bytes(&bytes)?;
        let gzip = gzip_bytes(&bytes)?;
        raw += bytes.len();
        br += brotli.len().min(bytes.len());
        if brotli.len() < bytes.len() {
            std::fs::write(with_suffix(&path, ".br"), brotli)?;
        }
        if gzip.len() < bytes.len() {
            std::fs::write(with_suffix(&path, ".gz"), gzip)?;
        }
    }
    println!("==> {} files compressed: {} KiB, {} KiB as brotli", files.len(), raw / 1024, br / 1024);
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn files_under(dir: &Path, base: &Path, out: &mut Vec<String>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files_under(&path, base, out)?;
        } else if let Ok(relative) = path.strip_prefix(base) {
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// Fills in the service worker's file list and a version that changes whenever any file does.
fn write_service_worker(dist: &Path) -> anyhow::Result<()> {
    let mut files = Vec::new();
    files_under(dist, dist, &mut files)?;
    files.retain(|f| f != "sw.js" && !f.ends_with(".br") && !f.ends_with(".gz"));
    files.sort();
    // FNV-1a over the names (Trunk puts content hashes in most of them) and the contents (for
    // index.html, the manifest and the icons, whose names do not change).
    let mut version = 0xcbf2_9ce4_8422_2325u64;
    for file in &files {
        let content = std::fs::read(dist.join(file))?;
        for b in file.bytes().chain([0]).chain(content) {
            version = (version ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    let sw_path = dist.join("sw.js");
    let sw = std::fs::read_to_string(&sw_path).context("reading dist/pwa/sw.js")?;
    let list = format!("[{}]", files.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>().join(", "));
    let sw = sw.replace("'__KONTOR_VERSION__'", &format!("'{version:016x}'")).replace("__KONTOR_PRECACHE__", &list);
    std::fs::write(&sw_path, sw)?;
    println!("==> service worker version {version:016x}, {} files precached", files.len());
    Ok(())
}

/// The app shell budget, brotli-compressed (fonts are counted apart).
const SHELL_BUDGET: usize = 120 * 1024;

fn gzip_bytes(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

fn brotli_bytes(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams { quality: 11, lgwin: 22, ..Default::default() };
    brotli::BrotliCompress(&mut std::io::Cursor::new(bytes), &mut out, &params)?;
    Ok(out)
}

fn gzip_len(bytes: &[u8]) -> anyhow::Result<usize> {
    Ok(gzip_bytes(bytes)?.len())
}

fn brotli_len(bytes: &[u8]) -> anyhow::Result<usize> {
    Ok(brotli_bytes(bytes)?.len())
}

/// `cargo xtask size`: the weight of the built app shell (HTML, JS, WASM, CSS), raw, gzip and
/// brotli, against the budget; the fonts apart.
pub fn size() -> anyhow::Result<()> {
    let dist = workspace_root().join("dist/pwa");
    if !dist.join("index.html").exists() {
        bail!("no build in dist/pwa: run `cargo xtask dist` first");
    }
    let mut files = Vec::new();
    files_under(&dist, &dist, &mut files)?;
    // The photo's code is loaded when a photo is taken, not with the first page: apart too.
    let on_demand = ["photo.js"];
    files.retain(|f| {
        [".wasm", ".js", ".css", ".html"].iter().any(|ext| f.ends_with(ext))
            && f != "sw.js"
            && !on_demand.contains(&f.as_str())
    });
    files.sort();
    println!("{:<44} {:>10} {:>10} {:>10}", "app shell file", "raw", "gzip", "brotli");
    let (mut raw, mut gz, mut br) = (0, 0, 0);
    for file in &files {
        let bytes = std::fs::read(dist.join(file))?;
        let (g, b) = (gzip_len(&bytes)?, brotli_len(&bytes)?);
        println!("{file:<44} {:>10} {g:>10} {b:>10}", bytes.len());
        (raw, gz, br) = (raw + bytes.len(), gz + g, br + b);
    }
    println!("{:<44} {raw:>10} {gz:>10} {br:>10}", "total");
    let verdict = if br <= SHELL_BUDGET { "within" } else { "OVER" };
    println!("brotli total {:.1} KiB: {verdict} the {} KiB budget", br as f64 / 1024.0, SHELL_BUDGET / 1024);
    for file in on_demand {
        if let Ok(bytes) = std::fs::read(dist.join(file)) {
            println!("{file}, loaded when a photo is taken: {} bytes as brotli", brotli_len(&bytes)?);
        }
    }
    // Fonts are counted apart: WOFF2 is compressed already, and a browser may skip them.
    let mut fonts = Vec::new();
    files_under(&dist, &dist, &mut fonts)?;
    fonts.retain(|f| f.ends_with(".woff2"));
    fonts.sort();
    let mut total = 0;
    for font in &fonts {
        let len = std::fs::metadata(dist.join(font))?.len();
        println!("{font:<44} {len:>10}");
        total += len;
    }
    println!("fonts {:.1} KiB (WOFF2, not in the shell budget)", total as f64 / 1024.0);
    // The browser test writes how long the app took to open offline, from navigation to its
    // meters and outbox on screen.
    match std::fs::read_to_string(workspace_root().join("target/artifacts/offline-start-ms.txt")) {
        Ok(ms) => println!(
            "offline reload to an interactive form: {} ms (budget 1000 ms; from the last browser test)",
            ms.trim()
        ),
        Err(_) => println!("offline reload to an interactive form: not measured yet (run the browser tests)"),
    }
    Ok(())
}
