//! The SMS replies' queue ([`ReplyQueue`], table `sms_replies`): a reply is queued once per
//! message it answers, claimed by one instance at a time for a lease, and marked sent, due again
//! later, or failed for good. Every instance polls it, so a reply queued by one that then stops is
//! sent by another, and a gateway that is down for an hour loses nothing.
//!
//! Claiming is one `UPDATE … RETURNING` whose `WHERE` repeats the conditions of the rows it
//! picks: on PostgreSQL two instances that pick the same row both wait for its lock, and the
//! second, re-reading the row, finds it claimed and takes nothing. SQLite has one writer.

use async_trait::async_trait;
use sqlx::Row as _;

use super::StoreError;
use super::sql::{SqlStore, db};

/// A reply to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReply<'a> {
    /// What it answers, unique among replies: e.g. `sms:<message id>`, or a review decision.
    pub answers: &'a str,
    pub recipient: &'a str,
    pub body: &'a str,
    pub now_ms: i64,
}

/// A reply claimed for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedReply {
    pub id: i64,
    pub recipient: String,
    pub body: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
}

/// A reply as the console lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRecord {
    pub id: i64,
    pub answers: String,
    pub recipient: String,
    pub body: String,
    pub queued_at_ms: i64,
    pub attempts: u32,
    pub failed_at_ms: Option<i64>,
    pub last_error: Option<String>,
}

/// What happened to an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempted<'a> {
    /// The gateway took it, with its own id for it when it gave one.
    Sent { gateway_ref: Option<&'a str> },
    /// Not taken; try again at this time.
    Again { error: &'a str, at_ms: i64 },
    /// Not taken, and never will be: listed in the console.
    Failed { error: &'a str },
}

/// Replies waiting, sent, and failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplyCounts {
    pub waiting: u64,
    pub sent: u64,
    pub failed: u64,
}

#[async_trait]
pub trait ReplyQueue: Send + Sync {
    /// Queues a reply unless one answering the same thing is queued already; says whether it was.
    /// Durable when it returns.
    async fn queue_reply(&self, reply: &NewReply<'_>) -> Result<bool, StoreError>;
    /// Claims up to `limit` replies due at `now_ms` until `lease_until_ms`.
    async fn claim_replies(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedReply>, StoreError>;
    /// Records how a claimed reply's attempt went.
    async fn attempted(&self, id: i64, outcome: &Attempted<'_>, now_ms: i64) -> Result<(), StoreError>;
    /// The replies that failed for good, newest first.
    async fn failed_replies(&self, limit: u32) -> Result<Vec<ReplyRecord>, StoreError>;
    async fn reply_counts(&self) -> Result<ReplyCounts, StoreError>;
    /// Puts a reply that failed for good back in the queue, due now, with its attempts counted
    /// afresh; says whether there was such a reply.
    async fn send_again(&self, id: i64, now_ms: i64) -> Result<bool, StoreError>;
}

#[async_trait]
impl ReplyQueue for SqlStore {
    async fn queue_reply(&self, reply: &NewReply<'_>) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO sms_replies (answers, recipient, body, queued_at_ms, next_attempt_ms) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (answers) DO NOTHING",
        )
        .bind(reply.answers)
        .bind(reply.recipient)
        .bind(reply.body)
        .bind(reply.now_ms)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        super::Store::sync(self).await?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn claim_replies(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedReply>, StoreError> {
        // SQLite numbers `$N` by first appearance: they appear here in order.
        let rows = sqlx::query(
            "UPDATE sms_replies SET claimed_until_ms = $1, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM sms_replies \
                 WHERE sent_at_ms IS NULL AND failed_at_ms IS NULL AND next_attempt_ms <= $2 \
                   AND (claimed_until_ms IS NULL OR claimed_until_ms <= $2) \
                 ORDER BY next_attempt_ms, id LIMIT $3) \
               AND sent_at_ms IS NULL AND failed_at_ms IS NULL \
               AND (claimed_until_ms IS NULL OR claimed_until_ms <= $2) \
             RETURNING id, recipient, body, attempts",
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
                Ok(ClaimedReply {
                    id: row.try_get(0)?,
                    recipient: row.try_get(1)?,
                    body: row.try_get(2)?,
                    attempt: u32::try_from(row.try_get::<i64, _>(3)?).unwrap_or(u32::MAX),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(db)?;
        claimed.sort_by_key(|r| r.id);
        Ok(claimed)
    }

    async fn attempted(&self, id: i64, outcome: &Attempted<'_>, now_ms: i64) -> Result<(), StoreError> {
        let query = match outcome {
            Attempted::Sent { gateway_ref } => sqlx::query(
                "UPDATE sms_replies SET sent_at_ms = $1, gateway_ref = $2, claimed_until_ms = NULL, \
                 last_error = NULL WHERE id = $3",
            )
            .bind(now_ms)
            .bind(gateway_ref.map(str::to_owned)),
            Attempted::Again { error, at_ms } => sqlx::query(
                "UPDATE sms_replies SET next_attempt_ms = $1, last_error = $2, claimed_until_ms = NULL \
                 WHERE id = $3",
            )
            .bind(*at_ms)
            .bind((*error).to_owned()),
            Attempted::Failed { error } => sqlx::query(
                "UPDATE sms_replies SET failed_at_ms = $1, last_error = $2, claimed_until_ms = NULL \
                 WHERE id = $3",
            )
            .bind(now_ms)
            .bind((*error).to_owned()),
        };
        query.bind(id).execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn failed_replies(&self, limit: u32) -> Result<Vec<ReplyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, answers, recipient, body, queued_at_ms, attempts, failed_at_ms, last_error \
             FROM sms_replies WHERE failed_at_ms IS NOT NULL ORDER BY failed_at_ms DESC, id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| {
                Ok(ReplyRecord {
                    id: row.try_get(0)?,
                    answers: row.try_get(1)?,
                    recipient: row.try_get(2)?,
                    body: row.try_get(3)?,
                    queued_at_ms: row.try_get(4)?,
                    attempts: u32::try_from(row.try_get::<i64, _>(5)?).unwrap_or(u32::MAX),
                    failed_at_ms: row.try_get(6)?,
                    last_error: row.try_get(7)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(db)
    }

    async fn reply_counts(&self) -> Result<ReplyCounts, StoreError> {
        let count = |sql| self.count(sql);
        Ok(ReplyCounts {
            waiting: count("SELECT COUNT(*) FROM sms_replies WHERE sent_at_ms IS NULL AND failed_at_ms IS NULL")
                .await?,
            sent: count("SELECT COUNT(*) FROM sms_replies WHERE sent_at_ms IS NOT NULL").await?,
            failed: count("SELECT COUNT(*) FROM sms_replies WHERE failed_at_ms IS NOT NULL").await?,
        })
    }

    async fn send_again(&self, id: i64, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE sms_replies SET failed_at_ms = NULL, attempts = 0, next_attempt_ms = $1 \
             WHERE id = $2 AND failed_at_ms IS NOT NULL",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }
}
