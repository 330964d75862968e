use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;

use super::model::{
    self, bad, no_data, AveragePoint, CourseGradeBody, OnTimePoint, Series, SeriesParams,
    StudentAverage, TaskGradeBody, TimeRange,
};
use super::store::{decode_cursor, encode_cursor, Subject, COURSE_GRADE, TASK_GRADE};
use super::Grades;
use crate::clock::now_micros;
use crate::error::{ApiError, Problem};
use crate::http::extract::AppQuery;

type Result<T> = std::result::Result<T, ApiError>;

#[utoipa::path(get, path = "/stats/health", tag = "grades", operation_id = "grades_health",
    responses((status = 200, description = "Up", body = Object, example = json!({"status": "ok"}))))]
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn enqueue(grades: &Grades, body: &[u8], task: bool) -> Result<Response> {
    let post = model::parse_post(body, task, now_micros())?;
    let kind = if task { TASK_GRADE } else { COURSE_GRADE };
    let payload = serde_json::to_value(&post).map_err(anyhow::Error::from)?;
    let job_id = grades.queue.enqueue(kind, &payload).await?;
    let location =
        HeaderValue::from_str(&format!("/jobs/{job_id}")).map_err(anyhow::Error::from)?;
    let body = json!({"result": "Grade queued for processing", "status": 202, "job_id": job_id});
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

/// Record a course grade (asynchronously).
#[utoipa::path(post, path = "/stats/student/grade", tag = "grades", operation_id = "grades_post_grade",
    request_body = CourseGradeBody,
    responses(
        (status = 202, description = "Queued; `Location` is the job", body = Object, example = json!({"result": "Grade queued for processing", "status": 202, "job_id": "0191…"})),
        (status = 400, description = "Invalid; `result` names the field", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn post_grade(State(grades): State<Grades>, body: Bytes) -> Result<Response> {
    enqueue(&grades, &body, false).await
}

/// Record a task grade (asynchronously); a later grade for the same task replaces it.
#[utoipa::path(post, path = "/stats/student/task/grade", tag = "grades", operation_id = "grades_post_task_grade",
    request_body = TaskGradeBody,
    responses(
        (status = 202, description = "Queued; `Location` is the job", body = Object),
        (status = 400, description = "Invalid; `result` names the field", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn post_task_grade(State(grades): State<Grades>, body: Bytes) -> Result<Response> {
    enqueue(&grades, &body, true).await
}

/// A student's figures in a course: all grades' average, task grades counted, on-time share.
#[utoipa::path(get, path = "/stats/student/{student_id}/course/{course_id}", tag = "grades", operation_id = "grades_student_course",
    params(("student_id" = String, Path, format = Uuid), ("course_id" = String, Path, pattern = "^[A-Za-z0-9-]{1,50}$")),
    responses(
        (status = 200, description = "Figures", body = Object, example = json!({"student_id": "…", "course_id": "c1", "average_grade": 7.5, "assignments_completed": 3, "on_time_percentage": 75.0})),
        (status = 400, description = "Bad id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No grades", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn student_course(
    State(grades): State<Grades>,
    Path((student, course)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let (student, course) = (
        model::student_id(&student)?,
        model::code("course_id", &course)?,
    );
    let days = grades
        .store
        .days(Subject::CourseStudent(&course, &student), None, i64::MAX)
        .await?
        .ok_or_else(|| no_data("student in this course"))?;
    let mut total = model::Tally::default();
    for (_, tally) in &days {
        total.add(*tally);
    }
    Ok(Json(json!({
        "student_id": student, "course_id": course, "average_grade": total.average(),
        "assignments_completed": total.task_count, "on_time_percentage": total.on_time_percentage(),
    })))
}

/// A subject's daily tallies in the requested range, rolled up into periods and mapped
/// to the route's point shape.
async fn series<T>(
    grades: &Grades,
    subject: Subject<'_>,
    params: &SeriesParams,
    what: &str,
    point: impl Fn(String, model::Tally) -> T,
) -> Result<(Vec<T>, TimeRange, &'static str)> {
    let series = Series::parse(params, now_micros())?;
    let days = grades
        .store
        .days(subject, series.first_day, series.last_day)
        .await?
        .ok_or_else(|| no_data(what))?;
    let points = series
        .roll_up(&days)
        .into_iter()
        .map(|(period, tally)| point(period, tally))
        .collect();
    Ok((points, series.time_range(), series.group_by.as_str()))
}

async fn averages(
    grades: &Grades,
    subject: Subject<'_>,
    params: &SeriesParams,
    what: &str,
) -> Result<(Vec<AveragePoint>, TimeRange, &'static str)> {
    series(grades, subject, params, what, |period, tally| {
        AveragePoint {
            period,
            average_grade: tally.average(),
            grade_count: tally.grade_count,
        }
    })
    .await
}

async fn on_time(
    grades: &Grades,
    subject: Subject<'_>,
    params: &SeriesParams,
    what: &str,
) -> Result<(Vec<OnTimePoint>, TimeRange, &'static str)> {
    series(grades, subject, params, what, |period, tally| OnTimePoint {
        period,
        on_time_count: tally.on_time_count,
        total_count: tally.grade_count,
        percentage: tally.on_time_percentage(),
    })
    .await
}

#[utoipa::path(get, path = "/stats/student/{student_id}/average", tag = "grades", operation_id = "grades_student_average",
    params(("student_id" = String, Path, format = Uuid), SeriesParams),
    responses((status = 200, description = "Average per period", body = Object),
              (status = 400, description = "Bad id, date or group_by", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "No grades", body = Problem, content_type = "application/problem+json")))]
pub async fn student_average(
    State(grades): State<Grades>,
    Path(student): Path<String>,
    AppQuery(params): AppQuery<SeriesParams>,
) -> Result<Json<Value>> {
    let student = model::student_id(&student)?;
    let (points, range, group_by) =
        averages(&grades, Subject::Student(&student), &params, "student").await?;
    Ok(Json(
        json!({"student_id": student, "averages": points, "time_range": range, "group_by": group_by}),
    ))
}

#[utoipa::path(get, path = "/stats/course/{course_id}/average", tag = "grades", operation_id = "grades_course_average",
    params(("course_id" = String, Path, pattern = "^[A-Za-z0-9-]{1,50}$"), SeriesParams),
    responses((status = 200, description = "Average per period", body = Object),
              (status = 400, description = "Bad id, date or group_by", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "No grades", body = Problem, content_type = "application/problem+json")))]
pub async fn course_average(
    State(grades): State<Grades>,
    Path(course): Path<String>,
    AppQuery(params): AppQuery<SeriesParams>,
) -> Result<Json<Value>> {
    let course = model::code("course_id", &course)?;
    let (points, range, group_by) =
        averages(&grades, Subject::Course(&course), &params, "course").await?;
    Ok(Json(
        json!({"course_id": course, "averages": points, "time_range": range, "group_by": group_by}),
    ))
}

#[utoipa::path(get, path = "/stats/course/{course_id}/on_time_percentage", tag = "grades", operation_id = "grades_course_on_time",
    params(("course_id" = String, Path, pattern = "^[A-Za-z0-9-]{1,50}$"), SeriesParams),
    responses((status = 200, description = "On-time share per period", body = Object),
              (status = 400, description = "Bad id, date or group_by", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "No grades", body = Problem, content_type = "application/problem+json")))]
pub async fn course_on_time(
    State(grades): State<Grades>,
    Path(course): Path<String>,
    AppQuery(params): AppQuery<SeriesParams>,
) -> Result<Json<Value>> {
    let course = model::code("course_id", &course)?;
    let (points, range, group_by) =
        on_time(&grades, Subject::Course(&course), &params, "course").await?;
    Ok(Json(
        json!({"course_id": course, "data": points, "time_range": range, "group_by": group_by}),
    ))
}

#[utoipa::path(get, path = "/stats/course/{course_id}/student/{student_id}/on_time_percentage", tag = "grades", operation_id = "grades_student_on_time",
    params(("course_id" = String, Path, pattern = "^[A-Za-z0-9-]{1,50}$"), ("student_id" = String, Path, format = Uuid), SeriesParams),
    responses((status = 200, description = "On-time share per period", body = Object),
              (status = 400, description = "Bad id, date or group_by", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "No grades", body = Problem, content_type = "application/problem+json")))]
pub async fn student_on_time(
    State(grades): State<Grades>,
    Path((course, student)): Path<(String, String)>,
    AppQuery(params): AppQuery<SeriesParams>,
) -> Result<Json<Value>> {
    let (course, student) = (
        model::code("course_id", &course)?,
        model::student_id(&student)?,
    );
    let (points, range, group_by) = on_time(
        &grades,
        Subject::CourseStudent(&course, &student),
        &params,
        "student in this course",
    )
    .await?;
    Ok(Json(
        json!({"course_id": course, "student_id": student, "data": points, "time_range": range, "group_by": group_by}),
    ))
}

/// `limit` (1–1000, default 100) and `cursor` for student lists.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

impl ListParams {
    fn parse(&self) -> Result<(i64, String)> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(bad("limit must be an integer from 1 to 1000."));
        }
        let after = match self.cursor.as_deref() {
            None | Some("") => String::new(),
            Some(cursor) => decode_cursor(cursor)
                .ok_or_else(|| bad("cursor is not one this service issued."))?,
        };
        Ok((limit, after))
    }
}

fn next_cursor(students: &mut Vec<StudentAverage>, limit: i64) -> Option<String> {
    if students.len() > limit as usize {
        students.truncate(limit as usize);
        students.last().map(|s| encode_cursor(&s.student_id))
    } else {
        None
    }
}

#[utoipa::path(get, path = "/stats/course/{course_id}/task/{task_id}/averages", tag = "grades", operation_id = "grades_task_averages",
    params(("course_id" = String, Path, pattern = "^[A-Za-z0-9-]{1,50}$"), ("task_id" = String, Path, pattern = "^[A-Za-z0-9-]{1,50}$"), ListParams),
    responses((status = 200, description = "Per-student grades and the group average", body = Object),
              (status = 400, description = "Bad id, limit or cursor", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "No grades for the task", body = Problem, content_type = "application/problem+json")))]
pub async fn task_averages(
    State(grades): State<Grades>,
    Path((course, task)): Path<(String, String)>,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Json<Value>> {
    let (course, task) = (
        model::code("course_id", &course)?,
        model::code("task_id", &task)?,
    );
    let (limit, after) = params.parse()?;
    let (mut students, total) = grades
        .store
        .task_students(&course, &task, &after, limit + 1)
        .await?;
    if total.grade_count == 0 {
        return Err(no_data("task"));
    }
    let next = next_cursor(&mut students, limit);
    Ok(Json(
        json!({"course_id": course, "task_id": task, "group_average": total.average(), "students": students, "next_cursor": next}),
    ))
}

#[utoipa::path(get, path = "/stats/student/{student_id}/course/{course_id}/task/average", tag = "grades", operation_id = "grades_student_task_average",
    params(("student_id" = String, Path, format = Uuid), ("course_id" = String, Path, pattern = "^[A-Za-z0-9-]{1,50}$"), ListParams),
    responses((status = 200, description = "The student's task average and the other students'", body = Object),
              (status = 400, description = "Bad id, limit or cursor", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "The student has no task grades in the course", body = Problem, content_type = "application/problem+json")))]
pub async fn student_task_average(
    State(grades): State<Grades>,
    Path((student, course)): Path<(String, String)>,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Json<Value>> {
    let (student, course) = (
        model::student_id(&student)?,
        model::code("course_id", &course)?,
    );
    let (limit, after) = params.parse()?;
    let (mine, mut others) = grades
        .store
        .task_peers(&course, &student, &after, limit + 1)
        .await?;
    if mine.grade_count == 0 {
        return Err(no_data("student's tasks in this course"));
    }
    let next = next_cursor(&mut others, limit);
    Ok(Json(
        json!({"student_id": student, "course_id": course, "student_average": mine.average(), "other_students": others, "next_cursor": next}),
    ))
}
