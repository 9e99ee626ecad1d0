//! [`Direct`]: on SQLite, declarations are stored through a connection of their own, driven
//! on the calling thread (the writer's, see `crate::writer`) with rusqlite.
//!
//! sqlx runs each SQLite connection on a worker thread and hands every statement to it and its
//! answer back through a channel: a group of declarations (begin, meters, insert, latest
//! readings, billing, commit) cost six round trips between two threads, each a futex wake-up,
//! and profiles showed a fifth of the server's time in the kernel switching threads. Here the
//! writer's thread runs SQLite itself, with prepared statements bound value by value; the
//! judging is `sql::judge`, shared with PostgreSQL. Everything else (reads, sessions, reviews)
//! still goes through sqlx's pool; SQLite's write lock (`BEGIN IMMEDIATE`, with the pool's 5 s
//! busy timeout) keeps the two apart.
//!
//! What makes a declaration cheap here, each measured by instructions counted under callgrind
//! (`server/examples/apply_cost.rs`):
//! - the meters a transaction judged stay in memory for the next ones ([`Cache`]), until another
//!   connection commits anything, and so do the last sequence number and the billing feed's next
//!   position;
//! - declarations and billing rows are inserted [`CHUNK`] to a statement;
//! - a meter's latest reading is not written anywhere: it is found at the end of the meter's
//!   entries in the chain index (`Dialect::meter_select`), so a declaration dirties one page on a
//!   random spot of the database (that index's) instead of two;
//! - the write-ahead log is copied into the database by another thread ([`Checkpointer`]).

use std::path::Path;
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension as _};
use shared::rules::Chain;
use time::OffsetDateTime;

use super::sql::{
    self, BILLED_POINT, CHAIN_FROM, DECLARATION_COLUMNS, Dialect, FeedEntry, HELD_OF, Held, Known, LATEST_ENTRY,
    MeterColumns, Raced, SET_CONSUMPTION, SQLITE_NEXT_POSITION, SQLITE_PRAGMAS, STORED_OUTCOME_COLUMNS, StoredOutcome,
};
use super::worker::Worker;
use super::{FastMap, Incoming, MeterRecord, Outcome, StoreError, last_point, unix_ms};

/// Rows per multi-row insert: one statement run stores this many rows, so its set-up (cursors
/// opened on the table and each index, then closed) is paid once for them, and the cursors
/// stay where the last row went, where the next one usually goes too. The rows left over go one
/// to a statement: runs of 8 and 2 for them (14 rows as 8 + 2 + 2 + 2) cost more, not less, by
/// callgrind on `apply_cost` (46.1k instructions a declaration against 44.8k in groups of 14,
/// 38.4k against 38.1k in groups of 100).
const CHUNK: usize = 32;

/// `INSERT INTO {table} ({columns}) VALUES (?, …), … {tail}` for `rows` rows.
fn multi_row_insert(table: &str, columns: &str, rows: usize, tail: &str) -> String {
    let width = columns.split(',').count();
    let row = format!("({})", vec!["?"; width].join(", "));
    format!("INSERT INTO {table} ({columns}) VALUES {} {tail}", vec![row; rows].join(", "))
}

/// [`CHUNK`] declarations, and one.
static INSERT_DECLARATIONS: LazyLock<[String; 2]> = LazyLock::new(|| {
    [CHUNK, 1].map(|rows| multi_row_insert("declarations", DECLARATION_COLUMNS, rows, "ON CONFLICT (id) DO NOTHING"))
});

/// [`CHUNK`] billing feed rows, and one.
static APPEND_BILLING: LazyLock<[String; 2]> = LazyLock::new(|| {
    [CHUNK, 1].map(|rows| {
        multi_row_insert("billing_feed", "position, seq, consumption_m3, added_at_ms, kind, replaces", rows, "")
    })
});

/// The outcomes stored for the ids of the JSON array `$1`.
static STORED_OUTCOMES: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {STORED_OUTCOME_COLUMNS} FROM declarations WHERE {}", Dialect::Sqlite.id_among_json())
});

/// A committed batch: its outcomes, the highest sequence number now taken, the billing feed's
/// next position, and its meters as now stored.
struct Committed {
    outcomes: Vec<Outcome>,
    last_seq: Option<u64>,
    next_position: Option<i64>,
    meters: FastMap<String, MeterRecord>,
    held: FastMap<String, Vec<Held>>,
}

/// The connection that stores declarations on SQLite.
pub(super) struct Direct {
    /// `None` once closed.
    conn: Mutex<Option<Connection>>,
    /// What this connection knows without reading: see [`Cache`]. Cleared whenever a
    /// transaction does not commit.
    cache: Mutex<Cache>,
    /// Copies the log into the database file beside the writer: see [`Checkpointer`].
    checkpointer: Checkpointer,
}

/// What the declarations' connection remembers between transactions. SQLite has one writing
/// process, and only this connection inserts declarations (which move meters' latest readings),
/// so what it wrote stays true until another connection commits, which `PRAGMA data_version` tells
/// (it changes on every commit by any other connection, in this process or another: an import, a
/// review decision, a device token). Then the meters are read again.
#[derive(Default)]
struct Cache {
    /// The last sequence number committed, so that a batch need not ask.
    last_seq: Option<u64>,
    /// The billing feed's next position, while no other connection has committed (a review's
    /// approval appends to the feed too): asking cost a twentieth of a one-declaration group.
    next_position: Option<i64>,
    /// `PRAGMA data_version` when the meters and the position above were read or written.
    data_version: Option<i64>,
    /// Meters as stored, with their latest readings, by subscription; at most [`CACHED_METERS`].
    meters: FastMap<String, MeterRecord>,
    /// The declarations held for review of some meters, by subscription (only this connection
    /// stores new ones; a review decision is another connection's commit, which empties this).
    held: FastMap<String, Vec<Held>>,
}

/// The most meters kept between transactions (a few hundred bytes each): a province's active
/// meters fit. Past it, a quarter of them (whichever the map holds first) are let go, to be read
/// again when next needed.
const CACHED_METERS: usize = 200_000;

impl Cache {
    /// Takes back the meters a committed transaction read and moved, and their held
    /// declarations.
    fn keep(&mut self, meters: FastMap<String, MeterRecord>, held: FastMap<String, Vec<Held>>) {
        if self.held.len() + held.len() > CACHED_METERS {
            self.held.clear();
        }
        self.held.extend(held);
        let held = self.meters.len() + meters.len();
        if held > CACHED_METERS {
            let mut dropping = held - CACHED_METERS * 3 / 4;
            self.meters.retain(|_, _| {
                let keep = dropping == 0;
                dropping = dropping.saturating_sub(1);
                keep
            });
        }
        self.meters.extend(meters);
    }
}

impl Direct {
    /// Opens the database file (already created and migrated through the pool).
    pub(super) fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path)?;
        conn.execute_batch(SQLITE_PRAGMAS)?;
        let checkpointer = Checkpointer::start(path)?;
        Ok(Self { conn: Mutex::new(Some(conn)), cache: Mutex::new(Cache::default()), checkpointer })
    }

    /// Closes the connection: with the pool's, the last one to close folds the write-ahead log
    /// into the database file and removes it, so that the file alone holds everything.
    pub(super) fn close(&self) {
        self.checkpointer.stop();
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
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let result = self.transaction(conn, &mut cache, batch, now, look_up);
        match result {
            Ok(Ok(committed)) => {
                cache.last_seq = committed.last_seq;
                cache.next_position = committed.next_position;
                cache.keep(committed.meters, committed.held);
                self.checkpointer.nudge();
                Ok(Ok(committed.outcomes))
            }
            // Anything but a commit may have left the cache ahead of the tables: read them again.
            other => {
                *cache = Cache::default();
                other.map(|r| r.map(|committed| committed.outcomes))
            }
        }
    }

    /// The transaction.
    fn transaction(
        &self,
        conn: &Connection,
        cache: &mut Cache,
        batch: &[Incoming],
        now: OffsetDateTime,
        look_up: bool,
    ) -> Result<Result<Committed, Raced>, StoreError> {
        // The three statements are prepared once and kept, like the others: rusqlite's own
        // transaction would parse `BEGIN IMMEDIATE` and `COMMIT` again for every group.
        run(conn, "BEGIN IMMEDIATE")?;
        let result = self.judge_and_write(conn, cache, batch, now, look_up);
        let result = match result {
            Ok(Ok(committed)) => run(conn, "COMMIT").map(|()| Ok(committed)),
            other => other,
        };
        if !matches!(result, Ok(Ok(_))) && !conn.is_autocommit() {
            // Nothing of a batch that did not commit stays: the next one starts clean.
            if let Err(e) = run(conn, "ROLLBACK") {
                tracing::warn!(error = %e, "rolling back a batch failed");
            }
        }
        result
    }

    /// The transaction's work, between `BEGIN IMMEDIATE` and `COMMIT`.
    fn judge_and_write(
        &self,
        tx: &Connection,
        cache: &mut Cache,
        batch: &[Incoming],
        now: OffsetDateTime,
        look_up: bool,
    ) -> Result<Result<Committed, Raced>, StoreError> {
        let stored = if look_up { stored_outcomes(tx, &sql::ids_of(batch))? } else { FastMap::default() };
        let data_version = tx
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
            .map_err(classify)?;
        if cache.data_version != Some(data_version) {
            // Another connection committed: what it changed is not known here.
            cache.meters.clear();
            cache.held.clear();
            cache.next_position = None;
            cache.data_version = Some(data_version);
        }
        let meters = meters(tx, &mut cache.meters, &sql::wanted(batch, &stored))?;
        let originals = originals(tx, batch)?;
        let mut chains = FastMap::with_capacity_and_hasher(meters.len(), Default::default());
        for (sub, from) in sql::chain_starts(batch, &meters, &originals) {
            let chain = match from {
                Some(from) => chain_from(tx, &sub, from)?,
                None => Chain::new(meters[&sub].last.into_iter().collect()),
            };
            chains.insert(sub, chain);
        }
        let fresh = sql::fresh_count(batch, &stored);
        let known_seq = cache.last_seq;
        let max = match known_seq {
            Some(max) => max,
            None => tx
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM declarations", [], |r| r.get::<_, i64>(0))
                .map_err(classify)? as u64,
        };
        let seqs = (1..=fresh as u64).map(|i| max + i).collect();
        let mut held = FastMap::with_capacity_and_hasher(meters.len(), Default::default());
        for sub in meters.keys() {
            let list = match cache.held.remove(sub) {
                Some(list) => list,
                None => held_of(tx, sub)?,
            };
            held.insert(sub.clone(), list);
        }
        let mut known = Known { stored, meters, chains, held, originals };
        let judged = sql::judge(batch, &mut known, seqs, now)?;

        if !insert_declarations(tx, &judged.rows, now)? {
            // Stored before, by another request: the transaction is rolled back.
            return Ok(Err(Raced));
        }
        for s in &judged.superseded {
            tx.prepare_cached(sql::SUPERSEDE)
                // By name: SQLite numbers `$N` parameters in order of appearance, not by N.
                .and_then(|mut st| {
                    st.execute(rusqlite::named_params! {
                        "$1": s.seq as i64, "$2": sql::superseded_reason(s.by), "$3": unix_ms(now)
                    })
                })
                .map_err(classify)?;
        }
        for &(seq, consumption) in &judged.consumption_updates {
            tx.prepare_cached(SET_CONSUMPTION)
                .and_then(|mut s| s.execute((consumption as i64, seq as i64)))
                .map_err(classify)?;
        }
        let mut entries = judged.billed();
        entries.extend(replacements(tx, &judged.corrected())?);
        let next_position = append_billing(tx, &entries, cache.next_position, now)?;
        let last_seq = judged.last_seq().or(known_seq);
        Ok(Ok(Committed { last_seq, next_position, outcomes: judged.outcomes, meters: known.meters, held: known.held }))
    }
}

/// Runs a statement without parameters or rows, prepared once.
fn run(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(|_| ()).map_err(classify)
}

/// Inserts `rows` through the statements `texts` ([`CHUNK`] rows, one row), `bind` binding a
/// row's values from the given parameter index on; the number of rows inserted.
fn insert_rows<R>(
    conn: &Connection,
    texts: &[String; 2],
    rows: &[R],
    width: usize,
    bind: impl Fn(&mut rusqlite::Statement<'_>, usize, &R) -> rusqlite::Result<()>,
) -> Result<usize, StoreError> {
    let mut inserted = 0;
    let mut chunks = rows.chunks_exact(CHUNK);
    if chunks.len() > 0 {
        let mut statement = conn.prepare_cached(&texts[0]).map_err(classify)?;
        for chunk in chunks.by_ref() {
            for (i, row) in chunk.iter().enumerate() {
                bind(&mut statement, 1 + i * width, row).map_err(classify)?;
            }
            inserted += statement.raw_execute().map_err(classify)?;
        }
    }
    if !chunks.remainder().is_empty() {
        let mut statement = conn.prepare_cached(&texts[1]).map_err(classify)?;
        for row in chunks.remainder() {
            bind(&mut statement, 1, row).map_err(classify)?;
            inserted += statement.raw_execute().map_err(classify)?;
        }
    }
    Ok(inserted)
}

/// Inserts the new declarations; false when one of them was stored before (a race).
#[inline(never)]
fn insert_declarations(conn: &Connection, rows: &[sql::NewRow<'_>], now: OffsetDateTime) -> Result<bool, StoreError> {
    let records = sql::declaration_records(rows, now);
    let inserted = insert_rows(conn, &INSERT_DECLARATIONS, &records, 22, |s, at, r| {
        s.raw_bind_parameter(at, r.seq)?;
        s.raw_bind_parameter(at + 1, r.id)?;
        s.raw_bind_parameter(at + 2, r.channel)?;
        s.raw_bind_parameter(at + 3, &r.device_id)?;
        s.raw_bind_parameter(at + 4, r.subscription)?;
        s.raw_bind_parameter(at + 5, r.meter_serial)?;
        s.raw_bind_parameter(at + 6, r.reading)?;
        s.raw_bind_parameter(at + 7, r.read_at_ms)?;
        s.raw_bind_parameter(at + 8, r.read_at)?;
        s.raw_bind_parameter(at + 9, r.note)?;
        s.raw_bind_parameter(at + 10, r.received_at_ms)?;
        s.raw_bind_parameter(at + 11, r.status)?;
        s.raw_bind_parameter(at + 12, r.code)?;
        s.raw_bind_parameter(at + 13, r.answered_consumption)?;
        s.raw_bind_parameter(at + 14, r.consumption_m3)?;
        s.raw_bind_parameter(at + 15, r.duplicate_of)?;
        s.raw_bind_parameter(at + 16, r.counts)?;
        s.raw_bind_parameter(at + 17, r.fingerprint)?;
        s.raw_bind_parameter(at + 18, r.sender)?;
        s.raw_bind_parameter(at + 19, r.operator)?;
        s.raw_bind_parameter(at + 20, r.office)?;
        s.raw_bind_parameter(at + 21, &r.supersedes)
    })?;
    Ok(inserted == records.len())
}

/// Appends the readings that count to the billing feed, in sequence order, from `next` (the feed's
/// next position, read from the feed when not known); the next position after them, when known.
#[inline(never)]
fn append_billing(
    conn: &Connection,
    billed: &[FeedEntry],
    next: Option<i64>,
    now: OffsetDateTime,
) -> Result<Option<i64>, StoreError> {
    if billed.is_empty() {
        return Ok(next);
    }
    let first: i64 = match next {
        Some(next) => next,
        None => conn
            .prepare_cached(SQLITE_NEXT_POSITION)
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(classify)?,
    };
    let added_at_ms = unix_ms(now);
    let rows: Vec<(i64, &FeedEntry)> = (first..).zip(billed).collect();
    insert_rows(conn, &APPEND_BILLING, &rows, 6, |s, at, &(position, entry)| {
        s.raw_bind_parameter(at, position)?;
        s.raw_bind_parameter(at + 1, entry.seq as i64)?;
        s.raw_bind_parameter(at + 2, sql::opt_i64(entry.consumption))?;
        s.raw_bind_parameter(at + 3, added_at_ms)?;
        s.raw_bind_parameter(at + 4, entry.kind.as_str())?;
        s.raw_bind_parameter(at + 5, sql::opt_i64(entry.replaces))
    })?;
    Ok(Some(first + rows.len() as i64))
}

/// The earlier declarations the batch's corrections name (no query when none does).
fn originals(conn: &Connection, batch: &[Incoming]) -> Result<FastMap<String, sql::Original>, StoreError> {
    let ids = sql::corrected_ids(batch);
    let mut found = FastMap::default();
    if ids.is_empty() {
        return Ok(found);
    }
    let mut statement = conn.prepare_cached(&sql::originals_query(Dialect::Sqlite)).map_err(classify)?;
    let mut rows = statement.query([sql::json_text(&ids)?]).map_err(classify)?;
    while let Some(row) = rows.next().map_err(classify)? {
        let original = sql::Original::from_columns(
            row.get(1).map_err(classify)?,
            row.get(2).map_err(classify)?,
            row.get(3).map_err(classify)?,
            row.get(4).map_err(classify)?,
            row.get(5).map_err(classify)?,
            row.get(6).map_err(classify)?,
            row.get(7).map_err(classify)?,
        )?;
        found.insert(row.get(0).map_err(classify)?, original);
    }
    Ok(found)
}

fn stored_outcomes(conn: &Connection, ids: &[String]) -> Result<FastMap<String, StoredOutcome>, StoreError> {
    let mut statement = conn.prepare_cached(&STORED_OUTCOMES).map_err(classify)?;
    let mut rows = statement.query([sql::json_text(&ids)?]).map_err(classify)?;
    let mut found = FastMap::with_capacity_and_hasher(ids.len(), Default::default());
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
            row.get::<_, Option<String>>(7).map_err(classify)?.as_deref(),
        )?;
        found.insert(row.get(0).map_err(classify)?, outcome);
    }
    Ok(found)
}

/// The batch's meters, taken from `cached` where they are (the transaction hands them back when
/// it commits) and read otherwise.
fn meters(
    conn: &Connection,
    cached: &mut FastMap<String, MeterRecord>,
    subscriptions: &std::collections::BTreeSet<String>,
) -> Result<FastMap<String, MeterRecord>, StoreError> {
    let mut found = FastMap::with_capacity_and_hasher(subscriptions.len(), Default::default());
    // Taken from rusqlite's cache at the first meter not in memory, and kept for the others:
    // each trip through that cache hashes the statement's text and clears its bindings.
    let mut statement = None;
    for subscription in subscriptions {
        if let Some((key, meter)) = cached.remove_entry(subscription) {
            found.insert(key, meter);
            continue;
        }
        let statement = match &mut statement {
            Some(statement) => statement,
            None => statement.insert(conn.prepare_cached(Dialect::Sqlite.meter_by_subscription()).map_err(classify)?),
        };
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
                    r.get(9)?,
                    r.get(10)?,
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

/// As `sql::replacements`: the feed entries that replace those of readings stored before.
fn replacements(
    conn: &Connection,
    changes: &[(u64, shared::wire::BillingKind, Option<u64>)],
) -> Result<Vec<FeedEntry>, StoreError> {
    let mut entries = Vec::with_capacity(changes.len());
    for &(seq, kind, consumption) in changes {
        let latest: Option<(i64, Option<i64>)> = conn
            .prepare_cached(LATEST_ENTRY)
            .and_then(|mut s| s.query_row([seq as i64], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(classify)?;
        let latest = latest.map(|(position, had)| (position as u64, sql::opt_u64(had)));
        entries.extend(FeedEntry::replacing(seq, kind, consumption, latest));
    }
    Ok(entries)
}

/// As `SqlStore::held_of`.
fn held_of(conn: &Connection, subscription: &str) -> Result<Vec<Held>, StoreError> {
    let mut statement = conn.prepare_cached(HELD_OF).map_err(classify)?;
    let mut rows = statement.query([subscription]).map_err(classify)?;
    let mut held = Vec::new();
    while let Some(row) = rows.next().map_err(classify)? {
        let code: Option<String> = row.get(3).map_err(classify)?;
        held.extend(sql::held_from(
            row.get(0).map_err(classify)?,
            row.get(1).map_err(classify)?,
            row.get(2).map_err(classify)?,
            code.as_deref(),
            row.get(4).map_err(classify)?,
        )?);
    }
    Ok(held)
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

/// Copies the write-ahead log into the database file on a thread and connection of its own, so
/// that the writer does not: a checkpoint of SQLite's automatic kind ran on the committing
/// connection, and under a steady stream of batches one commit in fifty carried it (64 MiB of
/// log copied and the database file flushed, ~100 ms in which nothing was stored).
///
/// The checkpoints here are PASSIVE: they copy what is committed without waiting for, or
/// holding up, the writer. The log can only start again from its beginning once everything in
/// it is copied, which a checkpoint racing a stream of commits seldom sees; the connections'
/// automatic checkpoint at 16,384 pages stays as the backstop, and finds all but the last few
/// commits already copied.
struct Checkpointer {
    signal: Arc<(Mutex<Wanted>, Condvar)>,
    thread: Worker,
}

#[derive(Default)]
struct Wanted {
    /// A commit added to the log since the last checkpoint.
    pending: bool,
    stopping: bool,
}

/// The least time between two checkpoints: a page written again meanwhile (a meter's, the
/// right edge of an index) is copied once, and the database file is flushed at most four times a
/// second.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

impl Checkpointer {
    fn start(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path)?;
        conn.execute_batch(SQLITE_PRAGMAS)?;
        let signal = Arc::new((Mutex::new(Wanted::default()), Condvar::new()));
        let shared = signal.clone();
        let thread = Worker::start("kontor-checkpoint", move || {
            checkpoints(&conn, &shared);
            if let Err((_, e)) = conn.close() {
                tracing::warn!(error = %e, "closing the checkpoints' connection failed");
            }
        })?;
        Ok(Self { signal, thread })
    }

    /// Tells the thread that the log has grown.
    fn nudge(&self) {
        let (wanted, wake) = &*self.signal;
        let mut wanted = wanted.lock().unwrap_or_else(|p| p.into_inner());
        if !wanted.pending {
            wanted.pending = true;
            wake.notify_one();
        }
    }

    /// Stops the thread and closes its connection (a checkpoint under way ends first).
    fn stop(&self) {
        {
            let (wanted, wake) = &*self.signal;
            wanted.lock().unwrap_or_else(|p| p.into_inner()).stopping = true;
            wake.notify_one();
        }
        self.thread.join();
    }
}

impl Drop for Checkpointer {
    /// A store dropped without `close` (a test's, say) does not leave its thread behind.
    fn drop(&mut self) {
        self.stop();
    }
}

/// The checkpoint thread: waits for a commit, copies the log, rests, until told to stop.
fn checkpoints(conn: &Connection, signal: &(Mutex<Wanted>, Condvar)) {
    let (wanted, wake) = signal;
    loop {
        {
            let mut state = wanted.lock().unwrap_or_else(|p| p.into_inner());
            while !state.pending && !state.stopping {
                state = wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if state.stopping {
                return;
            }
            state.pending = false;
        }
        // (busy, pages in the log, pages copied); a busy checkpoint (another one under way) or a
        // failed one is tried again after the next commit, and the backstop remains.
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((busy, log, copied)) => tracing::trace!(busy, log, copied, "checkpoint"),
            Err(e) => tracing::warn!(error = %e, "a checkpoint failed"),
        }
        let state = wanted.lock().unwrap_or_else(|p| p.into_inner());
        let (state, _) =
            wake.wait_timeout_while(state, CHECKPOINT_INTERVAL, |s| !s.stopping).unwrap_or_else(|p| p.into_inner());
        if state.stopping {
            return;
        }
    }
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

#[cfg(test)]
mod tests {
    /// The build settings in `.cargo/config.toml` reach SQLite's own build: a build without them
    /// stores declarations 5 % slower, and nothing else would show it.
    #[test]
    fn sqlite_is_built_without_global_memory_bookkeeping() {
        let conn = rusqlite::Connection::open_in_memory().expect("an in-memory database");
        let mut statement = conn.prepare("PRAGMA compile_options").expect("compile options");
        let options: Vec<String> =
            statement.query_map([], |r| r.get(0)).expect("compile options").collect::<Result<_, _>>().expect("a row");
        assert!(options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"), "memory statistics are on: {options:?}");
        assert!(!options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"), "memory management is on: {options:?}");
    }
}
