//! Jobs: counts by kind and state, lists filtered by state and kind and searched by
//! payload and error text, a job's every attempt, retry and delete, retrying every
//! dead job a filter matches (the number shown before confirming), pausing a kind,
//! dead jobs grouped by error, and each kind's throughput and timings by minute.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use crate::admin::{self, JobDetail, JobFilter, MinuteCount};
use crate::Queue;
use crate::{Deletion, Hastened, JobState, Retried};
use studyhall_core::clock::{now_micros, Micros};
use studyhall_ui::Change;
use studyhall_ui::ConsolePage;
use studyhall_ui::{chart, layout, Failure, Role, Session};

/// The jobs pages of the console, over the queue.
pub fn page(queue: Queue) -> ConsolePage {
    let routes = axum::Router::new()
        .route("/console/jobs", get(list))
        .route(
            "/console/jobs/retry-dead",
            get(confirm_bulk_retry).post(bulk_retry),
        )
        .route("/console/jobs/kinds/{kind}/{action}", post(pause_or_resume))
        .route("/console/jobs/{id}", get(detail))
        .route("/console/jobs/{id}/{action}", post(job_action))
        .with_state(queue);
    ConsolePage {
        path: "/console/jobs",
        title: "Jobs",
        routes,
    }
}

const PAGE_SIZE: i64 = 50;

/// The list's query, as sent.
#[derive(Debug, Default, Deserialize)]
struct ListParams {
    state: Option<String>,
    kind: Option<String>,
    q: Option<String>,
    before: Option<String>,
    done: Option<String>,
}

impl ListParams {
    fn filter(&self) -> Result<JobFilter, Failure> {
        let state = match self.state.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => Some(JobState::from_name(name).ok_or_else(|| {
                Failure::bad_request(format!(
                    "`{name}` is not a job state: use queued, running, succeeded, failed or dead."
                ))
            })?),
        };
        Ok(JobFilter {
            state,
            kind: layout::field(self.kind.as_deref(), "kind")?,
            text: search(self.q.as_deref())?,
        })
    }

    fn before(&self) -> Result<Option<(i64, String)>, Failure> {
        let Some(cursor) = self.before.as_deref().filter(|cursor| !cursor.is_empty()) else {
            return Ok(None);
        };
        let [time, id] = studyhall_core::page::decode_cursor::<2>(cursor).ok_or_else(|| {
            Failure::bad_request("That page link is broken; start from the first page.")
        })?;
        let time = time.parse().map_err(|_| {
            Failure::bad_request("That page link is broken; start from the first page.")
        })?;
        Ok(Some((time, id)))
    }
}

/// The query string of a filter (and more pairs), for links.
fn query(filter: &JobFilter, more: &[(&str, &str)]) -> String {
    let mut pairs = url::form_urlencoded::Serializer::new(String::new());
    if let Some(state) = filter.state {
        pairs.append_pair("state", state.as_str());
    }
    if let Some(kind) = &filter.kind {
        pairs.append_pair("kind", kind);
    }
    if let Some(text) = &filter.text {
        pairs.append_pair("q", text);
    }
    for (name, value) in more {
        pairs.append_pair(name, value);
    }
    pairs.finish()
}

fn state_badge(state: &str) -> Markup {
    html! { span class={"badge state-" (state)} { (state) } }
}

async fn list(
    State(queue): State<Queue>,
    session: Session,
    Query(params): Query<ListParams>,
) -> Result<Response, Failure> {
    // A filter the operator got wrong (a search too short, a state misspelt) is a 400
    // that is still the jobs page: it says what was wrong and lists every job.
    let (filter, refused) = match params.filter() {
        Ok(filter) => (filter, None),
        Err(failure) => match failure.refusal() {
            Some(refusal) => {
                let every = JobFilter {
                    state: None,
                    kind: None,
                    text: None,
                };
                (every, Some(refusal.to_owned()))
            }
            None => return Err(failure),
        },
    };
    let before = params.before()?;
    let (counts, succeeded) = queue.state_counts().await?;
    let paused = queue.paused().await?;
    let mut jobs = queue.search(&filter, before.clone(), PAGE_SIZE + 1).await?;
    let more = jobs.len() as i64 > PAGE_SIZE;
    jobs.truncate(PAGE_SIZE as usize);
    let next = more
        .then(|| jobs.last())
        .flatten()
        .map(|job| studyhall_core::page::encode_cursor(&[&job.created_at.0.to_string(), &job.id]));
    let groups = queue.dead_groups(20).await?;
    let minutes = queue
        .minutes(now_micros().div_euclid(60_000_000) - 59)
        .await?;
    let kinds = kinds(&counts, &minutes, &paused);
    let dead_matching = filter.state.is_none_or(|state| state == JobState::Dead);
    let status = if refused.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = layout::page(
        "Jobs",
        &session,
        "/console/jobs",
        html! {
            (layout::notice(params.done.as_deref()))
            @if let Some(refused) = &refused {
                p.notice.error role="alert" { (refused) " Showing every job instead." }
            }
            section.card {
                h2 { "Kinds" }
                div.scroll {
                    table {
                        thead { tr {
                            th { "Kind" } th.num { "Queued" } th.num { "Running" } th.num { "Failed" } th.num { "Dead" }
                            th.num { "Succeeded (1 h)" } th.num { "Error rate (1 h)" } th { "Workers" }
                        } }
                        tbody {
                            @for (kind, row) in &kinds {
                                tr {
                                    td { a href={"/console/jobs?kind=" (layout::urlencoded(kind))} { (kind) } }
                                    @for state in ["queued", "running", "failed", "dead"] {
                                        td.num { (row.states.get(state).copied().unwrap_or(0)) }
                                    }
                                    td.num { (row.succeeded_hour) }
                                    td.num.bad[row.failed_hour > 0] { (error_rate(row)) }
                                    td {
                                        @if let Some((by, at)) = &row.paused {
                                            span.badge.warn title={"paused by " (by) " at " (layout::at(*at))} { "paused" } " "
                                            (layout::action_button(&session, &format!("/console/jobs/kinds/{}/resume", layout::urlencoded(kind)), "Resume", None))
                                        } @else {
                                            (layout::action_button(&session, &format!("/console/jobs/kinds/{}/pause", layout::urlencoded(kind)), "Pause", Some("Workers will claim no job of this kind until it is resumed. Pause?")))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                p.muted { "Succeeded over the last 24 hours: " (succeeded) "." }
            }
            section.card {
                h2 { "Find jobs" }
                form.filters method="get" action="/console/jobs" {
                    label { "State"
                        select name="state" {
                            option value="" selected[filter.state.is_none()] { "any" }
                            @for state in ["queued", "running", "succeeded", "failed", "dead"] {
                                option value=(state) selected[filter.state.map(JobState::as_str) == Some(state)] { (state) }
                            }
                        }
                    }
                    label { "Kind" input type="text" name="kind" value=[filter.kind.as_deref()] list="kinds"; }
                    datalist #kinds { @for kind in kinds.keys() { option value=(kind) {} } }
                    label { "Payload or error contains" input type="search" name="q" value=[filter.text.as_deref()]; }
                    button type="submit" { "Search" }
                    a href="/console/jobs" { "Clear" }
                }
                @if dead_matching {
                    p { a href={"/console/jobs/retry-dead?" (query(&filter.dead(), &[]))} { "Retry every dead job matching this filter…" } }
                }
                (job_table(&jobs))
                div.pager {
                    @if before.is_some() { a href={"/console/jobs?" (query(&filter, &[]))} { "First page" } }
                    @if let Some(next) = &next { a href={"/console/jobs?" (query(&filter, &[("before", next)]))} { "Older jobs" } }
                }
            }
            section.card {
                h2 { "Dead jobs by error" }
                @if groups.is_empty() {
                    p.muted { "No dead jobs." }
                } @else {
                    div.scroll {
                        table {
                            thead { tr { th { "Kind" } th { "Error" } th.num { "Jobs" } th { "Last" } th {} } }
                            tbody {
                                @for group in &groups {
                                    @let text = Some(search_text(&group.error)).filter(|text| text.chars().count() >= admin::MIN_TEXT);
                                    @let filter = JobFilter { state: Some(JobState::Dead), kind: Some(group.kind.clone()), text };
                                    tr {
                                        td { (group.kind) }
                                        td { code { (group.error) } }
                                        td.num { a href={"/console/jobs?" (query(&filter, &[]))} { (group.jobs) } }
                                        td { (layout::when(group.last)) }
                                        td { @if filter.text.is_some() { a href={"/console/jobs/retry-dead?" (query(&filter, &[]))} { "Retry these…" } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section.card {
                h2 { "Throughput and timings, last hour" }
                @if minutes.is_empty() {
                    p.muted { "No job finished in the last hour." }
                }
                @for (kind, row) in &kinds {
                    @if !row.minutes.is_empty() {
                        (timings(kind, &row.minutes))
                    }
                }
            }
        },
    );
    Ok((status, page).into_response())
}

/// The search text, if any: long enough for the index.
fn search(text: Option<&str>) -> Result<Option<String>, Failure> {
    let text = layout::field(text, "search text")?;
    match text {
        Some(text) if text.chars().count() < admin::MIN_TEXT => Err(Failure::bad_request(format!(
            "Search for at least {} characters: “{text}” is shorter.",
            admin::MIN_TEXT
        ))),
        text => Ok(text),
    }
}

/// A search text that finds one error: its first line, cut to what a filter takes.
fn search_text(error: &str) -> String {
    error
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(layout::MAX_TEXT)
        .collect()
}

/// How a person tells a job apart in a list: the last eight hex digits of its UUID
/// (the first ones of a UUIDv7 are its time, shared by jobs made in the same moment),
/// or an id of another shape as it is.
fn short_id(id: &str) -> String {
    match uuid::Uuid::try_parse(id) {
        Ok(uuid) => {
            let hex = uuid.simple().to_string();
            hex[hex.len() - 8..].to_owned()
        }
        Err(_) => id.to_owned(),
    }
}

/// What a job is about, in a line: its payload's first few plain fields.
fn summary(payload: &str) -> String {
    let line = match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(serde_json::Value::Object(fields)) => fields
            .iter()
            .filter_map(|(name, value)| match value {
                serde_json::Value::String(text) => Some(format!("{name} {text}")),
                serde_json::Value::Number(_) | serde_json::Value::Bool(_) => {
                    Some(format!("{name} {value}"))
                }
                _ => None,
            })
            .take(4)
            .collect::<Vec<_>>()
            .join(" · "),
        _ => payload.to_owned(),
    };
    let mut chars = line.chars();
    let short: String = chars.by_ref().take(SUMMARY_CHARS).collect();
    if chars.next().is_some() {
        format!("{short}…")
    } else {
        short
    }
}

/// The longest job summary a list shows.
const SUMMARY_CHARS: usize = 80;

fn job_table(jobs: &[JobDetail]) -> Markup {
    html! {
        @if jobs.is_empty() {
            p.muted { "No job matches." }
        } @else {
            div.scroll {
                table {
                    thead { tr { th { "Job" } th { "Kind" } th { "About" } th { "State" } th.num { "Attempts" } th.hide-narrow { "Created" } th { "Runs" } th { "Last error" } } }
                    tbody {
                        @for job in jobs {
                            tr {
                                td { a href={"/console/jobs/" (layout::urlencoded(&job.id))} title=(job.id) { code { (short_id(&job.id)) } } }
                                td { (job.kind) }
                                td.muted { (summary(&job.payload)) }
                                td { (state_badge(&job.state)) }
                                td.num { (job.attempts) " / " (job.max_attempts) }
                                td.hide-narrow { (layout::when(job.created_at)) }
                                // When a waiting job (queued, or failed and retrying) runs next.
                                td { @if matches!(job.state.as_str(), "queued" | "failed") { (layout::when(job.run_at)) } }
                                td { @if let Some(error) = &job.last_error { code { (search_text(error)) } } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A kind's row of the table, with its minutes for the charts.
#[derive(Default)]
struct KindRow {
    states: BTreeMap<String, i64>,
    succeeded_hour: i64,
    /// Attempts that failed over the hour, those that killed their job included.
    failed_hour: i64,
    paused: Option<(String, Micros)>,
    minutes: Vec<MinuteCount>,
}

/// The share of the hour's finished attempts that failed, or a dash when none finished.
fn error_rate(row: &KindRow) -> String {
    match row.succeeded_hour + row.failed_hour {
        0 => "–".to_owned(),
        attempts => format!("{:.0} %", 100.0 * row.failed_hour as f64 / attempts as f64),
    }
}

fn kinds(
    counts: &[admin::StateCount],
    minutes: &[MinuteCount],
    paused: &[admin::PausedKind],
) -> BTreeMap<String, KindRow> {
    let mut kinds: BTreeMap<String, KindRow> = BTreeMap::new();
    for count in counts {
        kinds
            .entry(count.kind.clone())
            .or_default()
            .states
            .insert(count.state.clone(), count.jobs);
    }
    for minute in minutes {
        let row = kinds.entry(minute.kind.clone()).or_default();
        match minute.metric.as_str() {
            "succeeded" => row.succeeded_hour += minute.jobs,
            "failed" | "dead" => row.failed_hour += minute.jobs,
            _ => {}
        }
        row.minutes.push(minute.clone());
    }
    for kind in paused {
        kinds.entry(kind.kind.clone()).or_default().paused =
            Some((kind.paused_by.clone(), kind.paused_at));
    }
    kinds
}

/// One kind's last hour: jobs finished per minute (failures marked) and how long they
/// ran (p50, p95, p99 by minute), with the hour's percentiles of waiting and running.
fn timings(kind: &str, minutes: &[MinuteCount]) -> Markup {
    let now = now_micros().div_euclid(60_000_000);
    let first = now - 59;
    let mut finished = vec![0f64; 60];
    let mut failing = vec![false; 60];
    let mut run: Vec<Vec<(i64, i64)>> = vec![Vec::new(); 60];
    let mut hour: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    for minute in minutes {
        let Ok(index) = usize::try_from(minute.minute - first) else {
            continue;
        };
        if index >= 60 {
            continue;
        }
        match minute.metric.as_str() {
            "succeeded" => finished[index] += minute.jobs as f64,
            "failed" | "dead" => {
                finished[index] += minute.jobs as f64;
                failing[index] = true;
            }
            "run" => run[index].push((minute.bucket, minute.jobs)),
            _ => {}
        }
        hour.entry(minute.metric.as_str())
            .or_default()
            .push((minute.bucket, minute.jobs));
    }
    let series = |q: f64| -> Vec<Option<f64>> {
        run.iter()
            .map(|buckets| admin::quantile(buckets, q))
            .collect()
    };
    let count = |metric: &str| -> i64 {
        hour.get(metric)
            .map_or(0, |b| b.iter().map(|(_, n)| n).sum())
    };
    let percentile = |metric: &str, q: f64| -> String {
        hour.get(metric)
            .and_then(|buckets| admin::quantile(buckets, q))
            .map_or_else(|| "–".to_owned(), layout::duration)
    };
    html! {
        h3 { (kind) }
        p.muted {
            (count("succeeded")) " succeeded, " (count("failed")) " failed, " (count("dead")) " died. "
            "Waited once due: p50 " (percentile("wait", 0.5)) ", p95 " (percentile("wait", 0.95)) ", p99 " (percentile("wait", 0.99)) ". "
            "Ran: p50 " (percentile("run", 0.5)) ", p95 " (percentile("run", 0.95)) ", p99 " (percentile("run", 0.99)) "."
        }
        (chart::bars(&format!("{kind}: jobs finished per minute"), &finished, &failing, ("an hour ago", "now")))
        (chart::lines(&format!("{kind}: run time by minute"),
            &[("p50", series(0.5)), ("p95", series(0.95)), ("p99", series(0.99))],
            ("an hour ago", "now"), layout::duration))
        div.legend { span.key-p50 { "— p50" } span.key-p95 { "— p95" } span.key-p99 { "— p99" } }
    }
}

async fn detail(
    State(queue): State<Queue>,
    session: Session,
    Path(id): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Markup, Failure> {
    let job = queue
        .detail(&id)
        .await?
        .ok_or_else(|| Failure::not_found("No such job: it may have been deleted."))?;
    let errors = queue.errors(&id).await?;
    let payload = serde_json::from_str::<serde_json::Value>(&job.payload)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| job.payload.clone());
    let url = format!("/console/jobs/{}", layout::urlencoded(&job.id));
    Ok(layout::page(
        &format!("Job {} {}", job.kind, short_id(&job.id)),
        &session,
        "/console/jobs",
        html! {
            (layout::notice(params.done.as_deref()))
            section.card {
                dl.fields {
                    dt { "Id" } dd { code { (job.id) } }
                    dt { "Kind" } dd { a href={"/console/jobs?kind=" (layout::urlencoded(&job.kind))} { (job.kind) } }
                    dt { "State" } dd { (state_badge(&job.state)) }
                    dt { "Attempts" } dd { (job.attempts) " of " (job.max_attempts) }
                    dt { "Created" } dd { (layout::at(job.created_at)) }
                    dt { "Due" } dd { (layout::at(job.run_at)) }
                    @if let Some(started) = job.started_at { dt { "Last attempt began" } dd { (layout::at(started)) } }
                    @if let Some(holder) = &job.lease_holder { dt { "Lease holder" } dd { code { (holder) } } }
                    @if let (Some(until), "running") = (job.lease_until, job.state.as_str()) { dt { "Lease expires" } dd { (layout::at(until)) } }
                    @if let Some(finished) = job.finished_at { dt { "Finished" } dd { (layout::at(finished)) } }
                }
                p {
                    @if job.state == "dead" {
                        (layout::action_button(&session, &format!("{url}/retry"), "Retry", None)) " "
                    }
                    @if matches!(job.state.as_str(), "queued" | "failed") && job.run_at.0 > queue.clock().now().0 {
                        (layout::action_button(&session, &format!("{url}/run-now"), "Run now", None)) " "
                    }
                    @if job.state != "running" {
                        (layout::destructive_button(&session, &format!("{url}/delete"), "Delete", "Delete this job for good?"))
                    }
                }
            }
            section.card {
                h2 { "Payload" }
                pre { code { (payload) } }
            }
            section.card {
                h2 { "Errors" }
                @if errors.is_empty() {
                    p.muted { "No attempt has failed." }
                } @else {
                    div.scroll {
                        table {
                            thead { tr { th.num { "Attempt" } th { "At" } th { "Worker" } th { "Error" } } }
                            tbody {
                                @for error in &errors {
                                    tr {
                                        td.num { (error.attempt) }
                                        td { (layout::when(error.at)) }
                                        td { code { (error.holder.as_deref().unwrap_or("")) } }
                                        td { pre { (error.error) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// Retries (`retry`, a dead job) or deletes (`delete`, a job no worker holds) one job.
async fn job_action(
    State(queue): State<Queue>,
    session: Session,
    Path((id, action)): Path<(String, String)>,
    Form(change): Form<Change>,
) -> Result<Response, Failure> {
    use axum::http::StatusCode;
    session.may_change(&change.csrf)?;
    let gone = || Failure::not_found("No such job: it may have been deleted.");
    let done = match action.as_str() {
        "retry" => match queue.retry(&id, session.actor()).await? {
            Retried::Queued(_) => format!("/console/jobs/{}?done=retried", layout::urlencoded(&id)),
            Retried::NotFound => return Err(gone()),
            Retried::NotDead(state) => {
                let state = state.as_str();
                let message = format!("Only dead jobs are retried; this one is {state}.");
                return Err(Failure::new(StatusCode::CONFLICT, message));
            }
        },
        "run-now" => match queue.run_now(&id, session.actor()).await? {
            Hastened::Due(_) => format!("/console/jobs/{}?done=due", layout::urlencoded(&id)),
            Hastened::NotFound => return Err(gone()),
            Hastened::NotWaiting(state) => {
                let state = state.as_str();
                let message =
                    format!("Only a job waiting its turn runs sooner; this one is {state}.");
                return Err(Failure::new(StatusCode::CONFLICT, message));
            }
        },
        "delete" => match queue.delete(&id, session.actor()).await? {
            Deletion::Deleted => "/console/jobs?done=deleted".to_owned(),
            Deletion::NotFound => return Err(gone()),
            Deletion::Running => {
                let message =
                    "A worker is running this job; it can be deleted once the attempt ends.";
                return Err(Failure::new(StatusCode::CONFLICT, message));
            }
        },
        _ => {
            return Err(Failure::not_found(
                "A job is retried, run now or deleted, nothing else.",
            ))
        }
    };
    Ok(Redirect::to(&done).into_response())
}

/// How many dead jobs a retry of this filter would requeue, to confirm.
async fn confirm_bulk_retry(
    State(queue): State<Queue>,
    session: Session,
    Query(params): Query<ListParams>,
) -> Result<Markup, Failure> {
    let filter = params.filter()?.dead();
    let matching = queue.count(&filter).await?;
    let sample = queue.search(&filter, None, 10).await?;
    Ok(layout::page(
        "Retry dead jobs",
        &session,
        "/console/jobs",
        html! {
            section.card {
                @if matching == 0 {
                    p { "No dead job matches this filter; there is nothing to retry." }
                    p { a href={"/console/jobs?" (query(&filter, &[]))} { "Back to the jobs" } }
                } @else {
                    p { strong { (matching) } " dead " (if matching == 1 { "job matches" } else { "jobs match" })
                        @if let Some(kind) = &filter.kind { " of kind " code { (kind) } }
                        @if let Some(text) = &filter.text { " whose payload or error contains " code { (text) } }
                        ". Each is queued again with fresh attempts." }
                    (job_table(&sample))
                    @if matching > 10 { p.muted { "…and " (matching - 10) " more." } }
                    form method="post" action="/console/jobs/retry-dead" {
                        (layout::csrf(&session))
                        @if let Some(kind) = &filter.kind { input type="hidden" name="kind" value=(kind); }
                        @if let Some(text) = &filter.text { input type="hidden" name="q" value=(text); }
                        @if session.role == Role::Operator {
                            button type="submit" { "Retry " (matching) " " (if matching == 1 { "job" } else { "jobs" }) }
                        } @else {
                            button type="submit" disabled title="Read-only: you cannot change anything." { "Retry" }
                        }
                        " " a href={"/console/jobs?" (query(&filter, &[]))} { "Cancel" }
                    }
                }
            }
        },
    ))
}

#[derive(Debug, Deserialize)]
struct BulkRetry {
    #[serde(default)]
    csrf: String,
    kind: Option<String>,
    q: Option<String>,
}

async fn bulk_retry(
    State(queue): State<Queue>,
    session: Session,
    Form(form): Form<BulkRetry>,
) -> Result<Response, Failure> {
    session.may_change(&form.csrf)?;
    let filter = JobFilter {
        state: Some(JobState::Dead),
        kind: layout::field(form.kind.as_deref(), "kind")?,
        text: search(form.q.as_deref())?,
    };
    let retried = queue.retry_matching(&filter, session.actor()).await?;
    // Post, redirect, get: reloading the result does not retry again.
    let done = format!("retried-{retried}");
    let back = query(
        &JobFilter {
            state: None,
            ..filter
        },
        &[("done", &done)],
    );
    Ok(Redirect::to(&format!("/console/jobs?{back}")).into_response())
}

/// Pauses (`pause`) or resumes (`resume`) a kind.
async fn pause_or_resume(
    State(queue): State<Queue>,
    session: Session,
    Path((kind, action)): Path<(String, String)>,
    Form(change): Form<Change>,
) -> Result<Response, Failure> {
    session.may_change(&change.csrf)?;
    let kind = layout::field(Some(&kind), "kind")?
        .ok_or_else(|| Failure::bad_request("Name the kind."))?;
    let paused = match action.as_str() {
        "pause" => true,
        "resume" => false,
        _ => {
            return Err(Failure::not_found(
                "A kind is paused or resumed, nothing else.",
            ))
        }
    };
    queue.set_paused(&kind, paused, session.actor()).await?;
    let done = if paused { "paused" } else { "resumed" };
    Ok(Redirect::to(&format!("/console/jobs?done={done}")).into_response())
}
