//! The foundation every other crate builds on: errors and their HTTP form (`error`),
//! the injectable clock (`clock`), the database, its SQL values and where the two
//! databases differ (`db`, `sql`, `dialect`),
//! group commit (`batch`), paging (`page`), secrets kept out of logs (`sensitive`),
//! Redis (`redis_handle`), the settings (`config`) and the HTTP plumbing every route
//! shares (`http`). It knows no module.

#![warn(unreachable_pub)]

pub mod batch;
pub mod clock;
pub mod config;
pub mod db;
pub mod dialect;
pub mod error;
pub mod http;
pub mod page;
pub mod redis_handle;
pub mod sensitive;
pub mod sql;
