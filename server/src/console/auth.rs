//! Staff sign-in for the console: argon2id password hashes, session cookies, CSRF tokens and the
//! checks every page makes.
//!
//! A session cookie holds 256 random bits; the database keeps only its SHA-256, so a copy of the
//! database opens no session. Each session has its own CSRF token, which every form sends back;
//! the sign-in form, before there is a session, uses a double-submit cookie. Cookies are
//! `HttpOnly` and `SameSite=Strict`, and `Secure` when the request came over TLS (through a proxy
//! that says so with `X-Forwarded-Proto: https`).

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use axum::http::{HeaderMap, HeaderValue, header};

/// The session cookie.
pub const SESSION_COOKIE: &str = "kontor_office";
/// The sign-in form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "kontor_office_login";
/// The console's language choice.
pub const LANG_COOKIE: &str = "kontor_office_lang";
/// Names a browser its staff member has signed in from before (`trusted_browsers`).
pub const BROWSER_COOKIE: &str = "kontor_office_browser";

/// Hashes a password with argon2id (OWASP's parameters: 19 MiB, two passes), as a PHC string.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt =
        SaltString::encode_b64(&crate::tokens::random_bytes::<16>()?).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    Ok(hash.to_string())
}

/// Whether `password` matches `hash`. `None` (no such operator) still costs one hash, so the
/// time taken does not tell which usernames exist.
pub fn verify_password(password: &str, hash: Option<&str>) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let (hash, real) = match hash {
        Some(hash) => (hash, true),
        None => (DUMMY.get_or_init(|| hash_password("kontor-no-such-operator").unwrap_or_default()).as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && real
}

/// A cookie's value from the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// Whether the request reached us over TLS, by the proxy's word.
fn over_tls(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok());
    let forwarded = headers.get(header::FORWARDED).and_then(|v| v.to_str().ok());
    forwarded_proto.is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
        || forwarded.is_some_and(|f| f.to_ascii_lowercase().contains("proto=https"))
}

/// A `Set-Cookie` value for the console's path; `max_age` zero removes the cookie.
pub fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age_secs: u64) -> Option<HeaderValue> {
    let secure = if over_tls(headers) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/office; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    .ok()
}

/// Whether a form post comes from our own pages: a browser names the page's origin in `Origin`
/// (and says `Sec-Fetch-Site`); a post from another site is refused even before its token is
/// checked. Clients that send neither header (curl, old browsers) rely on the token alone.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|s| s == "cross-site") {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip_and_unknown_users_never_pass() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", Some(&hash)));
        assert!(!verify_password("correct hors", Some(&hash)));
        assert!(!verify_password("kontor-no-such-operator", None));
        assert!(!verify_password("x", Some("not a hash")));
    }

    #[test]
    fn cookies() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; kontor_office=abc; b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
        let plain = set_cookie(&headers, SESSION_COOKIE, "abc", 60).expect("cookie");
        assert_eq!(plain, "kontor_office=abc; Path=/office; HttpOnly; SameSite=Strict; Max-Age=60");
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let tls = set_cookie(&headers, SESSION_COOKIE, "abc", 60).expect("cookie");
        assert!(tls.to_str().is_ok_and(|v| v.ends_with("; Secure")));
    }

    #[test]
    fn cross_site_posts_are_refused() {
        let mut headers = HeaderMap::new();
        assert!(same_origin(&headers), "no browser headers: the token decides");
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&headers));
    }
}
