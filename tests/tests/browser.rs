//! The web app in a real headless Chromium (through chromedriver) against the release build and
//! a real server: the offline story end to end, a response lost after the server stored the
//! batch, and a new version that waits for the subscriber's agreement. The app must be built
//! first (`cargo xtask dist`; `cargo xtask test` does it). Also the staff console, with
//! JavaScript turned off: sign in, declare for a citizen, review.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use server::store::Store as _;
use shared::Status;
use tests::{Backend, SERIAL, SUB, TestServer};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).expect("workspace root")
}

/// A chromedriver process on a free port; killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    /// Ends chromedriver and the browsers it started (its process group); once is enough.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Driver {
    /// Also when a test failed before it could close its session.
    fn drop(&mut self) {
        self.stop();
    }
}

/// Chromium for one test: a chromedriver and a browser profile of the test's own, removed when
/// the test ends, passing or failing, once the browsers are gone.
struct Chromium {
    driver: Driver,
    profile: PathBuf,
}

impl Chromium {
    /// A chromedriver on a free port, and an empty profile folder named for the test.
    fn start(name: &str) -> Self {
        let profile = std::env::temp_dir().join(format!("kontor-browser-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let path = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let child = Command::new(&path)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("chromedriver is needed for the browser tests ({path}): {e}"));
        Self { driver: Driver { child, url: format!("http://127.0.0.1:{port}") }, profile }
    }

    /// A browser session on the test's profile: a second one sees what the first one stored.
    async fn open(&self) -> Client {
        self.open_with(json!({})).await
    }

    /// A browser session with these Chromium preferences.
    async fn open_with(&self, prefs: Value) -> Client {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=400,1000",
        ];
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", self.profile.display()));
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), json!({"args": args, "binary": "/usr/bin/chromium", "prefs": prefs}));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&self.driver.url).await {
                Ok(client) => return client,
                Err(e) if Instant::now() > deadline => panic!("no browser session: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        self.driver.stop();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Waits until a script answers `true`, boundedly.
async fn wait_for(client: &Client, script: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let value = client.execute(script, vec![]).await.unwrap_or(Value::Null);
        if value == Value::Bool(true) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn count(client: &Client, selector: &str) -> usize {
    client.find_all(Locator::Css(selector)).await.map(|v| v.len()).unwrap_or(0)
}

async fn fill(client: &Client, name: &str, text: &str) {
    let field = client.find(Locator::Css(&format!("[name={name}]"))).await.expect("a field");
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

async fn submit(client: &Client, form_with: &str) {
    let script = format!(
        "document.querySelector('[name={form_with}]').form.querySelector('button[type=submit]').click(); return true;"
    );
    client.execute(&script, vec![]).await.expect("submit");
}

/// Goes to one of the app's screens (`#declare`, `#history`, …) and waits until it is up.
async fn show(client: &Client, hash: &str) {
    client.execute(&format!("location.hash = '{hash}'; return true;"), vec![]).await.expect("go to the screen");
    let ready = format!("return !!document.querySelector(\"main[data-screen='{hash}'][data-ready=true]\")");
    wait_for(client, &ready, hash).await;
}

async fn declare(client: &Client, reading: &str) {
    if count(client, "[name=reading]").await == 0 {
        show(client, "#declare").await;
    }
    let before = count(client, ".history li").await;
    fill(client, "reading", reading).await;
    submit(client, "reading").await;
    wait_for(client, &format!("return document.querySelectorAll('.history li').length > {before}"), "the declaration")
        .await;
}

/// Opens the web app at `url` and waits until its first screen is up.
async fn open_app(client: &Client, url: &str) {
    client.goto(url).await.expect("open the app");
    wait_for(client, "return !!document.querySelector('main[data-ready=true]')", "the app").await;
}

/// The release build in `dist/pwa`, which every browser test serves.
fn built_app() -> PathBuf {
    let web_root = workspace().join("dist/pwa");
    assert!(web_root.join("index.html").exists(), "build the app first: cargo xtask dist");
    web_root
}

/// Adds the test meter on the first screen, which then leads to the declare screen.
async fn add_meter(client: &Client, subscription: &str) {
    fill(client, "subscription", subscription).await;
    fill(client, "meter_serial", SERIAL).await;
    submit(client, "subscription").await;
    wait_for(client, "return !!document.querySelector('[name=reading]')", "the declare screen").await;
}

async fn screenshot(client: &Client, name: &str) {
    let dir = workspace().join("target/artifacts");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(dir.join(format!("{name}.png")), png);
    }
}

/// The shell as the server sends it to a browser that accepts brotli: every file compressed,
/// hashed files cached for a year, the rest revalidated, the page under its own policy. Prints
/// the bytes on the wire, which closing notes quote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_is_sent_compressed_and_cached() {
    let server = TestServer::start_with(Backend::Sqlite, |o| o.web_root = Some(built_app())).await;
    // reqwest here has no decompression: the bytes are those on the wire.
    let get = |path: String, encodings: &'static str| {
        let http = server.http.clone();
        let url = format!("{}/pwa/{path}", server.base);
        async move { http.get(url).header("accept-encoding", encodings).send().await.expect("an answer") }
    };
    let index = get(String::new(), "br, gzip").await;
    assert_eq!(index.status(), 200);
    let headers = index.headers().clone();
    assert_eq!(headers["content-encoding"], "br");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["vary"], "accept-encoding");
    let policy = headers["content-security-policy"].to_str().expect("ascii");
    assert!(policy.contains("'wasm-unsafe-eval'") && policy.contains("'sha256-"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    let index_wire = index.bytes().await.expect("body").len();
    // Unchanged since the browser's copy: 304, nothing sent again.
    let modified = headers["last-modified"].to_str().expect("a date").to_owned();
    let again = server
        .http
        .get(format!("{}/pwa/", server.base))
        .header("if-modified-since", modified)
        .send()
        .await
        .expect("an answer");
    assert_eq!(again.status(), 304);

    // The site's root leads to the app; the favicon browsers ask for is the app's icon.
    let no_redirects =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("a client");
    let root = no_redirects.get(format!("{}/", server.base)).send().await.expect("an answer");
    assert_eq!(
        (root.status().as_u16(), root.headers().get("location").cloned()),
        (307, Some("/pwa/".parse().expect("a value")))
    );
    let favicon = server.http.get(format!("{}/favicon.ico", server.base)).send().await.expect("an answer");
    assert_eq!(favicon.status(), 200);
    assert_eq!(favicon.headers()["content-type"], "image/png");
    assert!(favicon.bytes().await.expect("body").starts_with(b"\x89PNG"), "a PNG");

    // Every hashed file the page names, as brotli and as gzip.
    // (The minified page names some of them without quotes: the build's folder lists them all.)
    let mut named: Vec<String> = std::fs::read_dir(built_app())
        .expect("the build")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|f| [".js", ".wasm", ".css"].iter().any(|ext| f.ends_with(ext)) && f != "sw.js" && f != "photo.js")
        .collect();
    named.sort();
    named.dedup();
    assert!(named.iter().any(|f| f.ends_with(".wasm")) && named.iter().any(|f| f.ends_with(".css")), "{named:?}");
    let index_gzip = get(String::new(), "gzip").await.bytes().await.expect("body").len();
    let index_raw = get(String::new(), "identity").await.bytes().await.expect("body").len();
    let (mut raw, mut br, mut gz) = (index_raw, index_wire, index_gzip);
    for file in &named {
        let response = get(file.clone(), "gzip, deflate, br").await;
        assert_eq!(response.status(), 200, "{file}");
        assert_eq!(response.headers()["content-encoding"], "br", "{file}");
        assert_eq!(response.headers()["cache-control"], "public, max-age=31536000, immutable", "{file}");
        br += response.bytes().await.expect("body").len();
        let response = get(file.clone(), "gzip").await;
        assert_eq!(response.headers()["content-encoding"], "gzip", "{file}");
        gz += response.bytes().await.expect("body").len();
        let response = get(file.clone(), "identity").await;
        assert!(response.headers().get("content-encoding").is_none(), "{file}");
        raw += response.bytes().await.expect("body").len();
    }
    println!(
        "app shell on the wire: {:.1} KiB as brotli, {:.1} KiB as gzip, {:.1} KiB uncompressed ({} files)",
        br as f64 / 1024.0,
        gz as f64 / 1024.0,
        raw as f64 / 1024.0,
        named.len() + 1
    );
    assert!(br * 2 < raw, "brotli should at least halve the shell: {br} of {raw} bytes");
    // The photo's code is not the shell: fetched when a photo is taken (and precached by the
    // service worker after the first visit), compressed, revalidated (its name has no hash).
    let photo = get("photo.js".into(), "gzip, deflate, br").await;
    assert_eq!(
        (photo.headers()["content-encoding"].to_str().ok(), photo.headers()["cache-control"].to_str().ok()),
        (Some("br"), Some("no-cache"))
    );
    println!(
        "the photo's code, fetched when a photo is taken: {} bytes as brotli",
        photo.bytes().await.expect("body").len()
    );
    let manifest = get("manifest.webmanifest".into(), "br").await;
    assert_eq!(manifest.headers()["cache-control"], "no-cache");
    let missing = get("kontor-app-0000000000000000_bg.wasm".into(), "br").await;
    assert_eq!(missing.status(), 404, "a missing file is a 404, never the page");
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declarations_made_offline_sync_by_themselves_exactly_once() {
    let mut server = TestServer::start_with(Backend::Sqlite, |o| o.web_root = Some(built_app())).await;
    let chromium = Chromium::start("offline");
    let app = format!("{}/pwa/", server.base);

    // First visit, online: add the meter, declare, see the tracking code.
    let client = chromium.open().await;
    open_app(&client, &app).await;
    let page: Value = client
        .execute("return [document.documentElement.dir, document.documentElement.lang]", vec![])
        .await
        .expect("page");
    assert_eq!(page, json!(["rtl", "fa"]));
    add_meter(&client, "۱۱۱۱۲۲۲۲۳۳").await;
    declare(&client, "۱۰۰۵۰").await;
    wait_for(&client, "return !!document.querySelector('.history li.accepted .tracking')", "the tracking code").await;
    let tracking =
        client.find(Locator::Css(".history li.accepted .tracking")).await.expect("code").text().await.expect("text");
    assert!(tracking.chars().all(|c| ('۰'..='۹').contains(&c)) && tracking.chars().count() == 10, "{tracking}");
    screenshot(&client, "1-online-accepted").await;
    wait_for(&client, "return !!navigator.serviceWorker.controller", "the service worker").await;

    // The server goes away. The app still opens, and readings queue up with their receipts.
    server.stop().await;
    client.goto(&app).await.expect("reload offline");
    wait_for(&client, "return !!document.querySelector('main[data-ready=true]')", "the app from the service worker")
        .await;
    record_offline_start(&client).await;
    // Seconds apart, each reading can be at most one cubic metre higher than the one before.
    for reading in ["10051", "10052", "10053"] {
        declare(&client, reading).await;
    }
    assert_eq!(count(&client, ".history li.waiting").await, 3);
    assert!(client.find(Locator::Css("#receipt")).await.is_ok(), "a receipt is shown at once");
    let unsent = client.find(Locator::Css("#unsent")).await.expect("counter").text().await.expect("text");
    assert_eq!(unsent, "۳");
    screenshot(&client, "2-offline-waiting").await;
    client.goto(&app).await.expect("reload offline again");
    show(&client, "#history").await;
    wait_for(
        &client,
        "return document.querySelectorAll('.history li.waiting').length === 3",
        "the outbox after reload",
    )
    .await;
    client.close().await.expect("close the browser");

    // A new browser on the same profile still holds them.
    let client = chromium.open().await;
    client.goto(&app).await.expect("open in a new browser");
    show(&client, "#history").await;
    wait_for(
        &client,
        "return document.querySelectorAll('.history li.waiting').length === 3",
        "the outbox in a new browser",
    )
    .await;

    // The server comes back; the network-back event sends them, with no click.
    server.resume().await;
    client.execute("window.dispatchEvent(new Event('online')); return true;", vec![]).await.expect("online");
    wait_for(&client, "return document.querySelectorAll('.history li.accepted').length === 4", "the sync").await;
    assert_eq!(count(&client, ".history li.waiting").await, 0);
    screenshot(&client, "3-synced").await;

    // The English switch, remembered by the device.
    client.execute("document.querySelector('header button').click(); return true;", vec![]).await.expect("switch");
    wait_for(
        &client,
        "return document.documentElement.lang === 'en' && document.documentElement.dir === 'ltr'",
        "English",
    )
    .await;
    screenshot(&client, "4-english").await;
    client.goto(&app).await.expect("reload in English");
    show(&client, "#declare").await;
    wait_for(
        &client,
        "return document.documentElement.lang === 'en' && !!document.querySelector('[name=reading]')",
        "English after reload",
    )
    .await;
    client.close().await.expect("close the browser");

    let stored = server.store.declarations_of(SUB).await.expect("read back");
    let readings: Vec<Option<u64>> = stored.iter().map(|d| d.reading).collect();
    assert_eq!(readings, [Some(10_050), Some(10_051), Some(10_052), Some(10_053)], "each stored exactly once");
    assert!(stored.iter().all(|d| d.status == Status::Accepted));
    server.finish().await;
}

/// How long the app took, from navigation to its meters and outbox on screen, when opened with
/// the server gone: printed, and kept in `target/artifacts/offline-start-ms.txt` for `cargo xtask
/// size` to report (a budget of 1 s, reported rather than asserted on a shared machine).
async fn record_offline_start(client: &Client) {
    wait_for(client, "return performance.getEntriesByName('kontor-interactive').length > 0", "the start-up mark").await;
    let ms = client
        .execute("return performance.getEntriesByName('kontor-interactive')[0].startTime", vec![])
        .await
        .ok()
        .and_then(|v| v.as_f64())
        .expect("the mark's time");
    println!("offline reload to an interactive form: {ms:.0} ms");
    let dir = workspace().join("target/artifacts");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("offline-start-ms.txt"), format!("{ms:.0}\n"));
}

/// A copy of the built app that a test may change without touching the others' `dist/pwa`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the build") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("a name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy a file");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_waits_for_the_subscriber_then_takes_over() {
    let built = built_app();
    let web_root = std::env::temp_dir().join(format!("kontor-pwa-update-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&web_root);
    copy_dir(&built, &web_root);
    let server = TestServer::start_with(Backend::Sqlite, |o| o.web_root = Some(web_root.clone())).await;
    let chromium = Chromium::start("update");
    let client = chromium.open().await;
    client.goto(&format!("{}/pwa/", server.base)).await.expect("open the app");
    wait_for(&client, "return !!navigator.serviceWorker.controller", "the service worker").await;
    let sw_path = web_root.join("sw.js");
    let sw = std::fs::read_to_string(&sw_path).expect("sw.js");
    let old_version = sw
        .lines()
        .find_map(|l| l.strip_prefix("const VERSION = '"))
        .and_then(|rest| rest.split('\'').next())
        .expect("the version line")
        .to_owned();

    // The subscriber is typing when a new version is deployed.
    fill(&client, "subscription", "۱۱۱۱").await;
    client.execute("window.kontorMarker = true; return true;", vec![]).await.expect("mark the page");
    let new_version = "0123456789abcdef";
    std::fs::write(&sw_path, sw.replace(&old_version, new_version)).expect("deploy a new version");
    // A deploy replaces the compressed copies too (`cargo xtask dist` writes them).
    for stale in ["sw.js.br", "sw.js.gz"] {
        let _ = std::fs::remove_file(web_root.join(stale));
    }
    client
        .execute("navigator.serviceWorker.getRegistration().then(r => r.update()); return true;", vec![])
        .await
        .expect("look for an update");
    wait_for(&client, "return !document.getElementById('update').hidden", "the update offer").await;
    let kept: Value = client
        .execute("return [window.kontorMarker === true, document.querySelector('[name=subscription]').value]", vec![])
        .await
        .expect("page state");
    assert_eq!(kept, json!([true, "۱۱۱۱"]), "nothing changes under the subscriber until they agree");
    screenshot(&client, "5-update-offered").await;

    // They agree: the new worker takes over and the page reloads once, on the new version.
    client.execute("document.getElementById('update-now').click(); return true;", vec![]).await.expect("agree");
    wait_for(&client, "return window.kontorMarker === undefined && document.readyState === 'complete'", "the reload")
        .await;
    client.execute("caches.keys().then(k => { window.kontorCaches = k; }); return true;", vec![]).await.expect("keys");
    wait_for(
        &client,
        &format!(
            "return Array.isArray(window.kontorCaches) && window.kontorCaches.includes('kontor-shell-{new_version}') \
             && !window.kontorCaches.includes('kontor-shell-{old_version}')"
        ),
        "the new version's cache, and the old one gone",
    )
    .await;
    client.close().await.expect("close the browser");
    let _ = std::fs::remove_dir_all(&web_root);
    server.finish().await;
}

/// A proxy between the browser and the server that can lose the answer to one sync: it forwards
/// the request (the server stores the batch) and answers 502, as a load balancer does when the
/// upstream connection drops after the work was done. It can also refuse every sync (a server
/// away) or hold each one a while, and counts the syncs it saw and how many ran at once.
#[derive(Clone)]
struct LossyProxy {
    upstream: String,
    http: reqwest::Client,
    lose_next_sync: Arc<AtomicBool>,
    /// The next sync is held for two minutes, its connection open and silent.
    stall_next_sync: Arc<AtomicBool>,
    lost: Arc<AtomicUsize>,
    refuse_syncs: Arc<AtomicBool>,
    hold_syncs_ms: Arc<AtomicUsize>,
    syncs: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    most_at_once: Arc<AtomicUsize>,
}

impl LossyProxy {
    fn new(upstream: &str) -> Self {
        let counter = || Arc::new(AtomicUsize::new(0));
        Self {
            upstream: upstream.to_owned(),
            http: reqwest::Client::new(),
            lose_next_sync: Arc::new(AtomicBool::new(false)),
            stall_next_sync: Arc::new(AtomicBool::new(false)),
            lost: counter(),
            refuse_syncs: Arc::new(AtomicBool::new(false)),
            hold_syncs_ms: counter(),
            syncs: counter(),
            in_flight: counter(),
            most_at_once: counter(),
        }
    }

    /// Serves on a free port; answers its base URL.
    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let base = format!("http://{}", listener.local_addr().expect("proxy address"));
        let router = axum::Router::new().fallback(forward).with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        base
    }
}

async fn forward(
    axum::extract::State(proxy): axum::extract::State<LossyProxy>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let Ok(body) = axum::body::to_bytes(body, 2 * 1024 * 1024).await else {
        return axum::http::StatusCode::BAD_REQUEST.into_response();
    };
    let is_sync = path.starts_with("/api/v1/sync");
    if is_sync {
        if proxy.refuse_syncs.load(Ordering::SeqCst) {
            return axum::http::StatusCode::BAD_GATEWAY.into_response();
        }
        proxy.syncs.fetch_add(1, Ordering::SeqCst);
        if proxy.stall_next_sync.swap(false, Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(120)).await;
            return axum::http::StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        let now = proxy.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        proxy.most_at_once.fetch_max(now, Ordering::SeqCst);
        let hold = proxy.hold_syncs_ms.load(Ordering::SeqCst) as u64;
        tokio::time::sleep(Duration::from_millis(hold)).await;
    }
    let answer = forward_upstream(&proxy, &parts, &path, body).await;
    if is_sync {
        proxy.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    answer
}

async fn forward_upstream(
    proxy: &LossyProxy,
    parts: &axum::http::request::Parts,
    path: &str,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut upstream = proxy.http.request(method, format!("{}{path}", proxy.upstream)).body(body);
    for name in ["content-type", "accept-language", "authorization"] {
        if let Some(value) = parts.headers.get(name).and_then(|v| v.to_str().ok()) {
            upstream = upstream.header(name, value);
        }
    }
    let Ok(answer) = upstream.send().await else { return axum::http::StatusCode::BAD_GATEWAY.into_response() };
    let status = answer.status().as_u16();
    let content_type = answer.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let bytes = answer.bytes().await.unwrap_or_default();
    if path.starts_with("/api/v1/sync") && proxy.lose_next_sync.swap(false, Ordering::SeqCst) {
        proxy.lost.fetch_add(1, Ordering::SeqCst);
        return axum::http::StatusCode::BAD_GATEWAY.into_response();
    }
    let status = axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
    (status, [("content-type", content_type)], bytes).into_response()
}

/// A sync whose connection stalls (a captive portal, a dead cell) is given up after the app's
/// request timeout (20 s) and the next try goes through: nothing waits for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_gives_way_to_the_next_try() {
    let server = TestServer::start_with(Backend::Sqlite, |o| o.web_root = Some(built_app())).await;
    let proxy = LossyProxy::new(&server.base);
    let proxy_base = proxy.serve().await;
    let chromium = Chromium::start("stalled");
    let client = chromium.open().await;
    open_app(&client, &format!("{proxy_base}/pwa/")).await;
    add_meter(&client, SUB).await;

    proxy.stall_next_sync.store(true, Ordering::SeqCst);
    let started = Instant::now();
    declare(&client, "10050").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&client, ".history li.accepted").await == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let took = started.elapsed();
    assert_eq!(count(&client, ".history li.accepted").await, 1, "accepted after the stalled try");
    assert!(took >= Duration::from_secs(15), "the first try was the stalled one ({took:?})");
    assert!(proxy.syncs.load(Ordering::SeqCst) >= 2, "a second try went out");
    assert_eq!(server.store.declarations_of(SUB).await.expect("read back").len(), 1);
    println!("a stalled sync gave way after {took:?}");
    drop(client);
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_response_is_retried_and_stored_once() {
    let server = TestServer::start_with(Backend::Sqlite, |o| o.web_root = Some(built_app())).await;
    let proxy = LossyProxy::new(&server.base);
    let proxy_base = proxy.serve().await;

    let chromium = Chromium::start("lost");
    let client = chromium.open().await;
    open_app(&client, &format!("{proxy_base}/pwa/")).await;
    add_meter(&client, SUB).await;

    // The server stores the declaration, but its answer never reaches the phone.
    proxy.lose_next_sync.store(true, Ordering::SeqCst);
    declare(&client, "10050").await;
    wait_for(&client, "return document.querySelectorAll('.history li.waiting').length === 1", "the queued item").await;
    // The save shows the item at once; the sync that loses its answer follows.
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.lost.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(proxy.lost.load(Ordering::SeqCst), 1, "one answer was lost");
    assert_eq!(count(&client, ".history li.waiting").await, 1, "still waiting after the lost answer");
    let stored = server.store.declarations_of(SUB).await.expect("read back");
    assert_eq!(stored.len(), 1, "the server stored it before the answer was lost");

    // The retry gets the first outcome and the same tracking code; nothing is stored twice.
    client.execute("window.dispatchEvent(new Event('online')); return true;", vec![]).await.expect("online");
    wait_for(&client, "return !!document.querySelector('.history li.accepted .tracking')", "the retry").await;
    let shown =
        client.find(Locator::Css(".history li.accepted .tracking")).await.expect("code").text().await.expect("text");
    let expected = shared::TrackingCode::from_sequence(stored[0].seq).expect("a code").to_string();
    assert_eq!(shared::digits::parse_number(&shown, false).ok(), expected.parse::<u64>().ok(), "{shown} vs {expected}");
    assert_eq!(server.store.declarations_of(SUB).await.expect("read back").len(), 1);
    client.close().await.expect("close the browser");
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_send_the_outbox_once() {
    let server = TestServer::start_with(Backend::Sqlite, |o| o.web_root = Some(built_app())).await;
    let proxy = LossyProxy::new(&server.base);
    let app = format!("{}/pwa/", proxy.serve().await);
    let chromium = Chromium::start("tabs");
    let client = chromium.open().await;
    open_app(&client, &app).await;
    add_meter(&client, SUB).await;

    // The server is away: two readings wait in the outbox.
    proxy.refuse_syncs.store(true, Ordering::SeqCst);
    declare(&client, "10050").await;
    declare(&client, "10051").await;
    wait_for(&client, "return document.querySelectorAll('.history li.waiting').length === 2", "the outbox").await;
    let first = client.window().await.expect("this tab");
    let second = client.new_window(true).await.expect("a second tab").handle;
    client.switch_to_window(second.clone()).await.expect("to the second tab");
    client.goto(&app).await.expect("open the app again");
    show(&client, "#history").await;
    wait_for(&client, "return document.querySelectorAll('.history li.waiting').length === 2", "the same outbox").await;

    // The server returns, slowly; both tabs try at once. One sends, the other stands aside.
    proxy.hold_syncs_ms.store(1500, Ordering::SeqCst);
    proxy.refuse_syncs.store(false, Ordering::SeqCst);
    let kick = "window.dispatchEvent(new Event('online')); return true;";
    client.execute(kick, vec![]).await.expect("online in the second tab");
    client.switch_to_window(first.clone()).await.expect("to the first tab");
    client.execute(kick, vec![]).await.expect("online in the first tab");
    client.switch_to_window(second).await.expect("to the second tab");
    wait_for(&client, "return document.querySelectorAll('.history li.accepted').length === 2", "the sync").await;
    // The other tab learns the outcomes from the outbox at its next attempt, without resending.
    client.switch_to_window(first).await.expect("to the first tab");
    client.execute(kick, vec![]).await.expect("online again in the first tab");
    wait_for(&client, "return document.querySelectorAll('.history li.accepted').length === 2", "the first tab").await;
    assert_eq!(proxy.most_at_once.load(Ordering::SeqCst), 1, "never two syncs at once");
    assert_eq!(proxy.syncs.load(Ordering::SeqCst), 1, "one sync carried both readings");
    assert_eq!(server.store.declarations_of(SUB).await.expect("read back").len(), 2);
    client.close().await.expect("close the browser");
    server.finish().await;
}

/// Waits until the page's address contains `part`, boundedly (no script needed).
async fn wait_for_url(client: &Client, part: &str) {
    wait_for_address(client, part, |url| url.contains(part)).await;
}

/// Waits until the page's address passes `wanted` (`what` names it in the failure), boundedly.
async fn wait_for_address(client: &Client, what: &str, wanted: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url = client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
        if wanted(&url) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; at {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn type_into(client: &Client, name: &str, text: &str) {
    let field = client.find(Locator::Css(&format!("[name={name}]"))).await.expect("a field");
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

async fn click(client: &Client, selector: &str) {
    client.find(Locator::Css(selector)).await.expect(selector).click().await.expect("click");
}

async fn console_sign_in(client: &Client, base: &str, username: &str) {
    client.goto(&format!("{base}/office/")).await.expect("open the console");
    wait_for_url(client, "/office/login").await;
    type_into(client, "username", username).await;
    type_into(client, "password", "correct horse battery").await;
    click(client, "form.card button[type=submit]").await;
    // The sign-in page's own address holds "/office/" too: wait for the redirect away from it.
    wait_for_address(client, "the console after signing in", |url| {
        url.contains("/office/") && !url.contains("/office/login")
    })
    .await;
    assert!(!client.current_url().await.expect("url").as_str().contains("login"), "signed in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_with_javascript_off() {
    use server::store::Role;
    let server = TestServer::start(Backend::Sqlite).await;
    for (name, role) in [("clerk", Role::Office), ("rev", Role::Reviewer)] {
        server.add_operator(name, role, "Pishkhan 12", "correct horse battery").await;
    }
    let chromium = Chromium::start("console");
    // An operator's browser in Persian, with scripts off.
    let no_script =
        json!({"profile.managed_default_content_settings.javascript": 2, "intl.accept_languages": "fa-IR,fa"});
    let client = chromium.open_with(no_script).await;

    // A citizen at the counter: the operator types their numbers and the reading, and reads out
    // the tracking code.
    console_sign_in(&client, &server.base, "clerk").await;
    click(&client, "nav a[href='/office/declare']").await;
    wait_for_url(&client, "/office/declare").await;
    type_into(&client, "subscription", "۱۱۱۱۲۲۲۲۳۳").await;
    type_into(&client, "meter_serial", SERIAL).await;
    type_into(&client, "reading", "۱۰۶۰۰").await;
    click(&client, "form.card button[type=submit]").await;
    wait_for_url(&client, "/office/declarations/").await;
    let shown =
        client.find(Locator::Css(".tracking output")).await.expect("a tracking code").text().await.expect("text");
    let stored = server.store.declarations_of(SUB).await.expect("read back");
    assert_eq!(stored.len(), 1);
    let held = &stored[0];
    let code = held.tracking_code().expect("a code");
    assert_eq!(shown.trim(), shared::digits::to_persian_digits(code.as_str()));
    // 600 m³ in thirty days at 3 m³ a day is unusual: held for review.
    assert_eq!(held.status, Status::NeedsReview);
    let weight = client.find(Locator::Css(".status")).await.expect("status").css_value("font-weight").await;
    assert_eq!(weight.expect("style").as_str(), "700", "the style sheet applies under the page's CSP");
    screenshot(&client, "console-outcome").await;
    // The citizen also disputes it: a complaint filed at the counter, about that tracking code.
    click(&client, "nav a[href='/office/complaints']").await;
    wait_for_url(&client, "/office/complaints").await;
    click(&client, "a[href='/office/complaints/new']").await;
    wait_for_url(&client, "/office/complaints/new").await;
    type_into(&client, "subscription", "1111222233").await;
    type_into(&client, "about", &shown).await;
    type_into(&client, "text", "مصرف این ماه درست نیست.").await;
    click(&client, "form.card button[type=submit]").await;
    wait_for_url(&client, "/office/complaints/1").await;
    let number = client.find(Locator::Css(".tracking output")).await.expect("a number").text().await.expect("text");
    assert_eq!(number.chars().count(), 8, "a complaint number, not a tracking code: {number}");
    click(&client, "nav form button[type=submit]").await;
    wait_for_url(&client, "/office/login").await;

    // A reviewer approves it from the queue.
    console_sign_in(&client, &server.base, "rev").await;
    click(&client, "nav a[href='/office/review']").await;
    wait_for_url(&client, "/office/review").await;
    click(&client, &format!("a[href='/office/review/{}']", held.seq)).await;
    wait_for_url(&client, &format!("/office/review/{}", held.seq)).await;
    screenshot(&client, "console-review").await;
    click(&client, "button[value=approve]").await;
    wait_for_url(&client, "decided=").await;
    let approved = server.store.declaration(held.seq).await.expect("read").expect("stored");
    assert!(approved.counts, "it counts once approved");
    assert_eq!(approved.consumption_m3, Some(600));

    // …and answers the complaint, with the disputed reading on the same page.
    client.goto(&format!("{}/office/complaints/1", server.base)).await.expect("open the complaint");
    type_into(&client, "answer", "رقم پس از بررسی تأیید شد.").await;
    click(&client, "form.card button[type=submit]").await;
    wait_for_url(&client, "answered=1").await;
    screenshot(&client, "console-complaints").await;
    let answered = server.store.complaint(1).await.expect("read").expect("stored");
    assert_eq!(answered.about_seq, Some(held.seq), "about the disputed reading");
    assert_eq!(
        answered.answer.map(|(text, by, _)| (text, by)),
        Some(("رقم پس از بررسی تأیید شد.".into(), "rev".into()))
    );
    click(&client, "nav form button[type=submit]").await;
    wait_for_url(&client, "/office/login").await;

    // An admin finds the reply the gateway never took, and sends it again.
    use server::store::{Attempted, NewReply, Store as _};
    server.add_operator("boss", Role::Admin, "Headquarters", "correct horse battery").await;
    let queue = server.store.replies();
    // Due in an hour, so that the server's own sender leaves it to this test to fail.
    let later = server::store::now_ms() + 3_600_000;
    let reply =
        NewReply {
            answers: "sms:browser-1", recipient: "09350000000", body: "رقم کنتور ثبت شد.", now_ms: later
        };
    queue.queue_reply(&reply).await.expect("queue");
    let failed =
        Attempted::Failed { error: "the gateway refused it: 411 دریافت کننده نامعتبر است" };
    let claimed = queue.claim_replies(later, later + 60_000, 10).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    queue.attempted(claimed[0].id, &failed, later).await.expect("fail it");
    console_sign_in(&client, &server.base, "boss").await;
    click(&client, "nav a[href='/office/replies']").await;
    wait_for_url(&client, "/office/replies").await;
    let page = client.find(Locator::Css("main")).await.expect("main").text().await.expect("text");
    assert!(page.contains("09350000000") && page.contains("411"), "{page}");
    screenshot(&client, "console-replies").await;
    click(&client, "td form button[type=submit]").await;
    wait_for_url(&client, "/office/replies").await;
    let mut counts = queue.reply_counts().await.expect("counts");
    for _ in 0..300 {
        if counts.failed == 0 && counts.waiting == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        counts = queue.reply_counts().await.expect("counts");
    }
    assert_eq!((counts.failed, counts.waiting), (0, 0), "sent again, and taken by the (logging) gateway");
    let log = server.store.audit_log(None, 5).await.expect("audit");
    assert!(log.iter().any(|r| r.action == "reply_sent_again" && r.username == "boss"), "audited");

    client.close().await.expect("close the browser");
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewers_decision_reaches_the_phone() {
    use server::store::Role;
    let server = TestServer::start_with(Backend::Sqlite, |o| o.web_root = Some(built_app())).await;
    let chromium = Chromium::start("decision");
    let client = chromium.open().await;
    open_app(&client, &format!("{}/pwa/", server.base)).await;
    add_meter(&client, SUB).await;

    // 600 m³ in thirty days at 3 m³ a day: the app warns, the subscriber saves anyway, and the
    // server holds it for review.
    fill(&client, "reading", "10600").await;
    submit(&client, "reading").await;
    let warned = "return Array.from(document.querySelectorAll('.problem')).some(p => p.textContent.length > 0)";
    wait_for(&client, warned, "the warning").await;
    submit(&client, "reading").await;
    wait_for(&client, "return document.querySelectorAll('.history li.review').length === 1", "held for review").await;

    // A reviewer approves it in the console.
    server.add_operator("rev", Role::Reviewer, "Billing", "correct horse battery").await;
    let reviewer = server.console();
    assert_eq!(reviewer.login("rev", "correct horse battery").await.status, 303);
    let seq = server.store.declarations_of(SUB).await.expect("read")[0].seq;
    let csrf = reviewer.csrf(&format!("/office/review/{seq}")).await;
    let decided = reviewer.post(&format!("/office/review/{seq}"), &[("csrf", &csrf), ("decision", "approve")]).await;
    assert_eq!(decided.status, 303);

    // The phone's next sync learns it, keeps it, and shows it.
    client.execute("window.dispatchEvent(new Event('online')); return true;", vec![]).await.expect("online");
    wait_for(&client, "return document.querySelectorAll('.history li.accepted').length === 1", "the decision").await;
    let text =
        client.find(Locator::Css(".history li.accepted .state")).await.expect("state").text().await.expect("text");
    assert_eq!(text, "پس از بررسی پذیرفته شد");
    client.refresh().await.expect("reload");
    wait_for(&client, "return document.querySelectorAll('.history li.accepted').length === 1", "kept across reloads")
        .await;
    client.close().await.expect("close the browser");
    server.finish().await;
}

/// Every button, link and field on screen smaller than a 44-px target, by its text.
async fn small_targets(client: &Client) -> Vec<String> {
    let script = "return Array.from(document.querySelectorAll('main button, main a, main input, main select, nav a, header button'))
        .filter(e => e.offsetParent !== null)
        .filter(e => { const r = e.getBoundingClientRect(); return r.height < 44 || r.width < 44; })
        .map(e => e.tagName + ': ' + e.textContent.trim());";
    let found = client.execute(script, vec![]).await.expect("targets");
    serde_json::from_value(found).expect("a list")
}

/// What axe-core (Deque's accessibility checker, installed by `cargo xtask dist` into
/// `target/tools`) finds wrong on the page as it stands, by WCAG 2.2 A and AA and Deque's best
/// practices: one line per rule broken, with the
/// elements. The script is handed to the browser as the body of a WebDriver script, which the
/// app's content security policy does not govern.
async fn axe_violations(client: &Client) -> Vec<String> {
    let path = workspace().join("target/tools/node_modules/axe-core/axe.min.js");
    let source = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; `cargo xtask dist` installs axe-core", path.display()));
    let loaded: Value = client
        .execute(&format!("{source}\n;return typeof axe === 'object' || typeof window.axe === 'object';"), vec![])
        .await
        .expect("axe-core loads");
    assert_eq!(loaded, json!(true), "axe-core is defined in the page");
    let script = "const done = arguments[arguments.length - 1];
        const tags = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'];
        axe.run(document, { runOnly: { type: 'tag', values: tags } }).then(r => done(r.violations.map(v =>
            v.id + ' (' + v.impact + '): ' + v.nodes.map(n => n.target.join(' ')).join(', '))))
          .catch(e => done(['axe failed: ' + e]));";
    let found = client.execute_async(script, vec![]).await.expect("axe runs");
    serde_json::from_value(found).expect("a list")
}

/// The checks every screen passes: axe-core finds nothing, and every target is at least 44 px.
async fn screen_is_usable(client: &Client, screen: &str) {
    assert_eq!(axe_violations(client).await, Vec::<String>::new(), "axe-core on {screen}");
    assert_eq!(small_targets(client).await, Vec::<String>::new(), "targets under 44 px on {screen}");
}

/// A subscriber's first visit at 360 px, with the mistakes people make: a meter added offline
/// with a wrong serial is corrected, a mistyped reading still waiting is taken back and retyped,
/// a reading the meter cannot show is refused on the phone with no way to save it, a high one
/// is warned about with its numbers; then home, history, and removing the meter. Every screen is
/// photographed and every target is at least 44 px.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_corrects_mistakes_on_clear_screens() {
    let mut server = TestServer::start_with(Backend::Sqlite, |o| o.web_root = Some(built_app())).await;
    let chromium = Chromium::start("screens");
    let client = chromium.open().await;
    client.set_window_size(360, 740).await.expect("a phone-sized window");
    let app = format!("{}/pwa/", server.base);
    open_app(&client, &app).await;
    assert_eq!(count(&client, "[name=subscription]").await, 1, "a first visit starts by adding a meter");
    screenshot(&client, "screens-0-first-visit").await;
    screen_is_usable(&client, "screens-0-first-visit").await;
    wait_for(&client, "return !!navigator.serviceWorker.controller", "the service worker").await;

    // No signal. The meter goes in with a typo in its serial: kept, to be verified.
    server.stop().await;
    fill(&client, "subscription", SUB).await;
    fill(&client, "meter_serial", "TS000009").await;
    submit(&client, "subscription").await;
    wait_for(&client, "return !!document.querySelector('[name=reading]')", "the declare screen").await;
    show(&client, "#meters").await;
    assert_eq!(count(&client, ".meter .pending").await, 1, "not verified yet");
    screenshot(&client, "screens-1-home-unverified").await;
    screen_is_usable(&client, "screens-1-home-unverified").await;
    // Edit: the form starts from what was typed.
    click(&client, ".meter .actions button.link").await;
    wait_for(&client, "return document.querySelector('[name=meter_serial]').value === 'TS000009'", "the edit form")
        .await;
    fill(&client, "meter_serial", SERIAL).await;
    submit(&client, "meter_serial").await;
    wait_for(&client, "return !!document.querySelector('[name=reading]')", "the declare screen").await;

    // A typo in the reading, saved offline: the card says where it is, and it can be taken back.
    declare(&client, "10500").await;
    wait_for(&client, "return !!document.querySelector('#outcome.waiting')", "the outcome card").await;
    screenshot(&client, "screens-2-saved-offline").await;
    screen_is_usable(&client, "screens-2-saved-offline").await;
    click(&client, "#outcome .retype").await;
    wait_for(&client, "return document.querySelector('[name=reading]').value === '10500'", "the reading to retype")
        .await;
    assert_eq!(count(&client, ".history li").await, 0, "taken back");
    assert_eq!(count(&client, "#outcome").await, 0);
    declare(&client, "10050").await;

    // The signal returns: sent by itself; the card shows the outcome and the tracking code.
    server.resume().await;
    client.execute("window.dispatchEvent(new Event('online')); return true;", vec![]).await.expect("online");
    wait_for(&client, "return !!document.querySelector('#outcome.accepted .tracking')", "the outcome").await;
    let card = client.find(Locator::Css("#outcome")).await.expect("card").text().await.expect("text");
    assert!(card.contains("۵۰") && card.contains("پذیرفته شد"), "{card}");
    screenshot(&client, "screens-3-accepted").await;
    screen_is_usable(&client, "screens-3-accepted").await;

    // A reading with more digits than the meter shows cannot be accepted: said with the number,
    // and no button saves it anyway.
    fill(&client, "reading", "1234567").await;
    submit(&client, "reading").await;
    wait_for(&client, "return document.getElementById('reading-problem').textContent.includes('۵')", "the refusal")
        .await;
    let button =
        client.find(Locator::Css("form button[type=submit]")).await.expect("button").text().await.expect("text");
    assert_eq!(button, "ثبت", "no save-anyway for a reading that cannot be accepted");
    submit(&client, "reading").await;
    assert_eq!(count(&client, ".history li").await, 1, "nothing saved");
    let invalid: Value = client
        .execute("return document.getElementById('reading').getAttribute('aria-invalid')", vec![])
        .await
        .expect("aria");
    assert_eq!(invalid, json!("true"), "the error is tied to its field");
    screenshot(&client, "screens-4-refused").await;
    screen_is_usable(&client, "screens-4-refused").await;
    // A lower one would be held for review if saved, and the warning gives the number to check.
    fill(&client, "reading", "10040").await;
    submit(&client, "reading").await;
    wait_for(&client, "return document.getElementById('reading-problem').textContent.includes('۱۰۰۵۰')", "the warning")
        .await;
    let button =
        client.find(Locator::Css("form button[type=submit]")).await.expect("button").text().await.expect("text");
    assert_eq!(button, "رقم درست است؛ برای بررسی ثبت شود");
    screenshot(&client, "screens-5-warning").await;
    screen_is_usable(&client, "screens-5-warning").await;

    show(&client, "#meters").await;
    wait_for(
        &client,
        "return document.querySelector('.meter .last').textContent.includes('۱۰۰۵۰')",
        "the last reading",
    )
    .await;
    screenshot(&client, "screens-6-home").await;
    screen_is_usable(&client, "screens-6-home").await;
    show(&client, "#history").await;
    assert_eq!(count(&client, ".history li").await, 1);
    screenshot(&client, "screens-7-history").await;
    screen_is_usable(&client, "screens-7-history").await;
    show(&client, "#complaints").await;
    screenshot(&client, "screens-8-complaints").await;
    screen_is_usable(&client, "screens-8-complaints").await;

    // 10,050 was a typo for 10,058: corrected from the history, the new reading replaces it on
    // the server (as a second reading, 8 m³ in a minute would be refused as impossible).
    show(&client, "#history").await;
    click(&client, ".history li .correct").await;
    wait_for(&client, "return !!document.getElementById('correcting')", "the correction form").await;
    let form = client.find(Locator::Css("#correcting")).await.expect("notice").text().await.expect("text");
    assert!(form.contains("۱۰۰۵۰"), "says which reading it replaces: {form}");
    let typed: Value = client.execute("return document.getElementById('reading').value", vec![]).await.expect("value");
    assert_eq!(typed, json!("10050"), "starts from the reading to correct");
    screenshot(&client, "screens-9-correcting").await;
    screen_is_usable(&client, "screens-9-correcting").await;
    declare(&client, "10058").await;
    wait_for(&client, "return !!document.querySelector('#outcome.accepted .tracking')", "the correction's outcome")
        .await;
    show(&client, "#history").await;
    wait_for(&client, "return document.querySelectorAll('.history li.discarded').length === 1", "the replaced one")
        .await;
    let replaced = client.find(Locator::Css(".history li.discarded")).await.expect("entry").text().await.expect("text");
    assert!(replaced.contains("۱۰۰۵۰") && replaced.contains("با اصلاح شما جایگزین شد"), "{replaced}");
    assert_eq!(count(&client, ".history li .correct").await, 1, "only the correction may be corrected now");
    screenshot(&client, "screens-10-corrected").await;
    screen_is_usable(&client, "screens-10-corrected").await;

    // Removing the meter asks first, then leaves the phone as on the first visit.
    show(&client, "#meters").await;
    client
        .execute(
            "const b = document.querySelectorAll('.meter .actions button.link'); b[b.length - 1].click(); return true;",
            vec![],
        )
        .await
        .expect("remove");
    wait_for(&client, "return !!document.querySelector('.confirm button.danger')", "the question").await;
    screenshot(&client, "screens-11-remove").await;
    screen_is_usable(&client, "screens-11-remove").await;
    click(&client, ".confirm button.danger").await;
    wait_for(&client, "return !!document.querySelector('[name=subscription]')", "no meter left").await;
    client.close().await.expect("close the browser");

    let stored = server.store.declarations_of(SUB).await.expect("read back");
    let readings: Vec<(Option<u64>, Status, bool)> = stored.iter().map(|d| (d.reading, d.status, d.counts)).collect();
    assert_eq!(
        readings,
        [(Some(10_050), Status::Accepted, false), (Some(10_058), Status::Accepted, true)],
        "the taken-back typo never left the phone; the sent one was replaced by its correction"
    );
    server.finish().await;
}

/// The subscriber saves a reading with no signal and closes the app. When the network returns,
/// the browser wakes the service worker (Background Sync), which sends the outbox itself and
/// writes the outcome where the app finds it: the next visit shows the tracking code, and the
/// reading is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_worker_sends_the_outbox_with_no_page_open() {
    let mut server = TestServer::start_with(Backend::Sqlite, |o| o.web_root = Some(built_app())).await;
    let chromium = Chromium::start("background-sync");
    let client = chromium.open().await;
    let app = format!("{}/pwa/", server.base);
    open_app(&client, &app).await;
    add_meter(&client, SUB).await;
    wait_for(&client, "return !!navigator.serviceWorker.controller", "the service worker").await;
    let has_sync: Value = client.execute("return 'SyncManager' in window", vec![]).await.expect("feature");
    assert_eq!(has_sync, json!(true), "Chromium has Background Sync");

    server.stop().await;
    declare(&client, "10050").await;
    assert_eq!(count(&client, ".history li.waiting").await, 1);
    // The app is closed before the signal returns: no page of it is left open.
    client.goto("about:blank").await.expect("close the app");
    server.resume().await;
    assert_eq!(server.store.declarations_of(SUB).await.expect("read").len(), 0, "nothing sent yet");

    // The network is back: the browser fires the sync, as it does when connectivity returns.
    // (Asked for from a page of the origin outside the app's scope, which the worker does not
    // count as the app.)
    client.goto(&format!("{}/healthz", server.base)).await.expect("a page of the origin");
    let fired = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             navigator.serviceWorker.getRegistration('/pwa/')
               .then(r => r.sync.register('kontor-sync')).then(() => done(true), e => done(String(e)));",
            vec![],
        )
        .await
        .expect("register a sync");
    assert_eq!(fired, json!(true));
    let deadline = Instant::now() + Duration::from_secs(30);
    let stored = loop {
        let stored = server.store.declarations_of(SUB).await.expect("read");
        if !stored.is_empty() || Instant::now() > deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(stored.len(), 1, "the worker sent the reading with no page open");
    assert_eq!((stored[0].reading, stored[0].status), (Some(10_050), Status::Accepted));

    // The outcome is in IndexedDB, and the app shows it at the next visit; nothing is sent twice.
    open_app(&client, &app).await;
    show(&client, "#history").await;
    wait_for(&client, "return !!document.querySelector('.history li.accepted .tracking')", "the outcome").await;
    assert_eq!(count(&client, ".history li").await, 1);
    let status = client.find(Locator::Css(".status")).await.expect("status").text().await.expect("text");
    assert!(!status.contains("هنوز نه"), "the last successful send is the worker's: {status}");
    screenshot(&client, "background-sync-outcome").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(server.store.declarations_of(SUB).await.expect("read").len(), 1, "stored once");
    client.close().await.expect("close the browser");
    server.finish().await;
}

/// Opens IndexedDB as the first version of the app left it (meters and declarations, no
/// complaints store) with one unverified meter and one waiting declaration, from a page of the
/// app's origin that is not the app.
async fn leave_a_first_version_outbox(client: &Client, base: &str) {
    client.goto(&format!("{base}/healthz")).await.expect("a page of the origin");
    let declaration = json!({
        "id": uuid::Uuid::now_v7().to_string(), "subscription": SUB, "meter_serial": SERIAL, "reading": 10050,
        "read_at": tests::rfc3339(time::OffsetDateTime::now_utc()), "state": "waiting", "code": null,
        "message": null, "tracking_code": null, "consumption_m3": null,
    });
    let meter = json!({"subscription": SUB, "meter_serial": SERIAL, "info": null, "device_token": null});
    let script = r#"
        const [meter, declaration, done] = arguments;
        const open = indexedDB.open('kontor', 1);
        open.onupgradeneeded = () => {
            open.result.createObjectStore('meters', { keyPath: 'subscription' });
            open.result.createObjectStore('declarations', { keyPath: 'id' });
        };
        open.onsuccess = () => {
            const tx = open.result.transaction(['meters', 'declarations'], 'readwrite');
            tx.objectStore('meters').put(meter);
            tx.objectStore('declarations').put(declaration);
            tx.oncomplete = () => { open.result.close(); done(true); };
            tx.onerror = () => done(String(tx.error));
        };
        open.onerror = () => done(String(open.error));
    "#;
    let stored = client.execute_async(script, vec![meter, declaration]).await.expect("the first version's outbox");
    assert_eq!(stored, Value::Bool(true), "{stored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complaint_filed_offline_gets_an_answer_back() {
    use server::store::Role;
    let mut server = TestServer::start_with(Backend::Sqlite, |o| o.web_root = Some(built_app())).await;
    let chromium = Chromium::start("complaint");
    let client = chromium.open().await;
    let app = format!("{}/pwa/", server.base);

    // A phone that queued a reading under the app's first version: the upgrade keeps it, and
    // it is sent at once.
    leave_a_first_version_outbox(&client, &server.base).await;
    client.goto(&app).await.expect("open the app");
    wait_for(&client, "return document.querySelectorAll('.meters li').length === 1", "the meter, after the upgrade")
        .await;
    show(&client, "#history").await;
    wait_for(&client, "return !!document.querySelector('.history li.declaration.accepted .tracking')", "the sync")
        .await;
    wait_for(&client, "return !!navigator.serviceWorker.controller", "the service worker").await;

    // No signal: the subscriber disputes that reading from its history, and the complaint waits.
    server.stop().await;
    client.goto(&app).await.expect("reload offline");
    show(&client, "#history").await;
    wait_for(&client, "return !!document.querySelector('.history li.declaration button.link')", "the history").await;
    client
        .execute("document.querySelector('.history li.declaration button.link').click(); return true;", vec![])
        .await
        .expect("dispute");
    let tracking = server.store.declarations_of(SUB).await.expect("read")[0].tracking_code().expect("a code");
    let about: Value =
        client.execute("return document.querySelector('[name=about]').value", vec![]).await.expect("about");
    assert_eq!(about, json!(tracking.as_str()), "the form names the disputed declaration");
    // Too short a text is refused on the phone, in Persian, before anything is queued.
    submit(&client, "about").await;
    wait_for(&client, "return document.querySelector('#complaint .problem').textContent.length > 0", "the refusal")
        .await;
    assert_eq!(count(&client, "li.complaint").await, 0);
    fill(&client, "text", "رقم کنتور را اشتباه خوانده‌اید؛ رقم درست ۱۰۰۴۰ است.").await;
    submit(&client, "about").await;
    wait_for(&client, "return document.querySelectorAll('li.complaint.waiting').length === 1", "the queued complaint")
        .await;
    let unsent = client.find(Locator::Css("#unsent")).await.expect("counter").text().await.expect("text");
    assert_eq!(unsent, "۱");
    client.refresh().await.expect("reload offline");
    wait_for(&client, "return document.querySelectorAll('li.complaint.waiting').length === 1", "kept offline").await;
    screenshot(&client, "complaint-waiting").await;

    // The signal returns: it is sent by itself and gets its number.
    server.resume().await;
    client.execute("window.dispatchEvent(new Event('online')); return true;", vec![]).await.expect("online");
    wait_for(&client, "return document.querySelectorAll('li.complaint.review .number').length === 1", "its number")
        .await;
    let stored = server.store.complaint(1).await.expect("read").expect("stored once");
    assert!(server.store.complaint(2).await.expect("read").is_none(), "stored once");
    let number = stored.number().expect("a number");
    let shown = client.find(Locator::Css("li.complaint .number")).await.expect("number").text().await.expect("text");
    assert_eq!(shown, shared::digits::to_persian_digits(number.as_str()));
    let disputed = server.store.declarations_of(SUB).await.expect("read")[0].seq;
    assert_eq!((stored.channel.as_str(), stored.about_seq), ("app", Some(disputed)));

    // Staff answer it in the console; the phone's next sync brings the answer, kept on the phone.
    server.add_operator("rev", Role::Reviewer, "Customer care", "correct horse battery").await;
    let staff = server.console();
    assert_eq!(staff.login("rev", "correct horse battery").await.status, 303);
    let csrf = staff.csrf("/office/complaints/1").await;
    let answer = "رقم دوباره خوانده شد و اصلاح می‌شود.";
    assert_eq!(staff.post("/office/complaints/1", &[("csrf", &csrf), ("answer", answer)]).await.status, 303);
    client.execute("window.dispatchEvent(new Event('online')); return true;", vec![]).await.expect("online");
    wait_for(&client, "return document.querySelectorAll('li.complaint.accepted .answer').length === 1", "the answer")
        .await;
    client.refresh().await.expect("reload");
    wait_for(&client, "return document.querySelectorAll('li.complaint.accepted .answer').length === 1", "kept").await;
    let text = client.find(Locator::Css("li.complaint .answer")).await.expect("answer").text().await.expect("text");
    assert_eq!(text, answer);
    screenshot(&client, "complaint-answered").await;
    client.close().await.expect("close the browser");
    server.finish().await;
}

/// The phone checks offline against the latest chain the server told it of, and a phone whose
/// clock runs two hours ahead gets its refused reading through with one tap, then dates the next
/// ones right by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_baseline_and_a_wrong_clock() {
    let mut server = TestServer::start_with(Backend::Sqlite, |o| o.web_root = Some(built_app())).await;
    let chromium = Chromium::start("clock");
    let client = chromium.open().await;
    // A subscriber's phone: 360 px wide, as the screenshots show it.
    client.set_window_size(360, 800).await.expect("a phone-sized window");
    open_app(&client, &format!("{}/pwa/", server.base)).await;
    add_meter(&client, SUB).await;
    let text =
        async |selector: &str| client.find(Locator::Css(selector)).await.expect(selector).text().await.expect("text");
    // The form shows what the reading is checked against: the registry's 10,000 at first.
    wait_for(&client, "return document.getElementById('baseline').textContent.includes('۱۰۰۰۰')", "the baseline").await;

    // A reading that counts moves the baseline, and its consumption is in the history.
    declare(&client, "10050").await;
    wait_for(&client, "return !!document.querySelector('.history li.accepted .consumption')", "accepted").await;
    assert!(text(".history li.accepted .consumption").await.contains("۵۰"));
    wait_for(&client, "return document.getElementById('baseline').textContent.includes('۱۰۰۵۰')", "the new baseline")
        .await;

    // Offline, a typo below it is caught on the phone, before anything is saved.
    server.stop().await;
    fill(&client, "reading", "10040").await;
    submit(&client, "reading").await;
    let warned =
        "return Array.from(document.querySelectorAll('.problem[role=alert]')).some(p => p.textContent.length > 0)";
    wait_for(&client, warned, "the warning against the fresh baseline").await;
    assert_eq!(count(&client, ".history li").await, 1, "nothing saved");

    // The phone's clock jumps two hours ahead; a reading made offline is dated by it. (Seconds
    // apart, a reading may be one cubic metre above the one before: rounding.)
    client
        .execute("const real = Date.now; Date.now = () => real() + 7200000; return true;", vec![])
        .await
        .expect("a wrong clock");
    declare(&client, "10051").await;
    assert_eq!(count(&client, ".history li.waiting").await, 1);

    // Back online: refused as in the future, the phone learns its clock is off and says so.
    server.resume().await;
    client.execute("window.dispatchEvent(new Event('online')); return true;", vec![]).await.expect("online");
    wait_for(&client, "return document.querySelectorAll('.history li.rejected').length === 1", "the refusal").await;
    wait_for(&client, "return !!document.getElementById('clock')", "the clock warning").await;
    let warning = text("#clock").await;
    assert!(warning.contains("۱۲۰") && warning.contains("جلو"), "{warning}");
    screenshot(&client, "clock-1-refused").await;
    client.execute("document.getElementById('baseline').scrollIntoView(); return true;", vec![]).await.expect("scroll");
    screenshot(&client, "clock-2-refusal-in-history").await;

    // One tap sends the same reading again, dated right; the offer then goes.
    client
        .execute("document.querySelector('.history li.rejected .resend').click(); return true;", vec![])
        .await
        .expect("tap");
    wait_for(&client, "return document.querySelectorAll('.history li.accepted').length === 2", "the resent reading")
        .await;
    assert_eq!(count(&client, ".resend").await, 0);
    // And a new reading is dated right from the start.
    declare(&client, "10052").await;
    wait_for(&client, "return document.querySelectorAll('.history li.accepted').length === 3", "the next reading")
        .await;
    client.execute("document.getElementById('baseline').scrollIntoView(); return true;", vec![]).await.expect("scroll");
    screenshot(&client, "clock-3-resent").await;
    client.close().await.expect("close the browser");

    let mut stored = server.store.declarations_of(SUB).await.expect("read back");
    // In the order they arrived (the store lists them in reading time).
    stored.sort_by_key(|d| d.seq);
    let summary: Vec<(Option<u64>, Status, Option<shared::Code>)> =
        stored.iter().map(|d| (d.reading, d.status, d.code)).collect();
    assert_eq!(
        summary,
        [
            (Some(10_050), Status::Accepted, None),
            (Some(10_051), Status::Rejected, Some(shared::Code::ReadAtInFuture)),
            (Some(10_051), Status::Accepted, None),
            (Some(10_052), Status::Accepted, None),
        ]
    );
    let now = time::OffsetDateTime::now_utc();
    for d in &stored[2..] {
        assert!(
            (now - d.read_at).abs() < time::Duration::minutes(5),
            "dated {} at {}",
            d.reading.unwrap_or(0),
            d.read_at
        );
    }
    server.finish().await;
}

/// A meter photo taken offline (a file given to the photo button, as a phone's camera gives
/// one): shrunk on the phone, shown, kept in IndexedDB through a browser restart, sent after its
/// reading once the server is back, and seen by a reviewer in the console. Prints the photo's
/// bytes on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_photo_taken_offline_reaches_the_reviewer() {
    let mut server = TestServer::start_with(Backend::Sqlite, |o| o.web_root = Some(built_app())).await;
    let chromium = Chromium::start("photo");
    let app = format!("{}/pwa/", server.base);
    let client = chromium.open().await;
    open_app(&client, &app).await;
    add_meter(&client, "۱۱۱۱۲۲۲۲۳۳").await;
    wait_for(&client, "return !!navigator.serviceWorker.controller", "the service worker").await;

    server.stop().await;
    client.goto(&app).await.expect("reload offline");
    wait_for(&client, "return !!document.querySelector('main[data-ready=true]')", "the app offline").await;
    // A reading the phone's own check expects to be held (520 m³ in thirty days against 3 a day):
    // saved after the warning, its card asks for a photo at once, still offline.
    show(&client, "#declare").await;
    fill(&client, "reading", "۱۰۵۲۰").await;
    submit(&client, "reading").await;
    wait_for(&client, "return !!document.querySelector('#reading-problem:not(:empty)')", "the warning").await;
    submit(&client, "reading").await;
    wait_for(&client, "return document.querySelectorAll('.history li').length === 1", "saved").await;
    wait_for(&client, "return !!document.querySelector('.outcome .photo p')", "the photo asked for").await;
    // Read in one step: the card is drawn again whenever a sync attempt starts or ends.
    let asked = client
        .execute("return document.querySelector('.outcome .photo p').textContent", vec![])
        .await
        .expect("the ask");
    assert!(asked.as_str().is_some_and(|a| a.contains("بررسی")), "{asked}");
    let fixture = workspace().join("tests/fixtures/meter.jpg").display().to_string();
    let mut given = false;
    for _ in 0..20 {
        let picker = client.find(Locator::Css("input[name=photo]")).await;
        if let Ok(picker) = picker
            && picker.send_keys(&fixture).await.is_ok()
        {
            given = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(given, "a picture from the camera");
    wait_for(&client, "return !!document.querySelector('.photo figure img')", "the photo shown").await;
    let caption = client
        .execute("return document.querySelector('.photo figcaption').textContent", vec![])
        .await
        .expect("the caption");
    assert!(caption.as_str().is_some_and(|c| c.contains("ذخیره شد")), "kept on the phone, not sent: {caption}");
    screenshot(&client, "photo-1-offline-kept").await;
    screen_is_usable(&client, "photo-1-offline-kept").await;
    // What the shrinking makes of a camera's picture: 12 megapixels of sensor noise (the hardest
    // to compress) with a dial on it, encoded as a phone would (JPEG, quality 0.92).
    let sizes = client
        .execute_async(
            r"const done = arguments[arguments.length - 1];
            const c = document.createElement('canvas'); c.width = 4000; c.height = 3000;
            const x = c.getContext('2d'); const img = x.createImageData(4000, 3000);
            let seed = 7;
            for (let i = 0; i < img.data.length; i += 4) {
              seed = (seed * 1103515245 + 12345) & 0x7fffffff;
              const v = 96 + ((seed >> 16) % 64); img.data[i] = v; img.data[i + 1] = v; img.data[i + 2] = v; img.data[i + 3] = 255;
            }
            x.putImageData(img, 0, 0); x.fillStyle = '#111'; x.fillRect(800, 1100, 2400, 800);
            x.fillStyle = '#fff'; x.font = 'bold 600px monospace'; x.fillText('10321', 900, 1750);
            c.toBlob((camera) => window.kontorShrink(camera, 61440)
              .then((small) => done([camera.size, small.size]), (e) => done(String(e))), 'image/jpeg', 0.92);",
            vec![],
        )
        .await
        .expect("shrink a camera's picture");
    println!("a 12-megapixel camera JPEG and what the phone sends of it (bytes): {sizes}");
    assert!(sizes[1].as_u64().is_some_and(|small| small <= 60 * 1024), "{sizes}");
    client.close().await.expect("close the browser");

    // A new browser on the same profile, still offline, then the server is back.
    let client = chromium.open().await;
    open_app(&client, &app).await;
    server.resume().await;
    client.execute("window.dispatchEvent(new Event('online')); return true;", vec![]).await.expect("online");
    let deadline = Instant::now() + Duration::from_secs(30);
    let seq = loop {
        let stored = server.store.declarations_of(SUB).await.expect("read");
        if let Some(d) = stored.iter().find(|d| d.reading == Some(10_520))
            && server.store.photos().photo(d.seq).await.expect("read").is_some()
        {
            break d.seq;
        }
        assert!(Instant::now() < deadline, "the photo reaches the server after its reading");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let photo = server.store.photos().photo(seq).await.expect("read").expect("stored");
    let held = server.store.declaration(seq).await.expect("read").expect("stored");
    assert_eq!(held.status, Status::NeedsReview, "the reading the phone expected to be held is");
    println!("meter photo on the wire: {} bytes, {} × {} pixels", photo.bytes.len(), photo.width, photo.height);
    assert!(photo.bytes.len() <= 60 * 1024, "{} bytes", photo.bytes.len());
    assert_eq!(photo.media_type, "image/jpeg");
    client.close().await.expect("close");

    // The reviewer sees it.
    server.add_operator("rev", server::store::Role::Reviewer, "Billing", "correct horse battery").await;
    let console = server.console();
    console.login("rev", "correct horse battery").await;
    let page = console.get(&format!("/office/review/{seq}")).await;
    assert!(page.body.contains(&format!("/office/photos/{seq}")), "{}", page.body);
    let (status, content_type, bytes) = console.get_bytes(&format!("/office/photos/{seq}")).await;
    assert_eq!((status, content_type.as_str(), bytes.len()), (200, "image/jpeg", photo.bytes.len()));
    server.finish().await;
}
