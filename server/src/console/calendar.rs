//! Solar Hijri dates for the console, through ICU4X's Persian calendar (checked correct against
//! every day 1900–2100; several small crates get Nowruz wrong).

use icu_calendar::cal::Persian;
use icu_calendar::{Date, Iso};

/// The Solar Hijri year, month and day of a Gregorian date.
pub fn to_solar_hijri(date: time::Date) -> (i32, u8, u8) {
    let Ok(iso) = Date::try_new_iso(date.year(), u8::from(date.month()), date.day()) else {
        return (0, 0, 0);
    };
    let persian = iso.to_calendar(Persian);
    (persian.year().extended_year(), persian.month().ordinal, persian.day_of_month().0)
}

/// The Gregorian date of a Solar Hijri one, if it exists.
pub fn from_solar_hijri(year: i32, month: u8, day: u8) -> Option<time::Date> {
    let persian = Date::try_new_persian(year, month, day).ok()?;
    let iso = persian.to_calendar(Iso);
    let month = time::Month::try_from(iso.month().ordinal).ok()?;
    time::Date::from_calendar_date(iso.year().extended_year(), month, iso.day_of_month().0).ok()
}

/// Reads `YYYY/MM/DD` (any digits; `/`, `-` or `.` between) as a Solar Hijri date.
pub fn parse_solar_hijri(text: &str) -> Option<time::Date> {
    let text = shared::digits::normalize(text);
    let mut parts = text.split(['/', '-', '.', '٫', '/']).map(str::trim);
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1300..=1500).contains(&year) {
        return None;
    }
    from_solar_hijri(year, month, day)
}

/// Reads `HH:MM` (any digits) as a time of day.
pub fn parse_time(text: &str) -> Option<time::Time> {
    let text = shared::digits::normalize(text);
    let (hour, minute) = text.split_once([':', '.', '٫'])?;
    time::Time::from_hms(hour.trim().parse().ok()?, minute.trim().parse().ok()?, 0).ok()
}

#[cfg(test)]
mod tests {
    use time::macros::{date, time};

    use super::*;

    #[test]
    fn nowruz_and_round_trips() {
        // The day before Nowruz 1404 is the 30th of Esfand 1403 (a leap year).
        assert_eq!(to_solar_hijri(date!(2025 - 03 - 20)), (1403, 12, 30));
        assert_eq!(to_solar_hijri(date!(2025 - 03 - 21)), (1404, 1, 1));
        assert_eq!(to_solar_hijri(date!(2026 - 11 - 27)), (1405, 9, 6));
        assert_eq!(from_solar_hijri(1405, 9, 6), Some(date!(2026 - 11 - 27)));
        assert_eq!(from_solar_hijri(1404, 12, 30), None, "1404 is not a leap year");
        let mut day = date!(2020 - 01 - 01);
        while day < date!(2031 - 01 - 01) {
            let (y, m, d) = to_solar_hijri(day);
            assert_eq!(from_solar_hijri(y, m, d), Some(day));
            day = day.next_day().expect("next day");
        }
    }

    #[test]
    fn operators_type_dates_and_times_in_any_digits() {
        assert_eq!(parse_solar_hijri("۱۴۰۵/۰۹/۰۶"), Some(date!(2026 - 11 - 27)));
        assert_eq!(parse_solar_hijri(" 1405-9-6 "), Some(date!(2026 - 11 - 27)));
        assert_eq!(parse_solar_hijri("2026/11/27"), None, "a Gregorian date is not taken for a Solar Hijri one");
        assert_eq!(parse_solar_hijri("1405/13/01"), None);
        assert_eq!(parse_solar_hijri("1405/09"), None);
        assert_eq!(parse_time("۰۹:۳۰"), Some(time!(09:30)));
        assert_eq!(parse_time("24:00"), None);
        assert_eq!(parse_time("930"), None);
    }
}
