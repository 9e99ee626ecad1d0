//! Fuzzes the SMS grammar: no message panics, and a message that parses means what its
//! canonical form means.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(declaration) = shared::sms::parse(text) {
        let canonical = format!("{}*5*{}", declaration.reading, declaration.subscription);
        assert_eq!(shared::sms::parse(&canonical), Ok(declaration));
    }
    let _ = shared::sms::normalize_phone(text);
});
