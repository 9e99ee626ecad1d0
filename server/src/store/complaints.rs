//! The complaints' part of [`SqlStore`]: filing once per id, staff answers, and the news a
//! client asks for (review decisions and answers).

use std::str::FromStr as _;

use shared::Status;
use shared::wire::{ComplaintAnswer, ComplaintKind, ReviewUpdate};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row as _};
use time::OffsetDateTime;
use uuid::Uuid;

use super::sql::{SqlStore, db, json_text, opt_i64, opt_u64};
use super::{AuditEntry, ComplaintRecord, Filed, NewComplaint, Staff, StoreError, from_unix_ms, unix_ms};

const COMPLAINT_COLUMNS: &str = "seq, id, channel, subscription, kind, about_seq, text, made_at_ms, received_at_ms, \
     operator, office, answer, answered_by, answered_at_ms";

fn complaint_from_row(row: &AnyRow) -> Result<ComplaintRecord, StoreError> {
    let seq: i64 = row.try_get(0)?;
    let id: String = row.try_get(1)?;
    let kind: String = row.try_get(4)?;
    let operator: Option<String> = row.try_get(9)?;
    let office: Option<String> = row.try_get(10)?;
    let answer: Option<String> = row.try_get(11)?;
    let answered_by: Option<String> = row.try_get(12)?;
    let answered_at: Option<i64> = row.try_get(13)?;
    Ok(ComplaintRecord {
        seq: seq as u64,
        id: Uuid::from_str(&id).map_err(|e| StoreError::Corrupt(format!("complaint id {id:?}: {e}")))?,
        channel: row.try_get(2)?,
        subscription: row.try_get(3)?,
        kind: ComplaintKind::from_str_opt(&kind).ok_or_else(|| StoreError::Corrupt(format!("kind {kind:?}")))?,
        about_seq: opt_u64(row.try_get(5)?),
        text: row.try_get(6)?,
        made_at: from_unix_ms(row.try_get(7)?)?,
        received_at: from_unix_ms(row.try_get(8)?)?,
        staff: operator.zip(office).map(|(operator, office)| Staff { operator, office }),
        answer: match (answer, answered_by, answered_at) {
            (Some(a), Some(by), Some(at)) => Some((a, by, from_unix_ms(at)?)),
            _ => None,
        },
    })
}

impl SqlStore {
    pub(super) async fn insert_complaint(&self, c: &NewComplaint, now: OffsetDateTime) -> Result<Filed, StoreError> {
        let fingerprint = c.fingerprint();
        let inserted = sqlx::query(
            "INSERT INTO complaints (id, channel, device_id, subscription, kind, about_seq, text, made_at_ms, \
               received_at_ms, operator, office, fingerprint) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING",
        )
        .bind(c.id.to_string())
        .bind(c.channel.as_str())
        .bind(c.device_id.map(|d| d.to_string()))
        .bind(&c.subscription)
        .bind(c.kind.as_str())
        .bind(opt_i64(c.about_seq))
        .bind(&c.text)
        .bind(unix_ms(c.made_at))
        .bind(unix_ms(now))
        .bind(c.staff.as_ref().map(|s| s.operator.clone()))
        .bind(c.staff.as_ref().map(|s| s.office.clone()))
        .bind(&fingerprint)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        let row = sqlx::query("SELECT seq, fingerprint FROM complaints WHERE id = $1")
            .bind(c.id.to_string())
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        let seq: i64 = row.try_get(0)?;
        let stored: String = row.try_get(1)?;
        super::Store::sync(self).await?;
        Ok(match (inserted.rows_affected(), stored == fingerprint) {
            (1, _) => Filed::New(seq as u64),
            (_, true) => Filed::Replayed(seq as u64),
            (_, false) => Filed::Conflict,
        })
    }

    pub(super) async fn complaint_row(&self, seq: u64) -> Result<Option<ComplaintRecord>, StoreError> {
        let sql = format!("SELECT {COMPLAINT_COLUMNS} FROM complaints WHERE seq = $1");
        let row = sqlx::query(AssertSqlSafe(sql)).bind(seq as i64).fetch_optional(&self.pool).await.map_err(db)?;
        row.as_ref().map(complaint_from_row).transpose()
    }

    pub(super) async fn open_complaint_rows(&self, limit: u32) -> Result<Vec<ComplaintRecord>, StoreError> {
        let sql = format!("SELECT {COMPLAINT_COLUMNS} FROM complaints WHERE answer IS NULL ORDER BY seq LIMIT $1");
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(i64::from(limit)).fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(complaint_from_row).collect()
    }

    pub(super) async fn office_complaint_rows(
        &self,
        office: &str,
        since: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<ComplaintRecord>, StoreError> {
        let sql = format!(
            "SELECT {COMPLAINT_COLUMNS} FROM complaints WHERE office = $1 AND received_at_ms >= $2 \
             ORDER BY seq DESC LIMIT $3"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(office)
            .bind(unix_ms(since))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(complaint_from_row).collect()
    }

    pub(super) async fn set_answer(
        &self,
        seq: u64,
        answer: &str,
        staff: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE complaints SET answer = $2, answered_by = $3, answered_at_ms = $4 WHERE seq = $1 AND answer IS NULL",
        )
        .bind(seq as i64)
        .bind(answer)
        .bind(staff)
        .bind(unix_ms(now))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if updated.rows_affected() != 1 {
            tx.rollback().await.map_err(db)?;
            return Ok(false);
        }
        let number = shared::ComplaintNumber::from_sequence(seq).map(|n| n.to_string()).unwrap_or_default();
        let detail = format!("complaint {number}: {answer}");
        let entry = AuditEntry { at: now, username: staff, action: "complaint_answer", detail: &detail };
        super::console::insert_audit_on(&mut tx, &entry).await?;
        tx.commit().await.map_err(db)?;
        super::Store::sync(self).await?;
        Ok(true)
    }

    pub(super) async fn news(
        &self,
        declarations: &[Uuid],
        complaints: &[Uuid],
    ) -> Result<(Vec<ReviewUpdate>, Vec<ComplaintAnswer>), StoreError> {
        let among = self.dialect.id_among_json();
        let mut decisions = Vec::new();
        if !declarations.is_empty() {
            // A repeat of another declaration (`o`) hears what became of that one; a declaration
            // staff voided hears it no longer counts, whatever was decided before.
            let sql = format!(
                "SELECT d.id, COALESCE(o.review, d.review), COALESCE(o.review_reason, d.review_reason), \
                   COALESCE(o.reviewed_at_ms, d.reviewed_at_ms), COALESCE(o.void_reason, d.void_reason), \
                   COALESCE(o.voided_at_ms, d.voided_at_ms) \
                 FROM declarations AS d LEFT JOIN declarations AS o ON o.seq = d.duplicate_of WHERE d.{among}"
            );
            let ids: Vec<String> = declarations.iter().map(Uuid::to_string).collect();
            for row in sqlx::query(AssertSqlSafe(sql)).bind(json_text(&ids)?).fetch_all(&self.pool).await.map_err(db)? {
                let id: String = row.try_get(0)?;
                let id = Uuid::from_str(&id).map_err(|e| StoreError::Corrupt(format!("id {id:?}: {e}")))?;
                let review: Option<String> = row.try_get(1)?;
                let reviewed_at: Option<i64> = row.try_get(3)?;
                let void_reason: Option<String> = row.try_get(4)?;
                let voided_at: Option<i64> = row.try_get(5)?;
                let (status, reason, at) = match (void_reason, voided_at, review, reviewed_at) {
                    (Some(reason), Some(at), _, _) => (Status::Rejected, Some(reason), at),
                    (_, _, Some(review), Some(at)) if review == "approved" => (Status::Accepted, None, at),
                    (_, _, Some(_), Some(at)) => (Status::Rejected, row.try_get(2)?, at),
                    _ => continue,
                };
                decisions.push(ReviewUpdate {
                    id,
                    status,
                    reason,
                    decided_at: from_unix_ms(at)?.to_offset(shared::wire::SERVER_OFFSET),
                });
            }
        }
        let mut answers = Vec::new();
        if !complaints.is_empty() {
            let sql =
                format!("SELECT id, seq, answer, answered_at_ms FROM complaints WHERE {among} AND answer IS NOT NULL");
            let ids: Vec<String> = complaints.iter().map(Uuid::to_string).collect();
            for row in sqlx::query(AssertSqlSafe(sql)).bind(json_text(&ids)?).fetch_all(&self.pool).await.map_err(db)? {
                let id: String = row.try_get(0)?;
                let seq: i64 = row.try_get(1)?;
                answers.push(ComplaintAnswer {
                    id: Uuid::from_str(&id).map_err(|e| StoreError::Corrupt(format!("id {id:?}: {e}")))?,
                    complaint_number: shared::ComplaintNumber::from_sequence(seq as u64)
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                    answer: row.try_get(2)?,
                    answered_at: from_unix_ms(row.try_get(3)?)?.to_offset(shared::wire::SERVER_OFFSET),
                });
            }
        }
        Ok((decisions, answers))
    }
}
