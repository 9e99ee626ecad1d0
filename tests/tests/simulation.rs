//! Deterministic simulation of many phones syncing through a hostile network, in the manner of
//! FoundationDB's simulation testing: one seed drives everything, so a failure replays exactly.
//!
//! Each simulated device keeps an outbox and runs the web app's own outbox rules
//! (`shared::outbox`: what to send next, which result settles which item). Between the devices
//! and a real store (SQLite, on a file, through the real reconciliation) sits a network that
//! drops requests, drops responses, duplicates requests and delivers everything in random
//! order, late; the server restarts now and then. A device whose answer does not come sends
//! again. At the end the network heals and everything drains. Then: every declaration stored
//! exactly once, every outbox empty, every device holding the server's outcome for each of its
//! declarations, every meter's chain consistent in reading time.
//!
//! `KONTOR_SIM_SEED` replays a seed; `KONTOR_SIM_DECLARATIONS` sets the size (10,000 by
//! default; the long run: `KONTOR_SIM_DECLARATIONS=200000 cargo test -p tests --test simulation
//! -- --nocapture`).

use std::collections::HashMap;
use std::sync::Arc;

use server::store::{Channel, Incoming, Outcome, SqlStore, Store, SubscriberRow};
use shared::outbox::{Queued, answered, next_batch};
use shared::wire::{ReadingInput, Submission};
use shared::{MeterSerial, SubscriptionNumber};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

const DEVICES: usize = 120;
/// Two devices share each meter (a household's two phones), so their declarations interleave.
const METERS: usize = DEVICES / 2;
const BATCH: usize = 20;
/// Steps a device waits for an answer before it sends again.
const PATIENCE: u64 = 40;

fn subscription(meter: usize) -> String {
    format!("66{meter:08}")
}

fn serial(meter: usize) -> String {
    format!("SM{meter:06}")
}

/// What a device keeps of the server's answer about one declaration.
type Said = (shared::Status, Option<shared::Code>, Option<u64>, Option<u64>);

fn said(o: &Outcome) -> Said {
    (o.status, o.code, o.tracking_seq, o.consumption_m3)
}

#[derive(Clone)]
struct Item {
    submission: Submission,
    meter: usize,
    outcome: Option<Said>,
}

impl Queued for Item {
    fn id(&self) -> Uuid {
        self.submission.id
    }
    fn waiting(&self) -> bool {
        self.outcome.is_none()
    }
}

struct Device {
    id: Uuid,
    meter: usize,
    outbox: Vec<Item>,
    /// The step its last request left at, while it waits for the answer.
    waiting_since: Option<u64>,
}

enum Message {
    Request { device: usize, batch: Vec<Item> },
    Response { device: usize, batch: Vec<Item>, outcomes: Vec<Outcome> },
}

/// A meter as it really turns: each household burns gas at its own rate.
struct TrueMeter {
    reading: f64,
    at: OffsetDateTime,
    m3_per_hour: f64,
}

#[derive(Default, Debug)]
struct Faults {
    requests: u64,
    requests_dropped: u64,
    responses_dropped: u64,
    duplicated: u64,
    delivered_out_of_order: u64,
    resent: u64,
    restarts: u64,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "current_thread")]
async fn many_phones_through_a_hostile_network_store_each_declaration_once() {
    let seed = env_u64("KONTOR_SIM_SEED").unwrap_or_else(|| fastrand::u64(..));
    let total = env_u64("KONTOR_SIM_DECLARATIONS").unwrap_or(10_000) as usize;
    println!("simulation seed {seed} (replay with KONTOR_SIM_SEED={seed}), {total} declarations");
    let mut rng = fastrand::Rng::with_seed(seed);

    let dir = std::env::temp_dir().join(format!("kontor-simulation-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let url = format!("sqlite://{}/kontor.db?mode=rwc", dir.display());
    let mut store = Arc::new(SqlStore::connect(&url).await.expect("open the store"));
    // Simulated time: a year ago, billed the day before, ten minutes a step.
    let mut now = OffsetDateTime::now_utc() - Duration::days(365);
    let billed = now - Duration::days(1);
    let rows: Vec<SubscriberRow> = (0..METERS)
        .map(|m| SubscriberRow {
            subscription: SubscriptionNumber::parse(&subscription(m)).expect("subscription"),
            meter_serial: MeterSerial::parse(&serial(m)).expect("serial"),
            digits: 6,
            last_reading: Some(10_000),
            last_read_at: Some(billed),
            avg_daily_m3: Some(3.0),
            phone: None,
        })
        .collect();
    store.upsert_subscribers(&rows, now).await.expect("registry");

    let mut meters: Vec<TrueMeter> =
        (0..METERS).map(|_| TrueMeter { reading: 10_000.0, at: billed, m3_per_hour: 0.02 + rng.f64() * 0.2 }).collect();
    let mut devices: Vec<Device> = (0..DEVICES)
        .map(|d| Device {
            id: Uuid::from_u128(rng.u128(..)),
            meter: d % METERS,
            outbox: Vec::new(),
            waiting_since: None,
        })
        .collect();
    let mut network: Vec<Message> = Vec::new();
    let mut faults = Faults::default();
    let (mut made, mut step) = (0usize, 0u64);

    loop {
        step += 1;
        now += Duration::minutes(10);
        let healing = made == total;
        if healing && network.is_empty() && devices.iter().all(|d| d.outbox.iter().all(|i| !i.waiting())) {
            break;
        }
        assert!(step < 50 * total as u64 + 100_000, "seed {seed}: the outboxes never drained");
        let roll = rng.f64();
        if !healing && roll < 0.30 {
            // Someone reads their meter and declares it on their phone.
            let d = rng.usize(..DEVICES);
            let meter = &mut meters[devices[d].meter];
            meter.reading += (now - meter.at).as_seconds_f64() / 3600.0 * meter.m3_per_hour;
            meter.at = now;
            let m = devices[d].meter;
            devices[d].outbox.push(Item {
                submission: Submission {
                    id: Uuid::now_v7(),
                    subscription: subscription(m),
                    meter_serial: serial(m),
                    reading: ReadingInput::Number((meter.reading.floor() as u64).into()),
                    read_at: now,
                    note: None,
                    corrects: None,
                },
                meter: m,
                outcome: None,
            });
            made += 1;
        } else if roll < 0.60 {
            // A device with something waiting, and no answer pending (or given up on), sends.
            let d = rng.usize(..DEVICES);
            let device = &mut devices[d];
            let gave_up = device.waiting_since.is_some_and(|since| step - since > PATIENCE);
            if gave_up {
                faults.resent += 1;
            }
            if device.waiting_since.is_none() || gave_up {
                let batch = next_batch(&device.outbox, BATCH);
                if !batch.is_empty() {
                    device.waiting_since = Some(step);
                    faults.requests += 1;
                    if !healing && rng.f64() < 0.10 {
                        faults.requests_dropped += 1;
                    } else {
                        if !healing && rng.f64() < 0.05 {
                            faults.duplicated += 1;
                            network.push(Message::Request { device: d, batch: batch.clone() });
                        }
                        network.push(Message::Request { device: d, batch });
                    }
                }
            }
        } else if roll < 0.995 {
            // The network delivers one message, not necessarily the oldest.
            if network.is_empty() {
                continue;
            }
            let index = rng.usize(..network.len());
            if index != 0 {
                faults.delivered_out_of_order += 1;
            }
            match network.swap_remove(index) {
                Message::Request { device, batch } => {
                    let items: Vec<Incoming> = batch
                        .iter()
                        .map(|i| Incoming::from_submission(&i.submission, Channel::App, Some(devices[device].id)))
                        .collect();
                    let outcomes = store.apply(&items, now).await.unwrap_or_else(|e| panic!("seed {seed}: {e}"));
                    store.sync().await.unwrap_or_else(|e| panic!("seed {seed}: {e}"));
                    if !healing && rng.f64() < 0.10 {
                        faults.responses_dropped += 1;
                    } else {
                        network.push(Message::Response { device, batch, outcomes });
                    }
                }
                Message::Response { device, batch, outcomes } => {
                    let device = &mut devices[device];
                    for (sent, outcome) in answered(&batch, &outcomes, |o| Some(o.id)) {
                        let item = device.outbox.iter_mut().find(|i| i.id() == sent.id()).expect("an item it sent");
                        match item.outcome {
                            // A late answer to an earlier send: the server must say the same.
                            Some(known) => assert_eq!(known, said(outcome), "seed {seed}: two answers for one id"),
                            None => item.outcome = Some(said(outcome)),
                        }
                    }
                    device.waiting_since = None;
                }
            }
        } else if !healing {
            // The server restarts between two steps.
            faults.restarts += 1;
            store.close().await;
            store = Arc::new(SqlStore::connect(&url).await.expect("reopen the store"));
        }
    }
    println!("{step} steps, {faults:?}");

    // Every declaration once more, as a last replay: stored, with the outcome its device holds.
    for device in &devices {
        for batch in device.outbox.chunks(BATCH) {
            let items: Vec<Incoming> =
                batch.iter().map(|i| Incoming::from_submission(&i.submission, Channel::App, Some(device.id))).collect();
            let outcomes = store.apply(&items, now).await.expect("replay");
            for (item, outcome) in batch.iter().zip(&outcomes) {
                assert!(outcome.replayed, "seed {seed}: an acknowledged declaration is missing");
                assert_eq!(item.outcome, Some(said(outcome)), "seed {seed}: the device holds another outcome");
            }
        }
    }
    let mut made_per_meter: HashMap<usize, usize> = HashMap::new();
    for item in devices.iter().flat_map(|d| &d.outbox) {
        *made_per_meter.entry(item.meter).or_default() += 1;
    }
    for m in 0..METERS {
        let stored = store.declarations_of(&subscription(m)).await.expect("read back");
        assert_eq!(
            stored.len(),
            made_per_meter.get(&m).copied().unwrap_or(0),
            "seed {seed}: meter {m} stored once each"
        );
        let mut counting: Vec<_> = stored.iter().filter(|d| d.counts).collect();
        counting.sort_by_key(|d| d.read_at);
        let mut previous = 10_000;
        for d in counting {
            let reading = d.reading.expect("a counting reading");
            assert!(reading >= previous, "seed {seed}: meter {m}'s chain goes down in reading time");
            assert_eq!(d.consumption_m3, Some(reading - previous), "seed {seed}: meter {m}'s consumption");
            previous = reading;
        }
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
