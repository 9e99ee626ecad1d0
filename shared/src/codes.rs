//! Outcome statuses and the stable machine codes, each with its Persian and English message.
//!
//! Codes are part of the wire contract (`sync-api.md`): add new ones, never rename one.

use std::fmt;

use crate::Lang;

/// The final state of a declaration, as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Counts for billing.
    Accepted,
    /// Stored; staff decide.
    NeedsReview,
    /// Stored with its reason; the subscriber may correct it and send a new declaration.
    Rejected,
}

impl Status {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::NeedsReview => "needs_review",
            Self::Rejected => "rejected",
        }
    }

    pub fn from_str_opt(s: &str) -> Option<Self> {
        Some(match s {
            "accepted" => Self::Accepted,
            "needs_review" => Self::NeedsReview,
            "rejected" => Self::Rejected,
            _ => return None,
        })
    }
}

macro_rules! codes {
    ($( $variant:ident = $name:literal, $status:ident, $fa:literal, $en:literal; )*) => {
        /// A stable machine code explaining an outcome.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum Code { $( $variant, )* }

        impl Code {
            /// Every code, in the order of the contract's table.
            pub const ALL: &'static [Code] = &[$( Code::$variant, )*];

            /// The code as it appears on the wire.
            pub const fn as_str(self) -> &'static str {
                match self { $( Code::$variant => $name, )* }
            }

            /// The status that goes with this code.
            pub const fn status(self) -> Status {
                match self { $( Code::$variant => Status::$status, )* }
            }

            /// The message shown to a person.
            pub const fn message(self, lang: Lang) -> &'static str {
                match (self, lang) {
                    $( (Code::$variant, Lang::Fa) => $fa, (Code::$variant, Lang::En) => $en, )*
                }
            }

            pub fn from_str_opt(s: &str) -> Option<Self> {
                match s { $( $name => Some(Code::$variant), )* _ => None }
            }
        }
    };
}

codes! {
    IdentityMismatch = "identity_mismatch", Rejected,
        "شماره اشتراک یا شماره سریال کنتور درست نیست.",
        "The subscription number or the meter serial number is not correct.";
    ReadingOutOfRange = "reading_out_of_range", Rejected,
        "رقم کنتور باید عددی صحیح و حداکثر به تعداد ارقام سیاه کنتور باشد.",
        "The reading must be a whole number with no more digits than the meter's black digits.";
    ReadAtInFuture = "read_at_in_future", Rejected,
        "زمان خواندن کنتور در آینده است؛ ساعت و تاریخ گوشی را بررسی کنید.",
        "The reading time is in the future; check your phone's date and time.";
    ReadAtTooOld = "read_at_too_old", Rejected,
        "این رقم بیش از ۹۰ روز پیش خوانده شده است و پذیرفته نمی‌شود.",
        "This reading was taken more than 90 days ago and cannot be accepted.";
    ImpossibleConsumption = "impossible_consumption", Rejected,
        "این مقدار مصرف در این مدت از توان کنتور بیشتر است؛ ارقام را بررسی کنید.",
        "This much gas cannot pass through the meter in that time; check the digits.";
    IdConflict = "id_conflict", Rejected,
        "این شناسه پیش‌تر با محتوای دیگری ثبت شده است.",
        "This id was stored before with different content.";
    Malformed = "malformed", Rejected,
        "اطلاعات ارسال‌شده خوانا نیست.",
        "The submission could not be read.";
    ReadingDecreased = "reading_decreased", NeedsReview,
        "رقم اعلام‌شده از رقم قبلی کمتر است؛ برای بررسی به کارشناس ارجاع شد.",
        "The reading is lower than the previous one; it has been sent to staff for review.";
    OutOfOrder = "out_of_order", NeedsReview,
        "این رقم با رقم‌های قبل یا بعد از آن سازگار نیست؛ برای بررسی به کارشناس ارجاع شد.",
        "This reading does not fit the readings before or after it; it has been sent to staff for review.";
    UnusualConsumption = "unusual_consumption", NeedsReview,
        "مصرف بسیار بیشتر از معمول است؛ برای بررسی به کارشناس ارجاع شد.",
        "The consumption is far above the usual; it has been sent to staff for review.";
    UnverifiedSender = "unverified_sender", NeedsReview,
        "این اعلام از شماره‌ای غیر از شماره ثبت‌شده برای اشتراک رسیده و بررسی می‌شود.",
        "This declaration came from a number not registered to the subscription and will be reviewed.";
    Rollover = "rollover", Accepted,
        "کنتور از صفر دوباره شروع شده است؛ مصرف با در نظر گرفتن آن محاسبه شد.",
        "The meter wrapped past its last digit; consumption was computed across the wrap.";
    DuplicateDeclaration = "duplicate_declaration", Accepted,
        "این رقم پیش‌تر ثبت شده است؛ کد رهگیری همان اعلام قبلی است.",
        "This reading was already accepted; the tracking code is the one of the first declaration.";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The message for an outcome that has no code: a plain acceptance.
pub const fn accepted_message(lang: Lang) -> &'static str {
    match lang {
        Lang::Fa => "رقم کنتور ثبت شد.",
        Lang::En => "The reading has been accepted.",
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn every_code_round_trips_and_has_two_messages() {
        assert_eq!(Code::ALL.len(), 13);
        for &code in Code::ALL {
            assert_eq!(Code::from_str_opt(code.as_str()), Some(code));
            let json = serde_json::to_string(&code).expect("a code serialises");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let fa = code.message(Lang::Fa);
            let en = code.message(Lang::En);
            assert!(fa.chars().any(|c| ('\u{0600}'..='\u{06FF}').contains(&c)), "{code}: {fa}");
            assert!(en.is_ascii() && en.ends_with('.'), "{code}: {en}");
        }
    }

    #[test]
    fn statuses_match_the_contract() {
        assert_eq!(Code::ImpossibleConsumption.status(), Status::Rejected);
        assert_eq!(Code::UnusualConsumption.status(), Status::NeedsReview);
        assert_eq!(Code::Rollover.status(), Status::Accepted);
        for s in [Status::Accepted, Status::NeedsReview, Status::Rejected] {
            assert_eq!(Status::from_str_opt(s.as_str()), Some(s));
        }
    }
}
