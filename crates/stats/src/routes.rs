use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::model::{
    caller_user, course_id, parse_post, session_id, stats_error, CourseStats, Problems,
    SessionStats, COURSE_NOT_FOUND, SESSION_NOT_FOUND, SESSION_TAKEN, USER_INVALID, USER_MISSING,
};
use super::store::Recorded;
use super::Stats;
use studyhall_auth::Caller;
use studyhall_core::error::{ApiError, Problem};
use studyhall_core::http::extract::AppBody;

/// Persist a session study event.
///
/// Re-posting a session id of the same user and course replaces that session's stats
/// (and its share of the course aggregate) and answers 201 again.
#[utoipa::path(post, path = "/courses/{courseId}", tag = "stats", operation_id = "stats_post_session", security((), ("bearer" = [])),
    params(
        ("courseId" = String, Path, format = "uuid", description = "Identifies the course"),
        ("X-User-Id" = String, Header, format = "uuid", description = "Identifies the user"),
    ),
    request_body(content = Object, description = "`{sessionId: uuid, totalModulesStudied: integer ≥ 0, averageScore: 0–100, timeStudied: integer ms ≥ 0}`"),
    responses(
        (status = 201, description = "Stored", body = SessionStats),
        (status = 400, description = "Invalid input; `errors` lists every problem in the seed's words", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The session id belongs to another user or course", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(course = %course))]
pub(crate) async fn post_session(
    State(stats): State<Stats>,
    caller: Caller,
    Path(course): Path<String>,
    AppBody(body): AppBody,
) -> Result<(StatusCode, Json<SessionStats>), ApiError> {
    let user = caller_user(&caller, USER_MISSING);
    let post = parse_post(&course, user, &body)?;
    let stored = SessionStats {
        session_id: post.session.clone(),
        total_modules_studied: post.modules,
        average_score: post.score,
        time_studied: post.time_ms,
    };
    match stats.store.record(post).await? {
        Recorded::Stored => Ok((StatusCode::CREATED, Json(stored))),
        Recorded::Taken => Err(stats_error(StatusCode::CONFLICT, &[SESSION_TAKEN])),
    }
}

/// Fetch the user's lifetime statistics for a course.
#[utoipa::path(get, path = "/courses/{courseId}", tag = "stats", operation_id = "stats_get_course", security((), ("bearer" = [])),
    params(
        ("courseId" = String, Path, format = "uuid", description = "Identifies the course"),
        ("X-User-Id" = String, Header, format = "uuid", description = "Identifies the user"),
    ),
    responses(
        (status = 200, description = "Course lifetime stats", body = CourseStats),
        (status = 400, description = "Invalid course or user id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No session of this user in this course", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(course = %course))]
pub(crate) async fn get_course(
    State(stats): State<Stats>,
    caller: Caller,
    Path(course): Path<String>,
) -> Result<Json<CourseStats>, ApiError> {
    let mut problems = Problems::default();
    let course = problems.check(course_id(&course));
    let user = problems.check(caller_user(&caller, USER_INVALID));
    let (course, user) = problems.into_result(course.zip(user))?;
    match stats.store.totals(&user, &course).await? {
        Some(totals) => Ok(Json(totals.stats())),
        None => Err(stats_error(StatusCode::NOT_FOUND, &[COURSE_NOT_FOUND])),
    }
}

/// Fetch a single study session.
#[utoipa::path(get, path = "/courses/{courseId}/sessions/{sessionId}", tag = "stats", operation_id = "stats_get_session", security((), ("bearer" = [])),
    params(
        ("courseId" = String, Path, format = "uuid", description = "Identifies the course"),
        ("sessionId" = String, Path, format = "uuid", description = "Identifies the study session"),
        ("X-User-Id" = String, Header, format = "uuid", description = "Identifies the user"),
    ),
    responses(
        (status = 200, description = "Study session stats", body = SessionStats),
        (status = 400, description = "Invalid course, session or user id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session for this user and course", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(course = %course, session = %session))]
pub(crate) async fn get_session(
    State(stats): State<Stats>,
    caller: Caller,
    Path((course, session)): Path<(String, String)>,
) -> Result<Json<SessionStats>, ApiError> {
    let mut problems = Problems::default();
    let course = problems.check(course_id(&course));
    let user = problems.check(caller_user(&caller, USER_INVALID));
    let session = problems.check(session_id(&session));
    let (course, (user, session)) = problems.into_result(course.zip(user.zip(session)))?;
    match stats.store.session(&user, &course, &session).await? {
        Some(stats) => Ok(Json(stats)),
        None => Err(stats_error(StatusCode::NOT_FOUND, &[SESSION_NOT_FOUND])),
    }
}
