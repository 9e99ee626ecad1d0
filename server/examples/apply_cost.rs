//! The SQLite store's own cost per declaration, without HTTP or a load client: `store.apply` on
//! groups of fresh, plausible declarations for 20,000 meters, as the writer hands them over.
//!
//! ```text
//! cargo run --release -p server --example apply_cost -- [GROUP] [ROUNDS]
//! ```
//!
//! Prints the wall time per declaration over the rounds. On a shared machine that time moves by
//! half from one minute to the next; instructions do not, so compare builds by running it under
//! callgrind, counting only the store's attempt at each group (`Direct::apply_once`: the
//! transaction itself is inlined into it in a release build, so naming it would count nothing):
//!
//! ```text
//! valgrind --tool=callgrind --toggle-collect='*Direct*apply_once*' \
//!     target/release/examples/apply_cost 1000 60
//! ```
//!
//! and dividing the instructions collected by the declarations stored. `APPLY_COST_TRACE=1`
//! prints each round's time and the write-ahead log's size in pages.

use std::time::Instant;

use anyhow::Context as _;
use server::store::{Channel, Incoming, SqlStore, Store, SubscriberRow};
use shared::codes::Status;
use shared::ids::{MeterSerial, SubscriptionNumber};
use shared::wire::{ReadingInput, Submission};
use time::OffsetDateTime;

const METERS: u64 = 20_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let group: u64 = args.get(1).map_or(Ok(1000), |a| a.parse()).context("GROUP is a number")?;
    let rounds: u64 = args.get(2).map_or(Ok(200), |a| a.parse()).context("ROUNDS is a number")?;
    anyhow::ensure!(group > 0 && rounds > 0, "GROUP and ROUNDS are at least 1");
    let trace = std::env::var_os("APPLY_COST_TRACE").is_some();
    let dir = std::env::temp_dir().join(format!("kontor-apply-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = SqlStore::connect(&format!("sqlite://{}/a.db?mode=rwc", dir.display())).await?;

    let now = OffsetDateTime::now_utc();
    let billed = now - time::Duration::days(60);
    let rows = (0..METERS)
        .map(|m| {
            Ok(SubscriberRow {
                subscription: SubscriptionNumber::parse(&subscription(m))?,
                meter_serial: MeterSerial::parse(&format!("BN{m:06}"))?,
                digits: 6,
                last_reading: Some(10_000),
                last_read_at: Some(billed),
                avg_daily_m3: Some(3.0),
                phone: None,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    store.upsert_subscribers(&rows, now).await?;

    // Meter `i mod METERS` gets one more cubic metre an hour after its previous reading.
    let mut next = 0u64;
    let mut times = Vec::with_capacity(rounds as usize);
    let (mut stored, mut accepted) = (0usize, 0usize);
    for _ in 0..rounds {
        let batch: Vec<Incoming> = (next..next + group)
            .map(|i| {
                let (meter, round) = (i % METERS, i / METERS);
                let submission = Submission {
                    id: uuid::Uuid::now_v7(),
                    subscription: subscription(meter),
                    meter_serial: format!("BN{meter:06}"),
                    reading: ReadingInput::Number((10_000 + round + 1).into()),
                    read_at: billed + time::Duration::hours(round as i64 + 1),
                    note: None,
                    corrects: None,
                };
                Incoming::from_submission(&submission, Channel::App, None)
            })
            .collect();
        next += group;
        let started = Instant::now();
        let outcomes = store.apply(&batch, OffsetDateTime::now_utc()).await?;
        let micros = started.elapsed().as_secs_f64() * 1e6 / group as f64;
        times.push(micros);
        store.sync().await?;
        stored += outcomes.len();
        accepted += outcomes.iter().filter(|o| o.status == Status::Accepted).count();
        if trace {
            let wal_pages = std::fs::metadata(dir.join("a.db-wal")).map_or(0, |m| m.len() / 4120);
            eprintln!("{micros:.1} µs/declaration, log {wal_pages} pages");
        }
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);

    let mean = times.iter().sum::<f64>() / times.len() as f64;
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!("{stored} declarations stored ({accepted} accepted) in groups of {group}");
    println!("µs per declaration: min {:.2}  p50 {:.2}  p90 {:.2}  mean {mean:.2}", at(0.0), at(0.5), at(0.9));
    Ok(())
}

fn subscription(meter: u64) -> String {
    (1_000_000_000 + meter).to_string()
}
