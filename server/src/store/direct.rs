//! [`Direct`]: on SQLite, declarations are stored through a connection of their own, driven
//! on the calling thread (the writer's, see `crate::writer`) with rusqlite.
//!
//! sqlx runs each SQLite connection on a worker thread and hands every statement to it and its
//! answer back through a channel: a group of declarations (begin, meters, insert, latest
//! readings, billing, commit) cost six round trips between two threads, each a futex wake-up,
//! and profiles showed a fifth of the server's time in the kernel switching threads. Here the
//! writer's thread runs SQLite itself. The statements are the ones the rest of the store uses
//! (`sql.rs`), with the same JSON parameters; the judging is `sql::judge`, shared with
//! PostgreSQL. Everything else (reads, sessions, reviews) still goes through sqlx's pool; SQLite's
//! write lock (`BEGIN IMMEDIATE`, with the pool's 5 s busy timeout) keeps the two apart.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{LazyLock, Mutex};

use rusqlite::{Connection, ErrorCode, OptionalExtension as _, TransactionBehavior};
use shared::rules::{Chain, Source};
use time::OffsetDateTime;

use super::sql::{
    self, BILLED_POINT, CHAIN_FROM, Dialect, Known, METER_COLUMNS, MeterColumns, Raced, SET_CONSUMPTION,
    SQLITE_NEXT_POSITION, SQLITE_PRAGMAS, STORED_OUTCOME_COLUMNS, StoredOutcome,
};
use super::{Incoming, MeterRecord, Outcome, StoreError, last_point, unix_ms};

/// One declaration, its values bound one by one (the prepared statement is reused: binding
/// beats writing and parsing JSON here, where no round trip is saved by sending rows at once).
const INSERT_DECLARATION: &str = "INSERT INTO declarations (seq, id, channel, device_id, subscription, meter_serial, \
     reading, read_at_ms, read_at, note, received_at_ms, status, code, answered_consumption, consumption_m3, \
     duplicate_of, counts, fingerprint, sender, operator, office) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) \
     ON CONFLICT (id) DO NOTHING";

/// A meter's latest reading moved (the meter was read in the same transaction, so it exists).
const SET_LATEST: &str = "UPDATE meters SET last_seq = $1, last_reading = $2, last_read_at_ms = $3, updated_at_ms = $4 WHERE subscription = $5";

/// A meter by its subscription, in [`MeterColumns`]' order (the text is made once, not per group).
static METER_BY_SUBSCRIPTION: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {METER_COLUMNS} FROM meters WHERE subscription = $1"));

/// The outcomes stored for the ids of the JSON array `$1`.
static STORED_OUTCOMES: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {STORED_OUTCOME_COLUMNS} FROM declarations WHERE {}", Dialect::Sqlite.id_among_json())
});

/// One reading joins the billing feed.
const APPEND_BILLING: &str = "INSERT INTO billing_feed (position, seq, consumption_m3, added_at_ms) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (seq) DO NOTHING";

/// A committed batch: its outcomes, and the highest sequence number now taken.
struct Committed {
    outcomes: Vec<Outcome>,
    last_seq: Option<u64>,
}

/// The connection that stores declarations on SQLite.
pub(super) struct Direct {
    /// `None` once closed.
    conn: Mutex<Option<Connection>>,
    /// The last sequence number committed, so that a batch need not ask: SQLite has one writing
    /// process, and only this connection inserts declarations. Cleared whenever a transaction
    /// does not commit.
    last_seq: Mutex<Option<u64>>,
}

impl Direct {
    /// Opens the database file (already created and migrated through the pool).
    pub(super) fn open(path: &Path) -> Result<Self, rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.execute_batch(SQLITE_PRAGMAS)?;
        Ok(Self { conn: Mutex::new(Some(conn)), last_seq: Mutex::new(None) })
    }

    /// Closes the connection: with the pool's, the last one to close folds the write-ahead log
    /// into the database file and removes it, so that the file alone holds everything.
    pub(super) fn close(&self) {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(Err((_, e))) = conn.map(Connection::close) {
            tracing::warn!(error = %e, "closing the declarations' connection failed");
        }
    }

    /// One attempt at a batch, as `SqlStore::apply_once` on PostgreSQL: with `look_up` false every
    /// id is taken to be new, and a conflicting insert is [`Raced`]. Blocks the calling thread
    /// for the transaction (up to the busy timeout when another connection holds the write lock).
    pub(super) fn apply_once(
        &self,
        batch: &[Incoming],
        now: OffsetDateTime,
        look_up: bool,
    ) -> Result<Result<Vec<Outcome>, Raced>, StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let Some(conn) = conn.as_mut() else {
            return Err(StoreError::Unavailable(Box::new(std::io::Error::other("the store is closed"))));
        };
        let result = self.transaction(conn, batch, now, look_up);
        // Anything but a commit may have left the counter behind the table: read it again next time.
        *self.last_seq.lock().unwrap_or_else(|p| p.into_inner()) = match &result {
            Ok(Ok(committed)) => committed.last_seq,
            _ => None,
        };
        result.map(|r| r.map(|committed| committed.outcomes))
    }

    /// The transaction.
    fn transaction(
        &self,
        conn: &mut Connection,
        batch: &[Incoming],
        now: OffsetDateTime,
        look_up: bool,
    ) -> Result<Result<Committed, Raced>, StoreError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(classify)?;
        let stored = if look_up { stored_outcomes(&tx, &sql::ids_of(batch))? } else { HashMap::new() };
        let meters = meters(&tx, &sql::wanted(batch, &stored))?;
        let mut chains = HashMap::with_capacity(meters.len());
        for (sub, from) in sql::chain_starts(batch, &meters) {
            let chain = match from {
                Some(from) => chain_from(&tx, &sub, from)?,
                None => Chain::new(meters[&sub].last.into_iter().collect()),
            };
            chains.insert(sub, chain);
        }
        let fresh = sql::fresh_count(batch, &stored);
        let known_seq = *self.last_seq.lock().unwrap_or_else(|p| p.into_inner());
        let max = match known_seq {
            Some(max) => max,
            None => tx
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM declarations", [], |r| r.get::<_, i64>(0))
                .map_err(classify)? as u64,
        };
        let seqs = (1..=fresh as u64).map(|i| max + i).collect();
        let mut known = Known { stored, meters, chains };
        let judged = sql::judge(batch, &mut known, seqs, now)?;

        {
            let mut insert = tx.prepare_cached(INSERT_DECLARATION).map_err(classify)?;
            for r in sql::declaration_records(&judged.rows, now) {
                let inserted = insert
                    .execute(rusqlite::params![
                        r.seq,
                        r.id,
                        r.channel,
                        r.device_id,
                        r.subscription,
                        r.meter_serial,
                        r.reading,
                        r.read_at_ms,
                        r.read_at,
                        r.note,
                        r.received_at_ms,
                        r.status,
                        r.code,
                        r.answered_consumption,
                        r.consumption_m3,
                        r.duplicate_of,
                        r.counts,
                        r.fingerprint,
                        r.sender,
                        r.operator,
                        r.office,
                    ])
                    .map_err(classify)?;
                if inserted != 1 {
                    // Stored before, by another request: dropping the transaction rolls it back.
                    return Ok(Err(Raced));
                }
            }
        }
        for &(seq, consumption) in &judged.consumption_updates {
            tx.prepare_cached(SET_CONSUMPTION)
                .and_then(|mut s| s.execute((consumption as i64, seq as i64)))
                .map_err(classify)?;
        }
        {
            let mut set_latest = tx.prepare_cached(SET_LATEST).map_err(classify)?;
            for meter in judged.touched(&known.meters) {
                let Some(last) = meter.last else { continue };
                let seq = match last.source {
                    Source::Declaration(seq) => Some(seq as i64),
                    Source::Billing => None,
                };
                set_latest
                    .execute((
                        seq,
                        last.reading as i64,
                        unix_ms(last.read_at),
                        unix_ms(now),
                        meter.subscription.as_str(),
                    ))
                    .map_err(classify)?;
            }
        }
        let billed = judged.billed();
        if !billed.is_empty() {
            let first: i64 = tx
                .prepare_cached(SQLITE_NEXT_POSITION)
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(classify)?;
            let mut append = tx.prepare_cached(APPEND_BILLING).map_err(classify)?;
            for (&(seq, consumption), position) in billed.iter().zip(first..) {
                append
                    .execute((position, seq as i64, consumption.map(|c| c as i64), unix_ms(now)))
                    .map_err(classify)?;
            }
        }
        tx.commit().map_err(classify)?;
        Ok(Ok(Committed { last_seq: judged.last_seq().or(known_seq), outcomes: judged.outcomes }))
    }
}

fn stored_outcomes(conn: &Connection, ids: &[String]) -> Result<HashMap<String, StoredOutcome>, StoreError> {
    let mut statement = conn.prepare_cached(&STORED_OUTCOMES).map_err(classify)?;
    let mut rows = statement.query([sql::json_text(&ids)?]).map_err(classify)?;
    let mut found = HashMap::with_capacity(ids.len());
    while let Some(row) = rows.next().map_err(classify)? {
        let status: String = row.get(2).map_err(classify)?;
        let code: Option<String> = row.get(3).map_err(classify)?;
        let outcome = StoredOutcome::from_columns(
            row.get(1).map_err(classify)?,
            &status,
            code.as_deref(),
            row.get(4).map_err(classify)?,
            row.get(5).map_err(classify)?,
            row.get(6).map_err(classify)?,
        )?;
        found.insert(row.get(0).map_err(classify)?, outcome);
    }
    Ok(found)
}

fn meters(
    conn: &Connection,
    subscriptions: &std::collections::BTreeSet<String>,
) -> Result<HashMap<String, MeterRecord>, StoreError> {
    let mut found = HashMap::with_capacity(subscriptions.len());
    if subscriptions.is_empty() {
        return Ok(found);
    }
    let mut statement = conn.prepare_cached(&METER_BY_SUBSCRIPTION).map_err(classify)?;
    for subscription in subscriptions {
        let columns = statement
            .query_row([subscription], |r| {
                Ok(MeterColumns(
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            })
            .optional()
            .map_err(classify)?;
        if let Some(columns) = columns {
            let meter = columns.into_record()?;
            found.insert(meter.subscription.to_string(), meter);
        }
    }
    Ok(found)
}

/// As `SqlStore::chain_from`.
fn chain_from(conn: &Connection, subscription: &str, from: OffsetDateTime) -> Result<Chain, StoreError> {
    let mut statement = conn.prepare_cached(CHAIN_FROM).map_err(classify)?;
    let mut rows = statement.query((subscription, unix_ms(from))).map_err(classify)?;
    let mut points = Vec::new();
    while let Some(row) = rows.next().map_err(classify)? {
        points.push(sql::declared_point(
            row.get(0).map_err(classify)?,
            row.get(1).map_err(classify)?,
            row.get(2).map_err(classify)?,
        )?);
    }
    let billed: Option<(Option<i64>, Option<i64>)> = conn
        .prepare_cached(BILLED_POINT)
        .and_then(|mut s| s.query_row([subscription], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(classify)?;
    if let Some((reading, at)) = billed
        && let Some(point) = last_point(None, reading, at)?
    {
        points.push(point);
    }
    Ok(Chain::new(points))
}

/// SQLite's trouble (busy, locked, I/O, full disk, cannot open) is the database being
/// unavailable (503, the client retries); anything else is a fault.
fn classify(err: rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen,
        ) => StoreError::Unavailable(Box::new(err)),
        _ => StoreError::Sqlite(err),
    }
}
