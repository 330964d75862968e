//! The event record: what a client posts and reads back (`model`), its table (`store`)
//! and the group-commit writer that gives each event its id and time (`writer`).

pub mod model;
pub mod store;
pub mod writer;
