//! The SMS grammar of the service card: `<reading>*5*<subscription code>`, read the way a person
//! means it, and the Persian replies sent back. The web app's one-tap fallback adds the phone's
//! receipt as a fourth part (`<reading>*5*<subscription>*<receipt>`), so that the server can tell
//! the message and the app's declaration are one reading.
//!
//! Real messages carry Persian or Arabic-Indic digits, spaces, bidi and zero-width marks, other
//! star characters (`*` `٭` `＊` `×`) and a trailing star. Anything else gets a reply that shows
//! the right format.

use crate::codes::accepted_message;
use crate::digits::{self, to_persian_digits};
use crate::{Code, Lang, Reading, Receipt, SubscriptionNumber};

/// The service number of meter-reading declarations on the company's short number.
pub const SERVICE: &str = "5";

/// A message that parsed: a reading for a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsDeclaration {
    pub reading: Reading,
    pub subscription: SubscriptionNumber,
    /// The receipt of the app's declaration this message stands in for, when the app wrote it.
    pub receipt: Option<Receipt>,
}

/// The message the web app offers to send when data cannot get through: the service card's
/// format, with the receipt the phone showed.
pub fn body(reading: Reading, subscription: &SubscriptionNumber, receipt: &Receipt) -> String {
    format!("{reading}*{SERVICE}*{subscription}*{receipt}")
}

/// Why a message is not a declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SmsError {
    #[error("the message is empty")]
    Empty,
    #[error("the message is not <reading>*5*<subscription>")]
    Format,
    #[error("the service number is not 5")]
    Service,
    #[error("the reading is not a whole number")]
    Reading,
    #[error("the subscription code is not valid")]
    Subscription,
}

fn is_star(c: char) -> bool {
    matches!(c, '*' | '\u{066D}' | '\u{FF0A}' | '\u{00D7}' | '\u{2217}' | '\u{204E}')
}

/// Reads a declaration from an SMS text.
pub fn parse(text: &str) -> Result<SmsDeclaration, SmsError> {
    // Spaces and invisible marks mean nothing anywhere in the message.
    let compact: String =
        digits::normalize(text).chars().filter(|&c| !digits::is_space(c) && !digits::is_invisible_mark(c)).collect();
    if compact.is_empty() {
        return Err(SmsError::Empty);
    }
    let trimmed = compact.trim_end_matches(is_star).trim_start_matches(is_star);
    let parts: Vec<&str> = trimmed.split(is_star).collect();
    let (reading, service, subscription, receipt) = match parts.as_slice() {
        [reading, service, subscription] => (reading, service, subscription, None),
        // A fourth part is only ever a receipt: anything else there is not the format.
        [reading, service, subscription, receipt] => {
            (reading, service, subscription, Some(Receipt::parse(receipt).ok_or(SmsError::Format)?))
        }
        _ => return Err(SmsError::Format),
    };
    if reading.is_empty() || subscription.is_empty() || service.is_empty() {
        return Err(SmsError::Format);
    }
    if *service != SERVICE {
        return Err(SmsError::Service);
    }
    let reading = Reading::parse(reading).map_err(|_| SmsError::Reading)?;
    let subscription = SubscriptionNumber::parse(subscription).map_err(|_| SmsError::Subscription)?;
    Ok(SmsDeclaration { reading, subscription, receipt })
}

/// The format, as the replies show it.
const FORMAT_FA: &str = "رقم کنتور*۵*کد اشتراک";

/// The reply to a message that is not a declaration.
pub fn error_reply(error: SmsError) -> String {
    let why = match error {
        SmsError::Empty | SmsError::Format => "پیامک شما خوانا نبود.",
        SmsError::Service => "کد خدمت اعلام رقم کنتور ۵ است.",
        SmsError::Reading => "رقم کنتور باید فقط شامل ارقام باشد.",
        SmsError::Subscription => "کد اشتراک درست نیست.",
    };
    format!("{why} برای اعلام رقم کنتور بفرستید: {FORMAT_FA} (مثال: ۱۰۳۲۱*۵*۱۲۳۴۵۶۷۸۹۰)")
}

/// The reason an SMS reply gives for an outcome's code. An SMS names no meter serial, so a
/// declaration refused for its identity can only be for a subscription the registry does not
/// hold; every other code reads as in the app.
pub fn outcome_message(code: Option<Code>) -> &'static str {
    match code {
        Some(Code::IdentityMismatch) => "این کد اشتراک در سامانه نیست. کد اشتراک را از قبض گاز بررسی کنید.",
        Some(code) => code.message(Lang::Fa),
        None => accepted_message(Lang::Fa),
    }
}

/// The reply to a stored declaration: the outcome's message, the tracking code and the
/// consumption where there are.
pub fn outcome_reply(message: &str, tracking_code: Option<&str>, consumption_m3: Option<u64>) -> String {
    let mut reply = message.to_owned();
    if let Some(code) = tracking_code {
        reply.push_str(&format!(" کد رهگیری: {}", to_persian_digits(code)));
    }
    if let Some(m3) = consumption_m3 {
        reply.push_str(&format!(" مصرف: {} مترمکعب", to_persian_digits(&m3.to_string())));
    }
    reply
}

/// The message to a subscriber whose SMS declaration was held for review, once staff decided.
pub fn review_reply(tracking_code: &str, approved: bool, reason: Option<&str>) -> String {
    let code = to_persian_digits(tracking_code);
    if approved {
        return format!("رقم کنتور شما با کد رهگیری {code} پس از بررسی پذیرفته شد.");
    }
    let mut reply = format!("رقم کنتور شما با کد رهگیری {code} پس از بررسی پذیرفته نشد.");
    if let Some(reason) = reason.map(str::trim).filter(|r| !r.is_empty()) {
        reply.push_str(&format!(" دلیل: {reason}"));
    }
    reply.push_str(&format!(" برای اعلام دوباره بفرستید: {FORMAT_FA}"));
    reply
}

/// The SMS that tells a subscriber staff voided a reading they sent by SMS, and why.
pub fn void_reply(tracking_code: &str, reason: &str) -> String {
    let code = to_persian_digits(tracking_code);
    let mut reply = format!("رقم کنتور شما با کد رهگیری {code} توسط کارشناس باطل شد و در صورت‌حساب شمرده نمی‌شود.");
    if !reason.trim().is_empty() {
        reply.push_str(&format!(" دلیل: {}", reason.trim()));
    }
    reply.push_str(&format!(" برای اعلام دوباره بفرستید: {FORMAT_FA}"));
    reply
}

/// A phone number in the form the registry compares: Iranian numbers keep their last ten digits
/// (`09121234567`, `+989121234567` and `00989121234567` are one number); others keep all digits.
pub fn normalize_phone(phone: &str) -> Option<String> {
    let digits_only: String = digits::normalize(phone).chars().filter(char::is_ascii_digit).collect();
    if digits_only.len() < 7 {
        return None;
    }
    let national = digits_only
        .strip_prefix("0098")
        .or_else(|| digits_only.strip_prefix("98").filter(|rest| rest.len() == 10))
        .or_else(|| digits_only.strip_prefix('0').filter(|rest| rest.len() == 10))
        .unwrap_or(&digits_only);
    Some(national.to_owned())
}

/// A sender's number in E.164 (`+989121234567`), as gateways that send abroad want it: an
/// Iranian mobile (`09…`, `989…`, `+989…`, Persian digits alike) gets `+98`; a number that came
/// with its own country code keeps it. `None` when it has too few digits to be a number.
pub fn international(phone: &str) -> Option<String> {
    let national = normalize_phone(phone)?;
    if national.len() == 10 && national.starts_with('9') {
        return Some(format!("+98{national}"));
    }
    let digits_only: String = digits::normalize(phone).chars().filter(char::is_ascii_digit).collect();
    let digits_only = digits_only.strip_prefix("00").unwrap_or(&digits_only);
    Some(format!("+{digits_only}"))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn check(text: &str, expected: Result<(u64, &str), SmsError>) {
        let got = parse(text).map(|d| (d.reading.value(), d.subscription.to_string()));
        assert_eq!(got, expected.map(|(r, s)| (r, s.to_owned())), "message {text:?}");
    }

    #[test]
    fn messages_people_send() {
        let ok = |text: &str| check(text, Ok((10321, "1234567890")));
        ok("10321*5*1234567890");
        ok("۱۰۳۲۱*۵*۱۲۳۴۵۶۷۸۹۰");
        ok("١٠٣٢١*٥*١٢٣٤٥٦٧٨٩٠");
        ok("10321٭5٭1234567890");
        ok("10321＊5＊1234567890");
        ok("10321×5×1234567890");
        ok(" 10321 * 5 * 1234567890 ");
        ok("10321*5*1234567890*");
        ok("*10321*5*1234567890");
        ok("\u{200F}۱۰۳۲۱\u{200F}*۵*\u{200E}۱۲۳۴۵۶۷۸۹۰\u{200E}");
        ok("10,321*5*1234567890");
        ok("۱۰۳۲۱\n*۵*\n۱۲۳۴ ۵۶۷۸ ۹۰");
    }

    #[test]
    fn the_apps_fallback_message_round_trips_with_its_receipt() {
        let receipt = Receipt::of(uuid::Uuid::from_u128(0x0193_8f2a_7c41_7000_8000_0000_0012_d687));
        let subscription = SubscriptionNumber::parse("1234567890").expect("a subscription");
        let reading = Reading::new(10_321).expect("a reading");
        let text = body(reading, &subscription, &receipt);
        assert_eq!(text, format!("10321*5*1234567890*{receipt}"));
        let parsed = parse(&text).expect("parses");
        assert_eq!(
            (parsed.reading, parsed.subscription, parsed.receipt),
            (reading, subscription, Some(receipt.clone()))
        );
        // As a messaging app may turn it: Persian digits and a trailing star.
        let persian = to_persian_digits(&format!("{text}*"));
        assert_eq!(parse(&persian).expect("parses").receipt, Some(receipt));
        // The card's own format has none.
        assert_eq!(parse("10321*5*1234567890").expect("parses").receipt, None);
    }

    #[test]
    fn messages_that_are_not_declarations() {
        check("", Err(SmsError::Empty));
        check(" \u{200F} ", Err(SmsError::Empty));
        check("سلام", Err(SmsError::Format));
        check("10321", Err(SmsError::Format));
        check("10321*1234567890", Err(SmsError::Format));
        check("10321**1234567890", Err(SmsError::Format));
        check("10321*5*1234567890*9", Err(SmsError::Format));
        check("10321*5*1234567890*1234568", Err(SmsError::Format));
        check("10321*5*1234567890*1234567*1", Err(SmsError::Format));
        check("10321*4*1234567890", Err(SmsError::Service));
        check("10321*55*1234567890", Err(SmsError::Service));
        check("10.5*5*1234567890", Err(SmsError::Reading));
        check("abc*5*1234567890", Err(SmsError::Reading));
        check("10321*5*12ab", Err(SmsError::Subscription));
    }

    #[test]
    fn replies_are_persian_and_show_the_format() {
        for e in [SmsError::Empty, SmsError::Format, SmsError::Service, SmsError::Reading, SmsError::Subscription] {
            let reply = error_reply(e);
            assert!(reply.contains(FORMAT_FA), "{reply}");
            assert!(reply.contains("۱۰۳۲۱*۵*۱۲۳۴۵۶۷۸۹۰"), "{reply}");
        }
        let ok = outcome_reply("رقم کنتور ثبت شد.", Some("1234567890"), Some(87));
        assert_eq!(ok, "رقم کنتور ثبت شد. کد رهگیری: ۱۲۳۴۵۶۷۸۹۰ مصرف: ۸۷ مترمکعب");
    }

    #[test]
    fn review_replies_name_the_decision() {
        assert_eq!(review_reply("12345", true, None), "رقم کنتور شما با کد رهگیری ۱۲۳۴۵ پس از بررسی پذیرفته شد.");
        let no = review_reply("12345", false, Some(" رقم با عکس کنتور نمی‌خواند "));
        assert!(no.starts_with("رقم کنتور شما با کد رهگیری ۱۲۳۴۵ پس از بررسی پذیرفته نشد. دلیل: رقم با عکس"), "{no}");
        assert!(no.ends_with(FORMAT_FA), "{no}");
        assert!(!review_reply("1", false, Some("  ")).contains("دلیل"));
        let void = void_reply("12345", " دو بار ثبت شده ");
        assert!(void.starts_with("رقم کنتور شما با کد رهگیری ۱۲۳۴۵ توسط کارشناس باطل شد"), "{void}");
        assert!(void.contains("دلیل: دو بار ثبت شده برای"), "{void}");
        assert!(void.ends_with(FORMAT_FA), "{void}");
    }

    #[test]
    fn phones_compare_in_any_form() {
        for p in ["09121234567", "+989121234567", "00989121234567", "989121234567", "۰۹۱۲ ۱۲۳ ۴۵۶۷"] {
            assert_eq!(normalize_phone(p).as_deref(), Some("9121234567"), "{p}");
        }
        assert_eq!(normalize_phone("12"), None);
    }

    #[test]
    fn any_message_parses_or_is_refused_and_what_parses_round_trips() {
        // A deterministic sweep over messages built from the characters that matter: nothing
        // panics, and every accepted message means what its canonical form means.
        let alphabet = ['1', '۵', '٥', '*', '٭', '×', '＊', ' ', '\u{200F}', 'a', ',', '.', '-', '0', '9', 'ی'];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 24) as usize;
            let text: String =
                (0..len).map(|i| alphabet[((state >> (i % 16 * 4)) as usize + i) % alphabet.len()]).collect();
            if let Ok(d) = parse(&text) {
                let canonical = match &d.receipt {
                    Some(receipt) => body(d.reading, &d.subscription, receipt),
                    None => format!("{}*5*{}", d.reading, d.subscription),
                };
                assert_eq!(parse(&canonical), Ok(d), "{text:?}");
            }
        }
    }

    #[test]
    fn numbers_in_e164() {
        for phone in ["09121234567", "+98 912 123 4567", "989121234567", "00989121234567", "۰۹۱۲۱۲۳۴۵۶۷"] {
            assert_eq!(international(phone).as_deref(), Some("+989121234567"), "{phone}");
        }
        assert_eq!(international("+44 7700 900123").as_deref(), Some("+447700900123"));
        assert_eq!(international("0044 7700 900123").as_deref(), Some("+447700900123"));
        assert_eq!(international("12"), None);
    }
}
