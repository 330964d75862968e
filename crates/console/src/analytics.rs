//! Learning analytics: one lookup form (a course, a learner and one of their sessions,
//! a student) and the sections the modules render for it (the stats' and the grades'),
//! in the order the modules start.

use axum::extract::{Query, State};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, Failure};
use super::{Console, Session};
use studyhall_ui::Lookup;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LookupParams {
    user: Option<String>,
    course: Option<String>,
    session: Option<String>,
    student: Option<String>,
}

pub(crate) async fn page(
    State(console): State<Console>,
    session: Session,
    Query(lookup): Query<LookupParams>,
) -> Result<Markup, Failure> {
    let lookup = Lookup {
        user: layout::field(lookup.user.as_deref(), "user id")?,
        course: layout::field(lookup.course.as_deref(), "course id")?,
        session: layout::field(lookup.session.as_deref(), "session id")?,
        student: layout::field(lookup.student.as_deref(), "student id")?,
    };
    let mut sections = Vec::new();
    for section in console.sections.iter() {
        sections.extend(section.render(&lookup).await?);
    }
    Ok(layout::page(
        "Learning analytics",
        &session,
        "/console/analytics",
        html! {
            section.card {
                form.filters method="get" action="/console/analytics" {
                    label { "Course" input type="text" name="course" value=[lookup.course.as_deref()]; }
                    label { "Learner (stats: the X-User-Id)" input type="text" name="user" value=[lookup.user.as_deref()]; }
                    label { "Session (stats)" input type="text" name="session" value=[lookup.session.as_deref()]; }
                    label { "Student (grades)" input type="text" name="student" value=[lookup.student.as_deref()]; }
                    button type="submit" { "Look up" }
                }
                p.muted { "Stats need a course and a learner; grades a course, a student, or both." }
            }
            @for section in &sections {
                (section)
            }
        },
    ))
}
