//! Parsing the times operators type: `2026-01-01T00:00:00Z` and ISO-8601 durations (`PT1H`),
//! with jiff.

use jiff::{SignedDuration, Span, SpanRelativeTo, Timestamp};

use crate::error::{AdminError, Result};

/// Milliseconds since the Unix epoch of an RFC 3339 date-time with an explicit zone:
/// `2026-01-01T00:00:00Z`, `2026-01-01T00:00:00.250+02:00`.
///
/// A time without a zone is refused rather than guessed.
pub fn parse_datetime(text: &str) -> Result<i64> {
    let timestamp: Timestamp = text.parse().map_err(|error| {
        AdminError::InvalidInput(format!(
            "invalid date-time {text:?}: {error} (expected e.g. 2026-01-01T00:00:00Z; the zone, \
             Z for UTC or an offset like +02:00, is required)"
        ))
    })?;
    Ok(timestamp.as_millisecond())
}

/// Milliseconds in an ISO-8601 duration as Java's `Duration.parse` reads it: `PT1H`, `PT30M`,
/// `P1DT12H` (a day is 24 hours), `PT0.5S`. Negative durations are refused.
pub fn parse_duration(text: &str) -> Result<i64> {
    let bad = |why: String| {
        AdminError::InvalidInput(format!(
            "invalid duration {text:?}: {why} (expected ISO-8601, e.g. PT1H, PT30M, P1DT2H)"
        ))
    };
    if !text.starts_with(['P', 'p']) {
        return Err(bad("must start with P".to_string()));
    }
    let span: Span = text.parse().map_err(|error| bad(format!("{error}")))?;
    if span.get_years() != 0 || span.get_months() != 0 || span.get_weeks() != 0 {
        return Err(bad("only days, hours, minutes and seconds".to_string()));
    }
    let duration: SignedDuration = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|error| bad(format!("{error}")))?;
    if duration.is_negative() {
        return Err(bad("a duration cannot be negative".to_string()));
    }
    i64::try_from(duration.as_millis()).map_err(|_| bad("too long".to_string()))
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
        for text in ["1H", "PT", "P", "PT1X", "PT1M1H", "-PT1H", "P1Y", "P1W"] {
            assert!(parse_duration(text).is_err(), "{text} should be refused");
        }
    }
}
