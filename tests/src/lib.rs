//! The test harness: a real `kontor` server on a real port, on a fresh SQLite file or a fresh
//! PostgreSQL database, and an HTTP client to talk to it.
//!
//! PostgreSQL is the local server (`KONTOR_TEST_POSTGRES`, by default
//! `postgres://postgres@127.0.0.1:5432/test`); each test creates its own database
//! `kontor_test_…` and drops it in [`TestServer::finish`]. A test never skips when PostgreSQL is
//! missing: it fails, saying so.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use server::replies::{LogSender, Retry};
use server::sms::SmsConfig;
use server::store::{OperatorRecord, Role, SqlStore, Store, SubscriberRow};
use server::{ServeOptions, limits::Limits};
use shared::{MeterSerial, SubscriptionNumber};
use sqlx::Connection as _;
use time::{Duration, OffsetDateTime};
use tokio::sync::oneshot;
use uuid::Uuid;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server the tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("KONTOR_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The test meter: five digits, billed 10,000 m³ thirty days ago, 3 m³ a day on average.
pub const SUB: &str = "1111222233";
pub const SERIAL: &str = "TS000001";
/// A meter close to wrapping: billed 99,940 m³ ten days ago.
pub const SUB_WRAP: &str = "4444555566";
pub const SERIAL_WRAP: &str = "TS000002";

/// The SMS webhook's secret and its header in tests.
pub const SMS_SECRET: &str = "test-secret";
pub const SMS_SECRET_HEADER: &str = "x-kontor-sms-secret";
/// The phone registered to [`SUB`].
pub const PHONE: &str = "09121111111";

/// A running server and what the test needs to reach it.
pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    pub store: Arc<SqlStore>,
    pub now: OffsetDateTime,
    /// Where the server takes FastAGI calls.
    pub agi: std::net::SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    cleanup: Cleanup,
    web_root: Option<PathBuf>,
}

enum Cleanup {
    File(PathBuf),
    Database(String),
}

impl TestServer {
    /// Starts a server on a fresh database with the two test meters, default limits, and the SMS
    /// webhook on (secret [`SMS_SECRET`], replies logged).
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Like [`TestServer::start`], with the options changed by `configure`.
    pub async fn start_with(backend: Backend, configure: impl FnOnce(&mut ServeOptions)) -> Self {
        // The server's warnings and errors appear beside a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_test_writer()
            .try_init();
        let unique = Uuid::new_v4().simple().to_string();
        let (url, cleanup) = match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("kontor-test-{unique}"));
                let url = format!("sqlite://{}/kontor.db?mode=rwc", dir.display());
                (url, Cleanup::File(dir))
            }
            Backend::Postgres => {
                let name = format!("kontor_test_{unique}");
                let admin = postgres_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL is needed for this test and is not reachable at {admin}: {e}")
                });
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create the test database");
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base).to_owned();
                (format!("{base}/{name}"), Cleanup::Database(name))
            }
        };
        let store = Arc::new(SqlStore::connect(&url).await.expect("connect and migrate the test store"));
        let now = OffsetDateTime::now_utc();
        store.upsert_subscribers(&test_meters(now), now).await.expect("seed the test meters");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        let (shutdown, stopped) = oneshot::channel::<()>();
        let agi_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind an AGI port");
        let agi = agi_listener.local_addr().expect("AGI address");
        let mut options = ServeOptions {
            ivr: Some(agi_listener),
            web_root: None,
            limits: Limits::default(),
            sms: Some(SmsConfig {
                retry: Retry {
                    attempts: 3,
                    first_delay: std::time::Duration::from_millis(20),
                    max_delay: std::time::Duration::from_secs(1),
                },
                ..SmsConfig::new(
                    axum::http::HeaderName::from_static(SMS_SECRET_HEADER),
                    SMS_SECRET.into(),
                    Arc::new(LogSender),
                )
            }),
            ..ServeOptions::default()
        };
        configure(&mut options);
        let web_root = options.web_root.clone();
        let task = tokio::spawn(server::serve(listener, store.clone(), options, async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            http: reqwest::Client::new(),
            store,
            now,
            agi,
            shutdown: Some(shutdown),
            task: Some(task),
            cleanup,
            web_root,
        }
    }

    /// Stops serving HTTP (as if the server process were down), keeping the database.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server ran cleanly");
        }
    }

    /// Serves again on the same address and database after [`TestServer::stop`].
    pub async fn resume(&mut self) {
        let address = self.base.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind(&address).await.expect("bind the same port again");
        let (shutdown, stopped) = oneshot::channel::<()>();
        let options = ServeOptions { web_root: self.web_root.clone(), ..ServeOptions::default() };
        let store: Arc<dyn Store> = self.store.clone();
        self.task = Some(tokio::spawn(server::serve(listener, store, options, async move {
            let _ = stopped.await;
        })));
        self.shutdown = Some(shutdown);
    }

    /// Stops the server, waits for it, and removes its database.
    pub async fn finish(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server ran cleanly");
        }
        match &self.cleanup {
            Cleanup::File(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Database(name) => {
                self.store.close().await;
                let mut conn = sqlx::PgConnection::connect(&postgres_admin_url()).await.expect("reconnect");
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut conn)
                    .await
                    .expect("drop the test database");
            }
        }
    }

    /// POSTs a JSON value; answers the status and the JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_with(path, "application/json", body.to_string().into_bytes(), None).await
    }

    /// POSTs raw bytes with a content type and an optional `Accept-Language`.
    pub async fn post_with(&self, path: &str, content_type: &str, body: Vec<u8>, lang: Option<&str>) -> (u16, Value) {
        let mut request =
            self.http.post(format!("{}{path}", self.base)).header("content-type", content_type).body(body);
        if let Some(lang) = lang {
            request = request.header("accept-language", lang);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Delivers an SMS to the webhook as the gateway does; answers the status and the body.
    pub async fn sms(&self, from: &str, text: &str, message_id: &str) -> (u16, Value) {
        self.sms_fields(&json!({"from": from, "to": "500025194", "text": text, "message_id": message_id})).await
    }

    /// Delivers an SMS with exactly these JSON fields.
    pub async fn sms_fields(&self, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/api/v1/sms/inbound", self.base))
            .header(SMS_SECRET_HEADER, SMS_SECRET)
            .json(body)
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Sends one sync request and expects a 200; answers its results.
    pub async fn sync(&self, submissions: Vec<Value>) -> Vec<Value> {
        let (status, body) =
            self.post("/api/v1/sync", &json!({"device_id": Uuid::new_v4(), "submissions": submissions})).await;
        assert_eq!(status, 200, "sync answered {body}");
        body["results"].as_array().expect("results").clone()
    }

    /// Creates a console account with this password.
    pub async fn add_operator(&self, username: &str, role: Role, office: &str, password: &str) {
        let password_hash = server::console::auth::hash_password(password).expect("hash a password");
        let operator = OperatorRecord { username: username.into(), role, office: office.into(), password_hash };
        self.store.save_operator(&operator, OffsetDateTime::now_utc()).await.expect("save an operator");
    }

    /// A console client of this server, signed in as nobody yet.
    pub fn console(&self) -> ConsoleClient {
        self.console_with(reqwest::header::HeaderMap::new())
    }

    /// A console client that a trusted proxy says is at `address` (`X-Forwarded-For`).
    pub fn console_from(&self, address: &str) -> ConsoleClient {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-forwarded-for", address.parse().expect("an address"));
        self.console_with(headers)
    }

    fn console_with(&self, headers: reqwest::header::HeaderMap) -> ConsoleClient {
        ConsoleClient {
            base: self.base.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .default_headers(headers)
                .build()
                .expect("an HTTP client"),
            cookies: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// How many declarations the database holds.
    pub async fn stored(&self) -> u64 {
        self.store.counts().await.expect("count").declarations
    }

    /// A time `hours` before the server started, as RFC 3339.
    pub fn hours_ago(&self, hours: i64) -> String {
        rfc3339(self.now - Duration::hours(hours))
    }
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(shared::wire::SERVER_OFFSET)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format a time")
}

/// A submission for the test meter.
pub fn submission(id: Uuid, reading: impl Into<Value>, read_at: &str) -> Value {
    json!({"id": id, "subscription": SUB, "meter_serial": SERIAL, "reading": reading.into(), "read_at": read_at})
}

fn test_meters(now: OffsetDateTime) -> Vec<SubscriberRow> {
    let row = |sub: &str, serial: &str, reading: u64, days: i64, avg: f64, phone: Option<&str>| SubscriberRow {
        subscription: SubscriptionNumber::parse(sub).expect("test subscription"),
        meter_serial: MeterSerial::parse(serial).expect("test serial"),
        digits: 5,
        last_reading: Some(reading),
        last_read_at: Some(now - Duration::days(days)),
        avg_daily_m3: Some(avg),
        phone: phone.map(str::to_owned),
    };
    vec![row(SUB, SERIAL, 10_000, 30, 3.0, Some(PHONE)), row(SUB_WRAP, SERIAL_WRAP, 99_940, 10, 3.0, None)]
}

/// Runs each listed test on SQLite and on PostgreSQL, as `sqlite::NAME` and `postgres::NAME`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Backend::Postgres).await } )*
        }
    };
}

/// A browser's view of the console over plain HTTP: it keeps cookies as a browser would, follows
/// no redirects (the tests check them), and sends form posts from the console's own origin.
pub struct ConsoleClient {
    pub base: String,
    http: reqwest::Client,
    cookies: std::sync::Mutex<Vec<(String, String)>>,
}

/// A console answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Where a redirect points.
    pub location: Option<String>,
    /// Every `Set-Cookie` line.
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl Answer {
    /// The value of the first hidden `name` field of the page's forms.
    pub fn field(&self, name: &str) -> Option<String> {
        let at = self.body.find(&format!("name=\"{name}\""))?;
        let rest = &self.body[at..];
        let value = &rest[rest.find("value=\"")? + 7..];
        Some(value[..value.find('"')?].to_owned())
    }
}

impl ConsoleClient {
    /// The value of a cookie this browser holds.
    pub fn cookie_value(&self, name: &str) -> Option<String> {
        let jar = self.cookies.lock().expect("cookie jar");
        jar.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    /// Puts a cookie in this browser's jar, as if it had been given it.
    pub fn set_cookie(&self, name: &str, value: &str) {
        let mut jar = self.cookies.lock().expect("cookie jar");
        jar.retain(|(k, _)| k != name);
        jar.push((name.to_owned(), value.to_owned()));
    }

    fn cookie_header(&self) -> String {
        let jar = self.cookies.lock().expect("cookie jar");
        jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn answer(&self, response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let set_cookies: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect();
        {
            let mut jar = self.cookies.lock().expect("cookie jar");
            for line in &set_cookies {
                let Some((name, rest)) = line.split_once('=') else { continue };
                let value = rest.split(';').next().unwrap_or("");
                jar.retain(|(k, _)| k != name);
                if !line.contains("Max-Age=0") {
                    jar.push((name.to_owned(), value.to_owned()));
                }
            }
        }
        Answer { status, location, set_cookies, body: response.text().await.expect("a body") }
    }

    async fn send_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("the server answers")
    }

    pub async fn get(&self, path: &str) -> Answer {
        let response = self.send_get(path).await;
        self.answer(response).await
    }

    /// Posts a form from the console's own pages.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        self.post_from(path, fields, &self.base.clone()).await
    }

    /// Posts a form as if from a page of `origin`.
    pub async fn post_from(&self, path: &str, fields: &[(&str, &str)], origin: &str) -> Answer {
        let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("origin", origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("the server answers");
        self.answer(response).await
    }

    /// Opens the sign-in page and signs in; answers the sign-in post's answer.
    /// The status, content type and bytes of a GET: for what is not a page (a photo).
    pub async fn get_bytes(&self, path: &str) -> (u16, String, Vec<u8>) {
        let response = self.send_get(path).await;
        let status = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        (status, content_type, response.bytes().await.expect("a body").to_vec())
    }

    pub async fn login(&self, username: &str, password: &str) -> Answer {
        let page = self.get("/office/login").await;
        let csrf = page.field("csrf").expect("the sign-in form has a token");
        self.post("/office/login", &[("csrf", &csrf), ("username", username), ("password", password)]).await
    }

    /// The session's CSRF token, from the page at `path`.
    pub async fn csrf(&self, path: &str) -> String {
        self.get(path).await.field("csrf").expect("the page has a form token")
    }
}
