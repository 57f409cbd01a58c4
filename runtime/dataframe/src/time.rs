//! Timestamps: `YYYY-MM-DD HH:MM:SS` text to and from seconds since the Unix epoch.
//!
//! TLC files carry local New York wall-clock times without a zone; the analysis only needs
//! hour, weekday and month of that wall clock, so the text is read as if it were UTC (no zone
//! or daylight-saving shifts are applied, and hour/day/month of the result are the wall clock's).
//! Day arithmetic uses Howard Hinnant's `days_from_civil` / `civil_from_days` (proleptic
//! Gregorian calendar), exact for every `i64` day in the years -9999..=9999 accepted here.

/// Seconds per day.
pub const SECONDS_PER_DAY: i64 = 86_400;

/// Days from 1970-01-01 to `year-month-day` (month 1..=12, day 1..=31; not validated).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `(year, month 1..=12, day 1..=31)` of the day `days` after 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Parses `YYYY-MM-DD HH:MM:SS` (a `T` separator is accepted too) into seconds since the epoch;
/// `None` if the text is not such a valid date and time.
pub fn parse_timestamp(text: &[u8]) -> Option<i64> {
    if text.len() != 19
        || text[4] != b'-'
        || text[7] != b'-'
        || !(text[10] == b' ' || text[10] == b'T')
        || text[13] != b':'
        || text[16] != b':'
    {
        return None;
    }
    let year = i64::from(digits(&text[0..4])?);
    let month = digits(&text[5..7])?;
    let day = digits(&text[8..10])?;
    let hour = i64::from(digits(&text[11..13])?);
    let min = i64::from(digits(&text[14..16])?);
    let sec = i64::from(digits(&text[17..19])?);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 59
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * SECONDS_PER_DAY + hour * 3600 + min * 60 + sec)
}

/// Appends `ts` as `YYYY-MM-DD HH:MM:SS` (years 0..=9999; others are clamped to 4 digits).
pub fn format_timestamp(ts: i64, out: &mut Vec<u8>) {
    let days = ts.div_euclid(SECONDS_PER_DAY);
    let secs = ts.rem_euclid(SECONDS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let y = y.clamp(0, 9999) as u32;
    let put2 = |v: u32, out: &mut Vec<u8>| {
        out.push(b'0' + (v / 10) as u8);
        out.push(b'0' + (v % 10) as u8);
    };
    put2(y / 100, out);
    put2(y % 100, out);
    out.push(b'-');
    put2(m, out);
    out.push(b'-');
    put2(d, out);
    out.push(b' ');
    put2((secs / 3600) as u32, out);
    out.push(b':');
    put2((secs / 60 % 60) as u32, out);
    out.push(b':');
    put2((secs % 60) as u32, out);
}

/// Hour of day, 0..=23.
pub fn hour_of(ts: i64) -> u8 {
    (ts.rem_euclid(SECONDS_PER_DAY) / 3600) as u8
}

/// Day of week, 0 = Sunday .. 6 = Saturday (C's `tm_wday`, which AIFM's analysis groups by).
pub fn weekday_of(ts: i64) -> u8 {
    // 1970-01-01 was a Thursday (4).
    (ts.div_euclid(SECONDS_PER_DAY) + 4).rem_euclid(7) as u8
}

/// Month, 1..=12.
pub fn month_of(ts: i64) -> u8 {
    civil_from_days(ts.div_euclid(SECONDS_PER_DAY)).1 as u8
}
