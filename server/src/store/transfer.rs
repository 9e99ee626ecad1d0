//! `kontor migrate-store --from URL --to URL`: moves a whole store to another database — a
//! province growing from SQLite to PostgreSQL, typically — with nothing lost, and proves it.
//!
//! Both stores are brought to the current schema first. The target must hold no data. Every
//! table that carries data (registry, devices, declarations, the billing feed, operators and
//! their sessions, the audit log, complaints, meter photos, the SMS replies, inbox and inbox
//! cursors) is copied in key order, in pages, inside one transaction on the target, so a failed
//! move leaves it empty. PostgreSQL's identity sequences
//! and billing position are then set past the copied rows, so that new declarations and
//! complaints continue the numbering (tracking codes and complaint numbers stay unique). Last,
//! each table is read back from both sides and compared by row count and by a SHA-256 over its
//! rows in key order. Identity-failure counters are not moved: they expire in minutes.
//!
//! Nothing may write to the source meanwhile: stop `kontor serve` first.

use sha2::{Digest as _, Sha256};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::sql::{Dialect, SqlStore, db};
use super::{Store as _, StoreError};

/// How a column is read and written on either database.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Real,
    /// `BOOLEAN` on PostgreSQL, `INTEGER` 0/1 on SQLite: carried as 0/1.
    Bool,
    /// `BYTEA` on PostgreSQL, `BLOB` on SQLite.
    Bytes,
}

use Kind::{Bool, Bytes, Int, Real, Text};

struct Table {
    name: &'static str,
    /// The first column; its values are unique and the copy pages by them.
    columns: &'static [(&'static str, Kind)],
}

/// The tables, parents before children (sessions name operators).
const TABLES: &[Table] = &[
    Table {
        name: "meters",
        columns: &[
            ("subscription", Text),
            ("meter_serial", Text),
            ("digits", Int),
            ("billed_reading", Int),
            ("billed_at_ms", Int),
            ("avg_daily_m3", Real),
            ("max_hourly_m3", Real),
            ("phone", Text),
            ("updated_at_ms", Int),
        ],
    },
    Table {
        name: "devices",
        columns: &[("token_hash", Text), ("device_id", Text), ("subscription", Text), ("created_at_ms", Int)],
    },
    Table {
        name: "declarations",
        columns: &[
            ("seq", Int),
            ("id", Text),
            ("channel", Text),
            ("device_id", Text),
            ("subscription", Text),
            ("meter_serial", Text),
            ("reading", Int),
            ("read_at_ms", Int),
            ("read_at", Text),
            ("note", Text),
            ("received_at_ms", Int),
            ("status", Text),
            ("code", Text),
            ("answered_consumption", Int),
            ("consumption_m3", Int),
            ("duplicate_of", Int),
            ("counts", Bool),
            ("fingerprint", Text),
            ("sender", Text),
            ("operator", Text),
            ("office", Text),
            ("review", Text),
            ("review_reason", Text),
            ("reviewed_by", Text),
            ("reviewed_at_ms", Int),
            ("voided_by", Text),
            ("void_reason", Text),
            ("voided_at_ms", Int),
            ("repeat_of", Int),
            ("supersedes", Text),
        ],
    },
    Table {
        name: "billing_feed",
        columns: &[
            ("position", Int),
            ("seq", Int),
            ("consumption_m3", Int),
            ("added_at_ms", Int),
            ("kind", Text),
            ("replaces", Int),
        ],
    },
    Table {
        name: "operators",
        columns: &[
            ("username", Text),
            ("role", Text),
            ("office", Text),
            ("password_hash", Text),
            ("created_at_ms", Int),
            ("updated_at_ms", Int),
        ],
    },
    Table {
        name: "sessions",
        columns: &[
            ("token_hash", Text),
            ("username", Text),
            ("csrf", Text),
            ("created_at_ms", Int),
            ("expires_at_ms", Int),
        ],
    },
    Table {
        name: "trusted_browsers",
        columns: &[("token_hash", Text), ("username", Text), ("created_at_ms", Int), ("expires_at_ms", Int)],
    },
    Table {
        name: "audit",
        columns: &[("seq", Int), ("at_ms", Int), ("username", Text), ("action", Text), ("detail", Text)],
    },
    Table {
        name: "complaints",
        columns: &[
            ("seq", Int),
            ("id", Text),
            ("channel", Text),
            ("device_id", Text),
            ("subscription", Text),
            ("kind", Text),
            ("about_seq", Int),
            ("text", Text),
            ("made_at_ms", Int),
            ("received_at_ms", Int),
            ("operator", Text),
            ("office", Text),
            ("fingerprint", Text),
            ("answer", Text),
            ("answered_by", Text),
            ("answered_at_ms", Int),
        ],
    },
    Table {
        name: "sms_replies",
        columns: &[
            ("id", Int),
            ("answers", Text),
            ("recipient", Text),
            ("body", Text),
            ("queued_at_ms", Int),
            ("attempts", Int),
            ("next_attempt_ms", Int),
            ("claimed_until_ms", Int),
            ("sent_at_ms", Int),
            ("gateway_ref", Text),
            ("failed_at_ms", Int),
            ("last_error", Text),
        ],
    },
    Table {
        name: "sms_inbox",
        columns: &[
            ("id", Int),
            ("message_id", Text),
            ("sender", Text),
            ("recipient", Text),
            ("body", Text),
            ("received_at", Text),
            ("fetched_at_ms", Int),
            ("attempts", Int),
            ("next_attempt_ms", Int),
            ("claimed_until_ms", Int),
            ("done_at_ms", Int),
            ("failed_at_ms", Int),
            ("last_error", Text),
        ],
    },
    Table {
        name: "sms_pull",
        columns: &[("gateway", Text), ("cursor", Text), ("holder", Text), ("held_until_ms", Int)],
    },
    Table {
        name: "photos",
        columns: &[
            ("declaration_id", Text),
            ("sha256", Text),
            ("media_type", Text),
            ("width", Int),
            ("height", Int),
            ("bytes", Bytes),
            ("received_at_ms", Int),
        ],
    },
];

/// Tables whose key column PostgreSQL numbers from an identity sequence, with that column.
const SEQUENCED: &[(&str, &str)] =
    &[("declarations", "seq"), ("audit", "seq"), ("complaints", "seq"), ("sms_replies", "id"), ("sms_inbox", "id")];

/// Rows read and written per statement.
const PAGE: usize = 500;

/// One value, as both databases can bind it.
#[derive(Clone, PartialEq)]
enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Real(Option<f64>),
    Bytes(Option<Vec<u8>>),
}

impl Value {
    /// Feeds the value to a checksum, unambiguously (a tag, then the value and its length).
    fn digest(&self, hash: &mut Sha256) {
        match self {
            Self::Text(None) | Self::Int(None) | Self::Real(None) | Self::Bytes(None) => hash.update([0]),
            Self::Text(Some(t)) => {
                hash.update([1]);
                hash.update((t.len() as u64).to_le_bytes());
                hash.update(t.as_bytes());
            }
            Self::Int(Some(i)) => {
                hash.update([2]);
                hash.update(i.to_le_bytes());
            }
            Self::Real(Some(r)) => {
                hash.update([3]);
                hash.update(r.to_bits().to_le_bytes());
            }
            Self::Bytes(Some(b)) => {
                hash.update([4]);
                hash.update((b.len() as u64).to_le_bytes());
                hash.update(b);
            }
        }
    }
}

/// What was moved: per table, the rows and the checksum both sides agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub table: &'static str,
    pub rows: u64,
    pub sha256: String,
}

/// How `kind` is selected so that either database answers the type the copy binds.
fn select_expr(dialect: Dialect, column: &str, kind: Kind) -> String {
    match (kind, dialect) {
        (Text | Bytes, _) => column.to_owned(),
        (Int, _) => format!("CAST({column} AS BIGINT)"),
        (Real, Dialect::Sqlite) => format!("CAST({column} AS REAL)"),
        (Real, Dialect::Postgres) => format!("CAST({column} AS DOUBLE PRECISION)"),
        (Bool, _) => format!("CAST(CASE WHEN {column} THEN 1 ELSE 0 END AS BIGINT)"),
    }
}

fn read_row(row: &AnyRow, table: &Table) -> Result<Vec<Value>, StoreError> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| {
            Ok(match kind {
                Text => Value::Text(row.try_get(i)?),
                Int | Bool => Value::Int(row.try_get(i)?),
                Real => Value::Real(row.try_get(i)?),
                Bytes => Value::Bytes(row.try_get(i)?),
            })
        })
        .collect()
}

/// A page of `table` from `store`, in key order, after the key `after` (from the start if none).
async fn page(store: &SqlStore, table: &Table, after: Option<&Value>) -> Result<Vec<Vec<Value>>, StoreError> {
    let columns: Vec<String> =
        table.columns.iter().map(|(name, kind)| select_expr(store.dialect, name, *kind)).collect();
    // Text keys in byte order on both databases (PostgreSQL's default collation may differ from
    // SQLite's), so that both sides page, and checksum, the same sequence of rows.
    let key = match (table.columns[0].1, store.dialect) {
        (Text, Dialect::Postgres) => format!("{} COLLATE \"C\"", table.columns[0].0),
        _ => table.columns[0].0.to_owned(),
    };
    let filter = if after.is_some() { format!("WHERE {key} > $1") } else { String::new() };
    let sql = format!("SELECT {} FROM {} {filter} ORDER BY {key} LIMIT {PAGE}", columns.join(", "), table.name);
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    query = match after {
        Some(Value::Text(t)) => query.bind(t.clone()),
        Some(Value::Int(i)) => query.bind(*i),
        Some(Value::Real(r)) => query.bind(*r),
        Some(Value::Bytes(b)) => query.bind(b.clone()),
        None => query,
    };
    let rows = query.fetch_all(&store.pool).await.map_err(db)?;
    rows.iter().map(|row| read_row(row, table)).collect()
}

/// Every row of `table`, page by page, handed to `each`.
async fn for_each_page<F>(store: &SqlStore, table: &Table, mut each: F) -> Result<(), StoreError>
where
    F: AsyncFnMut(Vec<Vec<Value>>) -> Result<(), StoreError>,
{
    let mut after: Option<Value> = None;
    loop {
        let rows = page(store, table, after.as_ref()).await?;
        let full = rows.len() == PAGE;
        after = rows.last().map(|row| row[0].clone());
        if !rows.is_empty() {
            each(rows).await?;
        }
        if !full {
            return Ok(());
        }
    }
}

/// Count and checksum of `table` in key order.
async fn summary(store: &SqlStore, table: &'static Table) -> Result<Moved, StoreError> {
    let mut hash = Sha256::new();
    let mut rows = 0u64;
    for_each_page(store, table, async |page: Vec<Vec<Value>>| {
        for row in &page {
            for value in row {
                value.digest(&mut hash);
            }
        }
        rows += page.len() as u64;
        Ok(())
    })
    .await?;
    let sha256 = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Moved { table: table.name, rows, sha256 })
}

/// Why a move did not happen, or did not prove itself.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("the target store already holds data ({0} has rows): move into an empty database")]
    TargetNotEmpty(&'static str),
    #[error(
        "after the move, {table} differs: {source_rows} rows ({source_sha}) read from the source, {target_rows} ({target_sha}) from the target"
    )]
    Mismatch { table: &'static str, source_rows: u64, source_sha: String, target_rows: u64, target_sha: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Copies every table of `from` into the empty store `to`, then compares both.
pub async fn transfer(from: &SqlStore, to: &SqlStore) -> Result<Vec<Moved>, TransferError> {
    for table in TABLES {
        let sql = format!("SELECT COUNT(*) FROM {}", table.name);
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&to.pool).await.map_err(db)?;
        if rows > 0 {
            return Err(TransferError::TargetNotEmpty(table.name));
        }
    }
    let mut tx = to.begin_write().await?;
    for table in TABLES {
        for_each_page(from, table, async |rows: Vec<Vec<Value>>| {
            let sql = insert_sql(to.dialect, table, rows.len());
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for value in rows.into_iter().flatten() {
                query = match value {
                    Value::Text(t) => query.bind(t),
                    Value::Int(i) => query.bind(i),
                    Value::Real(r) => query.bind(r),
                    Value::Bytes(b) => query.bind(b),
                };
            }
            query.execute(&mut *tx).await.map_err(db)?;
            Ok(())
        })
        .await?;
    }
    if to.dialect == Dialect::Postgres {
        // New rows continue after the moved ones.
        for (table, column) in SEQUENCED {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), (SELECT MAX({column}) FROM {table})) \
                 WHERE EXISTS (SELECT 1 FROM {table})"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await.map_err(db)?;
        }
        sqlx::query("UPDATE billing_position SET last = (SELECT COALESCE(MAX(position), 0) FROM billing_feed)")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    to.sync().await?;

    let mut moved = Vec::new();
    for table in TABLES {
        let (source, target) = (summary(from, table).await?, summary(to, table).await?);
        if source != target {
            return Err(TransferError::Mismatch {
                table: table.name,
                source_rows: source.rows,
                source_sha: source.sha256,
                target_rows: target.rows,
                target_sha: target.sha256,
            });
        }
        moved.push(target);
    }
    Ok(moved)
}

/// `INSERT` of `rows` rows into `table`, with numbered parameters.
fn insert_sql(dialect: Dialect, table: &Table, rows: usize) -> String {
    let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let width = names.len();
    let tuples: Vec<String> = (0..rows)
        .map(|r| {
            let values: Vec<String> = table
                .columns
                .iter()
                .enumerate()
                .map(|(c, (_, kind))| {
                    let n = r * width + c + 1;
                    match (kind, dialect) {
                        (Bool, Dialect::Postgres) => format!("(${n} <> 0)"),
                        _ => format!("${n}"),
                    }
                })
                .collect();
            format!("({})", values.join(", "))
        })
        .collect();
    format!("INSERT INTO {} ({}) VALUES {}", table.name, names.join(", "), tuples.join(", "))
}
