//! Parsing the times operators type: `2026-01-01T00:00:00Z` and ISO-8601 durations (`PT1H`).

use crate::error::{AdminError, Result};

/// Milliseconds since the Unix epoch of an RFC 3339 date-time with an explicit zone:
/// `2026-01-01T00:00:00Z`, `2026-01-01T00:00:00.250+02:00`.
///
/// A time without a zone is refused rather than guessed.
pub fn parse_datetime(text: &str) -> Result<i64> {
    let bad = |why: &str| {
        AdminError::InvalidInput(format!(
            "invalid date-time {text:?}: {why} (expected e.g. 2026-01-01T00:00:00Z)"
        ))
    };
    let (date, rest) = text.split_once(['T', 't']).ok_or_else(|| bad("no 'T'"))?;
    let date_parts: Vec<&str> = date.split('-').collect();
    let [year, month, day] = date_parts[..] else {
        return Err(bad("the date must be YYYY-MM-DD"));
    };
    let year: i64 = number(year, 4).ok_or_else(|| bad("bad year"))?;
    let month: i64 = number(month, 2)
        .filter(|m| (1..=12).contains(m))
        .ok_or_else(|| bad("bad month"))?;
    let day: i64 = number(day, 2)
        .filter(|d| (1..=days_in_month(year, month)).contains(d))
        .ok_or_else(|| bad("bad day"))?;

    let zone_at = rest
        .find(['Z', 'z', '+', '-'])
        .ok_or_else(|| bad("no time zone; add Z for UTC or an offset like +02:00"))?;
    let (time, zone) = rest.split_at(zone_at);
    let (time, fraction) = match time.split_once('.') {
        Some((t, f)) => (t, Some(f)),
        None => (time, None),
    };
    let time_parts: Vec<&str> = time.split(':').collect();
    let [hour, minute, second] = time_parts[..] else {
        return Err(bad("the time must be HH:MM:SS"));
    };
    let hour: i64 = number(hour, 2)
        .filter(|h| *h < 24)
        .ok_or_else(|| bad("bad hour"))?;
    let minute: i64 = number(minute, 2)
        .filter(|m| *m < 60)
        .ok_or_else(|| bad("bad minute"))?;
    let second: i64 = number(second, 2)
        .filter(|s| *s < 60)
        .ok_or_else(|| bad("bad second"))?;
    let millis = match fraction {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let padded = format!("{f:0<3}");
            padded[..3]
                .parse::<i64>()
                .map_err(|_| bad("bad fraction"))?
        }
        Some(_) => return Err(bad("bad fraction of a second")),
    };
    let offset_minutes = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let digits = zone[1..].replace(':', "");
            if digits.len() != 4 {
                return Err(bad("the zone offset must be +HH:MM"));
            }
            let hours: i64 = number(&digits[..2], 2).ok_or_else(|| bad("bad zone offset"))?;
            let minutes: i64 = number(&digits[2..], 2).ok_or_else(|| bad("bad zone offset"))?;
            sign * (hours * 60 + minutes)
        }
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1000 + millis)
}

/// Milliseconds in an ISO-8601 duration as Java's `Duration.parse` reads it: `PT1H`, `PT30M`,
/// `P1DT12H`, `PT0.5S`. Negative durations are refused.
pub fn parse_duration(text: &str) -> Result<i64> {
    let bad = |why: &str| {
        AdminError::InvalidInput(format!(
            "invalid duration {text:?}: {why} (expected ISO-8601, e.g. PT1H, PT30M, P1DT2H)"
        ))
    };
    let upper = text.to_ascii_uppercase();
    let body = upper
        .strip_prefix('P')
        .ok_or_else(|| bad("must start with P"))?;
    let (days_part, time_part) = match body.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (body, None),
    };
    let mut total_ms: f64 = 0.0;
    let mut any = false;
    if !days_part.is_empty() {
        let days = days_part
            .strip_suffix('D')
            .and_then(|d| d.parse::<u64>().ok())
            .ok_or_else(|| bad("only days (D) may come before T"))?;
        total_ms += days as f64 * 86_400_000.0;
        any = true;
    }
    if let Some(mut time) = time_part {
        if time.is_empty() {
            return Err(bad("nothing after T"));
        }
        for (unit, ms) in [('H', 3_600_000.0), ('M', 60_000.0), ('S', 1000.0)] {
            if let Some(at) = time.find(unit) {
                let value: f64 = time[..at]
                    .parse()
                    .ok()
                    .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| bad("bad number"))?;
                if unit != 'S' && time[..at].contains('.') {
                    return Err(bad("only seconds may have a fraction"));
                }
                total_ms += value * ms;
                time = &time[at + 1..];
                any = true;
            }
        }
        if !time.is_empty() {
            return Err(bad("units must be H, M, S in that order"));
        }
    }
    if !any {
        return Err(bad("no amount"));
    }
    Ok(total_ms.round() as i64)
}

fn number(text: &str, digits: usize) -> Option<i64> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_in_utc_and_with_offsets() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_datetime("2026-01-01T00:00:00Z").unwrap(),
            1_767_225_600_000
        );
        assert_eq!(
            parse_datetime("2026-01-01T02:00:00.5+02:00").unwrap(),
            1_767_225_600_500
        );
        assert_eq!(
            parse_datetime("2024-02-29T12:00:00-0130").unwrap(),
            1_709_208_000_000 + 90 * 60_000
        );
    }

    #[test]
    fn malformed_datetimes_are_refused() {
        for text in [
            "2026-01-01",
            "2026-01-01T00:00:00",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "yesterday",
            "2026-01-01T00:00Z",
        ] {
            assert!(parse_datetime(text).is_err(), "{text} should be refused");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("PT1H").unwrap(), 3_600_000);
        assert_eq!(parse_duration("PT30M").unwrap(), 1_800_000);
        assert_eq!(parse_duration("P1DT2H").unwrap(), 93_600_000);
        assert_eq!(parse_duration("PT0.5S").unwrap(), 500);
        assert_eq!(parse_duration("P2D").unwrap(), 172_800_000);
        for text in ["1H", "PT", "P", "PT1X", "PT1M1H", "-PT1H", "PT1.5H"] {
            assert!(parse_duration(text).is_err(), "{text} should be refused");
        }
    }
}
