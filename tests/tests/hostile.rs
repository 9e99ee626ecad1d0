//! Hostile input at the HTTP layer, over raw TCP: a body that never ends, headers that drip in,
//! JSON nested a hundred thousand deep, an array of a million items, bodies that are not UTF-8 or
//! not JSON, and a flood of headers. Each gets a clean 4xx or a closed connection within a
//! bounded time, and the server keeps answering everyone else meanwhile.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tests::{Backend, TestServer};

/// What the server did with a request: its status, or `None` when it closed the connection
/// without answering; and how long that took.
fn send(addr: &str, head: &str, body: &[u8], wait: Duration) -> (Option<u16>, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(wait)).expect("timeout");
    // The server may answer and close before it has read everything; a write error then is fine.
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body));
    (read_status(&mut stream), started.elapsed())
}

fn read_status(stream: &mut TcpStream) -> Option<u16> {
    let mut response = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                response.extend_from_slice(&buf[..n]);
                if response.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                panic!("no answer and no close after {:?}", stream.read_timeout().ok().flatten())
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&response);
    text.split(' ').nth(1).and_then(|s| s.parse().ok())
}

fn post_head(addr: &str, content_type: &str, length: usize) -> String {
    format!(
        "POST /api/v1/sync HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// Others are still served: a health check answers at once.
fn still_serving(addr: &str) {
    let (status, took) =
        send(addr, &format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n"), b"", Duration::from_secs(5));
    assert_eq!(status, Some(200));
    assert!(took < Duration::from_secs(2), "a health check took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_a_clean_refusal_and_others_are_served() {
    let server = TestServer::start(Backend::Sqlite).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    tokio::task::spawn_blocking(move || {
        // A body announced at 1,000 bytes of which 10 ever come: cut off, while others are served.
        let slow = std::thread::spawn({
            let addr = addr.clone();
            move || send(&addr, &post_head(&addr, "application/json", 1000), b"{\"device_", Duration::from_secs(60))
        });
        std::thread::sleep(Duration::from_millis(200));
        still_serving(&addr);
        let (status, took) = slow.join().expect("the slow body");
        assert!(matches!(status, None | Some(400..=499)), "a body that never ends: {status:?}");
        assert!(took < Duration::from_secs(20), "a body that never ends was held {took:?}");

        // Headers that drip in one byte at a time, forever: the connection is closed.
        let dripping = std::thread::spawn({
            let addr = addr.clone();
            move || {
                let started = Instant::now();
                let mut stream = TcpStream::connect(&addr).expect("connect");
                let _ = stream.write_all(format!("POST /api/v1/sync HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ").as_bytes());
                while started.elapsed() < Duration::from_secs(60) {
                    if stream.write_all(b"a").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                started.elapsed()
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        still_serving(&addr);
        let held = dripping.join().expect("the dripping headers");
        assert!(held < Duration::from_secs(45), "dripping headers were held {held:?}");

        // JSON nested 100,000 deep: a clean 400, quickly (no stack overflow).
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let (status, took) =
            send(&addr, &post_head(&addr, "application/json", deep.len()), deep.as_bytes(), Duration::from_secs(10));
        assert_eq!(status, Some(400), "deep nesting");
        assert!(took < Duration::from_secs(2), "deep nesting took {took:?}");

        // A million-item array: over the body limit, refused before it is parsed.
        let million = format!(
            "{{\"device_id\":\"0190b6f4-8f5e-7a3c-9b1d-2f0a4c6e8b10\",\"submissions\":[{}0]}}",
            "0,".repeat(999_999)
        );
        let (status, _) = send(
            &addr,
            &post_head(&addr, "application/json", million.len()),
            million.as_bytes(),
            Duration::from_secs(10),
        );
        assert!(matches!(status, None | Some(413)), "a million items: {status:?}");
        // Half a million small items, under the limit: refused by the envelope's 500-item cap.
        let many = format!(
            "{{\"device_id\":\"0190b6f4-8f5e-7a3c-9b1d-2f0a4c6e8b10\",\"submissions\":[{}0]}}",
            "0,".repeat(499_999)
        );
        let (status, took) =
            send(&addr, &post_head(&addr, "application/json", many.len()), many.as_bytes(), Duration::from_secs(10));
        assert_eq!(status, Some(400), "half a million items");
        assert!(took < Duration::from_secs(3), "half a million items took {took:?}");

        // Not UTF-8, not JSON, not declared as JSON.
        let invalid = b"{\"device_id\": \"\xff\xfe\"}";
        let (status, _) =
            send(&addr, &post_head(&addr, "application/json", invalid.len()), invalid, Duration::from_secs(5));
        assert_eq!(status, Some(400), "invalid UTF-8");
        let (status, _) = send(&addr, &post_head(&addr, "text/plain", 2), b"{}", Duration::from_secs(5));
        assert_eq!(status, Some(415), "text/plain");
        let (status, _) =
            send(&addr, &post_head(&addr, "application/x-www-form-urlencoded", 3), b"a=b", Duration::from_secs(5));
        assert_eq!(status, Some(415), "a form");

        // A flood of headers, and one enormous header: refused or closed, never served.
        let flood: String = (0..5_000).map(|i| format!("X-Flood-{i}: {i}\r\n")).collect();
        let head = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n{flood}\r\n");
        let (status, _) = send(&addr, &head, b"", Duration::from_secs(10));
        assert!(matches!(status, None | Some(400..=499)), "5,000 headers: {status:?}");
        let head = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20));
        let (status, _) = send(&addr, &head, b"", Duration::from_secs(10));
        assert!(matches!(status, None | Some(400..=499)), "a 1 MiB header: {status:?}");

        still_serving(&addr);
    })
    .await
    .expect("the hostile client");
    assert_eq!(server.stored().await, 0, "nothing hostile was stored");
    server.finish().await;
}

/// Past the cap on open connections, a new one is answered 503 with `Retry-After` at once, not
/// left hanging; when the crowd goes, everyone is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_idle_connections_gets_a_clear_refusal() {
    let server = TestServer::start_with(Backend::Sqlite, |o| o.max_connections = Some(8)).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let crowd = tokio::task::spawn_blocking(move || {
        let idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(&addr).expect("connect")).collect();
        std::thread::sleep(Duration::from_millis(200));
        let (status, took) =
            send(&addr, &format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n"), b"", Duration::from_secs(5));
        drop(idle);
        std::thread::sleep(Duration::from_millis(200));
        still_serving(&addr);
        (status, took)
    })
    .await
    .expect("the crowd");
    assert_eq!(crowd.0, Some(503), "past the cap");
    assert!(crowd.1 < Duration::from_secs(2), "refused at once, not after {:?}", crowd.1);
    server.finish().await;
}

/// A certificate for `localhost` and 127.0.0.1, made by `openssl` into `dir`: (chain, key).
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir_all(dir).expect("a folder for the certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("openssl is needed to make the HTTPS test's certificate: {e}"));
    assert!(made.success(), "openssl could not make a certificate");
    (cert, key)
}

/// With a certificate, the server speaks HTTPS itself (nothing in front), tells browsers to keep
/// to it, and a plain-HTTP client gets no answer from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_without_a_proxy() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_rustls::rustls;

    let dir = std::env::temp_dir().join(format!("kontor-tls-{}", uuid::Uuid::new_v4().simple()));
    let (cert, key) = self_signed(&dir);
    let config = server::listener::tls_config(&cert, &key).expect("the certificate loads");
    let server = TestServer::start_with(Backend::Sqlite, |o| o.tls = Some(config)).await;
    let addr = server.base.trim_start_matches("http://").to_owned();

    let mut roots = rustls::RootCertStore::empty();
    for der in rustls::pki_types::pem::PemObject::pem_file_iter(&cert).expect("read the certificate") {
        roots.add(der.expect("a certificate")).expect("trust it");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let get = |path: &'static str| {
        let (connector, addr) = (connector.clone(), addr.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect(&addr).await.expect("connect");
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
            let mut tls = connector.connect(name, tcp).await.expect("a TLS handshake with the server's certificate");
            let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            tls.write_all(request.as_bytes()).await.expect("send");
            let mut answer = String::new();
            tls.read_to_string(&mut answer).await.expect("read the answer");
            answer
        }
    };
    let answer = get("/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("strict-transport-security: max-age="), "{answer}");
    // The console's cookies are `Secure` with no proxy to say the request came over TLS.
    let answer = get("/office/login").await;
    let cookie = answer.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).expect("a cookie");
    assert!(cookie.contains("; Secure") && cookie.contains("HttpOnly"), "{cookie}");

    // Plain HTTP to the HTTPS port: the handshake fails and nothing is served.
    let plain = tokio::task::spawn_blocking(move || {
        send(&addr, &format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n"), b"", Duration::from_secs(15))
    })
    .await
    .expect("plain");
    assert_ne!(plain.0, Some(200));
    server.finish().await;
    let _ = std::fs::remove_dir_all(&dir);
}
