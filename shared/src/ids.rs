//! The identifiers a subscriber types: subscription number, meter serial, reading.
//!
//! Each is parsed once at the edge (`parse`) into a newtype with a private field; code past the
//! edge never sees a raw string.

use std::fmt;

use crate::digits::{self, NumberError};

/// Why an identifier was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("empty")]
    Empty,
    #[error("contains characters that are not allowed")]
    BadCharacters,
    #[error("too short or too long")]
    BadLength,
}

/// The canonical form of an identifier a person typed: digits normalised, each character either
/// kept (`keep` answers the character to keep) or skipped as a separator (`skip`); anything else
/// is refused.
fn canonical(
    input: &str,
    keep: impl Fn(char) -> Option<char>,
    skip: impl Fn(char) -> bool,
    length: std::ops::RangeInclusive<usize>,
) -> Result<String, IdError> {
    let normalized = digits::normalize(input);
    let mut out = String::with_capacity(normalized.len());
    for c in normalized.chars() {
        match keep(c) {
            Some(k) => out.push(k),
            None if skip(c) => continue,
            None => return Err(IdError::BadCharacters),
        }
    }
    if out.is_empty() {
        return Err(IdError::Empty);
    }
    if !length.contains(&out.len()) {
        return Err(IdError::BadLength);
    }
    Ok(out)
}

/// A gas subscription number: digits only, 4 to 20 of them, leading zeros kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionNumber(String);

impl SubscriptionNumber {
    pub const MIN_LEN: usize = 4;
    pub const MAX_LEN: usize = 20;

    /// Reads a subscription number typed in any digit script, with spaces or dashes between
    /// groups.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let keep = |c: char| c.is_ascii_digit().then_some(c);
        let skip = |c: char| digits::is_space(c) || c == '-';
        canonical(input, keep, skip, Self::MIN_LEN..=Self::MAX_LEN).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SubscriptionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A meter serial number: Latin letters and digits, upper-cased, 3 to 24 characters. Spaces,
/// dashes and slashes that people type between groups are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeterSerial(String);

impl MeterSerial {
    pub const MIN_LEN: usize = 3;
    pub const MAX_LEN: usize = 24;

    pub fn parse(input: &str) -> Result<Self, IdError> {
        let keep = |c: char| c.is_ascii_alphanumeric().then_some(c.to_ascii_uppercase());
        let skip = |c: char| digits::is_space(c) || matches!(c, '-' | '/' | '_' | '.');
        canonical(input, keep, skip, Self::MIN_LEN..=Self::MAX_LEN).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MeterSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A meter reading: whole cubic metres, the meter's black digits. The red decimal digits are not
/// declared. Whether it fits a given meter's digit count is a rule (`rules::check_declaration`), not
/// part of parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reading(u64);

/// The largest reading any meter can show: 12 digits.
pub const MAX_READING: u64 = 999_999_999_999;

impl Reading {
    /// Reads a reading typed by a person: any digit script, thousands separators tolerated.
    pub fn parse(input: &str) -> Result<Self, NumberError> {
        let value = digits::parse_number(input, true)?;
        Self::new(value).ok_or(NumberError::TooLarge)
    }

    /// A reading from a number, if it is not larger than any meter can show.
    pub fn new(value: u64) -> Option<Self> {
        (value <= MAX_READING).then_some(Self(value))
    }

    pub fn value(self) -> u64 {
        self.0
    }

    /// How many digits the reading needs (zero needs one).
    pub fn digit_count(self) -> u8 {
        let mut n = 1;
        let mut v = self.0 / 10;
        while v > 0 {
            n += 1;
            v /= 10;
        }
        n
    }
}

impl fmt::Display for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn subscription_numbers() {
        let ok = |s: &str, e: &str| assert_eq!(SubscriptionNumber::parse(s).map(|v| v.0), Ok(e.into()), "{s:?}");
        let err = |s: &str, e| assert_eq!(SubscriptionNumber::parse(s), Err(e), "{s:?}");
        ok("1234567890", "1234567890");
        ok("۱۲۳۴۵۶۷۸۹۰", "1234567890");
        ok(" ١٢٣-٤٥٦ ", "123456");
        ok("\u{200F}0012 3456", "00123456");
        err("", IdError::Empty);
        err("12a45", IdError::BadCharacters);
        err("123", IdError::BadLength);
        err("123456789012345678901", IdError::BadLength);
    }

    #[test]
    fn meter_serials() {
        let ok = |s: &str, e: &str| assert_eq!(MeterSerial::parse(s).map(|v| v.0), Ok(e.into()), "{s:?}");
        let err = |s: &str, e| assert_eq!(MeterSerial::parse(s), Err(e), "{s:?}");
        ok("AB123456", "AB123456");
        ok("ab-۱۲۳۴۵۶", "AB123456");
        ok("\u{202B}AB 123456\u{202C}", "AB123456");
        err("کنتور", IdError::BadCharacters);
        err("AB", IdError::BadLength);
        err(" - ", IdError::Empty);
    }

    #[test]
    fn readings() {
        assert_eq!(Reading::parse("۱۰٬۳۲۱").map(Reading::value), Ok(10321));
        assert_eq!(Reading::parse("9999999999999"), Err(NumberError::TooLarge));
        assert_eq!(Reading::parse("12.5"), Err(NumberError::NotDigits));
        assert_eq!(Reading::new(0).map(Reading::digit_count), Some(1));
        assert_eq!(Reading::new(99_999).map(Reading::digit_count), Some(5));
        assert_eq!(Reading::new(100_000).map(Reading::digit_count), Some(6));
    }
}
