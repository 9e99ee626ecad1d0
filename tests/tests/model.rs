//! A model-based test of the trusted record, on SQLite and on PostgreSQL: one seed drives a random
//! interleaving of channels (the app, SMS and calls from the registered phone and from another, a
//! counter office), arrival orders, replays, double taps, typos, a phone's corrections of its own
//! readings, approvals, rejections and voids against the real store, and after every step the
//! billing feed is checked against a small reference model of each meter's chain.
//!
//! The model does not judge readings (that is `shared::rules`, tested on its own): it takes each
//! outcome the store answers and keeps what follows from it — which declarations count, which wait
//! for a reviewer, which repeat which. What it checks:
//! - after every step, for every meter, the consumption a billing system derives from the feed
//!   (each tracking code's latest entry) equals the gas the model's chain passed since the billed
//!   reading, and every replacing entry names the entry it replaces;
//! - a correction replaces the reading it names exactly when that one is held or its meter's latest
//!   counting reading and the correction itself is not refused;
//! - a replay answers the first outcome; a double tap of a reading that counts, or that waits for
//!   review, is answered as that declaration (its tracking code), never as a second one;
//! - every so often and at the end: each declaration is stored once, the review queue holds one
//!   item per real held declaration and nothing else, and the store's chain (which declarations
//!   count, each one's consumption) is the model's.
//!
//! `KONTOR_MODEL_STEPS` sets the size (10,000 in `cargo xtask test`; a million on demand), and
//! `KONTOR_MODEL_SEED` replays a run: the seed is printed first.

use std::collections::{BTreeMap, HashMap};

use server::store::{
    Channel, Incoming, Outcome, PhoneDeclaration, ReviewDecision, ReviewRequest, ReviewResult, Staff, Store as _,
    SubscriberRow,
};
use shared::rules::{DUPLICATE_WINDOW, repeats};
use shared::wire::{BillingKind, ReadingInput, Submission};
use shared::{Code, MeterSerial, Reading, Status, SubscriptionNumber, sms::SmsDeclaration};
use tests::{Backend, TestServer};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

tests::on_both_backends!(the_feed_always_adds_up_to_the_model);

/// Meters in the run: five digits, billed 80 days before the run; the last few start close to
/// the wrap, so that their chains roll over.
const METERS: usize = 12;
const WRAPPING: usize = 3;
/// The registered phone of every meter.
const PHONE: &str = "09123334455";

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// What became of a declaration, as the model keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the chain: it counts for billing.
    Counting,
    /// Waiting for a reviewer.
    Held,
    /// Not counting: rejected at once or on review, voided, or a repeat of another.
    Out,
}

#[derive(Debug, Clone)]
struct Decl {
    seq: u64,
    reading: u64,
    read_at: OffsetDateTime,
    state: State,
}

/// A declaration as sent, to send again.
#[derive(Debug, Clone)]
struct Sent {
    incoming: Incoming,
    outcome: Outcome,
    /// Stored as a declaration of its own (not a repeat of another, whose code it answers with).
    own: bool,
}

struct Meter {
    subscription: String,
    serial: String,
    billed: (u64, OffsetDateTime),
    /// The true readings, oldest first.
    truth: Vec<(u64, OffsetDateTime)>,
    /// The meter's declarations that were stored as their own (repeats are not).
    decls: BTreeMap<u64, Decl>,
}

impl Meter {
    /// The gas the chain passed since the billed reading: each counting reading measured from
    /// the one before it in reading time, forward across a wrap.
    fn derived(&self) -> u64 {
        let mut chain: Vec<&Decl> = self.decls.values().filter(|d| d.state == State::Counting).collect();
        chain.sort_by_key(|d| (d.read_at, d.seq));
        let mut previous = self.billed.0;
        let mut total = 0;
        for d in chain {
            total += forward(previous, d.reading);
            previous = d.reading;
        }
        total
    }

    /// Counting or held declarations this reading repeats.
    fn repeated(&self, reading: u64, at: OffsetDateTime, state: State) -> Vec<u64> {
        self.decls
            .values()
            .filter(|d| d.state == state && repeats(reading, at, d.reading, d.read_at))
            .map(|d| d.seq)
            .collect()
    }
}

fn forward(from: u64, to: u64) -> u64 {
    if to >= from { to - from } else { to + 100_000 - from }
}

/// What every step's actions share: the store, the run's "now", and what a failure names.
struct Run<'a> {
    store: &'a server::store::SqlStore,
    now: OffsetDateTime,
    context: String,
}

struct Model {
    meters: Vec<Meter>,
    sent: Vec<Sent>,
    /// Billing: each tracking code's latest entry (position, meter, consumption or none).
    latest: HashMap<u64, (u64, usize, Option<u64>)>,
    cursor: u64,
    by_subscription: HashMap<String, usize>,
}

async fn the_feed_always_adds_up_to_the_model(backend: Backend) {
    let steps = env_u64("KONTOR_MODEL_STEPS").unwrap_or(10_000);
    let seed = env_u64("KONTOR_MODEL_SEED").unwrap_or_else(|| fastrand::u64(..));
    println!("model seed {seed} (replay with KONTOR_MODEL_SEED={seed}), {steps} steps on {backend:?}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let server = TestServer::start(backend).await;
    let store = server.store.clone();
    let now = OffsetDateTime::now_utc();
    let start = now - Duration::days(80);

    // Each meter gets enough true readings for its share of the steps, spread over 80 days.
    let per_meter = (steps as usize / METERS).clamp(20, 2_000);
    let spacing = Duration::seconds(80 * 86_400 / (per_meter as i64 + 1));
    let mut meters = Vec::new();
    let mut rows = Vec::new();
    for i in 0..METERS {
        let first = if i >= METERS - WRAPPING { 100_000 - per_meter as u64 } else { 1_000 + 100 * i as u64 };
        let mut value = first;
        let truth: Vec<(u64, OffsetDateTime)> = (1..=per_meter as i32)
            .map(|k| {
                value = (value + rng.u64(0..=3)) % 100_000;
                (value, start + spacing * k)
            })
            .collect();
        let subscription = format!("55{:08}", i);
        let serial = format!("MB{:06}", i);
        rows.push(SubscriberRow {
            subscription: SubscriptionNumber::parse(&subscription).expect("subscription"),
            meter_serial: MeterSerial::parse(&serial).expect("serial"),
            digits: 5,
            last_reading: Some(first),
            last_read_at: Some(start),
            avg_daily_m3: Some(3.0),
            phone: Some(PHONE.into()),
        });
        meters.push(Meter { subscription, serial, billed: (first, start), truth, decls: BTreeMap::new() });
    }
    store.upsert_subscribers(&rows, now).await.expect("seed the model's meters");
    let by_subscription = meters.iter().enumerate().map(|(i, m)| (m.subscription.clone(), i)).collect();
    let mut model = Model { meters, sent: Vec::new(), latest: HashMap::new(), cursor: 0, by_subscription };

    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for step in 0..steps {
        let run = Run { store: &store, now, context: format!("seed {seed}, step {step}") };
        let context = run.context.as_str();
        let action = match rng.u32(0..100) {
            0..55 => fresh(&mut model, &mut rng, &run).await,
            55..65 => replay(&mut model, &mut rng, &run).await,
            65..72 => double_tap(&mut model, &mut rng, &run).await,
            72..77 => correct(&mut model, &mut rng, &run).await,
            77..86 => decide(&mut model, &mut rng, &run, Decision::Approve).await,
            86..92 => decide(&mut model, &mut rng, &run, Decision::Reject).await,
            _ => decide(&mut model, &mut rng, &run, Decision::Void).await,
        };
        *counts.entry(action).or_default() += 1;
        check_feed(&mut model, &store, context).await;
        if step % 500 == 499 || step + 1 == steps {
            check_store(&model, &store, context).await;
        }
    }
    let held = model.meters.iter().flat_map(|m| m.decls.values()).filter(|d| d.state == State::Held).count();
    let counting = model.meters.iter().flat_map(|m| m.decls.values()).filter(|d| d.state == State::Counting).count();
    let billed: u64 = model.meters.iter().map(Meter::derived).sum();
    println!(
        "model seed {seed}: {steps} steps {counts:?}; {} declarations sent, {counting} counting, {held} held, \
         {} feed entries, {billed} m³ billed",
        model.sent.len(),
        model.cursor
    );
    drop(store);
    server.finish().await;
}

/// A new declaration of a true reading (or a typo of it), through a random channel.
async fn fresh(model: &mut Model, rng: &mut fastrand::Rng, run: &Run<'_>) -> &'static str {
    let (now, context, store) = (run.now, run.context.as_str(), run.store);
    let m = rng.usize(0..METERS);
    let meter = &model.meters[m];
    // A quarter of them declare a reading declared before (by another channel, another phone).
    let before: Vec<(u64, OffsetDateTime)> = meter.decls.values().map(|d| (d.reading, d.read_at)).collect();
    let (truth, read_at) = match rng.u32(0..4) {
        0 if !before.is_empty() => before[rng.usize(0..before.len())],
        _ => meter.truth[rng.usize(0..meter.truth.len())],
    };
    // A typo: more gas than the meter passed, read at the same visit.
    let (reading, read_at, kind) = if rng.u32(0..100) < 8 {
        ((truth + rng.u64(50..3_000)) % 100_000, read_at + Duration::minutes(30), "typo")
    } else {
        (truth, read_at, "fresh")
    };
    let incoming = match rng.u32(0..100) {
        0..70 => app(&meter.subscription, &meter.serial, reading, read_at),
        70..80 => Incoming::from_office(
            &submission(&meter.subscription, &meter.serial, reading, read_at),
            Staff { operator: "office-1".into(), office: "Pishkhan 12".into() },
        ),
        n => {
            // SMS or a call from the registered phone, or (a fifth of them) from another.
            let sender = if n < 96 { PHONE } else { "09350000000" };
            let channel = if n % 2 == 0 { Channel::Sms } else { Channel::Ivr };
            let declaration = SmsDeclaration {
                reading: Reading::new(reading).expect("a reading"),
                subscription: SubscriptionNumber::parse(&meter.subscription).expect("subscription"),
                receipt: None,
            };
            let message_id = Uuid::new_v4().to_string();
            Incoming::from_phone(PhoneDeclaration {
                channel,
                message_id: &message_id,
                sender,
                declaration: &declaration,
                received_at: read_at,
            })
        }
    };
    send(model, m, incoming, now, context, store).await;
    kind
}

/// The same declaration sent again: the first outcome, replayed.
async fn replay(model: &mut Model, rng: &mut fastrand::Rng, run: &Run<'_>) -> &'static str {
    let (now, context, store) = (run.now, run.context.as_str(), run.store);
    if model.sent.is_empty() {
        return "replay (none yet)";
    }
    let sent = model.sent[rng.usize(0..model.sent.len())].clone();
    let outcomes = apply(store, std::slice::from_ref(&sent.incoming), now, context).await;
    let expected = Outcome { replayed: true, ..sent.outcome.clone() };
    assert_eq!(outcomes[0], expected, "{context}: a replay answers the first outcome");
    "replay"
}

/// The same reading tapped again on the app a few minutes later, under a new id.
async fn double_tap(model: &mut Model, rng: &mut fastrand::Rng, run: &Run<'_>) -> &'static str {
    let (now, context, store) = (run.now, run.context.as_str(), run.store);
    let candidates: Vec<(usize, u64)> = model
        .meters
        .iter()
        .enumerate()
        .flat_map(|(i, m)| m.decls.values().filter(|d| d.state != State::Out).map(move |d| (i, d.seq)))
        .collect();
    if candidates.is_empty() {
        return "double tap (none yet)";
    }
    let (m, seq) = candidates[rng.usize(0..candidates.len())];
    let original = model.meters[m].decls[&seq].clone();
    let meter = &model.meters[m];
    let read_at = original.read_at + Duration::minutes(rng.i64(1..=10));
    let counting_repeats = meter.repeated(original.reading, read_at, State::Counting);
    let held_repeats = meter.repeated(original.reading, read_at, State::Held);
    // Another reading between the two (a correction sent minutes after the first, say) makes the
    // tap a reading of its own, judged against that one.
    let between = meter
        .decls
        .values()
        .any(|d| d.seq != seq && d.state != State::Out && d.read_at > original.read_at && d.read_at <= read_at);
    let incoming = app(&meter.subscription, &meter.serial, original.reading, read_at);
    let outcome = send(model, m, incoming, now, context, store).await;
    if between {
        return "double tap (across another reading)";
    }
    match original.state {
        State::Counting => {
            assert_eq!(
                (outcome.status, outcome.code),
                (Status::Accepted, Some(Code::DuplicateDeclaration)),
                "{context}: a double tap of a counting reading is a repeat"
            );
            assert!(
                outcome.tracking_seq.is_some_and(|s| counting_repeats.contains(&s)),
                "{context}: the repeat is answered with a counting reading's tracking code"
            );
        }
        // Judged afresh it may count now (the chain around it has grown, or the held one came
        // from an unregistered phone); if it would be held, it is the held one.
        State::Held if outcome.status == Status::NeedsReview => {
            assert!(
                outcome.tracking_seq.is_some_and(|s| held_repeats.contains(&s)),
                "{context}: a double tap of a held reading is answered as that one, not a second review item"
            );
        }
        State::Held => {}
        State::Out => unreachable!("only counting and held declarations are tapped again"),
    }
    "double tap"
}

/// The phone that sent a reading corrects it a few minutes later (a typo fixed): where the reading
/// is still its meter's latest counting one, or waits for review, the correction takes its place
/// unless it is refused itself; otherwise it is a reading of its own.
async fn correct(model: &mut Model, rng: &mut fastrand::Rng, run: &Run<'_>) -> &'static str {
    let (now, context, store) = (run.now, run.context.as_str(), run.store);
    // The app's declarations that were stored as their own, with their ids.
    let candidates: Vec<(usize, u64, Uuid)> = model
        .sent
        .iter()
        .filter(|s| s.incoming.channel == Channel::App && s.own)
        .filter_map(|s| {
            let m = *model.by_subscription.get(&s.incoming.subscription)?;
            let seq = s.outcome.tracking_seq?;
            model.meters[m].decls.get(&seq).filter(|d| d.state != State::Out && d.read_at == s.incoming.read_at)?;
            Some((m, seq, s.incoming.id))
        })
        .collect();
    // Whether the store will let a correction replace it: held, or its meter's latest reading.
    let open = |m: usize, seq: u64| {
        let meter = &model.meters[m];
        let latest = meter.decls.values().filter(|d| d.state == State::Counting).max_by_key(|d| (d.read_at, d.seq));
        meter.decls[&seq].state == State::Held || latest.is_some_and(|l| l.seq == seq)
    };
    // Half the time one that is open, when there is one.
    let open_ones: Vec<(usize, u64, Uuid)> = candidates.iter().copied().filter(|&(m, seq, _)| open(m, seq)).collect();
    let pool = if rng.bool() && !open_ones.is_empty() { &open_ones } else { &candidates };
    let Some(&(m, seq, id)) = pool.get(rng.usize(0..pool.len().max(1))) else {
        return "correction (none yet)";
    };
    let open = open(m, seq);
    let meter = &model.meters[m];
    let original = meter.decls[&seq].clone();
    let reading = (original.reading + 100_000 + rng.u64(0..60) - 30) % 100_000;
    let read_at = original.read_at + Duration::minutes(rng.i64(1..=30));
    let mut submission = submission(&meter.subscription, &meter.serial, reading, read_at);
    submission.corrects = Some(id);
    let incoming = Incoming::from_submission(&submission, Channel::App, Some(Uuid::nil()));
    let outcome = send(model, m, incoming, now, context, store).await;
    let replaced = open && outcome.status != Status::Rejected;
    assert_eq!(
        outcome.supersedes,
        replaced.then_some(id),
        "{context}: a correction of {original:?} (open: {open}) answered {outcome:?}"
    );
    if replaced {
        if let Some(d) = model.meters[m].decls.get_mut(&seq) {
            d.state = State::Out;
        }
        "correction (replaced)"
    } else {
        "correction (a reading of its own)"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Approve,
    Reject,
    Void,
}

/// A reviewer approves or rejects a held declaration, or voids one that counts.
async fn decide(model: &mut Model, rng: &mut fastrand::Rng, run: &Run<'_>, decision: Decision) -> &'static str {
    let (context, store) = (run.context.as_str(), run.store);
    let wanted = if decision == Decision::Void { State::Counting } else { State::Held };
    let candidates: Vec<(usize, u64)> = model
        .meters
        .iter()
        .enumerate()
        .flat_map(|(i, m)| m.decls.values().filter(|d| d.state == wanted).map(move |d| (i, d.seq)))
        .collect();
    if candidates.is_empty() {
        return "decision (none to decide)";
    }
    let (m, seq) = candidates[rng.usize(0..candidates.len())];
    let as_decided = match decision {
        Decision::Approve => ReviewDecision::Approve,
        Decision::Reject => ReviewDecision::Reject { reason: "model".into() },
        Decision::Void => ReviewDecision::Void { reason: "model".into() },
    };
    let request = ReviewRequest { seq, decision: as_decided, reviewer: "reviewer-1".into() };
    let result = store.decide(&request, OffsetDateTime::now_utc()).await.unwrap_or_else(|e| panic!("{context}: {e}"));
    store.sync().await.unwrap_or_else(|e| panic!("{context}: {e}"));
    let entry = model.meters[m].decls.get_mut(&seq).expect("a declaration of the model");
    match result {
        ReviewResult::Decided(after) => {
            entry.state = if after.counts { State::Counting } else { State::Out };
            match decision {
                Decision::Approve if after.counts => "approve",
                Decision::Approve => {
                    assert!(after.repeat_of.is_some(), "{context}: an approval that does not count is a repeat");
                    "approve (a repeat)"
                }
                Decision::Reject => "reject",
                Decision::Void => "void",
            }
        }
        ReviewResult::Conflict(..) if decision == Decision::Approve => {
            // The chain would go down: the reviewer rejects it instead.
            let request = ReviewRequest {
                seq,
                decision: ReviewDecision::Reject { reason: "model".into() },
                reviewer: "r".into(),
            };
            let result =
                store.decide(&request, OffsetDateTime::now_utc()).await.unwrap_or_else(|e| panic!("{context}: {e}"));
            store.sync().await.unwrap_or_else(|e| panic!("{context}: {e}"));
            assert!(matches!(result, ReviewResult::Decided(_)), "{context}: rejecting a conflict: {result:?}");
            entry.state = State::Out;
            "approve refused, rejected"
        }
        other => panic!("{context}: {decision:?} of {seq} answered {other:?}"),
    }
}

fn submission(subscription: &str, serial: &str, reading: u64, read_at: OffsetDateTime) -> Submission {
    Submission {
        id: Uuid::now_v7(),
        subscription: subscription.into(),
        meter_serial: serial.into(),
        reading: ReadingInput::Number(reading.into()),
        read_at,
        note: None,
        corrects: None,
    }
}

fn app(subscription: &str, serial: &str, reading: u64, read_at: OffsetDateTime) -> Incoming {
    Incoming::from_submission(&submission(subscription, serial, reading, read_at), Channel::App, Some(Uuid::nil()))
}

async fn apply(
    store: &server::store::SqlStore,
    items: &[Incoming],
    now: OffsetDateTime,
    context: &str,
) -> Vec<Outcome> {
    let outcomes = store.apply(items, now).await.unwrap_or_else(|e| panic!("{context}: {e}"));
    store.sync().await.unwrap_or_else(|e| panic!("{context}: {e}"));
    outcomes
}

/// Sends a new declaration and keeps what its outcome means.
async fn send(
    model: &mut Model,
    m: usize,
    incoming: Incoming,
    now: OffsetDateTime,
    context: &str,
    store: &server::store::SqlStore,
) -> Outcome {
    let outcome = apply(store, std::slice::from_ref(&incoming), now, context).await.remove(0);
    assert!(!outcome.replayed, "{context}: a new id is not a replay");
    let reading = incoming.reading.map(|r| r.value()).expect("the model sends readings");
    let meter = &mut model.meters[m];
    let repeat = outcome.code == Some(Code::DuplicateDeclaration)
        || (outcome.status == Status::NeedsReview
            && outcome.tracking_seq.is_some_and(|s| meter.decls.get(&s).is_some_and(|d| d.state == State::Held)));
    if repeat {
        // A repeat is stored (once) but is not a declaration of its own: it names one that
        // counts or waits, with the same reading, read close by.
        let of = outcome.tracking_seq.and_then(|s| meter.decls.get(&s)).unwrap_or_else(|| {
            panic!("{context}: a repeat names {:?}, not a declaration of this meter", outcome.tracking_seq)
        });
        assert!(
            of.reading == reading && (of.read_at - incoming.read_at).abs() <= DUPLICATE_WINDOW,
            "{context}: {reading} at {} repeats {of:?}",
            incoming.read_at
        );
    } else {
        let state = match outcome.status {
            Status::Accepted => State::Counting,
            Status::NeedsReview => State::Held,
            Status::Rejected => State::Out,
        };
        if let Some(seq) = outcome.tracking_seq {
            meter.decls.insert(seq, Decl { seq, reading, read_at: incoming.read_at, state });
        }
    }
    model.sent.push(Sent { incoming, outcome: outcome.clone(), own: !repeat });
    outcome
}

/// Reads the feed's new entries as a billing system does, and compares what it derives for each
/// meter with the model.
async fn check_feed(model: &mut Model, store: &server::store::SqlStore, context: &str) {
    loop {
        let entries = store.billing_feed(model.cursor, 1_000).await.unwrap_or_else(|e| panic!("{context}: {e}"));
        if entries.is_empty() {
            break;
        }
        for entry in &entries {
            assert_eq!(entry.position, model.cursor + 1, "{context}: the feed's positions have no gap");
            model.cursor = entry.position;
            let m = model.by_subscription[&entry.subscription];
            let before = model.latest.get(&entry.seq).map(|&(position, _, consumption)| (position, consumption));
            match entry.kind {
                BillingKind::Reading => {
                    assert_eq!(before, None, "{context}: a reading's first entry comes first");
                    assert_eq!(entry.replaces, None, "{context}: a first entry replaces nothing");
                }
                BillingKind::Correction | BillingKind::Void => {
                    assert!(before.is_some(), "{context}: a {:?} of a reading not in the feed", entry.kind);
                    assert_eq!(entry.replaces, before, "{context}: an entry names the one it replaces");
                }
            }
            let consumption = if entry.kind == BillingKind::Void { None } else { entry.consumption_m3 };
            model.latest.insert(entry.seq, (entry.position, m, consumption));
        }
    }
    let mut derived = [0u64; METERS];
    for &(_, m, consumption) in model.latest.values() {
        derived[m] += consumption.unwrap_or(0);
    }
    for (m, meter) in model.meters.iter().enumerate() {
        assert_eq!(derived[m], meter.derived(), "{context}: meter {m}'s billed consumption from the feed");
    }
}

/// The store's view against the model's: declarations stored once, the review queue, each chain.
async fn check_store(model: &Model, store: &server::store::SqlStore, context: &str) {
    let distinct: std::collections::HashSet<Uuid> = model.sent.iter().map(|s| s.incoming.id).collect();
    let stored = store.counts().await.unwrap_or_else(|e| panic!("{context}: {e}")).declarations;
    assert_eq!(stored, distinct.len() as u64, "{context}: every declaration stored once");

    let queue = store.review_queue(100_000).await.unwrap_or_else(|e| panic!("{context}: {e}"));
    let mut queued: Vec<u64> = queue.iter().map(|d| d.seq).collect();
    queued.sort_unstable();
    let mut held: Vec<u64> =
        model.meters.iter().flat_map(|m| m.decls.values()).filter(|d| d.state == State::Held).map(|d| d.seq).collect();
    held.sort_unstable();
    assert_eq!(queued, held, "{context}: one review item per held declaration, and no other");

    for (m, meter) in model.meters.iter().enumerate() {
        let rows = store.declarations_of(&meter.subscription).await.unwrap_or_else(|e| panic!("{context}: {e}"));
        let mut previous = meter.billed.0;
        for row in rows.iter().filter(|r| r.counts) {
            let decl = meter.decls.get(&row.seq);
            assert_eq!(
                decl.map(|d| d.state),
                Some(State::Counting),
                "{context}: meter {m}'s declaration {} counts in the store",
                row.seq
            );
            let reading = row.reading.expect("a counting reading");
            assert_eq!(
                row.consumption_m3,
                Some(forward(previous, reading)),
                "{context}: meter {m}'s declaration {} is measured from the reading before it",
                row.seq
            );
            previous = reading;
        }
        let counting = meter.decls.values().filter(|d| d.state == State::Counting).count();
        assert_eq!(rows.iter().filter(|r| r.counts).count(), counting, "{context}: meter {m}'s chain");
    }
}
