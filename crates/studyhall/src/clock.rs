//! Time as the service stores it: Unix microseconds, UTC.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// An instant as Unix microseconds, UTC: how every table stores time.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    sqlx::Type,
    serde::Serialize,
    serde::Deserialize,
)]
#[sqlx(transparent)]
#[serde(transparent)]
pub struct Micros(pub i64);

impl Micros {
    pub fn now() -> Micros {
        Micros(now_micros())
    }

    /// `micros` later (saturating).
    pub fn plus(self, micros: i64) -> Micros {
        Micros(self.0.saturating_add(micros))
    }

    /// RFC 3339 (UTC), e.g. `2026-11-22T15:08:06.829Z`.
    pub fn rfc3339(self) -> String {
        rfc3339(self.0)
    }

    /// RFC 3339 (UTC) with exactly three fraction digits.
    pub fn rfc3339_millis(self) -> String {
        rfc3339_millis(self.0)
    }
}

impl From<OffsetDateTime> for Micros {
    fn from(instant: OffsetDateTime) -> Self {
        Micros(micros(instant))
    }
}

/// An instant as Unix microseconds (saturating far outside any real date).
pub fn micros(instant: OffsetDateTime) -> i64 {
    i64::try_from(instant.unix_timestamp_nanos() / 1_000).unwrap_or(if instant.year() < 1970 {
        i64::MIN
    } else {
        i64::MAX
    })
}

/// Now, as Unix microseconds.
pub fn now_micros() -> i64 {
    micros(OffsetDateTime::now_utc())
}

/// Unix microseconds as RFC 3339 (UTC), e.g. `2026-11-22T15:08:06.829Z`.
pub fn rfc3339(micros: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Unix microseconds as RFC 3339 (UTC) with exactly three fraction digits, e.g.
/// `2026-11-22T15:08:06.800Z`: one format whatever precision the store kept.
pub fn rfc3339_millis(micros: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|at| at.format(&format).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn microseconds_round_trip_through_rfc3339() {
        assert_eq!(
            super::rfc3339(1_618_531_200_123_000),
            "2021-04-16T00:00:00.123Z"
        );
        assert!(super::now_micros() > 1_700_000_000_000_000);
        assert_eq!(
            super::rfc3339_millis(1_618_531_200_123_456),
            "2021-04-16T00:00:00.123Z"
        );
        assert_eq!(
            super::rfc3339_millis(1_618_531_200_000_000),
            "2021-04-16T00:00:00.000Z"
        );
    }
}
