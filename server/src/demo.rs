//! Demo data for `kontor serve --demo`: a few meters to try the app and the API with, and one
//! console account per role to try the console with.

use shared::{MeterSerial, SubscriptionNumber};
use time::{Duration, OffsetDateTime};

use crate::store::{OperatorRecord, Role, Store, SubscriberRow};

/// The demo registry. The first pair is the one in `sync-api.md`'s examples.
pub fn subscribers(now: OffsetDateTime) -> Vec<SubscriberRow> {
    // The contract's example reading (10321 on 2026-11-26) follows a bill of 10234 on 2026-10-01;
    // later, the bill moves along so that a reading taken today is still plausible.
    let example_bill = time::macros::datetime!(2026-10-01 09:00 +03:30);
    let billed_at = example_bill.min(now - Duration::days(30));
    let row = |sub: &str, serial: &str, digits: u8, reading: u64, avg: f64, phone: &str| SubscriberRow {
        subscription: SubscriptionNumber::parse(sub).unwrap_or_else(|_| unreachable_demo(sub)),
        meter_serial: MeterSerial::parse(serial).unwrap_or_else(|_| unreachable_demo(serial)),
        digits,
        last_reading: Some(reading),
        last_read_at: Some(billed_at),
        avg_daily_m3: Some(avg),
        phone: Some(phone.to_owned()),
    };
    vec![
        row("1234567890", "AB123456", 5, 10_234, 3.2, "09120000001"),
        row("2345678901", "CD234567", 5, 99_940, 4.0, "09120000002"),
        row("3456789012", "EF345678", 6, 451_200, 12.5, "09120000003"),
    ]
}

/// The demo console accounts' password (printed by `kontor serve --demo`; never use `--demo`
/// on a server that others can reach).
pub const OPERATOR_PASSWORD: &str = "kontor-demo-password";

/// One console account per role: (username, role, office).
pub const OPERATORS: [(&str, Role, &str); 3] = [
    ("office", Role::Office, "Pishkhan 101"),
    ("reviewer", Role::Reviewer, "Billing department"),
    ("admin", Role::Admin, "Head office"),
];

/// Creates (or resets) the demo console accounts.
pub async fn operators(store: &dyn Store, now: OffsetDateTime) -> anyhow::Result<()> {
    let password_hash = crate::console::auth::hash_password(OPERATOR_PASSWORD)?;
    for (username, role, office) in OPERATORS {
        let operator = OperatorRecord {
            username: username.into(),
            role,
            office: office.into(),
            password_hash: password_hash.clone(),
        };
        store.save_operator(&operator, now).await?;
    }
    Ok(())
}

#[allow(clippy::panic)]
fn unreachable_demo(text: &str) -> ! {
    panic!("demo identifier {text:?} does not parse")
}
