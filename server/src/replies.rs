//! Sending replies to SMS senders. Every reply goes through the durable queue
//! (`store::ReplyQueue`): [`queue`] puts it there once per message it answers and wakes the
//! [`Outbox`], a task on every instance that claims due replies, hands them to the configured
//! [`ReplySender`] (a gateway adapter from `crate::gateways`, or [`LogSender`]) and records the
//! outcome: sent, due again after a doubling wait, or failed for good (shown in the console).
//!
//! Sending happens after the declaration is stored and never decides its fate. A send cut short
//! by a crash is sent again after its lease: a subscriber may rarely get a reply twice, never none.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, watch};

use crate::store::{Attempted, NewReply, Store, StoreError};

/// Why a reply was not taken by the gateway. Never names the URL: a gateway's URL can carry its
/// API key, the recipient and the text, and this goes to the logs and the console.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the gateway could not be reached: {0}")]
    Unreachable(reqwest::Error),
    #[error("the gateway answered HTTP {0}")]
    Refused(reqwest::StatusCode),
    /// The gateway's own result code, from its answer's body (often inside an HTTP 200).
    #[error("the gateway refused it: {code} {message}")]
    Rejected { code: String, message: String, permanent: bool },
    #[error("the gateway's answer could not be read: {0}")]
    Unreadable(String),
}

impl From<reqwest::Error> for SendError {
    fn from(e: reqwest::Error) -> Self {
        Self::Unreachable(e.without_url())
    }
}

impl SendError {
    /// Whether trying again cannot help: the request itself was refused (a malformed number, a
    /// text the gateway will not take). A wrong key, no credit, a limit or an outage can be
    /// mended, so those are retried until the attempts run out.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Refused(status) => matches!(status.as_u16(), 400 | 404 | 413 | 422),
            Self::Rejected { permanent, .. } => *permanent,
            Self::Unreachable(_) | Self::Unreadable(_) => false,
        }
    }
}

/// A phone number as the logs may show it: the last four digits.
pub fn masked(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    let shown: String = digits[digits.len().saturating_sub(4)..].iter().collect();
    format!("…{shown}")
}

/// Hands one text to a gateway; answers the gateway's id for the message, when it gives one.
#[async_trait]
pub trait ReplySender: Send + Sync + 'static {
    async fn send(&self, to: &str, text: &str) -> Result<Option<String>, SendError>;
}

/// Writes replies to the log; for a gateway that replies from the webhook's answer.
pub struct LogSender;

#[async_trait]
impl ReplySender for LogSender {
    async fn send(&self, to: &str, text: &str) -> Result<Option<String>, SendError> {
        tracing::info!(to = %masked(to), chars = text.chars().count(), "sms reply (no gateway configured)");
        Ok(None)
    }
}

/// How often and how patiently a reply is retried: `attempts` in all, waiting `first_delay`
/// after the first failure and twice as long after each further one, at most `max_delay`.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Retry {
    /// Twelve attempts over about an hour and three quarters (5 s, 10 s, … then every 30 min).
    fn default() -> Self {
        Self { attempts: 12, first_delay: Duration::from_secs(5), max_delay: Duration::from_secs(30 * 60) }
    }
}

impl Retry {
    /// The wait after failed attempt `attempt` (from 1).
    pub fn delay(&self, attempt: u32) -> Duration {
        let doubled = self.first_delay.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        doubled.min(self.max_delay)
    }
}

/// Queues `text` for `to` as the reply that answers `answers` (once, however often it is
/// queued) and wakes the sender. A reply that cannot be queued is logged: the declaration it
/// answers is stored already, and the webhook's answer carries the same text.
pub async fn queue(store: &dyn Store, wake: &Notify, answers: &str, to: &str, text: &str) -> Result<(), StoreError> {
    let now_ms = crate::store::now_ms();
    store.replies().queue_reply(&NewReply { answers, recipient: to, body: text, now_ms }).await?;
    wake.notify_one();
    Ok(())
}

/// How long a claimed reply is this instance's: longer than a send may take (the adapters give
/// up after 10 s), so that another instance takes it over only from one that stopped.
const LEASE: Duration = Duration::from_secs(60);
/// How often the queue is looked at when nothing wakes the sender.
const POLL: Duration = Duration::from_secs(2);
/// Replies claimed at once.
const CLAIM: u32 = 16;

/// The sending task: one per instance.
pub struct Outbox {
    pub store: Arc<dyn Store>,
    pub sender: Arc<dyn ReplySender>,
    pub retry: Retry,
    pub wake: Arc<Notify>,
}

impl Outbox {
    /// Sends due replies until `stop` says so, finishing the one in hand.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            let (claimed, next_retry) = self.round().await;
            if *stop.borrow() {
                return;
            }
            if claimed < CLAIM {
                // A retry this instance scheduled sooner than the next poll is not waited past.
                let wait = next_retry.map_or(POLL, |retry| retry.min(POLL));
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }

    /// Claims and sends one round of due replies; answers how many it claimed and the soonest
    /// retry it scheduled.
    async fn round(&self) -> (u32, Option<Duration>) {
        let now = crate::store::now_ms();
        let queue = self.store.replies();
        let claimed = match queue.claim_replies(now, now + LEASE.as_millis() as i64, CLAIM).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %crate::writer::error_chain(&e), "sms replies could not be claimed");
                return (0, None);
            }
        };
        let count = claimed.len() as u32;
        let mut next_retry: Option<Duration> = None;
        for reply in claimed {
            let result = self.sender.send(&reply.recipient, &reply.body).await;
            let now = crate::store::now_ms();
            let error = result.as_ref().err().map(ToString::to_string).unwrap_or_default();
            let outcome = match &result {
                Ok(gateway_ref) => Attempted::Sent { gateway_ref: gateway_ref.as_deref() },
                Err(e) if e.is_permanent() || reply.attempt >= self.retry.attempts => {
                    tracing::error!(error = %e, to = %masked(&reply.recipient), attempt = reply.attempt,
                        "sms reply not sent; given up (listed in the console)");
                    Attempted::Failed { error: &error }
                }
                Err(e) => {
                    let wait = self.retry.delay(reply.attempt);
                    tracing::warn!(error = %e, to = %masked(&reply.recipient), attempt = reply.attempt,
                        retry_in = ?wait, "sms reply not sent; will retry");
                    next_retry = Some(next_retry.map_or(wait, |soonest| soonest.min(wait)));
                    Attempted::Again { error: &error, at_ms: now + wait.as_millis() as i64 }
                }
            };
            if let Err(e) = queue.attempted(reply.id, &outcome, now).await {
                // The lease runs out and the reply is claimed again: at worst sent twice.
                tracing::warn!(error = %crate::writer::error_chain(&e), "an sms reply's outcome was not recorded");
            }
        }
        (count, next_retry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let retry = Retry::default();
        assert_eq!(retry.delay(1), Duration::from_secs(5));
        assert_eq!(retry.delay(2), Duration::from_secs(10));
        assert_eq!(retry.delay(9), Duration::from_secs(1280));
        assert_eq!(retry.delay(10), Duration::from_secs(1800));
        assert_eq!(retry.delay(u32::MAX), Duration::from_secs(1800), "no overflow");
        let total: Duration = (1..retry.attempts).map(|a| retry.delay(a)).sum();
        assert!(total > Duration::from_secs(90 * 60) && total < Duration::from_secs(2 * 3600), "{total:?}");
        assert_eq!(masked("+98 912 123 4567"), "…4567");
    }
}
