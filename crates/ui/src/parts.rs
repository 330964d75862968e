//! What modules contribute to the console's pages that span modules: a section of the
//! analytics page, a figure on the overview. The console lays them out; each module
//! reads its own data.

use futures_util::future::BoxFuture;
use maud::Markup;

use crate::Failure;

/// What the analytics page was asked, each field trimmed and checked.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    pub course: Option<String>,
    /// A learner of the stats (their `X-User-Id`).
    pub user: Option<String>,
    /// One stats session of the learner.
    pub session: Option<String>,
    /// A student of the grades.
    pub student: Option<String>,
}

/// A module's section of the analytics page: nothing when the lookup does not concern
/// it.
pub trait Section: Send + Sync {
    fn render<'a>(&'a self, lookup: &'a Lookup) -> BoxFuture<'a, Result<Option<Markup>, Failure>>;
}

/// A module's figure on the overview, read each time the overview refreshes: its
/// `div.label`, `div.value` and any `div.muted` line (the overview draws the card).
pub trait Figure: Send + Sync {
    fn read(&self) -> BoxFuture<'_, Result<Markup, Failure>>;
}
