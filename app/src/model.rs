//! The app's plain data: meters on this device, declarations and complaints and their states,
//! and the pure decisions about them (what to send next, what a server result means for an item).

use serde::Serialize;
use shared::clock::Offset;
use shared::rules::{Chain, MeterContext, Point, Source};
use shared::wire::{ComplaintKind, ComplaintSubmission, MeterInfo, ReadingInput, Submission};
use shared::{Code, Reading, Status};
use time::OffsetDateTime;
use uuid::Uuid;

/// A meter the subscriber added on this phone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Meter {
    /// The normalised subscription number: the key.
    pub subscription: String,
    pub meter_serial: String,
    /// What the server said when the meter was verified; `None` until then.
    pub info: Option<MeterInfo>,
    pub device_token: Option<String>,
}

impl Meter {
    /// The meter with the server's newer account of it (a sync or verify answer): the latest
    /// counting reading, its time, the average; the device token stays.
    pub fn with_baseline(&self, info: &MeterInfo) -> Self {
        Self { info: Some(info.clone()), ..self.clone() }
    }

    /// The context the rules check readings against, offline.
    pub fn context(&self) -> MeterContext {
        // Not verified yet: the phone does not know how many digits it shows, so no reading is
        // refused here for its length (the server checks it when the meter is verified).
        let Some(info) = &self.info else { return MeterContext { digits: 12, ..MeterContext::default() } };
        MeterContext { digits: info.digits, avg_daily_m3: info.avg_daily_m3, max_hourly_m3: info.max_daily_m3 / 24.0 }
    }

    /// The meter's last known reading, as a one-point chain: the later, in reading time, of the
    /// server's baseline and this phone's own readings of the meter that count or may yet count
    /// (sent and accepted, or still waiting), so that readings entered one after another offline
    /// are each checked against the one before, as the server will check them.
    ///
    /// For a correction of `corrected`, that reading is left out, whether the phone holds it or
    /// the server's baseline is it.
    pub fn chain(&self, declarations: &[Declaration], corrected: Option<&Declaration>) -> Chain {
        let is_corrected = |reading: u64, read_at: OffsetDateTime| {
            // The server's baseline carries the time to the second at best.
            corrected.is_some_and(|c| c.reading == reading && (c.read_at - read_at).abs() < time::Duration::SECOND)
        };
        let baseline = self.info.as_ref().and_then(|info| {
            Some(Point { source: Source::Billing, reading: info.last_reading?, read_at: info.last_read_at? })
        });
        let baseline = baseline.filter(|p| !is_corrected(p.reading, p.read_at));
        let own = declarations
            .iter()
            .filter(|d| d.subscription == self.subscription && d.may_count())
            .filter(|d| !is_corrected(d.reading, d.read_at))
            // Offline there is no store sequence to name: a point of the phone's own is a baseline too.
            .map(|d| Point { source: Source::Billing, reading: d.reading, read_at: d.read_at });
        Chain::of_latest(baseline.into_iter().chain(own).max_by_key(|p| p.read_at))
    }
}

/// Where a declaration is on its way to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Waiting,
    Accepted,
    NeedsReview,
    Rejected,
    /// Taken back by the subscriber before it was sent: kept as a mark, so that no tab sends it.
    Discarded,
}

/// A declaration made on this phone; it is never edited once it may have reached the server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Declaration {
    pub id: Uuid,
    pub subscription: String,
    pub meter_serial: String,
    pub reading: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub read_at: OffsetDateTime,
    pub state: State,
    pub code: Option<Code>,
    pub message: Option<String>,
    pub tracking_code: Option<String>,
    pub consumption_m3: Option<u64>,
    /// Staff's decision on a declaration held for review, learnt at a later sync: the news
    /// after a `needs_review` outcome, which itself never changes. (Absent in declarations saved
    /// before the app knew of decisions: they read as `None`.)
    pub review_accepted: Option<bool>,
    pub review_reason: Option<String>,
    /// What was added to the phone's clock to date it: the server's clock as known then, in
    /// milliseconds (0 before the phone knew, and in declarations saved before it kept this).
    pub clock_offset_ms: i64,
    /// The earlier declaration of this phone that this one corrects (a mistyped reading).
    pub corrects: Option<Uuid>,
    /// The correction that replaced this one on the server: it no longer counts.
    pub replaced_by: Option<Uuid>,
    /// The phone's id, kept with each record so that the service worker, which cannot read
    /// `localStorage`, can send the outbox with no page open (absent in older records).
    pub device_id: Option<Uuid>,
    /// The app's language when it was saved (`fa`, `en`): the service worker asks for the
    /// server's messages in it.
    pub lang: Option<String>,
    /// When the service worker, sending with no page open, wrote its outcome: the page's "last
    /// successful send" catches up from it.
    #[serde(with = "time::serde::rfc3339::option")]
    pub answered_at: Option<OffsetDateTime>,
}

impl Declaration {
    /// A reading taken now, dated with the server's time as far as the phone knows it.
    pub fn new(meter: &Meter, reading: Reading, phone_now: OffsetDateTime, clock: Offset) -> Self {
        Self::waiting(&meter.subscription, &meter.meter_serial, reading.value(), clock.server_now(phone_now), clock)
    }

    /// A declaration not sent yet, with a new id, dated `read_at` by the clock offset `clock`.
    fn waiting(subscription: &str, meter_serial: &str, reading: u64, read_at: OffsetDateTime, clock: Offset) -> Self {
        Self {
            id: Uuid::now_v7(),
            subscription: subscription.to_owned(),
            meter_serial: meter_serial.to_owned(),
            reading,
            read_at,
            state: State::Waiting,
            code: None,
            message: None,
            tracking_code: None,
            consumption_m3: None,
            review_accepted: None,
            review_reason: None,
            clock_offset_ms: offset_ms(clock),
            corrects: None,
            replaced_by: None,
            device_id: None,
            lang: None,
            answered_at: None,
        }
    }

    /// A reading that corrects `earlier` (a typo the server has already answered).
    pub fn correcting(
        meter: &Meter,
        reading: Reading,
        earlier: Uuid,
        phone_now: OffsetDateTime,
        clock: Offset,
    ) -> Self {
        Self { corrects: Some(earlier), ..Self::new(meter, reading, phone_now, clock) }
    }

    /// Whether the subscriber may still replace it with a correction: answered as accepted or
    /// held, not decided by staff nor replaced, and read less than the server's window ago.
    pub fn correctable(&self, server_now: OffsetDateTime) -> bool {
        matches!(self.state, State::Accepted | State::NeedsReview)
            && self.review_accepted.is_none()
            && self.replaced_by.is_none()
            && shared::rules::correction_open(self.read_at, server_now)
    }

    /// Whether it counts or may yet: waiting to be sent, accepted, or approved on review.
    pub fn may_count(&self) -> bool {
        if self.replaced_by.is_some() {
            return false;
        }
        match (self.state, self.review_accepted) {
            (_, Some(accepted)) => accepted,
            (State::Waiting | State::Accepted, None) => true,
            (State::NeedsReview | State::Rejected | State::Discarded, None) => false,
        }
    }

    /// Whether the server refused it for a reading time in its future: the phone's clock was
    /// wrong, not the reading, so it can be sent again with a corrected time.
    pub fn refused_for_clock(&self) -> bool {
        self.state == State::Rejected && self.code == Some(shared::Code::ReadAtInFuture)
    }

    /// The same reading as a new declaration, dated again with what the phone knows now of the
    /// server's clock (the refused one is final and stays as it was answered). It stays after
    /// the readings of the meter this phone took before it (`all`): the clock estimate is good
    /// to about a second (HTTP dates), and two readings a moment apart must keep their order.
    pub fn redated(&self, clock: Offset, phone_now: OffsetDateTime, all: &[Declaration]) -> Self {
        let applied = Offset(time::Duration::milliseconds(self.clock_offset_ms));
        let read_at = clock.redate(self.read_at, applied, phone_now);
        let before = all
            .iter()
            .filter(|d| d.id < self.id && d.subscription == self.subscription && d.may_count())
            .map(|d| d.read_at + time::Duration::MILLISECOND)
            .max();
        let read_at = before.map_or(read_at, |b| read_at.max(b));
        Self::waiting(&self.subscription, &self.meter_serial, self.reading, read_at, clock)
    }

    /// The receipt shown at once, offline: seven digits from the id, which the server can find
    /// the declaration by once it has arrived (`shared::Receipt`).
    pub fn receipt(&self) -> String {
        shared::Receipt::of(self.id).to_string()
    }

    pub fn submission(&self) -> Submission {
        Submission {
            id: self.id,
            subscription: self.subscription.clone(),
            meter_serial: self.meter_serial.clone(),
            reading: ReadingInput::Number(self.reading.into()),
            read_at: self.read_at,
            note: None,
            corrects: self.corrects,
        }
    }

    /// The declaration with the server's final outcome.
    pub fn with_result(&self, result: &crate::js::Outcome) -> Self {
        let state = match result.status {
            Status::Accepted => State::Accepted,
            Status::NeedsReview => State::NeedsReview,
            Status::Rejected => State::Rejected,
        };
        Self {
            state,
            code: result.code,
            message: Some(result.message.clone()),
            tracking_code: result.tracking_code.clone(),
            consumption_m3: result.consumption_m3,
            ..self.clone()
        }
    }

    /// Whether the server has answered it.
    pub fn answered(&self) -> bool {
        !matches!(self.state, State::Waiting | State::Discarded)
    }

    /// The declaration taken back before it was sent.
    pub fn discarded(&self) -> Self {
        Self { state: State::Discarded, ..self.clone() }
    }

    /// The declaration with staff's decision on it.
    pub fn with_review(&self, update: &crate::api::Decided) -> Self {
        Self { review_accepted: Some(update.accepted), review_reason: update.reason.clone(), ..self.clone() }
    }

    /// The company's SMS format for this reading, with its receipt, for an `sms:` link when data
    /// cannot get through.
    pub fn sms_body(&self) -> String {
        match (Reading::new(self.reading), shared::SubscriptionNumber::parse(&self.subscription)) {
            (Some(reading), Ok(subscription)) => {
                shared::sms::body(reading, &subscription, &shared::Receipt::of(self.id))
            }
            // Not a reading the app would have saved: the card's plain format.
            _ => format!("{}*{}*{}", self.reading, shared::sms::SERVICE, self.subscription),
        }
    }
}

impl shared::outbox::Queued for Declaration {
    fn id(&self) -> Uuid {
        self.id
    }
    fn waiting(&self) -> bool {
        self.state == State::Waiting
    }
}

/// An offset in whole milliseconds, as the device store keeps it.
pub fn offset_ms(clock: Offset) -> i64 {
    i64::try_from(clock.0.whole_milliseconds()).unwrap_or(0)
}

/// Whether a later declaration of this phone already carries the same reading for the same
/// meter: the refused one was sent again, and offering it once more would make a duplicate.
pub fn resent(declaration: &Declaration, all: &[Declaration]) -> bool {
    all.iter().any(|d| {
        d.id > declaration.id && d.subscription == declaration.subscription && d.reading == declaration.reading
    })
}

/// The declarations held for review whose decision this phone has not learnt yet.
pub fn awaiting_review(declarations: &[Declaration]) -> Vec<Uuid> {
    let held = declarations.iter().filter(|d| d.state == State::NeedsReview && d.review_accepted.is_none());
    held.map(|d| d.id).take(shared::wire::MAX_UPDATE_IDS).collect()
}

/// The history's order: the newest declaration first.
pub fn newest_first(declarations: &mut [Declaration]) {
    declarations.sort_unstable_by_key(|d| std::cmp::Reverse(d.id));
}

/// The complaints' order: the newest first.
pub fn newest_first_complaints(complaints: &mut [Complaint]) {
    complaints.sort_unstable_by_key(|c| std::cmp::Reverse(c.id));
}

/// A complaint or dispute made on this phone: queued like a declaration, sent once, then
/// waiting for staff's answer. Never edited once it may have reached the server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Complaint {
    pub id: Uuid,
    pub subscription: String,
    pub kind: ComplaintKind,
    /// The tracking code it is about, in ASCII digits, if any.
    pub about: Option<String>,
    pub text: String,
    #[serde(with = "time::serde::rfc3339")]
    pub made_at: OffsetDateTime,
    /// `None` while it waits to be sent; then whether the server received it (a refusal is
    /// final: the subscriber corrects it and files a new one).
    pub received: Option<bool>,
    /// The server's words on it: why it was refused, or that it was received.
    pub message: Option<String>,
    pub number: Option<String>,
    /// Staff's answer, learnt at a later sync.
    pub answer: Option<String>,
}

impl Complaint {
    /// The complaint as sent, with the serial of its meter on this device (the server's proof
    /// that the sender holds the meter).
    pub fn submission(&self, meters: &[Meter]) -> ComplaintSubmission {
        ComplaintSubmission {
            id: self.id,
            subscription: self.subscription.clone(),
            meter_serial: meters.iter().find(|m| m.subscription == self.subscription).map(|m| m.meter_serial.clone()),
            kind: self.kind,
            about: self.about.clone(),
            text: self.text.clone(),
            made_at: self.made_at,
        }
    }
}

impl shared::outbox::Queued for Complaint {
    fn id(&self) -> Uuid {
        self.id
    }
    fn waiting(&self) -> bool {
        self.received.is_none()
    }
}

/// The received complaints whose answer this phone has not learnt yet.
pub fn awaiting_answer(complaints: &[Complaint]) -> Vec<Uuid> {
    let open = complaints.iter().filter(|c| c.received == Some(true) && c.answer.is_none());
    open.map(|c| c.id).take(shared::wire::MAX_UPDATE_IDS).collect()
}
