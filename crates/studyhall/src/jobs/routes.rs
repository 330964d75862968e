use axum::extract::{Path, State};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::store::{Job, JobState, Queue};
use crate::auth::Admin;
use crate::error::{ApiError, Problem};
use crate::http::extract::AppQuery;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// queued, running, succeeded, failed or dead
    #[param(pattern = "^(queued|running|succeeded|failed|dead)?$")]
    pub state: Option<String>,
    /// 1 to 1000; default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    pub next_cursor: Option<String>,
}

fn not_found() -> ApiError {
    ApiError::not_found("No such job.")
}

#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs", operation_id = "jobs_get", params(("id" = String, Path)),
    security(("admin_token" = [])),
    responses((status = 200, description = "The job", body = Job),
              (status = 401, description = "No admin token", body = Problem, content_type = "application/problem+json"),
              (status = 403, description = "Wrong admin token, or the operator routes are disabled", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json")))]
pub async fn get(
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
pub async fn list(
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
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "limit must be an integer from 1 to 1000.",
        ));
    }
    let after = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(cursor) => Some(
            decode_cursor(cursor)
                .ok_or_else(|| ApiError::bad_request("cursor is not one this service issued."))?,
        ),
    };
    let mut jobs = queue.list(state, after, limit + 1).await?;
    let next_cursor = if jobs.len() > limit as usize {
        jobs.truncate(limit as usize);
        jobs.last()
            .map(|job| URL_SAFE_NO_PAD.encode(format!("{}:{}", job.created_micros, job.id)))
    } else {
        None
    };
    Ok(Json(JobPage { jobs, next_cursor }))
}

fn decode_cursor(cursor: &str) -> Option<(i64, String)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let (time, id) = text.split_once(':')?;
    Some((time.parse().ok()?, id.to_owned()))
}

/// Requeue a dead job with fresh attempts.
#[utoipa::path(post, path = "/jobs/{id}/retry", tag = "jobs", operation_id = "jobs_retry", params(("id" = String, Path)),
    security(("admin_token" = [])),
    responses((status = 200, description = "Queued again", body = Job),
              (status = 401, description = "No admin token", body = Problem, content_type = "application/problem+json"),
              (status = 403, description = "Wrong admin token, or the operator routes are disabled", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "The job is not dead", body = Problem, content_type = "application/problem+json")))]
pub async fn retry(
    State(queue): State<Queue>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    queue.retry(&id).await?.map(Json).ok_or_else(not_found)
}
