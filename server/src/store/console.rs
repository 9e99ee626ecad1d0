//! The console's part of [`SqlStore`]: operators, sessions, the audit log, the console's views of
//! declarations, and reviewers' decisions carried out along a meter's chain.

use std::str::FromStr as _;

use shared::rules::{self, Point, Source};
use shared::{Code, Status, SubscriptionNumber};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row as _};
use time::OffsetDateTime;
use uuid::Uuid;

use super::sql::{
    Dialect, FeedEntry, LOCK_METERS, SET_CONSUMPTION, SqlStore, db, json_text, meter_from_row, opt_u64, replacements,
};
use super::{
    AuditEntry, AuditRecord, BillingEntry, MeterRecord, NewSession, OperatorRecord, Review, ReviewDecision,
    ReviewRequest, ReviewResult, Role, Session, Staff, StoreError, StoredDeclaration, TrustedBrowser, Void,
    from_unix_ms, unix_ms,
};
use shared::wire::BillingKind;

/// The columns [`stored_from_row`] reads, in its order.
pub(super) const STORED_COLUMNS: &str = "seq, id, channel, subscription, meter_serial, reading, read_at_ms, \
     received_at_ms, status, code, consumption_m3, duplicate_of, CAST(CASE WHEN counts THEN 1 ELSE 0 END AS BIGINT), \
     note, sender, operator, office, review, review_reason, reviewed_by, reviewed_at_ms, void_reason, voided_by, \
     voided_at_ms, repeat_of";

pub(super) fn stored_from_row(row: &AnyRow) -> Result<StoredDeclaration, StoreError> {
    let seq: i64 = row.try_get(0)?;
    let id: String = row.try_get(1)?;
    let status: String = row.try_get(8)?;
    let code: Option<String> = row.try_get(9)?;
    let counts: i64 = row.try_get(12)?;
    let operator: Option<String> = row.try_get(15)?;
    let office: Option<String> = row.try_get(16)?;
    let review: Option<String> = row.try_get(17)?;
    let reviewed_by: Option<String> = row.try_get(19)?;
    let reviewed_at: Option<i64> = row.try_get(20)?;
    Ok(StoredDeclaration {
        seq: seq as u64,
        id: Uuid::from_str(&id).map_err(|e| StoreError::Corrupt(format!("id {id:?}: {e}")))?,
        channel: row.try_get(2)?,
        subscription: row.try_get(3)?,
        meter_serial: row.try_get(4)?,
        reading: opt_u64(row.try_get(5)?),
        read_at: from_unix_ms(row.try_get(6)?)?,
        received_at: from_unix_ms(row.try_get(7)?)?,
        status: Status::from_str_opt(&status).ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
        code: code.as_deref().and_then(Code::from_str_opt),
        consumption_m3: opt_u64(row.try_get(10)?),
        duplicate_of: opt_u64(row.try_get(11)?),
        counts: counts != 0,
        note: row.try_get(13)?,
        sender: row.try_get(14)?,
        staff: operator.zip(office).map(|(operator, office)| Staff { operator, office }),
        review: match (review, reviewed_by, reviewed_at) {
            (Some(review), Some(reviewer), Some(at)) => Some(Review {
                approved: review == "approved",
                reason: row.try_get(18)?,
                reviewer,
                at: from_unix_ms(at)?,
            }),
            _ => None,
        },
        void: match (
            row.try_get::<Option<String>, _>(21)?,
            row.try_get::<Option<String>, _>(22)?,
            row.try_get::<Option<i64>, _>(23)?,
        ) {
            (Some(reason), Some(by), Some(at)) => Some(Void { reason, by, at: from_unix_ms(at)? }),
            _ => None,
        },
        repeat_of: opt_u64(row.try_get(24)?),
    })
}

impl SqlStore {
    pub(super) async fn save_operator_row(&self, op: &OperatorRecord, now: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO operators (username, role, office, password_hash, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (username) DO UPDATE SET role = excluded.role, office = excluded.office, \
               password_hash = excluded.password_hash, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&op.username)
        .bind(op.role.as_str())
        .bind(&op.office)
        .bind(&op.password_hash)
        .bind(unix_ms(now))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        self.sync_console().await
    }

    pub(super) async fn operator_row(&self, username: &str) -> Result<Option<OperatorRecord>, StoreError> {
        let row = sqlx::query("SELECT username, role, office, password_hash FROM operators WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let role: String = row.try_get(1)?;
        Ok(Some(OperatorRecord {
            username: row.try_get(0)?,
            role: role_of(&role)?,
            office: row.try_get(2)?,
            password_hash: row.try_get(3)?,
        }))
    }

    pub(super) async fn insert_session(&self, session: &NewSession<'_>) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        // Expired sessions go as new ones come; the table stays as small as the staff.
        sqlx::query("DELETE FROM sessions WHERE expires_at_ms <= $1")
            .bind(unix_ms(session.created_at))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, username, csrf, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(session.token_hash)
        .bind(session.username)
        .bind(session.csrf)
        .bind(unix_ms(session.created_at))
        .bind(unix_ms(session.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.sync_console().await
    }

    pub(super) async fn live_session(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, StoreError> {
        let row = sqlx::query(
            "SELECT s.username, o.role, o.office, s.csrf, s.expires_at_ms, s.created_at_ms FROM sessions AS s \
             JOIN operators AS o ON o.username = s.username WHERE s.token_hash = $1 AND s.expires_at_ms > $2",
        )
        .bind(token_hash)
        .bind(unix_ms(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let role: String = row.try_get(1)?;
        Ok(Some(Session {
            username: row.try_get(0)?,
            role: role_of(&role)?,
            office: row.try_get(2)?,
            csrf: row.try_get(3)?,
            expires_at: from_unix_ms(row.try_get(4)?)?,
            created_at: from_unix_ms(row.try_get(5)?)?,
        }))
    }

    pub(super) async fn set_session_end(&self, token_hash: &str, expires_at: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET expires_at_ms = $2 WHERE token_hash = $1")
            .bind(token_hash)
            .bind(unix_ms(expires_at))
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    pub(super) async fn insert_trusted_browser(&self, browser: &TrustedBrowser<'_>) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM trusted_browsers WHERE expires_at_ms <= $1")
            .bind(unix_ms(browser.created_at))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "INSERT INTO trusted_browsers (token_hash, username, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(browser.token_hash)
        .bind(browser.username)
        .bind(unix_ms(browser.created_at))
        .bind(unix_ms(browser.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.sync_console().await
    }

    pub(super) async fn trusted_browser_row(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT username FROM trusted_browsers WHERE token_hash = $1 AND expires_at_ms > $2")
            .bind(token_hash)
            .bind(unix_ms(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(match row {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        })
    }

    pub(super) async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        self.sync_console().await
    }

    pub(super) async fn insert_audit(&self, entry: &AuditEntry<'_>) -> Result<(), StoreError> {
        insert_audit_on(&mut *self.pool.acquire().await.map_err(db)?, entry).await?;
        self.sync_console().await
    }

    pub(super) async fn audit_rows(&self, before: Option<u64>, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let before = before.and_then(|b| i64::try_from(b).ok()).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT seq, at_ms, username, action, detail FROM audit WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get(0)?;
                Ok(AuditRecord {
                    seq: seq as u64,
                    at: from_unix_ms(row.try_get(1)?)?,
                    username: row.try_get(2)?,
                    action: row.try_get(3)?,
                    detail: row.try_get(4)?,
                })
            })
            .collect()
    }

    pub(super) async fn declaration_row(&self, seq: u64) -> Result<Option<StoredDeclaration>, StoreError> {
        let sql = format!("SELECT {STORED_COLUMNS} FROM declarations WHERE seq = $1");
        let row = sqlx::query(AssertSqlSafe(sql)).bind(seq as i64).fetch_optional(&self.pool).await.map_err(db)?;
        row.as_ref().map(stored_from_row).transpose()
    }

    pub(super) async fn declaration_row_by_id(&self, id: Uuid) -> Result<Option<StoredDeclaration>, StoreError> {
        let sql = format!("SELECT {STORED_COLUMNS} FROM declarations WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql)).bind(id.to_string()).fetch_optional(&self.pool).await.map_err(db)?;
        row.as_ref().map(stored_from_row).transpose()
    }

    pub(super) async fn office_rows(
        &self,
        office: &str,
        since: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<StoredDeclaration>, StoreError> {
        let sql = format!(
            "SELECT {STORED_COLUMNS} FROM declarations WHERE office = $1 AND received_at_ms >= $2 \
             ORDER BY received_at_ms DESC, seq DESC LIMIT $3"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(office)
            .bind(unix_ms(since))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(stored_from_row).collect()
    }

    pub(super) async fn queue_rows(&self, limit: u32) -> Result<Vec<StoredDeclaration>, StoreError> {
        let sql = format!(
            "SELECT {STORED_COLUMNS} FROM declarations WHERE status = 'needs_review' AND review IS NULL \
             AND duplicate_of IS NULL ORDER BY seq LIMIT $1"
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(i64::from(limit)).fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(stored_from_row).collect()
    }

    /// A reviewer's decision. The meter's row is locked first on PostgreSQL (as a batch of
    /// declarations does), and the update only applies while no decision is stored (for a void:
    /// while the declaration counts), so two reviewers deciding at once leave exactly one
    /// decision. Every change of a reading's consumption reaches the billing feed as a
    /// correction, in the same transaction.
    pub(super) async fn decide_review(
        &self,
        request: &ReviewRequest,
        now: OffsetDateTime,
    ) -> Result<ReviewResult, StoreError> {
        let Some(before) = self.declaration_row(request.seq).await? else { return Ok(ReviewResult::NotFound) };
        match &request.decision {
            ReviewDecision::Void { .. } if !before.counts => return Ok(ReviewResult::NotCounting(before)),
            ReviewDecision::Approve | ReviewDecision::Reject { .. } if !before.pending_review() => {
                return Ok(ReviewResult::NotPending(before));
            }
            _ => {}
        }
        let mut tx = self.begin_write().await?;
        let subscription = SubscriptionNumber::parse(&before.subscription).ok();
        let meter = match &subscription {
            Some(sub) => self.lock_meter(&mut tx, sub).await?,
            None => None,
        };
        let seq = request.seq as i64;
        let (action, detail) = match &request.decision {
            ReviewDecision::Reject { reason } => {
                const REJECT: &str = "UPDATE declarations SET review = 'rejected', review_reason = $2, \
                     reviewed_by = $3, reviewed_at_ms = $4 WHERE seq = $1 AND review IS NULL";
                if !mark(&mut tx, REJECT, request, reason, now).await? {
                    tx.rollback().await.map_err(db)?;
                    return self.not_pending(request.seq).await;
                }
                ("reject", format!("declaration {} of {}: {reason}", request.seq, before.subscription))
            }
            ReviewDecision::Approve => {
                let (Some(reading), Some(meter)) = (before.reading, meter) else {
                    tx.rollback().await.map_err(db)?;
                    return Ok(ReviewResult::CannotCount);
                };
                let chain = self.chain_from(&mut tx, &meter, before.read_at).await?;
                let point = Point { source: Source::Declaration(request.seq), reading, read_at: before.read_at };
                let approval = match rules::approve(&meter.context(), &chain, &point) {
                    Ok(approval) => approval,
                    Err(conflict) => {
                        tx.rollback().await.map_err(db)?;
                        return Ok(ReviewResult::Conflict(before, conflict));
                    }
                };
                // A repeat of a reading that counts is approved as that reading: it adds nothing.
                let counts = approval.repeat_of.is_none();
                let updated = sqlx::query(
                    "UPDATE declarations SET review = 'approved', reviewed_by = $2, reviewed_at_ms = $3, counts = $4, \
                     consumption_m3 = $5, repeat_of = $6 WHERE seq = $1 AND review IS NULL",
                )
                .bind(seq)
                .bind(&request.reviewer)
                .bind(unix_ms(now))
                .bind(counts)
                .bind(approval.consumption_m3.and_then(|c| i64::try_from(c).ok()))
                .bind(approval.repeat_of.and_then(|c| i64::try_from(c).ok()))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                if updated.rows_affected() != 1 {
                    tx.rollback().await.map_err(db)?;
                    return self.not_pending(request.seq).await;
                }
                let mut changes = Vec::new();
                if let Some((next, consumption)) = approval.next_consumption {
                    self.set_consumption(&mut tx, next, Some(consumption)).await?;
                    changes.push((next, BillingKind::Correction, Some(consumption)));
                }
                let mut entries = Vec::new();
                if counts {
                    entries.push(FeedEntry::reading(request.seq, approval.consumption_m3));
                }
                entries.extend(replacements(&mut tx, &changes).await?);
                self.append_billing(&mut tx, &entries, now).await?;
                let detail = match approval.repeat_of {
                    Some(of) => format!(
                        "declaration {} of {}: reading {reading}, a repeat of {of}",
                        request.seq, before.subscription
                    ),
                    None => format!("declaration {} of {}: reading {reading}", request.seq, before.subscription),
                };
                ("approve", detail)
            }
            ReviewDecision::Void { reason } => {
                let chain = match &meter {
                    Some(meter) => {
                        self.chain_from(&mut tx, meter, before.read_at - time::Duration::milliseconds(1)).await?
                    }
                    None => rules::Chain::default(),
                };
                const VOID: &str = "UPDATE declarations SET counts = false, void_reason = $2, voided_by = $3, \
                     voided_at_ms = $4 WHERE seq = $1 AND counts";
                if !mark(&mut tx, VOID, request, reason, now).await? {
                    tx.rollback().await.map_err(db)?;
                    return Ok(match self.declaration_row(request.seq).await? {
                        Some(now) => ReviewResult::NotCounting(now),
                        None => ReviewResult::NotFound,
                    });
                }
                let mut changes = vec![(request.seq, BillingKind::Void, None)];
                if let Some(meter) = &meter
                    && let Some((next, consumption)) = rules::void(&meter.context(), &chain, request.seq)
                {
                    self.set_consumption(&mut tx, next, consumption).await?;
                    changes.push((next, BillingKind::Correction, consumption));
                }
                let entries = replacements(&mut tx, &changes).await?;
                self.append_billing(&mut tx, &entries, now).await?;
                ("void", format!("declaration {} of {}: {reason}", request.seq, before.subscription))
            }
        };
        insert_audit_on(&mut tx, &AuditEntry { at: now, username: &request.reviewer, action, detail: &detail }).await?;
        tx.commit().await.map_err(db)?;
        match self.declaration_row(request.seq).await? {
            Some(after) => Ok(ReviewResult::Decided(after)),
            None => Err(StoreError::Corrupt(format!("declaration {} vanished", request.seq))),
        }
    }

    /// Re-measures a declaration's current consumption.
    async fn set_consumption(
        &self,
        conn: &mut AnyConnection,
        seq: u64,
        consumption: Option<u64>,
    ) -> Result<(), StoreError> {
        sqlx::query(SET_CONSUMPTION)
            .bind(consumption.and_then(|c| i64::try_from(c).ok()))
            .bind(seq as i64)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        Ok(())
    }

    pub(super) async fn billing_rows(&self, after: u64, limit: u32) -> Result<Vec<BillingEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT f.position, d.seq, d.subscription, COALESCE(m.meter_serial, d.meter_serial), d.reading, \
               d.read_at_ms, f.consumption_m3, d.channel, \
               CAST(CASE WHEN d.review = 'approved' THEN 1 ELSE 0 END AS BIGINT), f.kind, f.replaces, r.consumption_m3 \
             FROM billing_feed AS f JOIN declarations AS d ON d.seq = f.seq \
             LEFT JOIN meters AS m ON m.subscription = d.subscription \
             LEFT JOIN billing_feed AS r ON r.position = f.replaces \
             WHERE f.position > $1 ORDER BY f.position LIMIT $2",
        )
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| {
                let position: i64 = row.try_get(0)?;
                let seq: i64 = row.try_get(1)?;
                let reviewed: i64 = row.try_get(8)?;
                let kind: String = row.try_get(9)?;
                let replaces: Option<i64> = row.try_get(10)?;
                Ok(BillingEntry {
                    position: position as u64,
                    seq: seq as u64,
                    subscription: row.try_get(2)?,
                    meter_serial: row.try_get(3)?,
                    reading: opt_u64(row.try_get(4)?).unwrap_or_default(),
                    read_at: from_unix_ms(row.try_get(5)?)?,
                    consumption_m3: opt_u64(row.try_get(6)?),
                    channel: row.try_get(7)?,
                    approved_on_review: reviewed != 0,
                    kind: BillingKind::from_str_opt(&kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("billing entry kind {kind:?}")))?,
                    replaces: match opt_u64(replaces) {
                        Some(position) => Some((position, opt_u64(row.try_get(11)?))),
                        None => None,
                    },
                })
            })
            .collect()
    }

    pub(super) async fn billing_last(&self) -> Result<u64, StoreError> {
        let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM billing_feed")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(opt_u64(Some(last)).unwrap_or_default())
    }

    async fn not_pending(&self, seq: u64) -> Result<ReviewResult, StoreError> {
        Ok(match self.declaration_row(seq).await? {
            Some(now) => ReviewResult::NotPending(now),
            None => ReviewResult::NotFound,
        })
    }

    /// The meter, locked for this transaction on PostgreSQL (SQLite's single writer is the lock).
    async fn lock_meter(
        &self,
        conn: &mut AnyConnection,
        subscription: &SubscriptionNumber,
    ) -> Result<Option<MeterRecord>, StoreError> {
        if self.dialect == Dialect::Postgres {
            // The lock a batch of declarations takes, on this one meter.
            sqlx::query(AssertSqlSafe(LOCK_METERS.as_str()))
                .bind(json_text(&[subscription.as_str()])?)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
        }
        // Read after the lock, by a statement of its own, so that it sees every declaration
        // committed for the meter before the lock was granted.
        let row = sqlx::query(AssertSqlSafe(self.dialect.meter_by_subscription()))
            .bind(subscription.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        row.as_ref().map(meter_from_row).transpose()
    }

    /// Console writes are rare and must be on disk before they are acted on: flush like the
    /// writer does.
    async fn sync_console(&self) -> Result<(), StoreError> {
        super::Store::sync(self).await
    }
}

/// Runs a decision's `UPDATE` (`$1` the declaration, `$2` the reason, `$3` who, `$4` when), which
/// applies only while its condition holds; whether it applied.
async fn mark(
    conn: &mut AnyConnection,
    sql: &'static str,
    request: &ReviewRequest,
    reason: &str,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(AssertSqlSafe(sql))
        .bind(request.seq as i64)
        .bind(reason)
        .bind(&request.reviewer)
        .bind(unix_ms(now))
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(updated.rows_affected() == 1)
}

fn role_of(role: &str) -> Result<Role, StoreError> {
    Role::from_str_opt(role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))
}

pub(super) async fn insert_audit_on(conn: &mut AnyConnection, entry: &AuditEntry<'_>) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO audit (at_ms, username, action, detail) VALUES ($1, $2, $3, $4)")
        .bind(unix_ms(entry.at))
        .bind(entry.username)
        .bind(entry.action)
        .bind(entry.detail)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(())
}
