//! The HTTP accept loop: `axum::serve`'s job, plus a deadline for request headers.
//!
//! `axum::serve` gives hyper no timer, and without one hyper's header-read timeout never fires:
//! a client that opens a connection and drips its request line a byte at a time (slowloris)
//! holds the connection for ever, and enough of them hold them all. Here each connection is
//! served by hyper's HTTP/1 builder with Tokio's timer and a [`HEADER_DEADLINE`]; bodies and
//! whole requests have their own limits in the router (`http::router`). On shutdown the loop
//! stops accepting, lets the connections finish the requests they are serving, and returns.
//!
//! Open connections are capped (`ServeOptions::max_connections`, `kontor serve --max-connections`), below the process's file
//! descriptors: past the cap a new connection is answered `503` with `Retry-After` at once and
//! closed, so a crowd of idle connections costs others a retry, not a hang, and the database
//! and the log keep the descriptors they need.
//!
//! With a certificate (`--tls-cert`, `--tls-key`) every connection is HTTPS (rustls, TLS 1.2 and
//! 1.3), for a province that serves phones with nothing in front; a handshake gets the same 10 s
//! as request headers.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tower::Service as _;

/// The TLS settings of a certificate chain and its private key, both PEM files (as Let's Encrypt
/// and `openssl` write them), offering HTTP/1.1.
pub fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    use anyhow::Context as _;
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("reading the certificate chain {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "no certificate in {}", cert.display());
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading the private key {}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and the key do not go together")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How long a client has to send its request line and headers, from its first byte (or from
/// the connection when it is new).
pub const HEADER_DEADLINE: Duration = Duration::from_secs(10);

/// The most connections open at once unless told (`kontor serve --max-connections`).
pub const MAX_CONNECTIONS: usize = 1024;

/// The answer past the cap: no body, the client tries again in a second.
const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Serves `router` on `listener` until `shutdown` completes, then waits for the requests in
/// flight. At most `max_connections` are open at once.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    max_connections: usize,
    tls: Option<Arc<ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let open = std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let mut make_service = router.into_make_service_with_connect_info::<SocketAddr>();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max_connections, "too many open connections; answered 503");
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt as _;
                let mut stream = stream;
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let service = match make_service.call(peer).await {
            Ok(service) => TowerToHyperService::new(service),
            Err(never) => match never {},
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(HEADER_DEADLINE);
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let served = match acceptor {
                None => watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await,
                Some(acceptor) => match tokio::time::timeout(HEADER_DEADLINE, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => watcher.watch(builder.serve_connection(TokioIo::new(tls), service)).await,
                    Ok(Err(e)) => return tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                    Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                },
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
