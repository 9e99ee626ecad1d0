//! A phone's clock against the server's: how far off it is, learnt from the server's answers,
//! and the times a declaration is dated with once that is known.
//!
//! Phones with a wrong clock are common (a dead battery resets it, a user sets it by hand). The
//! server refuses a reading dated more than [`crate::rules::CLOCK_SLACK`] in its future; without
//! a correction every reading from a phone running ahead would be refused, again and again.

use time::{Duration, OffsetDateTime};

/// From this far off, the phone tells the subscriber that its clock is wrong.
pub const WARN_BEYOND: Duration = Duration::minutes(5);
/// A new estimate within this of the one in use is noise (an HTTP date is whole seconds, a
/// network's delay is uneven), not news: the estimate in use stays, so that readings entered
/// seconds apart are never dated out of the order they were entered.
pub const NOISE: Duration = Duration::seconds(2);

/// How far the server's clock is ahead of the phone's (negative when the phone runs ahead).
/// Add it to the phone's clock to get the server's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offset(pub Duration);

impl Offset {
    /// The offset one exchange shows: `server_time` was read by the server between `sent` and
    /// `received` on the phone's clock, so the phone's clock at that moment is taken as the
    /// midpoint. Answers `None` when the phone's clock went back during the exchange (changed
    /// by hand): nothing can be learnt from it.
    pub fn learn(sent: OffsetDateTime, received: OffsetDateTime, server_time: OffsetDateTime) -> Option<Self> {
        if received < sent {
            return None;
        }
        let midpoint = sent + (received - sent) / 2;
        Some(Self(server_time - midpoint))
    }

    /// The estimate to keep after learning `learnt`: `learnt` if it is news, else this one.
    pub fn updated(self, learnt: Offset) -> Offset {
        if (learnt.0 - self.0).abs() < NOISE { self } else { learnt }
    }

    /// The server's time now, from the phone's clock.
    pub fn server_now(self, phone_now: OffsetDateTime) -> OffsetDateTime {
        phone_now + self.0
    }

    /// Whether the subscriber should be told to set the phone's clock.
    pub fn worth_a_warning(self) -> bool {
        self.0.abs() > WARN_BEYOND
    }

    /// Minutes, to the nearest, the phone's clock runs ahead (positive) or behind (negative).
    pub fn phone_ahead_minutes(self) -> i64 {
        let seconds = -self.0.whole_seconds();
        (seconds + if seconds < 0 { -30 } else { 30 }) / 60
    }

    /// The time a declaration refused as dated in the future is sent again with: its reading
    /// time as the phone's clock showed it, corrected by what is known now, and never after
    /// the server's time now. `applied` is the offset that was added when it was first dated.
    pub fn redate(self, read_at: OffsetDateTime, applied: Offset, phone_now: OffsetDateTime) -> OffsetDateTime {
        let on_phone_clock = read_at - applied.0;
        (on_phone_clock + self.0).min(self.server_now(phone_now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_phone_an_hour_ahead_learns_minus_an_hour() {
        let sent = datetime!(2026-12-02 13:00:00 UTC);
        let received = sent + Duration::milliseconds(400);
        let server = datetime!(2026-12-02 12:00:00.2 UTC);
        let offset = Offset::learn(sent, received, server).expect("learnt");
        assert_eq!(offset, Offset(Duration::hours(-1)));
        assert!(offset.worth_a_warning());
        assert_eq!(offset.phone_ahead_minutes(), 60);
        assert_eq!(offset.server_now(datetime!(2026-12-02 14:00 UTC)), datetime!(2026-12-02 13:00 UTC));
    }

    #[test]
    fn noise_does_not_move_the_estimate() {
        let known = Offset(Duration::milliseconds(-7_200_300));
        assert_eq!(known.updated(Offset(Duration::milliseconds(-7_199_400))), known);
        assert_eq!(known.updated(Offset(Duration::milliseconds(-7_201_900))), known);
        // A real change (the clock was set) is taken at once.
        assert_eq!(known.updated(Offset(Duration::milliseconds(-300))), Offset(Duration::milliseconds(-300)));
    }

    #[test]
    fn a_clock_set_back_during_the_exchange_teaches_nothing() {
        let sent = datetime!(2026-12-02 13:00 UTC);
        assert_eq!(Offset::learn(sent, sent - Duration::seconds(1), sent), None);
    }

    #[test]
    fn the_warning_starts_past_five_minutes_either_way() {
        assert!(!Offset(Duration::minutes(5)).worth_a_warning());
        assert!(!Offset(Duration::minutes(-5)).worth_a_warning());
        assert!(Offset(Duration::minutes(5) + Duration::seconds(1)).worth_a_warning());
        assert!(Offset(Duration::minutes(-6)).worth_a_warning());
        assert_eq!(Offset(Duration::minutes(90)).phone_ahead_minutes(), -90);
        // Learnt over a network, an offset is never whole minutes: it reads as the nearest.
        assert_eq!(Offset(Duration::seconds(-7199)).phone_ahead_minutes(), 120);
        assert_eq!(Offset(Duration::seconds(7171)).phone_ahead_minutes(), -120);
        assert_eq!(Offset(Duration::seconds(-7169)).phone_ahead_minutes(), 119);
    }

    #[test]
    fn a_refused_reading_is_redated_by_what_is_known_now() {
        let phone_now = datetime!(2026-12-02 14:00 UTC);
        // Read twenty minutes ago on a phone an hour ahead, dated before anything was known.
        let read_at = datetime!(2026-12-02 13:40 UTC);
        let now_known = Offset(Duration::hours(-1));
        assert_eq!(now_known.redate(read_at, Offset::default(), phone_now), datetime!(2026-12-02 12:40 UTC));
        // Dated with an older estimate of half an hour: only the rest is corrected.
        let applied = Offset(Duration::minutes(-30));
        let dated = read_at + applied.0;
        assert_eq!(now_known.redate(dated, applied, phone_now), datetime!(2026-12-02 12:40 UTC));
    }

    #[test]
    fn a_redated_reading_is_never_after_the_servers_now() {
        // Read at 14:10 on the phone's clock, which was then set back: it shows 14:00 now.
        let read_at = datetime!(2026-12-02 14:10 UTC);
        let phone_now = datetime!(2026-12-02 14:00 UTC);
        let redated = Offset::default().redate(read_at, Offset::default(), phone_now);
        assert_eq!(redated, phone_now);
        let behind = Offset(Duration::minutes(2));
        assert_eq!(behind.redate(read_at, Offset::default(), phone_now), datetime!(2026-12-02 14:02 UTC));
    }
}
