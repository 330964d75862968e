//! The grades' section of the console's analytics page: a course's or a student's
//! grades, the average and the on-time percentage by month, as charts.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use maud::{html, Markup};

use crate::model::GradeTally;
use crate::{GradeStore, Subject};
use studyhall_ui::{chart, Failure, Lookup, Section};

/// The section, over the module's own store.
pub(crate) struct GradesSection(pub(crate) GradeStore);

impl Section for GradesSection {
    fn render<'a>(&'a self, lookup: &'a Lookup) -> BoxFuture<'a, Result<Option<Markup>, Failure>> {
        Box::pin(async move {
            let subject = match (&lookup.course, &lookup.student) {
                (Some(course), Some(student)) => Subject::CourseStudent(course, student),
                (Some(course), None) => Subject::Course(course),
                (None, Some(student)) => Subject::Student(student),
                (None, None) => return Ok(None),
            };
            let days = self.0.days(subject, None, i64::MAX).await?;
            Ok(Some(grade_charts(&days)))
        })
    }
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
