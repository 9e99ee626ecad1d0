//! [`SqlStore`]: the store on SQLite or PostgreSQL through sqlx's `Any` driver.
//!
//! One query text serves both backends (numbered `$N` parameters, text ids, millisecond times);
//! the few places where they differ go through [`Dialect`]. SQLite runs in WAL mode with
//! `synchronous = FULL`, so a committed transaction survives a power cut; PostgreSQL is durable
//! by default. The writer (`crate::writer`) batches requests into one transaction each, so a
//! commit's fsync is shared by many declarations.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use shared::rules::{self, Candidate, Chain, Decision, Point, Source};
use shared::{Code, MeterSerial, Status, SubscriptionNumber};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Row};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::console::{STORED_COLUMNS, stored_from_row};
use super::{
    AuditEntry, AuditRecord, BillingEntry, ComplaintRecord, Counts, Filed, Identity, Incoming, MeterRecord,
    NewComplaint, NewSession, OperatorRecord, Outcome, ReviewRequest, ReviewResult, Session, Store, StoreError,
    StoredDeclaration, SubscriberRow, from_unix_ms, last_point, unix_ms,
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
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// SQLite's durability, taken into our hands: the connections commit with `synchronous =
/// NORMAL` (the commit lands in the write-ahead log, not yet on disk), and [`WalSync::flush`]
/// then flushes the log file. The log is appended in commit order, so one flush makes every
/// earlier commit durable; a checkpoint flushes the log itself before it copies pages into the
/// database and flushes that too. The writer answers nothing before a flush that began after its
/// commit, so this gives `synchronous = FULL`'s guarantee while the next transaction runs during
/// the flush instead of after it.
struct WalSync {
    database: std::path::PathBuf,
    wal: std::path::PathBuf,
    /// The log file last flushed (device, inode): a new log's directory entry is flushed once.
    known: std::sync::Mutex<Option<(u64, u64)>>,
}

impl WalSync {
    fn flush(&self) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt as _;
        match std::fs::File::open(&self.wal) {
            Ok(file) => {
                file.sync_data()?;
                let meta = file.metadata()?;
                let id = (meta.dev(), meta.ino());
                let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
                if *known != Some(id) {
                    if let Some(dir) = self.wal.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::File::open(dir)?.sync_all()?;
                    }
                    *known = Some(id);
                }
                Ok(())
            }
            // The last connection closed, and SQLite folded the log into the database and
            // removed it: flush the database instead.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::File::open(&self.database)?.sync_all(),
            Err(e) => Err(e),
        }
    }
}

/// The store on a SQL database.
pub struct SqlStore {
    pub(super) pool: AnyPool,
    pub(super) dialect: Dialect,
    /// SQLite on a file: the log flush that makes commits durable (see [`WalSync`]).
    wal: Option<std::sync::Arc<WalSync>>,
    /// SQLite only: the last sequence number committed, so that the writer need not ask. SQLite
    /// has one writing process; cleared whenever a transaction does not commit.
    last_seq: std::sync::Mutex<Option<u64>>,
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
        if dialect == Dialect::Sqlite {
            let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or("");
            if let Some(parent) = std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            if !path.is_empty() && !path.starts_with(':') && !url.contains("mode=memory") {
                wal = Some(std::sync::Arc::new(WalSync {
                    database: path.into(),
                    wal: format!("{path}-wal").into(),
                    known: std::sync::Mutex::new(None),
                }));
            }
        }
        // With the log flushed by hand, commits need not wait for the disk; an in-memory
        // database keeps SQLite's own full sync (it has nothing to lose).
        let synchronous = if wal.is_some() { "NORMAL" } else { "FULL" };
        let pool = AnyPoolOptions::new()
            // PostgreSQL: two writer transactions, and the reads every request makes first
            // (identity limits, tokens, meters); 8 ran out at 1,000 mixed requests a second.
            .max_connections(if dialect == Dialect::Sqlite { 4 } else { 16 })
            .acquire_timeout(std::time::Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        let pragmas = format!(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA busy_timeout = 5000; \
                             PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY; \
                             PRAGMA wal_autocheckpoint = 16384;"
                        );
                        sqlx::raw_sql(AssertSqlSafe(pragmas)).execute(&mut *conn).await?;
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
        Ok(Self { pool, dialect, wal, last_seq: std::sync::Mutex::new(None) })
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

    /// Closes every connection (before the database is dropped, in tests).
    pub async fn close(&self) {
        self.pool.close().await;
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

pub(super) const METER_COLUMNS: &str =
    "subscription, meter_serial, digits, avg_daily_m3, max_hourly_m3, phone, last_seq, last_reading, last_read_at_ms";

pub(super) fn meter_from_row(row: &AnyRow) -> Result<MeterRecord, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("meter row: {what}"));
    let subscription: String = row.try_get(0)?;
    let serial: String = row.try_get(1)?;
    let digits: i64 = row.try_get(2)?;
    Ok(MeterRecord {
        subscription: SubscriptionNumber::parse(&subscription).map_err(|_| corrupt("subscription"))?,
        meter_serial: MeterSerial::parse(&serial).map_err(|_| corrupt("serial"))?,
        digits: u8::try_from(digits).map_err(|_| corrupt("digits"))?,
        avg_daily_m3: row.try_get(3)?,
        max_hourly_m3: row.try_get(4)?,
        phone: row.try_get(5)?,
        last: last_point(row.try_get(6)?, row.try_get(7)?, row.try_get(8)?)?,
    })
}

/// A meter row as SQLite's `json_array` writes it, in [`METER_COLUMNS`] order.
#[derive(serde::Deserialize)]
struct MeterJson(String, String, i64, Option<f64>, f64, Option<String>, Option<i64>, Option<i64>, Option<i64>);

impl MeterJson {
    fn into_record(self) -> Result<MeterRecord, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("meter row: {what}"));
        Ok(MeterRecord {
            subscription: SubscriptionNumber::parse(&self.0).map_err(|_| corrupt("subscription"))?,
            meter_serial: MeterSerial::parse(&self.1).map_err(|_| corrupt("serial"))?,
            digits: u8::try_from(self.2).map_err(|_| corrupt("digits"))?,
            avg_daily_m3: self.3,
            max_hourly_m3: self.4,
            phone: self.5,
            last: last_point(self.6, self.7, self.8)?,
        })
    }
}

/// What the batch needs to know about an id stored before.
struct StoredOutcome {
    seq: u64,
    status: Status,
    code: Option<Code>,
    consumption: Option<u64>,
    duplicate_of: Option<u64>,
    fingerprint: String,
}

impl StoredOutcome {
    fn replay(&self, id: Uuid, fingerprint: &str) -> Outcome {
        if self.fingerprint != fingerprint {
            return Outcome {
                id,
                status: Status::Rejected,
                code: Some(Code::IdConflict),
                consumption_m3: None,
                tracking_seq: None,
                replayed: false,
            };
        }
        Outcome {
            id,
            status: self.status,
            code: self.code,
            consumption_m3: self.consumption,
            tracking_seq: tracking_seq(self.status, self.seq, self.duplicate_of),
            replayed: true,
        }
    }
}

fn tracking_seq(status: Status, seq: u64, duplicate_of: Option<u64>) -> Option<u64> {
    (status != Status::Rejected).then_some(duplicate_of.unwrap_or(seq))
}

/// A row to insert, decided in memory.
struct NewRow<'a> {
    seq: u64,
    item: &'a Incoming,
    decision: Decision,
}

pub(super) fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

pub(super) fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.and_then(|v| i64::try_from(v).ok())
}

/// A batch failed because another process stored one of its ids first: start again.
struct Raced;

impl SqlStore {
    async fn stored_outcomes(
        &self,
        conn: &mut AnyConnection,
        ids: &[String],
    ) -> Result<HashMap<String, StoredOutcome>, StoreError> {
        let sql = format!(
            "SELECT id, seq, status, code, answered_consumption, duplicate_of, fingerprint FROM declarations \
             WHERE {}",
            self.dialect.id_among_json()
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(json_text(&ids)?).fetch_all(&mut *conn).await.map_err(db)?;
        let mut found = HashMap::with_capacity(rows.len());
        for row in rows {
            let status: String = row.try_get(2)?;
            let code: Option<String> = row.try_get(3)?;
            let seq: i64 = row.try_get(1)?;
            found.insert(
                row.try_get::<String, _>(0)?,
                StoredOutcome {
                    seq: seq as u64,
                    status: Status::from_str_opt(&status)
                        .ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
                    code: code.as_deref().and_then(Code::from_str_opt),
                    consumption: opt_u64(row.try_get(4)?),
                    duplicate_of: opt_u64(row.try_get(5)?),
                    fingerprint: row.try_get(6)?,
                },
            );
        }
        Ok(found)
    }

    async fn meters_for_update(
        &self,
        conn: &mut AnyConnection,
        subscriptions: &BTreeSet<String>,
    ) -> Result<HashMap<String, MeterRecord>, StoreError> {
        let mut found = HashMap::with_capacity(subscriptions.len());
        if subscriptions.is_empty() {
            return Ok(found);
        }
        match self.dialect {
            Dialect::Sqlite => {
                // SQLite has one writer already. Its driver hands rows over one by one from its
                // own thread, so the meters come back as one JSON array in one row.
                let json: Option<String> = sqlx::query_scalar(
                    "SELECT json_group_array(json_array(m.subscription, m.meter_serial, m.digits, m.avg_daily_m3, \
                       m.max_hourly_m3, m.phone, m.last_seq, m.last_reading, m.last_read_at_ms)) \
                     FROM json_each($1) AS j CROSS JOIN meters AS m ON m.subscription = j.value",
                )
                .bind(json_text(&subscriptions)?)
                .fetch_one(&mut *conn)
                .await
                .map_err(db)?;
                let rows: Vec<MeterJson> = serde_json::from_str(json.as_deref().unwrap_or("[]"))
                    .map_err(|e| StoreError::Corrupt(format!("meter rows: {e}")))?;
                for row in rows {
                    let meter = row.into_record()?;
                    found.insert(meter.subscription.to_string(), meter);
                }
            }
            Dialect::Postgres => {
                // Locking the meters serialises declarations for one meter across processes; the
                // sorted order keeps two batches from deadlocking. `= ANY(ARRAY(…))` walks the
                // primary key; `IN (SELECT …)` over a JSON set is planned as a scan of every meter.
                let rows = sqlx::query(
                    "SELECT subscription, meter_serial, digits, avg_daily_m3, max_hourly_m3, phone, last_seq, \
                     last_reading, last_read_at_ms FROM meters \
                     WHERE subscription = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb))) \
                     ORDER BY subscription FOR UPDATE",
                )
                .bind(json_text(&subscriptions)?)
                .fetch_all(&mut *conn)
                .await
                .map_err(db)?;
                for row in rows {
                    let meter = meter_from_row(&row)?;
                    found.insert(meter.subscription.to_string(), meter);
                }
            }
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
        let rows = sqlx::query(
            "SELECT seq, reading, read_at_ms FROM declarations \
             WHERE subscription = $1 AND counts AND read_at_ms >= COALESCE( \
               (SELECT MAX(read_at_ms) FROM declarations WHERE subscription = $1 AND counts AND read_at_ms <= $2), $2) \
             ORDER BY read_at_ms, seq",
        )
        .bind(meter.subscription.as_str())
        .bind(unix_ms(from))
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        let mut points = Vec::with_capacity(rows.len() + 1);
        for row in rows {
            let seq: i64 = row.try_get(0)?;
            let reading: Option<i64> = row.try_get(1)?;
            points.push(Point {
                source: Source::Declaration(seq as u64),
                reading: reading.unwrap_or_default() as u64,
                read_at: from_unix_ms(row.try_get(2)?)?,
            });
        }
        let billed = sqlx::query("SELECT billed_reading, billed_at_ms FROM meters WHERE subscription = $1")
            .bind(meter.subscription.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        if let Some(row) = billed
            && let Some(point) = last_point(None, row.try_get(0)?, row.try_get(1)?)?
        {
            points.push(point);
        }
        Ok(Chain::new(points))
    }

    async fn allocate_seqs(&self, conn: &mut AnyConnection, count: usize) -> Result<Vec<u64>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        match self.dialect {
            Dialect::Sqlite => {
                // One writer at a time holds the database, so the next numbers are ours.
                let known = *self.last_seq.lock().unwrap_or_else(|p| p.into_inner());
                let max = match known {
                    Some(max) => max,
                    None => {
                        let max: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM declarations")
                            .fetch_one(&mut *conn)
                            .await
                            .map_err(db)?;
                        max as u64
                    }
                };
                Ok((1..=count as u64).map(|i| max + i).collect())
            }
            Dialect::Postgres => {
                let seqs: Vec<i64> = sqlx::query_scalar(
                    "SELECT nextval(pg_get_serial_sequence('declarations', 'seq')) FROM generate_series(1, $1)",
                )
                .bind(count as i64)
                .fetch_all(&mut *conn)
                .await
                .map_err(db)?;
                Ok(seqs.into_iter().map(|s| s as u64).collect())
            }
        }
    }

    async fn insert_rows(
        &self,
        conn: &mut AnyConnection,
        rows: &[NewRow<'_>],
        now: OffsetDateTime,
    ) -> Result<Result<(), Raced>, StoreError> {
        if rows.is_empty() {
            return Ok(Ok(()));
        }
        let received_at_ms = unix_ms(now);
        let records: Vec<DeclarationRecord> = rows
            .iter()
            .map(|row| {
                let (item, d) = (row.item, &row.decision);
                DeclarationRecord {
                    seq: row.seq as i64,
                    id: item.id.to_string(),
                    channel: item.channel.as_str(),
                    device_id: item.device_id.map(|d| d.to_string()),
                    subscription: &item.subscription,
                    meter_serial: &item.meter_serial,
                    reading: opt_i64(item.reading.map(|r| r.value())),
                    read_at_ms: unix_ms(item.read_at),
                    read_at: item.read_at.format(&Rfc3339).unwrap_or_else(|_| unix_ms(item.read_at).to_string()),
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
                }
            })
            .collect();
        let inserted = sqlx::query(self.dialect.insert_declarations())
            .bind(json_text(&records)?)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        Ok(if inserted.rows_affected() == rows.len() as u64 { Ok(()) } else { Err(Raced) })
    }

    /// One attempt at a batch. With `look_up` false it assumes every id is new (the common
    /// case) and lets the UNIQUE constraint say otherwise: a conflicting insert is [`Raced`], and
    /// the retry looks the ids up first.
    async fn apply_once(
        &self,
        batch: &[Incoming],
        now: OffsetDateTime,
        look_up: bool,
    ) -> Result<Result<Vec<Outcome>, Raced>, StoreError> {
        let mut tx = self.begin_write().await?;
        let stored = if look_up {
            let ids: Vec<String> =
                batch.iter().map(|i| i.id.to_string()).collect::<BTreeSet<_>>().into_iter().collect();
            self.stored_outcomes(&mut tx, &ids).await?
        } else {
            HashMap::new()
        };

        let parsed: Vec<Option<&SubscriptionNumber>> = batch.iter().map(|i| i.parsed_subscription.as_ref()).collect();
        let wanted: BTreeSet<String> = batch
            .iter()
            .zip(&parsed)
            .filter(|(item, _)| !stored.contains_key(&item.id.to_string()))
            .filter_map(|(_, sub)| sub.as_ref().map(ToString::to_string))
            .collect();
        let mut meters = self.meters_for_update(&mut tx, &wanted).await?;

        // Each meter's chain: its latest reading, or more of it where a declaration lands earlier.
        let mut earliest: HashMap<&str, OffsetDateTime> = HashMap::new();
        for (item, sub) in batch.iter().zip(&parsed) {
            if let Some(sub) = sub {
                let at = earliest.entry(sub.as_str()).or_insert(item.read_at);
                *at = (*at).min(item.read_at);
            }
        }
        let mut chains: HashMap<String, Chain> = HashMap::new();
        for (sub, meter) in &meters {
            let chain = match (meter.last, earliest.get(sub.as_str())) {
                (Some(last), Some(&earliest)) if earliest < last.read_at => {
                    self.chain_from(&mut tx, meter, earliest).await?
                }
                (last, _) => Chain::new(last.into_iter().collect()),
            };
            chains.insert(sub.clone(), chain);
        }
        let fresh = batch.iter().filter(|i| !stored.contains_key(&i.id.to_string())).count();
        let mut seqs = self.allocate_seqs(&mut tx, fresh).await?.into_iter();
        let mut rows: Vec<NewRow> = Vec::with_capacity(fresh);
        let mut by_id: HashMap<Uuid, usize> = HashMap::new();
        let mut consumption_updates: Vec<(u64, u64)> = Vec::new();
        let mut outcomes = Vec::with_capacity(batch.len());

        for (item, sub) in batch.iter().zip(&parsed) {
            let fingerprint = &item.fingerprint;
            if let Some(prior) = stored.get(&item.id.to_string()) {
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
                };
                outcomes.push(prior.replay(item.id, fingerprint));
                continue;
            }
            let Some(seq) = seqs.next() else {
                return Err(StoreError::Corrupt("ran out of allocated sequence numbers".into()));
            };
            let meter = sub.and_then(|s| meters.get_mut(s.as_str()));
            let decision = match meter.map(|m| (item.proof.identifies(m), m)) {
                Some((identity, meter)) if identity != Identity::Refused => {
                    let verified = identity == Identity::Verified;
                    match item.reading {
                        None => decision_of(Code::ReadingOutOfRange),
                        Some(reading) => {
                            let chain = chains.entry(meter.subscription.to_string()).or_default();
                            let candidate = Candidate { reading, read_at: item.read_at };
                            let mut decision = rules::reconcile(&meter.context(), chain, &candidate, now);
                            if !verified {
                                decision = rules::from_unverified_sender(decision);
                            }
                            if decision.counts() {
                                let point = Point {
                                    source: Source::Declaration(seq),
                                    reading: reading.value(),
                                    read_at: item.read_at,
                                };
                                chain.insert(point);
                                if meter.last.is_none_or(|last| last.read_at <= item.read_at) {
                                    meter.last = Some(point);
                                }
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
            });
            by_id.insert(item.id, rows.len());
            rows.push(NewRow { seq, item, decision });
        }
        if let Err(raced) = self.insert_rows(&mut tx, &rows, now).await? {
            tx.rollback().await.map_err(db)?;
            return Ok(Err(raced));
        }
        for (seq, consumption) in consumption_updates {
            sqlx::query("UPDATE declarations SET consumption_m3 = $1 WHERE seq = $2")
                .bind(consumption as i64)
                .bind(seq as i64)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let counted: BTreeSet<&str> =
            rows.iter().filter(|r| r.decision.counts()).map(|r| r.item.subscription.as_str()).collect();
        let touched: Vec<&MeterRecord> = counted.iter().filter_map(|sub| meters.get(*sub)).collect();
        self.update_latest(&mut tx, &touched, now).await?;
        let billed: Vec<(u64, Option<u64>)> =
            rows.iter().filter(|r| r.decision.counts()).map(|r| (r.seq, r.decision.consumption_m3)).collect();
        self.append_billing(&mut tx, &billed, now).await?;
        tx.commit().await.map_err(db)?;
        if self.dialect == Dialect::Sqlite
            && let Some(max) = rows.iter().map(|r| r.seq).max()
        {
            *self.last_seq.lock().unwrap_or_else(|p| p.into_inner()) = Some(max);
        }
        Ok(Ok(outcomes))
    }

    /// Moves each touched meter's latest reading: an upsert on the primary key, so both databases
    /// find each row by its index.
    pub(super) async fn update_latest(
        &self,
        conn: &mut AnyConnection,
        meters: &[&MeterRecord],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let records: Vec<LatestRecord> = meters
            .iter()
            .filter_map(|m| {
                let last = m.last?;
                Some(LatestRecord {
                    subscription: m.subscription.to_string(),
                    meter_serial: m.meter_serial.to_string(),
                    digits: i64::from(m.digits),
                    updated_at_ms: unix_ms(now),
                    last_seq: match last.source {
                        Source::Declaration(seq) => Some(seq as i64),
                        Source::Billing => None,
                    },
                    last_reading: last.reading as i64,
                    last_read_at_ms: unix_ms(last.read_at),
                })
            })
            .collect();
        if records.is_empty() {
            return Ok(());
        }
        sqlx::query(self.dialect.upsert_latest()).bind(json_text(&records)?).execute(&mut *conn).await.map_err(db)?;
        Ok(())
    }
}

impl SqlStore {
    /// Adds readings that now count to the billing feed. The last statement before a commit: on
    /// PostgreSQL it locks the position counter until the commit, so that positions become
    /// visible in the order they were handed out (see the migration).
    pub(super) async fn append_billing(
        &self,
        conn: &mut AnyConnection,
        entries: &[(u64, Option<u64>)],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let count = entries.len() as i64;
        let first: i64 = match self.dialect {
            // One writer: the next positions are ours.
            Dialect::Sqlite => sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) + 1 FROM billing_feed")
                .fetch_one(&mut *conn)
                .await
                .map_err(db)?,
            Dialect::Postgres => {
                let last: i64 =
                    sqlx::query_scalar("UPDATE billing_position SET last = last + $1 WHERE id = 1 RETURNING last")
                        .bind(count)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(db)?;
                last - count + 1
            }
        };
        let rows: Vec<(i64, i64, Option<i64>, i64)> = entries
            .iter()
            .zip(first..)
            .map(|(&(seq, consumption), position)| (position, seq as i64, opt_i64(consumption), unix_ms(now)))
            .collect();
        let sql = match self.dialect {
            Dialect::Sqlite => {
                "INSERT INTO billing_feed (position, seq, consumption_m3, added_at_ms) \
                 SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each($1) WHERE true \
                 ON CONFLICT (seq) DO NOTHING"
            }
            Dialect::Postgres => {
                "INSERT INTO billing_feed (position, seq, consumption_m3, added_at_ms) \
                 SELECT (r ->> 0)::bigint, (r ->> 1)::bigint, (r ->> 2)::bigint, (r ->> 3)::bigint \
                 FROM jsonb_array_elements($1::jsonb) AS rows(r) ON CONFLICT (seq) DO NOTHING"
            }
        };
        sqlx::query(sql).bind(json_text(&rows)?).execute(&mut *conn).await.map_err(db)?;
        Ok(())
    }
}

/// A declaration row for a bulk insert. It is written as a JSON array, in column order: a
/// database finds an array element by position faster than an object member by name.
struct DeclarationRecord<'a> {
    seq: i64,
    id: String,
    channel: &'static str,
    device_id: Option<String>,
    subscription: &'a str,
    meter_serial: &'a str,
    reading: Option<i64>,
    read_at_ms: i64,
    read_at: String,
    note: Option<&'a str>,
    received_at_ms: i64,
    status: &'static str,
    code: Option<&'static str>,
    answered_consumption: Option<i64>,
    consumption_m3: Option<i64>,
    duplicate_of: Option<i64>,
    counts: bool,
    fingerprint: &'a str,
    sender: Option<&'a str>,
    operator: Option<&'a str>,
    office: Option<&'a str>,
}

impl serde::Serialize for DeclarationRecord<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple as _;
        let mut t = serializer.serialize_tuple(21)?;
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
        t.end()
    }
}

/// A meter's latest reading, as the JSON array the meter upsert unpacks.
#[derive(serde::Serialize)]
struct LatestRecord {
    subscription: String,
    meter_serial: String,
    digits: i64,
    updated_at_ms: i64,
    last_seq: Option<i64>,
    last_reading: i64,
    last_read_at_ms: i64,
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

    fn insert_declarations(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "INSERT INTO declarations (seq, id, channel, device_id, subscription, meter_serial, reading, read_at_ms, \
                 read_at, note, received_at_ms, status, code, answered_consumption, consumption_m3, duplicate_of, counts, \
                 fingerprint, sender, operator, office) \
                 SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, \
                   value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11, value ->> 12, value ->> 13, \
                   value ->> 14, value ->> 15, value ->> 16, value ->> 17, value ->> 18, value ->> 19, value ->> 20 \
                 FROM jsonb_each($1) WHERE true ON CONFLICT (id) DO NOTHING"
            }
            Dialect::Postgres => {
                "INSERT INTO declarations (seq, id, channel, device_id, subscription, meter_serial, reading, read_at_ms, \
                 read_at, note, received_at_ms, status, code, answered_consumption, consumption_m3, duplicate_of, counts, \
                 fingerprint, sender, operator, office) \
                 SELECT (r ->> 0)::bigint, r ->> 1, r ->> 2, r ->> 3, r ->> 4, r ->> 5, (r ->> 6)::bigint, \
                   (r ->> 7)::bigint, r ->> 8, r ->> 9, (r ->> 10)::bigint, r ->> 11, r ->> 12, (r ->> 13)::bigint, \
                   (r ->> 14)::bigint, (r ->> 15)::bigint, (r ->> 16)::boolean, r ->> 17, r ->> 18, r ->> 19, r ->> 20 \
                 FROM jsonb_array_elements($1::jsonb) AS rows(r) \
                 ON CONFLICT (id) DO NOTHING"
            }
        }
    }

    fn upsert_latest(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "INSERT INTO meters (subscription, meter_serial, digits, updated_at_ms, last_seq, last_reading, \
                   last_read_at_ms) \
                 SELECT value ->> 'subscription', value ->> 'meter_serial', value ->> 'digits', \
                   value ->> 'updated_at_ms', value ->> 'last_seq', value ->> 'last_reading', value ->> 'last_read_at_ms' \
                 FROM jsonb_each($1) WHERE true \
                 ON CONFLICT (subscription) DO UPDATE SET last_seq = excluded.last_seq, \
                   last_reading = excluded.last_reading, last_read_at_ms = excluded.last_read_at_ms, \
                   updated_at_ms = excluded.updated_at_ms"
            }
            Dialect::Postgres => {
                "INSERT INTO meters (subscription, meter_serial, digits, updated_at_ms, last_seq, last_reading, \
                   last_read_at_ms) \
                 SELECT subscription, meter_serial, digits, updated_at_ms, last_seq, last_reading, last_read_at_ms \
                 FROM jsonb_to_recordset($1::jsonb) AS x(subscription text, meter_serial text, digits bigint, \
                   updated_at_ms bigint, last_seq bigint, last_reading bigint, last_read_at_ms bigint) \
                 ON CONFLICT (subscription) DO UPDATE SET last_seq = excluded.last_seq, \
                   last_reading = excluded.last_reading, last_read_at_ms = excluded.last_read_at_ms, \
                   updated_at_ms = excluded.updated_at_ms"
            }
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

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn upsert_subscribers(&self, rows: &[SubscriberRow], now: OffsetDateTime) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for row in rows {
            let billed_at = row.last_read_at.map(unix_ms);
            sqlx::query(
                "INSERT INTO meters (subscription, meter_serial, digits, billed_reading, billed_at_ms, avg_daily_m3, phone, \
                   last_seq, last_reading, last_read_at_ms, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $4, $5, $8) \
                 ON CONFLICT (subscription) DO UPDATE SET meter_serial = excluded.meter_serial, digits = excluded.digits, \
                   billed_reading = excluded.billed_reading, billed_at_ms = excluded.billed_at_ms, \
                   avg_daily_m3 = excluded.avg_daily_m3, phone = excluded.phone, updated_at_ms = excluded.updated_at_ms, \
                   last_seq = CASE WHEN meters.last_read_at_ms IS NULL OR excluded.billed_at_ms >= meters.last_read_at_ms \
                     THEN NULL ELSE meters.last_seq END, \
                   last_reading = CASE WHEN meters.last_read_at_ms IS NULL OR excluded.billed_at_ms >= meters.last_read_at_ms \
                     THEN excluded.billed_reading ELSE meters.last_reading END, \
                   last_read_at_ms = CASE WHEN meters.last_read_at_ms IS NULL OR excluded.billed_at_ms >= meters.last_read_at_ms \
                     THEN excluded.billed_at_ms ELSE meters.last_read_at_ms END",
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
        let sql = format!("SELECT {METER_COLUMNS} FROM meters WHERE subscription = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
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
            let result = self.apply_once(batch, now, look_up).await;
            if !matches!(result, Ok(Ok(_))) {
                *self.last_seq.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
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
        let Some(wal) = self.wal.clone() else { return Ok(()) };
        let flushed =
            tokio::task::spawn_blocking(move || wal.flush()).await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
        flushed.map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))
    }

    fn writes_on_own_thread(&self) -> bool {
        // sqlx's SQLite driver answers from a thread per connection; PostgreSQL's sockets belong to
        // the shared runtime's reactor.
        self.dialect == Dialect::Sqlite
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
        let held: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM declarations WHERE status = 'needs_review' AND review IS NULL")
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

    async fn failure_windows(&self, keys: &[String], since_ms: i64) -> Result<Vec<(String, i64, u32)>, StoreError> {
        let sql = match self.dialect {
            Dialect::Sqlite => {
                "SELECT key, window_started_ms, failures FROM identity_failures \
                 WHERE key IN (SELECT value FROM json_each($1)) AND window_started_ms > $2"
            }
            Dialect::Postgres => {
                "SELECT key, window_started_ms, failures FROM identity_failures \
                 WHERE key = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb))) AND window_started_ms > $2"
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
                "INSERT INTO identity_failures (key, window_started_ms, failures) VALUES ($1, $2, 1) \
             ON CONFLICT (key) DO UPDATE SET \
               failures = CASE WHEN identity_failures.window_started_ms <= $3 THEN 1 \
                 ELSE identity_failures.failures + 1 END, \
               window_started_ms = CASE WHEN identity_failures.window_started_ms <= $3 THEN $2 \
                 ELSE identity_failures.window_started_ms END",
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
        sqlx::query("DELETE FROM identity_failures WHERE window_started_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }
}
