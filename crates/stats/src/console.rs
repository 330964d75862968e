//! The stats' section of the console's analytics page: a learner's aggregate in a
//! course (the Seneca aggregate), and one of their sessions.

use futures_util::future::BoxFuture;
use maud::{html, Markup};

use crate::StatsStore;
use studyhall_ui::{layout, Failure, Lookup, Section};

/// The section, over the module's own store.
pub(crate) struct StatsSection(pub(crate) StatsStore);

impl Section for StatsSection {
    fn render<'a>(&'a self, lookup: &'a Lookup) -> BoxFuture<'a, Result<Option<Markup>, Failure>> {
        Box::pin(async move {
            let (Some(user), Some(course)) = (&lookup.user, &lookup.course) else {
                return Ok(None);
            };
            let totals = self.0.totals(user, course).await?;
            let one = match &lookup.session {
                Some(session_id) => self.0.session(user, course, session_id).await?,
                None => None,
            };
            let session_id = &lookup.session;
            Ok(Some(html! {
                    section.card {
                        h2 { "Learning-session stats" }
                        @match &totals {
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
                        @if let Some(one) = &one {
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
            }))
        })
    }
}
