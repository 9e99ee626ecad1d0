//! Limits on failed identity attempts, per subscription and per client, so that nobody can find
//! a meter serial by guessing; the console's sign-in uses a second limiter of the same kind, per
//! username and per client, against password guessing.
//!
//! A key has a few free tries; past them, each try must wait after the last failure, and the wait
//! doubles with each further failure up to the length of a window (30 s, 1, 2, 4, 8 min, then
//! 15 min): a subscriber who mistyped their serial five times waits half a minute, not a quarter
//! of an hour, while a guesser gets nine tries in the first quarter hour and four an hour after
//! (a fixed window gave twenty an hour). A key's count starts again once it has had no failure for
//! a whole window. Refusals are `429` with `Retry-After`. A phone holding a device token claims
//! no serial, so it is never slowed by other people's failures (`http.rs`).
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

use std::collections::{HashMap, HashSet};
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
    /// A browser a staff member signed in from before, by its cookie's hash.
    Browser(String),
    Client(IpAddr),
}

impl Key {
    /// The key's row name in the shared table, within a limiter's scope.
    fn name(&self, scope: &str) -> String {
        match self {
            Self::Subscription(s) => format!("{scope}/subscription/{s}"),
            Self::Operator(o) => format!("{scope}/operator/{o}"),
            Self::Browser(b) => format!("{scope}/browser/{b}"),
            Self::Client(ip) => format!("{scope}/client/{ip}"),
        }
    }
}

/// How many failures each kind of key has free, and how the waits grow past them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Free failures per subscription, or per username for the console's sign-in.
    pub per_subscription: u32,
    /// Free failures per client.
    pub per_client: u32,
    /// The wait after the first failure past the free ones; it doubles with each further one.
    pub first_delay: Duration,
    /// The longest wait, and the quiet time after which a key's count starts again.
    pub window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_subscription: 5,
            per_client: 20,
            first_delay: Duration::from_secs(30),
            window: Duration::from_secs(15 * 60),
        }
    }
}

impl Limits {
    /// How long after its last failure a key with `failures` of them, `free` of which were free,
    /// waits for its next try.
    pub fn delay(&self, free: u32, failures: u32) -> Duration {
        if failures < free {
            return Duration::ZERO;
        }
        let doublings = (failures - free).min(20);
        self.first_delay.saturating_mul(1 << doublings).min(self.window)
    }
}

/// Why a request may not go on.
#[derive(Debug)]
pub enum Refused {
    /// A key used up its tries: wait this long.
    Wait(Duration),
    /// The shared counters could not be read; the request is refused rather than let through
    /// uncounted. (Shared by the checks that one failed read was for.)
    Store(Arc<StoreError>),
}

/// One key in this process: its failures since it was last quiet for a window, the last of them,
/// and the tries reserved and not yet judged.
struct Window {
    last: Instant,
    failures: u32,
    in_flight: u32,
}

/// This process's counters. On SQLite they are all there are; on PostgreSQL they hold this
/// instance's tries in flight and its own failures, beside the shared rows.
struct Local {
    windows: HashMap<Key, Window>,
    /// Quiet keys are swept at most this often once there are many, so that a flood of
    /// keys costs one sweep a second, not one per failure.
    next_sweep: Instant,
}

impl Local {
    /// Forgets quiet keys, then keys with one failure, two, … (never one with tries in flight,
    /// nor one past its free tries, whose waits are what hold a guesser back) until at most
    /// `target` are left or none more may go. What it costs: a key forgotten with `n` failures
    /// below its free ones gets those `n` tries again, and an attacker must fail on as many new
    /// keys as it freed (a quarter of the table, 100,000) for each such forgetting. The most
    /// failures a forgotten key had.
    fn make_room(&mut self, now: Instant, window: Duration, target: usize, free: impl Fn(&Key) -> u32) -> u32 {
        self.windows.retain(|_, w| w.in_flight > 0 || now.duration_since(w.last) < window);
        let ceiling = self.windows.keys().map(&free).max().unwrap_or(0);
        let mut most = 0;
        while self.windows.len() > target && most + 1 < ceiling {
            most += 1;
            self.windows.retain(|key, w| w.in_flight > 0 || w.failures > most || w.failures >= free(key));
        }
        most
    }
}

/// The counters in the database, for instances that share it.
struct Shared {
    store: Arc<dyn Store>,
    scope: &'static str,
    recorded: AtomicU64,
    reads: OnceLock<mpsc::Sender<Read>>,
}

/// One check of the shared counters, waiting to be read.
struct Read {
    names: Vec<String>,
    /// Keys whose last failure came at or before this are quiet for this check.
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
                        .filter(|(_, last_ms, _)| *last_ms > read.since_ms)
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
///
/// A try is reserved before it is judged ([`IdentityLimiter::reserve`]), under the same lock that
/// counts failures: a key with `f` of its `limit` free failures used and `r` tries in flight admits
/// at most `limit - f - r` more, and past its free tries one at a time once its wait is over, so a
/// burst of parallel guesses gets no more answers than that, however fast it comes.
/// A try that fails becomes a failure ([`Tries::failed`]); one that succeeds is released when its
/// [`Tries`] is dropped. Across PostgreSQL instances the failures are shared and the tries in
/// flight are each instance's own: a burst spread over `n` instances gets at most `n` times the
/// limit in its first moment, and the limit after.
pub struct IdentityLimiter {
    limits: Limits,
    /// The most keys kept in memory ([`MAX_KEYS`]; smaller in tests).
    max_keys: usize,
    local: Mutex<Local>,
    shared: Option<Shared>,
    /// Woken whenever tries are judged, for the requests waiting for room.
    released: tokio::sync::Notify,
}

/// Keys kept in memory before quiet ones are swept.
const SWEEP_AT: usize = 100_000;
/// The most windows kept. Past it (an attack on the limiter itself, from more addresses than any
/// one province has), the keys that are not holding anyone back are forgotten, those with the
/// fewest failures first ([`Local::make_room`]); only when every key is past its free tries is a
/// try on a new key refused. Refusing new keys outright, as before, let a flood of junk keys
/// lock every new phone out (`cargo xtask siege --seconds 60` on SQLite filled the table in under
/// a minute, and a new phone's verification got 429).
const MAX_KEYS: usize = 400_000;
/// Shared rows: quiet keys are deleted after this many failures recorded by an instance.
const SHARED_SWEEP_EVERY: u64 = 1_000;

/// The longest a request waits for tries in flight on its keys to be judged.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Why tries could not be reserved now.
enum Room {
    /// Failures used up a key's room for now: wait this long.
    None(Duration),
    /// Tries being judged hold the room: their outcome decides.
    Busy,
}

/// Tries reserved for one request's keys; released when dropped, counted by [`Tries::failed`].
#[must_use = "tries are released when dropped"]
pub struct Tries<'a> {
    limiter: &'a IdentityLimiter,
    held: Vec<(Key, u32)>,
}

impl IdentityLimiter {
    /// Counters in this process's memory.
    pub fn new(limits: Limits) -> Self {
        let local = Local { windows: HashMap::new(), next_sweep: Instant::now() };
        Self {
            limits,
            max_keys: MAX_KEYS,
            local: Mutex::new(local),
            shared: None,
            released: tokio::sync::Notify::new(),
        }
    }

    /// Counters where `store` says every instance can see them: in the database when several
    /// instances may share it, in memory otherwise. `scope` keeps limiters apart in the table.
    pub fn for_store(limits: Limits, store: &Arc<dyn Store>, scope: &'static str) -> Self {
        let mut limiter = Self::new(limits);
        if store.shared_by_instances() {
            limiter.shared =
                Some(Shared { store: store.clone(), scope, recorded: AtomicU64::new(0), reads: OnceLock::new() });
        }
        limiter
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn limit(&self, key: &Key) -> u32 {
        match key {
            Key::Subscription(_) | Key::Operator(_) | Key::Browser(_) => self.limits.per_subscription,
            Key::Client(_) => self.limits.per_client,
        }
    }

    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The shared failures of `keys` not yet quiet: (key name, last failure, failures).
    async fn shared_failures(&self, shared: &Shared, keys: &[(Key, u32)]) -> Result<Vec<FailureWindow>, Refused> {
        let names: Vec<String> = keys.iter().map(|(k, _)| k.name(shared.scope)).collect();
        let window_ms = self.limits.window.as_millis() as i64;
        let now = unix_ms(OffsetDateTime::now_utc());
        // The reader starts with the first check, on the runtime that serves the checks.
        let reader = shared.reads.get_or_init(|| {
            let (queue, waiting) = mpsc::channel(READ_QUEUE);
            tokio::spawn(read_windows(shared.store.clone(), waiting));
            queue
        });
        let stopped = || Refused::Store(Arc::new(StoreError::Unavailable("the limits' reader stopped".into())));
        let (reply, rows) = oneshot::channel();
        reader.send(Read { names, since_ms: now - window_ms, reply }).await.map_err(|_| stopped())?;
        rows.await.map_err(|_| stopped())?.map_err(Refused::Store)
    }

    /// Reserves `n` tries for each `(key, n)`. A key whose failures leave no room now refuses them
    /// all with the longest wait among such keys; more than one try on a key past its free ones
    /// waits until the key is quiet. A key whose room is taken by tries still being
    /// judged makes the request wait its turn (at most [`QUEUE_WAIT`]): honest requests that
    /// arrive together are judged a few at a time, a burst of guesses meets the limit. A key
    /// listed twice counts both.
    pub async fn reserve(&self, wanted: &[(Key, u32)]) -> Result<Tries<'_>, Refused> {
        let shared_rows = match &self.shared {
            Some(shared) if !wanted.is_empty() => self.shared_failures(shared, wanted).await?,
            _ => Vec::new(),
        };
        let deadline = Instant::now() + QUEUE_WAIT;
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            match self.try_reserve(wanted, &shared_rows) {
                Ok(tries) => return Ok(tries),
                Err(Room::Busy) if Instant::now() < deadline => {
                    let _ = tokio::time::timeout_at(deadline.into(), released).await;
                }
                Err(Room::Busy) => return Err(Refused::Wait(Duration::from_secs(1))),
                Err(Room::None(wait)) => return Err(Refused::Wait(wait)),
            }
        }
    }

    fn try_reserve(&self, wanted: &[(Key, u32)], shared_rows: &[FailureWindow]) -> Result<Tries<'_>, Room> {
        let now_ms = unix_ms(OffsetDateTime::now_utc());
        let now = Instant::now();
        let window = self.limits.window;
        let mut local = self.local();
        if local.windows.len() >= SWEEP_AT && now >= local.next_sweep {
            local.windows.retain(|_, w| w.in_flight > 0 || now.duration_since(w.last) < window);
            local.next_sweep = now + Duration::from_secs(1);
        }
        let mut wait = Duration::ZERO;
        let mut busy = false;
        let mut asked: HashMap<&Key, u32> = HashMap::new();
        for (key, n) in wanted {
            *asked.entry(key).or_default() += n;
        }
        let mut new_keys = 0;
        for (&key, &n) in &asked {
            // Failures not yet quiet, and the time since the last of them.
            let (mut failures, mut since_last, in_flight) = match local.windows.get(key) {
                Some(w) if now.duration_since(w.last) < window => (w.failures, now.duration_since(w.last), w.in_flight),
                Some(w) => (0, window, w.in_flight),
                None => {
                    new_keys += 1;
                    (0, window, 0)
                }
            };
            if let Some(shared) = &self.shared {
                let name = key.name(shared.scope);
                if let Some((_, last_ms, shared_failures)) = shared_rows.iter().find(|row| row.0 == name)
                    && *shared_failures > failures
                {
                    failures = *shared_failures;
                    since_last = Duration::from_millis((now_ms - last_ms).max(0) as u64);
                }
            }
            let free = self.limit(key);
            if failures.saturating_add(n) <= free {
                if failures.saturating_add(in_flight).saturating_add(n) > free {
                    busy = true;
                }
            } else if failures < free || n > 1 {
                // More tries at once than the key has room for: not until it is quiet.
                wait = wait.max(window.saturating_sub(since_last).max(Duration::from_secs(1)));
            } else {
                let delay = self.limits.delay(free, failures);
                if since_last < delay {
                    wait = wait.max((delay - since_last).max(Duration::from_secs(1)));
                } else if in_flight > 0 {
                    busy = true;
                }
            }
        }
        if wait.is_zero() && local.windows.len() + new_keys > self.max_keys {
            let before = local.windows.len();
            let most = local.make_room(now, window, self.max_keys * 3 / 4, |key| self.limit(key));
            tracing::warn!(
                forgotten = before - local.windows.len(),
                most_failures = most,
                "identity limits full: forgot the keys with the fewest failures"
            );
            if local.windows.len() + new_keys > self.max_keys {
                tracing::warn!(keys = local.windows.len(), "identity limits full; refusing tries on new keys");
                wait = Duration::from_secs(60);
            }
        }
        if !wait.is_zero() {
            return Err(Room::None(wait));
        }
        if busy {
            return Err(Room::Busy);
        }
        for (&key, &n) in &asked {
            let w = local.windows.entry(key.clone()).or_insert(Window { last: now, failures: 0, in_flight: 0 });
            w.in_flight += n;
        }
        let held = asked.into_iter().map(|(k, n)| (k.clone(), n)).collect();
        Ok(Tries { limiter: self, held })
    }
}

/// The meters a request claims by their serials, for the identity limits: each distinct
/// (subscription, serial) is one try of the client's, and one of the subscription's when it is a
/// valid number (a key is never made of junk). The same meter claimed by many items of a batch is
/// one try: they all succeed or all fail together.
#[derive(Default)]
pub struct Claims<'a> {
    by_subscription: HashMap<&'a str, (bool, HashSet<&'a str>)>,
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl<'a> Claims<'a> {
    pub fn claim(&mut self, subscription: &'a str, valid: bool, serial: &'a str) {
        self.by_subscription.entry(subscription).or_insert((valid, HashSet::new())).1.insert(serial);
    }

    /// The tries to reserve for these claims, the client's among them.
    pub fn tries(&self, client: &Key) -> Vec<(Key, u32)> {
        let total: usize = self.by_subscription.values().map(|(_, serials)| serials.len()).sum();
        if total == 0 {
            return Vec::new();
        }
        let mut wanted = vec![(client.clone(), count(total))];
        for (subscription, (valid, serials)) in &self.by_subscription {
            if *valid {
                wanted.push((Key::Subscription((*subscription).to_owned()), count(serials.len())));
            }
        }
        wanted
    }
}

impl Tries<'_> {
    /// Counts the claims that failed: each distinct one is a failure of the client's and of its
    /// subscription's.
    pub async fn failed_claims(&mut self, client: &Key, failed: &Claims<'_>) {
        for (key, n) in failed.tries(client) {
            self.failed(&key, n).await;
        }
    }

    /// Counts `n` of the tries reserved for `key` as failures (at most as many as were reserved).
    /// A shared counter that cannot be written is logged: the try was answered already.
    pub async fn failed(&mut self, key: &Key, n: u32) {
        let Some(held) = self.held.iter_mut().find(|(k, _)| k == key) else { return };
        let n = n.min(held.1);
        if n == 0 {
            return;
        }
        held.1 -= n;
        let limiter = self.limiter;
        {
            let now = Instant::now();
            let mut local = limiter.local();
            if let Some(w) = local.windows.get_mut(key) {
                if now.duration_since(w.last) >= limiter.limits.window {
                    w.failures = 0;
                }
                w.last = now;
                w.failures = w.failures.saturating_add(n);
                w.in_flight = w.in_flight.saturating_sub(n);
            }
        }
        limiter.released.notify_waiters();
        if let Some(shared) = &limiter.shared {
            let window_ms = limiter.limits.window.as_millis() as i64;
            let now = unix_ms(OffsetDateTime::now_utc());
            for _ in 0..n {
                if let Err(e) = shared.store.record_failure(&key.name(shared.scope), now, window_ms).await {
                    tracing::error!(error = %crate::writer::error_chain(&e), "counting an identity failure failed");
                }
            }
            if shared.recorded.fetch_add(u64::from(n), Ordering::Relaxed) % SHARED_SWEEP_EVERY < u64::from(n)
                && let Err(e) = shared.store.sweep_failures(now - window_ms).await
            {
                tracing::warn!(error = %crate::writer::error_chain(&e), "sweeping quiet identity failures failed");
            }
        }
    }
}

impl Drop for Tries<'_> {
    /// The tries not counted as failures succeeded: they free their room.
    fn drop(&mut self) {
        {
            let mut local = self.limiter.local();
            for (key, n) in &self.held {
                if let Some(w) = local.windows.get_mut(key) {
                    w.in_flight = w.in_flight.saturating_sub(*n);
                }
            }
        }
        self.limiter.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits of half the window past the free tries.
    fn limits(per_subscription: u32, per_client: u32, window: Duration) -> Limits {
        Limits { per_subscription, per_client, first_delay: window / 2, window }
    }

    /// A flood of keys fills the table: the keys with the fewest failures are forgotten to make
    /// room, a new phone still gets its try, and a key whose guesser is held back is kept.
    #[tokio::test]
    async fn a_full_table_forgets_the_keys_that_hold_no_one_back() {
        let mut limiter = IdentityLimiter::new(Limits::default());
        limiter.max_keys = 1_000;
        let target = Key::Subscription("target".into());
        for _ in 0..5 {
            limiter.reserve(&[(target.clone(), 1)]).await.expect("a free try").failed(&target, 1).await;
        }
        let partly = Key::Subscription("partly".into());
        for _ in 0..3 {
            limiter.reserve(&[(partly.clone(), 1)]).await.expect("a free try").failed(&partly, 1).await;
        }
        for i in 0..2_000 {
            let junk = Key::Client(std::net::IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]));
            limiter.reserve(&[(junk.clone(), 1)]).await.expect("room was made").failed(&junk, 1).await;
        }
        assert!(limiter.local().windows.len() <= 1_000);
        let phone = Key::Subscription("new phone".into());
        drop(limiter.reserve(&[(phone, 1)]).await.expect("a new key still gets its try"));
        assert!(
            matches!(limiter.reserve(&[(target.clone(), 1)]).await, Err(Refused::Wait(_))),
            "the guessed key is still held back"
        );
        assert_eq!(limiter.local().windows.get(&partly).map(|w| w.failures), Some(3), "three failures outrank one");
    }

    #[test]
    fn waits_double_past_the_free_tries_up_to_the_window() {
        let limits = Limits::default();
        let waits: Vec<u64> = (4..12).map(|failures| limits.delay(5, failures).as_secs()).collect();
        assert_eq!(waits, [0, 30, 60, 120, 240, 480, 900, 900]);
        assert_eq!(limits.delay(5, u32::MAX), limits.window);
    }

    #[tokio::test]
    async fn past_the_free_tries_one_try_waits_for_its_turn() {
        let limits = Limits {
            per_subscription: 2,
            per_client: 100,
            first_delay: Duration::from_millis(40),
            window: Duration::from_secs(60),
        };
        let limiter = IdentityLimiter::new(limits);
        let sub = Key::Subscription("1234".into());
        for _ in 0..2 {
            limiter.reserve(&[(sub.clone(), 1)]).await.expect("a free try").failed(&sub, 1).await;
        }
        let Err(Refused::Wait(wait)) = limiter.reserve(&[(sub.clone(), 1)]).await else { panic!("waits") };
        assert_eq!(wait, Duration::from_secs(1), "a wait under a second is rounded up for Retry-After");
        tokio::time::sleep(Duration::from_millis(50)).await;
        // One try, not two: past the free tries a batch waits until the key is quiet.
        assert!(
            matches!(limiter.reserve(&[(sub.clone(), 2)]).await, Err(Refused::Wait(w)) if w > Duration::from_secs(50))
        );
        let mut third = limiter.reserve(&[(sub.clone(), 1)]).await.expect("its turn came");
        // While it is judged, another waits for its outcome.
        let one = [(sub.clone(), 1)];
        let fourth = limiter.reserve(&one);
        let judge = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            third.failed(&sub, 1).await;
            drop(third);
        };
        let (fourth, ()) = tokio::join!(fourth, judge);
        assert!(matches!(fourth, Err(Refused::Wait(_))), "the third failed: the next waits twice as long");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(limiter.reserve(&[(sub.clone(), 1)]).await.is_err(), "80 ms after the third failure, not 50");
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(limiter.reserve(&[(sub, 1)]).await.is_ok());
    }

    #[tokio::test]
    async fn a_key_is_refused_after_its_limit_and_others_are_not() {
        let limiter = IdentityLimiter::new(limits(2, 3, Duration::from_secs(60)));
        let sub = Key::Subscription("1234".into());
        let other = Key::Subscription("5678".into());
        for _ in 0..2 {
            let mut tries = limiter.reserve(&[(sub.clone(), 1)]).await.expect("room");
            tries.failed(&sub, 1).await;
        }
        let Err(Refused::Wait(wait)) = limiter.reserve(&[(sub.clone(), 1), (other.clone(), 1)]).await else {
            panic!("over the limit")
        };
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30), "{wait:?}");
        assert!(limiter.reserve(&[(other, 1)]).await.is_ok());
    }

    #[tokio::test]
    async fn tries_in_flight_count_before_they_are_judged() {
        let limiter = IdentityLimiter::new(limits(3, 100, Duration::from_secs(60)));
        let sub = Key::Subscription("1234".into());
        // Three guesses arrive together: all reserved, none judged yet; a fourth has no room.
        let held: Vec<Tries<'_>> = {
            let mut held = Vec::new();
            for _ in 0..3 {
                held.push(limiter.reserve(&[(sub.clone(), 1)]).await.expect("room"));
            }
            held
        };
        // A fourth waits for them: when they fail, it is refused without being judged.
        let one = [(sub.clone(), 1)];
        let fourth = limiter.reserve(&one);
        let judge = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            for mut tries in held {
                tries.failed(&sub, 1).await;
            }
        };
        let (fourth, ()) = tokio::join!(fourth, judge);
        assert!(matches!(fourth, Err(Refused::Wait(w)) if w > Duration::from_secs(25)));
    }

    #[tokio::test]
    async fn tries_that_succeed_free_their_room_for_those_waiting() {
        let limiter = IdentityLimiter::new(limits(3, 100, Duration::from_secs(60)));
        let sub = Key::Subscription("1234".into());
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(limiter.reserve(&[(sub.clone(), 1)]).await.expect("room"));
        }
        let one = [(sub.clone(), 1)];
        let fourth = limiter.reserve(&one);
        let judge = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(held);
        };
        let (fourth, ()) = tokio::join!(fourth, judge);
        drop(fourth.expect("room once the others succeeded"));
        // One batch asking for more than the limit gets none.
        assert!(matches!(limiter.reserve(&[(sub.clone(), 4)]).await, Err(Refused::Wait(_))));
        assert!(limiter.reserve(&[(sub.clone(), 3)]).await.is_ok());
    }

    #[tokio::test]
    async fn windows_expire() {
        let limiter = IdentityLimiter::new(limits(1, 1, Duration::from_millis(1)));
        let key = Key::Client(IpAddr::from([127, 0, 0, 1]));
        let mut tries = limiter.reserve(&[(key.clone(), 1)]).await.expect("room");
        tries.failed(&key, 1).await;
        drop(tries);
        std::thread::sleep(Duration::from_millis(5));
        assert!(limiter.reserve(&[(key, 1)]).await.is_ok());
    }
}
