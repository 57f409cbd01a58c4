//! Parsing one CSV field into a typed value.
//!
//! Numbers are parsed from bytes without building a `str` on the common path: integers by
//! hand (an all-zero fraction such as `"2.0"` is accepted, as newer TLC files write counts that
//! way), decimals through Clinger's fast path with a fallback to `str::parse`, so a value parses
//! to the same bits as `str::parse` would give. Timestamps use [`parse_timestamp`].

use crate::frame::ColumnType;
use crate::time::parse_timestamp;

/// A parsed field waiting until the whole row is known good.
#[derive(Clone, Copy)]
pub(crate) enum Staged {
    I(i64),
    F(f64),
    U(u8),
    Cat(usize, usize),
}

/// Parses an integer with an optional sign and an optional all-zero fraction (`"3"`, `"3.00"`).
pub(crate) fn parse_int(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    let int_end = digits
        .iter()
        .position(|&c| c == b'.')
        .unwrap_or(digits.len());
    let (int, frac) = digits.split_at(int_end);
    if int.is_empty() || frac.iter().skip(1).any(|&c| c != b'0') {
        return None;
    }
    let mut v: i64 = 0;
    for &c in int {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
    }
    Some(if neg { -v } else { v })
}

/// Exact powers of ten (every one up to 1e22 is representable).
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// Parses a decimal number. Plain `[-]digits[.digits]` with at most 15 significant digits takes
/// Clinger's fast path (an exact integer mantissa below 2^53 divided by an exact power of ten
/// is one correctly rounded operation, so the result is the same bits `str::parse` gives);
/// anything else (exponents, long mantissas, `inf`) goes to `str::parse`.
pub(crate) fn parse_f64(b: &[u8]) -> Option<f64> {
    let (neg, rest) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut frac_digits = 0usize;
    let mut seen_point = false;
    let mut simple = !rest.is_empty() && rest.len() <= 17;
    if simple {
        for &c in rest {
            match c {
                b'0'..=b'9' => {
                    mantissa = mantissa * 10 + u64::from(c - b'0');
                    digits += 1;
                    frac_digits += usize::from(seen_point);
                }
                b'.' if !seen_point => seen_point = true,
                _ => {
                    simple = false;
                    break;
                }
            }
        }
    }
    if simple && digits > 0 && digits <= 15 {
        let v = mantissa as f64 / POW10[frac_digits];
        return Some(if neg { -v } else { v });
    }
    std::str::from_utf8(b).ok()?.trim().parse::<f64>().ok()
}

pub(crate) fn parse_field(ty: ColumnType, b: &[u8], off: usize) -> Option<Staged> {
    match ty {
        ColumnType::I64 => parse_int(b).map(Staged::I),
        ColumnType::U8 => parse_int(b)
            .and_then(|v| u8::try_from(v).ok())
            .map(Staged::U),
        ColumnType::Timestamp => parse_timestamp(b).map(Staged::I),
        ColumnType::F64 => parse_f64(b).map(Staged::F),
        ColumnType::Categorical | ColumnType::Categorical16 => {
            Some(Staged::Cat(off, off + b.len()))
        }
    }
}

pub(crate) fn type_text(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::I64 => "an integer",
        ColumnType::F64 => "a number",
        ColumnType::U8 => "an integer in 0..=255",
        ColumnType::Timestamp => "a date and time YYYY-MM-DD HH:MM:SS",
        ColumnType::Categorical | ColumnType::Categorical16 => "a category",
    }
}

pub(crate) fn shown(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_f64, parse_int};

    #[test]
    fn fast_float_parsing_gives_the_bits_of_str_parse() {
        let cases = [
            "0",
            "-0",
            "0.0",
            "-0.000000",
            "1",
            "1.",
            ".5",
            "-.5",
            "40.750001",
            "-73.990371",
            "-73.990371704101563",
            "123456789012345",
            "1234567890123456",
            "0.1",
            "0.3",
            "99999.99",
            "1e3",
            "-2.5E-3",
            "inf",
            "NaN",
            " 7.25 ",
            "9007199254740993",
            "0.000000000000001",
            "12.345678901234",
        ];
        for c in cases {
            let want = c.trim().parse::<f64>().ok();
            assert_eq!(
                parse_f64(c.as_bytes()).map(f64::to_bits),
                want.map(f64::to_bits),
                "{c}"
            );
        }
        for bad in ["", "-", ".", "1.2.3", "1,5", "x", "--1"] {
            assert_eq!(parse_f64(bad.as_bytes()), bad.parse::<f64>().ok(), "{bad}");
        }
        // Exhaustive-ish: every 2-decimal amount and many 6-decimal coordinates.
        for i in (-200_000i64..200_000).step_by(7) {
            for s in [
                format!("{}.{:02}", i / 100, (i % 100).abs()),
                format!("{:.6}", i as f64 * 1.37e-4),
            ] {
                let want = s.parse::<f64>().ok().map(f64::to_bits);
                assert_eq!(parse_f64(s.as_bytes()).map(f64::to_bits), want, "{s}");
            }
        }
    }

    #[test]
    fn integers_allow_only_a_zero_fraction() {
        assert_eq!(parse_int(b"42"), Some(42));
        assert_eq!(parse_int(b"-7"), Some(-7));
        assert_eq!(parse_int(b"+7.000"), Some(7));
        assert_eq!(parse_int(b"7."), Some(7));
        assert_eq!(parse_int(b"7.01"), None);
        assert_eq!(parse_int(b""), None);
        assert_eq!(parse_int(b"-"), None);
        assert_eq!(parse_int(b"1x"), None);
        assert_eq!(parse_int(b"99999999999999999999"), None);
    }
}
