//! Overview: is everything up, how busy is each module, what is queued, how many
//! streams play, how many events came in today. It refreshes itself every 5 s.

use std::time::Duration;

use axum::extract::State;
use maud::{html, Markup};

use super::layout::{self, Failure};
use super::{chart, Console, Session};

pub(crate) async fn page(
    State(console): State<Console>,
    session: Session,
) -> Result<Markup, Failure> {
    let live = live_content(&console).await?;
    Ok(layout::page(
        "Overview",
        &session,
        "/console",
        html! {
            div #live hx-get="/console/overview/live" hx-trigger="every 5s" hx-swap="innerHTML" {
                (live)
            }
        },
    ))
}

/// The part that refreshes.
pub(crate) async fn live(
    State(console): State<Console>,
    _session: Session,
) -> Result<Markup, Failure> {
    live_content(&console).await
}

async fn live_content(console: &Console) -> Result<Markup, Failure> {
    let (database, redis) = readiness(console).await;
    let hours = studyhall_core::http::recent::last_hour();
    let (counts, succeeded) = console.queue.state_counts().await?;
    let total = |state: &str| -> i64 {
        counts
            .iter()
            .filter(|count| count.state == state)
            .map(|count| count.jobs)
            .sum()
    };
    let mut figures = Vec::new();
    for figure in console.figures.iter() {
        figures.push(figure.read().await?);
    }
    let mut per_minute = vec![0f64; 60];
    let mut errors_by_minute = vec![false; 60];
    for hour in &hours {
        for (minute, count) in hour.per_minute.iter().enumerate() {
            per_minute[minute] += *count as f64;
            errors_by_minute[minute] |= hour.errors_per_minute[minute] > 0;
        }
    }
    Ok(html! {
        div.stats {
            div.stat {
                div.label { "Database" }
                div.value.ok[database.is_ok()].bad[database.is_err()] { (status_text(&database)) }
                div.muted { (console.db.backend_name()) }
            }
            div.stat {
                div.label { "Redis" }
                @match &redis {
                    Some(redis) => div.value.ok[redis.is_ok()].bad[redis.is_err()] { (status_text(redis)) },
                    None => div.value.muted { "not used" },
                }
            }
            div.stat {
                div.label { "Jobs waiting" }
                div.value { (total("queued") + total("failed")) }
                div.muted { (total("running")) " running" }
            }
            div.stat {
                div.label { "Dead jobs" }
                div.value.bad[total("dead") > 0] {
                    a href="/console/jobs?state=dead" { (total("dead")) }
                }
                div.muted { (succeeded) " succeeded in 24 h" }
            }
            @for figure in &figures {
                div.stat { (figure) }
            }
        }
        section.card {
            h2 { "Requests in the last hour" }
            (chart::bars("Requests per minute, all modules", &per_minute, &errors_by_minute, ("an hour ago", "now")))
            @if hours.is_empty() {
                p.muted { "No requests in the last hour." }
            } @else {
                div.scroll {
                    table {
                        thead { tr { th { "Module" } th.num { "Requests" } th.num { "Per second" } th.num { "p99" } th.num { "5xx" } } }
                        tbody {
                            @for hour in &hours {
                                tr {
                                    td { (hour.module) }
                                    td.num { (hour.requests) }
                                    td.num { (format!("{:.2}", hour.per_second)) }
                                    td.num { (hour.p99.map_or_else(|| "–".to_owned(), |p99| layout::duration(p99 * 1e6))) }
                                    td.num.bad[hour.errors > 0] { (hour.errors) }
                                }
                            }
                        }
                    }
                }
                p.muted { "Measured by this instance; p99 to within about 19 %." }
            }
        }
        section.card {
            h2 { "Queue by state" }
            @if counts.is_empty() {
                p.muted { "No job is waiting, running or dead." }
            } @else {
                div.scroll {
                    table {
                        thead { tr { th { "Kind" } th { "State" } th.num { "Jobs" } } }
                        tbody {
                            @for count in &counts {
                                tr {
                                    td { (count.kind) }
                                    td { span class={"badge state-" (count.state)} { (count.state) } }
                                    td.num { a href={"/console/jobs?state=" (count.state) "&kind=" (count.kind)} { (count.jobs) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

type Check = Result<(), String>;

fn status_text(check: &Check) -> String {
    match check {
        Ok(()) => "ready".to_owned(),
        Err(problem) => problem.clone(),
    }
}

/// The database's and Redis's answers (within 2 s), as `/ready` checks them.
async fn readiness(console: &Console) -> (Check, Option<Check>) {
    let limit = Duration::from_secs(2);
    let database = match tokio::time::timeout(limit, console.readiness.db.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err("unreachable".to_owned()),
        Err(_) => Err("no answer within 2 s".to_owned()),
    };
    let redis = match &console.readiness.redis {
        Some(redis) => Some(match tokio::time::timeout(limit, redis.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("unreachable".to_owned()),
            Err(_) => Err("no answer within 2 s".to_owned()),
        }),
        None => None,
    };
    (database, redis)
}
