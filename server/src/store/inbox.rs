//! Messages taken from a gateway's inbox API ([`SmsInbox`], tables `sms_inbox` and `sms_pull`).
//!
//! Some gateways only keep received messages for Kontor to fetch (SMS.ir, Ghasedak, Magfa,
//! IPPanel), and some of those hand each message out once only. So a fetched message is stored
//! here before anything else is done with it ([`SmsInbox::keep_pulled`], durable when it
//! returns), then judged like a message pushed to the webhook by whichever instance claims it
//! ([`SmsInbox::claim_pulled`]), and marked done once its declaration is stored and its reply
//! queued. A message the gateway hands out again is one row: its id is unique.
//!
//! One instance at a time reads a gateway's inbox: [`SmsInbox::hold_pull`] takes the gateway's
//! row in `sms_pull` for a lease, with the same `UPDATE … RETURNING` whose `WHERE` repeats its
//! condition as the replies' claim (`store::replies`), so that on PostgreSQL the second of two
//! instances re-reads the row after the first one's update and finds it held. The cursor (where
//! the adapter read up to) moves in the transaction that stores the messages.

use async_trait::async_trait;
use sqlx::Row as _;

use super::StoreError;
use super::sql::{SqlStore, db};

/// A message as an inbox adapter read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledMessage {
    /// The gateway's id for it, or one derived from it, prefixed with the gateway's name
    /// (`smsir:123`): the declaration's message id.
    pub message_id: String,
    pub sender: String,
    pub recipient: Option<String>,
    pub body: String,
    /// When the gateway received it (RFC 3339), when it says.
    pub received_at: Option<String>,
}

/// A stored message claimed for judging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedMessage {
    pub id: i64,
    pub message: PulledMessage,
    /// This attempt's number, from 1.
    pub attempt: u32,
}

/// How judging a claimed message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged<'a> {
    /// Its declaration is stored (or it was refused with a reply) and its reply queued.
    Done,
    /// Not this time (the database or the writer failed): again at this time.
    Again { error: &'a str, at_ms: i64 },
    /// Never: the message itself cannot be taken (no sender to answer).
    Failed { error: &'a str },
}

/// Stored messages waiting to be judged, judged, and refused for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InboxCounts {
    pub waiting: u64,
    pub done: u64,
    pub failed: u64,
}

#[async_trait]
pub trait SmsInbox: Send + Sync {
    /// Takes (or keeps) reading `gateway`'s inbox as `holder` until `until_ms`; answers the
    /// cursor kept for it (`Some(None)` before the first read), or `None` while another holder's
    /// lease runs.
    async fn hold_pull(
        &self,
        gateway: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Option<Option<String>>, StoreError>;
    /// Lets go of `gateway`'s inbox, if `holder` has it (an instance that stops).
    async fn release_pull(&self, gateway: &str, holder: &str) -> Result<(), StoreError>;
    /// Stores fetched messages (those stored before are left as they are) and, while `holder`
    /// still holds `gateway`, moves its cursor to `cursor` when one is given, all in one
    /// transaction; answers how many were new. Durable when it returns.
    async fn keep_pulled(
        &self,
        gateway: &str,
        holder: &str,
        messages: &[PulledMessage],
        cursor: Option<&str>,
        now_ms: i64,
    ) -> Result<u64, StoreError>;
    /// Claims up to `limit` stored messages due at `now_ms` until `lease_until_ms`, oldest first.
    async fn claim_pulled(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedMessage>, StoreError>;
    /// Records how judging a claimed message went.
    async fn judged(&self, id: i64, outcome: &Judged<'_>, now_ms: i64) -> Result<(), StoreError>;
    async fn inbox_counts(&self) -> Result<InboxCounts, StoreError>;
}

#[async_trait]
impl SmsInbox for SqlStore {
    async fn hold_pull(
        &self,
        gateway: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Option<Option<String>>, StoreError> {
        sqlx::query("INSERT INTO sms_pull (gateway) VALUES ($1) ON CONFLICT (gateway) DO NOTHING")
            .bind(gateway)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        // SQLite numbers `$N` by first appearance: they appear here in order.
        let row = sqlx::query(
            "UPDATE sms_pull SET holder = $1, held_until_ms = $2 \
             WHERE gateway = $3 AND (holder IS NULL OR holder = $1 OR held_until_ms <= $4) \
             RETURNING cursor",
        )
        .bind(holder)
        .bind(until_ms)
        .bind(gateway)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|row| row.try_get::<Option<String>, _>(0)).transpose().map_err(db)
    }

    async fn release_pull(&self, gateway: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE sms_pull SET holder = NULL, held_until_ms = NULL WHERE gateway = $1 AND holder = $2")
            .bind(gateway)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn keep_pulled(
        &self,
        gateway: &str,
        holder: &str,
        messages: &[PulledMessage],
        cursor: Option<&str>,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut new = 0;
        for message in messages {
            let inserted = sqlx::query(
                "INSERT INTO sms_inbox (message_id, sender, recipient, body, received_at, fetched_at_ms, \
                   next_attempt_ms) VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (message_id) DO NOTHING",
            )
            .bind(message.message_id.as_str())
            .bind(message.sender.as_str())
            .bind(message.recipient.clone())
            .bind(message.body.as_str())
            .bind(message.received_at.clone())
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            new += inserted.rows_affected();
        }
        if let Some(cursor) = cursor {
            sqlx::query("UPDATE sms_pull SET cursor = $1 WHERE gateway = $2 AND holder = $3")
                .bind(cursor)
                .bind(gateway)
                .bind(holder)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        super::Store::sync(self).await?;
        Ok(new)
    }

    async fn claim_pulled(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedMessage>, StoreError> {
        let rows = sqlx::query(
            "UPDATE sms_inbox SET claimed_until_ms = $1, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM sms_inbox \
                 WHERE done_at_ms IS NULL AND failed_at_ms IS NULL AND next_attempt_ms <= $2 \
                   AND (claimed_until_ms IS NULL OR claimed_until_ms <= $2) \
                 ORDER BY id LIMIT $3) \
               AND done_at_ms IS NULL AND failed_at_ms IS NULL \
               AND (claimed_until_ms IS NULL OR claimed_until_ms <= $2) \
             RETURNING id, message_id, sender, recipient, body, received_at, attempts",
        )
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                Ok(ClaimedMessage {
                    id: row.try_get(0)?,
                    message: PulledMessage {
                        message_id: row.try_get(1)?,
                        sender: row.try_get(2)?,
                        recipient: row.try_get(3)?,
                        body: row.try_get(4)?,
                        received_at: row.try_get(5)?,
                    },
                    attempt: u32::try_from(row.try_get::<i64, _>(6)?).unwrap_or(u32::MAX),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(db)?;
        // In the order they were stored, which is the order they were fetched in.
        claimed.sort_by_key(|m| m.id);
        Ok(claimed)
    }

    async fn judged(&self, id: i64, outcome: &Judged<'_>, now_ms: i64) -> Result<(), StoreError> {
        let query = match outcome {
            Judged::Done => sqlx::query(
                "UPDATE sms_inbox SET done_at_ms = $1, claimed_until_ms = NULL, last_error = NULL WHERE id = $2",
            )
            .bind(now_ms),
            Judged::Again { error, at_ms } => sqlx::query(
                "UPDATE sms_inbox SET next_attempt_ms = $1, last_error = $2, claimed_until_ms = NULL WHERE id = $3",
            )
            .bind(*at_ms)
            .bind((*error).to_owned()),
            Judged::Failed { error } => sqlx::query(
                "UPDATE sms_inbox SET failed_at_ms = $1, last_error = $2, claimed_until_ms = NULL WHERE id = $3",
            )
            .bind(now_ms)
            .bind((*error).to_owned()),
        };
        query.bind(id).execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn inbox_counts(&self) -> Result<InboxCounts, StoreError> {
        let count = |sql| self.count(sql);
        Ok(InboxCounts {
            waiting: count("SELECT COUNT(*) FROM sms_inbox WHERE done_at_ms IS NULL AND failed_at_ms IS NULL").await?,
            done: count("SELECT COUNT(*) FROM sms_inbox WHERE done_at_ms IS NOT NULL").await?,
            failed: count("SELECT COUNT(*) FROM sms_inbox WHERE failed_at_ms IS NOT NULL").await?,
        })
    }
}
