//! What a grade post is: the ids, the grade and the time it is filed under, read from
//! a body in the original's words, and the same grade as a queued job holds it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::ToSchema;

use studyhall_core::clock::Micros;
use studyhall_core::error::ApiError;
use studyhall_core::http::extract::{read_json, BodyError, Sent};

/// Grades are kept and summed in millionths of a point, exactly.
pub const E6: f64 = 1_000_000.0;
/// The largest grade either way: every sum of them stays exact in 64 bits.
pub const MAX_GRADE: f64 = 10_000.0;
/// The longest id accepted where any id is (the original bounded none).
const MAX_ID_CHARS: usize = 128;
/// The original's rule where it checked ids: 1 to 50 letters, digits or hyphens.
const MAX_CODE_CHARS: usize = 50;

/// A 400 carrying the original's text (`error`, and `result` for clients of the routes
/// that answered with it) beside problem+json, whose `detail` says exactly what is wrong.
pub fn bad(original: &str, detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(detail)
        .with_member("error", Value::String(original.to_owned()))
        .with_member("result", Value::String(original.to_owned()))
}

/// The original's text for every write it refused.
pub const INVALID_INPUT: &str = "Invalid input";
/// The original's text for a bad date.
pub const INVALID_DATE: &str = "Invalid date format. Use YYYY-MM-DD";

/// Any non-empty id of at most 128 characters without control characters: what the
/// original accepted where it checked nothing, bounded.
pub fn any_id(field: &str, text: &str, original: &str) -> Result<String, ApiError> {
    let count = text.chars().count();
    if count == 0 || count > MAX_ID_CHARS || text.chars().any(char::is_control) {
        return Err(bad(
            original,
            format!(
                "{field} must be 1 to {MAX_ID_CHARS} characters, none of them control characters."
            ),
        ));
    }
    Ok(text.to_owned())
}

/// An id in the path of a read the original did not check: empty included (it then
/// names nothing, and the read finds nothing, as the original's did), at most 128
/// characters, no control characters.
pub fn path_id(field: &str, text: &str, original: &str) -> Result<String, ApiError> {
    if text.is_empty() {
        return Ok(String::new());
    }
    any_id(field, text, original)
}

/// An id on the routes where the original checked one: 1 to 50 letters (any script),
/// digits or hyphens.
pub fn code(field: &str, text: &str, original: &str) -> Result<String, ApiError> {
    let count = text.chars().count();
    let ok = (1..=MAX_CODE_CHARS).contains(&count)
        && text.chars().all(|c| c.is_alphanumeric() || c == '-');
    if ok {
        Ok(text.to_owned())
    } else {
        Err(bad(
            original,
            format!("{field} must be 1 to {MAX_CODE_CHARS} letters, digits or hyphens."),
        ))
    }
}

/// A grade posted to either write route, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "QueuedGrade")]
pub struct GradePost {
    pub student_id: String,
    pub course_id: String,
    pub task_id: Option<String>,
    /// The grade in millionths of a point.
    pub grade_e6: i64,
    pub on_time: bool,
    pub created_at: Micros,
}

/// A grade as a queued job holds it, whichever version queued it: jobs queued while
/// grades were kept in thousandths call the grade `grade_e3` (or, earlier, `units`).
#[derive(Deserialize)]
struct QueuedGrade {
    student_id: String,
    course_id: String,
    task_id: Option<String>,
    grade_e6: Option<i64>,
    #[serde(alias = "units")]
    grade_e3: Option<i64>,
    on_time: bool,
    created_at: Micros,
}

impl TryFrom<QueuedGrade> for GradePost {
    type Error = String;

    fn try_from(queued: QueuedGrade) -> Result<Self, Self::Error> {
        let grade_e6 = match (queued.grade_e6, queued.grade_e3) {
            (Some(e6), _) => e6,
            (None, Some(e3)) => e3.saturating_mul(1000),
            (None, None) => return Err("a queued grade without its grade".into()),
        };
        Ok(GradePost {
            student_id: queued.student_id,
            course_id: queued.course_id,
            task_id: queued.task_id,
            grade_e6,
            on_time: queued.on_time,
            created_at: queued.created_at,
        })
    }
}

/// The body of `POST /stats/student/grade`.
// Each field as sent (`Sent`), so that `parse_post` names each mistake.
#[derive(Deserialize, ToSchema)]
pub struct CourseGradeBody {
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 128)]
    student_id: Sent<String>,
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 128)]
    course_id: Sent<String>,
    /// Kept to the millionth (digits past the sixth decimal place are rounded).
    #[serde(default)]
    #[schema(value_type = f64, required = true, minimum = -10000, maximum = 10000)]
    grade: Sent<f64>,
    /// Default false.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    on_time: Sent<bool>,
    /// Ignored, as the original ignored it (a grade's time is when it is posted, or
    /// `X-Graded-At`); refused only when it is not an RFC 3339 timestamp, as the
    /// original refused it.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    created_at: Sent<String>,
}

/// The body of `POST /stats/student/task/grade`: a course grade's fields and `task_id`.
#[derive(Deserialize, ToSchema)]
pub struct TaskGradeBody {
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 128)]
    student_id: Sent<String>,
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 128)]
    course_id: Sent<String>,
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 128)]
    task_id: Sent<String>,
    /// Kept to the millionth (digits past the sixth decimal place are rounded).
    #[serde(default)]
    #[schema(value_type = f64, required = true, minimum = -10000, maximum = 10000)]
    grade: Sent<f64>,
    /// Default false.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    on_time: Sent<bool>,
    /// Ignored (see the course grade's).
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    created_at: Sent<String>,
}

impl From<CourseGradeBody> for TaskGradeBody {
    fn from(body: CourseGradeBody) -> TaskGradeBody {
        TaskGradeBody {
            student_id: body.student_id,
            course_id: body.course_id,
            task_id: Sent::Absent,
            grade: body.grade,
            on_time: body.on_time,
            created_at: body.created_at,
        }
    }
}

/// The header that files a grade at another time than its post (for importers).
pub const GRADED_AT: &str = "x-graded-at";

/// When a posted grade is filed: `X-Graded-At` if sent, else `now`.
pub fn graded_at(header: Option<&[u8]>, now: Micros) -> Result<Micros, ApiError> {
    let Some(header) = header else {
        return Ok(now);
    };
    std::str::from_utf8(header)
        .ok()
        .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
        .map(Micros::from)
        .ok_or_else(|| {
            bad(
                INVALID_INPUT,
                "X-Graded-At must be an RFC 3339 timestamp, e.g. 2024-05-19T10:00:00Z.",
            )
        })
}

/// Parses a write body, filed `at`; `task` says whether `task_id` is required. A
/// `created_at` in the body is checked, as the original's JSON binding checked it,
/// and not used, as the original's INSERT did not use it.
pub fn parse_post(body: &[u8], task: bool, at: Micros) -> Result<GradePost, ApiError> {
    let invalid = |detail: String| bad(INVALID_INPUT, detail);
    let object = "a JSON object";
    let body: TaskGradeBody = if task {
        read_json(body, b'{', object)
    } else {
        read_json(body, b'{', object).map(|course: CourseGradeBody| course.into())
    }
    .map_err(|err| match err {
        BodyError::Shape(_) => invalid("Request body must be a JSON object.".into()),
        other => invalid(other.message().to_owned()),
    })?;
    let text = |name: &str, sent: Sent<String>| {
        let text = sent.required(
            invalid(format!("{name} is required.")),
            invalid(format!("{name} must be a string.")),
        )?;
        any_id(name, &text, INVALID_INPUT)
    };
    let student_id = text("student_id", body.student_id)?;
    let course_id = text("course_id", body.course_id)?;
    let task_id = if task {
        Some(text("task_id", body.task_id)?)
    } else {
        None
    };
    let out_of_range = || invalid("grade must be a number from -10000 to 10000.".into());
    let grade = body
        .grade
        .required(invalid("grade is required.".into()), out_of_range())?;
    if !(-MAX_GRADE..=MAX_GRADE).contains(&grade) {
        return Err(out_of_range());
    }
    let on_time = body
        .on_time
        .optional(invalid("on_time must be true or false.".into()))?
        .unwrap_or(false);
    let timestamp = |text: &String| OffsetDateTime::parse(text, &Rfc3339).is_ok();
    if !matches!(body.created_at, Sent::Absent | Sent::Null)
        && !matches!(&body.created_at, Sent::Value(text) if timestamp(text))
    {
        return Err(invalid("created_at must be an RFC 3339 timestamp.".into()));
    }
    Ok(GradePost {
        student_id,
        course_id,
        task_id,
        grade_e6: (grade * E6).round() as i64,
        on_time,
        created_at: at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_are_validated_as_the_original_accepted_them() {
        let ok = br#"{"student_id": "123", "course_id": "c-1", "grade": 92.5}"#;
        let post = parse_post(ok, false, Micros(7)).unwrap();
        assert_eq!(
            (post.grade_e6, post.on_time, post.created_at),
            (92_500_000, false, Micros(7))
        );
        assert_eq!(
            (post.student_id.as_str(), post.course_id.as_str()),
            ("123", "c-1")
        );
        let zero =
            br#"{"student_id": "abc", "course_id": "any id at all", "grade": 0, "on_time": true}"#;
        assert_eq!(parse_post(zero, false, Micros(0)).unwrap().grade_e6, 0);
        for bad in [
            &br#"{"student_id": "", "course_id": "c", "grade": 1}"#[..],
            br#"{"student_id": "a\u0007b", "course_id": "c", "grade": 1}"#,
            br#"{"student_id": "s", "course_id": "", "grade": 1}"#,
            br#"{"student_id": "s", "course_id": "c", "grade": 10000.5}"#,
            br#"{"student_id": "s", "course_id": "c", "grade": -10000.5}"#,
            br#"{"student_id": "s", "course_id": "c", "grade": "8"}"#,
            br#"{"student_id": "s", "course_id": "c", "grade": 1, "on_time": "yes"}"#,
            b"[]",
            b"nope",
        ] {
            let err = parse_post(bad, false, Micros(0)).expect_err(&String::from_utf8_lossy(bad));
            let body = format!("{err:?}");
            assert!(body.contains(INVALID_INPUT), "{body}");
        }
        let long = format!(
            r#"{{"student_id": "{}", "course_id": "c", "grade": 1}}"#,
            "s".repeat(129)
        );
        assert!(parse_post(long.as_bytes(), false, Micros(0)).is_err());
        let task = br#"{"student_id": "s", "course_id": "c", "grade": 1}"#;
        assert!(
            parse_post(task, true, Micros(0)).is_err(),
            "task_id is required on task grades"
        );
    }

    #[test]
    fn jobs_queued_in_thousandths_are_read_in_millionths() {
        let queued = |grade: &str| {
            format!(
                r#"{{"student_id": "s", "course_id": "c", "task_id": null, {grade}, "on_time": true, "created_at": 7}}"#
            )
        };
        let read = |grade: &str| serde_json::from_str::<GradePost>(&queued(grade));
        assert_eq!(read(r#""grade_e3": 92500"#).unwrap().grade_e6, 92_500_000);
        assert_eq!(read(r#""units": 1"#).unwrap().grade_e6, 1_000);
        assert_eq!(read(r#""grade_e6": 8123456"#).unwrap().grade_e6, 8_123_456);
        assert!(read(r#""grade": 8"#).is_err(), "a grade without its units");
        let post = read(r#""grade_e6": -3250000"#).unwrap();
        let again: GradePost =
            serde_json::from_str(&serde_json::to_string(&post).unwrap()).unwrap();
        assert_eq!(again, post, "what is queued now reads back the same");
    }

    #[test]
    fn checked_ids_are_letters_of_any_script_digits_and_hyphens() {
        for ok in [
            "507f1f77bcf86cd799439011",
            "abc123",
            "curso-ñandú",
            "Курс1",
            "a",
        ] {
            assert!(code("course_id", ok, "x").is_ok(), "{ok}");
        }
        for bad in [
            "",
            "invalid_id",
            "abc 123",
            "abc$123",
            "abc☺",
            &"a".repeat(51),
        ] {
            assert!(code("course_id", bad, "x").is_err(), "{bad}");
        }
    }
}
