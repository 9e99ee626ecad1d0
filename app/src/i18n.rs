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
    Home,
    AddAnother,
    AddFirst,
    Remove,
    Edit,
    Cancel,
    Discard,
    Retype,
    CorrectReading,
    Replaces,
    Replaced,
    SavedOnPhone,
    Sending,
    Copy,
    Copied,
    Share,
    SaveForReview,
    CannotAccept,
    NoDeclarations,
    OfThisMeter,
    HeldNext,
    NewReading,
    AddPhoto,
    PhotoHelps,
    PhotoKept,
    PhotoSent,
    PhotoFailed,
    MeterPhoto,
    Kilobytes,
    Menu,
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
        (Lang::Fa, Home) => "کنتورها",
        (Lang::En, Home) => "Meters",
        (Lang::Fa, AddAnother) => "افزودن کنتور دیگر",
        (Lang::En, AddAnother) => "Add another meter",
        (Lang::Fa, AddFirst) => "شماره اشتراک و سریال کنتور روی قبض گاز شما نوشته شده است.",
        (Lang::En, AddFirst) => "The subscription number and the meter serial are printed on your gas bill.",
        (Lang::Fa, Remove) => "حذف از گوشی",
        (Lang::En, Remove) => "Remove from phone",
        (Lang::Fa, Edit) => "ویرایش",
        (Lang::En, Edit) => "Edit",
        (Lang::Fa, Cancel) => "انصراف",
        (Lang::En, Cancel) => "Cancel",
        (Lang::Fa, Discard) => "پس گرفتن",
        (Lang::En, Discard) => "Take back",
        (Lang::Fa, Retype) => "پس گرفتن و اصلاح رقم",
        (Lang::En, Retype) => "Take back and retype",
        (Lang::Fa, CorrectReading) => "اصلاح این رقم",
        (Lang::En, CorrectReading) => "Correct this reading",
        (Lang::Fa, Replaces) => "این رقم جای رقم قبلی شما را می‌گیرد:",
        (Lang::En, Replaces) => "This reading replaces your earlier one:",
        (Lang::Fa, Replaced) => "با اصلاح شما جایگزین شد",
        (Lang::En, Replaced) => "Replaced by your correction",
        (Lang::Fa, SavedOnPhone) => "روی گوشی ذخیره شد؛ با برقراری اتصال خودش ارسال می‌شود.",
        (Lang::En, SavedOnPhone) => "Saved on this phone; it sends itself once there is a connection.",
        (Lang::Fa, Sending) => "در حال ارسال…",
        (Lang::En, Sending) => "Sending…",
        (Lang::Fa, Copy) => "رونوشت",
        (Lang::En, Copy) => "Copy",
        (Lang::Fa, Copied) => "رونوشت شد",
        (Lang::En, Copied) => "Copied",
        (Lang::Fa, Share) => "هم‌رسانی",
        (Lang::En, Share) => "Share",
        (Lang::Fa, SaveForReview) => "رقم درست است؛ برای بررسی ثبت شود",
        (Lang::En, SaveForReview) => "It is right: save it for review",
        (Lang::Fa, CannotAccept) => "این رقم پذیرفته نمی‌شود:",
        (Lang::En, CannotAccept) => "This reading cannot be accepted:",
        (Lang::Fa, NoDeclarations) => "هنوز رقمی اعلام نکرده‌اید.",
        (Lang::En, NoDeclarations) => "No readings declared yet.",
        (Lang::Fa, OfThisMeter) => "اعلام‌های این کنتور",
        (Lang::En, OfThisMeter) => "This meter's declarations",
        (Lang::Fa, HeldNext) => "کارشناس آن را بررسی می‌کند؛ نتیجه همین‌جا نشان داده می‌شود.",
        (Lang::En, HeldNext) => "Staff will check it; their decision will show here.",
        (Lang::Fa, NewReading) => "اعلام رقم دیگر",
        (Lang::En, NewReading) => "Declare another reading",
        (Lang::Fa, AddPhoto) => "افزودن عکس کنتور",
        (Lang::En, AddPhoto) => "Add a photo of the meter",
        (Lang::Fa, PhotoHelps) => "این رقم بررسی می‌شود؛ عکسی که رقم‌های کنتور در آن خوانا باشد به بررسی کمک می‌کند.",
        (Lang::En, PhotoHelps) => "This reading will be reviewed; a photo with the meter's digits legible helps.",
        (Lang::Fa, PhotoKept) => "عکس در گوشی ذخیره شد و پس از رقم فرستاده می‌شود",
        (Lang::En, PhotoKept) => "Photo kept on the phone; it follows the reading",
        (Lang::Fa, PhotoSent) => "عکس فرستاده شد",
        (Lang::En, PhotoSent) => "Photo sent",
        (Lang::Fa, PhotoFailed) => "عکس ذخیره نشد (شاید حافظهٔ گوشی پر است)؛ رقم شما ذخیره شده است.",
        (Lang::En, PhotoFailed) => {
            "The photo could not be kept (the phone's storage may be full); your reading is saved."
        }
        (Lang::Fa, MeterPhoto) => "عکس کنتور",
        (Lang::En, MeterPhoto) => "Meter photo",
        (Lang::Fa, Kilobytes) => "کیلوبایت",
        (Lang::En, Kilobytes) => "KB",
        (Lang::Fa, Menu) => "بخش‌ها",
        (Lang::En, Menu) => "Sections",
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

/// What will happen to a reading that will be held for review, with the numbers to check it by.
pub fn review_warning(lang: Lang, facts: &Facts) -> String {
    let n = |x: u64| number(lang, &x.to_string());
    let first = match (facts.code, lang) {
        (shared::Code::UnusualConsumption, Lang::Fa) => format!(
            "با این رقم، مصرف {} مترمکعب در {} روز می‌شود{}.",
            n(facts.consumption_m3.unwrap_or(0)),
            n(facts.days.max(1)),
            facts.times_usual.map(|x| format!("، {} برابر مصرف معمول شما", n(x))).unwrap_or_default()
        ),
        (shared::Code::UnusualConsumption, Lang::En) => format!(
            "This reading means {} m³ in {} days{}.",
            facts.consumption_m3.unwrap_or(0),
            facts.days.max(1),
            facts.times_usual.map(|x| format!(", {x} times your usual use")).unwrap_or_default()
        ),
        (shared::Code::ReadingDecreased, Lang::Fa) => {
            format!("این رقم از رقم قبلی ({}) کمتر است.", n(facts.last_reading.unwrap_or(0)))
        }
        (shared::Code::ReadingDecreased, Lang::En) => {
            format!("This reading is lower than the last one ({}).", facts.last_reading.unwrap_or(0))
        }
        (code, lang) => code.message(lang).to_owned(),
    };
    let then = match lang {
        Lang::Fa => "اگر ارقام را درست خوانده‌اید، ثبت می‌شود و کارشناس پیش از پذیرش بررسی‌اش می‌کند.",
        Lang::En => "If you read the digits right, it will be saved and checked by staff before it counts.",
    };
    format!("{first} {then}")
}

/// What a reading that cannot be accepted is told, with the numbers that make it so.
pub fn refusal(lang: Lang, facts: &Facts) -> String {
    let n = |x: u64| number(lang, &x.to_string());
    let why = match (facts.code, lang) {
        (shared::Code::ReadingOutOfRange, Lang::Fa) => {
            format!("این کنتور {} رقم سیاه دارد.", n(u64::from(facts.digits)))
        }
        (shared::Code::ReadingOutOfRange, Lang::En) => format!("This meter shows {} black digits.", facts.digits),
        (shared::Code::ImpossibleConsumption, Lang::Fa) => format!(
            "{} مترمکعب در {} روز بیش از توان کنتور است؛ ارقام قرمز را ننویسید.",
            n(facts.consumption_m3.unwrap_or(0)),
            n(facts.days.max(1))
        ),
        (shared::Code::ImpossibleConsumption, Lang::En) => format!(
            "{} m³ in {} days is more than the meter can pass; leave out the red digits.",
            facts.consumption_m3.unwrap_or(0),
            facts.days.max(1)
        ),
        (code, lang) => code.message(lang).to_owned(),
    };
    format!("{} {why}", t(lang, Text::CannotAccept))
}

/// The numbers a warning quotes.
pub struct Facts {
    pub code: shared::Code,
    pub digits: u8,
    pub last_reading: Option<u64>,
    pub consumption_m3: Option<u64>,
    /// Whole days since the last reading.
    pub days: u64,
    /// The consumption as a multiple of the meter's usual use over those days.
    pub times_usual: Option<u64>,
}

/// The question before a meter is removed from the phone.
pub fn remove_question(lang: Lang, waiting: usize) -> String {
    let n = number(lang, &waiting.to_string());
    match (lang, waiting) {
        (Lang::Fa, 0) => "این کنتور از گوشی حذف شود؟ اعلام‌های ارسال‌شده‌اش در سابقه می‌مانند.".to_owned(),
        (Lang::En, 0) => "Remove this meter from the phone? Its sent declarations stay in the history.".to_owned(),
        (Lang::Fa, _) => format!("این کنتور از گوشی حذف شود؟ {n} رقم ارسال‌نشده‌اش هم پس گرفته می‌شود."),
        (Lang::En, _) => format!("Remove this meter from the phone? Its {n} unsent readings will be taken back too."),
    }
}
