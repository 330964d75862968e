use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use super::model::{
    self, AveragePoint, Averages, CourseFigures, GradeQueued, GradesHealth, GroupBy, OnTime,
    OnTimePoint, Series, SeriesParams, StudentCourse, StudentTaskAverage, TaskAverages, TimeRange,
};
use super::post::{self, any_id, bad, code, path_id, CourseGradeBody, TaskGradeBody};
use super::store::{decode_cursor, After, CourseGrade, Subject, TaskGrade};
use super::Grades;
use studyhall_core::error::{ApiError, Problem};
use studyhall_core::http::extract::{AppBody, AppQuery};

type Result<T> = std::result::Result<T, ApiError>;

/// The original's text for a path id it did not check but that cannot be empty.
const INVALID_IDS: &str = "Invalid course_id or task_id format";

/// Liveness, in the ClassConnect service's shape.
#[utoipa::path(get, path = "/stats/health", tag = "grades", operation_id = "grades_health",
    responses((status = 200, description = "Up", body = GradesHealth)))]
pub(crate) async fn health() -> Json<GradesHealth> {
    Json(GradesHealth { status: "OK" })
}

/// The original's queue names, which its success text quotes.
fn original_task_type(task: bool) -> &'static str {
    if task {
        "task:add_student_grade_task"
    } else {
        "task:add_student_grade"
    }
}

async fn enqueue(
    grades: &Grades,
    headers: &HeaderMap,
    body: &[u8],
    task: bool,
) -> Result<Response> {
    let sent = headers.get(post::GRADED_AT).map(HeaderValue::as_bytes);
    let at = post::graded_at(sent, grades.queue.clock().now())?;
    let post = post::parse_post(body, task, at)?;
    let job_id = if task {
        grades.queue.enqueue(&TaskGrade(post)).await?
    } else {
        grades.queue.enqueue(&CourseGrade(post)).await?
    };
    let location =
        HeaderValue::from_str(&format!("/jobs/{job_id}")).map_err(anyhow::Error::from)?;
    // The original's words, its misspelling on course grades included: clients matched
    // them. A worker takes the job at once, so the expected wait is 0.
    let queued = if task { "successfully" } else { "sucessfully" };
    let result = format!(
        "Task {} queued {queued} (Expected time to be processed: 0.00 minutes)",
        original_task_type(task)
    );
    let body = GradeQueued {
        job_id,
        result,
        status: 200,
    };
    Ok(([(header::LOCATION, location)], Json(body)).into_response())
}

/// Record a course grade (asynchronously).
#[utoipa::path(post, path = "/stats/student/grade", tag = "grades", operation_id = "grades_post_grade",
    request_body = CourseGradeBody,
    params(GradedAt),
    responses(
        (status = 200, description = "Queued; `Location` is the job", body = GradeQueued),
        (status = 400, description = "Invalid; `error` is the original's text, `detail` names the field", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub(crate) async fn post_grade(
    State(grades): State<Grades>,
    headers: HeaderMap,
    AppBody(body): AppBody,
) -> Result<Response> {
    enqueue(&grades, &headers, &body, false).await
}

/// The header that files a grade at another time than its post.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct GradedAt {
    /// File the grade at this time (RFC 3339) rather than when it is posted: for
    /// importing grades given earlier. A `created_at` in the body is ignored.
    #[param(rename = "X-Graded-At", format = DateTime)]
    x_graded_at: Option<String>,
}

/// Record a task grade (asynchronously); a later grade for the same task replaces it.
#[utoipa::path(post, path = "/stats/student/task/grade", tag = "grades", operation_id = "grades_post_task_grade",
    request_body = TaskGradeBody,
    params(GradedAt),
    responses(
        (status = 200, description = "Queued; `Location` is the job", body = GradeQueued),
        (status = 400, description = "Invalid; `error` is the original's text, `detail` names the field", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub(crate) async fn post_task_grade(
    State(grades): State<Grades>,
    headers: HeaderMap,
    AppBody(body): AppBody,
) -> Result<Response> {
    enqueue(&grades, &headers, &body, true).await
}

/// A student's course-grade average in a course, with their task figures beside it.
#[utoipa::path(get, path = "/stats/student/{student_id}/course/{course_id}", tag = "grades", operation_id = "grades_student_course",
    params(("student_id" = String, Path), ("course_id" = String, Path, min_length = 1, max_length = 50, description = "Letters of any script, digits or `-`")),
    responses(
        (status = 200, description = "Figures", body = StudentCourse),
        (status = 400, description = "Bad id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No grades", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn student_course(
    State(grades): State<Grades>,
    Path((student, course)): Path<(String, String)>,
) -> Result<Json<StudentCourse>> {
    let student = any_id("student_id", &student, "Missing student_id query parameter")?;
    let course = code(
        "course_id",
        &course,
        "Invalid course_id format (not a valid ObjectID)",
    )?;
    let total = grades
        .store
        .total(Subject::CourseStudent(&course, &student))
        .await?;
    if total.grade_count == 0 {
        let text = "No grades found for the student in the course";
        return Err(ApiError::not_found(format!("{text}."))
            .with_member("result", Value::String(text.into()))
            .with_member("error", Value::String(text.into())));
    }
    let tasks = grades
        .store
        .total(Subject::CourseStudentTasks(&course, &student))
        .await?;
    Ok(Json(StudentCourse {
        course_id: course,
        result: CourseFigures {
            assignments_completed: tasks.grade_count,
            average_grade: total.average(),
            grade_count: total.grade_count,
            on_time_percentage: tasks.on_time_percentage(),
            tbd: 0,
        },
        student_id: student,
    }))
}

/// A subject's daily tallies in the requested range, rolled up into periods and mapped
/// to the route's point shape.
async fn series<T>(
    grades: &Grades,
    subject: Subject<'_>,
    series: &Series,
    point: impl Fn(String, model::GradeTally) -> T,
) -> Result<Vec<T>> {
    let days = grades
        .store
        .days(subject, series.first_day, series.last_day)
        .await?;
    Ok(series
        .roll_up(&days)
        .into_iter()
        .map(|(period, tally)| point(period, tally))
        .collect())
}

async fn averages(
    grades: &Grades,
    subject: Subject<'_>,
    params: &SeriesParams,
) -> Result<(Vec<AveragePoint>, Series)> {
    let parsed = Series::parse(params, grades.queue.clock().now().0, Some(GroupBy::Month))?;
    let points = series(grades, subject, &parsed, |period, tally| AveragePoint {
        period,
        average_grade: tally.average(),
        grade_count: tally.grade_count,
    })
    .await?;
    Ok((points, parsed))
}

async fn on_time(
    grades: &Grades,
    subject: Subject<'_>,
    params: &SeriesParams,
) -> Result<(Vec<OnTimePoint>, TimeRange, &'static str)> {
    let parsed = Series::parse(params, grades.queue.clock().now().0, None)?;
    let points = series(grades, subject, &parsed, |period, tally| OnTimePoint {
        period,
        on_time_count: tally.on_time_count,
        total_count: tally.grade_count,
        percentage: tally.on_time_percentage(),
    })
    .await?;
    Ok((points, parsed.time_range(), parsed.group_by_name()))
}

/// A student's course-grade average per period.
#[utoipa::path(get, path = "/stats/student/{student_id}/average", tag = "grades", operation_id = "grades_student_average",
    params(("student_id" = String, Path), SeriesParams),
    responses((status = 200, description = "Course-grade average per period (an empty list when there are none)", body = Averages),
              (status = 400, description = "Bad id, date or group_by", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn student_average(
    State(grades): State<Grades>,
    Path(student): Path<String>,
    AppQuery(params): AppQuery<SeriesParams>,
) -> Result<Json<Averages>> {
    let student = path_id("student_id", &student, "Invalid student_id format")?;
    let (points, series) = averages(&grades, Subject::Student(&student), &params).await?;
    Ok(Json(Averages {
        averages: points,
        course_id: None,
        group_by: series.group_by_name(),
        student_id: Some(student),
        time_range: series.time_range(),
    }))
}

/// A course's course-grade average per period.
#[utoipa::path(get, path = "/stats/course/{course_id}/average", tag = "grades", operation_id = "grades_course_average",
    params(("course_id" = String, Path), SeriesParams),
    responses((status = 200, description = "Course-grade average per period (an empty list when there are none)", body = Averages),
              (status = 400, description = "Bad id, date or group_by", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn course_average(
    State(grades): State<Grades>,
    Path(course): Path<String>,
    AppQuery(params): AppQuery<SeriesParams>,
) -> Result<Json<Averages>> {
    let course = path_id("course_id", &course, "Invalid course_id format")?;
    let (points, series) = averages(&grades, Subject::Course(&course), &params).await?;
    Ok(Json(Averages {
        averages: points,
        course_id: Some(course),
        group_by: series.group_by_name(),
        student_id: None,
        time_range: series.time_range(),
    }))
}

/// The share of a course's task grades handed in on time, per period.
#[utoipa::path(get, path = "/stats/course/{course_id}/on_time_percentage", tag = "grades", operation_id = "grades_course_on_time",
    params(("course_id" = String, Path), SeriesParams),
    responses((status = 200, description = "On-time share of task grades per period; without group_by one `all_time` row", body = OnTime),
              (status = 400, description = "Bad id, date or group_by", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn course_on_time(
    State(grades): State<Grades>,
    Path(course): Path<String>,
    AppQuery(params): AppQuery<SeriesParams>,
) -> Result<Json<OnTime>> {
    let course = path_id("course_id", &course, "Invalid course_id format")?;
    let (points, range, group_by) =
        on_time(&grades, Subject::CourseTasks(&course), &params).await?;
    Ok(Json(OnTime {
        course_id: course,
        data: points,
        group_by,
        student_id: None,
        time_range: range,
    }))
}

/// The share of a student's task grades in a course handed in on time, per period.
#[utoipa::path(get, path = "/stats/course/{course_id}/student/{student_id}/on_time_percentage", tag = "grades", operation_id = "grades_student_on_time",
    params(("course_id" = String, Path), ("student_id" = String, Path), SeriesParams),
    responses((status = 200, description = "On-time share of the student's task grades per period; without group_by one `all_time` row", body = OnTime),
              (status = 400, description = "Bad id, date or group_by", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn student_on_time(
    State(grades): State<Grades>,
    Path((course, student)): Path<(String, String)>,
    AppQuery(params): AppQuery<SeriesParams>,
) -> Result<Json<OnTime>> {
    let course = path_id("course_id", &course, "Invalid course_id format")?;
    let student = path_id("student_id", &student, "Invalid student_id format")?;
    let (points, range, group_by) = on_time(
        &grades,
        Subject::CourseStudentTasks(&course, &student),
        &params,
    )
    .await?;
    Ok(Json(OnTime {
        course_id: course,
        data: points,
        group_by,
        student_id: Some(student),
        time_range: range,
    }))
}

/// `limit` (1–1000, default 100) and `cursor` for student lists.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// `next_cursor` from the previous page, unchanged (base64url); anything else is a 400.
    #[param(pattern = "^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
}

impl ListParams {
    fn parse(&self) -> Result<(usize, Option<After>)> {
        let limit =
            studyhall_core::page::limit(self.limit).map_err(|rule| bad("Invalid limit", rule))?;
        let after = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(cursor) => Some(
                decode_cursor(cursor)
                    .ok_or_else(|| bad("Invalid cursor", studyhall_core::page::CURSOR_RULE))?,
            ),
        };
        Ok((limit as usize, after))
    }
}

/// Every student's grade for one task, best first, with the group's average.
#[utoipa::path(get, path = "/stats/course/{course_id}/task/{task_id}/averages", tag = "grades", operation_id = "grades_task_averages",
    params(("course_id" = String, Path), ("task_id" = String, Path), ListParams),
    responses((status = 200, description = "Per-student grades, best first, and the group average (an empty list when there are none)", body = TaskAverages),
              (status = 400, description = "Bad id, limit or cursor", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn task_averages(
    State(grades): State<Grades>,
    Path((course, task)): Path<(String, String)>,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Json<TaskAverages>> {
    let course = any_id("course_id", &course, INVALID_IDS)?;
    let task = any_id("task_id", &task, INVALID_IDS)?;
    let (limit, after) = params.parse()?;
    let (page, total) = grades
        .store
        .task_students(&course, &task, after.as_ref(), limit)
        .await?;
    Ok(Json(TaskAverages {
        course_id: course,
        group_average: total.average(),
        next_cursor: page.next_cursor,
        students: page.students,
        task_id: task,
    }))
}

/// A student's task average in a course beside the other students'.
#[utoipa::path(get, path = "/stats/student/{student_id}/course/{course_id}/task/average", tag = "grades", operation_id = "grades_student_task_average",
    params(("student_id" = String, Path, min_length = 1, max_length = 50, description = "Letters of any script, digits or `-`"), ("course_id" = String, Path, min_length = 1, max_length = 50, description = "Letters of any script, digits or `-`"), ListParams),
    responses((status = 200, description = "The student's task average and the other students', best first; a `warning` when the student has none", body = StudentTaskAverage),
              (status = 400, description = "Bad id, limit or cursor", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn student_task_average(
    State(grades): State<Grades>,
    Path((student, course)): Path<(String, String)>,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Json<StudentTaskAverage>> {
    let student = code("student_id", &student, "Invalid student_id format")?;
    let course = code("course_id", &course, "Invalid course_id format")?;
    let (limit, after) = params.parse()?;
    let (mine, others) = grades
        .store
        .task_peers(&course, &student, after.as_ref(), limit)
        .await?;
    Ok(Json(StudentTaskAverage {
        course_id: course,
        next_cursor: others.next_cursor,
        other_students: others.students,
        student_average: mine.average(),
        student_id: student,
        warning: (mine.grade_count == 0).then_some("No grades found for the requested student"),
    }))
}
