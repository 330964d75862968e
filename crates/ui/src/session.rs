//! Who is looking at a console page. The console finds the session a request's cookie
//! names (it owns logging in and out); every console page, whichever crate renders it,
//! extracts the [`Session`] through the finder the console puts in the request.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use serde::Deserialize;

use crate::layout::Failure;
use studyhall_core::clock::Micros;
use studyhall_log::Actor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sees everything and may change what the console changes.
    Operator,
    /// Sees everything and changes nothing.
    Reader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Reader => "reader",
        }
    }
}

/// The console's pages in the navigation's order: (path, title).
pub type Nav = Arc<Vec<(&'static str, &'static str)>>;

/// A logged-in operator, as every console page but the login page extracts it.
#[derive(Debug, Clone)]
pub struct Session {
    id: String,
    pub operator: String,
    pub role: Role,
    /// The form token: every change sends it back.
    pub csrf: String,
    pub expires_at: Micros,
    /// The pages this console has, for the navigation.
    pub nav: Nav,
}

impl Session {
    /// The session stored as `id` (its secret's digest), for the console that stores it.
    pub fn new(id: String, operator: String, role: Role, csrf: String, expires_at: Micros) -> Self {
        Session {
            id,
            operator,
            role,
            csrf,
            expires_at,
            nav: Nav::default(),
        }
    }

    /// The stored session's id (its secret's digest).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Who the audit log says acted.
    pub fn actor(&self) -> Actor {
        Actor::operator_named(&self.operator)
    }

    /// Lets a change through: an operator's, with this session's form token.
    pub fn may_change(&self, csrf: &str) -> Result<(), Failure> {
        use subtle::ConstantTimeEq;
        if !bool::from(csrf.as_bytes().ct_eq(self.csrf.as_bytes())) {
            return Err(Failure::forbidden(
                "This form has expired (it belongs to another login). Reload the page and send it again.",
            ));
        }
        if self.role != Role::Operator {
            return Err(Failure::forbidden(
                "You are logged in read-only: you can look at everything and change nothing.",
            ));
        }
        Ok(())
    }
}

/// The body of every form that changes something: the session's form token.
#[derive(Debug, Deserialize)]
pub struct Change {
    #[serde(default)]
    pub csrf: String,
}

/// Finds a request's session: the logged-in operator, or the answer to give instead
/// (the login page, or the page saying the console is off).
pub trait FindSession: Send + Sync {
    fn find<'a>(&'a self, parts: &'a Parts) -> BoxFuture<'a, Result<Session, Response>>;
}

/// The console's [`FindSession`], in the extensions of every console request.
#[derive(Clone)]
pub struct Sessions(pub Arc<dyn FindSession>);

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        let Some(Sessions(sessions)) = parts.extensions.get::<Sessions>().cloned() else {
            let missing = anyhow::anyhow!("no console sessions in the request's extensions");
            return Err(Failure::internal(missing).into_response());
        };
        sessions.find(parts).await
    }
}
