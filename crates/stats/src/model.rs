//! Stats types and validation, with the seed's exact messages. Once parsed, ids are
//! canonical lowercase UUIDs and numbers are within bounds.

use axum::http::HeaderValue;
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use studyhall_auth::Caller;
use studyhall_core::error::ApiError;
use studyhall_core::http::extract::{read_json, BodyError, Sent};

/// Upper bounds that keep every sum exact in 64-bit integers.
pub const MAX_MODULES: i64 = 1_000_000;
pub const MAX_TIME_MS: i64 = 1_000_000_000_000;
/// Scores are summed in ten-thousandths of a point, exactly.
pub const E4: f64 = 10_000.0;

pub const COURSE_NOT_FOUND: &str = "session data not found for course";
pub const SESSION_NOT_FOUND: &str = "session record not found";
pub const SESSION_TAKEN: &str = "Session ID already belongs to another user or course.";

/// A session's stats as posted, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionPost {
    pub user: String,
    pub course: String,
    pub session: String,
    pub modules: i64,
    pub score: f64,
    pub time_ms: i64,
}

impl SessionPost {
    pub fn score_e4(&self) -> i64 {
        (self.score * E4).round() as i64
    }
}

/// One session, as `GET /courses/{courseId}/sessions/{sessionId}` returns it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct SessionStats {
    #[schema(format = "uuid")]
    pub session_id: String,
    pub total_modules_studied: i64,
    pub average_score: f64,
    /// Milliseconds.
    pub time_studied: i64,
}

/// Lifetime stats of a user in a course.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CourseStats {
    pub total_modules_studied: i64,
    /// Module-weighted mean of the sessions' average scores.
    pub average_score: f64,
    /// Milliseconds.
    pub time_studied: i64,
    pub session_count: i64,
}

/// A user's sessions in a course summed up, as stored: exact integer sums. (Grades
/// keep a `GradeTally` instead: grade sums and counts.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionTotals {
    pub sessions: i64,
    pub modules: i64,
    pub time_ms: i64,
    /// Σ score_e4 × modules.
    pub weighted_score: i64,
    /// Σ score_e4.
    pub score_sum: i64,
}

impl SessionTotals {
    /// What one session adds to its course's totals.
    pub fn of(modules: i64, score_e4: i64, time_ms: i64) -> SessionTotals {
        SessionTotals {
            sessions: 1,
            modules,
            time_ms,
            weighted_score: score_e4 * modules,
            score_sum: score_e4,
        }
    }

    pub fn plus(self, other: SessionTotals) -> SessionTotals {
        SessionTotals {
            sessions: self.sessions + other.sessions,
            modules: self.modules + other.modules,
            time_ms: self.time_ms + other.time_ms,
            weighted_score: self.weighted_score + other.weighted_score,
            score_sum: self.score_sum + other.score_sum,
        }
    }

    pub fn minus(self, other: SessionTotals) -> SessionTotals {
        SessionTotals {
            sessions: self.sessions - other.sessions,
            modules: self.modules - other.modules,
            time_ms: self.time_ms - other.time_ms,
            weighted_score: self.weighted_score - other.weighted_score,
            score_sum: self.score_sum - other.score_sum,
        }
    }

    /// The seed summed the sessions' averages; the mean weighted by modules is what
    /// "average score of modules across the course" means. With no modules at all,
    /// the plain mean of the sessions' averages.
    pub fn stats(&self) -> CourseStats {
        let average_e4 = if self.modules > 0 {
            self.weighted_score as f64 / self.modules as f64
        } else if self.sessions > 0 {
            self.score_sum as f64 / self.sessions as f64
        } else {
            0.0
        };
        CourseStats {
            total_modules_studied: self.modules,
            average_score: average_e4 / E4,
            time_studied: self.time_ms,
            session_count: self.sessions,
        }
    }
}

/// Collects the seed's messages; every problem is reported at once.
#[derive(Default)]
pub struct Problems(Vec<std::borrow::Cow<'static, str>>);

impl Problems {
    pub fn check<T>(&mut self, result: Result<T, &'static str>) -> Option<T> {
        result.map_err(|message| self.0.push(message.into())).ok()
    }

    /// A problem in words of its own (a body that is not acceptable JSON).
    pub fn add(&mut self, message: String) {
        self.0.push(message.into());
    }

    pub fn into_result<T>(self, value: Option<T>) -> Result<T, ApiError> {
        let messages: Vec<&str> = self.0.iter().map(|m| m.as_ref()).collect();
        match value {
            Some(value) if messages.is_empty() => Ok(value),
            _ => Err(stats_error(axum::http::StatusCode::BAD_REQUEST, &messages)),
        }
    }
}

/// A problem+json whose `errors` is the seed's array of messages.
pub fn stats_error(status: axum::http::StatusCode, messages: &[&str]) -> ApiError {
    ApiError::new(status, messages.join(" ")).with_errors(Value::Array(
        messages
            .iter()
            .map(|m| Value::String((*m).to_owned()))
            .collect(),
    ))
}

fn canonical_uuid(text: &str) -> Option<String> {
    Uuid::try_parse(text.trim())
        .ok()
        .map(|id| id.hyphenated().to_string())
}

pub fn course_id(text: &str) -> Result<String, &'static str> {
    canonical_uuid(text).ok_or("Course ID is invalid.")
}

pub fn session_id(text: &str) -> Result<String, &'static str> {
    canonical_uuid(text).ok_or("Session ID is invalid.")
}

/// The seed's words for a caller it could not read: what its POST said when no user was
/// given (its GETs said [`USER_INVALID`] for that too), and for a malformed one.
pub const USER_MISSING: &str = "User ID needs to be defined.";
pub const USER_INVALID: &str = "User ID is invalid.";
/// A gateway header sent to a deployment that does not trust one.
pub const USER_HEADER_UNTRUSTED: &str =
    "User ID from X-User-Id is not accepted here (STUDYHALL_TRUST_IDENTITY_HEADERS is false); send a bearer token.";

/// The caller: the token's user when a token was sent, otherwise `X-User-Id` while
/// headers are trusted. A user id, from a token or a header, is a UUID. The error is the
/// seed's validation message; `missing` is the one for no user at all.
pub fn caller_user(caller: &Caller, missing: &'static str) -> Result<String, &'static str> {
    match &caller.token {
        Some(user) => canonical_uuid(&user.id).ok_or(USER_INVALID),
        None if caller.headers_trusted() => header_user(caller.trusted_user_header(), missing),
        None if caller.sent_user_header() => Err(USER_HEADER_UNTRUSTED),
        None => Err(missing),
    }
}

/// The caller from the gateway's `X-User-Id` header: a UUID, as in the seed.
pub fn header_user(
    value: Option<&HeaderValue>,
    missing: &'static str,
) -> Result<String, &'static str> {
    let value = value.ok_or(missing)?;
    let text = value.to_str().map_err(|_| USER_INVALID)?;
    if text.trim().is_empty() {
        return Err(missing);
    }
    canonical_uuid(text).ok_or(USER_INVALID)
}

/// The body of `POST /courses/{courseId}`, each field as sent.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionBody {
    #[serde(default)]
    session_id: Sent<String>,
    #[serde(default)]
    total_modules_studied: Sent<Number>,
    #[serde(default)]
    average_score: Sent<Number>,
    #[serde(default)]
    time_studied: Sent<Number>,
}

/// A whole number from 0 to `max`, written as one (`5`) or with no fraction (`5.0`).
fn whole_number(number: Number, max: i64) -> Option<i64> {
    number
        .as_i64()
        .or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e18)
                .map(|f| f as i64)
        })
        .filter(|n| (0..=max).contains(n))
}

/// Validates `POST /courses/{courseId}`: path, caller and body together.
pub fn parse_post(
    course: &str,
    user: Result<String, &'static str>,
    body: &[u8],
) -> Result<SessionPost, ApiError> {
    let mut problems = Problems::default();
    let course = problems.check(course_id(course));
    let user = problems.check(user);
    let body: SessionBody = match read_json(body, b'{', "a JSON object") {
        Ok(body) => body,
        // A body that parses as JSON but breaks a rule every route keeps is named as
        // such; anything else gets the seed's words.
        Err(BodyError::Rule(message) | BodyError::Field { message, .. }) => {
            problems.add(message);
            return problems.into_result(None);
        }
        Err(BodyError::Shape(_) | BodyError::Syntax(_)) => {
            problems.check::<()>(Err("Request body must be a JSON object."));
            return problems.into_result(None);
        }
    };
    let session = problems.check(
        body.session_id
            .required("Session ID needs to be defined.", "Session ID is invalid.")
            .and_then(|text| session_id(&text)),
    );
    let modules = problems.check(
        body.total_modules_studied
            .required(
                "Total modules studied not defined.",
                "Total modules studied invalid.",
            )
            .and_then(|n| whole_number(n, MAX_MODULES).ok_or("Total modules studied invalid.")),
    );
    let score = problems.check(
        body.average_score
            .required("Average Score not defined.", "Average Score invalid.")
            .and_then(|n| {
                n.as_f64()
                    .filter(|s| s.is_finite() && (0.0..=100.0).contains(s))
                    .ok_or("Average Score invalid.")
            }),
    );
    let time_ms = problems.check(
        body.time_studied
            .required("Time studied not defined.", "Time studied invalid.")
            .and_then(|n| whole_number(n, MAX_TIME_MS).ok_or("Time studied invalid.")),
    );
    let post = match (user, course, session, modules, score, time_ms) {
        (Some(user), Some(course), Some(session), Some(modules), Some(score), Some(time_ms)) => {
            Some(SessionPost {
                user,
                course,
                session,
                modules,
                score,
                time_ms,
            })
        }
        _ => None,
    };
    problems.into_result(post)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const USER: &str = "9c1b2f8e-6d0a-4a2b-8a57-0b7b0e5d8f11";
    const COURSE: &str = "2f6a4f2e-3b1c-4d5e-9f70-1a2b3c4d5e6f";

    fn user_header(user: Option<&str>) -> Option<HeaderValue> {
        user.map(|user| user.parse().unwrap())
    }

    fn messages(err: ApiError) -> Vec<String> {
        let ApiError::Refused {
            errors: Some(Value::Array(errors)),
            ..
        } = err
        else {
            panic!("{err:?}")
        };
        errors
            .into_iter()
            .map(|e| e.as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_valid_post_is_canonicalised() {
        let body = json!({"sessionId": "A1B2C3D4-0000-4000-8000-000000000001", "totalModulesStudied": 30, "averageScore": 92.01, "timeStudied": 1000});
        let post = parse_post(
            &COURSE.to_uppercase(),
            header_user(user_header(Some(USER)).as_ref(), USER_MISSING),
            body.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(post.course, COURSE);
        assert_eq!(post.session, "a1b2c3d4-0000-4000-8000-000000000001");
        assert_eq!(
            (post.modules, post.time_ms, post.score_e4()),
            (30, 1000, 920_100)
        );
    }

    #[test]
    fn every_problem_is_reported_together_in_the_seeds_words() {
        let err = parse_post("nope", header_user(None, USER_MISSING), b"{}").unwrap_err();
        assert_eq!(
            messages(err),
            [
                "Course ID is invalid.",
                "User ID needs to be defined.",
                "Session ID needs to be defined.",
                "Total modules studied not defined.",
                "Average Score not defined.",
                "Time studied not defined.",
            ]
        );
        let body = json!({"sessionId": "x", "totalModulesStudied": -1, "averageScore": 100.5, "timeStudied": 1.5});
        let err = parse_post(
            COURSE,
            header_user(user_header(Some("bob")).as_ref(), USER_MISSING),
            body.to_string().as_bytes(),
        )
        .unwrap_err();
        assert_eq!(
            messages(err),
            [
                "User ID is invalid.",
                "Session ID is invalid.",
                "Total modules studied invalid.",
                "Average Score invalid.",
                "Time studied invalid.",
            ]
        );
    }

    #[test]
    fn wrong_types_and_non_objects_are_invalid_not_crashes() {
        let body = json!({"sessionId": 5, "totalModulesStudied": "30", "averageScore": "high", "timeStudied": [1]});
        let err = parse_post(
            COURSE,
            header_user(user_header(Some(USER)).as_ref(), USER_MISSING),
            body.to_string().as_bytes(),
        )
        .unwrap_err();
        assert_eq!(messages(err).len(), 4);
        for raw in [&b"not json"[..], b"[1]", b"", b"null"] {
            let err = parse_post(
                COURSE,
                header_user(user_header(Some(USER)).as_ref(), USER_MISSING),
                raw,
            )
            .unwrap_err();
            assert_eq!(messages(err), ["Request body must be a JSON object."]);
        }
    }

    #[test]
    fn the_average_is_weighted_by_modules_and_falls_back_to_the_plain_mean() {
        let totals = SessionTotals::of(30, 900_000, 10).minus(SessionTotals::default());
        let both = SessionTotals {
            sessions: 2,
            modules: 40,
            time_ms: 20,
            weighted_score: totals.weighted_score + 10 * 500_000,
            score_sum: 1_400_000,
        };
        assert_eq!(both.stats().average_score, 80.0);
        let no_modules = SessionTotals {
            sessions: 2,
            modules: 0,
            time_ms: 0,
            weighted_score: 0,
            score_sum: 1_400_000,
        };
        assert_eq!(no_modules.stats().average_score, 70.0);
    }
}
