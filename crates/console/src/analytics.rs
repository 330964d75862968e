//! Learning analytics: a learner's stats in a course (the Seneca aggregate, and one
//! session), and a course's or a student's grades: the average and the on-time
//! percentage by month, as charts.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, Failure};
use super::{chart, Console, Session};
use studyhall_grades::model::GradeTally;
use studyhall_grades::Subject;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Lookup {
    user: Option<String>,
    course: Option<String>,
    session: Option<String>,
    student: Option<String>,
}

pub(crate) async fn page(
    State(console): State<Console>,
    session: Session,
    Query(lookup): Query<Lookup>,
) -> Result<Markup, Failure> {
    let user = layout::field(lookup.user.as_deref(), "user id")?;
    let course = layout::field(lookup.course.as_deref(), "course id")?;
    let session_id = layout::field(lookup.session.as_deref(), "session id")?;
    let student = layout::field(lookup.student.as_deref(), "student id")?;
    let stats = match (&console.stats, &user, &course) {
        (Some(stats), Some(user), Some(course)) => Some((
            stats.totals(user, course).await?,
            match &session_id {
                Some(session_id) => stats.session(user, course, session_id).await?,
                None => None,
            },
        )),
        _ => None,
    };
    let grades = match &console.grades {
        Some(grades) => {
            let subject = match (&course, &student) {
                (Some(course), Some(student)) => Some(Subject::CourseStudent(course, student)),
                (Some(course), None) => Some(Subject::Course(course)),
                (None, Some(student)) => Some(Subject::Student(student)),
                (None, None) => None,
            };
            match subject {
                Some(subject) => Some(grades.days(subject, None, i64::MAX).await?),
                None => None,
            }
        }
        None => None,
    };
    Ok(layout::page(
        "Learning analytics",
        &session,
        "/console/analytics",
        html! {
            section.card {
                form.filters method="get" action="/console/analytics" {
                    label { "Course" input type="text" name="course" value=[course.as_deref()]; }
                    label { "Learner (stats: the X-User-Id)" input type="text" name="user" value=[user.as_deref()]; }
                    label { "Session (stats)" input type="text" name="session" value=[session_id.as_deref()]; }
                    label { "Student (grades)" input type="text" name="student" value=[student.as_deref()]; }
                    button type="submit" { "Look up" }
                }
                p.muted { "Stats need a course and a learner; grades a course, a student, or both." }
            }
            @if console.serves("stats") {
                @if let Some((totals, one)) = &stats {
                    section.card {
                        h2 { "Learning-session stats" }
                        @match totals {
                            None => p.muted { "No session of this learner in this course." },
                            Some(totals) => {
                                @let stats = totals.stats();
                                dl.fields {
                                    dt { "Sessions" } dd { (stats.session_count) }
                                    dt { "Modules studied" } dd { (stats.total_modules_studied) }
                                    dt { "Average score" } dd { (format!("{:.2}", stats.average_score)) }
                                    dt { "Time studied" } dd { (layout::duration(stats.time_studied as f64 * 1000.0)) }
                                }
                            }
                        }
                        @if let Some(one) = one {
                            h3 { "Session " code { (one.session_id) } }
                            dl.fields {
                                dt { "Modules studied" } dd { (one.total_modules_studied) }
                                dt { "Average score" } dd { (format!("{:.2}", one.average_score)) }
                                dt { "Time studied" } dd { (layout::duration(one.time_studied as f64 * 1000.0)) }
                            }
                        } @else if session_id.is_some() {
                            p.muted { "No such session of this learner in this course." }
                        }
                    }
                }
            }
            @if let Some(days) = &grades {
                (grade_charts(days))
            }
        },
    ))
}

/// The grades' months, each month's tally summed from its days.
fn months(days: &[(i64, GradeTally)]) -> BTreeMap<String, GradeTally> {
    let mut months: BTreeMap<String, GradeTally> = BTreeMap::new();
    for (day, tally) in days {
        let date = (time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(*day)).date();
        let month = format!("{:04}-{:02}", date.year(), u8::from(date.month()));
        months.entry(month).or_default().add(*tally);
    }
    months
}

fn grade_charts(days: &[(i64, GradeTally)]) -> Markup {
    let months = months(days);
    let mut total = GradeTally::default();
    for tally in months.values() {
        total.add(*tally);
    }
    let averages: Vec<Option<f64>> = months.values().map(|tally| Some(tally.average())).collect();
    let on_time: Vec<Option<f64>> = months
        .values()
        .map(|tally| Some(tally.on_time_percentage()))
        .collect();
    let first = months.keys().next().map_or("", String::as_str);
    let last = months.keys().last().map_or("", String::as_str);
    html! {
        section.card {
            h2 { "Grades" }
            @if months.is_empty() {
                p.muted { "No grades." }
            } @else {
                p { (total.grade_count) " grades, average " strong { (format!("{:.2}", total.average())) } ", "
                    strong { (format!("{:.1} %", total.on_time_percentage())) } " on time." }
                h3 { "Average grade by month" }
                (chart::lines("Average grade by month", &[("p50", averages)], (first, last), |value| format!("{value:.1}")))
                h3 { "On time by month" }
                (chart::lines("Percentage on time by month", &[("p50", on_time)], (first, last), |value| format!("{value:.0} %")))
                div.scroll {
                    table {
                        thead { tr { th { "Month" } th.num { "Grades" } th.num { "Average" } th.num { "On time" } } }
                        tbody {
                            @for (month, tally) in &months {
                                tr {
                                    td { (month) }
                                    td.num { (tally.grade_count) }
                                    td.num { (format!("{:.2}", tally.average())) }
                                    td.num { (format!("{:.1} %", tally.on_time_percentage())) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
