//! This deployment as a witness of other logs (C2SP `tlog-witness`):
//! `POST /api/witness/add-checkpoint` cosigns a log's checkpoint when it extends the
//! one cosigned last; `GET /api/witness` answers the witness's `vkey`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::tree::text;
use super::Events;
use studyhall_core::clock::Clock;
use studyhall_core::config::AuditSettings;
use studyhall_core::error::ApiError;
use studyhall_core::http::extract::AppBody;
use studyhall_log::witness::{AddCheckpoint, Refusal, Witness};

/// The witness and the clock its cosignatures are timestamped by.
#[derive(Debug)]
pub(crate) struct Witnessing {
    witness: Witness,
    clock: Clock,
}

/// The witness the settings describe, if they give it a key.
pub(crate) fn configured(
    audit: &AuditSettings,
    clock: Clock,
) -> anyhow::Result<Option<Arc<Witnessing>>> {
    let Some(secret) = &audit.witness_key else {
        return Ok(None);
    };
    let witness = Witness::configure(
        secret.expose(),
        audit.witness_name.clone(),
        &audit.witness_logs,
    )
    .map_err(|why| anyhow::anyhow!("STUDYHALL_WITNESS_KEY / STUDYHALL_WITNESS_LOGS: {why}"))?;
    Ok(Some(Arc::new(Witnessing { witness, clock })))
}

fn not_a_witness() -> ApiError {
    ApiError::not_found(
        "This deployment is not a witness: set STUDYHALL_WITNESS_KEY and STUDYHALL_WITNESS_LOGS.",
    )
}

/// The witness's verifier key, for the logs that ask it to cosign.
pub(crate) async fn vkey(State(events): State<Events>) -> Result<Response, ApiError> {
    let witnessing = events.witness.as_ref().ok_or_else(not_a_witness)?;
    Ok(text(
        format!("{}\n", witnessing.witness.vkey().text()),
        "no-cache",
    ))
}

/// `add-checkpoint`, answered as the spec says: 200 with the cosignature line, 400,
/// 403, 404, 409 (`text/x.tlog.size`: the size cosigned last) or 422.
pub(crate) async fn add_checkpoint(
    State(events): State<Events>,
    AppBody(body): AppBody,
) -> Result<Response, ApiError> {
    let witnessing = events.witness.as_ref().ok_or_else(not_a_witness)?;
    let request = std::str::from_utf8(&body)
        .map_err(|_| "the body is not UTF-8".to_owned())
        .and_then(AddCheckpoint::parse)
        .map_err(|why| ApiError::bad_request(format!("Not an add-checkpoint request: {why}.")))?;
    let now = witnessing.clock.now();
    let answer = witnessing
        .witness
        .add_checkpoint(&events.store.db(), &request, now)
        .await?;
    match answer {
        Ok(line) => Ok(text(line, "no-store")),
        Err(Refusal::Conflict { size }) => Ok((
            StatusCode::CONFLICT,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/x.tlog.size"),
            )],
            format!("{size}\n"),
        )
            .into_response()),
        Err(Refusal::Malformed(why)) => Err(ApiError::bad_request(format!(
            "Not a checkpoint this witness can read: {why}."
        ))),
        Err(Refusal::UnknownLog(origin)) => Err(ApiError::not_found(format!(
            "This witness does not witness the log `{origin}`."
        ))),
        Err(Refusal::Unsigned(origin)) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("No key this witness trusts for `{origin}` signed the checkpoint."),
        )),
        Err(Refusal::Inconsistent(why)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("The checkpoint does not extend the one this witness cosigned last: {why}."),
        )),
    }
}
