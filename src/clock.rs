//! Time as a parameter: production reads the system clock; tests move it forward to expire
//! codes and sessions without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Unix seconds.
pub type UnixTime = i64;

/// Japan Standard Time (UTC+9, no daylight saving): the municipalities' calendar.
pub const JAPAN: time::UtcOffset = time::macros::offset!(+9);

#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    pub fn now(&self) -> UnixTime {
        let system =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        system + self.offset.load(Ordering::Relaxed)
    }

    /// Moves this clock (and every clone of it) forward. For tests.
    pub fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::Relaxed);
    }
}

/// `at` as people read it on a page, in Japan time to the minute: `2026-04-01 08:30`.
pub fn japan_minute(at: UnixTime) -> String {
    in_japan(at, time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]"))
}

/// The month of `at` in Japan: `2026-04` (a monthly report's name).
pub fn japan_month(at: UnixTime) -> String {
    in_japan(at, time::macros::format_description!("[year]-[month]"))
}

fn in_japan(at: UnixTime, format: &[time::format_description::BorrowedFormatItem<'_>]) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.to_offset(JAPAN).format(format).ok())
        .unwrap_or_default()
}

/// `at` in Japan time as RFC 3339, to the second: `2026-04-01T08:30:00+09:00` (the audit log,
/// the CLI).
pub fn japan_rfc3339(at: UnixTime) -> Result<String, time::Error> {
    let t = time::OffsetDateTime::from_unix_timestamp(at)?.to_offset(JAPAN);
    Ok(t.format(&time::format_description::well_known::Rfc3339)?)
}

/// `at` in UTC as RFC 3339: `2026-03-31T23:30:00Z` (SCIM's dateTime).
pub fn utc_rfc3339(at: UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// `at`'s date in Japan: `2026-04-01`.
pub fn japan_date(at: UnixTime) -> String {
    japan_minute(at).get(..10).unwrap_or_default().to_owned()
}
