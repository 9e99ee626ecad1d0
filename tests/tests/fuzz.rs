//! Bounded fuzzing that runs in `cargo xtask test` (cargo-fuzz needs a nightly toolchain this
//! machine cannot fetch; `fuzz/` holds those targets for a machine that can). Seeded, the seed
//! printed; `KONTOR_FUZZ_SEED` replays a run and `KONTOR_FUZZ_RUNS` lengthens it.
//!
//! - The parsers a person's typing reaches (digit normalisation, subscription numbers, meter
//!   serials, readings, the SMS grammar, tracking codes, phone numbers) on strings drawn from
//!   the characters that matter — every digit script, stars, separators, bidi and zero-width
//!   marks — plus anything: no panic, and what normalises stays normalised.
//! - The sync endpoint on bodies made by mutating valid ones (bytes flipped, cut, spliced;
//!   fields swapped for other JSON types, huge or negative numbers, odd dates): always a clean
//!   answer, never a 5xx, and the server still serves afterwards.

use serde_json::{Value, json};
use shared::{MeterSerial, Reading, SubscriptionNumber, TrackingCode, digits, sms};
use tests::{Backend, SERIAL, SUB, TestServer};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Characters a declaration may arrive with, and some it should never.
const ALPHABET: &[char] = &[
    '0',
    '1',
    '5',
    '9',
    '۰',
    '۱',
    '۵',
    '۹',
    '٠',
    '١',
    '٥',
    '٩',
    '*',
    '٭',
    '＊',
    '×',
    ' ',
    '\u{a0}',
    '\t',
    '\n',
    '\u{200c}',
    '\u{200d}',
    '\u{200e}',
    '\u{200f}',
    '\u{202b}',
    '\u{2066}',
    '\u{feff}',
    ',',
    '،',
    '٬',
    '.',
    '-',
    '+',
    'a',
    'Z',
    'ک',
    'ی',
    '#',
    '\0',
    '😀',
    '\u{10ffff}',
];

fn text(rng: &mut fastrand::Rng) -> String {
    let length = if rng.u8(..) < 8 { rng.usize(..2_000) } else { rng.usize(..40) };
    (0..length).map(|_| if rng.u8(..) < 4 { rng.char(..) } else { ALPHABET[rng.usize(..ALPHABET.len())] }).collect()
}

#[test]
fn what_people_type_never_panics_the_parsers() {
    let seed = env_u64("KONTOR_FUZZ_SEED").unwrap_or_else(|| fastrand::u64(..));
    let runs = env_u64("KONTOR_FUZZ_RUNS").unwrap_or(200_000);
    println!("fuzz seed {seed} (replay with KONTOR_FUZZ_SEED={seed}), {runs} inputs");
    let mut rng = fastrand::Rng::with_seed(seed);
    for _ in 0..runs {
        let input = text(&mut rng);
        let normal = digits::normalize(&input);
        assert_eq!(digits::normalize(&normal), normal, "seed {seed}: normalising is not stable for {input:?}");
        if let Ok(sub) = SubscriptionNumber::parse(&input) {
            assert_eq!(SubscriptionNumber::parse(sub.as_str()).as_ref(), Ok(&sub), "seed {seed}: {input:?}");
        }
        if let Ok(serial) = MeterSerial::parse(&input) {
            assert_eq!(MeterSerial::parse(serial.as_str()).as_ref(), Ok(&serial), "seed {seed}: {input:?}");
        }
        if let Ok(reading) = Reading::parse(&input) {
            assert_eq!(Reading::parse(&reading.value().to_string()), Ok(reading), "seed {seed}: {input:?}");
        }
        if let Ok(declaration) = sms::parse(&input) {
            let canonical = format!("{}*{}*{}", declaration.reading.value(), sms::SERVICE, declaration.subscription);
            assert_eq!(sms::parse(&canonical), Ok(declaration), "seed {seed}: {input:?}");
        }
        if let Some(code) = TrackingCode::parse(&input) {
            assert_eq!(TrackingCode::parse(code.as_str()), Some(code.clone()), "seed {seed}: {input:?}");
        }
        let _ = sms::normalize_phone(&input);
        let _ = digits::parse_number(&input, true);
    }
}

/// A valid sync body, then one mutation of it.
fn mutated(rng: &mut fastrand::Rng, now: &str) -> Vec<u8> {
    let item = json!({"id": uuid::Uuid::now_v7(), "subscription": SUB, "meter_serial": SERIAL, "reading": 10_050, "read_at": now});
    let mut body = json!({"device_id": uuid::Uuid::now_v7(), "submissions": [item]});
    let odd = [
        json!(null),
        json!(true),
        json!(-1),
        json!(1e308),
        json!(18_446_744_073_709_551_615u64),
        json!(0.5),
        json!(""),
        json!("۱۰۰۵۰"),
        json!("2026-02-30T25:61:00Z"),
        json!([]),
        json!({}),
        json!([1, 2, 3]),
        json!("x".repeat(10_000)),
    ];
    match rng.u8(..6) {
        0 => {
            // A field of the item replaced by another JSON value, or removed.
            let field = ["id", "subscription", "meter_serial", "reading", "read_at", "note", "extra"][rng.usize(..7)];
            if rng.bool() {
                body["submissions"][0][field] = odd[rng.usize(..odd.len())].clone();
            } else if let Some(item) = body["submissions"][0].as_object_mut() {
                item.remove(field);
            }
        }
        1 => {
            let field = ["device_id", "submissions"][rng.usize(..2)];
            body[field] = odd[rng.usize(..odd.len())].clone();
        }
        2 => {
            // Many items, some of them copies (one id twice in a batch).
            let items: Vec<Value> = (0..rng.usize(..600)).map(|_| body["submissions"][0].clone()).collect();
            body["submissions"] = Value::Array(items);
        }
        _ => {}
    }
    let mut bytes = body.to_string().into_bytes();
    match rng.u8(..5) {
        0 if !bytes.is_empty() => {
            // Bytes flipped.
            for _ in 0..rng.usize(1..8) {
                let at = rng.usize(..bytes.len());
                bytes[at] = rng.u8(..);
            }
        }
        1 => bytes.truncate(rng.usize(..=bytes.len())),
        2 if !bytes.is_empty() => {
            // A piece of the body spliced in somewhere else.
            let (from, to) = (rng.usize(..bytes.len()), rng.usize(..bytes.len()));
            let piece: Vec<u8> = bytes[from.min(to)..from.max(to)].to_vec();
            let at = rng.usize(..=bytes.len());
            bytes.splice(at..at, piece);
        }
        _ => {}
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_sync_bodies_never_get_a_server_error() {
    let seed = env_u64("KONTOR_FUZZ_SEED").unwrap_or_else(|| fastrand::u64(..));
    let runs = env_u64("KONTOR_FUZZ_REQUESTS").unwrap_or(1_500);
    println!("fuzz seed {seed} (replay with KONTOR_FUZZ_SEED={seed}), {runs} requests");
    let mut rng = fastrand::Rng::with_seed(seed);
    let server = TestServer::start(Backend::Sqlite).await;
    let now = server.hours_ago(1);
    for _ in 0..runs {
        let body = mutated(&mut rng, &now);
        let (status, answer) = server.post_with("/api/v1/sync", "application/json", body.clone(), None).await;
        assert!(
            matches!(status, 200 | 400 | 401 | 413 | 422 | 429),
            "seed {seed}: {status} {answer} for {}",
            String::from_utf8_lossy(&body)
        );
        assert!(answer.is_object(), "seed {seed}: every answer is JSON: {answer}");
    }
    let (status, _) = server.post("/api/v1/sync", &json!({"device_id": uuid::Uuid::now_v7(), "submissions": []})).await;
    assert!(status < 500, "the server still serves");
    server.finish().await;
}
