//! People: a user's profile and friend count by id, or users whose email or name
//! contains a text.

use axum::extract::{Query, State};
use maud::{html, Markup};
use serde::Deserialize;

use crate::model::UserRow;
use crate::{Match, Search, SocialStore};
use studyhall_ui::ConsolePage;
use studyhall_ui::{layout, Failure, Session};

/// Users a search lists at most.
const LISTED: i64 = 25;

#[derive(Debug, Default, Deserialize)]
struct Lookup {
    id: Option<String>,
    q: Option<String>,
}

/// The people page of the console, over the module's own store.
pub(crate) fn page(store: SocialStore) -> ConsolePage {
    let routes = axum::Router::new()
        .route("/console/people", axum::routing::get(show))
        .with_state(store);
    ConsolePage {
        path: "/console/people",
        title: "People",
        routes,
    }
}

async fn show(
    State(store): State<SocialStore>,
    session: Session,
    Query(lookup): Query<Lookup>,
) -> Result<Markup, Failure> {
    let id = layout::field(lookup.id.as_deref(), "user id")?;
    let text = layout::field(lookup.q.as_deref(), "search text")?;
    // No caller: the profile as the service stores it, not as one user sees another.
    let profile = match &id {
        Some(id) => match store.user("", id).await? {
            Some(user) => Some((user, store.friend_count("", id, false).await?)),
            None => None,
        },
        None => None,
    };
    let found = match &text {
        // The text is looked for in emails and in names alike, as the form says.
        Some(text) => {
            let mut found: Vec<UserRow> = Vec::new();
            for by in [Match::Email, Match::Name] {
                let search = Search {
                    by,
                    text,
                    friends_only: false,
                    exact: false,
                };
                for user in store.search("", &search, LISTED, 0).await? {
                    if !found.iter().any(|seen| seen.user_id == user.user_id) {
                        found.push(user);
                    }
                }
            }
            found.truncate(LISTED as usize);
            Some(found)
        }
        None => None,
    };
    // With nothing asked, the page opens on the newest profiles.
    let newest = match (&id, &text) {
        (None, None) => Some(store.newest(LISTED).await?),
        _ => None,
    };
    Ok(layout::page(
        "People",
        &session,
        "/console/people",
        html! {
            section.card {
                form.filters method="get" action="/console/people" {
                    label { "User id" input type="text" name="id" value=[id.as_deref()]; }
                    button type="submit" { "Look up" }
                }
                form.filters method="get" action="/console/people" {
                    label { "Email or name contains" input type="search" name="q" value=[text.as_deref()]; }
                    button type="submit" { "Search" }
                }
            }
            @if id.is_some() {
                section.card {
                    @match &profile {
                        None => p.muted { "No profile with this id." },
                        Some((user, friends)) => (profile_card(user, *friends)),
                    }
                }
            }
            @if let Some(newest) = &newest {
                (people_card("Newest profiles", newest, "No profile yet.", ""))
            }
            @if let Some(found) = &found {
                (people_card("Matches", found, "Nobody matches.", "narrow the search."))
            }
        },
    ))
}

/// A card listing `users` under `title`, or saying `none`; when the list is full, it says
/// so and how to see the rest (`narrow`).
fn people_card(title: &str, users: &[UserRow], none: &str, narrow: &str) -> Markup {
    html! {
        section.card {
            h2 { (title) }
            @if users.is_empty() {
                p.muted { (none) }
            } @else {
                (people_table(users))
                @if users.len() as i64 == LISTED && !narrow.is_empty() {
                    p.muted { "The first " (LISTED) " are shown; " (narrow) }
                }
            }
        }
    }
}

/// Profiles by name, email and id, each linking to its profile.
fn people_table(users: &[UserRow]) -> Markup {
    html! {
        div.scroll {
            table {
                thead { tr { th { "Name" } th { "Email" } th { "Id" } } }
                tbody {
                    @for user in users {
                        tr {
                            td { (user.first_name) " " (user.last_name) }
                            td { (user.email) }
                            td { a href={"/console/people?id=" (layout::urlencoded(&user.user_id))} { code { (user.user_id) } } }
                        }
                    }
                }
            }
        }
    }
}

fn profile_card(user: &UserRow, friends: i64) -> Markup {
    let optional = |value: &Option<String>| value.clone().unwrap_or_default();
    html! {
        h2 { (user.first_name) " " (user.last_name) }
        dl.fields {
            dt { "Id" } dd { code { (user.user_id) } }
            dt { "Email" } dd { (user.email) @if !user.email_public { " " span.badge { "private" } } }
            dt { "Friends" } dd { strong { (friends) } }
            dt { "Description" } dd { (optional(&user.description)) }
            dt { "School" } dd { (optional(&user.school)) }
            dt { "Work" } dd { (optional(&user.work)) }
            dt { "Location" } dd { (optional(&user.location)) }
            dt { "Sharing" } dd { (user.share_mode) }
        }
    }
}
