//! Meter photos ([`PhotoStore`], table `photos`): at most one per declaration, kept in the
//! database beside it (SQLite `BLOB`, PostgreSQL `BYTEA`), so that a backup, a move to another
//! database (`migrate-store`) and a second instance all see the same photos with nothing else to
//! set up; at about 60 KB each, a year of photos for a province's held readings is a few GB.
//! Photos older than the operator's retention are deleted (`forget_photos_before`).
//!
//! A photo is stored once: the same bytes sent again for the same declaration are a replay,
//! different bytes are refused (the declaration's evidence does not change after the fact).

use async_trait::async_trait;
use sqlx::Row as _;
use uuid::Uuid;

use super::StoreError;
use super::sql::{SqlStore, db};

/// A photo to store, already checked and stripped of its metadata (`crate::photo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPhoto<'a> {
    /// SHA-256 of the upload as it was sent, in hex: what makes a retry a replay.
    pub sha256: &'a str,
    pub media_type: &'a str,
    pub width: u32,
    pub height: u32,
    pub bytes: &'a [u8],
    pub now_ms: i64,
}

/// What storing a photo came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutPhoto {
    Stored,
    /// The same upload was stored before.
    Replayed,
    /// Another photo is stored for this declaration.
    Different,
}

/// A stored photo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPhoto {
    pub media_type: String,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
    pub received_at_ms: i64,
}

#[async_trait]
pub trait PhotoStore: Send + Sync {
    /// Stores the photo of declaration `declaration_id` (which must exist) unless it has one.
    async fn put_photo(&self, declaration_id: Uuid, photo: &NewPhoto<'_>) -> Result<PutPhoto, StoreError>;
    /// The photo of the declaration numbered `seq`, if it has one.
    async fn photo(&self, seq: u64) -> Result<Option<StoredPhoto>, StoreError>;
    /// Deletes the photos received before `before_ms`; answers how many.
    async fn forget_photos_before(&self, before_ms: i64) -> Result<u64, StoreError>;
}

#[async_trait]
impl PhotoStore for SqlStore {
    async fn put_photo(&self, declaration_id: Uuid, photo: &NewPhoto<'_>) -> Result<PutPhoto, StoreError> {
        let id = declaration_id.to_string();
        let inserted = sqlx::query(
            "INSERT INTO photos (declaration_id, sha256, media_type, width, height, bytes, received_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (declaration_id) DO NOTHING",
        )
        .bind(id.as_str())
        .bind(photo.sha256)
        .bind(photo.media_type)
        .bind(i64::from(photo.width))
        .bind(i64::from(photo.height))
        .bind(photo.bytes.to_vec())
        .bind(photo.now_ms)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if inserted.rows_affected() == 1 {
            super::Store::sync(self).await?;
            return Ok(PutPhoto::Stored);
        }
        let stored: String = sqlx::query("SELECT sha256 FROM photos WHERE declaration_id = $1")
            .bind(id.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db)?
            .try_get(0)
            .map_err(db)?;
        Ok(if stored == photo.sha256 { PutPhoto::Replayed } else { PutPhoto::Different })
    }

    async fn photo(&self, seq: u64) -> Result<Option<StoredPhoto>, StoreError> {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        let row = sqlx::query(
            "SELECT p.media_type, p.width, p.height, p.bytes, p.received_at_ms \
             FROM photos p JOIN declarations d ON d.id = p.declaration_id WHERE d.seq = $1",
        )
        .bind(seq)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|row| {
            Ok::<_, sqlx::Error>(StoredPhoto {
                media_type: row.try_get(0)?,
                width: u32::try_from(row.try_get::<i64, _>(1)?).unwrap_or(0),
                height: u32::try_from(row.try_get::<i64, _>(2)?).unwrap_or(0),
                bytes: row.try_get(3)?,
                received_at_ms: row.try_get(4)?,
            })
        })
        .transpose()
        .map_err(db)
    }

    async fn forget_photos_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM photos WHERE received_at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }
}
