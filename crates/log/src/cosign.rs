//! Asking witnesses to cosign the log's newest checkpoint (C2SP `tlog-witness`): each
//! gets the checkpoint with a consistency proof from the size it cosigned last, and
//! its cosignature is added to the published checkpoint.

use std::time::Duration;

use studyhall_core::db::Db;
use studyhall_core::sql::Sql;

use super::integrate;
use super::note;
use super::witness::{cosigned_at, AddCheckpoint, Vkey};

/// How long one witness may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A witness this log asks: its submission prefix and key, and the size it is known to
/// have cosigned last.
#[derive(Debug, Clone)]
pub struct Cosigner {
    pub url: String,
    pub vkey: Vkey,
    known: Option<u64>,
}

impl Cosigner {
    /// `<submission prefix URL> <vkey>`.
    pub fn parse(text: &str) -> Result<Cosigner, String> {
        let (url, vkey) = text
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("`{text}` is not `URL VKEY`"))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("`{url}` is not an http(s) URL"));
        }
        Ok(Cosigner {
            url: url.trim_end_matches('/').to_owned(),
            vkey: Vkey::parse(vkey)?,
            known: None,
        })
    }
}

/// Why a witness did not cosign.
#[derive(Debug, thiserror::Error)]
pub enum CosignError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Witness(String),
}

/// Asks `cosigner` to cosign the checkpoint of `size` (its note as stored), and adds
/// the cosignature to the stored note. One retry after a 409 that names the size the
/// witness holds.
pub async fn ask(
    db: &Db,
    client: &reqwest::Client,
    cosigner: &mut Cosigner,
    size: u64,
) -> Result<(), CosignError> {
    let Some((signed, _, stored)) = integrate::latest_checkpoint(db).await? else {
        return Ok(());
    };
    if signed != size {
        return Ok(());
    }
    // The log's own signature lines only: witnesses get the checkpoint as signed.
    let own = own_note(&stored, &cosigner.vkey);
    for _ in 0..2 {
        let old = cosigner.known.unwrap_or(0).min(size);
        let proof = integrate::consistency(db, old, size)
            .await?
            .map_err(|err| CosignError::Witness(format!("no proof from size {old}: {err}")))?;
        let body = AddCheckpoint {
            old,
            proof,
            note: own.clone(),
        }
        .text();
        let response = client
            .post(format!("{}/add-checkpoint", cosigner.url))
            .timeout(TIMEOUT)
            .body(body)
            .send()
            .await
            .map_err(|err| CosignError::Witness(format!("{}: {err}", cosigner.url)))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|err| CosignError::Witness(format!("{}: {err}", cosigner.url)))?;
        match status {
            200 => {
                let note_text = note::parse(&own)
                    .map_err(|err| CosignError::Witness(err.to_string()))?
                    .text
                    .to_owned();
                let lines: String = text
                    .lines()
                    .filter(|line| line.starts_with('\u{2014}'))
                    .map(|line| format!("{line}\n"))
                    .collect();
                let merged = format!("{stored}{lines}");
                let parsed =
                    note::parse(&merged).map_err(|err| CosignError::Witness(err.to_string()))?;
                if cosigned_at(&note_text, &parsed, &cosigner.vkey).is_none() {
                    return Err(CosignError::Witness(format!(
                        "{} answered without a valid cosignature by {}",
                        cosigner.url, cosigner.vkey.name
                    )));
                }
                Sql::new("UPDATE log_tree_checkpoints SET note = $1 WHERE size = $2")
                    .bind(merged.as_str())
                    .bind(size as i64)
                    .execute(db)
                    .await?;
                cosigner.known = Some(size);
                metrics::counter!("audit_cosignatures_total", "outcome" => "cosigned").increment(1);
                return Ok(());
            }
            409 => {
                let held: u64 = text.trim().parse().map_err(|_| {
                    CosignError::Witness(format!(
                        "{} refused with 409 and no size: {text}",
                        cosigner.url
                    ))
                })?;
                if held > size {
                    return Err(CosignError::Witness(format!(
                        "{} has cosigned size {held}, beyond this log's {size}: the log lost entries it had published",
                        cosigner.url
                    )));
                }
                cosigner.known = Some(held);
            }
            _ => {
                metrics::counter!("audit_cosignatures_total", "outcome" => "refused").increment(1);
                return Err(CosignError::Witness(format!(
                    "{} refused to cosign size {size} ({status}): {}",
                    cosigner.url,
                    text.trim()
                )));
            }
        }
    }
    Err(CosignError::Witness(format!(
        "{} kept answering 409",
        cosigner.url
    )))
}

/// The stored note without the cosignature lines of `witness` (and any other lines
/// after the log's own, which witnesses ignore anyway).
fn own_note(stored: &str, witness: &Vkey) -> String {
    let prefix = format!("\u{2014} {} ", witness.name);
    stored
        .split_inclusive('\n')
        .filter(|line| !line.starts_with(&prefix))
        .collect()
}
