use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::store::{Deletion, Job, JobState, Queue, Retried};
use studyhall_auth::Admin;
use studyhall_core::error::{ApiError, Problem};
use studyhall_core::http::extract::AppQuery;
use studyhall_core::page;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// queued, running, succeeded, failed or dead
    #[param(pattern = "^(queued|running|succeeded|failed|dead)?$")]
    pub state: Option<String>,
    /// 1 to 1000; default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// `next_cursor` from the previous page, unchanged (base64url); anything else is a 400.
    #[param(pattern = "^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobPage {
    pub jobs: Vec<Job>,
    pub next_cursor: Option<String>,
}

fn not_found() -> ApiError {
    ApiError::not_found("No such job.")
}

/// One job: its state, attempts and last error.
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs", operation_id = "jobs_get", params(("id" = String, Path)),
    security(("admin_token" = [])),
    responses((status = 200, description = "The job", body = Job),
              (status = 401, description = "No admin token", body = Problem, content_type = "application/problem+json"),
              (status = 403, description = "Wrong admin token, or the operator routes are disabled", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn get(
    State(queue): State<Queue>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    queue.get(&id).await?.map(Json).ok_or_else(not_found)
}

/// Jobs, newest first; `next_cursor` pages on.
#[utoipa::path(get, path = "/jobs", tag = "jobs", operation_id = "jobs_list", params(ListParams),
    security(("admin_token" = [])),
    responses((status = 200, description = "A page of jobs", body = JobPage),
              (status = 401, description = "No admin token", body = Problem, content_type = "application/problem+json"),
              (status = 403, description = "Wrong admin token, or the operator routes are disabled", body = Problem, content_type = "application/problem+json"),
              (status = 400, description = "Bad state, limit or cursor", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn list(
    State(queue): State<Queue>,
    _admin: Admin,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Json<JobPage>, ApiError> {
    let state = match params.state.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            serde_json::from_value::<JobState>(serde_json::Value::String(text.to_owned()))
                .map_err(|_| {
                    ApiError::bad_request(
                        "state must be queued, running, succeeded, failed or dead.",
                    )
                })?,
        ),
    };
    let limit = page::limit(params.limit).map_err(ApiError::bad_request)?;
    let after = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(cursor) => {
            Some(decode_cursor(cursor).ok_or_else(|| ApiError::bad_request(page::CURSOR_RULE))?)
        }
    };
    let rows = queue.list(state, after, i64::from(limit) + 1).await?;
    let (jobs, next_cursor) = page::page(rows, limit as usize, |job| {
        page::encode_cursor(&[&job.created_micros.0.to_string(), &job.id])
    });
    Ok(Json(JobPage { jobs, next_cursor }))
}

fn decode_cursor(cursor: &str) -> Option<(i64, String)> {
    let [time, id] = page::decode_cursor(cursor)?;
    Some((time.parse().ok()?, id))
}

/// Requeue a dead job with fresh attempts.
#[utoipa::path(post, path = "/jobs/{id}/retry", tag = "jobs", operation_id = "jobs_retry", params(("id" = String, Path)),
    security(("admin_token" = [])),
    responses((status = 200, description = "Queued again", body = Job),
              (status = 401, description = "No admin token", body = Problem, content_type = "application/problem+json"),
              (status = 403, description = "Wrong admin token, or the operator routes are disabled", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "The job is not dead", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn retry(
    State(queue): State<Queue>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    match queue.retry(&id, studyhall_log::Actor::operator()).await? {
        Retried::Queued(job) => Ok(Json(job)),
        Retried::NotFound => Err(not_found()),
        Retried::NotDead(state) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "Only dead jobs can be retried; this one is {}.",
                state.as_str()
            ),
        )),
    }
}

/// Delete a job no worker holds (queued, failed, dead or succeeded).
#[utoipa::path(delete, path = "/jobs/{id}", tag = "jobs", operation_id = "jobs_delete", params(("id" = String, Path)),
    security(("admin_token" = [])),
    responses((status = 204, description = "Deleted"),
              (status = 401, description = "No admin token", body = Problem, content_type = "application/problem+json"),
              (status = 403, description = "Wrong admin token, or the operator routes are disabled", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "A worker is running the job", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn delete(
    State(queue): State<Queue>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match queue.delete(&id, studyhall_log::Actor::operator()).await? {
        Deletion::Deleted => Ok(StatusCode::NO_CONTENT),
        Deletion::NotFound => Err(not_found()),
        Deletion::Running => Err(ApiError::new(
            StatusCode::CONFLICT,
            "A worker is running this job; delete it once it has finished or failed.",
        )),
    }
}
