//! The event record: what a client posts and reads back (`model`), what reads of it ask for (`query`), its table (`store`)
//! and the group-commit writer that gives each event its id and time (`writer`).

pub mod model;
pub mod query;
pub mod store;
pub mod writer;
