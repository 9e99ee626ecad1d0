//! The rules a declaration is judged by: validation against the clock and the meter, and
//! reconciliation against the meter's chain of readings in reading time.
//!
//! Both sides run these functions: the web app offline against the meter context it cached (to
//! warn before queueing), the server against the stored chain (to decide the outcome). They are
//! pure: the caller passes in "now" and the neighbours.

use time::{Duration, OffsetDateTime};

use crate::{Code, Reading, Status};

/// How far a phone's clock may run ahead of the server's.
pub const CLOCK_SLACK: Duration = Duration::minutes(10);
/// How old a reading may be when it is declared.
pub const MAX_AGE: Duration = Duration::days(90);
/// Two accepted declarations of the same reading this close in reading time are one declaration
/// sent twice (a double tap offline, or the app and an SMS for the same reading).
pub const DUPLICATE_WINDOW: Duration = Duration::days(7);
/// The digit count of a meter whose count the registry does not give.
pub const DEFAULT_DIGITS: u8 = 5;
/// A G4 household meter passes at most 6 m³ an hour.
pub const DEFAULT_MAX_HOURLY_M3: f64 = 6.0;
/// Use is unusual above this many times the meter's average daily use over the interval
/// (winter heating runs at three to four times the yearly average, so it is not flagged)…
pub const UNUSUAL_FACTOR: f64 = 5.0;
/// …plus this many cubic metres, so that a short interval or a small average never flags a
/// normal reading.
pub const UNUSUAL_SLACK_M3: f64 = 20.0;
/// Readings are the black digits, truncated: one cubic metre of slack in physical checks.
const ROUNDING_SLACK_M3: f64 = 1.0;

/// What the rules need to know about a meter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeterContext {
    /// How many black digits the meter shows.
    pub digits: u8,
    /// The average daily use from billing history, if known.
    pub avg_daily_m3: Option<f64>,
    /// The most gas the meter can pass in an hour.
    pub max_hourly_m3: f64,
}

impl MeterContext {
    /// The most gas the meter can pass in a day, as the wire's `max_daily_m3`.
    pub fn max_daily_m3(&self) -> f64 {
        self.max_hourly_m3 * 24.0
    }

    /// The first reading the meter cannot show: it wraps to zero there.
    pub fn wrap(&self) -> u64 {
        10u64.saturating_pow(u32::from(self.digits.clamp(1, 12)))
    }
}

impl Default for MeterContext {
    fn default() -> Self {
        Self { digits: DEFAULT_DIGITS, avg_daily_m3: None, max_hourly_m3: DEFAULT_MAX_HOURLY_M3 }
    }
}

/// Where a point of the chain comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The last billed reading, imported from the billing system.
    Billing,
    /// A stored declaration, by its store sequence number.
    Declaration(u64),
}

/// A reading that counts: the billing baseline or an accepted declaration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub source: Source,
    pub reading: u64,
    pub read_at: OffsetDateTime,
}

/// A meter's counting readings in reading time (ties keep arrival order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chain {
    points: Vec<Point>,
}

impl Chain {
    pub fn new(mut points: Vec<Point>) -> Self {
        points.sort_by_key(|p| p.read_at);
        Self { points }
    }

    /// A chain of the latest reading alone (what a phone knows of its meter): nothing to order.
    /// Without a sort in it, the web app carries no sorting code for its chain.
    pub fn of_latest(point: Option<Point>) -> Self {
        Self { points: point.into_iter().collect() }
    }

    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// The last point read at or before `at`, and the first one read after it.
    pub fn neighbours(&self, at: OffsetDateTime) -> (Option<&Point>, Option<&Point>) {
        let split = self.points.partition_point(|p| p.read_at <= at);
        (split.checked_sub(1).map(|i| &self.points[i]), self.points.get(split))
    }

    /// The latest point in reading time.
    pub fn latest(&self) -> Option<&Point> {
        self.points.last()
    }

    /// Adds a point that counts, keeping reading-time order.
    pub fn insert(&mut self, point: Point) {
        let at = self.points.partition_point(|p| p.read_at <= point.read_at);
        self.points.insert(at, point);
    }

    /// Takes the meter's latest point out when it is `source` (a reading its sender corrects),
    /// and hands it back; `None`, leaving the chain as it was, when a later point follows it.
    pub fn remove_latest(&mut self, source: Source) -> Option<Point> {
        if self.points.last()?.source != source {
            return None;
        }
        self.points.pop()
    }
}

/// Whether a declaration stored (or, on a phone that cannot know that, read) at `then` may still
/// be replaced by its sender's correction at `now` ([`crate::wire::Submission::corrects`]).
pub fn correction_open(then: OffsetDateTime, now: OffsetDateTime) -> bool {
    now - then <= Duration::hours(crate::wire::CORRECTION_WINDOW_HOURS)
}

/// The later of two readings in reading time; on a tie, `then`, as in a [`Chain`] that `then`
/// joined after `first`. A meter's latest reading is `later(its billed reading, its last
/// counting declaration)`, and a reading that starts to count becomes the latest by
/// `later(latest, it)`.
pub fn later(first: Option<Point>, then: Option<Point>) -> Option<Point> {
    match (first, then) {
        (Some(first), Some(then)) if first.read_at > then.read_at => Some(first),
        (first, None) => first,
        (_, then) => then,
    }
}

/// A declaration to judge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub reading: Reading,
    pub read_at: OffsetDateTime,
}

/// The outcome of judging a declaration against its meter's chain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub status: Status,
    pub code: Option<Code>,
    /// Cubic metres since the previous reading in reading time, where there is one.
    pub consumption_m3: Option<u64>,
    /// For `duplicate_declaration`: the declaration this one repeats.
    pub duplicate_of: Option<u64>,
    /// When the declaration lands between two readings, the later one's consumption is now
    /// measured from it: `(its sequence number, its new consumption)`.
    pub next_consumption: Option<(u64, u64)>,
}

impl Decision {
    fn of(code: Code) -> Self {
        Self {
            status: code.status(),
            code: Some(code),
            consumption_m3: None,
            duplicate_of: None,
            next_consumption: None,
        }
    }

    fn with_consumption(mut self, m3: u64) -> Self {
        self.consumption_m3 = Some(m3);
        self
    }

    /// Whether the declaration joins the chain (it is accepted and is not a repeat).
    pub fn counts(&self) -> bool {
        self.status == Status::Accepted && self.duplicate_of.is_none()
    }
}

/// The checks that need only the meter and the clock: the reading fits the meter, and the
/// reading time is neither in the future nor too old.
pub fn check_declaration(meter: &MeterContext, candidate: &Candidate, now: OffsetDateTime) -> Result<(), Code> {
    if candidate.reading.digit_count() > meter.digits {
        return Err(Code::ReadingOutOfRange);
    }
    if candidate.read_at > now + CLOCK_SLACK {
        return Err(Code::ReadAtInFuture);
    }
    if candidate.read_at < now - MAX_AGE {
        return Err(Code::ReadAtTooOld);
    }
    Ok(())
}

/// Gas used going forward from `from` to `to` on a meter, and whether the meter wrapped.
fn forward_use(meter: &MeterContext, from: u64, to: u64) -> (u64, bool) {
    if to >= from { (to - from, false) } else { ((to + meter.wrap()).saturating_sub(from), true) }
}

/// How a meter went from one counting reading to a later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// It moved forward by this many cubic metres (or stood still).
    Up(u64),
    /// It passed its last reading and started again from zero: this many cubic metres in all.
    Rollover(u64),
    /// It shows less than before and cannot have wrapped: one of the two readings is wrong.
    Decrease,
}

impl Step {
    /// The gas the step measures, unless it is a decrease.
    pub fn used(self) -> Option<u64> {
        match self {
            Self::Up(m3) | Self::Rollover(m3) => Some(m3),
            Self::Decrease => None,
        }
    }
}

/// The part of a meter's dial, at each end, where a wrap is plausible: the last tenth before the
/// wrap and the first tenth after it.
fn near_wrap(meter: &MeterContext) -> u64 {
    (meter.wrap() / 10).max(1)
}

/// Reading `to`, `hours` after reading `from`, on `meter`. A lower reading is a rollover only
/// when `from` is in the last tenth of the dial, `to` in the first tenth, and the meter can pass
/// the gas across the wrap in the time between; anything else lower is a decrease.
pub fn step(meter: &MeterContext, from: u64, to: u64, hours: f64) -> Step {
    let (used, wrapped) = forward_use(meter, from, to);
    if !wrapped {
        return Step::Up(used);
    }
    let edge = near_wrap(meter);
    let near = from >= meter.wrap().saturating_sub(edge) && to < edge;
    if near && physically_possible(meter, used, hours) { Step::Rollover(used) } else { Step::Decrease }
}

fn hours_between(earlier: OffsetDateTime, later: OffsetDateTime) -> f64 {
    ((later - earlier).whole_seconds().max(0) as f64) / 3600.0
}

fn physically_possible(meter: &MeterContext, used: u64, hours: f64) -> bool {
    used as f64 <= meter.max_hourly_m3 * hours + ROUNDING_SLACK_M3
}

/// Whether `used` cubic metres over `hours` is far above the meter's usual use. Without a known
/// average nothing is unusual; only physics limits the reading then.
pub fn is_unusual(meter: &MeterContext, used: u64, hours: f64) -> bool {
    match meter.avg_daily_m3 {
        Some(avg) if avg > 0.0 => {
            let days = (hours / 24.0).max(1.0);
            used as f64 > UNUSUAL_FACTOR * avg * days + UNUSUAL_SLACK_M3
        }
        _ => false,
    }
}

/// Judges a declaration against its meter and the meter's chain in reading time.
pub fn reconcile(meter: &MeterContext, chain: &Chain, candidate: &Candidate, now: OffsetDateTime) -> Decision {
    if let Err(code) = check_declaration(meter, candidate, now) {
        return Decision::of(code);
    }
    let reading = candidate.reading.value();
    let (prev, next) = chain.neighbours(candidate.read_at);

    // A repeat of an accepted declaration sits right beside it in reading time.
    for neighbour in [prev, next].into_iter().flatten() {
        if let Source::Declaration(seq) = neighbour.source
            && repeats(reading, candidate.read_at, neighbour.reading, neighbour.read_at)
        {
            return Decision { duplicate_of: Some(seq), ..Decision::of(Code::DuplicateDeclaration) };
        }
    }

    let mut decision = Decision {
        status: Status::Accepted,
        code: None,
        consumption_m3: None,
        duplicate_of: None,
        next_consumption: None,
    };
    if let Some(prev) = prev {
        let hours = hours_between(prev.read_at, candidate.read_at);
        match step(meter, prev.reading, reading, hours) {
            Step::Decrease => return Decision::of(Code::ReadingDecreased),
            Step::Rollover(used) => {
                if is_unusual(meter, used, hours) {
                    return Decision::of(Code::ReadingDecreased);
                }
                decision = Decision::of(Code::Rollover).with_consumption(used);
            }
            Step::Up(used) if !physically_possible(meter, used, hours) => {
                return Decision::of(Code::ImpossibleConsumption).with_consumption(used);
            }
            Step::Up(used) if is_unusual(meter, used, hours) => {
                return Decision::of(Code::UnusualConsumption).with_consumption(used);
            }
            Step::Up(used) => decision.consumption_m3 = Some(used),
        }
    }
    if let Some(next) = next {
        let hours = hours_between(candidate.read_at, next.read_at);
        let used = match step(meter, reading, next.reading, hours) {
            Step::Up(used) if physically_possible(meter, used, hours) => used,
            Step::Rollover(used) => used,
            // The next reading would be lower, or more gas than the meter can pass.
            _ => return Decision { consumption_m3: decision.consumption_m3, ..Decision::of(Code::OutOfOrder) },
        };
        if let Source::Declaration(seq) = next.source {
            decision.next_consumption = Some((seq, used));
        }
    }
    decision
}

/// A declaration whose sender could not be tied to the subscription (an SMS or a call from a
/// number the registry does not hold for it): whatever the rules decided short of a rejection goes
/// to staff, and nothing joins the chain until they approve it. A repeat of a reading that already
/// counts stays a repeat: it adds nothing, so there is nothing for staff to decide.
pub fn from_unverified_sender(decision: Decision) -> Decision {
    if decision.status == Status::Rejected || decision.duplicate_of.is_some() {
        return decision;
    }
    Decision { consumption_m3: decision.consumption_m3, ..Decision::of(Code::UnverifiedSender) }
}

/// Whether a declaration of `reading` read at `at` repeats a stored one of `other` read at
/// `other_at`: the same number, read within [`DUPLICATE_WINDOW`] of each other.
pub fn repeats(reading: u64, at: OffsetDateTime, other: u64, other_at: OffsetDateTime) -> bool {
    reading == other && (other_at - at).abs() <= DUPLICATE_WINDOW
}

/// What approving a declaration that was held for review changes along its meter's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Approval {
    /// Cubic metres since the previous counting reading, where there is one.
    pub consumption_m3: Option<u64>,
    /// The next counting declaration's consumption, now measured from this one:
    /// `(its sequence number, its new consumption)`.
    pub next_consumption: Option<(u64, u64)>,
    /// The counting declaration this one repeats (the same reading, read close by): approving it
    /// adds nothing to the chain or the bill.
    pub repeat_of: Option<u64>,
}

/// Why a held declaration cannot be approved as the chain stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Conflict {
    /// It is lower than the counting reading before it, and not a plausible rollover.
    BelowPrevious(Point),
    /// The counting reading after it is lower, and not a plausible rollover.
    AboveNext(Point),
}

/// A reviewer approves `point` (not yet in `chain`): it joins the chain, and consumption is
/// measured between it and its neighbours in reading time. The reviewer has looked at the
/// numbers, so use is not judged again; but a chain that would go down is refused: one of the
/// readings is wrong, and the reviewer voids that one first (or rejects this one). A repeat of a
/// counting neighbour is recognised and adds nothing.
pub fn approve(meter: &MeterContext, chain: &Chain, point: &Point) -> Result<Approval, Conflict> {
    let (prev, next) = chain.neighbours(point.read_at);
    for neighbour in [prev, next].into_iter().flatten() {
        if let Source::Declaration(seq) = neighbour.source
            && repeats(point.reading, point.read_at, neighbour.reading, neighbour.read_at)
        {
            return Ok(Approval { consumption_m3: None, next_consumption: None, repeat_of: Some(seq) });
        }
    }
    let consumption_m3 = match prev {
        Some(prev) => match step(meter, prev.reading, point.reading, hours_between(prev.read_at, point.read_at)) {
            Step::Decrease => return Err(Conflict::BelowPrevious(*prev)),
            step => step.used(),
        },
        None => None,
    };
    let next_consumption = match next {
        Some(next) => match step(meter, point.reading, next.reading, hours_between(point.read_at, next.read_at)) {
            Step::Decrease => return Err(Conflict::AboveNext(*next)),
            step => match next.source {
                Source::Declaration(seq) => step.used().map(|used| (seq, used)),
                Source::Billing => None,
            },
        },
        None => None,
    };
    Ok(Approval { consumption_m3, next_consumption, repeat_of: None })
}

/// Staff void the counting declaration `seq` of `chain` (a wrong reading that was accepted): it
/// leaves the chain, and the next counting declaration, if any, is measured from the one before
/// it instead: `(its sequence number, its new consumption)`, or none to re-measure. The chain was
/// consistent, so the gap it leaves is too; across a wrap the gas is counted forward.
pub fn void(meter: &MeterContext, chain: &Chain, seq: u64) -> Option<(u64, Option<u64>)> {
    let points = chain.points();
    let at = points.iter().position(|p| p.source == Source::Declaration(seq))?;
    let Source::Declaration(next_seq) = points.get(at + 1)?.source else { return None };
    let next = &points[at + 1];
    let consumption = at.checked_sub(1).map(|i| forward_use(meter, points[i].reading, next.reading).0);
    Some((next_seq, consumption))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-26 09:00 +03:30);

    fn meter() -> MeterContext {
        MeterContext { digits: 5, avg_daily_m3: Some(3.2), max_hourly_m3: 6.0 }
    }

    fn point(source: Source, reading: u64, days_ago: i64) -> Point {
        Point { source, reading, read_at: NOW - Duration::days(days_ago) }
    }

    fn chain(points: &[(Source, u64, i64)]) -> Chain {
        Chain::new(points.iter().map(|&(s, r, d)| point(s, r, d)).collect())
    }

    #[test]
    fn a_correction_is_open_for_a_day() {
        assert!(correction_open(NOW - Duration::hours(24), NOW));
        assert!(!correction_open(NOW - Duration::hours(24) - Duration::SECOND, NOW));
    }

    #[test]
    fn only_the_latest_point_is_taken_out() {
        let mut c = chain(&[
            (Source::Billing, 1_000, 10),
            (Source::Declaration(1), 1_010, 5),
            (Source::Declaration(2), 1_020, 1),
        ]);
        assert_eq!(c.remove_latest(Source::Declaration(1)), None, "a later reading follows it");
        assert_eq!(c.points().len(), 3);
        assert_eq!(c.remove_latest(Source::Declaration(2)).map(|p| p.reading), Some(1_020));
        assert_eq!(c.latest().map(|p| p.reading), Some(1_010));
        assert_eq!(Chain::default().remove_latest(Source::Billing), None);
    }

    #[test]
    fn the_latest_reading_is_the_later_of_billed_and_declared() {
        let billed = point(Source::Billing, 1_000, 10);
        let before = point(Source::Declaration(1), 990, 15);
        let same = point(Source::Declaration(2), 1_000, 10);
        let after = point(Source::Declaration(3), 1_010, 5);
        assert_eq!(later(None, None), None);
        assert_eq!(later(Some(billed), None), Some(billed));
        assert_eq!(later(None, Some(before)), Some(before));
        assert_eq!(later(Some(billed), Some(before)), Some(billed), "a newer company reading");
        assert_eq!(later(Some(billed), Some(after)), Some(after));
        assert_eq!(later(Some(billed), Some(same)), Some(same), "a declaration at the billed instant");
    }

    fn candidate(reading: u64, read_at: OffsetDateTime) -> Candidate {
        Candidate { reading: Reading::new(reading).expect("valid"), read_at }
    }

    /// One case: the chain, the new reading and how many hours before now it was read, and the
    /// expected status, code and consumption.
    fn check(chain: &Chain, reading: u64, hours_ago: i64, expected: (Status, Option<Code>, Option<u64>)) -> Decision {
        let d = reconcile(&meter(), chain, &candidate(reading, NOW - Duration::hours(hours_ago)), NOW);
        assert_eq!((d.status, d.code, d.consumption_m3), expected, "reading {reading}, {hours_ago} h ago");
        d
    }

    use Source::{Billing, Declaration};

    #[test]
    fn ordinary_readings_are_accepted_with_consumption() {
        let billed = chain(&[(Billing, 10_234, 56)]);
        check(&billed, 10_321, 0, (Status::Accepted, None, Some(87)));
        check(&billed, 10_234, 0, (Status::Accepted, None, Some(0)));
        // A cold winter: four times the average over 56 days is still ordinary.
        check(&billed, 10_234 + 4 * 3 * 56, 0, (Status::Accepted, None, Some(672)));
        // No history at all: accepted, nothing to measure from.
        check(&Chain::default(), 42, 0, (Status::Accepted, None, None));
    }

    #[test]
    fn clock_and_range_rules() {
        let billed = chain(&[(Billing, 10_234, 56)]);
        check(&billed, 100_000, 0, (Status::Rejected, Some(Code::ReadingOutOfRange), None));
        check(&billed, 10_300, -1, (Status::Rejected, Some(Code::ReadAtInFuture), None));
        let d = reconcile(&meter(), &billed, &candidate(10_300, NOW + Duration::minutes(9)), NOW);
        assert_eq!(d.status, Status::Accepted, "ten minutes of clock slack");
        check(&billed, 10_300, 24 * 91, (Status::Rejected, Some(Code::ReadAtTooOld), None));
        let six_digits = MeterContext { digits: 6, ..meter() };
        let d = reconcile(&six_digits, &billed, &candidate(100_000, NOW), NOW);
        assert_eq!(d.code, Some(Code::ImpossibleConsumption), "six digits fit a six-digit meter");
    }

    #[test]
    fn physics_and_unusual_use() {
        let billed = chain(&[(Billing, 10_000, 10)]);
        // Ten days at 6 m³/h is 1,440 m³ at the most.
        check(&billed, 11_442, 0, (Status::Rejected, Some(Code::ImpossibleConsumption), Some(1442)));
        let d = reconcile(&MeterContext { avg_daily_m3: None, ..meter() }, &billed, &candidate(11_441, NOW), NOW);
        assert_eq!(d.status, Status::Accepted, "exactly the meter's maximum, plus rounding");
        // Possible, but far above 5 × 3.2 × 10 + 20 = 180 m³.
        check(&billed, 10_181, 0, (Status::NeedsReview, Some(Code::UnusualConsumption), Some(181)));
        check(&billed, 10_180, 0, (Status::Accepted, None, Some(180)));
        let no_average = MeterContext { avg_daily_m3: None, ..meter() };
        let d = reconcile(&no_average, &billed, &candidate(11_000, NOW), NOW);
        assert_eq!((d.status, d.code), (Status::Accepted, None));
    }

    #[test]
    fn rollover_or_decrease() {
        let near_wrap = chain(&[(Billing, 99_950, 20)]);
        check(&near_wrap, 30, 0, (Status::Accepted, Some(Code::Rollover), Some(80)));
        let mid = chain(&[(Billing, 10_234, 20)]);
        check(&mid, 10_200, 0, (Status::NeedsReview, Some(Code::ReadingDecreased), None));
        // A wrap that would mean more gas than the meter can pass is a decrease, not a rollover.
        let far = chain(&[(Billing, 90_000, 1)]);
        check(&far, 10, 0, (Status::NeedsReview, Some(Code::ReadingDecreased), None));
    }

    #[test]
    fn repeats_are_recognised() {
        let c = chain(&[(Billing, 10_000, 30), (Declaration(7), 10_090, 1)]);
        let d = check(&c, 10_090, 0, (Status::Accepted, Some(Code::DuplicateDeclaration), None));
        assert_eq!(d.duplicate_of, Some(7));
        assert!(!d.counts());
        // The billing baseline is not a declaration to repeat.
        let billed = chain(&[(Billing, 10_000, 1)]);
        check(&billed, 10_000, 0, (Status::Accepted, None, Some(0)));
        // The same number weeks apart is a meter that did not move: a new declaration.
        let old = chain(&[(Billing, 9_000, 60), (Declaration(3), 10_000, 30)]);
        check(&old, 10_000, 0, (Status::Accepted, None, Some(0)));
    }

    #[test]
    fn order_by_reading_time() {
        // Tuesday's SMS arrived first; Monday's offline reading lands before it.
        let c = chain(&[(Billing, 10_000, 30), (Declaration(9), 10_100, 1)]);
        let d = check(&c, 10_090, 48, (Status::Accepted, None, Some(90)));
        assert_eq!(d.next_consumption, Some((9, 10)));
        assert!(d.counts());
        // Higher than the reading after it: the neighbours disagree.
        check(&c, 10_150, 48, (Status::NeedsReview, Some(Code::OutOfOrder), Some(150)));
    }

    #[test]
    fn unverified_senders_go_to_review_unless_rejected() {
        let billed = chain(&[(Billing, 10_000, 10)]);
        let ok = reconcile(&meter(), &billed, &candidate(10_010, NOW), NOW);
        let d = from_unverified_sender(ok);
        assert_eq!((d.status, d.code, d.consumption_m3), (Status::NeedsReview, Some(Code::UnverifiedSender), Some(10)));
        assert!(!d.counts());
        let rejected = reconcile(&meter(), &billed, &candidate(100_000, NOW), NOW);
        assert_eq!(from_unverified_sender(rejected), rejected);
    }

    #[test]
    fn approval_measures_between_neighbours() {
        let c = chain(&[(Billing, 10_000, 30), (Declaration(9), 10_300, 1)]);
        // Held for unusual use between the billed reading and a later declaration.
        let held = point(Declaration(12), 10_250, 10);
        let a = approve(&meter(), &c, &held);
        assert_eq!(a, Ok(Approval { consumption_m3: Some(250), next_consumption: Some((9, 50)), repeat_of: None }));
        // The newest reading: nothing after it.
        let latest = point(Declaration(13), 10_400, 0);
        let a = approve(&meter(), &c, &latest);
        assert_eq!(a, Ok(Approval { consumption_m3: Some(100), next_consumption: None, repeat_of: None }));
        // A decrease the reviewer confirmed as a wrap past 99999.
        let wrapped = chain(&[(Billing, 99_990, 5)]);
        let a = approve(&meter(), &wrapped, &point(Declaration(2), 15, 0));
        assert_eq!(a.map(|a| a.consumption_m3), Ok(Some(25)));
        // No history: nothing to measure from.
        assert_eq!(approve(&meter(), &Chain::default(), &latest).map(|a| a.consumption_m3), Ok(None));
    }

    #[test]
    fn approval_never_makes_a_chain_go_down() {
        // A six-digit meter: 456,200 held, then 451,900 accepted after it. Approving 456,200
        // would make the later reading a drop of 4,300 m³, not a wrap of 995,700.
        let six = MeterContext { digits: 6, ..meter() };
        let c = chain(&[(Billing, 450_000, 30), (Declaration(5), 451_900, 1)]);
        let held = point(Declaration(4), 456_200, 2);
        let next = c.points()[1];
        assert_eq!(approve(&six, &c, &held), Err(Conflict::AboveNext(next)));
        // Below the reading before it, far from the wrap: refused, naming that reading.
        let low = point(Declaration(6), 449_000, 20);
        assert_eq!(approve(&six, &c, &low), Err(Conflict::BelowPrevious(c.points()[0])));
    }

    #[test]
    fn approving_a_repeat_adds_nothing() {
        let c = chain(&[(Billing, 10_000, 30), (Declaration(9), 10_300, 1)]);
        let again = point(Declaration(12), 10_300, 0);
        let a = approve(&meter(), &c, &again);
        assert_eq!(a, Ok(Approval { consumption_m3: None, next_consumption: None, repeat_of: Some(9) }));
    }

    #[test]
    fn rollover_only_near_the_wrap_and_within_physics() {
        let five = meter();
        let six = MeterContext { digits: 6, ..meter() };
        let check = |m: &MeterContext, from: u64, to: u64, hours: f64, expected: Step| {
            assert_eq!(step(m, from, to, hours), expected, "{from} -> {to} in {hours} h");
        };
        check(&five, 10_000, 10_000, 1.0, Step::Up(0));
        check(&five, 10_000, 10_050, 1.0, Step::Up(50));
        // 24 hours at 6 m³/h is 144 m³, plus a cubic metre of rounding.
        check(&five, 99_950, 94, 24.0, Step::Rollover(144));
        check(&five, 99_950, 95, 24.0, Step::Rollover(145));
        check(&five, 99_950, 96, 24.0, Step::Decrease);
        // The last tenth of the dial before the wrap, the first tenth after it.
        check(&five, 90_000, 0, 24.0 * 90.0, Step::Rollover(10_000));
        check(&five, 89_999, 0, 24.0 * 90.0, Step::Decrease);
        check(&five, 99_999, 9_999, 24.0 * 90.0, Step::Rollover(10_000));
        check(&five, 99_999, 10_000, 24.0 * 90.0, Step::Decrease);
        check(&six, 456_200, 451_900, 24.0, Step::Decrease);
        check(&six, 999_990, 5, 24.0, Step::Rollover(15));
        assert_eq!(Step::Decrease.used(), None);
        assert_eq!(Step::Rollover(7).used(), Some(7));
    }

    #[test]
    fn voiding_measures_the_next_from_the_one_before() {
        let c = chain(&[(Billing, 10_000, 30), (Declaration(3), 10_500, 20), (Declaration(4), 10_100, 10)]);
        // 10,500 was a typo between 10,000 and 10,100.
        assert_eq!(void(&meter(), &c, 3), Some((4, Some(100))));
        // The newest reading: nothing after it to re-measure.
        assert_eq!(void(&meter(), &c, 4), None);
        // Not in the chain.
        assert_eq!(void(&meter(), &c, 99), None);
        // No reading before it: the next one has nothing to be measured from.
        let c = chain(&[(Declaration(1), 10, 20), (Declaration(2), 20, 10)]);
        assert_eq!(void(&meter(), &c, 1), Some((2, None)));
    }

    #[test]
    fn a_repeat_from_an_unverified_sender_stays_a_repeat() {
        let c = chain(&[(Billing, 10_000, 30), (Declaration(7), 10_090, 1)]);
        let d = reconcile(&meter(), &c, &candidate(10_090, NOW), NOW);
        assert_eq!(from_unverified_sender(d), d);
        assert_eq!(d.duplicate_of, Some(7));
    }

    #[test]
    fn chain_keeps_reading_time_order() {
        let mut c = chain(&[(Billing, 1, 30), (Declaration(2), 3, 10)]);
        c.insert(point(Declaration(3), 2, 20));
        let readings: Vec<u64> = c.points().iter().map(|p| p.reading).collect();
        assert_eq!(readings, [1, 2, 3]);
        assert_eq!(c.latest().map(|p| p.reading), Some(3));
        let (prev, next) = c.neighbours(NOW - Duration::days(15));
        assert_eq!((prev.map(|p| p.reading), next.map(|p| p.reading)), (Some(2), Some(3)));
    }
}
