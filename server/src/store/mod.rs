//! The store: the subscriber registry, devices and every channel's declarations.
//!
//! One trait, [`Store`], used by the HTTP handlers and the group-commit writer. [`SqlStore`]
//! implements it for SQLite and PostgreSQL, chosen once from the database URL; each backend has
//! its own migrations under `server/migrations/`.

mod complaints;
mod console;
mod direct;
mod flusher;
mod inbox;
mod photos;
mod replies;
mod sql;
pub mod transfer;
mod worker;

pub use sql::redact as sql_redact;

use async_trait::async_trait;
use shared::rules::{MeterContext, Point, Source};
use shared::wire::{self, MeterInfo, ReadingInput, Submission};
use shared::{Code, MeterSerial, Reading, Status, SubscriptionNumber, digits, sms};
use time::OffsetDateTime;
use uuid::Uuid;

pub use inbox::{ClaimedMessage, InboxCounts, Judged, PulledMessage, SmsInbox};
pub use photos::{NewPhoto, PhotoStore, PutPhoto, StoredPhoto};
pub use replies::{Attempted, ClaimedReply, NewReply, ReplyCounts, ReplyQueue, ReplyRecord};
pub use sql::{Dialect, SqlStore, sqlite_migrations};

/// The declaration a phone's receipt stands for, within one subscription: the app declaration
/// whose id gives that receipt (the newest, should two ever share one). `None` until the phone's
/// declaration has arrived. A handful of rows: a subscription's declarations, read by its index.
pub async fn by_receipt(
    store: &dyn Store,
    subscription: &SubscriptionNumber,
    receipt: &shared::Receipt,
) -> Result<Option<StoredDeclaration>, StoreError> {
    let declarations = store.declarations_of(subscription.as_str()).await?;
    let app = Channel::App.as_str();
    Ok(declarations
        .into_iter()
        .filter(|d| d.channel == app && shared::Receipt::of(d.id) == *receipt)
        .max_by_key(|d| d.seq))
}

/// What can go wrong in the store. Handlers answer `503` for [`StoreError::Unavailable`] (the
/// client keeps its outbox and retries) and `500` for the rest.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// SQLite's declarations connection (`direct.rs`).
    #[error("database error")]
    Sqlite(#[source] rusqlite::Error),
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn classify(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
                Self::Unavailable(Box::new(err))
            }
            sqlx::Error::Database(ref e) if unavailable(e.code().as_deref()) => Self::Unavailable(Box::new(err)),
            other => Self::Database(other),
        }
    }

    /// Whether the database gave up on the transaction and asks for it again: a serialisation
    /// failure (SQLSTATE 40001, routine on CockroachDB and YugabyteDB, and on PostgreSQL under
    /// `SERIALIZABLE`) or a deadlock (40P01). Nothing of the transaction was stored.
    pub fn should_retry(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::Database(e)) => matches!(e.code().as_deref(), Some("40001" | "40P01")),
            _ => false,
        }
    }
}

/// Whether a database error code means "the database cannot take this now; try again later"
/// (answered 503, the client keeps its outbox) rather than a fault in the request or the data.
/// PostgreSQL's codes have five characters: connection exceptions (class 08), the server
/// shutting down or starting (57P01–57P03), insufficient resources such as a full disk or too
/// many connections (class 53), system and I/O errors (class 58). SQLite's are numbers, whose
/// low byte is the primary code: busy (5), locked (6), I/O error (10), full (13), cannot open
/// (14).
fn unavailable(code: Option<&str>) -> bool {
    match code {
        // SQLite's extended codes have at most four digits.
        Some(code) if code.len() == 5 => {
            code.starts_with("08") || code.starts_with("53") || code.starts_with("58") || code.starts_with("57P0")
        }
        Some(code) => code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 10 | 13 | 14)),
        None => false,
    }
}

/// A meter as the registry knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterRecord {
    pub subscription: SubscriptionNumber,
    pub meter_serial: MeterSerial,
    pub digits: u8,
    pub avg_daily_m3: Option<f64>,
    pub max_hourly_m3: f64,
    pub phone: Option<String>,
    /// The last billed reading, from the registry.
    pub billed: Option<Point>,
    /// The latest reading that counts, in reading time.
    pub last: Option<Point>,
}

impl MeterRecord {
    pub fn context(&self) -> MeterContext {
        MeterContext { digits: self.digits, avg_daily_m3: self.avg_daily_m3, max_hourly_m3: self.max_hourly_m3 }
    }

    pub fn info(&self) -> MeterInfo {
        MeterInfo {
            subscription: self.subscription.to_string(),
            digits: self.digits,
            last_reading: self.last.map(|p| p.reading),
            last_read_at: self.last.map(|p| p.read_at.to_offset(shared::wire::SERVER_OFFSET)),
            avg_daily_m3: self.avg_daily_m3,
            max_daily_m3: self.context().max_daily_m3(),
        }
    }
}

/// One row of the billing system's subscriber export.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriberRow {
    pub subscription: SubscriptionNumber,
    pub meter_serial: MeterSerial,
    pub digits: u8,
    pub last_reading: Option<u64>,
    pub last_read_at: Option<OffsetDateTime>,
    pub avg_daily_m3: Option<f64>,
    pub phone: Option<String>,
}

/// The channel a declaration came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    App,
    Sms,
    Ivr,
    /// A counter office, through the console.
    Office,
}

impl Channel {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::Sms => "sms",
            Self::Ivr => "ivr",
            Self::Office => "office",
        }
    }
}

/// The operator and office behind a declaration made at a counter office.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staff {
    pub operator: String,
    pub office: String,
}

/// What ties a declaration to its meter, besides the subscription number.
#[derive(Debug, Clone, PartialEq)]
pub enum Proof {
    /// The meter serial the subscriber typed (`None` when it does not parse).
    Serial(Option<MeterSerial>),
    /// The phone number an SMS or a call came from, normalised (`None` when withheld).
    Phone(Option<String>),
    /// A device token issued when this device verified this very subscription online.
    Device,
}

/// How far a [`Proof`] identifies a meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// The serial matches, or the phone is the one registered to the subscription.
    Verified,
    /// A phone other than the registered one: the declaration is kept for review.
    Unverified,
    /// The serial does not match: `identity_mismatch`.
    Refused,
}

impl Proof {
    pub fn identifies(&self, meter: &MeterRecord) -> Identity {
        match self {
            Self::Serial(serial) if serial.as_ref() == Some(&meter.meter_serial) => Identity::Verified,
            Self::Serial(_) => Identity::Refused,
            Self::Phone(Some(phone))
                if meter.phone.as_deref().and_then(sms::normalize_phone).as_ref() == Some(phone) =>
            {
                Identity::Verified
            }
            Self::Phone(_) => Identity::Unverified,
            Self::Device => Identity::Verified,
        }
    }
}

/// A declaration as received, before it is judged. The identifiers are kept in their canonical
/// form when they parse and as sent (digits normalised) when they do not, because a declaration
/// that names no known meter is stored too. Everything the writer needs is computed here, in the
/// request's task, so that the single writer does as little as possible.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub id: Uuid,
    pub channel: Channel,
    pub device_id: Option<Uuid>,
    pub subscription: String,
    /// The serial as stored: canonical, as sent, or empty for a channel that has none.
    pub meter_serial: String,
    pub parsed_subscription: Option<SubscriptionNumber>,
    pub proof: Proof,
    /// The phone number an SMS or a call came from, as received.
    pub sender: Option<String>,
    /// `None` when what was sent is not a whole number ≥ 0.
    pub reading: Option<Reading>,
    pub read_at: OffsetDateTime,
    pub note: Option<String>,
    /// Who declared it at a counter office.
    pub staff: Option<Staff>,
    /// The earlier declaration of the same device this one corrects (the sync API's
    /// `corrects`): see [`sql::judge`] for when it is replaced.
    pub corrects: Option<Uuid>,
    /// What makes two submissions under one id "the same content": the canonical identifiers,
    /// the reading, the instant it was read, the note and what it corrects.
    pub fingerprint: String,
    /// The id and the reading time as stored, written where the request is read (on any of the
    /// runtime's threads) rather than by the single writer.
    pub(crate) texts: Texts,
}

/// A declaration's text columns, made once.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Texts {
    pub(crate) id: String,
    /// RFC 3339, as sent (with its offset).
    pub(crate) read_at: String,
}

impl Texts {
    fn of(id: Uuid, read_at: OffsetDateTime) -> Self {
        use time::format_description::well_known::Rfc3339;
        Self { id: id.to_string(), read_at: read_at.format(&Rfc3339).unwrap_or_else(|_| unix_ms(read_at).to_string()) }
    }
}

impl Incoming {
    /// A declaration from the sync API.
    pub fn from_submission(s: &Submission, channel: Channel, device_id: Option<Uuid>) -> Self {
        let parsed_subscription = SubscriptionNumber::parse(&s.subscription).ok();
        let parsed_serial = MeterSerial::parse(&s.meter_serial).ok();
        let subscription =
            parsed_subscription.as_ref().map_or_else(|| digits::normalize(&s.subscription), ToString::to_string);
        let meter_serial =
            parsed_serial.as_ref().map_or_else(|| digits::normalize(&s.meter_serial), ToString::to_string);
        let reading = s.reading.reading();
        let reading_text = match (&reading, &s.reading) {
            (Some(r), _) => r.to_string(),
            (None, ReadingInput::Number(n)) => n.to_string(),
            (None, ReadingInput::Text(t)) => digits::normalize(t),
        };
        let note = wire::clean_note(s.note.as_deref());
        let mut fingerprint = format!(
            "{subscription}\u{1F}{meter_serial}\u{1F}{reading_text}\u{1F}{}\u{1F}{}",
            unix_ms(s.read_at),
            note.as_deref().unwrap_or("")
        );
        // Only when present: fingerprints stored before corrections existed stay the same.
        if let Some(corrects) = s.corrects {
            fingerprint.push_str(&format!("\u{1F}corrects {corrects}"));
        }
        Self {
            id: s.id,
            channel,
            device_id,
            subscription,
            meter_serial,
            parsed_subscription,
            proof: Proof::Serial(parsed_serial),
            sender: None,
            reading,
            read_at: s.read_at,
            note,
            staff: None,
            corrects: s.corrects,
            fingerprint,
            texts: Texts::of(s.id, s.read_at),
        }
    }

    /// A declaration made by an operator at a counter office, on behalf of the subscriber in
    /// front of them: the same fields as the sync API's, and the same checks.
    pub fn from_office(s: &Submission, staff: Staff) -> Self {
        Self { staff: Some(staff), ..Self::from_submission(s, Channel::Office, None) }
    }

    /// A declaration by SMS or by phone. Its id comes from the channel's own message id, so the
    /// same message delivered twice is one declaration; its fingerprint leaves the arrival time
    /// out for the same reason.
    pub fn from_phone(call: PhoneDeclaration<'_>) -> Self {
        let phone = sms::normalize_phone(call.sender);
        let fingerprint = format!(
            "{}\u{1F}{}\u{1F}{}\u{1F}{}",
            call.channel.as_str(),
            call.declaration.subscription,
            call.declaration.reading,
            phone.as_deref().unwrap_or("")
        );
        let id = Uuid::new_v5(&PHONE_NAMESPACE, format!("{}:{}", call.channel.as_str(), call.message_id).as_bytes());
        Self {
            id,
            channel: call.channel,
            device_id: None,
            subscription: call.declaration.subscription.to_string(),
            meter_serial: String::new(),
            parsed_subscription: Some(call.declaration.subscription.clone()),
            proof: Proof::Phone(phone),
            sender: Some(call.sender.to_owned()),
            reading: Some(call.declaration.reading),
            read_at: call.received_at,
            note: None,
            staff: None,
            corrects: None,
            fingerprint,
            texts: Texts::of(id, call.received_at),
        }
    }
}

/// A declaration that came by SMS or by phone, before it becomes an [`Incoming`].
#[derive(Debug, Clone, Copy)]
pub struct PhoneDeclaration<'a> {
    pub channel: Channel,
    /// The gateway's message id, or the call's unique id.
    pub message_id: &'a str,
    pub sender: &'a str,
    pub declaration: &'a sms::SmsDeclaration,
    /// When the gateway received the message: the reading time of an SMS declaration.
    pub received_at: OffsetDateTime,
}

/// The UUIDv5 namespace of ids made from SMS message ids and call ids.
const PHONE_NAMESPACE: Uuid = Uuid::from_u128(0x6b6f_6e74_6f72_4d73_8000_0000_0000_0001);

/// The stored outcome of a declaration, as answered to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub id: Uuid,
    pub status: Status,
    pub code: Option<Code>,
    pub consumption_m3: Option<u64>,
    /// The sequence number the tracking code stands for (the first declaration's, for a repeat);
    /// none for a rejection.
    pub tracking_seq: Option<u64>,
    pub replayed: bool,
    /// The id of the earlier declaration this correction voided ([`Incoming::corrects`]).
    pub supersedes: Option<Uuid>,
}

/// Counts for tests, benchmarks and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub declarations: u64,
    pub meters: u64,
}

/// A key's identity failures as stored: (key, its last failure in Unix ms, failures since it was
/// last quiet for a whole window).
pub type FailureWindow = (String, i64, u32);

/// The maps of the write path, keyed by a batch's subscriptions and ids or by meters that exist:
/// foldhash, seeded per process, instead of the standard SipHash, which cost a twentieth of the
/// SQLite writer's instructions (`server/examples/apply_cost.rs` under callgrind).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The SMS replies waiting to be sent.
    fn replies(&self) -> &dyn ReplyQueue;
    /// The messages taken from gateways' inbox APIs.
    fn inbox(&self) -> &dyn SmsInbox;
    /// The meter photos sent with declarations.
    fn photos(&self) -> &dyn PhotoStore;
    /// Creates or updates registry rows, all or none.
    async fn upsert_subscribers(&self, rows: &[SubscriberRow], now: OffsetDateTime) -> Result<(), StoreError>;
    async fn meter(&self, subscription: &SubscriptionNumber) -> Result<Option<MeterRecord>, StoreError>;
    /// Remembers a device token (by its hash) issued for a verified meter.
    async fn register_device(
        &self,
        token_hash: &str,
        device_id: Uuid,
        subscription: &SubscriptionNumber,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// The subscription a device token (by its hash) was issued for, if it was.
    async fn device_subscription(&self, token_hash: &str) -> Result<Option<String>, StoreError>;
    /// Judges and stores a batch of declarations in one transaction, in order; answers one
    /// outcome per item. An id stored before gets its first outcome back (`replayed`), or
    /// `id_conflict` when the content differs; the UNIQUE constraint on the id decides.
    ///
    /// The transaction is committed when this returns, but durable only once a later
    /// [`Store::sync`] has returned: nothing may be answered to a client before that.
    async fn apply(&self, batch: &[Incoming], now: OffsetDateTime) -> Result<Vec<Outcome>, StoreError>;
    /// Makes every transaction committed before the call durable. A store whose commits are
    /// durable by themselves does nothing; SQLite flushes its write-ahead log here, so that the
    /// writer's next transaction runs while the disk writes the last one.
    async fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// [`Store::sync`] for a caller that does not wait: `then` is called, on whichever thread
    /// learns it first, once every transaction committed before the call is durable, or with the
    /// error that stopped it. It must be quick (answering requests, not more). A store whose
    /// commits are durable by themselves calls it at once.
    fn sync_then(&self, then: Box<dyn FnOnce(Result<(), StoreError>) + Send>) {
        then(Ok(()));
    }
    async fn counts(&self) -> Result<Counts, StoreError>;
    /// How many `apply` transactions may run at once.
    fn concurrent_writes(&self) -> usize {
        1
    }
    /// Whether the writer must run on a thread of its own, because [`Store::apply`] blocks the
    /// calling thread (see `crate::writer::Writer::spawn`).
    fn writes_on_own_thread(&self) -> bool {
        false
    }
    /// The outcomes stored for a meter, oldest first in reading time (for tests and the console).
    async fn declarations_of(&self, subscription: &str) -> Result<Vec<StoredDeclaration>, StoreError>;

    // The staff console.

    /// Creates an operator, or replaces the role, office and password of an existing one.
    async fn save_operator(&self, operator: &OperatorRecord, now: OffsetDateTime) -> Result<(), StoreError>;
    async fn operator(&self, username: &str) -> Result<Option<OperatorRecord>, StoreError>;
    async fn create_session(&self, session: &NewSession<'_>) -> Result<(), StoreError>;
    /// The session a cookie (by its hash) stands for, unless it has expired.
    async fn session(&self, token_hash: &str, now: OffsetDateTime) -> Result<Option<Session>, StoreError>;
    async fn end_session(&self, token_hash: &str) -> Result<(), StoreError>;
    /// Moves a live session's end to `expires_at` (the console's idle timeout slides it).
    async fn extend_session(&self, token_hash: &str, expires_at: OffsetDateTime) -> Result<(), StoreError>;
    /// Remembers a browser its staff member signed in from (by the hash of its cookie), until
    /// `expires_at`; expired ones go as new ones come.
    async fn trust_browser(&self, browser: &TrustedBrowser<'_>) -> Result<(), StoreError>;
    /// Whose browser a cookie (by its hash) names, unless it has expired.
    async fn trusted_browser(&self, token_hash: &str, now: OffsetDateTime) -> Result<Option<String>, StoreError>;
    /// Records a staff action. Durable before it returns, like a declaration.
    async fn audit(&self, entry: &AuditEntry<'_>) -> Result<(), StoreError>;
    /// The newest audit entries first, from before `before` (a sequence number) when given.
    async fn audit_log(&self, before: Option<u64>, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;
    /// One declaration, by its sequence number.
    async fn declaration(&self, seq: u64) -> Result<Option<StoredDeclaration>, StoreError>;
    /// One declaration, by its client-made id.
    async fn declaration_by_id(&self, id: Uuid) -> Result<Option<StoredDeclaration>, StoreError>;
    /// An office's declarations received since `since`, newest first.
    async fn office_declarations(
        &self,
        office: &str,
        since: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<StoredDeclaration>, StoreError>;
    /// Declarations waiting for a reviewer, oldest first.
    async fn review_queue(&self, limit: u32) -> Result<Vec<StoredDeclaration>, StoreError>;
    /// How many declarations wait for a reviewer, and how many complaints for an answer.
    async fn backlog(&self) -> Result<(u64, u64), StoreError>;
    /// Carries out a reviewer's decision in one transaction, serialised with the meter's other
    /// declarations (the writer calls it). Durable once a later [`Store::sync`] has returned.
    async fn decide(&self, request: &ReviewRequest, now: OffsetDateTime) -> Result<ReviewResult, StoreError>;

    /// The billing feed after position `after`, at most `limit` entries, in feed order.
    async fn billing_feed(&self, after: u64, limit: u32) -> Result<Vec<BillingEntry>, StoreError>;
    /// The billing feed's last position (0 when it is empty): no cursor past it was handed out.
    async fn billing_end(&self) -> Result<u64, StoreError>;

    // Complaints and what staff did since.

    /// Stores a complaint once per id (durably before it returns); the UNIQUE id decides.
    async fn file_complaint(&self, complaint: &NewComplaint, now: OffsetDateTime) -> Result<Filed, StoreError>;
    async fn complaint(&self, seq: u64) -> Result<Option<ComplaintRecord>, StoreError>;
    /// Unanswered complaints, oldest first.
    async fn open_complaints(&self, limit: u32) -> Result<Vec<ComplaintRecord>, StoreError>;
    /// An office's complaints received since `since`, newest first.
    async fn office_complaints(
        &self,
        office: &str,
        since: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<ComplaintRecord>, StoreError>;
    /// Stores staff's answer, unless one is stored already (`false` then); audited in the same
    /// transaction.
    async fn answer_complaint(
        &self,
        seq: u64,
        answer: &str,
        staff: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// The reviewers' decisions among `declarations` and the answers among `complaints`.
    async fn updates(
        &self,
        declarations: &[Uuid],
        complaints: &[Uuid],
    ) -> Result<(Vec<shared::wire::ReviewUpdate>, Vec<shared::wire::ComplaintAnswer>), StoreError>;

    /// Whether several `kontor serve` instances may share this store (PostgreSQL): then no
    /// guarantee may live in one process's memory.
    fn shared_by_instances(&self) -> bool;
    /// Identity failures counted in the store: of the keys named, those whose last failure came
    /// after `since_ms`.
    async fn failure_windows(&self, keys: &[String], since_ms: i64) -> Result<Vec<FailureWindow>, StoreError>;
    /// Counts one failure against `key` in one statement, starting its count again when its last
    /// failure came `window_ms` or more before `now_ms`.
    async fn record_failure(&self, key: &str, now_ms: i64, window_ms: i64) -> Result<(), StoreError>;
    /// Deletes the keys whose last failure came before `before_ms`.
    async fn sweep_failures(&self, before_ms: i64) -> Result<(), StoreError>;
}

/// A complaint as received, before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewComplaint {
    pub id: Uuid,
    pub channel: Channel,
    pub device_id: Option<Uuid>,
    pub subscription: String,
    pub kind: shared::wire::ComplaintKind,
    /// The declaration it is about.
    pub about_seq: Option<u64>,
    pub text: String,
    pub made_at: OffsetDateTime,
    pub staff: Option<Staff>,
}

impl NewComplaint {
    /// What makes two complaints under one id "the same content".
    pub fn fingerprint(&self) -> String {
        format!(
            "{}\u{1F}{}\u{1F}{}\u{1F}{}\u{1F}{}",
            self.subscription,
            self.kind.as_str(),
            self.about_seq.map(|s| s.to_string()).unwrap_or_default(),
            unix_ms(self.made_at),
            self.text
        )
    }
}

/// What became of a complaint sent to be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filed {
    /// Stored now, under this sequence number.
    New(u64),
    /// Stored before with the same content.
    Replayed(u64),
    /// The id was stored before with other content: nothing changed.
    Conflict,
}

/// A stored complaint.
#[derive(Debug, Clone, PartialEq)]
pub struct ComplaintRecord {
    pub seq: u64,
    pub id: Uuid,
    pub channel: String,
    pub subscription: String,
    pub kind: shared::wire::ComplaintKind,
    pub about_seq: Option<u64>,
    pub text: String,
    pub made_at: OffsetDateTime,
    pub received_at: OffsetDateTime,
    pub staff: Option<Staff>,
    /// Staff's answer, who gave it and when.
    pub answer: Option<(String, String, OffsetDateTime)>,
}

impl ComplaintRecord {
    pub fn number(&self) -> Option<shared::ComplaintNumber> {
        shared::ComplaintNumber::from_sequence(self.seq)
    }
}

/// One reading of the billing feed.
#[derive(Debug, Clone, PartialEq)]
pub struct BillingEntry {
    pub position: u64,
    pub seq: u64,
    pub subscription: String,
    pub meter_serial: String,
    pub reading: u64,
    pub read_at: OffsetDateTime,
    pub consumption_m3: Option<u64>,
    pub channel: String,
    pub approved_on_review: bool,
    pub kind: shared::wire::BillingKind,
    /// The position of the entry this one replaces, and that entry's consumption.
    pub replaces: Option<(u64, Option<u64>)>,
}

impl BillingEntry {
    pub fn to_wire(&self) -> shared::wire::BillingReading {
        shared::wire::BillingReading {
            cursor: self.position.to_string(),
            tracking_code: shared::TrackingCode::from_sequence(self.seq).map(|c| c.to_string()).unwrap_or_default(),
            subscription: self.subscription.clone(),
            meter_serial: self.meter_serial.clone(),
            reading: self.reading,
            read_at: self.read_at.to_offset(shared::wire::SERVER_OFFSET),
            consumption_m3: self.consumption_m3,
            channel: self.channel.clone(),
            approved_on_review: self.approved_on_review,
            kind: self.kind,
            replaces: self.replaces.map(|(position, _)| position.to_string()),
            replaced_consumption_m3: self.replaces.and_then(|(_, consumption)| consumption),
        }
    }
}

/// What a staff member may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A counter-office operator: declares on behalf of subscribers.
    Office,
    /// Company staff who decide the declarations held for review.
    Reviewer,
    /// Everything, and the audit log.
    Admin,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Office => "office",
            Self::Reviewer => "reviewer",
            Self::Admin => "admin",
        }
    }

    pub fn from_str_opt(s: &str) -> Option<Self> {
        match s {
            "office" => Some(Self::Office),
            "reviewer" => Some(Self::Reviewer),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// Whether this role may declare on behalf of subscribers.
    pub fn declares(self) -> bool {
        matches!(self, Self::Office | Self::Admin)
    }

    /// Whether this role may decide held declarations.
    pub fn reviews(self) -> bool {
        matches!(self, Self::Reviewer | Self::Admin)
    }

    /// Whether this role may read the audit log.
    pub fn audits(self) -> bool {
        self == Self::Admin
    }
}

/// A staff account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    pub username: String,
    pub role: Role,
    pub office: String,
    /// The argon2id hash in PHC string form.
    pub password_hash: String,
}

/// A session to remember.
#[derive(Debug, Clone, Copy)]
pub struct NewSession<'a> {
    pub token_hash: &'a str,
    pub username: &'a str,
    pub csrf: &'a str,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A browser to trust for one staff member's sign-ins.
#[derive(Debug, Clone, Copy)]
pub struct TrustedBrowser<'a> {
    pub token_hash: &'a str,
    pub username: &'a str,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A live session: whose it is, and the token its forms must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub username: String,
    pub role: Role,
    pub office: String,
    pub csrf: String,
    pub created_at: OffsetDateTime,
    /// When it ends unless it is used again before (see `ConsoleOptions::session_idle`).
    pub expires_at: OffsetDateTime,
}

/// A staff action to record.
#[derive(Debug, Clone, Copy)]
pub struct AuditEntry<'a> {
    pub at: OffsetDateTime,
    pub username: &'a str,
    /// A stable word: `login`, `login_failed`, `logout`, `declare`, `approve`, `reject`, …
    pub action: &'a str,
    pub detail: &'a str,
}

/// A recorded staff action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: u64,
    pub at: OffsetDateTime,
    pub username: String,
    pub action: String,
    pub detail: String,
}

/// A reviewer's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewDecision {
    /// A held declaration counts.
    Approve,
    /// A held declaration does not count; the subscriber is told why.
    Reject { reason: String },
    /// A declaration that counts (accepted, or approved on review) is wrong and stops counting;
    /// the reading after it is measured from the one before it.
    Void { reason: String },
}

/// A reviewer's decision on one held declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRequest {
    pub seq: u64,
    pub decision: ReviewDecision,
    pub reviewer: String,
}

/// What became of a review request.
#[derive(Debug, Clone, PartialEq)]
pub enum ReviewResult {
    /// Decided now; the declaration as it stands after the decision.
    Decided(StoredDeclaration),
    /// Another reviewer decided it first (or it never needed review): nothing changed.
    NotPending(StoredDeclaration),
    /// It has no reading to count (or no meter to count it on): it can only be rejected.
    CannotCount,
    /// Approving it would make the meter's chain go down: a neighbour must be voided first, or
    /// this one rejected.
    Conflict(StoredDeclaration, shared::rules::Conflict),
    /// A void of a declaration that does not count (held, rejected, a repeat, voided already).
    NotCounting(StoredDeclaration),
    NotFound,
}

/// A stored declaration, as the console and the tests read it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDeclaration {
    pub seq: u64,
    pub id: Uuid,
    pub channel: String,
    pub subscription: String,
    pub meter_serial: String,
    pub reading: Option<u64>,
    pub read_at: OffsetDateTime,
    pub received_at: OffsetDateTime,
    /// The first outcome, as answered.
    pub status: Status,
    pub code: Option<Code>,
    /// The current consumption (recomputed when a reading lands before it, or on approval).
    pub consumption_m3: Option<u64>,
    pub duplicate_of: Option<u64>,
    /// Whether it is in the meter's chain of counting readings.
    pub counts: bool,
    pub note: Option<String>,
    pub sender: Option<String>,
    pub staff: Option<Staff>,
    pub review: Option<Review>,
    /// Staff voided it: it no longer counts.
    pub void: Option<Void>,
    /// Approved on review as a repeat of this counting declaration: it adds nothing. (Not
    /// `duplicate_of`, which is part of the first outcome that a replay answers.)
    pub repeat_of: Option<u64>,
}

impl StoredDeclaration {
    /// The tracking code the subscriber was given, if any.
    pub fn tracking_code(&self) -> Option<shared::TrackingCode> {
        if self.status == Status::Rejected {
            return None;
        }
        shared::TrackingCode::from_sequence(self.duplicate_of.unwrap_or(self.seq))
    }

    /// Whether it waits for a reviewer (a repeat of a held declaration waits with it, as one).
    pub fn pending_review(&self) -> bool {
        self.status == Status::NeedsReview && self.review.is_none() && self.duplicate_of.is_none()
    }
}

/// Staff's void of a declaration that counted, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Void {
    pub reason: String,
    pub by: String,
    pub at: OffsetDateTime,
}

/// A reviewer's decision as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub approved: bool,
    pub reason: Option<String>,
    pub reviewer: String,
    pub at: OffsetDateTime,
}

/// The time now in Unix milliseconds, as the store keeps times.
pub fn now_ms() -> i64 {
    unix_ms(OffsetDateTime::now_utc())
}

pub(crate) fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(crate) fn from_unix_ms(ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| StoreError::Corrupt(format!("time {ms}: {e}")))
}

pub(crate) fn last_point(
    seq: Option<i64>,
    reading: Option<i64>,
    at_ms: Option<i64>,
) -> Result<Option<Point>, StoreError> {
    let (Some(reading), Some(at_ms)) = (reading, at_ms) else {
        return Ok(None);
    };
    let source = match seq {
        Some(seq) => Source::Declaration(seq as u64),
        None => Source::Billing,
    };
    Ok(Some(Point { source, reading: reading as u64, read_at: from_unix_ms(at_ms)? }))
}

#[cfg(test)]
mod tests {
    use super::unavailable;

    #[test]
    fn trouble_is_told_from_faults() {
        for code in ["08006", "57P01", "57P03", "53100", "53300", "58030", "5", "517", "6", "10", "13", "14", "1546"] {
            assert!(unavailable(Some(code)), "{code}");
        }
        for code in ["23505", "40001", "22P02", "42P01", "19", "1555", "2067", "1"] {
            assert!(!unavailable(Some(code)), "{code}");
        }
        assert!(!unavailable(None));
    }
}
