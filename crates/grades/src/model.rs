//! Grades summed: the daily tallies the worker maintains, the periods reads roll them
//! up into (identically on every backend, since the rollup is done here), and what the
//! reads answer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Date, Duration, Month, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};

use crate::post::{bad, GradePost, E6, INVALID_DATE};
use studyhall_core::clock::Micros;
use studyhall_core::error::ApiError;

const DAY_US: i64 = 86_400_000_000;

/// What grades add up to: their sum in millionths, how many, how many on time. (The
/// stats module's `SessionTotals` sum learning sessions instead: modules, time, scores.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GradeTally {
    pub grade_sum: i64,
    pub grade_count: i64,
    pub on_time_count: i64,
}

impl GradeTally {
    pub fn of(post: &GradePost) -> GradeTally {
        GradeTally {
            grade_sum: post.grade_e6,
            grade_count: 1,
            on_time_count: i64::from(post.on_time),
        }
    }

    pub fn negated(self) -> GradeTally {
        GradeTally {
            grade_sum: -self.grade_sum,
            grade_count: -self.grade_count,
            on_time_count: -self.on_time_count,
        }
    }

    pub fn add(&mut self, other: GradeTally) {
        self.grade_sum += other.grade_sum;
        self.grade_count += other.grade_count;
        self.on_time_count += other.on_time_count;
    }

    pub fn average(&self) -> f64 {
        if self.grade_count == 0 {
            0.0
        } else {
            self.grade_sum as f64 / self.grade_count as f64 / E6
        }
    }

    pub fn on_time_percentage(&self) -> f64 {
        if self.grade_count == 0 {
            0.0
        } else {
            self.on_time_count as f64 * 100.0 / self.grade_count as f64
        }
    }

    /// Orders by average, highest first, exactly (no rounding decides a tie).
    pub fn cmp_average_desc(&self, other: &GradeTally) -> std::cmp::Ordering {
        let mine = i128::from(self.grade_sum) * i128::from(other.grade_count.max(1));
        let theirs = i128::from(other.grade_sum) * i128::from(self.grade_count.max(1));
        theirs.cmp(&mine)
    }
}

/// Unix day number of an instant in µs.
pub fn day_of(at: Micros) -> i64 {
    at.0.div_euclid(DAY_US)
}

fn date_of_day(day: i64) -> Date {
    (OffsetDateTime::UNIX_EPOCH + Duration::days(day)).date()
}

fn day_of_date(date: Date) -> i64 {
    (date - OffsetDateTime::UNIX_EPOCH.date()).whole_days()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl GroupBy {
    /// The first day of the period holding `day` (weeks start on Monday, ISO).
    pub fn period_start(self, day: i64) -> i64 {
        let date = date_of_day(day);
        let first = match self {
            GroupBy::Day => date,
            GroupBy::Week => {
                date - Duration::days(i64::from(date.weekday().number_days_from_monday()))
            }
            GroupBy::Month => date.replace_day(1).unwrap_or(date),
            GroupBy::Quarter => {
                let month = Month::try_from(((u8::from(date.month()) - 1) / 3) * 3 + 1)
                    .unwrap_or(Month::January);
                Date::from_calendar_date(date.year(), month, 1).unwrap_or(date)
            }
            GroupBy::Year => {
                Date::from_calendar_date(date.year(), Month::January, 1).unwrap_or(date)
            }
        };
        day_of_date(first)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Day => "day",
            GroupBy::Week => "week",
            GroupBy::Month => "month",
            GroupBy::Quarter => "quarter",
            GroupBy::Year => "year",
        }
    }
}

/// Time-series query parameters as sent.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesParams {
    /// First day included, `YYYY-MM-DD` (default, or empty: unbounded).
    #[param(pattern = "^([0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]))?$")]
    pub start_date: Option<String>,
    /// Last day included, `YYYY-MM-DD` (default, or empty: up to now).
    #[param(pattern = "^([0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]))?$")]
    pub end_date: Option<String>,
    /// day, week (ISO, Monday), month, quarter or year. Default (or empty): `month` on
    /// the average routes, one `all_time` row on the on-time routes.
    #[param(pattern = "^(day|week|month|quarter|year)?$")]
    pub group_by: Option<String>,
}

/// A validated range of days (inclusive) and grouping (`None`: all time in one row).
#[derive(Debug, Clone, Copy)]
pub struct Series {
    pub first_day: Option<i64>,
    pub last_day: i64,
    pub group_by: Option<GroupBy>,
    /// The request's instant, where the range ends when no `end_date` is given.
    now: Option<i64>,
}

/// The period name of the single row of an ungrouped on-time series (the original's).
pub const ALL_TIME: &str = "all_time";

impl Series {
    /// Parses the parameters; `default` is the grouping when none is given.
    pub fn parse(
        params: &SeriesParams,
        now: i64,
        default: Option<GroupBy>,
    ) -> Result<Series, ApiError> {
        let date = |field: &str, text: &str| {
            Date::parse(
                text.trim(),
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .map(day_of_date)
            .map_err(|_| {
                bad(
                    INVALID_DATE,
                    format!("{field} must be a date as YYYY-MM-DD."),
                )
            })
        };
        let first_day = params
            .start_date
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| date("start_date", t))
            .transpose()?;
        let (last_day, now) = match params.end_date.as_deref().filter(|t| !t.is_empty()) {
            Some(text) => (date("end_date", text)?, None),
            None => (day_of(Micros(now)), Some(now)),
        };
        if first_day.is_some_and(|first| first > last_day) {
            return Err(bad(
                "start_date must not be after end_date",
                "start_date must not be after end_date.",
            ));
        }
        let group_by = match params.group_by.as_deref().filter(|t| !t.is_empty()) {
            None => default,
            Some(text) => Some(
                serde_json::from_value(Value::String(text.to_owned())).map_err(|_| {
                    bad(
                        "Invalid group_by. Use day, week, month, quarter or year",
                        "group_by must be day, week, month, quarter or year.",
                    )
                })?,
            ),
        };
        Ok(Series {
            first_day,
            last_day,
            group_by,
            now,
        })
    }

    /// Sums daily tallies into periods, oldest first; without a grouping, one
    /// `all_time` row (zeros when there is nothing), as the original answered.
    pub fn roll_up(&self, days: &[(i64, GradeTally)]) -> Vec<(String, GradeTally)> {
        let Some(group_by) = self.group_by else {
            let mut total = GradeTally::default();
            for (_, tally) in days {
                total.add(*tally);
            }
            return vec![(ALL_TIME.to_owned(), total)];
        };
        let mut periods: BTreeMap<i64, GradeTally> = BTreeMap::new();
        for (day, tally) in days {
            periods
                .entry(group_by.period_start(*day))
                .or_default()
                .add(*tally);
        }
        periods
            .into_iter()
            .filter(|(_, tally)| tally.grade_count > 0)
            .map(|(start, tally)| (day_start(start), tally))
            .collect()
    }

    /// The grouping as the response names it: as sent, or the default; empty when the
    /// series is one all-time row (the original echoed the empty parameter).
    pub fn group_by_name(&self) -> &'static str {
        self.group_by.map_or("", GroupBy::as_str)
    }

    /// The range as the original reported it: `start` the first instant (year 1 when
    /// unbounded), `end` the last second of `end_date`, or now.
    pub fn time_range(&self) -> TimeRange {
        let end = match self.now {
            Some(now) => studyhall_core::clock::rfc3339(now - now.rem_euclid(1_000_000)),
            None => studyhall_core::clock::rfc3339(
                (self.last_day + 1).saturating_mul(DAY_US) - 1_000_000,
            ),
        };
        TimeRange {
            start: self
                .first_day
                .map_or_else(|| UNBOUNDED_START.to_owned(), day_start),
            end,
        }
    }
}

/// How the original wrote an unbounded start (Go's zero time).
const UNBOUNDED_START: &str = "0001-01-01T00:00:00Z";

/// RFC 3339 of a day's first instant (UTC).
pub fn day_start(day: i64) -> String {
    studyhall_core::clock::rfc3339(day.saturating_mul(DAY_US))
}

/// The range a series covers, both ends included.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimeRange {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AveragePoint {
    pub period: String,
    pub average_grade: f64,
    pub grade_count: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OnTimePoint {
    pub period: String,
    pub on_time_count: i64,
    pub total_count: i64,
    pub percentage: f64,
}

/// A student's standing in a list: the average of their grades and how many there are.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StudentAverage {
    pub student_id: String,
    pub average_grade: f64,
    pub grade_count: i64,
    /// The same count, under the name the original gave it on the task-average route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_count: Option<i64>,
}

/// `GET /stats/health`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GradesHealth {
    #[schema(example = "OK")]
    pub status: &'static str,
}

/// A grade accepted for processing: the job that stores it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GradeQueued {
    /// The job; `GET /jobs/{id}` follows it (the `Location` header names it too).
    pub job_id: String,
    /// The original's sentence (its misspelling on course grades included).
    #[schema(
        example = "Task task:add_student_grade queued sucessfully (Expected time to be processed: 0.00 minutes)"
    )]
    pub result: String,
    /// Always 200, as the original wrote it.
    #[schema(example = 200)]
    pub status: u16,
}

/// A student's figures in one course.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CourseFigures {
    /// Task grades the student has in the course.
    pub assignments_completed: i64,
    /// Mean of the course grades.
    pub average_grade: f64,
    pub grade_count: i64,
    /// Share of the task grades handed in on time, 0 to 100.
    pub on_time_percentage: f64,
    /// Always 0 (the original's placeholder).
    pub tbd: i64,
}

/// `GET /stats/student/{student_id}/course/{course_id}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StudentCourse {
    pub course_id: String,
    pub result: CourseFigures,
    pub student_id: String,
}

/// Course-grade averages by period, of a student or of a course.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Averages {
    pub averages: Vec<AveragePoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub course_id: Option<String>,
    /// `day`, `week`, `month` or `year`.
    pub group_by: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub student_id: Option<String>,
    pub time_range: TimeRange,
}

/// The on-time share of task grades by period, of a course or of a student in one.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OnTime {
    pub course_id: String,
    pub data: Vec<OnTimePoint>,
    /// `day`, `week`, `month`, `year`, or empty for one `all_time` row.
    pub group_by: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub student_id: Option<String>,
    pub time_range: TimeRange,
}

/// `GET /stats/course/{course_id}/task/{task_id}/averages`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskAverages {
    pub course_id: String,
    /// Mean of every student's grade for the task.
    pub group_average: f64,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
    /// Best first.
    pub students: Vec<StudentAverage>,
    pub task_id: String,
}

/// `GET /stats/student/{student_id}/course/{course_id}/task/average`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StudentTaskAverage {
    pub course_id: String,
    pub next_cursor: Option<String>,
    /// The other students of the course, best first.
    pub other_students: Vec<StudentAverage>,
    pub student_average: f64,
    pub student_id: String,
    /// Present when the student has no task grade in the course.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> i64 {
        day_of_date(
            Date::parse(
                text,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .unwrap(),
        )
    }

    #[test]
    fn periods_start_where_the_calendar_says() {
        let d = day("2024-05-19"); // a Sunday
        assert_eq!(GroupBy::Week.period_start(d), day("2024-05-13"));
        assert_eq!(
            GroupBy::Week.period_start(day("2024-05-13")),
            day("2024-05-13")
        );
        assert_eq!(GroupBy::Month.period_start(d), day("2024-05-01"));
        assert_eq!(GroupBy::Quarter.period_start(d), day("2024-04-01"));
        assert_eq!(
            GroupBy::Quarter.period_start(day("2024-12-31")),
            day("2024-10-01")
        );
        assert_eq!(GroupBy::Year.period_start(d), day("2024-01-01"));
        assert_eq!(
            GroupBy::Week.period_start(day("1969-12-31")),
            day("1969-12-29")
        );
        assert_eq!(day_start(day("2024-05-13")), "2024-05-13T00:00:00Z");
    }

    #[test]
    fn averages_order_exactly_highest_first() {
        let t = |sum, count| GradeTally {
            grade_sum: sum,
            grade_count: count,
            on_time_count: 0,
        };
        // 1/3 and 333/1000 differ, though close.
        assert_eq!(
            t(1, 3).cmp_average_desc(&t(333, 1000)),
            std::cmp::Ordering::Less
        );
        assert_eq!(
            t(2, 4).cmp_average_desc(&t(1, 2)),
            std::cmp::Ordering::Equal
        );
        assert_eq!(
            t(1, 2).cmp_average_desc(&t(3, 4)),
            std::cmp::Ordering::Greater
        );
    }

    #[test]
    fn an_ungrouped_series_is_one_all_time_row_and_ranges_read_as_the_original_wrote_them() {
        let params = SeriesParams {
            end_date: Some("2024-01-31".into()),
            ..SeriesParams::default()
        };
        let series = Series::parse(&params, 0, None).unwrap();
        assert_eq!(
            series.roll_up(&[]),
            vec![(ALL_TIME.to_owned(), GradeTally::default())]
        );
        assert_eq!(series.group_by_name(), "");
        let range = series.time_range();
        assert_eq!(
            (range.start.as_str(), range.end.as_str()),
            ("0001-01-01T00:00:00Z", "2024-01-31T23:59:59Z")
        );
        let now = Series::parse(
            &SeriesParams::default(),
            1_700_000_000_123_456,
            Some(GroupBy::Month),
        )
        .unwrap();
        assert_eq!(now.time_range().end, "2023-11-14T22:13:20Z");
        assert_eq!(now.group_by_name(), "month");
    }
}
