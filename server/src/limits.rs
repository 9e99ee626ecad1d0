//! Limits on failed identity attempts, per subscription and per client, so that nobody can find
//! a meter serial by guessing; the console's sign-in uses a second limiter of the same kind, per
//! username and per client, against password guessing. Failures are counted in a fixed window; a
//! key over its limit is refused with `429` and `Retry-After` until its window ends.
//!
//! Where the counters live follows the store. On SQLite one `kontor serve` owns the database, and
//! the counters are in its memory. On PostgreSQL several instances may serve behind one load
//! balancer, so the counters are rows of the database (`identity_failures`), one per key and
//! window, counted up by one atomic upsert: a guesser spreading tries across instances meets one
//! limit. Every sync request is checked against them, so the checks are read together: one query
//! reads for every check that arrived while the last one ran ([`read_windows`]), as the writer
//! gathers declarations into one commit. Skipping the query altogether (an experiment) halved the
//! server's CPU time per one-declaration request; reading together took it from 108 to 83 µs and
//! raised the rate by 15 % (means of three alternating runs, `cargo xtask bench --backend
//! postgres`). A read covered 6.2 checks on average there, though most covered one (the trace
//! log, `KONTOR_BENCH_LOG=server::limits=trace`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::store::{FailureWindow, Store, StoreError, unix_ms};

/// Whose failures are counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Subscription(String),
    /// A console username, as typed.
    Operator(String),
    Client(IpAddr),
}

impl Key {
    /// The key's row name in the shared table, within a limiter's scope.
    fn name(&self, scope: &str) -> String {
        match self {
            Self::Subscription(s) => format!("{scope}/subscription/{s}"),
            Self::Operator(o) => format!("{scope}/operator/{o}"),
            Self::Client(ip) => format!("{scope}/client/{ip}"),
        }
    }
}

/// How many failures each kind of key may have per window.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failures per subscription, or per username for the console's sign-in.
    pub per_subscription: u32,
    pub per_client: u32,
    pub window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { per_subscription: 5, per_client: 20, window: Duration::from_secs(15 * 60) }
    }
}

/// Why a request may not go on.
#[derive(Debug)]
pub enum Refused {
    /// A key used up its failures: wait this long.
    Wait(Duration),
    /// The shared counters could not be read; the request is refused rather than let through
    /// uncounted. (Shared by the checks that one failed read was for.)
    Store(Arc<StoreError>),
}

struct Window {
    started: Instant,
    failures: u32,
}

enum Counters {
    /// One process owns the store: the counters are in its memory.
    Local(Mutex<HashMap<Key, Window>>),
    /// Instances share the store: the counters are in it, named within `scope`.
    Shared { store: Arc<dyn Store>, scope: &'static str, recorded: AtomicU64, reads: OnceLock<mpsc::Sender<Read>> },
}

/// One check of the shared counters, waiting to be read.
struct Read {
    names: Vec<String>,
    /// Windows that started at or before this have ended for this check.
    since_ms: i64,
    reply: oneshot::Sender<Result<Vec<FailureWindow>, Arc<StoreError>>>,
}

/// Checks waiting for the reader before new ones wait for room.
const READ_QUEUE: usize = 4_096;
/// The most checks one query reads for.
const READ_BATCH: usize = 1_024;

/// Reads the shared counters for the checks in `queue`: whichever arrived while the last query
/// ran are read by one query over all their keys, and each check is answered with its own keys'
/// windows still open at its own time. Every check is read by a query that began after it was
/// asked, so none is answered from older rows than a query of its own would have read. Ends when
/// the limiter is dropped.
async fn read_windows(store: Arc<dyn Store>, mut queue: mpsc::Receiver<Read>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < READ_BATCH {
            match queue.try_recv() {
                Ok(read) => batch.push(read),
                Err(_) => break,
            }
        }
        let mut names: Vec<String> = batch.iter().flat_map(|read| read.names.iter().cloned()).collect();
        names.sort_unstable();
        names.dedup();
        let since_ms = batch.iter().map(|read| read.since_ms).min().unwrap_or_default();
        tracing::trace!(checks = batch.len(), keys = names.len(), "reading identity limits");
        match store.failure_windows(&names, since_ms).await {
            Ok(rows) => {
                // One row per key (the table's primary key).
                let by_name: HashMap<&str, &FailureWindow> = rows.iter().map(|row| (row.0.as_str(), row)).collect();
                for read in batch {
                    let mine = read
                        .names
                        .iter()
                        .filter_map(|name| by_name.get(name.as_str()))
                        .filter(|(_, started_ms, _)| *started_ms > read.since_ms)
                        .map(|row| (*row).clone())
                        .collect();
                    let _ = read.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for read in batch {
                    let _ = read.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// The failure counters.
pub struct IdentityLimiter {
    limits: Limits,
    counters: Counters,
}

/// Entries kept in memory before expired windows are swept.
const SWEEP_AT: usize = 100_000;
/// Shared rows: expired windows are deleted after this many failures recorded by an instance.
const SHARED_SWEEP_EVERY: u64 = 1_000;

impl IdentityLimiter {
    /// Counters in this process's memory.
    pub fn new(limits: Limits) -> Self {
        Self { limits, counters: Counters::Local(Mutex::new(HashMap::new())) }
    }

    /// Counters where `store` says every instance can see them: in the database when several
    /// instances may share it, in memory otherwise. `scope` keeps limiters apart in the table.
    pub fn for_store(limits: Limits, store: &Arc<dyn Store>, scope: &'static str) -> Self {
        if store.shared_by_instances() {
            let counters =
                Counters::Shared { store: store.clone(), scope, recorded: AtomicU64::new(0), reads: OnceLock::new() };
            Self { limits, counters }
        } else {
            Self::new(limits)
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn limit(&self, key: &Key) -> u32 {
        match key {
            Key::Subscription(_) | Key::Operator(_) => self.limits.per_subscription,
            Key::Client(_) => self.limits.per_client,
        }
    }

    /// `Err(Refused::Wait(retry_after))` when any of `keys` has used up its failures.
    pub async fn check<'a>(&self, keys: impl IntoIterator<Item = &'a Key>) -> Result<(), Refused> {
        let wait = match &self.counters {
            Counters::Local(windows) => {
                let now = Instant::now();
                let windows = windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let mut wait = Duration::ZERO;
                for key in keys {
                    if let Some(w) = windows.get(key) {
                        let age = now.duration_since(w.started);
                        if age < self.limits.window && w.failures >= self.limit(key) {
                            wait = wait.max(self.limits.window - age);
                        }
                    }
                }
                wait
            }
            Counters::Shared { store, scope, reads, .. } => {
                let keys: Vec<(String, u32)> = keys.into_iter().map(|k| (k.name(scope), self.limit(k))).collect();
                let names: Vec<String> = keys.iter().map(|(name, _)| name.clone()).collect();
                let window_ms = self.limits.window.as_millis() as i64;
                let now = unix_ms(OffsetDateTime::now_utc());
                // The reader starts with the first check, on the runtime that serves the checks.
                let reader = reads.get_or_init(|| {
                    let (queue, waiting) = mpsc::channel(READ_QUEUE);
                    tokio::spawn(read_windows(store.clone(), waiting));
                    queue
                });
                let stopped = || Refused::Store(Arc::new(StoreError::Unavailable("the limits' reader stopped".into())));
                let (reply, rows) = oneshot::channel();
                reader.send(Read { names, since_ms: now - window_ms, reply }).await.map_err(|_| stopped())?;
                let rows = rows.await.map_err(|_| stopped())?.map_err(Refused::Store)?;
                let mut wait_ms = 0;
                for (name, started_ms, failures) in rows {
                    if keys.iter().any(|(n, limit)| *n == name && failures >= *limit) {
                        wait_ms = wait_ms.max(started_ms + window_ms - now);
                    }
                }
                Duration::from_millis(wait_ms.max(0) as u64)
            }
        };
        if wait.is_zero() { Ok(()) } else { Err(Refused::Wait(wait)) }
    }

    /// Counts one failed attempt against `key`. A shared counter that cannot be written is
    /// logged: the attempt was answered already.
    pub async fn record_failure(&self, key: Key) {
        match &self.counters {
            Counters::Local(windows) => {
                let now = Instant::now();
                let mut windows = windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if windows.len() >= SWEEP_AT {
                    let window = self.limits.window;
                    windows.retain(|_, w| now.duration_since(w.started) < window);
                }
                let entry = windows.entry(key).or_insert(Window { started: now, failures: 0 });
                if now.duration_since(entry.started) >= self.limits.window {
                    *entry = Window { started: now, failures: 0 };
                }
                entry.failures = entry.failures.saturating_add(1);
            }
            Counters::Shared { store, scope, recorded, .. } => {
                let window_ms = self.limits.window.as_millis() as i64;
                let now = unix_ms(OffsetDateTime::now_utc());
                if let Err(e) = store.record_failure(&key.name(scope), now, window_ms).await {
                    tracing::error!(error = %crate::writer::error_chain(&e), "counting an identity failure failed");
                }
                if recorded.fetch_add(1, Ordering::Relaxed) % SHARED_SWEEP_EVERY == SHARED_SWEEP_EVERY - 1
                    && let Err(e) = store.sweep_failures(now - window_ms).await
                {
                    tracing::warn!(error = %crate::writer::error_chain(&e), "sweeping expired identity failures failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_refused_after_its_limit_and_others_are_not() {
        let limiter =
            IdentityLimiter::new(Limits { per_subscription: 2, per_client: 3, window: Duration::from_secs(60) });
        let sub = Key::Subscription("1234".into());
        let other = Key::Subscription("5678".into());
        limiter.record_failure(sub.clone()).await;
        assert!(limiter.check([&sub]).await.is_ok());
        limiter.record_failure(sub.clone()).await;
        let Err(Refused::Wait(wait)) = limiter.check([&sub, &other]).await else { panic!("over the limit") };
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60));
        assert!(limiter.check([&other]).await.is_ok());
    }

    #[tokio::test]
    async fn windows_expire() {
        let limiter =
            IdentityLimiter::new(Limits { per_subscription: 1, per_client: 1, window: Duration::from_millis(1) });
        let key = Key::Client(IpAddr::from([127, 0, 0, 1]));
        limiter.record_failure(key.clone()).await;
        std::thread::sleep(Duration::from_millis(5));
        assert!(limiter.check([&key]).await.is_ok());
    }
}
