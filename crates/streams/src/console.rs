//! Streams: active streams by viewer with their leases, a viewer's streams and limit,
//! ending a stream, setting and resetting a viewer's limit, and starts and refusals
//! per minute over the last hour (from the audit log's records of them).

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use crate::model::named_viewer;
use crate::StreamStore;
use futures_util::future::BoxFuture;
use studyhall_core::clock::{now_micros, Micros};
use studyhall_core::db::Db;
use studyhall_ui::ConsolePage;
use studyhall_ui::{chart, layout, Failure, Figure, Role, Session};

/// Active streams listed at most.
const LISTED: i64 = 500;

/// What the page reads and changes: the module's own store, and the audit log.
#[derive(Clone)]
struct StreamsPage {
    store: StreamStore,
    db: Db,
}

/// The streams page of the console.
pub(crate) fn page(store: StreamStore, db: Db) -> ConsolePage {
    let routes = axum::Router::new()
        .route("/console/streams", get(show))
        .route("/console/streams/end", post(end))
        .route("/console/streams/limit", post(set_limit))
        .with_state(StreamsPage { store, db });
    ConsolePage {
        path: "/console/streams",
        title: "Streams",
        routes,
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PageParams {
    viewer: Option<String>,
    done: Option<String>,
}

/// A viewer as the forms send it: a user id, or `user:…` / `ip:…`.
fn viewer(text: &str) -> Result<String, Failure> {
    named_viewer(text.trim()).map_err(Failure::from)
}

async fn show(
    State(console): State<StreamsPage>,
    session: Session,
    Query(params): Query<PageParams>,
) -> Result<Markup, Failure> {
    let store = &console.store;
    let looked_up = match params
        .viewer
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        Some(text) => {
            let viewer = viewer(text)?;
            let (streams, counts) = store.list(&viewer).await?;
            Some((viewer, streams, counts))
        }
        None => None,
    };
    let active = store.active_by_viewer(LISTED + 1).await?;
    let minutes = per_minute(&console.db).await?;
    let refused_flags: Vec<bool> = minutes.refusals.iter().map(|count| *count > 0.0).collect();
    let ended: Vec<f64> = minutes
        .kicked
        .iter()
        .zip(&minutes.replaced)
        .map(|(k, r)| k + r)
        .collect();
    let sum = |counts: &[f64]| counts.iter().sum::<f64>();
    Ok(layout::page(
        "Streams",
        &session,
        "/console/streams",
        html! {
            (layout::notice(params.done.as_deref()))
            section.card {
                h2 { "Look up a viewer" }
                form.filters method="get" action="/console/streams" {
                    label { "Viewer (a user id, user:… or ip:…)" input type="text" name="viewer" value=[params.viewer.as_deref()] required; }
                    button type="submit" { "Look up" }
                }
                @if let Some((viewer, streams, counts)) = &looked_up {
                    p { code { (viewer) } " watches " strong { (counts.active) } " of " strong { (counts.limit) } " allowed streams." }
                    (stream_table(&session, streams))
                    form.filters method="post" action="/console/streams/limit" {
                        (layout::csrf(&session))
                        input type="hidden" name="viewer" value=(viewer);
                        label { "Limit for this viewer (1 to 1000; empty resets to the default of " (store.policy().default_limit) ")"
                            input type="number" name="limit" min="1" max="1000" value=(counts.limit); }
                        @if session.role == Role::Operator {
                            button type="submit" { "Save the limit" }
                        } @else {
                            button type="submit" disabled title="Read-only: you cannot change anything." { "Save the limit" }
                        }
                    }
                }
            }
            section.card {
                h2 { "Starts and refusals, last hour" }
                p { "At the limit a start is handled by the policy " code { (store.policy().on_limit.name()) }
                    @if store.policy().dry_run { " in a dry run (evaluated, not applied)" } "." }
                (chart::bars("Streams started per minute", &minutes.starts, &[], ("an hour ago", "now")))
                (chart::bars("Starts refused per minute (over the limit)", &minutes.refusals, &refused_flags, ("an hour ago", "now")))
                (chart::bars("Streams ended to admit another per minute (kicked or replaced)", &ended, &[], ("an hour ago", "now")))
                p.muted { (sum(&minutes.starts)) " started, " (sum(&minutes.refusals)) " refused, "
                    (sum(&minutes.kicked)) " kicked as the oldest, " (sum(&minutes.replaced))
                    " replaced (named by a start, or the same device's), from the audit log." }
            }
            section.card {
                h2 { "Active streams" }
                @match &active {
                    None => p.muted { "Streams are kept in Redis by viewer: look a viewer up above." },
                    Some(streams) if streams.is_empty() => p.muted { "No stream is playing." },
                    Some(streams) => {
                        @let by_viewer = by_viewer(streams);
                        div.scroll {
                            table {
                                thead { tr { th { "Viewer" } th.num { "Streams" } th { "Stream" } th { "Started" } th { "Lease expires" } th {} } }
                                tbody {
                                    @for (viewer, streams) in &by_viewer {
                                        @for (index, stream) in streams.iter().enumerate() {
                                            tr {
                                                td { @if index == 0 { a href={"/console/streams?viewer=" (layout::urlencoded(viewer))} { (viewer) } } }
                                                td.num { @if index == 0 { (streams.len()) } }
                                                td { code { (stream.id) } }
                                                td { (layout::when(stream.started_at)) }
                                                td { (layout::when(stream.expires_at)) }
                                                td { (end_button(&session, stream)) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        @if streams.len() as i64 > LISTED { p.muted { "The first " (LISTED) " are shown; look a viewer up for theirs." } }
                    }
                }
            }
        },
    ))
}

/// The first [`LISTED`] streams by viewer.
fn by_viewer(streams: &[crate::model::Stream]) -> BTreeMap<&str, Vec<&crate::model::Stream>> {
    let mut by_viewer: BTreeMap<&str, Vec<&crate::model::Stream>> = BTreeMap::new();
    for stream in streams.iter().take(LISTED as usize) {
        by_viewer
            .entry(stream.viewer.as_str())
            .or_default()
            .push(stream);
    }
    by_viewer
}

fn end_button(session: &Session, stream: &crate::model::Stream) -> Markup {
    html! {
        form.inline method="post" action="/console/streams/end" hx-boost="true" hx-confirm="End this stream? Its viewer's player stops counting against the limit." {
            (layout::csrf(session))
            input type="hidden" name="viewer" value=(stream.viewer);
            input type="hidden" name="id" value=(stream.id);
            @if session.role == Role::Operator {
                button.danger type="submit" { "End" }
            } @else {
                button type="submit" disabled title="Read-only: you cannot change anything." { "End" }
            }
        }
    }
}

fn stream_table(session: &Session, streams: &[crate::model::Stream]) -> Markup {
    html! {
        @if streams.is_empty() {
            p.muted { "No active stream." }
        } @else {
            div.scroll {
                table {
                    thead { tr { th { "Stream" } th { "Started" } th { "Lease expires" } th { "Details" } th {} } }
                    tbody {
                        @for stream in streams {
                            tr {
                                td { code { (stream.id) } }
                                td { (layout::when(stream.started_at)) }
                                td { (layout::when(stream.expires_at)) }
                                td { code { (stream.metadata) } }
                                td { (end_button(session, stream)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Starts and refusals in each of the last 60 minutes, oldest first, from the audit
/// log (at most the latest 100 000 records, so the page stays fast).
/// The last hour's stream decisions per minute, from the audit log.
struct PerMinute {
    starts: Vec<f64>,
    refusals: Vec<f64>,
    /// Streams ended to admit another: kicked as the oldest, or replaced (named in a
    /// start's `replace`, or the same device's).
    kicked: Vec<f64>,
    replaced: Vec<f64>,
}

async fn per_minute(db: &Db) -> Result<PerMinute, Failure> {
    let now = now_micros().div_euclid(60_000_000);
    let first = now - 59;
    let since = Micros(first * 60_000_000);
    let rows =
        studyhall_log::store::recorded_since(db, "studyhall.streams", since, 100_000).await?;
    let mut minutes = PerMinute {
        starts: vec![0.0; 60],
        refusals: vec![0.0; 60],
        kicked: vec![0.0; 60],
        replaced: vec![0.0; 60],
    };
    for (message, at) in rows {
        let Ok(index) = usize::try_from(at.0.div_euclid(60_000_000) - first) else {
            continue;
        };
        let counts = match message.as_str() {
            "stream.started" => &mut minutes.starts,
            "stream.refused" => &mut minutes.refusals,
            "stream.kicked" => &mut minutes.kicked,
            "stream.replaced" => &mut minutes.replaced,
            _ => continue,
        };
        if let Some(count) = counts.get_mut(index) {
            *count += 1.0;
        }
    }
    Ok(minutes)
}

#[derive(Debug, Deserialize)]
pub(crate) struct EndForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    viewer: String,
    #[serde(default)]
    id: String,
}

async fn end(
    State(console): State<StreamsPage>,
    session: Session,
    Form(form): Form<EndForm>,
) -> Result<Response, Failure> {
    session.may_change(&form.csrf)?;
    let store = &console.store;
    let viewer = viewer(&form.viewer)?;
    match store
        .end_by(&viewer, form.id.trim(), session.actor())
        .await?
    {
        Some(_) => Ok(Redirect::to(&format!(
            "/console/streams?viewer={}&done=ended",
            layout::urlencoded(&viewer)
        ))
        .into_response()),
        None => Err(Failure::not_found(
            "That stream is not active any more: it ended or its lease expired.",
        )),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct LimitForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    viewer: String,
    #[serde(default)]
    limit: String,
}

async fn set_limit(
    State(console): State<StreamsPage>,
    session: Session,
    Form(form): Form<LimitForm>,
) -> Result<Response, Failure> {
    session.may_change(&form.csrf)?;
    let store = &console.store;
    let viewer = viewer(&form.viewer)?;
    let limit = match form.limit.trim() {
        "" => None,
        text => match text.parse::<i64>() {
            Ok(limit) if (1..=1000).contains(&limit) => Some(limit),
            _ => {
                return Err(Failure::bad_request(
                    "The limit must be a whole number from 1 to 1000, or empty to reset it.",
                ))
            }
        },
    };
    store.set_limit(&viewer, limit, session.actor()).await?;
    Ok(Redirect::to(&format!(
        "/console/streams?viewer={}&done=limit",
        layout::urlencoded(&viewer)
    ))
    .into_response())
}

/// The overview's figure of the streams playing now.
pub(crate) struct ActiveStreams(pub(crate) StreamStore);

impl Figure for ActiveStreams {
    fn read(&self) -> BoxFuture<'_, Result<Markup, Failure>> {
        Box::pin(async move {
            let active = self.0.active_total().await.map_err(Failure::internal)?;
            Ok(html! { div.label { "Active streams" } div.value { (active) } })
        })
    }
}
