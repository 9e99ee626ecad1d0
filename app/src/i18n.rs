//! The interface's words in Persian (first) and English, and number display.

use shared::Lang;

/// Every label of the interface.
#[derive(Debug, Clone, Copy)]
pub enum Text {
    Title,
    MyMeters,
    Subscription,
    MeterSerial,
    AddMeter,
    Verified,
    NotVerified,
    Declare,
    Meter,
    Reading,
    Save,
    SaveAnyway,
    Saved,
    Receipt,
    Outbox,
    Unsent,
    LastSync,
    Never,
    SendNow,
    Waiting,
    Accepted,
    UnderReview,
    Rejected,
    ApprovedOnReview,
    RejectedOnReview,
    Tracking,
    SendBySms,
    CorrectAndResend,
    Offline,
    WrongPair,
    NoMeter,
    BadReading,
    Language,
    StoragePersistent,
    StorageBestEffort,
    InstallOnIos,
    Complaints,
    Subject,
    KindDispute,
    KindService,
    About,
    Description,
    Send,
    ComplaintNumber,
    AwaitingAnswer,
    NotReceived,
    Answer,
    Dispute,
    LastReading,
    Consumption,
    CubicMetres,
    ResendRedated,
}

pub fn t(lang: Lang, text: Text) -> &'static str {
    use Text::*;
    match (lang, text) {
        (Lang::Fa, ApprovedOnReview) => "پس از بررسی پذیرفته شد",
        (Lang::En, ApprovedOnReview) => "approved on review",
        (Lang::Fa, RejectedOnReview) => "پس از بررسی پذیرفته نشد",
        (Lang::En, RejectedOnReview) => "not accepted on review",
        (Lang::Fa, Title) => "اعلام رقم کنتور گاز",
        (Lang::En, Title) => "Gas meter reading",
        (Lang::Fa, MyMeters) => "کنتورهای من",
        (Lang::En, MyMeters) => "My meters",
        (Lang::Fa, Subscription) => "شماره اشتراک",
        (Lang::En, Subscription) => "Subscription number",
        (Lang::Fa, MeterSerial) => "شماره سریال کنتور",
        (Lang::En, MeterSerial) => "Meter serial number",
        (Lang::Fa, AddMeter) => "افزودن کنتور",
        (Lang::En, AddMeter) => "Add meter",
        (Lang::Fa, Verified) => "تأییدشده",
        (Lang::En, Verified) => "verified",
        (Lang::Fa, NotVerified) => "در انتظار تأیید (هنگام ارسال)",
        (Lang::En, NotVerified) => "to be verified when sent",
        (Lang::Fa, Declare) => "اعلام رقم",
        (Lang::En, Declare) => "Declare a reading",
        (Lang::Fa, Meter) => "کنتور",
        (Lang::En, Meter) => "Meter",
        (Lang::Fa, Reading) => "رقم کنتور (ارقام سیاه)",
        (Lang::En, Reading) => "Reading (black digits)",
        (Lang::Fa, Save) => "ثبت",
        (Lang::En, Save) => "Save",
        (Lang::Fa, SaveAnyway) => "ارقام را بررسی کردم، ثبت شود",
        (Lang::En, SaveAnyway) => "I checked the digits, save it",
        (Lang::Fa, Saved) => "ذخیره شد و ارسال می‌شود.",
        (Lang::En, Saved) => "Saved; it will be sent.",
        (Lang::Fa, Receipt) => "رسید",
        (Lang::En, Receipt) => "Receipt",
        (Lang::Fa, Outbox) => "اعلام‌های من",
        (Lang::En, Outbox) => "My declarations",
        (Lang::Fa, Unsent) => "ارسال‌نشده",
        (Lang::En, Unsent) => "Unsent",
        (Lang::Fa, LastSync) => "آخرین ارسال موفق",
        (Lang::En, LastSync) => "Last successful sync",
        (Lang::Fa, Never) => "هنوز نه",
        (Lang::En, Never) => "not yet",
        (Lang::Fa, SendNow) => "ارسال اکنون",
        (Lang::En, SendNow) => "Send now",
        (Lang::Fa, Waiting) => "در انتظار ارسال",
        (Lang::En, Waiting) => "waiting",
        (Lang::Fa, Accepted) => "پذیرفته شد",
        (Lang::En, Accepted) => "accepted",
        (Lang::Fa, UnderReview) => "در حال بررسی",
        (Lang::En, UnderReview) => "under review",
        (Lang::Fa, Rejected) => "رد شد",
        (Lang::En, Rejected) => "rejected",
        (Lang::Fa, Tracking) => "کد رهگیری",
        (Lang::En, Tracking) => "Tracking code",
        (Lang::Fa, SendBySms) => "ارسال با پیامک",
        (Lang::En, SendBySms) => "Send by SMS",
        (Lang::Fa, CorrectAndResend) => "اصلاح و ارسال دوباره",
        (Lang::En, CorrectAndResend) => "Correct and send again",
        (Lang::Fa, Offline) => "اتصال برقرار نیست؛ بعداً ارسال می‌شود.",
        (Lang::En, Offline) => "No connection; it will be sent later.",
        (Lang::Fa, WrongPair) => "شماره اشتراک یا سریال کنتور درست نیست.",
        (Lang::En, WrongPair) => "The subscription or serial number is not correct.",
        (Lang::Fa, NoMeter) => "ابتدا یک کنتور اضافه کنید.",
        (Lang::En, NoMeter) => "Add a meter first.",
        (Lang::Fa, BadReading) => "رقم کنتور باید عدد باشد.",
        (Lang::En, BadReading) => "The reading must be a number.",
        (Lang::Fa, StoragePersistent) => "ذخیره‌سازی گوشی: ماندگار",
        (Lang::En, StoragePersistent) => "Storage on this phone: persistent",
        (Lang::Fa, StorageBestEffort) => "ذخیره‌سازی گوشی: ممکن است مرورگر پاکش کند؛ برنامه را به صفحهٔ اصلی بیفزایید.",
        (Lang::En, StorageBestEffort) => {
            "Storage on this phone may be cleared by the browser; add the app to the home screen."
        }
        (Lang::Fa, InstallOnIos) => "برای نصب: دکمهٔ «اشتراک‌گذاری» و سپس «افزودن به صفحهٔ اصلی» را بزنید.",
        (Lang::En, InstallOnIos) => "To install: tap Share, then “Add to Home Screen”.",
        (Lang::Fa, Complaints) => "شکایت و اعتراض",
        (Lang::En, Complaints) => "Complaints and disputes",
        (Lang::Fa, Subject) => "موضوع",
        (Lang::En, Subject) => "Subject",
        (Lang::Fa, KindDispute) => "اعتراض به رقم یا صورت‌حساب",
        (Lang::En, KindDispute) => "Dispute a reading or a bill",
        (Lang::Fa, KindService) => "شکایت از خدمات",
        (Lang::En, KindService) => "Complaint about the service",
        (Lang::Fa, About) => "کد رهگیری یا رسید اعلام (اختیاری)",
        (Lang::En, About) => "Tracking code or receipt of the declaration (optional)",
        (Lang::Fa, Description) => "شرح",
        (Lang::En, Description) => "What happened",
        (Lang::Fa, Send) => "ثبت شکایت",
        (Lang::En, Send) => "File it",
        (Lang::Fa, ComplaintNumber) => "شمارهٔ شکایت",
        (Lang::En, ComplaintNumber) => "Complaint number",
        (Lang::Fa, AwaitingAnswer) => "در انتظار پاسخ",
        (Lang::En, AwaitingAnswer) => "awaiting an answer",
        (Lang::Fa, NotReceived) => "ثبت نشد",
        (Lang::En, NotReceived) => "not recorded",
        (Lang::Fa, Answer) => "پاسخ",
        (Lang::En, Answer) => "Answer",
        (Lang::Fa, Dispute) => "اعتراض",
        (Lang::En, Dispute) => "Dispute",
        (Lang::Fa, LastReading) => "آخرین رقم ثبت‌شده",
        (Lang::En, LastReading) => "Last recorded reading",
        (Lang::Fa, Consumption) => "مصرف",
        (Lang::En, Consumption) => "Consumption",
        (Lang::Fa, CubicMetres) => "مترمکعب",
        (Lang::En, CubicMetres) => "m³",
        (Lang::Fa, ResendRedated) => "ارسال دوباره با زمان درست",
        (Lang::En, ResendRedated) => "Send again with the right time",
        (Lang::Fa, Language) => "English",
        (Lang::En, Language) => "فارسی",
    }
}

/// What the subscriber is told when the phone's clock is off by more than a few minutes.
pub fn clock_warning(lang: Lang, phone_ahead_minutes: i64) -> String {
    let minutes = number(lang, &phone_ahead_minutes.unsigned_abs().to_string());
    let ahead = phone_ahead_minutes > 0;
    match lang {
        Lang::Fa => format!(
            "ساعت گوشی شما {minutes} دقیقه {} است. رقم‌ها با ساعت سامانه ثبت می‌شوند؛ برای رفع، ساعت گوشی را تنظیم کنید.",
            if ahead { "جلو" } else { "عقب" }
        ),
        Lang::En => format!(
            "Your phone's clock is {minutes} minutes {}. Readings are dated by the service's clock; set the phone's clock to fix this.",
            if ahead { "ahead" } else { "behind" }
        ),
    }
}

/// Digits as the reader expects them: Persian digits in Persian.
pub fn number(lang: Lang, text: &str) -> String {
    match lang {
        Lang::Fa => shared::digits::to_persian_digits(text),
        Lang::En => text.to_owned(),
    }
}

/// A time in the reader's calendar: Solar Hijri in Persian, through the browser's `Intl`.
pub fn datetime(lang: Lang, t: time::OffsetDateTime) -> String {
    let ms = (t.unix_timestamp_nanos() / 1_000_000) as f64;
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms));
    let locale = match lang {
        Lang::Fa => "fa-IR-u-ca-persian",
        Lang::En => "en-GB",
    };
    String::from(date.to_locale_string(locale, &wasm_bindgen::JsValue::UNDEFINED))
}
