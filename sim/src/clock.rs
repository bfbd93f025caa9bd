//! Timestamps in the RFC 3339 form Go prints: up to nine fractional digits, trailing zeros
//! trimmed, `Z` for UTC or a `±hh:mm` offset.

use std::time::{SystemTime, UNIX_EPOCH};

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// The offset the node pretends its local clock runs at. Real servers print `modified_at` and
/// `expires_at` in local time; a fixed zone keeps the simulation independent of the host.
pub(crate) const LOCAL_OFFSET_SECONDS: i64 = -7 * 3600;

/// Nanoseconds since the Unix epoch.
pub(crate) fn now_nanos() -> i128 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(elapsed) => elapsed.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

/// Whole seconds since the Unix epoch, as OpenAI's `created` fields carry them.
pub(crate) fn now_seconds() -> i64 {
    (now_nanos() / NANOS_PER_SECOND) as i64
}

/// The current time in UTC, as `created_at` carries it.
pub(crate) fn utc_now() -> String {
    rfc3339(now_nanos(), 0)
}

/// Formats `unix_nanos` shifted to `offset_seconds` east of UTC.
pub(crate) fn rfc3339(unix_nanos: i128, offset_seconds: i64) -> String {
    let local = unix_nanos + i128::from(offset_seconds) * NANOS_PER_SECOND;
    let seconds = local.div_euclid(NANOS_PER_SECOND) as i64;
    let fraction = local.rem_euclid(NANOS_PER_SECOND);

    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let second_of_day = seconds.rem_euclid(86_400);
    let mut text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    );

    let digits = format!("{fraction:09}");
    let digits = digits.trim_end_matches('0');
    if !digits.is_empty() {
        text.push('.');
        text.push_str(digits);
    }

    if offset_seconds == 0 {
        text.push('Z');
    } else {
        let sign = if offset_seconds < 0 { '-' } else { '+' };
        let minutes = offset_seconds.abs() / 60;
        text.push_str(&format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60));
    }
    text
}

/// Converts days since 1970-01-01 into a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_with_trimmed_fraction() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        let nanos = 1_721_681_271_147_561_000i128;
        assert_eq!(rfc3339(nanos, 0), "2024-07-22T20:47:51.147561Z");
    }

    #[test]
    fn formats_a_negative_offset() {
        let nanos = 1_746_405_464_706_015_396i128;
        assert_eq!(
            rfc3339(nanos, LOCAL_OFFSET_SECONDS),
            "2025-05-04T17:37:44.706015396-07:00"
        );
    }

    #[test]
    fn handles_leap_days() {
        // 2024-02-29T12:00:00Z
        assert_eq!(
            rfc3339(1_709_208_000 * NANOS_PER_SECOND, 0),
            "2024-02-29T12:00:00Z"
        );
    }
}
