//! Digit normalisation: Persian, Arabic-Indic and ASCII digits are one digit set.
//!
//! People type on Persian, Arabic or Latin keyboards, paste from SMS apps that insert bidi marks,
//! and group thousands with `,` or `٬`. Everything that reads a number typed by a person goes
//! through here first; Rust's `str::parse` knows only ASCII digits.

/// The ASCII value of a digit in any of the three scripts, or `None`.
pub fn digit_value(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        // Extended Arabic-Indic (Persian) digits U+06F0..U+06F9.
        '\u{06F0}'..='\u{06F9}' => Some((c as u32 - 0x06F0) as u8),
        // Arabic-Indic digits U+0660..U+0669.
        '\u{0660}'..='\u{0669}' => Some((c as u32 - 0x0660) as u8),
        _ => None,
    }
}

/// Whether `c` is invisible formatting that a person did not mean to type: bidi controls,
/// zero-width characters and the byte-order mark.
pub fn is_invisible_mark(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' // zero-width space, ZWNJ, ZWJ, LRM, RLM
            | '\u{202A}'..='\u{202E}' // LRE, RLE, PDF, LRO, RLO
            | '\u{2066}'..='\u{2069}' // LRI, RLI, FSI, PDI
            | '\u{061C}' // Arabic letter mark
            | '\u{FEFF}' // byte-order mark / zero-width no-break space
            | '\u{2060}' // word joiner
    )
}

/// Whether `c` is white space of any kind, including the no-break spaces that phones insert.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{00A0}' | '\u{202F}' | '\u{2007}')
}

/// Maps every digit to ASCII, drops invisible marks and trims surrounding white space; every
/// other character is kept as it is. Arabic `ي`/`ك` become Persian `ی`/`ک`.
pub fn normalize(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for c in input.chars() {
        if is_invisible_mark(c) {
            continue;
        }
        match digit_value(c) {
            Some(d) => out.push((b'0' + d) as char),
            None => out.push(match c {
                '\u{064A}' => '\u{06CC}',
                '\u{0643}' => '\u{06A9}',
                other => other,
            }),
        }
    }
    let trimmed = out.trim_matches(is_space);
    if trimmed.len() == out.len() { out } else { trimmed.to_owned() }
}

/// Why a text is not a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("empty")]
    Empty,
    #[error("not a whole number")]
    NotDigits,
    #[error("too large")]
    TooLarge,
}

/// Reads a whole number typed by a person: any digit script, invisible marks, surrounding spaces,
/// and (when `allow_separators`) thousands separators `,` `٬` `'` and inner spaces.
pub fn parse_number(input: &str, allow_separators: bool) -> Result<u64, NumberError> {
    let mut value: u64 = 0;
    let mut seen = false;
    for c in normalize(input).chars() {
        if let Some(d) = digit_value(c) {
            value = value.checked_mul(10).and_then(|v| v.checked_add(u64::from(d))).ok_or(NumberError::TooLarge)?;
            seen = true;
        } else if allow_separators && seen && (matches!(c, ',' | '\u{066C}' | '\'') || is_space(c)) {
            continue;
        } else {
            return Err(NumberError::NotDigits);
        }
    }
    if seen { Ok(value) } else { Err(NumberError::Empty) }
}

/// Writes the ASCII digits of `text` as Persian digits, for display.
pub fn to_persian_digits(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '0'..='9' => char::from_u32(0x06F0 + (c as u32 - '0' as u32)).unwrap_or(c),
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn check_number(input: &str, separators: bool, expected: Result<u64, NumberError>) {
        assert_eq!(parse_number(input, separators), expected, "input {input:?}");
    }

    #[test]
    fn numbers_in_every_script() {
        let ok = |s: &str, v: u64| check_number(s, true, Ok(v));
        ok("10321", 10321);
        ok("۱۰۳۲۱", 10321);
        ok("١٠٣٢١", 10321);
        ok("۱0٣2۱", 10321);
        ok("  ۱۰۳۲۱ ", 10321);
        ok("\u{200F}۱۰۳۲۱\u{200E}", 10321);
        ok("\u{2067}12\u{200C}345\u{2069}", 12345);
        ok("10,321", 10321);
        ok("۱۰٬۳۲۱", 10321);
        ok("10 321", 10321);
        ok("\u{00A0}0042", 42);
        ok("0", 0);
    }

    #[test]
    fn numbers_that_are_not() {
        check_number("", true, Err(NumberError::Empty));
        check_number(" \u{200F} ", true, Err(NumberError::Empty));
        check_number(",123", true, Err(NumberError::NotDigits));
        check_number("10,321", false, Err(NumberError::NotDigits));
        check_number("12.5", true, Err(NumberError::NotDigits));
        check_number("-5", true, Err(NumberError::NotDigits));
        check_number("12a", true, Err(NumberError::NotDigits));
        check_number("۱۲۳۴۵۶۷۸۹۰۱۲۳۴۵۶۷۸۹۰۱", true, Err(NumberError::TooLarge));
    }

    #[test]
    fn normalize_keeps_letters_and_maps_arabic_letters() {
        assert_eq!(normalize(" ab۱٢3 "), "ab123");
        assert_eq!(normalize("علي كد"), "علی کد");
        assert_eq!(to_persian_digits("AB-12"), "AB-۱۲");
    }
}
