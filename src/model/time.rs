//! Durations and time bounds as Prometheus and Thanos flags write them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses a Prometheus duration: `1h30m`, `15s`, `2w`, `500ms`, `1y` (365 days), `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration {s:?}: expected a number"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let ms_per_unit: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            u => return Err(format!("invalid duration {s:?}: unknown unit {u:?}")),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(ms_per_unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("invalid duration {s:?}: too large"))?;
    }
    Ok(Duration::from_millis(total))
}

/// A time flag: an absolute RFC 3339 time or a duration relative to now (`-2w`, `-1d`), as
/// Thanos' `--min-time` / `--max-time` accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    /// Milliseconds since the epoch.
    Absolute(i64),
    /// Signed offset from now, in milliseconds.
    Relative(i64),
}

impl TimeBound {
    pub const MIN: TimeBound = TimeBound::Absolute(i64::MIN);
    pub const MAX: TimeBound = TimeBound::Absolute(i64::MAX);

    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(d) = s.strip_prefix('-') {
            return Ok(TimeBound::Relative(
                -(parse_duration(d)?.as_millis() as i64),
            ));
        }
        if s.starts_with(|c: char| c.is_ascii_digit()) && !s.contains('T') {
            return Ok(TimeBound::Relative(parse_duration(s)?.as_millis() as i64));
        }
        let t = humantime::parse_rfc3339_weak(s)
            .or_else(|_| humantime::parse_rfc3339(s))
            .map_err(|e| {
                format!("invalid time {s:?}: {e} (want RFC 3339 or a duration like -2w)")
            })?;
        Ok(TimeBound::Absolute(system_time_ms(t)))
    }

    /// Milliseconds since the epoch, relative bounds taken from `now_ms`.
    pub fn resolve(self, now_ms: i64) -> i64 {
        match self {
            TimeBound::Absolute(t) => t,
            TimeBound::Relative(d) => now_ms.saturating_add(d),
        }
    }
}

pub fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

pub fn now_ms() -> i64 {
    system_time_ms(SystemTime::now())
}

/// `2026-11-01T00:00:00Z` (milliseconds shown only when not zero).
pub fn format_rfc3339_ms(ms: i64) -> String {
    let t = if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    };
    if ms % 1000 == 0 {
        humantime::format_rfc3339_seconds(t).to_string()
    } else {
        humantime::format_rfc3339_millis(t).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("2w").unwrap(),
            Duration::from_secs(14 * 86400)
        );
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "m", "15", "1x", "-1h", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_bounds() {
        assert_eq!(
            TimeBound::parse("-2w").unwrap().resolve(20 * 86_400_000),
            6 * 86_400_000
        );
        assert_eq!(
            TimeBound::parse("2023-11-14T22:13:20Z").unwrap(),
            TimeBound::Absolute(1_700_000_000_000)
        );
        assert!(TimeBound::parse("yesterday").is_err());
        assert_eq!(format_rfc3339_ms(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(
            format_rfc3339_ms(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
