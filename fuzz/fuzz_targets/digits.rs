//! Fuzzes digit normalisation and the identifier parsers: nothing panics, and whatever parses is
//! already canonical (parsing it again gives the same value).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::{MeterSerial, Reading, SubscriptionNumber, TrackingCode};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = shared::digits::normalize(text);
    if let Ok(s) = SubscriptionNumber::parse(text) {
        assert_eq!(SubscriptionNumber::parse(s.as_str()), Ok(s));
    }
    if let Ok(s) = MeterSerial::parse(text) {
        assert_eq!(MeterSerial::parse(s.as_str()), Ok(s));
    }
    if let Ok(r) = Reading::parse(text) {
        assert_eq!(Reading::parse(&r.to_string()), Ok(r));
    }
    if let Some(code) = TrackingCode::parse(text) {
        let seq = code.sequence();
        assert_eq!(seq.and_then(TrackingCode::from_sequence), Some(code));
    }
});
