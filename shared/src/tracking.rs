//! Tracking codes: short, digits only, unique, with a check digit.
//!
//! A code is a bijection of the store's sequence number (so uniqueness comes from the database's
//! sequence), scrambled so that consecutive declarations do not get consecutive codes, followed by
//! a Damm check digit, which catches every single-digit typo and every swap of adjacent digits
//! when a subscriber reads a code out on the phone.
//!
//! A [`Receipt`] is what the phone shows at once, offline, before any tracking code exists: it
//! comes from the declaration's id, so the server, which stores the id, finds the declaration by
//! it. Every kind has its own length, so none is taken for another: tracking codes 10 or 13
//! digits, complaint numbers 8 or 12, receipts 7.

use std::fmt;

/// The Damm algorithm's quasigroup table of order 10.
const DAMM: [[u8; 10]; 10] = [
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
    [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
    [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
    [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
    [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
    [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
];

/// The Damm check digit of a string of ASCII digits (0 for a valid code including its check).
fn damm(digits: &[u8]) -> u8 {
    digits.iter().fold(0, |interim, &d| DAMM[interim as usize][(d - b'0') as usize])
}

/// How a kind of number is made: two body widths (the first covering sequence numbers below
/// its modulus, the second the rest), and the scrambling constants.
struct Scheme {
    widths: [(u32, u64); 2],
    /// Odd and not a multiple of 5, so invertible modulo any power of ten.
    multiplier: u64,
    offset: u64,
}

/// Declarations: bodies of 9 digits cover the first 10⁹ sequence numbers; 12 digits the rest.
const DECLARATIONS: Scheme =
    Scheme { widths: [(9, 1_000_000_000), (12, 1_000_000_000_000)], multiplier: 387_420_489, offset: 271_828_182 };

/// Complaints: bodies of 7 and 11 digits, so a complaint number (8 or 12 digits) is never
/// mistaken for a declaration's tracking code (10 or 13).
const COMPLAINTS: Scheme =
    Scheme { widths: [(7, 10_000_000), (11, 100_000_000_000)], multiplier: 4_782_969, offset: 3_141_592 };

/// The ASCII digits of a number a person typed or said: any digit script, with spaces and dashes
/// between the digits; `None` if anything else is in it.
fn typed_digits(input: &str) -> Option<String> {
    let normalized = crate::digits::normalize(input);
    let mut text = String::with_capacity(normalized.len());
    for c in normalized.chars() {
        if c.is_ascii_digit() {
            text.push(c);
        } else if !(crate::digits::is_space(c) || c == '-') {
            return None;
        }
    }
    Some(text)
}

fn inverse_mod(a: u64, modulus: u64) -> u64 {
    // Extended Euclid on signed 128-bit integers: no overflow for moduli below 2^63.
    let (mut old_r, mut r) = (i128::from(a), i128::from(modulus));
    let (mut old_s, mut s) = (1i128, 0i128);
    while r != 0 {
        let q = old_r / r;
        (old_r, r) = (r, old_r - q * r);
        (old_s, s) = (s, old_s - q * s);
    }
    old_s.rem_euclid(i128::from(modulus)) as u64
}

fn mul_mod(a: u64, b: u64, m: u64) -> u64 {
    ((u128::from(a) * u128::from(b)) % u128::from(m)) as u64
}

impl Scheme {
    fn encode(&self, seq: u64) -> Option<String> {
        let (width, modulus) = self.widths.into_iter().find(|&(_, m)| seq < m)?;
        let base = if width == self.widths[0].0 { 0 } else { self.widths[0].1 };
        let body = (mul_mod(seq - base, self.multiplier, modulus) + self.offset) % modulus;
        let mut text = format!("{body:0width$}", width = width as usize);
        let check = damm(text.as_bytes());
        text.push((b'0' + check) as char);
        Some(text)
    }

    /// Reads a number a person typed or said (any digit script, spaces and dashes allowed) and
    /// checks its length and check digit.
    fn parse(&self, input: &str) -> Option<String> {
        let text = typed_digits(input)?;
        let body_len = text.len().checked_sub(1)?;
        if !self.widths.iter().any(|&(w, _)| w as usize == body_len) || damm(text.as_bytes()) != 0 {
            return None;
        }
        self.decode(&text).map(|_| text)
    }

    fn decode(&self, text: &str) -> Option<u64> {
        let body_len = text.len().checked_sub(1)?;
        let &(width, modulus) = self.widths.iter().find(|&&(w, _)| w as usize == body_len)?;
        let base = if width == self.widths[0].0 { 0 } else { self.widths[0].1 };
        let body: u64 = text.get(..body_len)?.parse().ok()?;
        let unshifted = (body + modulus - self.offset % modulus) % modulus;
        let seq = mul_mod(unshifted, inverse_mod(self.multiplier, modulus), modulus) + base;
        // A long body whose number lies past the last code is not a code that was ever given.
        (seq < self.widths[1].1).then_some(seq)
    }
}

/// A tracking code given to a subscriber for a stored declaration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrackingCode(String);

impl TrackingCode {
    /// The code for a store sequence number; `None` past 10¹² declarations.
    pub fn from_sequence(seq: u64) -> Option<Self> {
        DECLARATIONS.encode(seq).map(Self)
    }

    /// Reads a code a person typed or said (any digit script, spaces and dashes allowed) and
    /// checks its check digit.
    pub fn parse(input: &str) -> Option<Self> {
        DECLARATIONS.parse(input).map(Self)
    }

    /// The store sequence number this code stands for.
    pub fn sequence(&self) -> Option<u64> {
        DECLARATIONS.decode(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TrackingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The number a complaint or dispute is known by: digits only, with a check digit, and of a
/// length no declaration's tracking code has.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ComplaintNumber(String);

impl ComplaintNumber {
    /// The number for a complaint's sequence number; `None` past 10¹¹ complaints.
    pub fn from_sequence(seq: u64) -> Option<Self> {
        COMPLAINTS.encode(seq).map(Self)
    }

    /// Reads a number a person typed or said and checks its check digit.
    pub fn parse(input: &str) -> Option<Self> {
        COMPLAINTS.parse(input).map(Self)
    }

    /// The complaint's sequence number.
    pub fn sequence(&self) -> Option<u64> {
        COMPLAINTS.decode(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ComplaintNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The receipt of a declaration made on a phone: six digits of its id and a Damm check digit.
/// Six digits tell apart the few hundred declarations one subscription makes in years (two share a
/// receipt about once in ten thousand pairs); the server looks a receipt up within one
/// subscription only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt(String);

impl Receipt {
    const BODY: u128 = 1_000_000;

    pub fn of(id: uuid::Uuid) -> Self {
        let mut text = format!("{:06}", id.as_u128() % Self::BODY);
        text.push((b'0' + damm(text.as_bytes())) as char);
        Self(text)
    }

    /// Reads a receipt a person typed or said, and checks its check digit.
    pub fn parse(input: &str) -> Option<Self> {
        let text = typed_digits(input)?;
        (text.len() == 7 && damm(text.as_bytes()) == 0).then_some(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn code(seq: u64) -> TrackingCode {
        TrackingCode::from_sequence(seq).expect("in range")
    }

    #[test]
    fn codes_round_trip_and_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for seq in (1..2_000).chain([999_999_999, 1_000_000_000, 5_000_000_000, 999_999_999_999]) {
            let c = code(seq);
            assert!(seen.insert(c.clone()), "duplicate code for {seq}");
            assert_eq!(TrackingCode::parse(c.as_str()).and_then(|c| c.sequence()), Some(seq));
        }
        assert_eq!(code(1).as_str().len(), 10);
        assert_eq!(code(1_000_000_000).as_str().len(), 13);
        assert_eq!(TrackingCode::from_sequence(1_000_000_000_000), None);
    }

    #[test]
    fn consecutive_codes_do_not_look_consecutive() {
        let a: u64 = code(41).as_str()[..9].parse().expect("digits");
        let b: u64 = code(42).as_str()[..9].parse().expect("digits");
        assert!(a.abs_diff(b) > 1000);
    }

    #[test]
    fn typos_are_caught() {
        let good = code(12345).0;
        let bytes = good.as_bytes();
        for i in 0..bytes.len() {
            for d in b'0'..=b'9' {
                if d == bytes[i] {
                    continue;
                }
                let mut typo = bytes.to_vec();
                typo[i] = d;
                let typo = String::from_utf8(typo).expect("ascii");
                assert_eq!(TrackingCode::parse(&typo), None, "{typo} passed for {good}");
            }
            if i + 1 < bytes.len() && bytes[i] != bytes[i + 1] {
                let mut swapped = bytes.to_vec();
                swapped.swap(i, i + 1);
                let swapped = String::from_utf8(swapped).expect("ascii");
                assert_eq!(TrackingCode::parse(&swapped), None, "{swapped} passed for {good}");
            }
        }
    }

    #[test]
    fn receipts_come_from_the_id_and_are_their_own_kind() {
        let receipt = Receipt::of(uuid::Uuid::from_u128(1_234_567));
        // The id as a number, its last six digits, then the check digit.
        assert_eq!(&receipt.as_str()[..6], "234567");
        assert_eq!(receipt.as_str().len(), 7);
        assert_eq!(Receipt::parse(receipt.as_str()), Some(receipt.clone()));
        // As a person types it: Persian digits, spaces, a dash.
        let persian =
            crate::digits::to_persian_digits(&format!("{}-{} {}", &receipt.0[..3], &receipt.0[3..6], &receipt.0[6..]));
        assert_eq!(Receipt::parse(&persian), Some(receipt.clone()));
        // A typo in any digit is caught.
        let mut typo = receipt.0.clone().into_bytes();
        typo[2] = if typo[2] == b'9' { b'0' } else { typo[2] + 1 };
        assert_eq!(Receipt::parse(std::str::from_utf8(&typo).expect("ascii")), None);
        // Not a tracking code, not a complaint number, and neither of those is a receipt.
        assert_eq!(TrackingCode::parse(receipt.as_str()), None);
        assert_eq!(ComplaintNumber::parse(receipt.as_str()), None);
        assert_eq!(Receipt::parse(code(12).as_str()), None);
        assert_eq!(Receipt::parse(ComplaintNumber::from_sequence(12).expect("a number").as_str()), None);
    }

    #[test]
    fn complaint_numbers_are_their_own_kind() {
        for seq in (1..500).chain([9_999_999, 10_000_000, 99_999_999_999]) {
            let n = ComplaintNumber::from_sequence(seq).expect("in range");
            assert_eq!(ComplaintNumber::parse(n.as_str()).and_then(|n| n.sequence()), Some(seq));
            assert_eq!(TrackingCode::parse(n.as_str()), None, "a complaint number is no tracking code");
            assert_eq!(ComplaintNumber::parse(code(seq.min(999_999_999)).as_str()), None);
        }
        assert_eq!(ComplaintNumber::from_sequence(1).map(|n| n.as_str().len()), Some(8));
        let n = ComplaintNumber::from_sequence(77).expect("in range").0;
        let mut typo = n.clone().into_bytes();
        typo[3] = if typo[3] == b'9' { b'0' } else { typo[3] + 1 };
        assert_eq!(ComplaintNumber::parse(&String::from_utf8(typo).expect("ascii")), None, "{n}");
    }

    #[test]
    fn codes_typed_by_people() {
        let c = code(7);
        let persian = crate::digits::to_persian_digits(c.as_str());
        let spaced = format!("{} {} {}", &persian[..6], &persian[6..12], &persian[12..]);
        assert_eq!(TrackingCode::parse(&spaced), Some(c));
        assert_eq!(TrackingCode::parse("12345"), None);
        assert_eq!(TrackingCode::parse("abc"), None);
        assert_eq!(TrackingCode::parse(""), None);
    }
}
