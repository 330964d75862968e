//! Witnesses (C2SP `tlog-witness`, `tlog-cosignature`): independent parties that
//! cosign a log's checkpoint only when it extends the last one they cosigned, so that
//! a rewritten or forked history cannot gather their signatures.
//!
//! Both sides are here: the request a log sends (`add-checkpoint`: the old size, the
//! consistency proof from it, the checkpoint), the judgement a witness makes of it, and
//! the Ed25519 cosignature (type 0x04) over `cosignature/v1\ntime T\n` and the
//! checkpoint's text.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use super::note::{self, Checkpoint};
use super::tree::{self, Hash};

/// The signature type byte of Ed25519 cosignatures.
const COSIGNATURE: u8 = 0x04;
/// The signature type byte of a log's Ed25519 checkpoint signatures.
const ED25519: u8 = 0x01;
/// Consistency proof lines a request may carry, at most (the spec's bound).
const MAX_PROOF: usize = 63;

/// A public key as a `vkey`: `name+hex key ID+base64(type ‖ key)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vkey {
    pub name: String,
    pub kind: u8,
    pub key: VerifyingKey,
}

impl Vkey {
    pub fn parse(text: &str) -> Result<Vkey, String> {
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("`{text}` is not a vkey (name+key ID+key)"));
        };
        if !note::is_valid_name(name) {
            return Err(format!("`{name}` is not a key name"));
        }
        let bytes = STANDARD
            .decode(key)
            .map_err(|_| format!("the key of `{name}` is not base64"))?;
        let (kind, key) = bytes
            .split_first()
            .ok_or_else(|| format!("the key of `{name}` is empty"))?;
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| format!("the key of `{name}` is not a 32-byte Ed25519 key"))?;
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| format!("the key of `{name}` is not an Ed25519 point"))?;
        let vkey = Vkey {
            name: name.to_owned(),
            kind: *kind,
            key,
        };
        if id != crate::chain::hex(&vkey.key_id()) {
            return Err(format!("the key ID of `{name}` does not match its key"));
        }
        Ok(vkey)
    }

    pub fn key_id(&self) -> [u8; 4] {
        key_id(&self.name, self.kind, &self.key)
    }

    pub fn text(&self) -> String {
        let mut typed = vec![self.kind];
        typed.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            crate::chain::hex(&self.key_id()),
            STANDARD.encode(typed)
        )
    }

    /// A log's checkpoint key.
    pub fn log(name: &str, key: VerifyingKey) -> Vkey {
        Vkey {
            name: name.to_owned(),
            kind: ED25519,
            key,
        }
    }

    /// A witness's cosigning key.
    pub fn witness(name: &str, key: VerifyingKey) -> Vkey {
        Vkey {
            name: name.to_owned(),
            kind: COSIGNATURE,
            key,
        }
    }
}

fn key_id(name: &str, kind: u8, key: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', kind]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn cosigned_message(text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{text}")
}

/// The cosignature line of `key` (named `name`) on the checkpoint `text`, at
/// `timestamp` (POSIX seconds).
pub fn cosign(key: &SigningKey, name: &str, text: &str, timestamp: u64) -> String {
    let signature = key.sign(cosigned_message(text, timestamp).as_bytes());
    let mut bytes = key_id(name, COSIGNATURE, &key.verifying_key()).to_vec();
    bytes.extend_from_slice(&timestamp.to_be_bytes());
    bytes.extend_from_slice(&signature.to_bytes());
    format!("\u{2014} {name} {}\n", STANDARD.encode(bytes))
}

/// The timestamp of `witness`'s cosignature in `note`, if it cosigned the note's text.
pub fn cosigned_at(note_text: &str, signatures: &note::Note<'_>, witness: &Vkey) -> Option<u64> {
    let id = witness.key_id();
    signatures
        .signatures
        .iter()
        .find_map(|(name, signer, bytes)| {
            if *name != witness.name || *signer != id || bytes.len() != 8 + 64 {
                return None;
            }
            let timestamp = u64::from_be_bytes(bytes[..8].try_into().ok()?);
            let signature = Signature::from_slice(&bytes[8..]).ok()?;
            witness
                .key
                .verify(
                    cosigned_message(note_text, timestamp).as_bytes(),
                    &signature,
                )
                .ok()
                .map(|()| timestamp)
        })
}

/// An `add-checkpoint` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    pub old: u64,
    pub proof: Vec<Hash>,
    /// The checkpoint, a signed note.
    pub note: String,
}

impl AddCheckpoint {
    pub fn text(&self) -> String {
        note::with_proof(format!("old {}\n", self.old), &self.proof, &self.note)
    }

    pub fn parse(body: &str) -> Result<AddCheckpoint, String> {
        let (head, note) = body
            .split_once("\n\n")
            .ok_or("no empty line before the checkpoint")?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|line| line.strip_prefix("old "))
            .and_then(note::decimal)
            .ok_or("the first line is not `old` and a decimal size")?;
        let proof = note::hash_lines(lines)?;
        if proof.len() > MAX_PROOF {
            return Err(format!("more than {MAX_PROOF} consistency proof lines"));
        }
        Ok(AddCheckpoint {
            old,
            proof,
            note: note.to_owned(),
        })
    }
}

/// Why a witness does not cosign, as the spec answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 400: unreadable, or the old size above the checkpoint's.
    Malformed(String),
    /// 404: no log with this origin is witnessed here.
    UnknownLog(String),
    /// 403: no trusted key of the log signed the checkpoint.
    Unsigned(String),
    /// 409: the old size is not the size last cosigned (given), or the same size with
    /// another root.
    Conflict { size: u64 },
    /// 422: the consistency proof does not prove the checkpoint extends the last one.
    Inconsistent(String),
}

/// The latest checkpoint a witness cosigned for one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub size: u64,
    pub root: Hash,
}

/// Judges a request against the logs witnessed (`logs`) and what was cosigned last for
/// its origin (`seen`, looked up by the caller under the lock it updates it under): the
/// checkpoint to cosign, or why not.
pub fn judge(
    request: &AddCheckpoint,
    logs: &[Vkey],
    seen: impl FnOnce(&str) -> Option<Seen>,
) -> Result<Checkpoint, Refusal> {
    let parsed = note::parse(&request.note).map_err(|err| Refusal::Malformed(err.to_string()))?;
    let checkpoint =
        Checkpoint::parse(parsed.text).map_err(|err| Refusal::Malformed(err.to_string()))?;
    let keys: Vec<&Vkey> = logs
        .iter()
        .filter(|log| log.name == checkpoint.origin && log.kind == ED25519)
        .collect();
    if keys.is_empty() {
        return Err(Refusal::UnknownLog(checkpoint.origin));
    }
    if !keys
        .iter()
        .any(|log| note::open(&request.note, &log.name, &log.key).is_ok())
    {
        return Err(Refusal::Unsigned(checkpoint.origin));
    }
    if request.old > checkpoint.size {
        return Err(Refusal::Malformed(format!(
            "old size {} is above the checkpoint's size {}",
            request.old, checkpoint.size
        )));
    }
    let last = seen(&checkpoint.origin);
    let last_size = last.map_or(0, |last| last.size);
    if request.old != last_size {
        return Err(Refusal::Conflict { size: last_size });
    }
    match last {
        None => {
            if !request.proof.is_empty() {
                return Err(Refusal::Inconsistent(
                    "a proof from size 0 must be empty".into(),
                ));
            }
        }
        Some(last) if last.size == checkpoint.size => {
            if last.root != checkpoint.root {
                return Err(Refusal::Conflict { size: last.size });
            }
        }
        Some(last) => tree::check_consistency(
            &request.proof,
            last.size,
            checkpoint.size,
            &last.root,
            &checkpoint.root,
        )
        .map_err(|err| Refusal::Inconsistent(err.to_string()))?,
    }
    Ok(checkpoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{appended, consistency_proof, leaf_hash, root, stored_index, Fetched};

    const ORIGIN: &str = "example.com/log";

    fn store(leaves: u64, salt: &str) -> Fetched {
        let mut store = Fetched::default();
        for n in 0..leaves {
            let first = stored_index(0, n);
            let leaf = leaf_hash(format!("{salt}{n}").as_bytes());
            for (i, hash) in appended(&store, n, leaf).unwrap().into_iter().enumerate() {
                store.0.insert(first + i as u64, hash);
            }
        }
        store
    }

    fn checkpoint(store: &Fetched, size: u64, key: &SigningKey) -> String {
        Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: root(store, size).unwrap(),
        }
        .sign(key)
    }

    #[test]
    fn vkeys_round_trip_and_match_the_other_implementation() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let vkey = Vkey::log(ORIGIN, key.verifying_key());
        assert_eq!(
            vkey.text(),
            signed_note::new_ed25519_verifier_key(ORIGIN, &key.verifying_key())
        );
        assert_eq!(Vkey::parse(&vkey.text()), Ok(vkey.clone()));
        let tampered = vkey.text().replacen('+', "+0", 1);
        assert!(Vkey::parse(&tampered).is_err());
    }

    #[test]
    fn a_witness_cosigns_only_what_extends_what_it_cosigned() {
        let log = SigningKey::from_bytes(&[1; 32]);
        let logs = [Vkey::log(ORIGIN, log.verifying_key())];
        let honest = store(20, "e");
        let at = |size| Seen {
            size,
            root: root(&honest, size).unwrap(),
        };
        let request = |old, size, store: &Fetched| AddCheckpoint {
            old,
            proof: consistency_proof(store, old, size).unwrap(),
            note: checkpoint(store, size, &log),
        };
        // First sight: old 0, empty proof.
        assert!(judge(&request(0, 7, &honest), &logs, |_| None).is_ok());
        // An extension with its proof.
        assert!(judge(&request(7, 20, &honest), &logs, |_| Some(at(7))).is_ok());
        // A stale old size: 409 with the size seen.
        assert_eq!(
            judge(&request(3, 20, &honest), &logs, |_| Some(at(7))),
            Err(Refusal::Conflict { size: 7 })
        );
        // A rewritten history, signed by the log's own key, with a proof of its own.
        let forged = store(20, "f");
        let rewritten = AddCheckpoint {
            old: 7,
            proof: consistency_proof(&forged, 7, 20).unwrap(),
            note: checkpoint(&forged, 20, &log),
        };
        assert!(matches!(
            judge(&rewritten, &logs, |_| Some(at(7))),
            Err(Refusal::Inconsistent(_))
        ));
        // The same size with another root.
        let fork = AddCheckpoint {
            old: 7,
            proof: vec![],
            note: checkpoint(&forged, 7, &log),
        };
        assert_eq!(
            judge(&fork, &logs, |_| Some(at(7))),
            Err(Refusal::Conflict { size: 7 })
        );
        // Unknown origin, a key it does not trust, an old size above the size.
        assert!(matches!(
            judge(&request(0, 7, &honest), &[], |_| None),
            Err(Refusal::UnknownLog(_))
        ));
        let stranger = SigningKey::from_bytes(&[2; 32]);
        let unsigned = AddCheckpoint {
            old: 0,
            proof: vec![],
            note: checkpoint(&honest, 7, &stranger),
        };
        assert!(matches!(
            judge(&unsigned, &logs, |_| None),
            Err(Refusal::Unsigned(_))
        ));
        let above = AddCheckpoint {
            old: 9,
            proof: vec![],
            note: checkpoint(&honest, 7, &log),
        };
        assert!(matches!(
            judge(&above, &logs, |_| Some(at(9))),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn requests_and_cosignatures_read_back() {
        let log = SigningKey::from_bytes(&[1; 32]);
        let honest = store(9, "e");
        let request = AddCheckpoint {
            old: 4,
            proof: consistency_proof(&honest, 4, 9).unwrap(),
            note: checkpoint(&honest, 9, &log),
        };
        assert_eq!(AddCheckpoint::parse(&request.text()), Ok(request.clone()));
        assert!(AddCheckpoint::parse("old 04\n\nx").is_err());
        let witness = SigningKey::from_bytes(&[9; 32]);
        let vkey = Vkey::witness("witness.example/w1", witness.verifying_key());
        let text = note::parse(&request.note).unwrap().text.to_owned();
        let line = cosign(&witness, &vkey.name, &text, 1_700_000_000);
        let cosigned = format!("{}{line}", request.note);
        let parsed = note::parse(&cosigned).unwrap();
        assert_eq!(cosigned_at(&text, &parsed, &vkey), Some(1_700_000_000));
        let other = Vkey::witness(
            "witness.example/w1",
            SigningKey::from_bytes(&[8; 32]).verifying_key(),
        );
        assert_eq!(cosigned_at(&text, &parsed, &other), None);
        // The log's own key still opens the cosigned note.
        assert!(Checkpoint::open(&cosigned, ORIGIN, &log.verifying_key()).is_ok());
    }
}

/// A witness: its key and name, and the logs whose checkpoints it cosigns.
#[derive(Debug, Clone)]
pub struct Witness {
    pub key: SigningKey,
    pub name: String,
    pub logs: Vec<Vkey>,
}

impl Witness {
    /// A witness from its seed (base64 of 32 bytes), name (else the default) and the
    /// vkeys of the logs it witnesses.
    pub fn configure(seed: &str, name: Option<String>, logs: &[String]) -> Result<Witness, String> {
        let seed: [u8; 32] = STANDARD
            .decode(seed.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or("the witness key must be a 32-byte Ed25519 seed in base64 (`studyhall audit new-key` makes one)")?;
        let key = SigningKey::from_bytes(&seed);
        let logs = logs
            .iter()
            .filter(|text| !text.trim().is_empty())
            .map(|text| Vkey::parse(text))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Witness {
            name: name.unwrap_or_else(|| Witness::default_name(&key)),
            key,
            logs,
        })
    }

    /// The name a witness cosigns under when none is configured.
    pub fn default_name(key: &SigningKey) -> String {
        let digest = Sha256::digest(key.verifying_key().as_bytes());
        format!(
            "studyhall.invalid/witness/{}",
            crate::chain::hex(&digest[..8])
        )
    }

    pub fn vkey(&self) -> Vkey {
        Vkey::witness(&self.name, self.key.verifying_key())
    }

    /// Handles `add-checkpoint`: the cosignature line, or why not. Checking against the
    /// checkpoint cosigned last and replacing it are one compare-and-set, so two
    /// requests at once can never roll the stored size back.
    pub async fn add_checkpoint(
        &self,
        db: &studyhall_core::db::Db,
        request: &AddCheckpoint,
        now: studyhall_core::clock::Micros,
    ) -> Result<Result<String, Refusal>, sqlx::Error> {
        use studyhall_core::sql::Sql;
        let origin = note::parse(&request.note)
            .ok()
            .and_then(|parsed| Checkpoint::parse(parsed.text).ok())
            .map(|checkpoint| checkpoint.origin)
            .unwrap_or_default();
        let seen = self::seen(db, &origin).await?;
        let checkpoint = match judge(request, &self.logs, |_| seen) {
            Ok(checkpoint) => checkpoint,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let changed = match seen {
            None => {
                Sql::new(
                    "INSERT INTO witness_checkpoints (origin, size, root, note, cosigned_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (origin) DO NOTHING",
                )
                .bind(checkpoint.origin.as_str())
                .bind(checkpoint.size as i64)
                .bind(&checkpoint.root[..])
                .bind(request.note.as_str())
                .bind(now)
                .execute(db)
                .await?
            }
            Some(last) => Sql::new(
                "UPDATE witness_checkpoints SET size = $1, root = $2, note = $3, cosigned_at = $4
                 WHERE origin = $5 AND size = $6 AND root = $7",
            )
            .bind(checkpoint.size as i64)
            .bind(&checkpoint.root[..])
            .bind(request.note.as_str())
            .bind(now)
            .bind(checkpoint.origin.as_str())
            .bind(last.size as i64)
            .bind(&last.root[..])
            .execute(db)
            .await?,
        };
        if changed == 0 {
            // Another request moved it first.
            let size = self::seen(db, &origin).await?.map_or(0, |seen| seen.size);
            return Ok(Err(Refusal::Conflict { size }));
        }
        let text = checkpoint.text();
        let seconds = u64::try_from(now.0 / 1_000_000).unwrap_or(0);
        Ok(Ok(cosign(&self.key, &self.name, &text, seconds)))
    }
}

/// What a witness cosigned last for `origin`.
async fn seen(db: &studyhall_core::db::Db, origin: &str) -> Result<Option<Seen>, sqlx::Error> {
    let row: Option<(i64, Vec<u8>)> = studyhall_core::sql::Sql::new(
        "SELECT size, root FROM witness_checkpoints WHERE origin = $1",
    )
    .bind(origin)
    .fetch_optional(db)
    .await?;
    row.map(|(size, root)| {
        let root = Hash::try_from(root)
            .map_err(|_| sqlx::Error::Decode("a witnessed root that is not 32 bytes".into()))?;
        Ok(Seen {
            size: size.max(0) as u64,
            root,
        })
    })
    .transpose()
}
