//! `kontor import-subscribers`: reads the billing system's subscriber export (CSV) into the
//! registry. Every row is checked before anything is written; a bad row is reported with its
//! line number and nothing is imported. Importing again updates the rows it names.

use std::io::Read;

use shared::rules::DEFAULT_DIGITS;
use shared::{MeterSerial, SubscriptionNumber, digits};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::store::SubscriberRow;

/// The header the file must start with.
pub const HEADER: [&str; 7] =
    ["subscription", "meter_serial", "meter_digits", "last_reading", "last_read_at", "avg_daily_m3", "phone"];

/// A row that could not be read, with its line in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct RowError {
    pub line: u64,
    pub problem: String,
}

/// Reads every row, or reports every bad one (at most 20).
pub fn parse_csv(input: impl Read) -> Result<Vec<SubscriberRow>, Vec<RowError>> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(true).from_reader(input);
    let header_error = |problem: String| vec![RowError { line: 1, problem }];
    let headers = reader.headers().map_err(|e| header_error(format!("unreadable header: {e}")))?.clone();
    let names: Vec<String> = headers.iter().map(|h| h.trim_start_matches('\u{FEFF}').to_ascii_lowercase()).collect();
    if names != HEADER {
        return Err(header_error(format!("the header must be `{}`, found `{}`", HEADER.join(","), names.join(","))));
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for record in reader.records() {
        match record {
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line());
                match parse_row(&record) {
                    Ok(row) => rows.push(row),
                    Err(problem) => errors.push(RowError { line, problem }),
                }
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(RowError { line, problem: e.to_string() });
            }
        }
        if errors.len() >= 20 {
            break;
        }
    }
    if errors.is_empty() { Ok(rows) } else { Err(errors) }
}

fn parse_row(record: &csv::StringRecord) -> Result<SubscriberRow, String> {
    if record.len() != HEADER.len() {
        return Err(format!("expected {} fields, found {}", HEADER.len(), record.len()));
    }
    let field = |i: usize| record.get(i).map(digits::normalize).filter(|s| !s.is_empty());
    let subscription =
        SubscriptionNumber::parse(record.get(0).unwrap_or("")).map_err(|e| format!("subscription: {e}"))?;
    let meter_serial = MeterSerial::parse(record.get(1).unwrap_or("")).map_err(|e| format!("meter_serial: {e}"))?;
    let digits = match field(2) {
        None => DEFAULT_DIGITS,
        Some(text) => {
            text.parse::<u8>().ok().filter(|d| (1..=12).contains(d)).ok_or("meter_digits: a number from 1 to 12")?
        }
    };
    let last_reading =
        field(3).map(|t| digits::parse_number(&t, true).map_err(|e| format!("last_reading: {e}"))).transpose()?;
    if let Some(r) = last_reading
        && r >= 10u64.pow(u32::from(digits))
    {
        return Err(format!("last_reading: {r} has more than {digits} digits"));
    }
    let last_read_at = field(4).map(|t| parse_time(&t)).transpose()?;
    if last_reading.is_some() != last_read_at.is_some() {
        return Err("last_reading and last_read_at go together".into());
    }
    let avg_daily_m3 = field(5)
        .map(|t| t.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or("avg_daily_m3: a number ≥ 0"))
        .transpose()?;
    let phone = field(6).map(|p| p.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect::<String>());
    Ok(SubscriberRow { subscription, meter_serial, digits, last_reading, last_read_at, avg_daily_m3, phone })
}

/// RFC 3339, or a plain `YYYY-MM-DD` date taken as noon in Iran.
fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, format)
        .map(|d| d.with_hms(12, 0, 0).unwrap_or(d.midnight()).assume_offset(shared::wire::SERVER_OFFSET))
        .map_err(|_| format!("last_read_at: {text:?} is not an RFC 3339 time or a YYYY-MM-DD date"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(csv: &str, expected: Result<usize, &[(u64, &str)]>) {
        match (parse_csv(csv.as_bytes()), expected) {
            (Ok(rows), Ok(n)) => assert_eq!(rows.len(), n),
            (Err(errors), Err(expected)) => {
                assert_eq!(errors.len(), expected.len(), "{errors:?}");
                for (e, (line, needle)) in errors.iter().zip(expected) {
                    assert_eq!(e.line, *line, "{e}");
                    assert!(e.problem.contains(needle), "{e} lacks {needle:?}");
                }
            }
            (got, want) => panic!("got {got:?}, expected {want:?}"),
        }
    }

    const HEAD: &str = "subscription,meter_serial,meter_digits,last_reading,last_read_at,avg_daily_m3,phone\n";

    #[test]
    fn good_files() {
        check(HEAD, Ok(0));
        check(&format!("{HEAD}1234567890,AB123456,5,10234,2026-10-01T09:00:00+03:30,3.2,09121234567\n"), Ok(1));
        check(&format!("{HEAD}۱۲۳۴۵۶۷۸۹۰,ab-123456,,,,,\n2222333344,CD1,6,۱۲۳,2026-10-01,0.5,+98912\n"), Ok(2));
    }

    #[test]
    fn bad_rows_are_reported_by_line() {
        check("sub,serial\n1,2\n", Err(&[(1, "the header must be")]));
        check(
            &format!(
                "{HEAD}1234567890,AB123456,5,10234,2026-10-01,3.2,\n12,AB123456,5,,,,\n1234567890,AB123456,5,123456,2026-10-01,,\n"
            ),
            Err(&[(3, "subscription"), (4, "more than 5 digits")]),
        );
        check(&format!("{HEAD}1234567890,AB123456,5,100,,,\n"), Err(&[(2, "go together")]));
        check(&format!("{HEAD}1234567890,AB123456\n"), Err(&[(2, "expected 7 fields")]));
    }
}
