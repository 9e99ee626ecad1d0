//! Limits on failed identity attempts, per subscription and per client, so that nobody can find
//! a meter serial by guessing; the console's sign-in uses a second limiter of the same kind, per
//! username and per client, against password guessing. Failures are counted in a fixed window; a key over its limit is
//! refused with `429` and `Retry-After` until its window ends.
//!
//! The counters live in this process: one `kontor serve` per SQLite database. Running several
//! instances on one PostgreSQL needs them in the database (tracked in the multi-instance issue).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whose failures are counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Subscription(String),
    /// A console username, as typed.
    Operator(String),
    Client(IpAddr),
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

struct Window {
    started: Instant,
    failures: u32,
}

/// The failure counters.
pub struct IdentityLimiter {
    limits: Limits,
    windows: Mutex<HashMap<Key, Window>>,
}

/// Entries kept before expired windows are swept.
const SWEEP_AT: usize = 100_000;

impl IdentityLimiter {
    pub fn new(limits: Limits) -> Self {
        Self { limits, windows: Mutex::new(HashMap::new()) }
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

    /// `Err(retry_after)` when any of `keys` has used up its failures.
    pub fn check<'a>(&self, keys: impl IntoIterator<Item = &'a Key>) -> Result<(), Duration> {
        let now = Instant::now();
        let windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut wait = Duration::ZERO;
        for key in keys {
            if let Some(w) = windows.get(key) {
                let age = now.duration_since(w.started);
                if age < self.limits.window && w.failures >= self.limit(key) {
                    wait = wait.max(self.limits.window - age);
                }
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// Counts one failed attempt against `key`.
    pub fn record_failure(&self, key: Key) {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_refused_after_its_limit_and_others_are_not() {
        let limiter =
            IdentityLimiter::new(Limits { per_subscription: 2, per_client: 3, window: Duration::from_secs(60) });
        let sub = Key::Subscription("1234".into());
        let other = Key::Subscription("5678".into());
        limiter.record_failure(sub.clone());
        assert!(limiter.check([&sub]).is_ok());
        limiter.record_failure(sub.clone());
        let wait = limiter.check([&sub, &other]).expect_err("over the limit");
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60));
        assert!(limiter.check([&other]).is_ok());
    }

    #[test]
    fn windows_expire() {
        let limiter =
            IdentityLimiter::new(Limits { per_subscription: 1, per_client: 1, window: Duration::from_millis(1) });
        let key = Key::Client(IpAddr::from([127, 0, 0, 1]));
        limiter.record_failure(key.clone());
        std::thread::sleep(Duration::from_millis(5));
        assert!(limiter.check([&key]).is_ok());
    }
}
