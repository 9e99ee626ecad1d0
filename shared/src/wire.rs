//! The wire types of sync API v1 (`sync-api.md`): the only types serialised across HTTP.
//!
//! Changing one is a protocol change: add optional fields, never rename or remove one.

use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::{Code, Lang, Reading, Status, digits};

/// The most submissions one sync request may carry.
pub const MAX_BATCH: usize = 500;
/// The largest request body the server reads.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The longest subscription number or meter serial an item may carry, in characters, spaces
/// and marks included; a longer one is no identifier and the item is answered `malformed` (and
/// not stored), so junk cannot fill the store.
pub const MAX_IDENTIFIER_CHARS: usize = 64;
/// The longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 500;
/// Iran Standard Time, the offset the server writes its times in.
pub const SERVER_OFFSET: UtcOffset = match UtcOffset::from_hms(3, 30, 0) {
    Ok(offset) => offset,
    Err(_) => UtcOffset::UTC,
};

/// `POST /api/v1/meters/verify` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyRequest {
    /// Digits in any script.
    pub subscription: String,
    pub meter_serial: String,
    pub device_id: Uuid,
}

/// `POST /api/v1/meters/verify` answer: a device token and what the app needs to check readings
/// offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyResponse {
    /// Sent later as `Authorization: Bearer …`.
    pub device_token: String,
    pub meter: MeterInfo,
}

/// A meter's context for offline checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeterInfo {
    /// The normalised subscription number.
    pub subscription: String,
    /// How many black digits the meter shows.
    pub digits: u8,
    /// The latest accepted reading in reading time, from any channel, or the billed one.
    pub last_reading: Option<u64>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_read_at: Option<OffsetDateTime>,
    pub avg_daily_m3: Option<f64>,
    /// The most gas the meter can pass in a day.
    pub max_daily_m3: f64,
}

/// `POST /api/v1/sync` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncRequest {
    /// The sending device (the app always sends it); a batch without it is taken all the same,
    /// its declarations then recorded with no device.
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub device_id: Uuid,
    /// 1 to 500 submissions.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 500))]
    pub submissions: Vec<Submission>,
}

/// One declaration, as a client sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Submission {
    /// Made by the client: the idempotency key.
    pub id: Uuid,
    pub subscription: String,
    pub meter_serial: String,
    pub reading: ReadingInput,
    /// When the subscriber read the meter, from the device's clock.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub read_at: OffsetDateTime,
    /// Optional free text, at most 500 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The id of an earlier submission of this device that this one corrects (a mistyped
    /// reading). Where the earlier one is still the meter's latest reading, or waits for review,
    /// and was stored less than [`CORRECTION_WINDOW_HOURS`] ago, it is voided and this one judged
    /// in its place, in one transaction; otherwise this one is judged as a reading of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrects: Option<Uuid>,
}

/// How long after an earlier submission was stored its sender may still replace it by a
/// correction ([`Submission::corrects`]). Later, staff decide (a dispute).
pub const CORRECTION_WINDOW_HOURS: i64 = 24;

/// A reading as sent: a JSON number (the contract), or digits in a string (tolerated). Whether it
/// is a whole number of the right size is a rule with its own code, not a parse failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum ReadingInput {
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    Number(serde_json::Number),
    Text(String),
}

impl ReadingInput {
    /// The reading, if it is a whole number ≥ 0 that any meter could show.
    pub fn reading(&self) -> Option<Reading> {
        match self {
            Self::Number(n) => n.as_u64().and_then(Reading::new),
            Self::Text(t) => Reading::parse(t).ok(),
        }
    }
}

impl From<Reading> for ReadingInput {
    fn from(r: Reading) -> Self {
        Self::Number(r.value().into())
    }
}

/// `POST /api/v1/sync` answer: one result per submission, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncResponse {
    pub results: Vec<SyncResult>,
    /// The server's clock when it answered: a phone keeps how far its own clock is off.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub server_time: OffsetDateTime,
    /// Each meter this batch proved it holds (a valid serial or device token on at least one
    /// item), as it stands after the batch: the latest counting reading and its time, the
    /// average, the capacity. The phone judges its next readings offline against these. Absent
    /// when no item proved a meter; at most [`MAX_BASELINES`] meters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meters: Vec<MeterInfo>,
}

/// The most meters one sync answer describes (a phone holds a few; a bulk sender needs none).
pub const MAX_BASELINES: usize = 10;

/// The outcome of one submission. All three statuses are final for the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncResult {
    /// The submission's id; `null` only for an item whose id could not be read.
    pub id: Option<Uuid>,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    /// In the request's `Accept-Language` (Persian by default).
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumption_m3: Option<u64>,
    /// True when this id had been stored before: the result is the first one, unchanged.
    pub replayed: bool,
    /// The id of the earlier submission this correction replaced (voided); absent when it
    /// replaced none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<Uuid>,
}

/// The most complaints one request may carry.
pub const MAX_COMPLAINTS: usize = 50;
/// The longest complaint text, in characters.
pub const MAX_COMPLAINT_CHARS: usize = 1000;
/// The most ids one `POST /api/v1/updates` may ask about, of each kind.
pub const MAX_UPDATE_IDS: usize = 500;

/// `POST /api/v1/complaints` request: complaints and disputes, queued offline like declarations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComplaintsRequest {
    pub device_id: Uuid,
    /// 1 to 50 complaints.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 50))]
    pub complaints: Vec<ComplaintSubmission>,
}

/// What a complaint is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ComplaintKind {
    /// The subscriber disputes a reading or a bill.
    Dispute,
    /// Anything else about the service.
    Service,
}

impl ComplaintKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Dispute => "dispute",
            Self::Service => "service",
        }
    }

    pub fn from_str_opt(s: &str) -> Option<Self> {
        match s {
            "dispute" => Some(Self::Dispute),
            "service" => Some(Self::Service),
            _ => None,
        }
    }
}

/// One complaint, as a client sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComplaintSubmission {
    /// Made by the client: the idempotency key.
    pub id: Uuid,
    pub subscription: String,
    /// The meter's serial: the proof that the sender holds the meter. Not needed when the request
    /// carries, as `Authorization: Bearer`, the device token that verify issued for this
    /// subscription. Without either proof a complaint is refused (`identity_mismatch`), the same
    /// way whether the subscription exists or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter_serial: Option<String>,
    pub kind: ComplaintKind,
    /// The declaration it is about, if any: its tracking code, or the receipt the phone showed
    /// for it (7 digits) before there was one. Either is checked by its check digit, and must
    /// name a declaration of this subscription that the server has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
    /// 1 to 1,000 characters.
    pub text: String,
    /// When the subscriber wrote it, from the device's clock.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub made_at: OffsetDateTime,
}

macro_rules! complaint_codes {
    ($( $variant:ident = $name:literal, $fa:literal, $en:literal; )*) => {
        /// Why a complaint was not received.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum ComplaintCode { $( $variant, )* }

        impl ComplaintCode {
            pub const fn as_str(self) -> &'static str {
                match self { $( Self::$variant => $name, )* }
            }

            pub const fn message(self, lang: Lang) -> &'static str {
                match (self, lang) { $( (Self::$variant, Lang::Fa) => $fa, (Self::$variant, Lang::En) => $en, )* }
            }
        }
    };
}

complaint_codes! {
    UnknownSubscription = "unknown_subscription", "این شماره اشتراک در سامانه نیست.", "This subscription number is not in the registry.";
    TrackingCodeInvalid = "tracking_code_invalid", "کد رهگیری یا رسید درست نیست یا هنوز به ما نرسیده است؛ آن را دوباره بررسی کنید.", "The tracking code or receipt is not valid, or has not reached us yet; check it again.";
    TextLength = "text_length", "متن شکایت باید ۱ تا ۱۰۰۰ نویسه باشد.", "The complaint must be 1 to 1,000 characters.";
    IdConflict = "id_conflict", "این شناسه پیش‌تر با محتوای دیگری ثبت شده است.", "This id was stored before with different content.";
    IdentityMismatch = "identity_mismatch", "شماره اشتراک و شماره بدنهٔ کنتور با هم نمی‌خوانند.", "The subscription number and the meter serial do not match.";
}

/// Whether a complaint was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ComplaintStatus {
    /// Stored; staff will answer. It has a complaint number.
    Received,
    /// Not stored, for `code`; the subscriber may correct it and send it again.
    Rejected,
}

/// `POST /api/v1/complaints` answer: one result per complaint, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComplaintsResponse {
    pub results: Vec<ComplaintResult>,
}

/// What became of one complaint. Both statuses are final for the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComplaintResult {
    pub id: Uuid,
    pub status: ComplaintStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ComplaintCode>,
    /// In the request's `Accept-Language`.
    pub message: String,
    /// Eight or twelve digits with a check digit; never the length of a tracking code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complaint_number: Option<String>,
    /// True when this id had been received before: the result is the first one.
    pub replayed: bool,
}

/// `POST /api/v1/updates`: what the client holds that staff may have acted on since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdatesRequest {
    pub device_id: Uuid,
    /// Ids of declarations answered `needs_review` (at most 500).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 500))]
    pub declarations: Vec<Uuid>,
    /// Ids of received complaints not yet answered (at most 500).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 500))]
    pub complaints: Vec<Uuid>,
}

/// `POST /api/v1/updates` answer: only what has news.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdatesResponse {
    /// The reviewers' decisions on the declarations asked about, where there is one.
    pub decisions: Vec<ReviewUpdate>,
    /// Staff answers to the complaints asked about, where there is one.
    pub answers: Vec<ComplaintAnswer>,
}

/// A reviewer's decision on a held declaration. Its first outcome (`needs_review`) stays as it
/// was answered; this is the news that follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewUpdate {
    pub id: Uuid,
    /// `accepted` (it counts for billing) or `rejected`.
    pub status: Status,
    /// The reviewer's reason, for a rejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub decided_at: OffsetDateTime,
}

/// Staff's answer to a complaint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComplaintAnswer {
    pub id: Uuid,
    pub complaint_number: String,
    pub answer: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub answered_at: OffsetDateTime,
}

/// `GET /api/v1/billing/readings`: a page of the billing feed, every reading that counts for
/// billing once, in the order it started to count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BillingPage {
    pub readings: Vec<BillingReading>,
    /// Where the next page starts: send it back as `after`. Equal to `after` when nothing is new.
    pub next: String,
    /// Whether more readings are waiting now (fetch again at once).
    pub more: bool,
}

/// What a billing feed entry says of its reading (its tracking code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BillingKind {
    /// The reading starts to count (accepted, or approved on review): its first entry.
    #[default]
    Reading,
    /// Its consumption changed after it joined the feed (an earlier reading arrived later, a held
    /// reading was approved before it, staff voided the reading before it): this entry's
    /// `consumption_m3` replaces the one of the entry named by `replaces`.
    Correction,
    /// Staff voided the reading: it no longer counts and carries no consumption.
    Void,
}

impl BillingKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Reading => "reading",
            Self::Correction => "correction",
            Self::Void => "void",
        }
    }

    pub fn from_str_opt(s: &str) -> Option<Self> {
        Some(match s {
            "reading" => Self::Reading,
            "correction" => Self::Correction,
            "void" => Self::Void,
            _ => return None,
        })
    }
}

/// One entry of the billing feed. Read the feed in order: a later entry for a tracking code
/// replaces the earlier one, so that per meter the `consumption_m3` of each tracking code's latest
/// entry adds up to the gas the meter passed since its billed reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BillingReading {
    /// This reading's place in the feed (an opaque cursor).
    pub cursor: String,
    pub tracking_code: String,
    pub subscription: String,
    /// The meter's serial, from the registry.
    pub meter_serial: String,
    pub reading: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub read_at: OffsetDateTime,
    /// Cubic metres since the meter's previous counting reading, as known when this entry was
    /// added (absent when it had none, and for a void).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumption_m3: Option<u64>,
    /// `app`, `sms`, `ivr` or `office`.
    pub channel: String,
    /// Whether staff approved it after it was held for review.
    pub approved_on_review: bool,
    /// `reading` for a reading's first entry, `correction` or `void` for one that replaces it.
    #[serde(default)]
    pub kind: BillingKind,
    /// The cursor of the entry of the same tracking code that this one replaces (absent for a
    /// first entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    /// The `consumption_m3` of the entry replaced, for the record (absent when it had none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_consumption_m3: Option<u64>,
}

/// `POST /api/v1/sms/inbound`: one message from the SMS gateway, as JSON or form fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SmsInbound {
    /// The sender's phone number.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, pattern = r"\S"))]
    pub from: String,
    /// The short number the message was sent to.
    #[serde(default)]
    pub to: Option<String>,
    pub text: String,
    /// The gateway's id of the message: the same id delivered again is the same declaration.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, pattern = r"\S"))]
    pub message_id: String,
    /// When the gateway received the message (RFC 3339); the server's clock when absent.
    #[serde(default)]
    pub received_at: Option<String>,
}

/// The answer to an SMS: the text to send back to the sender, in Persian.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SmsReply {
    pub reply: String,
    /// The declaration's outcome, when the message was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_code: Option<String>,
}

/// The body of every non-200 answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: ApiErrorCode,
    pub message: String,
}

macro_rules! api_errors {
    ($( $variant:ident = $name:literal, $fa:literal, $en:literal; )*) => {
        /// Why a whole request was refused (as opposed to one submission's outcome).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum ApiErrorCode { $( $variant, )* }

        impl ApiErrorCode {
            pub const fn as_str(self) -> &'static str {
                match self { $( Self::$variant => $name, )* }
            }

            pub const fn message(self, lang: Lang) -> &'static str {
                match (self, lang) { $( (Self::$variant, Lang::Fa) => $fa, (Self::$variant, Lang::En) => $en, )* }
            }
        }
    };
}

api_errors! {
    InvalidJson = "invalid_json", "بدنه درخواست JSON معتبر نیست.", "The request body is not valid JSON.";
    InvalidEnvelope = "invalid_envelope", "درخواست فهرست submissions یا device_id معتبر ندارد.", "The request has no valid submissions array or device_id.";
    BatchSize = "batch_size", "هر درخواست باید ۱ تا ۵۰۰ اعلام داشته باشد.", "A request must carry 1 to 500 submissions.";
    UnsupportedMediaType = "unsupported_media_type", "نوع محتوا باید application/json باشد.", "The content type must be application/json.";
    PayloadTooLarge = "payload_too_large", "حجم درخواست بیش از ۱ مگابایت است.", "The request body is larger than 1 MiB.";
    IdentityMismatch = "identity_mismatch", "شماره اشتراک یا شماره سریال کنتور درست نیست.", "The subscription number or the meter serial number is not correct.";
    RateLimited = "rate_limited", "تلاش‌های ناموفق زیاد بود؛ کمی بعد دوباره امتحان کنید.", "Too many failed attempts; try again later.";
    Unavailable = "unavailable", "سرویس موقتاً در دسترس نیست؛ اعلام‌ها در گوشی می‌مانند و بعداً ارسال می‌شوند.", "The service is temporarily unavailable; declarations stay queued and will be sent later.";
    Internal = "internal", "خطای داخلی رخ داد؛ دوباره امتحان کنید.", "An internal error occurred; try again.";
    NotFound = "not_found", "چنین نشانی‌ای وجود ندارد.", "There is no such address.";
    Unauthorized = "unauthorized", "کلید دسترسی درست نیست.", "The shared secret is missing or wrong.";
    InvalidCursor = "invalid_cursor", "این نشانگر صفحه از این سرور نیست.", "The cursor is not one this server handed out.";
    UnsupportedPictureType = "unsupported_picture_type", "نوع محتوا باید image/jpeg یا image/webp باشد.", "The content type must be image/jpeg or image/webp.";
    NotAPicture = "not_a_picture", "فایل فرستاده‌شده عکس JPEG یا WebP درستی نیست.", "The file is not a valid JPEG or WebP picture.";
    PictureTooLarge = "picture_too_large", "عکس بزرگ‌تر از حد مجاز است (۵۱۲ کیلوبایت یا ۱۶ مگاپیکسل).", "The picture is larger than allowed (512 KiB or 16 megapixels).";
    UnknownDeclaration = "unknown_declaration", "این اعلام هنوز به سرور نرسیده است؛ پس از ارسال رقم دوباره بفرستید.", "No declaration from the app has this id yet; send the reading first.";
    PhotoExists = "photo_exists", "برای این اعلام عکس دیگری ثبت شده است.", "Another photo is already stored for this declaration.";
}

impl ErrorBody {
    pub fn new(code: ApiErrorCode, lang: Lang) -> Self {
        Self { error: ErrorDetail { code, message: code.message(lang).to_owned() } }
    }
}

/// Cuts a note to the allowed length and drops invisible marks at its ends.
pub fn clean_note(note: Option<&str>) -> Option<String> {
    let note = digits::normalize(note?);
    if note.is_empty() {
        return None;
    }
    Some(note.chars().take(MAX_NOTE_CHARS).collect())
}

/// A complaint's text without the spaces around it, or `text_length` when nothing is left or it
/// is longer than [`MAX_COMPLAINT_CHARS`]: one rule for the server and the app that queues it.
pub fn complaint_text(text: &str) -> Result<&str, ComplaintCode> {
    let text = text.trim();
    let length = text.chars().count();
    if length == 0 || length > MAX_COMPLAINT_CHARS {
        return Err(ComplaintCode::TextLength);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn complaint_texts_are_bounded() {
        assert_eq!(complaint_text("  رقم اشتباه است \n"), Ok("رقم اشتباه است"));
        assert_eq!(complaint_text(" \t "), Err(ComplaintCode::TextLength));
        let longest = "ک".repeat(MAX_COMPLAINT_CHARS);
        assert_eq!(complaint_text(&longest), Ok(longest.as_str()));
        assert_eq!(complaint_text(&format!("{longest}ک")), Err(ComplaintCode::TextLength));
    }

    use super::*;

    #[test]
    fn the_contract_example_reads() {
        let body = r#"{"device_id":"3f0c8a4e-8d4f-4f59-9a43-0d6f1a0e2b11","submissions":[
            {"id":"0b7f2a5e-1c7e-4d0e-9a8b-5b5a3f7c9d21","subscription":"1234567890",
             "meter_serial":"AB123456","reading":10321,"read_at":"2026-11-26T08:15:00+03:30",
             "note":"optional free text"}]}"#;
        let req: SyncRequest = serde_json::from_str(body).expect("the contract's example parses");
        let s = &req.submissions[0];
        assert_eq!(s.reading.reading().map(Reading::value), Some(10321));
        assert_eq!(s.read_at.offset(), SERVER_OFFSET);
    }

    #[test]
    fn readings_on_the_wire() {
        let check = |json: &str, expected: Option<u64>| {
            let r: ReadingInput = serde_json::from_str(json).expect("a reading parses");
            assert_eq!(r.reading().map(Reading::value), expected, "{json}");
        };
        check("10321", Some(10321));
        check("\"۱۰۳۲۱\"", Some(10321));
        check("-1", None);
        check("12.5", None);
        check("1e3", None);
        check("\"abc\"", None);
    }

    #[test]
    fn results_leave_out_what_is_absent() {
        let r = SyncResult {
            id: None,
            status: Status::Rejected,
            code: Some(Code::Malformed),
            message: "m".into(),
            tracking_code: None,
            consumption_m3: None,
            replayed: false,
            supersedes: None,
        };
        let json = serde_json::to_value(&r).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({"id": null, "status": "rejected", "code": "malformed", "message": "m", "replayed": false})
        );
        let e = serde_json::to_value(ErrorBody::new(ApiErrorCode::BatchSize, Lang::En)).expect("serialises");
        assert_eq!(e["error"]["code"], "batch_size");
    }

    #[test]
    fn notes_are_bounded() {
        assert_eq!(clean_note(None), None);
        assert_eq!(clean_note(Some(" \u{200F} ")), None);
        assert_eq!(clean_note(Some(&"ک".repeat(600))).map(|n| n.chars().count()), Some(500));
    }
}
