//! The built web app, served at `/pwa/` from the folder `cargo xtask dist` writes: compressed,
//! cached as its file names allow, under a strict content security policy of its own. `/` leads
//! there, and `/favicon.ico` is the app's icon.
//!
//! `cargo xtask dist` writes a brotli and a gzip copy beside every file worth compressing; the
//! server sends the best one the browser accepts (tower-http's precompressed variants), so a phone
//! downloads about a third of the shell's bytes and the server spends no CPU compressing. Trunk
//! puts a content hash in the names of the JavaScript, WebAssembly and CSS, so those are
//! `immutable` for a year; every other file (`index.html`, `sw.js`, the manifest, icons, fonts)
//! has a fixed name and is revalidated on each use (`no-cache`, answered `304` when unchanged).
//!
//! The policy lets the page run only its own files and WebAssembly (`'wasm-unsafe-eval'`), talk
//! only to this server, and never be framed. Two scripts in `index.html` are inline — the service
//! worker's registration and Trunk's module loader — so they are allowed by their SHA-256 hashes,
//! read from the built `index.html` when the server starts: a script injected into the page some
//! other way does not run, and a rebuilt app is covered without anyone editing a policy by hand.
//! A service worker answering from its cache hands the page the headers it cached with it, so an
//! offline start keeps the policy of the version it runs.

use std::path::Path;

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

/// Adds the web app's routes under `/pwa/`, if `root` holds a build.
pub fn routes<S: Clone + Send + Sync + 'static>(router: axum::Router<S>, root: &Path) -> axum::Router<S> {
    use axum::response::IntoResponse;
    use tower::ServiceExt;
    if !root.is_dir() {
        return router;
    }
    let index = std::fs::read_to_string(root.join("index.html")).unwrap_or_default();
    let files = ServiceExt::<Request>::map_response(
        ServeDir::new(root).precompressed_br().precompressed_gzip(),
        IntoResponse::into_response,
    );
    let favicon = ServiceExt::<Request>::map_response(
        tower_http::services::ServeFile::new(root.join("icons/icon-192.png")),
        IntoResponse::into_response,
    );
    mount(router, &index, files, favicon)
}

/// The routes of a web app whose page is `index`, its files answered by `files` and its icon by
/// `favicon`, from a folder or from memory alike: `/pwa/` under the app's content security policy
/// and caching, `/pwa` and the site's root leading there (a temporary redirect for the root: it
/// may one day be a page of its own), and `/favicon.ico` (the console's pages ask for it).
fn mount<S, F, I>(router: axum::Router<S>, index: &str, files: F, favicon: I) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
    F: tower::Service<Request, Response = Response, Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
    F::Future: Send + 'static,
    I: tower::Service<Request, Response = Response, Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
    I::Future: Send + 'static,
{
    let policy = HeaderValue::try_from(policy(index)).expect("a policy of hashes and keywords is a valid header value");
    // No fallback to index.html: a missing `.wasm` must be a 404, never HTML that a service worker
    // would cache under the wrong name.
    let files = tower::ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(header::CONTENT_SECURITY_POLICY, policy))
        .layer(axum::middleware::from_fn(caching))
        .service(files);
    let favicon = tower::ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=86400"),
        ))
        .service(favicon);
    router
        .route("/", axum::routing::get(|| async { axum::response::Redirect::temporary("/pwa/") }))
        .route_service("/favicon.ico", favicon)
        .route("/pwa", axum::routing::get(|| async { axum::response::Redirect::permanent("/pwa/") }))
        .nest_service("/pwa/", files)
}

/// The web app built into this binary (`build.rs`), served from memory: one file to deploy.
pub mod embedded {
    include!(concat!(env!("OUT_DIR"), "/web_app.rs"));
}

/// One embedded file and its compressed copies.
struct EmbeddedFile {
    raw: &'static [u8],
    br: Option<&'static [u8]>,
    gzip: Option<&'static [u8]>,
    content_type: HeaderValue,
    etag: HeaderValue,
}

/// The embedded build, by path under `/pwa/`.
pub struct Embedded {
    files: std::collections::HashMap<&'static str, EmbeddedFile>,
}

impl Embedded {
    /// The build this binary carries, if it carries one.
    pub fn built_in() -> Option<Self> {
        Self::of(embedded::FILES)
    }

    fn of(files: &'static [(&'static str, &'static [u8])]) -> Option<Self> {
        let find = |name: String| files.iter().find(|(n, _)| *n == name).map(|(_, bytes)| *bytes);
        let mut found = std::collections::HashMap::new();
        for &(name, raw) in files {
            if name.ends_with(".br") || name.ends_with(".gz") {
                continue;
            }
            let content_type = mime_guess::from_path(name).first_or_octet_stream();
            let digest = Sha256::digest(raw);
            let etag = format!("\"{}\"", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..12]));
            found.insert(
                name,
                EmbeddedFile {
                    raw,
                    br: find(format!("{name}.br")),
                    gzip: find(format!("{name}.gz")),
                    content_type: HeaderValue::try_from(content_type.as_ref()).ok()?,
                    etag: HeaderValue::try_from(etag).ok()?,
                },
            );
        }
        found.contains_key("index.html").then_some(Self { files: found })
    }

    fn index(&self) -> &str {
        self.files.get("index.html").and_then(|f| std::str::from_utf8(f.raw).ok()).unwrap_or_default()
    }

    /// A `GET` or `HEAD` of `path` (under `/pwa/`): the best copy the browser accepts, `304` when
    /// its copy is current (by `ETag`), `404` for a file the build does not have.
    fn answer(&self, request: &Request) -> Response {
        use axum::http::StatusCode;
        use axum::response::IntoResponse as _;
        if request.method() != axum::http::Method::GET && request.method() != axum::http::Method::HEAD {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        let path = request.uri().path().trim_start_matches('/');
        let path = if path.is_empty() { "index.html" } else { path };
        let Some(file) = self.files.get(path) else { return StatusCode::NOT_FOUND.into_response() };
        let headers = request.headers();
        if headers.get(header::IF_NONE_MATCH).is_some_and(|tags| {
            tags.to_str().is_ok_and(|tags| tags.split(',').any(|t| t.trim() == file.etag || t.trim() == "*"))
        }) {
            return (StatusCode::NOT_MODIFIED, [(header::ETAG, file.etag.clone())]).into_response();
        }
        let accepted = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
        let accepts = |coding: &str| {
            accepted.split(',').any(|part| {
                let mut pieces = part.split(';');
                let name = pieces.next().unwrap_or("").trim();
                let refused = pieces.any(|p| p.trim().strip_prefix("q=").is_some_and(|q| q.trim().parse() == Ok(0.0)));
                name.eq_ignore_ascii_case(coding) && !refused
            })
        };
        let (body, encoding) = match (file.br, file.gzip) {
            (Some(br), _) if accepts("br") => (br, Some("br")),
            (_, Some(gzip)) if accepts("gzip") => (gzip, Some("gzip")),
            _ => (file.raw, None),
        };
        let mut response = if request.method() == axum::http::Method::HEAD {
            Response::new(axum::body::Body::empty())
        } else {
            Response::new(axum::body::Body::from(body))
        };
        let out = response.headers_mut();
        out.insert(header::CONTENT_TYPE, file.content_type.clone());
        out.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        out.insert(header::ETAG, file.etag.clone());
        if let Some(encoding) = encoding {
            out.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        response
    }
}

/// Adds the web app's routes under `/pwa/` from the build this binary carries.
pub fn embedded_routes<S: Clone + Send + Sync + 'static>(router: axum::Router<S>, web: Embedded) -> axum::Router<S> {
    let web = std::sync::Arc::new(web);
    let index = web.index().to_owned();
    let files = {
        let web = web.clone();
        tower::service_fn(move |request: Request| {
            let web = web.clone();
            async move { Ok::<_, std::convert::Infallible>(web.answer(&request)) }
        })
    };
    let favicon = tower::service_fn(move |request: Request| {
        let web = web.clone();
        async move {
            let (mut parts, body) = request.into_parts();
            parts.uri = axum::http::Uri::from_static("/icons/icon-192.png");
            Ok::<_, std::convert::Infallible>(web.answer(&Request::from_parts(parts, body)))
        }
    });
    mount(router, &index, files, favicon)
}

/// A year, for files whose names change with their content.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Every use asks whether the file changed.
const REVALIDATE: &str = "no-cache";

/// Sets `Cache-Control` by the file's name, and `Vary` for the compressed copies.
async fn caching(request: Request, next: Next) -> Response {
    let hashed = content_hashed(request.uri().path());
    let mut response = next.run(request).await;
    if response.status().is_success() || response.status() == axum::http::StatusCode::NOT_MODIFIED {
        let headers = response.headers_mut();
        let policy = if hashed { IMMUTABLE } else { REVALIDATE };
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

/// Whether a file's name carries Trunk's content hash: `name-<hex digits>` before the
/// extension, or before `_bg.wasm`. Trunk writes the 64-bit hash without leading zeros, so it is
/// 16 digits fifteen times in sixteen and shorter otherwise (a build once named its files
/// `kontor-app-6ff0d01091b0763`, 15 digits, which were then served as if they could change).
fn content_hashed(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or("");
    let stem = name.split('.').next().unwrap_or("");
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    stem.rsplit_once('-')
        .is_some_and(|(_, hash)| (10..=16).contains(&hash.len()) && hash.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The content security policy for a page whose HTML is `index`.
pub fn policy(index: &str) -> String {
    let hashes: String = inline_scripts(index)
        .map(|script| {
            let digest = Sha256::digest(script.as_bytes());
            format!(" 'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest))
        })
        .collect();
    format!(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'{hashes}; style-src 'self'; img-src 'self' blob:; \
         font-src 'self'; connect-src 'self'; manifest-src 'self'; worker-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    )
}

/// The text of every `<script>` element in `html` that has no `src`, exactly as written.
fn inline_scripts(html: &str) -> impl Iterator<Item = &str> {
    let mut rest = html;
    std::iter::from_fn(move || {
        loop {
            let open = find_ascii_case_insensitive(rest, "<script")?;
            let after_name = &rest[open + "<script".len()..];
            // `<scripts>` or `<script-x>` are other elements.
            if !after_name.starts_with(|c: char| c == '>' || c.is_ascii_whitespace() || c == '/') {
                rest = after_name;
                continue;
            }
            let tag_end = after_name.find('>')?;
            let attributes = &after_name[..tag_end];
            let body_start = &after_name[tag_end + 1..];
            let close = find_ascii_case_insensitive(body_start, "</script")?;
            rest = &body_start[close..];
            if !has_src(attributes) {
                return Some(&body_start[..close]);
            }
        }
    })
}

/// Whether a tag's attribute text has a `src` attribute.
fn has_src(attributes: &str) -> bool {
    let lower = attributes.to_ascii_lowercase();
    lower.match_indices("src").any(|(at, _)| {
        let before = lower[..at].chars().next_back();
        let after = lower[at + 3..].trim_start().chars().next();
        matches!(before, Some(c) if c.is_ascii_whitespace()) && matches!(after, Some('=') | None)
    })
}

fn find_ascii_case_insensitive(haystack: &str, needle: &str) -> Option<usize> {
    haystack.as_bytes().windows(needle.len()).position(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_are_told_from_fixed_ones() {
        assert!(content_hashed("/pwa/kontor-app-5c1bd9e0a7f3c2d4.js"));
        assert!(content_hashed("/pwa/kontor-app-5c1bd9e0a7f3c2d4_bg.wasm"));
        assert!(content_hashed("/style-00ff00ff00ff00ff.css"));
        assert!(content_hashed("/pwa/kontor-app-6ff0d01091b0763.js"), "a hash with a leading zero dropped");
        assert!(content_hashed("/pwa/kontor-app-6ff0d01091b0763_bg.wasm"));
        assert!(!content_hashed("/pwa/index.html"));
        assert!(!content_hashed("/pwa/sw.js"));
        assert!(!content_hashed("/pwa/fonts/Vazirmatn-NL-Regular.woff2"));
        assert!(!content_hashed("/pwa/icons/icon-192.png"));
        assert!(!content_hashed("/pwa/"));
    }

    #[test]
    fn inline_scripts_are_found_and_others_are_not() {
        let html = "<head><script src=\"a.js\"></script><SCRIPT type=\"module\">import x from './b.js';</SCRIPT>\
                    <scripts>no</scripts><script>\nnavigator.x();\n</script><link rel=\"modulepreload\" href=\"c.js\">";
        let found: Vec<&str> = inline_scripts(html).collect();
        assert_eq!(found, ["import x from './b.js';", "\nnavigator.x();\n"]);
    }

    #[test]
    fn the_policy_names_each_inline_script_by_its_hash() {
        // `echo -n 'alert(1)' | openssl dgst -sha256 -binary | base64`
        let policy = policy("<script>alert(1)</script><script src='x.js'></script>");
        assert!(
            policy.contains(
                "script-src 'self' 'wasm-unsafe-eval' 'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI=';"
            ),
            "{policy}"
        );
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    }
}
