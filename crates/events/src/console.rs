//! Events: the list route's filters as a form (the message filter is the substring
//! search), pages, an event's detail, a live tail that refreshes every 2 s, and a
//! download of the filter's results as NDJSON or CSV (recorded as an export).

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use maud::{html, Markup};
use serde::Deserialize;
use uuid::Uuid;

use crate::model::Event;
use crate::query::{ExportParams, ExportQuery, FilterParams, ListParams, ListQuery};
use crate::EventStore;
use futures_util::future::BoxFuture;
use studyhall_core::clock::Clock;
use studyhall_core::clock::{now_micros, Micros};
use studyhall_core::db::Db;
use studyhall_log::Decision;
use studyhall_ui::ConsolePage;
use studyhall_ui::{layout, Failure, Figure, Session};

const PAGE_SIZE: u32 = 50;

/// What the pages read: the module's store (whose database the exports are recorded
/// in), and the clock they are stamped with.
#[derive(Clone)]
struct EventsPage {
    store: EventStore,
    clock: Clock,
}

/// The events pages of the console.
pub(crate) fn page(store: EventStore, clock: Clock) -> ConsolePage {
    let routes = axum::Router::new()
        .route("/console/events", get(list))
        .route("/console/events/tail", get(tail))
        .route("/console/events/download", get(download))
        .route("/console/events/{id}", get(detail))
        .with_state(EventsPage { store, clock });
    ConsolePage {
        path: "/console/events",
        title: "Events",
        routes,
    }
}

/// The page's query, as sent: the API's filters and paging, and the tail's start.
#[derive(Debug, Default, Deserialize, Clone)]
struct EventsParams {
    email: Option<String>,
    environment: Option<String>,
    component: Option<String>,
    message: Option<String>,
    from_date: Option<String>,
    to_date: Option<String>,
    cursor: Option<String>,
    /// `1`: the live tail.
    live: Option<String>,
    /// The tail's start (Unix µs): events after it are marked new.
    since: Option<String>,
}

impl EventsParams {
    fn filter_params(&self) -> FilterParams {
        let given = |value: &Option<String>| value.clone().filter(|value| !value.trim().is_empty());
        FilterParams {
            email: given(&self.email),
            environment: given(&self.environment),
            component: given(&self.component),
            message: given(&self.message),
            from_date: given(&self.from_date),
            to_date: given(&self.to_date),
        }
    }

    fn query(&self, cursor: Option<String>) -> Result<ListQuery, Failure> {
        let params = ListParams {
            limit: Some(PAGE_SIZE.to_string()),
            cursor: cursor.filter(|cursor| !cursor.is_empty()),
            order: None,
        };
        ListQuery::parse(self.filter_params(), params).map_err(Failure::from)
    }

    /// The filters as a query string, with more pairs.
    fn link(&self, more: &[(&str, &str)]) -> String {
        let mut pairs = url::form_urlencoded::Serializer::new(String::new());
        let filter = self.filter_params();
        for (name, value) in [
            ("email", &filter.email),
            ("environment", &filter.environment),
            ("component", &filter.component),
            ("message", &filter.message),
            ("from_date", &filter.from_date),
            ("to_date", &filter.to_date),
        ] {
            if let Some(value) = value {
                pairs.append_pair(name, value);
            }
        }
        for (name, value) in more {
            pairs.append_pair(name, value);
        }
        pairs.finish()
    }
}

async fn list(
    State(console): State<EventsPage>,
    session: Session,
    Query(params): Query<EventsParams>,
) -> Result<Markup, Failure> {
    let store = &console.store;
    let query = params.query(params.cursor.clone())?;
    let events = store.list(&query, PAGE_SIZE + 1).await?;
    let live = params.live.as_deref() == Some("1");
    let since = now_micros();
    let filter = params.filter_params();
    let table = rows(&events, PAGE_SIZE, None);
    Ok(layout::page(
        "Events",
        &session,
        "/console/events",
        html! {
            section.card {
                form.filters method="get" action="/console/events" {
                    label { "Email" input type="email" name="email" value=[filter.email.as_deref()]; }
                    label { "Environment" input type="text" name="environment" value=[filter.environment.as_deref()]; }
                    label { "Component" input type="text" name="component" value=[filter.component.as_deref()]; }
                    label { "Message contains" input type="search" name="message" value=[filter.message.as_deref()]; }
                    label { "From (YYYY-MM-DD or RFC 3339)" input type="text" name="from_date" value=[filter.from_date.as_deref()]; }
                    label { "Before" input type="text" name="to_date" value=[filter.to_date.as_deref()]; }
                    @if live { input type="hidden" name="live" value="1"; }
                    button type="submit" { "Search" }
                    a href="/console/events" { "Clear" }
                }
                p {
                    @if live {
                        a href={"/console/events?" (params.link(&[]))} { "Stop the live tail" }
                    } @else {
                        a href={"/console/events?" (params.link(&[("live", "1")]))} { "Live tail" }
                    }
                    " · Download: "
                    a href={"/console/events/download?" (params.link(&[("format", "ndjson")]))} download { "NDJSON" } " · "
                    a href={"/console/events/download?" (params.link(&[("format", "csv")]))} download { "CSV" }
                }
            }
            section.card {
                @if live {
                    p.muted role="status" { "Live: new events appear at the top every 2 s, marked until you reload." }
                    div #tail hx-get={"/console/events/tail?" (params.link(&[("since", &since.to_string())]))}
                        hx-trigger="every 2s" hx-swap="innerHTML" {
                        (table)
                    }
                } @else {
                    (table)
                    div.pager {
                        @if params.cursor.is_some() { a href={"/console/events?" (params.link(&[]))} { "Newest" } }
                        @if events.len() > PAGE_SIZE as usize {
                            @if let Some(last) = events.get(PAGE_SIZE as usize - 1) {
                                @let cursor = crate::query::Cursor { created_at: last.created_at, id: last.id }.encode();
                                a href={"/console/events?" (params.link(&[("cursor", &cursor)]))} { "Older events" }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// The tail's newest events, those after `since` marked.
async fn tail(
    State(console): State<EventsPage>,
    _session: Session,
    Query(params): Query<EventsParams>,
) -> Result<Markup, Failure> {
    let store = &console.store;
    let query = params.query(None)?;
    let events = store.list(&query, PAGE_SIZE).await?;
    let since = params
        .since
        .as_deref()
        .and_then(|since| since.parse().ok())
        .map(Micros);
    Ok(rows(&events, PAGE_SIZE, since))
}

/// Who an event is about: its email, or for the service's own records (whose email is
/// a placeholder `KIND@studyhall.invalid`) the actor they name.
fn who(event: &Event) -> String {
    if !event.email.ends_with("@studyhall.invalid") {
        return event.email.clone();
    }
    let data = serde_json::from_str::<serde_json::Value>(event.data.get()).unwrap_or_default();
    let actor = &data["actor"];
    let kind = actor["kind"].as_str().unwrap_or("service");
    match actor["id"].as_str().or(actor["email"].as_str()) {
        Some(id) => format!("{kind} {id}"),
        None => kind.to_owned(),
    }
}

fn rows(events: &[Event], limit: u32, since: Option<Micros>) -> Markup {
    html! {
        @if events.is_empty() {
            p.muted { "No event matches." }
        } @else {
            div.scroll {
                table {
                    thead { tr { th { "Created" } th { "Component" } th { "Message" } th.hide-narrow { "Email or actor" } th.hide-narrow { "Environment" } } }
                    tbody {
                        @for event in events.iter().take(limit as usize) {
                            tr class=[since.filter(|since| event.created_at > *since).map(|_| "new")] {
                                td { a href={"/console/events/" (event.id)} { (layout::when(event.created_at)) } }
                                td { (event.component) }
                                td { (event.message) }
                                td.hide-narrow { (who(event)) }
                                td.hide-narrow { (event.environment) }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn detail(
    State(console): State<EventsPage>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Markup, Failure> {
    let store = &console.store;
    let id = Uuid::try_parse(&id)
        .map_err(|_| Failure::bad_request("That is not an event id (a UUID)."))?;
    let event = store.get(id).await?.ok_or_else(|| {
        Failure::not_found("No such event: it may have been removed by retention.")
    })?;
    let data = serde_json::from_str::<serde_json::Value>(event.data.get())
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| event.data.get().to_owned());
    let place = store.chain_place(id).await?;
    Ok(layout::page(
        "Event",
        &session,
        "/console/events",
        html! {
            section.card {
                dl.fields {
                    dt { "Id" } dd { code { (event.id) } }
                    dt { "Created" } dd { (event.created_at.rfc3339()) }
                    dt { "Component" } dd { a href={"/console/events?component=" (layout::urlencoded(&event.component))} { (event.component) } }
                    dt { "Message" } dd { (event.message) }
                    dt { "Email" } dd { a href={"/console/events?email=" (layout::urlencoded(&event.email))} { (event.email) } }
                    dt { "Environment" } dd { (event.environment) }
                    dt { "Log position" }
                    @match &place {
                        Some((position, _)) => dd { (position) },
                        None => dd.muted { "not yet in the audit chain" },
                    }
                    @if let Some((_, hash)) = &place { dt { "Hash" } dd { code { (hash) } } }
                }
            }
            section.card { h2 { "Data" } pre { code { (data) } } }
        },
    ))
}

#[derive(Debug, Deserialize)]
struct DownloadParams {
    format: Option<String>,
}

/// The filter's results as a file, recorded as an export by this operator.
async fn download(
    State(console): State<EventsPage>,
    session: Session,
    Query(params): Query<EventsParams>,
    Query(download): Query<DownloadParams>,
) -> Result<Response, Failure> {
    let export = ExportQuery::parse(
        params.filter_params(),
        ExportParams {
            format: download.format,
            after: None,
        },
    )?;
    let filter = &export.filter;
    let data = serde_json::json!({
        "filter": {
            "email": filter.email, "environment": filter.environment, "component": filter.component,
            "message": filter.message, "from_us": filter.from, "to_us": filter.to,
        },
        "format": export.format.extension(), "after": 0, "via": "console",
    });
    let exported = Decision::new("studyhall.events", "events.exported", session.actor(), data);
    let db = console.store.db();
    let tx = db.begin_write().await?;
    studyhall_log::commit(tx, &[exported], console.clock.now()).await?;
    console.store.place_waiting().await?;
    Ok(studyhall_log::export::download(
        db,
        export.filter,
        0,
        export.format,
    ))
}

/// The overview's figure of the events stored since midnight UTC and the chain's length,
/// from the chain's head and the position of today's first event (two index lookups,
/// whatever the log's size).
pub(crate) struct EventsToday(pub(crate) Db);

impl Figure for EventsToday {
    fn read(&self) -> BoxFuture<'_, Result<Markup, Failure>> {
        Box::pin(async move {
            let head = studyhall_log::store::head(&self.0).await?;
            let midnight = now_micros().div_euclid(86_400_000_000) * 86_400_000_000;
            let first =
                studyhall_log::store::first_position_since(&self.0, Micros(midnight)).await?;
            let today = first.map_or(0, |first| head.position - first + 1).max(0);
            Ok(html! {
                div.label { "Events today (UTC)" }
                div.value { a href="/console/events" { (today) } }
                div.muted { (head.position) " in the chain" }
            })
        })
    }
}
