//! Grades: validation, the daily buckets the worker maintains, and the periods reads
//! roll them up into (identically on every backend, since the rollup is done here).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, Month, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

/// Grades are summed in thousandths, exactly.
pub const UNITS: f64 = 1000.0;
const DAY_US: i64 = 86_400_000_000;

/// A 400 with the seed's `result` and `status` fields beside problem+json's.
pub fn bad(message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError::bad_request(message.clone()).with_member("result", Value::String(message))
}

/// A 404 for a subject with no grades.
pub fn no_data(what: &str) -> ApiError {
    ApiError::not_found(format!("No grades found for this {what}."))
}

pub fn student_id(text: &str) -> Result<String, ApiError> {
    uuid::Uuid::try_parse(text.trim())
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| bad("student_id must be a UUID."))
}

/// `course_id`, `task_id`: 1–50 letters, digits or `-` (the seed's rule).
pub fn code(field: &str, text: &str) -> Result<String, ApiError> {
    let ok = !text.is_empty()
        && text.len() <= 50
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(text.to_owned())
    } else {
        Err(bad(format!(
            "{field} must be 1 to 50 letters, digits or hyphens."
        )))
    }
}

/// A grade posted to either write route, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradePost {
    pub student_id: String,
    pub course_id: String,
    pub task_id: Option<String>,
    /// The grade in thousandths (0–10 000).
    pub units: i64,
    pub on_time: bool,
    /// Unix µs.
    pub created_at: i64,
}

/// The body of `POST /stats/student/grade`.
// Documentation only: `parse_post` reads the body field by field, so that each mistake
// gets the seed's message.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CourseGradeBody {
    #[schema(format = Uuid)]
    student_id: String,
    #[schema(pattern = "^[A-Za-z0-9-]{1,50}$")]
    course_id: String,
    #[schema(minimum = 0, maximum = 10)]
    grade: f64,
    /// Default true.
    on_time: Option<bool>,
    /// Default: now.
    #[schema(format = DateTime)]
    created_at: Option<String>,
}

/// The body of `POST /stats/student/task/grade`: a course grade's fields and `task_id`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TaskGradeBody {
    #[schema(format = Uuid)]
    student_id: String,
    #[schema(pattern = "^[A-Za-z0-9-]{1,50}$")]
    course_id: String,
    #[schema(pattern = "^[A-Za-z0-9-]{1,50}$")]
    task_id: String,
    #[schema(minimum = 0, maximum = 10)]
    grade: f64,
    /// Default true.
    on_time: Option<bool>,
    /// Default: now.
    #[schema(format = DateTime)]
    created_at: Option<String>,
}

/// Parses a write body; `task` says whether `task_id` is required.
pub fn parse_post(body: &[u8], task: bool, now: i64) -> Result<GradePost, ApiError> {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(bad("Request body must be a JSON object."));
    };
    let text = |name: &str| match fields.get(name) {
        Some(Value::String(text)) => Ok(text.clone()),
        None | Some(Value::Null) => Err(bad(format!("{name} is required."))),
        Some(_) => Err(bad(format!("{name} must be a string."))),
    };
    let student_id = student_id(&text("student_id")?)?;
    let course_id = code("course_id", &text("course_id")?)?;
    let task_id = if task {
        Some(code("task_id", &text("task_id")?)?)
    } else {
        None
    };
    let grade = match fields.get("grade") {
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|g| (0.0..=10.0).contains(g))
            .ok_or_else(|| bad("grade must be a number from 0 to 10."))?,
        None | Some(Value::Null) => return Err(bad("grade is required.")),
        Some(_) => return Err(bad("grade must be a number from 0 to 10.")),
    };
    let on_time = match fields.get("on_time") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(on_time)) => *on_time,
        Some(_) => return Err(bad("on_time must be true or false.")),
    };
    let created_at = match fields.get("created_at") {
        None | Some(Value::Null) => now,
        Some(Value::String(text)) => OffsetDateTime::parse(text, &Rfc3339)
            .map(crate::clock::micros)
            .map_err(|_| bad("created_at must be an RFC 3339 timestamp."))?,
        Some(_) => return Err(bad("created_at must be an RFC 3339 timestamp.")),
    };
    Ok(GradePost {
        student_id,
        course_id,
        task_id,
        units: (grade * UNITS).round() as i64,
        on_time,
        created_at,
    })
}

/// What one grade adds to a bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub grade_sum: i64,
    pub grade_count: i64,
    pub on_time_count: i64,
    pub task_count: i64,
}

impl Tally {
    pub fn of(post: &GradePost) -> Tally {
        Tally {
            grade_sum: post.units,
            grade_count: 1,
            on_time_count: i64::from(post.on_time),
            task_count: i64::from(post.task_id.is_some()),
        }
    }

    pub fn negated(self) -> Tally {
        Tally {
            grade_sum: -self.grade_sum,
            grade_count: -self.grade_count,
            on_time_count: -self.on_time_count,
            task_count: -self.task_count,
        }
    }

    pub fn add(&mut self, other: Tally) {
        self.grade_sum += other.grade_sum;
        self.grade_count += other.grade_count;
        self.on_time_count += other.on_time_count;
        self.task_count += other.task_count;
    }

    pub fn average(&self) -> f64 {
        if self.grade_count == 0 {
            0.0
        } else {
            self.grade_sum as f64 / self.grade_count as f64 / UNITS
        }
    }

    pub fn on_time_percentage(&self) -> f64 {
        if self.grade_count == 0 {
            0.0
        } else {
            self.on_time_count as f64 * 100.0 / self.grade_count as f64
        }
    }
}

/// Unix day number of an instant in µs.
pub fn day_of(micros: i64) -> i64 {
    micros.div_euclid(DAY_US)
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
    #[param(pattern = "^([0-9]{4}-[0-9]{2}-[0-9]{2})?$")]
    pub start_date: Option<String>,
    /// Last day included, `YYYY-MM-DD` (default, or empty: today).
    #[param(pattern = "^([0-9]{4}-[0-9]{2}-[0-9]{2})?$")]
    pub end_date: Option<String>,
    /// day, week (ISO, Monday), month (default, or empty), quarter or year.
    #[param(pattern = "^(day|week|month|quarter|year)?$")]
    pub group_by: Option<String>,
}

/// A validated range of days (inclusive) and grouping.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    pub first_day: Option<i64>,
    pub last_day: i64,
    pub group_by: GroupBy,
}

impl Series {
    pub fn parse(params: &SeriesParams, now: i64) -> Result<Series, ApiError> {
        let date = |field: &str, text: &str| {
            Date::parse(
                text.trim(),
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .map(day_of_date)
            .map_err(|_| bad(format!("{field} must be a date as YYYY-MM-DD.")))
        };
        let first_day = params
            .start_date
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| date("start_date", t))
            .transpose()?;
        let last_day = match params.end_date.as_deref().filter(|t| !t.is_empty()) {
            Some(text) => date("end_date", text)?,
            None => day_of(now),
        };
        if first_day.is_some_and(|first| first > last_day) {
            return Err(bad("start_date must not be after end_date."));
        }
        let group_by = match params.group_by.as_deref().filter(|t| !t.is_empty()) {
            None => GroupBy::Month,
            Some(text) => serde_json::from_value(Value::String(text.to_owned()))
                .map_err(|_| bad("group_by must be day, week, month, quarter or year."))?,
        };
        Ok(Series {
            first_day,
            last_day,
            group_by,
        })
    }

    /// Sums daily tallies into periods, oldest first.
    pub fn roll_up(&self, days: &[(i64, Tally)]) -> Vec<(String, Tally)> {
        let mut periods: BTreeMap<i64, Tally> = BTreeMap::new();
        for (day, tally) in days {
            periods
                .entry(self.group_by.period_start(*day))
                .or_default()
                .add(*tally);
        }
        periods
            .into_iter()
            .filter(|(_, tally)| tally.grade_count > 0)
            .map(|(start, tally)| (day_start(start), tally))
            .collect()
    }

    pub fn time_range(&self) -> TimeRange {
        TimeRange {
            start: self.first_day.map(day_start),
            end: day_start(self.last_day + 1),
        }
    }
}

/// RFC 3339 of a day's first instant (UTC).
pub fn day_start(day: i64) -> String {
    crate::clock::rfc3339(day.saturating_mul(DAY_US))
}

/// The range a series covers: `start` included (null: unbounded), `end` excluded.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimeRange {
    pub start: Option<String>,
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

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StudentAverage {
    pub student_id: String,
    pub average_grade: f64,
    pub grade_count: i64,
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
    fn posts_are_validated() {
        let ok = br#"{"student_id": "9C1B2F8E-6D0A-4A2B-8A57-0B7B0E5D8F11", "course_id": "c-1", "grade": 8.5}"#;
        let post = parse_post(ok, false, 7).unwrap();
        assert_eq!((post.units, post.on_time, post.created_at), (8500, true, 7));
        assert_eq!(post.student_id, "9c1b2f8e-6d0a-4a2b-8a57-0b7b0e5d8f11");
        for bad in [&br#"{"student_id": "x", "course_id": "c", "grade": 1}"#[..],
                    br#"{"student_id": "9c1b2f8e-6d0a-4a2b-8a57-0b7b0e5d8f11", "course_id": "c c", "grade": 1}"#,
                    br#"{"student_id": "9c1b2f8e-6d0a-4a2b-8a57-0b7b0e5d8f11", "course_id": "c", "grade": 10.5}"#,
                    br#"{"student_id": "9c1b2f8e-6d0a-4a2b-8a57-0b7b0e5d8f11", "course_id": "c", "grade": "8"}"#,
                    br#"{"student_id": "9c1b2f8e-6d0a-4a2b-8a57-0b7b0e5d8f11", "course_id": "c", "grade": 1, "on_time": "yes"}"#,
                    b"[]", b"nope"] {
            assert!(parse_post(bad, false, 0).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let task = br#"{"student_id": "9c1b2f8e-6d0a-4a2b-8a57-0b7b0e5d8f11", "course_id": "c", "grade": 1}"#;
        assert!(
            parse_post(task, true, 0).is_err(),
            "task_id is required on task grades"
        );
    }
}
