//! What a console page is made of: the page frame and its navigation (`layout`), the
//! logged-in [`Session`] every page extracts, the failures pages answer with, server-side
//! charts (`chart`) and the embedded stylesheet, icon and htmx (`assets`). Modules render
//! their console pages with it; the console crate logs operators in and serves the pages.

#![warn(unreachable_pub)]

pub mod assets;
pub mod chart;
pub mod layout;
pub mod parts;
pub mod session;

pub use layout::Failure;
pub use parts::{Figure, Lookup, Section};
pub use session::{Change, FindSession, Nav, Role, Session, Sessions};

/// A console page: its place in the console's navigation and its routes, each
/// extracting the operator's [`Session`]. The console serves them behind its own
/// protections (sessions, CSRF checks, security headers).
pub struct ConsolePage {
    /// The path the navigation links to, under `/console/`.
    pub path: &'static str,
    /// Its name in the navigation.
    pub title: &'static str,
    pub routes: axum::Router,
}
