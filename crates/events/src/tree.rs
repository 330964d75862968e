//! The log's Merkle tree over HTTP: the C2SP `tlog-tiles` checkpoint and hash tiles
//! under `/api/events/log/`, an event's receipt (a C2SP `tlog-proof`) and consistency
//! proofs between sizes. Readable by whoever may read the events.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::routes::Reader;
use super::Events;
use studyhall_core::error::{ApiError, Problem};
use studyhall_core::http::extract::AppQuery;
use studyhall_log::integrate::{self, Receipt, TilePath};

/// The newest signed checkpoint (a C2SP signed note): origin, tree size, root hash, and
/// the log's Ed25519 signature under the origin.
#[utoipa::path(get, path = "/api/events/log/checkpoint", tag = "events", operation_id = "events_log_checkpoint", security((), ("bearer" = []), ("admin_token" = [])),
    responses(
        (status = 200, description = "The checkpoint", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 404, description = "No checkpoint is signed yet (no event, or no signing key)", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub(crate) async fn checkpoint(
    State(events): State<Events>,
    _: Reader,
) -> Result<Response, ApiError> {
    let Some((_, _, note)) = integrate::latest_checkpoint(&events.store.db()).await? else {
        return Err(ApiError::not_found(
            "No checkpoint of the log is signed yet: it is signed within a second of the first event, when a signing key is configured.",
        ));
    };
    Ok(text(note, "no-cache"))
}

/// A tile of the tree (C2SP `tlog-tiles`): `<L>/<N>[.p/<W>]`, the hashes concatenated.
/// Served once the tree holds all of its hashes; its content never changes.
pub(crate) async fn tile(
    State(events): State<Events>,
    _: Reader,
    Path(path): Path<String>,
) -> Result<Response, ApiError> {
    let Some(tile) = TilePath::parse(&path) else {
        return Err(ApiError::not_found(format!(
            "`tile/{path}` is not a tile: write tile/<level>/<index as x001/x234/067>[.p/<width 1-255>]. (Entry bundles are not served; read events by position with GET /api/events/export?after=.)"
        )));
    };
    match integrate::tile(&events.store.db(), tile).await? {
        Some(bytes) => Ok((
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
            ],
            bytes,
        )
            .into_response()),
        None => Err(ApiError::not_found(format!(
            "The tree has not grown over tile/{path} yet."
        ))),
    }
}

/// An event's receipt: a C2SP `tlog-proof` holding the event's entry (`extra`, the
/// canonical fields the README describes), its index in the tree, the inclusion proof,
/// and the signed checkpoint it leads to. Verifiable offline with the public key:
/// `studyhall audit verify --proof FILE`.
#[utoipa::path(get, path = "/api/events/{id}/proof", tag = "events", operation_id = "events_proof", security((), ("bearer" = []), ("admin_token" = [])),
    params(("id" = String, Path, format = "uuid", description = "The event's id")),
    responses(
        (status = 200, description = "The receipt", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 404, description = "No event has this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Stored, not yet in a signed checkpoint (`Retry-After` says when to ask again); or altered since it was logged", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub(crate) async fn proof(
    State(events): State<Events>,
    _: Reader,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let Ok(id) = uuid::Uuid::try_parse(&id) else {
        return Err(ApiError::not_found(format!("No event has the id `{id}`.")));
    };
    match integrate::receipt(&events.store.db(), id).await? {
        Receipt::Proof(proof) => Ok(text(proof, "private, max-age=60")),
        Receipt::Unknown => Err(ApiError::not_found(format!("No event has the id `{id}`."))),
        Receipt::Altered => Err(ApiError::new(
            StatusCode::CONFLICT,
            "The stored log no longer proves this event against its signed checkpoint: the event or the tree's hashes were altered after it was logged.",
        )),
        Receipt::Pending => {
            let mut response = ApiError::new(
                StatusCode::CONFLICT,
                "The event is stored but not yet in a signed checkpoint; ask again in a second.",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Ok(response)
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConsistencyParams {
    /// The smaller tree size.
    old: u64,
    /// The larger tree size, at most the tree's.
    new: u64,
}

/// A consistency proof (RFC 6962 §2.1.2) as base64 hashes.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Consistency {
    old: u64,
    new: u64,
    proof: Vec<String>,
}

/// The proof that the tree of `old` entries is a prefix of the tree of `new`.
#[utoipa::path(get, path = "/api/events/log/consistency", tag = "events", operation_id = "events_log_consistency", security((), ("bearer" = []), ("admin_token" = [])),
    params(ConsistencyParams),
    responses(
        (status = 200, description = "The proof", body = Consistency),
        (status = 400, description = "`old` above `new`, or `new` above the tree's size", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub(crate) async fn consistency(
    State(events): State<Events>,
    _: Reader,
    AppQuery(params): AppQuery<ConsistencyParams>,
) -> Result<Json<Consistency>, ApiError> {
    let proof = integrate::consistency(&events.store.db(), params.old, params.new)
        .await?
        .map_err(|err| ApiError::bad_request(format!("No consistency proof: {err}.")))?;
    Ok(Json(Consistency {
        old: params.old,
        new: params.new,
        proof: proof.iter().map(|hash| STANDARD.encode(hash)).collect(),
    }))
}

/// A plain-text answer with its caching rule.
pub(crate) fn text(body: String, cache: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response()
}
