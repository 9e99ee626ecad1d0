//! Kontor's sync server: the HTTP API, the group-commit writer and the store.
//!
//! `main.rs` is the `kontor` command line; everything it runs lives here so that the black-box
//! tests in `tests/` can start the same server on a port of their own.
#![forbid(unsafe_code)]

pub mod backup;
pub mod billing;
pub mod body_rate;
pub mod complaints;
pub mod console;
pub mod demo;
pub mod gateways;
pub mod http;
pub mod import;
pub mod ivr;
pub mod limits;
pub mod listener;
pub mod openapi;
pub mod photo;
pub mod pull;
pub mod pwa;
pub mod replies;
pub mod sms;
pub mod store;
pub mod tokens;
pub mod voice;
pub mod writer;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::limits::{IdentityLimiter, Limits};
use crate::store::Store;
use crate::writer::Writer;

/// What every handler shares: one reference-counted [`Shared`], so that cloning it for each
/// request (axum does, more than once) touches one counter, not one per field. Before, its
/// clones and drops were about 2 % of the HTTP threads' time in one-declaration requests
/// (`perf`), the two threads taking the same counters' cache lines from each other.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The handlers' shared parts, reached through [`AppState`].
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub writer: Writer,
    pub limiter: IdentityLimiter,
    /// The built web app, served under `/pwa/` when the folder exists.
    pub web_root: Option<PathBuf>,
    /// Without `web_root`, serve the web app this binary carries (`pwa::Embedded`), if any.
    pub embedded_web: bool,
    /// The SMS channel, when configured.
    pub sms: Option<sms::SmsConfig>,
    /// The staff console's settings and sign-in limits.
    pub console: console::Console,
    /// The token the billing system sends; the billing hand-off is off without it.
    pub billing_token: Option<String>,
    /// Peers whose `X-Forwarded-For` / `Forwarded` name the client (`http::client_ip`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Whether it serves HTTPS itself (then every answer asks browsers to keep to HTTPS).
    pub tls: bool,
}

/// How to run the server, besides its listener and store.
#[derive(Default)]
pub struct ServeOptions {
    /// The built web app's folder; it takes the place of the one built in.
    pub web_root: Option<PathBuf>,
    /// Without `web_root`, serve the web app built into the binary (`pwa::Embedded`), if any.
    pub embedded_web: bool,
    pub limits: Limits,
    pub sms: Option<sms::SmsConfig>,
    /// Where FastAGI calls come in; the phone channel is off without it.
    pub ivr: Option<TcpListener>,
    pub console: console::ConsoleOptions,
    /// The token the billing system must send as `Authorization: Bearer`.
    pub billing_token: Option<String>,
    /// The TLS proxies in front: only from these peers is a forwarded client address believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Connections open at once; [`listener::MAX_CONNECTIONS`] when `None`.
    pub max_connections: Option<usize>,
    /// HTTPS with this certificate (`listener::tls_config`); plain HTTP without.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// How long meter photos are kept; for ever when `None`.
    pub photo_retention: Option<std::time::Duration>,
}

/// How many threads serve HTTP when not told (`kontor serve --http-threads`), on a machine with
/// `processors` of them. Where the group-commit writer has a thread of its own (SQLite,
/// [`store::Dialect::writes_on_own_thread`]), that thread is busy whenever declarations arrive
/// (`crate::writer`), so the HTTP threads leave it a processor: one fewer than the processors, and
/// at least one. On PostgreSQL the writer is a task among the handlers and the database does its
/// work in processes of its own, so there is one per processor.
///
/// On two processors shared with the load client, one HTTP thread instead of two raised
/// one-declaration requests on SQLite from 19.6k to 21.2k a second (from 43.9 % to 50.2 % of the
/// bare handler) and lowered the server's time per declaration from 52.5 to 47.4 µs; the bare
/// handler went from 44.6k to 42.4k requests a second, and batches stayed at 120k declarations
/// a second (means of ten alternating pairs, `cargo xtask bench --seconds 4 --backend sqlite`,
/// an Intel Xeon with `perf bench sched pipe` at 11 µs). Six busy threads took turns on two
/// processors before (the client's two, two HTTP threads, the writer and the log flusher), and
/// each switch between them costs. The price is at the tail under light load: at 1,000 mixed
/// requests a second (`cargo xtask load --seconds 20`) the median stayed at 0.5 ms, but the p99
/// was 1.8–7.5 ms against 1.2–2.0 ms with two threads (three runs each), as a moment in which
/// the writer's, the flusher's and the checkpoints' threads hold both processors now holds up
/// every request instead of half of them.
pub fn http_threads(database_url: &str, processors: usize) -> usize {
    let own_writer = store::Dialect::from_url(database_url).is_some_and(store::Dialect::writes_on_own_thread);
    processors.saturating_sub(usize::from(own_writer)).max(1)
}

/// Serves on `listener` until `shutdown` completes, then drains the requests in flight and lets
/// the writer finish its last transaction.
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn Store>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if let Some(token) = options.billing_token.as_deref() {
        billing::strong_enough(token)?;
    }
    let (writer, writer_task) = Writer::spawn(store.clone());
    let state = AppState(Arc::new(Shared {
        limiter: IdentityLimiter::for_store(options.limits, &store, "api"),
        console: console::Console::new(options.console, &store),
        store,
        writer,
        web_root: options.web_root,
        embedded_web: options.embedded_web,
        sms: options.sms,
        billing_token: options.billing_token.filter(|t| !t.is_empty()),
        trusted_proxies: options.trusted_proxies,
        tls: options.tls.is_some(),
    }));
    let (stopping, stop_signal) = tokio::sync::watch::channel(false);
    let outbox = state.sms.as_ref().map(|sms| {
        let outbox = replies::Outbox {
            store: state.store.clone(),
            sender: sms.sender.clone(),
            retry: sms.retry,
            wake: sms.wake.clone(),
        };
        tokio::spawn(outbox.run(stop_signal.clone()))
    });
    let puller = state.sms.as_ref().and_then(|sms| sms.pull.clone()).map(|pull| {
        let puller = pull::Puller {
            state: state.clone(),
            reader: pull.reader,
            every: pull.every,
            holder: uuid::Uuid::new_v4().to_string(),
        };
        tokio::spawn(puller.run(stop_signal.clone()))
    });
    let forget = options
        .photo_retention
        .map(|retention| tokio::spawn(photo::forget_old(state.store.clone(), retention, stop_signal.clone())));
    let ivr = options.ivr.map(|agi| tokio::spawn(ivr::serve(agi, state.writer.clone(), stop_signal)));
    let shutdown = async move {
        shutdown.await;
        let _ = stopping.send(true);
    };
    let max_connections = options.max_connections.unwrap_or(listener::MAX_CONNECTIONS);
    listener::serve(listener, http::router(state), max_connections, options.tls, shutdown).await;
    if let Some(ivr) = ivr {
        ivr.await.context("the ivr listener failed")?;
    }
    if let Some(forget) = forget {
        forget.await.context("the photo retention task failed")?;
    }
    if let Some(puller) = puller {
        puller.await.context("the sms inbox reader failed")?;
    }
    if let Some(outbox) = outbox {
        outbox.await.context("the sms reply sender failed")?;
    }
    // The router (and with it the last writer handle) is gone: the writer ends after its queue.
    writer_task.await.context("the writer task failed")?;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

#[cfg(test)]
mod tests {
    #[test]
    fn sqlite_leaves_its_writer_a_processor_and_postgres_does_not() {
        assert_eq!(super::http_threads("sqlite://data/kontor.db?mode=rwc", 2), 1);
        assert_eq!(super::http_threads("sqlite://data/kontor.db?mode=rwc", 8), 7);
        assert_eq!(super::http_threads("sqlite://data/kontor.db?mode=rwc", 1), 1, "never none");
        assert_eq!(super::http_threads("postgres://postgres@127.0.0.1/test", 2), 2);
        assert_eq!(super::http_threads("postgres://postgres@127.0.0.1/test", 1), 1);
    }
}
