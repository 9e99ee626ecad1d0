//! Receiving SMS from gateways that keep them to be fetched (`--sms-pull`): a [`Puller`] on
//! every instance reads the gateway's inbox every few seconds through its adapter
//! ([`crate::gateways::InboxReader`]), stores what it read (`store::SmsInbox`) and then judges
//! each stored message exactly as the webhook judges a pushed one (`sms::receive`): same
//! declaration, same reply through the queue.
//!
//! Nothing read is lost on the way:
//! - a message is stored before it is judged, and the read that took it moves the cursor in the
//!   same transaction, so a crash after the store means it is judged later (by any instance);
//! - when storing fails (the database is down) the messages are kept in memory and stored before
//!   anything new is read, because some inboxes (SMS.ir, Magfa) hand a message out once only;
//! - judging that fails for want of the database or the writer is tried again, with waits that
//!   double up to [`MAX_WAIT`], for as long as it takes;
//! - one instance at a time reads the inbox (a lease on the gateway's cursor row), and a message
//!   read twice is stored once (its id is unique) and is one declaration (its id is the
//!   declaration's message id).
//!
//! The window left: a process killed between the gateway's answer and the commit of what it
//! carried loses that read's messages on the gateways that hand them out once.

use std::sync::Arc;
use std::time::Duration;

use shared::wire::SmsInbound;
use tokio::sync::watch;

use crate::AppState;
use crate::gateways::InboxReader;
use crate::store::{ClaimedMessage, Judged, PulledMessage};

/// How long reading the inbox is an instance's once taken: more than one read may take (the
/// adapters give up on a request after 10 s; IPPanel reads a few pages), and renewed by every read.
const HOLD: Duration = Duration::from_secs(60);
/// How long a stored message is an instance's to judge.
const LEASE: Duration = Duration::from_secs(60);
/// Messages judged per claim.
const CLAIM: u32 = 16;
/// The longest wait before judging a message again.
pub const MAX_WAIT: Duration = Duration::from_secs(5 * 60);

/// The task that reads one gateway's inbox and judges what it read: one per instance.
pub struct Puller {
    pub state: AppState,
    pub reader: Arc<dyn InboxReader>,
    /// How often the inbox is read.
    pub every: Duration,
    /// This instance's name on the gateway's lease.
    pub holder: String,
}

impl Puller {
    /// Reads and judges until `stop` says so, then lets go of the inbox.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut unsaved = Unsaved::default();
        loop {
            self.read(&mut unsaved).await;
            while self.judge().await == CLAIM {}
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(self.every) => {}
                _ = stop.changed() => break,
            }
        }
        if !unsaved.messages.is_empty() {
            tracing::error!(
                messages = unsaved.messages.len(),
                gateway = self.reader.name(),
                "stopping with sms read from the gateway that could not be stored"
            );
        }
        let _ = self.state.store.inbox().release_pull(self.reader.name(), &self.holder).await;
    }

    /// Stores what an earlier read could not, then, while this instance holds the inbox, reads
    /// it and stores what came.
    async fn read(&self, unsaved: &mut Unsaved) {
        let inbox = self.state.store.inbox();
        let gateway = self.reader.name();
        if !unsaved.messages.is_empty() && !self.keep(unsaved).await {
            return;
        }
        let now = crate::store::now_ms();
        let cursor = match inbox.hold_pull(gateway, &self.holder, now, now + HOLD.as_millis() as i64).await {
            Ok(Some(cursor)) => cursor,
            Ok(None) => return, // another instance reads it
            Err(e) => {
                tracing::warn!(error = %crate::writer::error_chain(&e), gateway, "the sms inbox could not be taken");
                return;
            }
        };
        match self.reader.fetch(cursor.as_deref()).await {
            Ok(fetched) => {
                if fetched.messages.is_empty() && (fetched.cursor.is_none() || fetched.cursor == cursor) {
                    return;
                }
                *unsaved = Unsaved { messages: fetched.messages, cursor: fetched.cursor };
                self.keep(unsaved).await;
            }
            Err(e) => tracing::warn!(error = %e, gateway, "the gateway's sms inbox could not be read"),
        }
    }

    /// Stores `unsaved`; says whether it could (and then empties it).
    async fn keep(&self, unsaved: &mut Unsaved) -> bool {
        let gateway = self.reader.name();
        let now = crate::store::now_ms();
        let kept = self
            .state
            .store
            .inbox()
            .keep_pulled(gateway, &self.holder, &unsaved.messages, unsaved.cursor.as_deref(), now)
            .await;
        match kept {
            Ok(new) => {
                if new > 0 {
                    tracing::info!(new, gateway, "sms taken from the gateway's inbox");
                }
                *unsaved = Unsaved::default();
                true
            }
            Err(e) => {
                tracing::error!(error = %crate::writer::error_chain(&e), gateway, messages = unsaved.messages.len(),
                    "sms read from the gateway could not be stored; kept in memory and stored before the next read");
                false
            }
        }
    }

    /// Judges one claim of stored messages; answers how many it claimed.
    async fn judge(&self) -> u32 {
        let inbox = self.state.store.inbox();
        let now = crate::store::now_ms();
        let claimed = match inbox.claim_pulled(now, now + LEASE.as_millis() as i64, CLAIM).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %crate::writer::error_chain(&e), "stored sms could not be claimed");
                return 0;
            }
        };
        let count = claimed.len() as u32;
        for message in claimed {
            let (error, permanent) = match self.judge_one(&message).await {
                Ok(()) => (None, false),
                Err((error, permanent)) => (Some(error), permanent),
            };
            let now = crate::store::now_ms();
            let outcome = match &error {
                None => Judged::Done,
                Some(error) if permanent => {
                    tracing::error!(error, id = message.id, "a stored sms cannot be taken; set aside");
                    Judged::Failed { error }
                }
                Some(error) => {
                    let wait = wait_after(message.attempt);
                    tracing::warn!(error, id = message.id, attempt = message.attempt, retry_in = ?wait,
                        "a stored sms could not be judged; will retry");
                    Judged::Again { error, at_ms: now + wait.as_millis() as i64 }
                }
            };
            if let Err(e) = inbox.judged(message.id, &outcome, now).await {
                // Its lease runs out and it is judged again: a replay, the same declaration.
                tracing::warn!(error = %crate::writer::error_chain(&e), "a stored sms's outcome was not recorded");
            }
        }
        count
    }

    /// Judges one stored message as the webhook would; the error says whether trying again can help.
    async fn judge_one(&self, claimed: &ClaimedMessage) -> Result<(), (String, bool)> {
        let Some(config) = self.state.sms.as_ref() else {
            return Err(("the SMS channel is not configured".to_owned(), false));
        };
        let PulledMessage { message_id, sender, recipient, body, received_at } = claimed.message.clone();
        let message = SmsInbound { message_id, from: sender, to: recipient, text: body, received_at };
        match crate::sms::receive(&self.state, config, message).await {
            Ok(_) => Ok(()),
            Err(e) => Err((e.summary(), e.status().is_client_error())),
        }
    }
}

/// Messages read from the gateway but not stored yet, with the cursor that read gave.
#[derive(Default)]
struct Unsaved {
    messages: Vec<PulledMessage>,
    cursor: Option<String>,
}

/// The wait before judging a message again after failed attempt `attempt` (from 1): one second,
/// doubling, at most [`MAX_WAIT`].
fn wait_after(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(16)).min(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    #[test]
    fn waits_double_up_to_five_minutes() {
        assert_eq!(super::wait_after(1).as_secs(), 1);
        assert_eq!(super::wait_after(4).as_secs(), 8);
        assert_eq!(super::wait_after(9).as_secs(), 256);
        assert_eq!(super::wait_after(10), super::MAX_WAIT);
        assert_eq!(super::wait_after(u32::MAX), super::MAX_WAIT);
    }
}
