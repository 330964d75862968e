//! Time as the service stores it (Unix microseconds, UTC) and the clock it reads.

use std::sync::Arc;
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::watch;

/// The service's clock. Everything that decides by time reads it: leases, retention,
/// checkpoints, backoff, sweeps, the times rows are stamped with, and the readings of
/// the database's and Redis's clocks (which it shifts by the same amount).
///
/// In production it is the system's. [`Clock::adjustable`] gives one that a test
/// moves with its [`Hand`]: a 5-minute lease is then tested by moving the clock, not
/// by waiting, and the periodic tasks that sleep on it ([`Clock::sleep`]) wake when
/// it moves past their time.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// How far this clock is ahead of the system's, µs; `None` for the system clock.
    shift: Option<Arc<watch::Sender<i64>>>,
}

/// Moves an adjustable [`Clock`] (in tests).
#[derive(Clone, Debug)]
pub struct Hand(Arc<watch::Sender<i64>>);

impl Clock {
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that starts at the system's time and moves when its hand is turned.
    pub fn adjustable() -> (Clock, Hand) {
        let shift = Arc::new(watch::channel(0).0);
        (
            Clock {
                shift: Some(shift.clone()),
            },
            Hand(shift),
        )
    }

    pub fn now(&self) -> Micros {
        Micros(now_micros().saturating_add(self.shift()))
    }

    /// What to add to another clock's reading (the database's, Redis's), µs.
    pub fn shift(&self) -> i64 {
        self.shift.as_ref().map_or(0, |shift| *shift.borrow())
    }

    /// Waits until `period` has passed on this clock: a system clock's sleep, cut
    /// short when the hand moves this clock past the end.
    pub async fn sleep(&self, period: Duration) {
        let Some(shift) = &self.shift else {
            return tokio::time::sleep(period).await;
        };
        let end = self.now().plus(duration_micros(period));
        let mut moved = shift.subscribe();
        loop {
            let left = end.0.saturating_sub(self.now().0);
            if left <= 0 {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_micros(left.unsigned_abs())) => {}
                _ = moved.changed() => {}
            }
        }
    }
}

impl Hand {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0
            .send_modify(|shift| *shift = shift.saturating_add(duration_micros(by)));
    }

    /// Moves the clock so that it reads `at` now (and goes on from there).
    pub fn set(&self, at: Micros) {
        self.0.send_replace(at.0.saturating_sub(now_micros()));
    }
}

/// A duration in µs (saturating).
pub fn duration_micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

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

    /// Its minute since the Unix epoch.
    pub fn minute(self) -> i64 {
        self.0.div_euclid(60_000_000)
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
    use super::*;

    #[tokio::test]
    async fn an_adjustable_clock_moves_with_its_hand_and_wakes_its_sleepers() {
        let (clock, hand) = Clock::adjustable();
        let before = clock.now();
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep(Duration::from_secs(3600)).await }
        });
        // The sleeper starts (and fixes its end) before the clock moves.
        tokio::time::sleep(Duration::from_millis(50)).await;
        hand.advance(Duration::from_secs(1800));
        assert!(clock.now().0 - before.0 >= 1_800_000_000);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!sleeper.is_finished(), "woke before its end");
        hand.advance(Duration::from_secs(1801));
        tokio::time::timeout(Duration::from_secs(10), sleeper)
            .await
            .expect("the sleeper woke when the clock passed its end")
            .expect("sleeper");
        hand.set(Micros(1_618_531_200_000_000));
        assert!((clock.now().0 - 1_618_531_200_000_000).abs() < 60_000_000);
        assert!(clock.shift() < 0);
        assert_eq!(Clock::system().shift(), 0);
    }

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
