//! [`SqlStore`]: the store on SQLite or PostgreSQL through sqlx's `Any` driver.
//!
//! One query text serves both backends (numbered `$N` parameters, text ids, millisecond times);
//! the few places where they differ go through [`Dialect`]. SQLite runs in WAL mode and commits
//! without waiting for the disk; `Flusher` flushes the log before any request is answered, which
//! gives `synchronous = FULL`'s guarantee. PostgreSQL is durable by default. The writer
//! (`crate::writer`) batches requests into one transaction each, so a commit's flush is shared by
//! many declarations.
//!
//! Declarations are judged once for both databases ([`judge`], pure, over what the store
//! [`Known`]s); PostgreSQL reads and writes them here, SQLite through its own connection on the
//! writer's thread (`direct.rs`).

use std::collections::BTreeSet;
use std::sync::LazyLock;

use async_trait::async_trait;
use shared::rules::{self, Candidate, Chain, Decision, Point, Source};
use shared::wire::BillingKind;
use shared::{Code, MeterSerial, Status, SubscriptionNumber};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::console::{STORED_COLUMNS, stored_from_row};
use super::direct::Direct;
use super::flusher::Flusher;
use super::{
    AuditEntry, AuditRecord, BillingEntry, ComplaintRecord, Counts, FailureWindow, FastMap, Filed, Identity, Incoming,
    MeterRecord, NewComplaint, NewSession, OperatorRecord, Outcome, ReviewRequest, ReviewResult, Session, Store,
    StoreError, StoredDeclaration, SubscriberRow, TrustedBrowser, from_unix_ms, last_point, unix_ms,
};

/// Which database the URL named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    /// Whether this database's declarations are stored on the calling thread, so that the writer
    /// needs a thread of its own: SQLite's are (`Direct` blocks it for the transaction); the
    /// PostgreSQL driver's sockets belong to the shared runtime's reactor.
    pub fn writes_on_own_thread(self) -> bool {
        self == Self::Sqlite
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How many schema migrations this build applies to a SQLite store (`kontor verify-backup`
/// checks a copy has them all).
pub fn sqlite_migrations() -> usize {
    SQLITE_MIGRATIONS.iter().count()
}

/// Every SQLite connection's settings: the write-ahead log, commits that do not wait for the disk
/// (the `Flusher` flushes the log before anyone is answered), a 5 s wait for the write lock, and
/// checkpoints every 16,384 pages (64 MiB) of log. The page cache keeps SQLite's default 2 MiB:
/// SQLite walks a connection's whole cache at the end of every write transaction and whenever
/// another connection has written, so a 64 MiB cache made each small commit slower (the bench's
/// one-declaration requests: 77 µs of server time each with it, 60 µs without).
pub(super) const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA busy_timeout = 5000; PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 16384;";

/// The store on a SQL database.
pub struct SqlStore {
    pub(super) pool: AnyPool,
    pub(super) dialect: Dialect,
    /// SQLite on a file: the log flush that makes commits durable (see [`Flusher`]).
    wal: Option<Flusher>,
    /// SQLite: the connection that stores declarations, driven on the writer's own thread.
    direct: Option<Direct>,
}

impl SqlStore {
    /// Connects to `url` (`sqlite://PATH?mode=rwc` or `postgres://…`) and brings its schema up to
    /// date. A SQLite file's folder is created when missing.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        sqlx::any::install_default_drivers();
        let dialect = Dialect::from_url(url)
            .with_context(|| format!("unsupported database url {url:?}: use sqlite:// or postgres://"))?;
        let mut wal = None;
        let mut sqlite_path = std::path::PathBuf::new();
        if dialect == Dialect::Sqlite {
            let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or("");
            if path.is_empty() || path.starts_with(':') || url.contains("mode=memory") {
                anyhow::bail!(
                    "{url:?} is an in-memory database, which loses every declaration when the server stops: \
                     give a file, sqlite://PATH?mode=rwc"
                );
            }
            if let Some(parent) = std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            wal = Some(Flusher::start(path).context("starting the log flusher")?);
            sqlite_path = path.into();
        }
        let pool = AnyPoolOptions::new()
            // PostgreSQL: two writer transactions, and the reads every request makes first
            // (identity limits, tokens, meters); 8 ran out at 1,000 mixed requests a second.
            .max_connections(if dialect == Dialect::Sqlite { 4 } else { 16 })
            .acquire_timeout(std::time::Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        sqlx::raw_sql(SQLITE_PRAGMAS).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .with_context(|| format!("connecting to {}", redact(url)))?;
        let migrator = match dialect {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&pool).await.context("migrating the database")?;
        let direct = match dialect {
            Dialect::Sqlite => Some(Direct::open(&sqlite_path).context("opening the declarations' connection")?),
            Dialect::Postgres => None,
        };
        Ok(Self { pool, dialect, wal, direct })
    }

    /// A transaction that will write. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`, waiting up to the busy timeout): a deferred transaction that read first would
    /// fail with `SQLITE_BUSY_SNAPSHOT` when a write from another connection (a console session,
    /// an audit entry, a device token) committed in between.
    pub(super) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db),
            Dialect::Postgres => self.pool.begin().await.map_err(db),
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Closes every connection. On SQLite the last one to close folds the write-ahead log into
    /// the database file and removes it: after `close`, the file alone is the whole store.
    pub async fn close(&self) {
        if let Some(direct) = &self.direct {
            direct.close();
        }
        self.pool.close().await;
        if let Some(wal) = &self.wal {
            wal.stop();
        }
    }
}

/// The URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}@{}", &url[..scheme + 3], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// How many times a batch is tried before the error is answered (503: the client keeps it).
const MAX_ATTEMPTS: u32 = 10;

/// The wait before retry `attempt` (from 0): 5 ms doubling, up to 640 ms, plus up to as much
/// again at random so that the transactions that collided do not collide again.
fn retry_wait(attempt: u32) -> std::time::Duration {
    let base = 5u64 << attempt.min(7);
    let jitter = crate::tokens::random_bytes::<2>().map_or(0, |b| u64::from(u16::from_le_bytes(b)) % (base + 1));
    std::time::Duration::from_millis(base + jitter)
}

/// Runs a transaction again while the database asks for it (see [`StoreError::should_retry`]),
/// at most [`MAX_ATTEMPTS`] times, after [`retry_wait`]s. Only for work that is all in one
/// transaction, so that a failed attempt left nothing behind.
async fn retrying<T, F>(mut attempt: impl FnMut() -> F) -> Result<T, StoreError>
where
    F: Future<Output = Result<T, StoreError>>,
{
    let mut n = 0;
    loop {
        match attempt().await {
            Err(e) if e.should_retry() && n + 1 < MAX_ATTEMPTS => {
                tracing::info!(error = %crate::writer::error_chain(&e), attempt = n, "the database asked to retry");
                tokio::time::sleep(retry_wait(n)).await;
                n += 1;
            }
            other => return other,
        }
    }
}

pub(super) fn db(err: sqlx::Error) -> StoreError {
    StoreError::classify(err)
}

impl SqlStore {
    /// The one count a `SELECT COUNT(*) …` answers.
    pub(super) async fn count(&self, sql: &'static str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query(sql).fetch_one(&self.pool).await.map_err(db)?.try_get(0).map_err(db)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// A meter with its latest counting declaration, in [`MeterColumns`]' order: the registry's
/// columns of `meters AS m`, then `d`, the latest declaration. Callers add the `WHERE` on `m`;
/// [`Dialect::meter_select`] adds how each database finds `d`.
const METER_FIELDS: &str = "SELECT m.subscription, m.meter_serial, m.digits, m.avg_daily_m3, m.max_hourly_m3, \
     m.phone, m.billed_reading, m.billed_at_ms, d.seq, d.reading, d.read_at_ms FROM meters AS m";

/// The latest counting declaration of meter `m`: the last in reading time (on a tie, the later
/// stored), one step back from the end of the meter's entries in the `declarations_chain` index.
const LATEST_OF_M: &str = "FROM declarations WHERE subscription = m.subscription AND counts \
     ORDER BY read_at_ms DESC, seq DESC LIMIT 1";

impl Dialect {
    /// [`METER_FIELDS`] with the join that finds `d`. SQLite has no `LATERAL`; its join on the
    /// latest's `seq` is a look-up by rowid. PostgreSQL plans that same join as a hash join over
    /// every declaration while the table's statistics are young, so it takes `LATERAL` instead.
    fn meter_select(self) -> String {
        match self {
            Dialect::Sqlite => {
                format!("{METER_FIELDS} LEFT JOIN declarations AS d ON d.seq = (SELECT seq {LATEST_OF_M})")
            }
            Dialect::Postgres => {
                format!("{METER_FIELDS} LEFT JOIN LATERAL (SELECT seq, reading, read_at_ms {LATEST_OF_M}) AS d ON true")
            }
        }
    }

    /// A meter by its subscription (`$1`), with its latest reading.
    pub(super) fn meter_by_subscription(self) -> &'static str {
        static TEXTS: LazyLock<[String; 2]> = LazyLock::new(|| {
            [Dialect::Sqlite, Dialect::Postgres].map(|d| format!("{} WHERE m.subscription = $1", d.meter_select()))
        });
        match self {
            Dialect::Sqlite => &TEXTS[0],
            Dialect::Postgres => &TEXTS[1],
        }
    }
}

pub(super) fn meter_from_row(row: &AnyRow) -> Result<MeterRecord, StoreError> {
    MeterColumns(
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
        row.try_get(5)?,
        row.try_get(6)?,
        row.try_get(7)?,
        row.try_get(8)?,
        row.try_get(9)?,
        row.try_get(10)?,
    )
    .into_record()
}

/// A meter row as read, in [`METER_FIELDS`]' order: the registry's columns, the billed reading
/// and time, then the latest counting declaration's seq, reading and time.
pub(super) struct MeterColumns(
    pub(super) String,
    pub(super) String,
    pub(super) i64,
    pub(super) Option<f64>,
    pub(super) f64,
    pub(super) Option<String>,
    pub(super) Option<i64>,
    pub(super) Option<i64>,
    pub(super) Option<i64>,
    pub(super) Option<i64>,
    pub(super) Option<i64>,
);

impl MeterColumns {
    pub(super) fn into_record(self) -> Result<MeterRecord, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("meter row: {what}"));
        let billed = last_point(None, self.6, self.7)?;
        let declared = match self.8 {
            Some(seq) => last_point(Some(seq), self.9, self.10)?,
            None => None,
        };
        Ok(MeterRecord {
            subscription: SubscriptionNumber::parse(&self.0).map_err(|_| corrupt("subscription"))?,
            meter_serial: MeterSerial::parse(&self.1).map_err(|_| corrupt("serial"))?,
            digits: u8::try_from(self.2).map_err(|_| corrupt("digits"))?,
            avg_daily_m3: self.3,
            max_hourly_m3: self.4,
            phone: self.5,
            billed,
            last: rules::later(billed, declared),
        })
    }
}

/// What the batch needs to know about an id stored before.
pub(super) struct StoredOutcome {
    seq: u64,
    status: Status,
    code: Option<Code>,
    consumption: Option<u64>,
    duplicate_of: Option<u64>,
    fingerprint: String,
    supersedes: Option<Uuid>,
}

/// The columns a stored outcome is read from, in [`StoredOutcome::from_columns`]'s order.
pub(super) const STORED_OUTCOME_COLUMNS: &str =
    "id, seq, status, code, answered_consumption, duplicate_of, fingerprint, supersedes";

impl StoredOutcome {
    /// From the columns after `id` of [`STORED_OUTCOME_COLUMNS`].
    pub(super) fn from_columns(
        seq: i64,
        status: &str,
        code: Option<&str>,
        consumption: Option<i64>,
        duplicate_of: Option<i64>,
        fingerprint: String,
        supersedes: Option<&str>,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            supersedes: supersedes.and_then(|id| Uuid::parse_str(id).ok()),
            seq: seq as u64,
            status: Status::from_str_opt(status).ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
            code: code.and_then(Code::from_str_opt),
            consumption: opt_u64(consumption),
            duplicate_of: opt_u64(duplicate_of),
            fingerprint,
        })
    }

    fn replay(&self, id: Uuid, fingerprint: &str) -> Outcome {
        if self.fingerprint != fingerprint {
            return Outcome {
                id,
                status: Status::Rejected,
                code: Some(Code::IdConflict),
                consumption_m3: None,
                tracking_seq: None,
                replayed: false,
                supersedes: None,
            };
        }
        Outcome {
            id,
            status: self.status,
            code: self.code,
            consumption_m3: self.consumption,
            tracking_seq: tracking_seq(self.status, self.seq, self.duplicate_of),
            replayed: true,
            supersedes: self.supersedes,
        }
    }
}

fn tracking_seq(status: Status, seq: u64, duplicate_of: Option<u64>) -> Option<u64> {
    (status != Status::Rejected).then_some(duplicate_of.unwrap_or(seq))
}

/// A row to insert, decided in memory.
pub(super) struct NewRow<'a> {
    pub(super) seq: u64,
    pub(super) item: &'a Incoming,
    pub(super) decision: Decision,
    /// The earlier declaration this one replaced, as its sender's correction.
    pub(super) supersedes: Option<Uuid>,
}

pub(super) fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

pub(super) fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.and_then(|v| i64::try_from(v).ok())
}

/// The counting readings of meter `$1` from the last one at or before `$2` (ms) onwards, in
/// reading order: (seq, reading, read_at_ms).
pub(super) const CHAIN_FROM: &str = "SELECT seq, reading, read_at_ms FROM declarations \
     WHERE subscription = $1 AND counts AND read_at_ms >= COALESCE( \
       (SELECT MAX(read_at_ms) FROM declarations WHERE subscription = $1 AND counts AND read_at_ms <= $2), $2) \
     ORDER BY read_at_ms, seq";

/// A declaration's point in its meter's chain, from a [`CHAIN_FROM`] row.
pub(super) fn declared_point(seq: i64, reading: Option<i64>, read_at_ms: i64) -> Result<Point, StoreError> {
    Ok(Point {
        source: Source::Declaration(seq as u64),
        reading: reading.unwrap_or_default() as u64,
        read_at: from_unix_ms(read_at_ms)?,
    })
}

/// Meter `$1`'s billed reading: (billed_reading, billed_at_ms).
pub(super) const BILLED_POINT: &str = "SELECT billed_reading, billed_at_ms FROM meters WHERE subscription = $1";

/// PostgreSQL: the meters of the JSON array of subscriptions `$1`. `= ANY(ARRAY(…))` walks the
/// primary key; `IN (SELECT …)` over a JSON set is planned as a scan of every meter.
const AMONG_JSON: &str = "m.subscription = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb)))";

/// PostgreSQL: locks the meters of [`AMONG_JSON`], in order (a batch's, or a review's one).
pub(super) static LOCK_METERS: LazyLock<String> =
    LazyLock::new(|| format!("SELECT 1 FROM meters AS m WHERE {AMONG_JSON} ORDER BY m.subscription FOR UPDATE"));

/// PostgreSQL: locks the meters of [`AMONG_JSON`] as [`LOCK_METERS`] does, then hands out `$2`
/// sequence numbers. The filter takes the locks before the numbers, and even when `$2` is 0.
static LOCK_AND_NUMBER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH locked AS MATERIALIZED ({}) \
         SELECT nextval(pg_get_serial_sequence('declarations', 'seq')) FROM generate_series(1, $2::bigint) \
         WHERE (SELECT count(*) FROM locked) >= 0",
        LOCK_METERS.as_str()
    )
});

/// PostgreSQL: the meters of [`AMONG_JSON`] with their latest readings.
static METERS_AMONG: LazyLock<String> =
    LazyLock::new(|| format!("{} WHERE {AMONG_JSON}", Dialect::Postgres.meter_select()));

/// A batch failed because another process stored one of its ids first: start again.
pub(super) struct Raced;

impl SqlStore {
    async fn stored_outcomes(
        &self,
        conn: &mut AnyConnection,
        ids: &[String],
    ) -> Result<FastMap<String, StoredOutcome>, StoreError> {
        let sql = format!("SELECT {STORED_OUTCOME_COLUMNS} FROM declarations WHERE {}", self.dialect.id_among_json());
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(json_text(&ids)?).fetch_all(&mut *conn).await.map_err(db)?;
        let mut found = FastMap::with_capacity_and_hasher(rows.len(), Default::default());
        for row in rows {
            let status: String = row.try_get(2)?;
            let code: Option<String> = row.try_get(3)?;
            let outcome = StoredOutcome::from_columns(
                row.try_get(1)?,
                &status,
                code.as_deref(),
                row.try_get(4)?,
                row.try_get(5)?,
                row.try_get(6)?,
                row.try_get::<Option<String>, _>(7)?.as_deref(),
            )?;
            found.insert(row.try_get::<String, _>(0)?, outcome);
        }
        Ok(found)
    }

    /// Locks the batch's meters on PostgreSQL until the commit and hands out `count` sequence
    /// numbers, in one round trip. `among` is `subscriptions` as the JSON the statements take.
    async fn lock_and_number(
        &self,
        conn: &mut AnyConnection,
        subscriptions: &BTreeSet<String>,
        among: &str,
        count: usize,
    ) -> Result<Vec<u64>, StoreError> {
        if subscriptions.is_empty() && count == 0 {
            return Ok(Vec::new());
        }
        // Locking the meters serialises declarations for one meter across processes; the sorted
        // order keeps two batches from deadlocking.
        let seqs: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(LOCK_AND_NUMBER.as_str()))
            .bind(among)
            .bind(count as i64)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        if seqs.len() != count {
            return Err(StoreError::Corrupt(format!("asked for {count} sequence numbers, got {}", seqs.len())));
        }
        Ok(seqs.into_iter().map(|s| s as u64).collect())
    }

    /// The batch's meters on PostgreSQL, read once [`Self::lock_and_number`] holds their locks,
    /// by a statement of its own: its snapshot holds every declaration committed for these meters
    /// (a row lock waited on inside the same statement would refresh the meter's row, not the
    /// declarations joined to it).
    async fn locked_meters(
        &self,
        conn: &mut AnyConnection,
        subscriptions: &BTreeSet<String>,
        among: &str,
    ) -> Result<FastMap<String, MeterRecord>, StoreError> {
        let mut found = FastMap::with_capacity_and_hasher(subscriptions.len(), Default::default());
        if subscriptions.is_empty() {
            return Ok(found);
        }
        let rows =
            sqlx::query(AssertSqlSafe(METERS_AMONG.as_str())).bind(among).fetch_all(&mut *conn).await.map_err(db)?;
        for row in rows {
            let meter = meter_from_row(&row)?;
            found.insert(meter.subscription.to_string(), meter);
        }
        Ok(found)
    }

    /// The counting readings of a meter from the last one before `from` onwards, with the billed
    /// reading, for a declaration that lands before the meter's latest reading.
    pub(super) async fn chain_from(
        &self,
        conn: &mut AnyConnection,
        meter: &MeterRecord,
        from: OffsetDateTime,
    ) -> Result<Chain, StoreError> {
        let rows = sqlx::query(CHAIN_FROM)
            .bind(meter.subscription.as_str())
            .bind(unix_ms(from))
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        let mut points = Vec::with_capacity(rows.len() + 1);
        for row in rows {
            points.push(declared_point(row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)?);
        }
        let billed =
            sqlx::query(BILLED_POINT).bind(meter.subscription.as_str()).fetch_optional(&mut *conn).await.map_err(db)?;
        if let Some(row) = billed
            && let Some(point) = last_point(None, row.try_get(0)?, row.try_get(1)?)?
        {
            points.push(point);
        }
        Ok(Chain::new(points))
    }

    /// Inserts a judged batch's declarations and appends those that count to the billing feed,
    /// in one statement on PostgreSQL. `Err(Raced)` when another process stored one of the ids
    /// first (the caller rolls back).
    async fn insert_judged(
        &self,
        conn: &mut AnyConnection,
        judged: &Judged<'_>,
        now: OffsetDateTime,
    ) -> Result<Result<(), Raced>, StoreError> {
        if judged.rows.is_empty() {
            return Ok(Ok(()));
        }
        let billed = judged.billed();
        let inserted: i64 = sqlx::query_scalar(AssertSqlSafe(INSERT_AND_BILL.as_str()))
            .bind(declarations_json(&judged.rows, now)?)
            .bind(billed_json(&billed)?)
            .bind(billed.len() as i64)
            .bind(unix_ms(now))
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?;
        Ok(if inserted == judged.rows.len() as i64 { Ok(()) } else { Err(Raced) })
    }

    /// One attempt at a batch on PostgreSQL (SQLite's is [`super::direct::Direct::apply_once`]).
    /// With `look_up` false it assumes every id is new (the common case) and lets the UNIQUE
    /// constraint say otherwise: a conflicting insert is [`Raced`], and the retry looks the ids up
    /// first.
    async fn apply_once(
        &self,
        batch: &[Incoming],
        now: OffsetDateTime,
        look_up: bool,
    ) -> Result<Result<Vec<Outcome>, Raced>, StoreError> {
        let mut tx = self.begin_write().await?;
        let stored = if look_up { self.stored_outcomes(&mut tx, &ids_of(batch)).await? } else { FastMap::default() };
        let wanted = wanted(batch, &stored);
        let among = json_text(&wanted)?;
        let seqs = self.lock_and_number(&mut tx, &wanted, &among, fresh_count(batch, &stored)).await?;
        let meters = self.locked_meters(&mut tx, &wanted, &among).await?;
        let originals = self.originals(&mut tx, batch).await?;
        let mut chains = FastMap::default();
        for (sub, from) in chain_starts(batch, &meters, &originals) {
            let chain = match from {
                Some(from) => self.chain_from(&mut tx, &meters[&sub], from).await?,
                None => Chain::new(meters[&sub].last.into_iter().collect()),
            };
            chains.insert(sub, chain);
        }
        let held = self.held_among(&mut tx, &meters, &among).await?;
        let mut known = Known { stored, meters, chains, held, originals };
        let judged = judge(batch, &mut known, seqs, now)?;
        if let Err(raced) = self.insert_judged(&mut tx, &judged, now).await? {
            tx.rollback().await.map_err(db)?;
            return Ok(Err(raced));
        }
        for s in &judged.superseded {
            sqlx::query(SUPERSEDE)
                .bind(s.seq as i64)
                .bind(superseded_reason(s.by))
                .bind(unix_ms(now))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        // Rare (a declaration landing before later ones): after the insert, since the later one
        // may be of this batch.
        for &(seq, consumption) in &judged.consumption_updates {
            sqlx::query(SET_CONSUMPTION)
                .bind(consumption as i64)
                .bind(seq as i64)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let corrections = replacements(&mut tx, &judged.corrected()).await?;
        self.append_billing(&mut tx, &corrections, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(Ok(judged.outcomes))
    }

    /// The earlier declarations the batch's corrections name (no query when none does).
    async fn originals(
        &self,
        conn: &mut AnyConnection,
        batch: &[Incoming],
    ) -> Result<FastMap<String, Original>, StoreError> {
        let ids = corrected_ids(batch);
        let mut found = FastMap::default();
        if ids.is_empty() {
            return Ok(found);
        }
        let sql = originals_query(self.dialect);
        for row in sqlx::query(AssertSqlSafe(sql)).bind(json_text(&ids)?).fetch_all(&mut *conn).await.map_err(db)? {
            let original = Original::from_columns(
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
                row.try_get(4)?,
                row.try_get(5)?,
                row.try_get(6)?,
                row.try_get(7)?,
            )?;
            found.insert(row.try_get::<String, _>(0)?, original);
        }
        Ok(found)
    }

    /// PostgreSQL: the held declarations of the batch's meters, in one round trip (`among` is
    /// their subscriptions as JSON); every meter gets a list, empty when nothing of it is held.
    async fn held_among(
        &self,
        conn: &mut AnyConnection,
        meters: &FastMap<String, MeterRecord>,
        among: &str,
    ) -> Result<FastMap<String, Vec<Held>>, StoreError> {
        let mut held: FastMap<String, Vec<Held>> = meters.keys().map(|sub| (sub.clone(), Vec::new())).collect();
        if meters.is_empty() {
            return Ok(held);
        }
        let rows = sqlx::query(HELD_AMONG).bind(among).fetch_all(&mut *conn).await.map_err(db)?;
        for row in rows {
            let subscription: String = row.try_get(0)?;
            let code: Option<String> = row.try_get(4)?;
            let found = held_from(row.try_get(1)?, row.try_get(2)?, row.try_get(3)?, code.as_deref(), row.try_get(5)?)?;
            if let (Some(list), Some(found)) = (held.get_mut(&subscription), found) {
                list.push(found);
            }
        }
        Ok(held)
    }
}

impl SqlStore {
    /// Adds readings that now count to the billing feed (a reviewer's approval; a batch's join it
    /// in [`INSERT_AND_BILL`] on PostgreSQL, in `direct.rs` on SQLite). On PostgreSQL it locks
    /// the position counter until the commit, so that positions become visible in the order they
    /// were handed out (see the migration): the last statement before the commit.
    pub(super) async fn append_billing(
        &self,
        conn: &mut AnyConnection,
        entries: &[FeedEntry],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        match self.dialect {
            // One writer: the next positions are ours.
            Dialect::Sqlite => {
                let first: i64 = sqlx::query_scalar(SQLITE_NEXT_POSITION).fetch_one(&mut *conn).await.map_err(db)?;
                sqlx::query(SQLITE_APPEND_BILLING)
                    .bind(billing_json(entries, first, now)?)
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?;
            }
            Dialect::Postgres => {
                sqlx::query(AssertSqlSafe(APPEND_BILLING.as_str()))
                    .bind(billed_json(entries)?)
                    .bind(entries.len() as i64)
                    .bind(unix_ms(now))
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?;
            }
        }
        Ok(())
    }
}

/// PostgreSQL: takes `count` positions from `billing_position` and appends the readings of the
/// [`billed_json`] parameter `rows` at them, added at `at` (parameters named `$N`), in one
/// statement's CTEs `p` and `b`. The position row stays locked until the commit, so positions
/// become visible in the order they were handed out (see the migration). `gate` is a condition
/// that holds the lock back until a CTE before it has run.
fn billing_ctes(rows: &str, count: &str, at: &str, gate: &str) -> String {
    format!(
        "p AS (UPDATE billing_position SET last = last + {count}::bigint \
           WHERE id = 1 AND {count}::bigint > 0 {gate} RETURNING last), \
         b AS (INSERT INTO billing_feed (position, seq, consumption_m3, added_at_ms, kind, replaces) \
           SELECT p.last - {count}::bigint + e.n, (e.r ->> 0)::bigint, (e.r ->> 1)::bigint, {at}::bigint, \
             e.r ->> 2, (e.r ->> 3)::bigint \
           FROM p, jsonb_array_elements({rows}::jsonb) WITH ORDINALITY AS e(r, n) RETURNING 1)"
    )
}

/// PostgreSQL: [`billing_ctes`] alone (a reviewer's approval): `$1` rows, `$2` their count, `$3`
/// the time.
static APPEND_BILLING: LazyLock<String> =
    LazyLock::new(|| format!("WITH {} SELECT count(*) FROM b", billing_ctes("$1", "$2", "$3", "")));

/// PostgreSQL: a judged batch in one statement: inserts the declarations of [`declarations_json`]
/// (`$1`, as [`INSERT_DECLARATIONS`]), then appends the readings that count (`$2`, `$3` of them,
/// added at `$4`) to the billing feed, and answers how many declarations were inserted (fewer
/// than sent when another process stored one of the ids first). The billing CTEs wait for the
/// insert: an id conflict waits for the other transaction, which must not find the position row
/// already locked by this one (a deadlock).
static INSERT_AND_BILL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH d AS ({} RETURNING 1), inserted AS (SELECT count(*) AS n FROM d), {} SELECT n FROM inserted",
        INSERT_DECLARATIONS.as_str(),
        billing_ctes("$2", "$3", "$4", "AND (SELECT n FROM inserted) >= 0")
    )
});

/// Billing feed entries as JSON `[[seq, consumption, kind, replaces], …]`, for PostgreSQL's
/// [`billing_ctes`].
fn billed_json(entries: &[FeedEntry]) -> Result<String, StoreError> {
    json_text(
        &entries
            .iter()
            .map(|e| (e.seq as i64, opt_i64(e.consumption), e.kind.as_str(), opt_i64(e.replaces)))
            .collect::<Vec<_>>(),
    )
}

/// SQLite: the first free position of the billing feed (one writer: the next ones are ours).
pub(super) const SQLITE_NEXT_POSITION: &str = "SELECT COALESCE(MAX(position), 0) + 1 FROM billing_feed";

/// SQLite: appends the JSON rows of [`billing_json`] to the billing feed.
pub(super) const SQLITE_APPEND_BILLING: &str = "INSERT INTO billing_feed (position, seq, consumption_m3, added_at_ms, kind, replaces) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 FROM json_each($1)";

/// Billing feed rows for `entries` from position `first` on, as JSON text.
pub(super) fn billing_json(entries: &[FeedEntry], first: i64, now: OffsetDateTime) -> Result<String, StoreError> {
    let rows = entries
        .iter()
        .zip(first..)
        .map(|(e, position)| {
            (position, e.seq as i64, opt_i64(e.consumption), unix_ms(now), e.kind.as_str(), opt_i64(e.replaces))
        })
        .collect::<Vec<_>>();
    json_text(&rows)
}

/// The declaration rows to insert, as the JSON text [`INSERT_DECLARATIONS`] unpacks.
pub(super) fn declarations_json(rows: &[NewRow<'_>], now: OffsetDateTime) -> Result<String, StoreError> {
    json_text(&declaration_records(rows, now))
}

/// The declaration rows to insert, column by column.
pub(super) fn declaration_records<'a>(rows: &[NewRow<'a>], now: OffsetDateTime) -> Vec<DeclarationRecord<'a>> {
    let received_at_ms = unix_ms(now);
    rows.iter()
        .map(|row| {
            let (item, d) = (row.item, &row.decision);
            DeclarationRecord {
                seq: row.seq as i64,
                id: &item.texts.id,
                channel: item.channel.as_str(),
                device_id: item.device_id.map(|d| d.to_string()),
                subscription: &item.subscription,
                meter_serial: &item.meter_serial,
                reading: opt_i64(item.reading.map(|r| r.value())),
                read_at_ms: unix_ms(item.read_at),
                read_at: &item.texts.read_at,
                note: item.note.as_deref(),
                received_at_ms,
                status: d.status.as_str(),
                code: d.code.map(|c| c.as_str()),
                answered_consumption: opt_i64(d.consumption_m3),
                consumption_m3: opt_i64(d.consumption_m3),
                duplicate_of: opt_i64(d.duplicate_of),
                counts: d.counts(),
                fingerprint: &item.fingerprint,
                sender: item.sender.as_deref(),
                operator: item.staff.as_ref().map(|s| s.operator.as_str()),
                office: item.staff.as_ref().map(|s| s.office.as_str()),
                supersedes: row.supersedes.map(|id| id.to_string()),
            }
        })
        .collect()
}

/// The columns a new declaration fills, in [`DeclarationRecord`]'s order (both databases' inserts
/// name them from here).
pub(super) const DECLARATION_COLUMNS: &str = "seq, id, channel, device_id, subscription, meter_serial, reading, \
     read_at_ms, read_at, note, received_at_ms, status, code, answered_consumption, consumption_m3, duplicate_of, \
     counts, fingerprint, sender, operator, office, supersedes";

/// PostgreSQL: inserts the declaration rows of [`declarations_json`] (SQLite binds them row by
/// row, `direct.rs`).
static INSERT_DECLARATIONS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO declarations ({DECLARATION_COLUMNS}) \
         SELECT (r ->> 0)::bigint, r ->> 1, r ->> 2, r ->> 3, r ->> 4, r ->> 5, (r ->> 6)::bigint, \
           (r ->> 7)::bigint, r ->> 8, r ->> 9, (r ->> 10)::bigint, r ->> 11, r ->> 12, (r ->> 13)::bigint, \
           (r ->> 14)::bigint, (r ->> 15)::bigint, (r ->> 16)::boolean, r ->> 17, r ->> 18, r ->> 19, r ->> 20, r ->> 21 \
         FROM jsonb_array_elements($1::jsonb) AS rows(r) \
         ON CONFLICT (id) DO NOTHING"
    )
});

/// A declaration row for a bulk insert. It is written as a JSON array, in column order: a
/// database finds an array element by position faster than an object member by name.
pub(super) struct DeclarationRecord<'a> {
    pub(super) seq: i64,
    pub(super) id: &'a str,
    pub(super) channel: &'static str,
    pub(super) device_id: Option<String>,
    pub(super) subscription: &'a str,
    pub(super) meter_serial: &'a str,
    pub(super) reading: Option<i64>,
    pub(super) read_at_ms: i64,
    pub(super) read_at: &'a str,
    pub(super) note: Option<&'a str>,
    pub(super) received_at_ms: i64,
    pub(super) status: &'static str,
    pub(super) code: Option<&'static str>,
    pub(super) answered_consumption: Option<i64>,
    pub(super) consumption_m3: Option<i64>,
    pub(super) duplicate_of: Option<i64>,
    pub(super) counts: bool,
    pub(super) fingerprint: &'a str,
    pub(super) sender: Option<&'a str>,
    pub(super) operator: Option<&'a str>,
    pub(super) office: Option<&'a str>,
    pub(super) supersedes: Option<String>,
}

impl serde::Serialize for DeclarationRecord<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple as _;
        let mut t = serializer.serialize_tuple(22)?;
        t.serialize_element(&self.seq)?;
        t.serialize_element(&self.id)?;
        t.serialize_element(self.channel)?;
        t.serialize_element(&self.device_id)?;
        t.serialize_element(self.subscription)?;
        t.serialize_element(self.meter_serial)?;
        t.serialize_element(&self.reading)?;
        t.serialize_element(&self.read_at_ms)?;
        t.serialize_element(&self.read_at)?;
        t.serialize_element(&self.note)?;
        t.serialize_element(&self.received_at_ms)?;
        t.serialize_element(self.status)?;
        t.serialize_element(&self.code)?;
        t.serialize_element(&self.answered_consumption)?;
        t.serialize_element(&self.consumption_m3)?;
        t.serialize_element(&self.duplicate_of)?;
        t.serialize_element(&self.counts)?;
        t.serialize_element(self.fingerprint)?;
        t.serialize_element(&self.sender)?;
        t.serialize_element(&self.operator)?;
        t.serialize_element(&self.office)?;
        t.serialize_element(&self.supersedes)?;
        t.end()
    }
}

/// Bulk statements take their rows as one JSON parameter that the database unpacks: one
/// statement text per kind (prepared once), no per-value binding, any number of rows.
pub(super) fn json_text(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("encoding rows: {e}")))
}

impl Dialect {
    /// The condition "`id` is one of the JSON array of strings in `$1`", as each database finds
    /// the rows by the id's index (PostgreSQL plans `IN (SELECT …)` over JSON as a full scan).
    pub(super) const fn id_among_json(self) -> &'static str {
        match self {
            Dialect::Sqlite => "id IN (SELECT value FROM json_each($1))",
            Dialect::Postgres => "id = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb)))",
        }
    }
}

fn decision_of(code: Code) -> Decision {
    Decision {
        status: code.status(),
        code: Some(code),
        consumption_m3: None,
        duplicate_of: None,
        next_consumption: None,
    }
}

/// The statement that re-measures a later declaration's consumption (`$1` m³, `$2` its seq).
pub(super) const SET_CONSUMPTION: &str = "UPDATE declarations SET consumption_m3 = $1 WHERE seq = $2";

/// What a batch needs from the store before it is judged: the outcomes of ids stored before
/// (when they were looked up), the meters, and each meter's chain around the new readings.
pub(super) struct Known {
    pub(super) stored: FastMap<String, StoredOutcome>,
    pub(super) meters: FastMap<String, MeterRecord>,
    pub(super) chains: FastMap<String, Chain>,
    /// Each meter's declarations waiting for a reviewer (repeats of them aside).
    pub(super) held: FastMap<String, Vec<Held>>,
    /// The earlier declarations the batch's corrections name, by id (empty when none does).
    pub(super) originals: FastMap<String, Original>,
}

/// An earlier declaration that a correction names ([`Incoming::corrects`]), as stored.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Original {
    pub(super) seq: u64,
    pub(super) subscription: String,
    pub(super) device_id: Option<String>,
    /// It counts for billing.
    pub(super) counts: bool,
    /// It waits for a reviewer (not a repeat, not decided, not voided).
    pub(super) held: bool,
    pub(super) received_at: OffsetDateTime,
    pub(super) read_at: OffsetDateTime,
}

/// The declarations of the JSON array of ids `$1` that corrections name: (id, seq, subscription,
/// device_id, counts, held, received_at_ms, read_at_ms), as [`Original::from_columns`] reads them.
pub(super) fn originals_query(dialect: Dialect) -> String {
    format!(
        "SELECT id, seq, subscription, device_id, CAST(CASE WHEN counts THEN 1 ELSE 0 END AS BIGINT), \
           CAST(CASE WHEN status = 'needs_review' AND review IS NULL AND void_reason IS NULL \
             AND duplicate_of IS NULL THEN 1 ELSE 0 END AS BIGINT), received_at_ms, read_at_ms \
         FROM declarations WHERE {}",
        dialect.id_among_json()
    )
}

impl Original {
    /// From the columns after `id` of [`originals_query`].
    pub(super) fn from_columns(
        seq: i64,
        subscription: String,
        device_id: Option<String>,
        counts: i64,
        held: i64,
        received_at_ms: i64,
        read_at_ms: i64,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            seq: seq as u64,
            subscription,
            device_id,
            counts: counts != 0,
            held: held != 0,
            received_at: from_unix_ms(received_at_ms)?,
            read_at: from_unix_ms(read_at_ms)?,
        })
    }

    /// Whether `item` may replace this declaration: the same meter, from the same device, within
    /// the window, and still open to it (the meter's latest counting reading, which the judge
    /// checks against the chain, or one waiting for review).
    fn open_to(&self, item: &Incoming, now: OffsetDateTime) -> bool {
        item.device_id.is_some()
            && self.device_id.as_deref() == item.device_id.map(|d| d.to_string()).as_deref()
            && item.parsed_subscription.as_ref().is_some_and(|s| s.as_str() == self.subscription)
            && rules::correction_open(self.received_at, now)
            && (self.counts || self.held)
    }
}

/// The ids the batch's corrections name, each once (none in most batches).
pub(super) fn corrected_ids(batch: &[Incoming]) -> Vec<String> {
    batch.iter().filter_map(|i| i.corrects).map(|id| id.to_string()).collect::<BTreeSet<_>>().into_iter().collect()
}

/// The statement that voids a declaration its sender corrected (`$1` its seq, `$2` the reason,
/// `$3` when, ms); one that waited for review leaves the review queue.
pub(super) const SUPERSEDE: &str = "UPDATE declarations SET counts = false, void_reason = $2, voided_by = 'subscriber', \
     voided_at_ms = $3, review = CASE WHEN status = 'needs_review' AND review IS NULL THEN 'withdrawn' ELSE review END \
     WHERE seq = $1";

/// What a voided declaration's record says of the correction that replaced it (`new_seq`'s).
pub(super) fn superseded_reason(new_seq: u64) -> String {
    let code = shared::TrackingCode::from_sequence(new_seq).map(|c| c.to_string()).unwrap_or_default();
    format!("اصلاح مشترک، کد پیگیری {code} — corrected by the subscriber: tracking code {code}")
}

/// A declaration a correction of the batch replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Superseded {
    pub(super) seq: u64,
    /// It counted for billing: the feed gets a void.
    pub(super) counted: bool,
    /// The correction's seq.
    pub(super) by: u64,
}

/// A declaration waiting for a reviewer, as a repeat of it is answered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Held {
    pub(super) seq: u64,
    pub(super) reading: u64,
    pub(super) read_at: OffsetDateTime,
    pub(super) code: Option<Code>,
    pub(super) consumption: Option<u64>,
}

/// The held declarations of meter `$1`: (seq, reading, read_at_ms, code, answered_consumption).
pub(super) const HELD_OF: &str = "SELECT seq, reading, read_at_ms, code, answered_consumption FROM declarations \
     WHERE subscription = $1 AND status = 'needs_review' AND review IS NULL AND duplicate_of IS NULL";

/// PostgreSQL: [`HELD_OF`] for the meters of the JSON array of subscriptions `$1` (as
/// `AMONG_JSON` finds them, by the index), with the subscription first.
const HELD_AMONG: &str = "SELECT subscription, seq, reading, read_at_ms, code, answered_consumption FROM declarations \
     WHERE subscription = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb))) \
     AND status = 'needs_review' AND review IS NULL AND duplicate_of IS NULL";

/// A [`HELD_OF`] row.
pub(super) fn held_from(
    seq: i64,
    reading: Option<i64>,
    read_at_ms: i64,
    code: Option<&str>,
    consumption: Option<i64>,
) -> Result<Option<Held>, StoreError> {
    let Some(reading) = opt_u64(reading) else { return Ok(None) };
    Ok(Some(Held {
        seq: seq as u64,
        reading,
        read_at: from_unix_ms(read_at_ms)?,
        code: code.and_then(Code::from_str_opt),
        consumption: opt_u64(consumption),
    }))
}

/// An entry to add to the billing feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FeedEntry {
    pub(super) seq: u64,
    pub(super) consumption: Option<u64>,
    pub(super) kind: BillingKind,
    /// The position of the reading's entry that this one replaces.
    pub(super) replaces: Option<u64>,
}

impl FeedEntry {
    /// A reading that starts to count.
    pub(super) fn reading(seq: u64, consumption: Option<u64>) -> Self {
        Self { seq, consumption, kind: BillingKind::Reading, replaces: None }
    }

    /// The entry that replaces a reading's `latest` one (position, consumption): a correction to
    /// `consumption`, unless that is what the latest says already (then none), or a void.
    pub(super) fn replacing(
        seq: u64,
        kind: BillingKind,
        consumption: Option<u64>,
        latest: Option<(u64, Option<u64>)>,
    ) -> Option<Self> {
        if kind == BillingKind::Correction && latest.is_some_and(|(_, had)| had == consumption) {
            return None;
        }
        let consumption = if kind == BillingKind::Void { None } else { consumption };
        Some(Self { seq, consumption, kind, replaces: latest.map(|(position, _)| position) })
    }
}

/// A reading's latest entry in the billing feed, by its seq (`$1`): (position, consumption_m3).
pub(super) const LATEST_ENTRY: &str =
    "SELECT position, consumption_m3 FROM billing_feed WHERE seq = $1 ORDER BY position DESC LIMIT 1";

/// The entries that replace the feed entries of readings whose consumption changed (or that were
/// voided), each found by [`LATEST_ENTRY`] on `conn`.
pub(super) async fn replacements(
    conn: &mut AnyConnection,
    changes: &[(u64, BillingKind, Option<u64>)],
) -> Result<Vec<FeedEntry>, StoreError> {
    let mut entries = Vec::with_capacity(changes.len());
    for &(seq, kind, consumption) in changes {
        let row = sqlx::query(LATEST_ENTRY).bind(seq as i64).fetch_optional(&mut *conn).await.map_err(db)?;
        let latest = match row {
            Some(row) => Some((opt_u64(Some(row.try_get::<i64, _>(0)?)).unwrap_or_default(), opt_u64(row.try_get(1)?))),
            None => None,
        };
        entries.extend(FeedEntry::replacing(seq, kind, consumption, latest));
    }
    Ok(entries)
}

/// A judged batch: the rows to insert, the later declarations re-measured, and the answers.
pub(super) struct Judged<'a> {
    pub(super) rows: Vec<NewRow<'a>>,
    pub(super) consumption_updates: Vec<(u64, u64)>,
    pub(super) outcomes: Vec<Outcome>,
    /// Earlier declarations that corrections replaced: each is voided ([`SUPERSEDE`]).
    pub(super) superseded: Vec<Superseded>,
}

impl Judged<'_> {
    /// The readings that join the billing feed, with their consumption as it stands once the
    /// whole batch is in (a later row of the batch may land before an earlier one).
    pub(super) fn billed(&self) -> Vec<FeedEntry> {
        self.rows
            .iter()
            .filter(|r| r.decision.counts())
            .map(|r| {
                let remeasured = self.consumption_updates.iter().rev().find(|(seq, _)| *seq == r.seq);
                FeedEntry::reading(r.seq, remeasured.map_or(r.decision.consumption_m3, |&(_, m3)| Some(m3)))
            })
            .collect()
    }

    /// The readings stored before this batch whose consumption it changed, each once, with its
    /// final figure: they get a correction in the billing feed.
    pub(super) fn corrected(&self) -> Vec<(u64, BillingKind, Option<u64>)> {
        let mut last: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
        for &(seq, m3) in &self.consumption_updates {
            if !self.rows.iter().any(|r| r.seq == seq) {
                last.insert(seq, m3);
            }
        }
        let voids = self.superseded.iter().filter(|s| s.counted).map(|s| (s.seq, BillingKind::Void, None));
        voids.chain(last.into_iter().map(|(seq, m3)| (seq, BillingKind::Correction, Some(m3)))).collect()
    }

    /// The highest sequence number handed out.
    pub(super) fn last_seq(&self) -> Option<u64> {
        self.rows.iter().map(|r| r.seq).max()
    }
}

/// The batch's ids, each once, to look up.
pub(super) fn ids_of(batch: &[Incoming]) -> Vec<String> {
    batch.iter().map(|i| i.texts.id.clone()).collect::<BTreeSet<_>>().into_iter().collect()
}

/// The subscriptions whose meters the batch's new declarations need.
pub(super) fn wanted(batch: &[Incoming], stored: &FastMap<String, StoredOutcome>) -> BTreeSet<String> {
    batch
        .iter()
        .filter(|item| stored.is_empty() || !stored.contains_key(&item.texts.id))
        .filter_map(|item| item.parsed_subscription.as_ref().map(ToString::to_string))
        .collect()
}

/// How many sequence numbers the batch takes: one per declaration not stored before.
pub(super) fn fresh_count(batch: &[Incoming], stored: &FastMap<String, StoredOutcome>) -> usize {
    batch.iter().filter(|i| stored.is_empty() || !stored.contains_key(&i.texts.id)).count()
}

/// For each meter, where its chain must be read from: `None` when every declaration of the
/// batch comes after its latest reading (the chain is that reading alone), else the earliest
/// reading time the batch holds for it.
pub(super) fn chain_starts(
    batch: &[Incoming],
    meters: &FastMap<String, MeterRecord>,
    originals: &FastMap<String, Original>,
) -> Vec<(String, Option<OffsetDateTime>)> {
    let mut earliest: FastMap<&str, OffsetDateTime> =
        FastMap::with_capacity_and_hasher(meters.len(), Default::default());
    for item in batch {
        if let Some(sub) = &item.parsed_subscription {
            // A correction needs the reading before the one it may replace.
            let original = item.corrects.and_then(|id| originals.get(&id.to_string()));
            let from = original.map_or(item.read_at, |o| item.read_at.min(o.read_at - time::Duration::milliseconds(1)));
            let at = earliest.entry(sub.as_str()).or_insert(from);
            *at = (*at).min(from);
        }
    }
    meters
        .iter()
        .map(|(sub, meter)| {
            let from = match (meter.last, earliest.get(sub.as_str())) {
                (Some(last), Some(&earliest)) if earliest < last.read_at => Some(earliest),
                _ => None,
            };
            (sub.clone(), from)
        })
        .collect()
}

/// Judges a batch in order against what the store knows, handing out `seqs` to the declarations
/// not stored before. Pure: the same on both databases.
pub(super) fn judge<'a>(
    batch: &'a [Incoming],
    known: &mut Known,
    seqs: Vec<u64>,
    now: OffsetDateTime,
) -> Result<Judged<'a>, StoreError> {
    let mut seqs = seqs.into_iter();
    let mut rows: Vec<NewRow> = Vec::with_capacity(batch.len());
    let mut by_id: FastMap<Uuid, usize> = FastMap::with_capacity_and_hasher(batch.len(), Default::default());
    let mut consumption_updates: Vec<(u64, u64)> = Vec::new();
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut superseded = Vec::new();

    for item in batch {
        let fingerprint = &item.fingerprint;
        if !known.stored.is_empty()
            && let Some(prior) = known.stored.get(&item.texts.id)
        {
            outcomes.push(prior.replay(item.id, fingerprint));
            continue;
        }
        if let Some(&index) = by_id.get(&item.id) {
            let row: &NewRow = &rows[index];
            let prior = StoredOutcome {
                seq: row.seq,
                status: row.decision.status,
                code: row.decision.code,
                consumption: row.decision.consumption_m3,
                duplicate_of: row.decision.duplicate_of,
                fingerprint: row.item.fingerprint.clone(),
                supersedes: row.supersedes,
            };
            outcomes.push(prior.replay(item.id, fingerprint));
            continue;
        }
        let Some(seq) = seqs.next() else {
            return Err(StoreError::Corrupt("ran out of allocated sequence numbers".into()));
        };
        let meter = item.parsed_subscription.as_ref().and_then(|s| known.meters.get_mut(s.as_str()));
        let mut supersedes = None;
        let decision = match meter.map(|m| (item.proof.identifies(m), m)) {
            Some((identity, meter)) if identity != Identity::Refused => {
                let verified = identity == Identity::Verified;
                match item.reading {
                    None => decision_of(Code::ReadingOutOfRange),
                    Some(reading) => {
                        if !known.chains.contains_key(meter.subscription.as_str()) {
                            known.chains.insert(meter.subscription.to_string(), Chain::default());
                        }
                        let Some(chain) = known.chains.get_mut(meter.subscription.as_str()) else {
                            return Err(StoreError::Corrupt("a chain went missing".into()));
                        };
                        let held = known.held.entry(meter.subscription.to_string()).or_default();
                        // A correction: the reading it replaces steps aside while it is judged.
                        let original = item
                            .corrects
                            .and_then(|id| known.originals.get(&id.to_string()))
                            .filter(|o| verified && o.open_to(item, now));
                        let aside = original.and_then(|o| step_aside(o, chain, meter, held));
                        let candidate = Candidate { reading, read_at: item.read_at };
                        let mut decision = rules::reconcile(&meter.context(), chain, &candidate, now);
                        if !verified {
                            decision = rules::from_unverified_sender(decision);
                        }
                        if let Some(aside) = aside {
                            if decision.status == Status::Rejected {
                                // A refused correction replaces nothing: the earlier reading stands.
                                aside.restore(chain, meter, held);
                            } else {
                                superseded.push(Superseded { seq: aside.seq, counted: aside.point.is_some(), by: seq });
                                supersedes = item.corrects;
                                if let Some(id) = item.corrects {
                                    known.originals.remove(&id.to_string());
                                }
                            }
                        }
                        if decision.status == Status::NeedsReview && decision.duplicate_of.is_none() {
                            // The same reading held already (a double tap, or the same reading by
                            // another channel): one declaration, one review item.
                            match held
                                .iter()
                                .find(|h| rules::repeats(reading.value(), item.read_at, h.reading, h.read_at))
                            {
                                Some(h) => {
                                    decision = Decision {
                                        status: Status::NeedsReview,
                                        code: h.code,
                                        consumption_m3: h.consumption,
                                        duplicate_of: Some(h.seq),
                                        next_consumption: None,
                                    };
                                }
                                None => held.push(Held {
                                    seq,
                                    reading: reading.value(),
                                    read_at: item.read_at,
                                    code: decision.code,
                                    consumption: decision.consumption_m3,
                                }),
                            }
                        }
                        if decision.counts() {
                            let point = Point {
                                source: Source::Declaration(seq),
                                reading: reading.value(),
                                read_at: item.read_at,
                            };
                            chain.insert(point);
                            meter.last = rules::later(meter.last, Some(point));
                            if let Some(update) = decision.next_consumption {
                                consumption_updates.push(update);
                            }
                        }
                        decision
                    }
                }
            }
            _ => decision_of(Code::IdentityMismatch),
        };
        outcomes.push(Outcome {
            id: item.id,
            status: decision.status,
            code: decision.code,
            consumption_m3: decision.consumption_m3,
            tracking_seq: tracking_seq(decision.status, seq, decision.duplicate_of),
            replayed: false,
            supersedes,
        });
        by_id.insert(item.id, rows.len());
        rows.push(NewRow { seq, item, decision, supersedes });
    }
    Ok(Judged { rows, consumption_updates, outcomes, superseded })
}

/// A reading taken out of its meter's chain (or review list) while its correction is judged.
struct Aside {
    seq: u64,
    /// Its point, when it counted (it was the chain's latest).
    point: Option<Point>,
    /// Its place in the review list, when it waited for review.
    held: Option<(usize, Held)>,
    /// The meter's latest reading before it stepped aside.
    last: Option<Point>,
}

/// Takes `original` out of the chain (when it is the meter's latest counting reading) or out of
/// the review list (when it waits there); `None` when it is neither, and the correction is then
/// judged as a reading of its own.
fn step_aside(original: &Original, chain: &mut Chain, meter: &mut MeterRecord, held: &mut Vec<Held>) -> Option<Aside> {
    let last = meter.last;
    if original.counts {
        let point = chain.remove_latest(Source::Declaration(original.seq))?;
        meter.last = chain.latest().copied();
        return Some(Aside { seq: original.seq, point: Some(point), held: None, last });
    }
    let at = held.iter().position(|h| h.seq == original.seq)?;
    let entry = held.remove(at);
    Some(Aside { seq: original.seq, point: None, held: Some((at, entry)), last })
}

impl Aside {
    /// Puts the reading back as it was.
    fn restore(self, chain: &mut Chain, meter: &mut MeterRecord, held: &mut Vec<Held>) {
        if let Some(point) = self.point {
            chain.insert(point);
        }
        if let Some((at, entry)) = self.held {
            held.insert(at.min(held.len()), entry);
        }
        meter.last = self.last;
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    fn replies(&self) -> &dyn super::ReplyQueue {
        self
    }

    fn inbox(&self) -> &dyn super::SmsInbox {
        self
    }

    fn photos(&self) -> &dyn super::PhotoStore {
        self
    }

    async fn upsert_subscribers(&self, rows: &[SubscriberRow], now: OffsetDateTime) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for row in rows {
            let billed_at = row.last_read_at.map(unix_ms);
            sqlx::query(
                "INSERT INTO meters (subscription, meter_serial, digits, billed_reading, billed_at_ms, avg_daily_m3, phone, \
                   updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (subscription) DO UPDATE SET meter_serial = excluded.meter_serial, digits = excluded.digits, \
                   billed_reading = excluded.billed_reading, billed_at_ms = excluded.billed_at_ms, \
                   avg_daily_m3 = excluded.avg_daily_m3, phone = excluded.phone, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(row.subscription.to_string())
            .bind(row.meter_serial.to_string())
            .bind(i64::from(row.digits))
            .bind(opt_i64(row.last_reading))
            .bind(billed_at)
            .bind(row.avg_daily_m3)
            .bind(row.phone.clone())
            .bind(unix_ms(now))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        self.sync().await
    }

    async fn meter(&self, subscription: &SubscriptionNumber) -> Result<Option<MeterRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(self.dialect.meter_by_subscription()))
            .bind(subscription.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(meter_from_row).transpose()
    }

    async fn register_device(
        &self,
        token_hash: &str,
        device_id: Uuid,
        subscription: &SubscriptionNumber,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        retrying(move || async move {
            sqlx::query(
                "INSERT INTO devices (token_hash, device_id, subscription, created_at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (token_hash) DO NOTHING",
            )
            .bind(token_hash)
            .bind(device_id.to_string())
            .bind(subscription.to_string())
            .bind(unix_ms(now))
            .execute(&self.pool)
            .await
            .map_err(db)
        })
        .await?;
        // The token is handed to the phone next: it must be on disk first.
        self.sync().await
    }

    async fn device_subscription(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT subscription FROM devices WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }

    async fn apply(&self, batch: &[Incoming], now: OffsetDateTime) -> Result<Vec<Outcome>, StoreError> {
        // Another process may store one of the ids between our look-up and our insert; the
        // UNIQUE constraint turns that into a retry, which then sees the stored outcome. A
        // transaction the database gave up on (a serialisation failure or a deadlock) is tried
        // again after a short, growing, randomised wait; nothing of it was stored.
        let mut look_up = false;
        for attempt in 0..MAX_ATTEMPTS {
            let result = match &self.direct {
                // On the caller's thread: the writer's own, on SQLite (see `Direct`).
                Some(direct) => direct.apply_once(batch, now, look_up),
                None => self.apply_once(batch, now, look_up).await,
            };
            match result {
                Ok(Ok(outcomes)) => return Ok(outcomes),
                Ok(Err(Raced)) => look_up = true,
                Err(e) if e.should_retry() && attempt + 1 < MAX_ATTEMPTS => {
                    tracing::info!(error = %crate::writer::error_chain(&e), attempt, "the database asked to retry a batch");
                    tokio::time::sleep(retry_wait(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Corrupt("a batch kept racing with another writer".into()))
    }

    fn concurrent_writes(&self) -> usize {
        match self.dialect {
            Dialect::Sqlite => 1,
            Dialect::Postgres => 2,
        }
    }

    async fn sync(&self) -> Result<(), StoreError> {
        let Some(wal) = &self.wal else { return Ok(()) };
        wal.sync().await.map_err(|e| StoreError::Unavailable(Box::new(e)))
    }

    fn sync_then(&self, then: Box<dyn FnOnce(Result<(), StoreError>) + Send>) {
        match &self.wal {
            Some(wal) => wal.then(Box::new(move |flushed| {
                then(super::flusher::owned(flushed).map_err(|e| StoreError::Unavailable(Box::new(e))))
            })),
            None => then(Ok(())),
        }
    }

    fn writes_on_own_thread(&self) -> bool {
        self.dialect.writes_on_own_thread()
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let declarations: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM declarations").fetch_one(&self.pool).await.map_err(db)?;
        let meters: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM meters").fetch_one(&self.pool).await.map_err(db)?;
        Ok(Counts { declarations: declarations as u64, meters: meters as u64 })
    }

    async fn declarations_of(&self, subscription: &str) -> Result<Vec<StoredDeclaration>, StoreError> {
        let sql = format!("SELECT {STORED_COLUMNS} FROM declarations WHERE subscription = $1 ORDER BY read_at_ms, seq");
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(subscription).fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(stored_from_row).collect()
    }

    async fn save_operator(&self, operator: &OperatorRecord, now: OffsetDateTime) -> Result<(), StoreError> {
        self.save_operator_row(operator, now).await
    }

    async fn operator(&self, username: &str) -> Result<Option<OperatorRecord>, StoreError> {
        self.operator_row(username).await
    }

    async fn create_session(&self, session: &NewSession<'_>) -> Result<(), StoreError> {
        retrying(move || self.insert_session(session)).await
    }

    async fn session(&self, token_hash: &str, now: OffsetDateTime) -> Result<Option<Session>, StoreError> {
        self.live_session(token_hash, now).await
    }

    async fn end_session(&self, token_hash: &str) -> Result<(), StoreError> {
        self.delete_session(token_hash).await
    }

    async fn extend_session(&self, token_hash: &str, expires_at: OffsetDateTime) -> Result<(), StoreError> {
        retrying(move || self.set_session_end(token_hash, expires_at)).await
    }

    async fn trust_browser(&self, browser: &TrustedBrowser<'_>) -> Result<(), StoreError> {
        retrying(move || self.insert_trusted_browser(browser)).await
    }

    async fn trusted_browser(&self, token_hash: &str, now: OffsetDateTime) -> Result<Option<String>, StoreError> {
        self.trusted_browser_row(token_hash, now).await
    }

    async fn audit(&self, entry: &AuditEntry<'_>) -> Result<(), StoreError> {
        retrying(move || self.insert_audit(entry)).await
    }

    async fn audit_log(&self, before: Option<u64>, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit_rows(before, limit).await
    }

    async fn declaration(&self, seq: u64) -> Result<Option<StoredDeclaration>, StoreError> {
        self.declaration_row(seq).await
    }

    async fn declaration_by_id(&self, id: Uuid) -> Result<Option<StoredDeclaration>, StoreError> {
        self.declaration_row_by_id(id).await
    }

    async fn office_declarations(
        &self,
        office: &str,
        since: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<StoredDeclaration>, StoreError> {
        self.office_rows(office, since, limit).await
    }

    async fn review_queue(&self, limit: u32) -> Result<Vec<StoredDeclaration>, StoreError> {
        self.queue_rows(limit).await
    }

    async fn backlog(&self) -> Result<(u64, u64), StoreError> {
        // Both counts walk a partial index of what is still open.
        let held: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM declarations WHERE status = 'needs_review' AND review IS NULL \
                 AND duplicate_of IS NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM complaints WHERE answer IS NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok((held as u64, open as u64))
    }

    async fn decide(&self, request: &ReviewRequest, now: OffsetDateTime) -> Result<ReviewResult, StoreError> {
        retrying(move || self.decide_review(request, now)).await
    }

    async fn billing_feed(&self, after: u64, limit: u32) -> Result<Vec<BillingEntry>, StoreError> {
        self.billing_rows(after, limit).await
    }

    async fn billing_end(&self) -> Result<u64, StoreError> {
        self.billing_last().await
    }

    async fn file_complaint(&self, complaint: &NewComplaint, now: OffsetDateTime) -> Result<Filed, StoreError> {
        retrying(move || self.insert_complaint(complaint, now)).await
    }

    async fn complaint(&self, seq: u64) -> Result<Option<ComplaintRecord>, StoreError> {
        self.complaint_row(seq).await
    }

    async fn open_complaints(&self, limit: u32) -> Result<Vec<ComplaintRecord>, StoreError> {
        self.open_complaint_rows(limit).await
    }

    async fn office_complaints(
        &self,
        office: &str,
        since: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<ComplaintRecord>, StoreError> {
        self.office_complaint_rows(office, since, limit).await
    }

    async fn answer_complaint(
        &self,
        seq: u64,
        answer: &str,
        staff: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        retrying(move || self.set_answer(seq, answer, staff, now)).await
    }

    async fn updates(
        &self,
        declarations: &[Uuid],
        complaints: &[Uuid],
    ) -> Result<(Vec<shared::wire::ReviewUpdate>, Vec<shared::wire::ComplaintAnswer>), StoreError> {
        self.news(declarations, complaints).await
    }

    fn shared_by_instances(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    async fn failure_windows(&self, keys: &[String], since_ms: i64) -> Result<Vec<FailureWindow>, StoreError> {
        let sql = match self.dialect {
            Dialect::Sqlite => {
                "SELECT key, last_failure_ms, failures FROM identity_failures \
                 WHERE key IN (SELECT value FROM json_each($1)) AND last_failure_ms > $2"
            }
            Dialect::Postgres => {
                "SELECT key, last_failure_ms, failures FROM identity_failures \
                 WHERE key = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb))) AND last_failure_ms > $2"
            }
        };
        let rows = sqlx::query(sql).bind(json_text(&keys)?).bind(since_ms).fetch_all(&self.pool).await.map_err(db)?;
        rows.iter()
            .map(|row| {
                let failures: i64 = row.try_get(2)?;
                Ok((row.try_get(0)?, row.try_get(1)?, u32::try_from(failures).unwrap_or(u32::MAX)))
            })
            .collect()
    }

    async fn record_failure(&self, key: &str, now_ms: i64, window_ms: i64) -> Result<(), StoreError> {
        // One atomic upsert: two instances counting the same key at once both count.
        retrying(move || async move {
            sqlx::query(
                "INSERT INTO identity_failures (key, last_failure_ms, failures) VALUES ($1, $2, 1) \
             ON CONFLICT (key) DO UPDATE SET \
               failures = CASE WHEN identity_failures.last_failure_ms <= $3 THEN 1 \
                 ELSE identity_failures.failures + 1 END, \
               last_failure_ms = CASE WHEN identity_failures.last_failure_ms > $2 \
                 THEN identity_failures.last_failure_ms ELSE $2 END",
            )
            .bind(key)
            .bind(now_ms)
            .bind(now_ms - window_ms)
            .execute(&self.pool)
            .await
            .map_err(db)
        })
        .await?;
        Ok(())
    }

    async fn sweep_failures(&self, before_ms: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM identity_failures WHERE last_failure_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }
}
