//! The Ed25519 key that signs checkpoints and retention markers, and the exact text
//! each signature covers (README, "Audit log").

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use studyhall_core::clock::Micros;
use studyhall_core::sensitive::{DatabaseUrl, Secret};

/// A signed statement about the chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Statement {
    /// The chain hash at `position`.
    Checkpoint {
        position: i64,
        hash: String,
        signed_at_us: Micros,
        signature: String,
    },
    /// Positions `first_position..=position` were removed by the retention policy;
    /// `hash` is the chain hash at `position`, where the remaining log continues.
    Retention {
        first_position: i64,
        position: i64,
        hash: String,
        /// The policy's cutoff, and the time a signed checkpoint says every removed
        /// event was chained by (before the cutoff). Absent on older markers.
        #[serde(flatten, skip_serializing_if = "Option::is_none", default)]
        window: Option<Window>,
        signed_at_us: Micros,
        signature: String,
    },
}

/// Why a retention marker's range was old enough to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    pub cutoff_us: Micros,
    pub chained_by_us: Micros,
}

impl Statement {
    pub fn position(&self) -> i64 {
        match self {
            Statement::Checkpoint { position, .. } | Statement::Retention { position, .. } => {
                *position
            }
        }
    }

    pub fn hash(&self) -> &str {
        match self {
            Statement::Checkpoint { hash, .. } | Statement::Retention { hash, .. } => hash,
        }
    }

    fn signature(&self) -> &str {
        match self {
            Statement::Checkpoint { signature, .. } | Statement::Retention { signature, .. } => {
                signature
            }
        }
    }

    /// The text the signature covers.
    pub fn signed_text(&self) -> String {
        match self {
            Statement::Checkpoint {
                position,
                hash,
                signed_at_us,
                ..
            } => format!(
                "studyhall audit checkpoint\nposition {position}\nhash {hash}\nsigned_at {}\n",
                signed_at_us.0
            ),
            Statement::Retention {
                first_position,
                position,
                hash,
                window,
                signed_at_us,
                ..
            } => {
                let window = window.map_or(String::new(), |window| {
                    format!(
                        "cutoff {}\nchained_by {}\n",
                        window.cutoff_us.0, window.chained_by_us.0
                    )
                });
                format!(
                    "studyhall audit retention\nfirst_position {first_position}\nposition {position}\nhash {hash}\n{window}signed_at {}\n",
                    signed_at_us.0
                )
            }
        }
    }

    /// Whether `key` signed exactly this statement.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let Ok(bytes) = STANDARD.decode(self.signature()) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(&bytes) else {
            return false;
        };
        key.verify(self.signed_text().as_bytes(), &signature)
            .is_ok()
    }
}

/// The signing key of this deployment.
#[derive(Clone)]
pub struct AuditKey(SigningKey);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey(public {})", self.public_text())
    }
}

impl AuditKey {
    /// The configured key; else, with SQLite, the one kept beside the database file
    /// (generated on first use, readable only by its owner); else none.
    pub fn load(
        configured: Option<&Secret>,
        database: &DatabaseUrl,
    ) -> anyhow::Result<Option<AuditKey>> {
        if let Some(secret) = configured {
            return parse_private(secret.expose())
                .map(Some)
                .map_err(|why| anyhow::anyhow!("STUDYHALL_AUDIT_SIGNING_KEY {why}"));
        }
        let Some(path) = key_path(database) else {
            return Ok(None);
        };
        let text = studyhall_core::sensitive::kept_in_file(
            &path,
            "the audit signing key",
            |text| parse_private(text).is_ok(),
            || Ok(AuditKey::generate()?.private_text()),
        )?;
        parse_private(&text)
            .map(Some)
            .map_err(|why| anyhow::anyhow!("{} {why}", path.display()))
    }

    pub fn generate() -> anyhow::Result<AuditKey> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|err| anyhow::anyhow!("no randomness for a key: {err}"))?;
        Ok(AuditKey(SigningKey::from_bytes(&seed)))
    }

    /// The 32-byte seed, base64: what `STUDYHALL_AUDIT_SIGNING_KEY` holds.
    pub fn private_text(&self) -> String {
        STANDARD.encode(self.0.to_bytes())
    }

    /// The 32-byte public key, base64: what `studyhall audit public-key` prints.
    pub fn public_text(&self) -> String {
        STANDARD.encode(self.0.verifying_key().to_bytes())
    }

    /// `checkpoint` as a C2SP signed note, signed under its origin.
    pub fn sign_checkpoint(&self, checkpoint: &crate::note::Checkpoint) -> String {
        checkpoint.sign(&self.0)
    }

    /// The name checkpoints are signed under when the deployment names none.
    pub fn default_origin(&self) -> String {
        crate::note::default_name("log", &self.public())
    }

    pub fn public(&self) -> VerifyingKey {
        self.0.verifying_key()
    }

    pub fn checkpoint(&self, position: i64, hash: &str, at: Micros) -> Statement {
        self.signed(Statement::Checkpoint {
            position,
            hash: hash.to_owned(),
            signed_at_us: at,
            signature: String::new(),
        })
    }

    pub fn retention(
        &self,
        (first_position, position): (i64, i64),
        hash: &str,
        window: Option<Window>,
        at: Micros,
    ) -> Statement {
        self.signed(Statement::Retention {
            first_position,
            position,
            hash: hash.to_owned(),
            window,
            signed_at_us: at,
            signature: String::new(),
        })
    }

    fn signed(&self, mut statement: Statement) -> Statement {
        let signature = STANDARD.encode(self.0.sign(statement.signed_text().as_bytes()).to_bytes());
        match &mut statement {
            Statement::Checkpoint { signature: s, .. }
            | Statement::Retention { signature: s, .. } => *s = signature,
        }
        statement
    }
}

/// A 32-byte seed in base64 (what `studyhall audit new-key` prints) or as 64 hex
/// digits (what a secret generator without base64 makes).
fn parse_private(text: &str) -> Result<AuditKey, String> {
    let text = text.trim();
    let bytes = if let Ok(seed) = super::chain::decode_hex(text) {
        seed.to_vec()
    } else {
        STANDARD.decode(text).map_err(|_| {
            "is neither base64 nor 64 hex digits (make one with `studyhall audit new-key`)"
                .to_owned()
        })?
    };
    let seed: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| {
        format!(
            "must be a 32-byte Ed25519 seed in base64; it decodes to {} bytes",
            bytes.len()
        )
    })?;
    Ok(AuditKey(SigningKey::from_bytes(&seed)))
}

/// A public key as `studyhall audit public-key` prints it (base64 of 32 bytes).
pub fn parse_public(text: &str) -> Result<VerifyingKey, String> {
    let bytes = STANDARD.decode(text.trim()).map_err(|_| {
        "the public key is not base64 (as `studyhall audit public-key` prints it)".to_owned()
    })?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| {
        format!(
            "the public key must be 32 bytes; it decodes to {}",
            bytes.len()
        )
    })?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| "the public key is not an Ed25519 point".to_owned())
}

/// `sqlite://dir/studyhall.db` → `dir/studyhall.db.audit-key`.
fn key_path(database: &DatabaseUrl) -> Option<PathBuf> {
    let file = database.sqlite_file()?;
    Some(PathBuf::from(format!("{}.audit-key", file.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_statement_verifies_and_any_change_breaks_it() {
        let key = AuditKey::generate().unwrap();
        let hash = "ab".repeat(32);
        let statement = key.checkpoint(10, &hash, Micros(5));
        assert!(statement.verify(&key.public()));
        let other = AuditKey::generate().unwrap();
        assert!(!statement.verify(&other.public()));
        let Statement::Checkpoint { signature, .. } = &statement else {
            unreachable!()
        };
        let moved = Statement::Checkpoint {
            position: 11,
            hash: hash.clone(),
            signed_at_us: Micros(5),
            signature: signature.clone(),
        };
        assert!(!moved.verify(&key.public()));
        let marker = key.retention((1, 10), &hash, None, Micros(5));
        assert!(marker.verify(&key.public()));
        assert_ne!(marker.signed_text(), statement.signed_text());
        // A marker's window is signed: another cutoff does not verify.
        let window = Window {
            cutoff_us: Micros(100),
            chained_by_us: Micros(90),
        };
        let marker = key.retention((1, 10), &hash, Some(window), Micros(5));
        assert!(marker.verify(&key.public()));
        assert!(marker.signed_text().contains("cutoff 100\nchained_by 90\n"));
        let Statement::Retention { signature, .. } = &marker else {
            unreachable!()
        };
        let widened = Statement::Retention {
            first_position: 1,
            position: 10,
            hash: hash.clone(),
            window: Some(Window {
                cutoff_us: Micros(200),
                ..window
            }),
            signed_at_us: Micros(5),
            signature: signature.clone(),
        };
        assert!(!widened.verify(&key.public()));
    }

    #[test]
    fn keys_round_trip_through_their_text() {
        let key = AuditKey::generate().unwrap();
        let again = parse_private(&key.private_text()).unwrap();
        assert_eq!(again.public_text(), key.public_text());
        assert_eq!(parse_public(&key.public_text()).unwrap(), key.public());
        assert!(parse_private("not base64!").is_err());
        let hex = "0123456789abcdef".repeat(4);
        let from_hex = parse_private(&hex).unwrap();
        assert_eq!(from_hex.0.to_bytes()[..2], [0x01, 0x23]);
        assert!(parse_private(&STANDARD.encode([1u8; 16])).is_err());
        assert!(parse_public(&STANDARD.encode([1u8; 31])).is_err());
    }

    #[test]
    fn a_generated_key_is_kept_beside_the_sqlite_file() {
        let dir = tempfile::tempdir().unwrap();
        let url: DatabaseUrl = format!("sqlite://{}", dir.path().join("a.db").display())
            .parse()
            .unwrap();
        let first = AuditKey::load(None, &url).unwrap().unwrap();
        let again = AuditKey::load(None, &url).unwrap().unwrap();
        assert_eq!(first.public_text(), again.public_text());
        assert!(dir.path().join("a.db.audit-key").exists());
        let postgres: DatabaseUrl = "postgres://db/x".parse().unwrap();
        assert!(AuditKey::load(None, &postgres).unwrap().is_none());
    }
}
