//! HTTP-level tests against a real studyhall server.

mod helpers;

mod audit;
mod auth;
mod browser;
mod console;
mod contention;
mod events;
mod grades;
mod hostile;
mod observability;
mod ops;
mod outage;
mod process;
mod social;
mod stats;
mod streams;
mod writers;
