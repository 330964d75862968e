//! Checkpoints of the tree as C2SP signed notes (`signed-note`, `tlog-checkpoint`):
//!
//! ```text
//! <origin>
//! <tree size, decimal>
//! <root hash, base64>
//!
//! — <origin> base64(key ID ‖ Ed25519 signature of the three lines above)
//! ```
//!
//! The key ID is the first four bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key), and
//! the verifier key that auditors configure is `<name>+<key ID, hex>+base64(0x01 ‖
//! public key)`, as the Go checksum database and every C2SP verifier read it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use super::tree::Hash;

/// The signature type byte of Ed25519 in signed notes.
const ED25519: u8 = 0x01;
/// Signatures read from one note, at most (the spec asks for at least 16).
const MAX_SIGNATURES: usize = 64;

/// The key ID of `public` under `name`.
pub fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ED25519]);
    hasher.update(public.as_bytes());
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The verifier key text: `name+hex(key ID)+base64(0x01 ‖ public key)`.
pub fn verifier_key(name: &str, public: &VerifyingKey) -> String {
    let mut typed = vec![ED25519];
    typed.extend_from_slice(public.as_bytes());
    format!(
        "{name}+{}+{}",
        crate::chain::hex(&key_id(name, public)),
        STANDARD.encode(typed)
    )
}

/// A decimal number written as the C2SP formats write them: digits only, no leading
/// zero (but `0` itself).
pub fn decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// Lines of base64 SHA-256 hashes (a proof), in order.
pub fn hash_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Result<Vec<Hash>, String> {
    lines
        .map(|line| {
            STANDARD
                .decode(line)
                .ok()
                .and_then(|hash| Hash::try_from(hash).ok())
                .ok_or_else(|| format!("`{line}` is not a base64 SHA-256 hash"))
        })
        .collect()
}

/// `head` (its lines), a proof as base64 lines, an empty line, then a signed `note`:
/// the shape of a receipt and of a witness request.
pub fn with_proof(mut head: String, proof: &[Hash], note: &str) -> String {
    for hash in proof {
        head.push_str(&STANDARD.encode(hash));
        head.push('\n');
    }
    head.push('\n');
    head.push_str(note);
    head
}

/// The name a key signs under when the deployment names none: `kind` (`log`,
/// `witness`) and 16 hex digits of the public key's hash, under a domain that is never
/// registered, so it is unique to the key.
pub fn default_name(kind: &str, public: &VerifyingKey) -> String {
    let digest = Sha256::digest(public.as_bytes());
    format!(
        "studyhall.invalid/{kind}/{}",
        crate::chain::hex(&digest[..8])
    )
}

/// A name a key may have: non-empty, no spaces, no `+`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// `text` (ending in a newline) signed by `key` under `name`.
pub fn sign(text: &str, name: &str, key: &SigningKey) -> String {
    let signature = key.sign(text.as_bytes());
    let mut bytes = key_id(name, &key.verifying_key()).to_vec();
    bytes.extend_from_slice(&signature.to_bytes());
    format!("{text}\n\u{2014} {name} {}\n", STANDARD.encode(bytes))
}

/// Why a note was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("not a signed note: {0}")]
    Malformed(&'static str),
    #[error("the note carries no signature by {0}")]
    Unsigned(String),
    #[error("the signature by {0} does not verify: the note was altered or forged")]
    Forged(String),
}

/// A note's text and signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note<'a> {
    pub text: &'a str,
    /// (name, key ID, signature bytes) per line.
    pub signatures: Vec<(&'a str, [u8; 4], Vec<u8>)>,
}

/// Splits a signed note into its text and signatures.
pub fn parse(note: &str) -> Result<Note<'_>, NoteError> {
    if note.chars().any(|c| c.is_ascii_control() && c != '\n') {
        return Err(NoteError::Malformed(
            "a control character other than newline",
        ));
    }
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (text, lines) = (&note[..split + 1], &note[split + 2..]);
    let lines = lines
        .strip_suffix('\n')
        .ok_or(NoteError::Malformed("the last signature line does not end"))?;
    let mut signatures = Vec::new();
    for line in lines.split('\n') {
        if signatures.len() == MAX_SIGNATURES {
            return Err(NoteError::Malformed("too many signatures"));
        }
        let rest = line.strip_prefix("\u{2014} ").ok_or(NoteError::Malformed(
            "a signature line does not start with an em dash",
        ))?;
        let (name, encoded) = rest
            .split_once(' ')
            .ok_or(NoteError::Malformed("a signature line has no signature"))?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
        if !is_valid_name(name) || bytes.len() < 5 {
            return Err(NoteError::Malformed("a signature line's name or length"));
        }
        let id = [bytes[0], bytes[1], bytes[2], bytes[3]];
        signatures.push((name, id, bytes[4..].to_vec()));
    }
    Ok(Note { text, signatures })
}

/// The text of `note` if `public` under `name` signed it. Signatures by other keys
/// are ignored, as the spec says; one by this key that does not verify refuses the
/// note.
pub fn open<'a>(note: &'a str, name: &str, public: &VerifyingKey) -> Result<&'a str, NoteError> {
    let parsed = parse(note)?;
    let id = key_id(name, public);
    let mut signed = false;
    for (signer, signer_id, bytes) in &parsed.signatures {
        if *signer != name || *signer_id != id {
            continue;
        }
        let valid = Signature::from_slice(bytes)
            .is_ok_and(|signature| public.verify(parsed.text.as_bytes(), &signature).is_ok());
        if !valid {
            return Err(NoteError::Forged(name.to_owned()));
        }
        signed = true;
    }
    if signed {
        Ok(parsed.text)
    } else {
        Err(NoteError::Unsigned(name.to_owned()))
    }
}

/// A checkpoint's body: the log's origin, the tree's size and its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// Reads a checkpoint's text (extension lines after the root are allowed and
    /// ignored).
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|origin| !origin.is_empty())
            .ok_or(NoteError::Malformed("a checkpoint starts with its origin"))?;
        let size = lines.next().and_then(decimal).ok_or(NoteError::Malformed(
            "a checkpoint's second line is its size",
        ))?;
        let root = lines
            .next()
            .and_then(|root| STANDARD.decode(root).ok())
            .and_then(|root| Hash::try_from(root).ok())
            .ok_or(NoteError::Malformed(
                "a checkpoint's third line is its root hash",
            ))?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    /// Signed by `key`, under the origin as the key's name (the spec's convention).
    pub fn sign(&self, key: &SigningKey) -> String {
        sign(&self.text(), &self.origin, key)
    }

    /// The checkpoint `note` states, if `public` signed it under the origin the note
    /// names (for a verifier that knows the key but not the log's name).
    pub fn open_any(note: &str, public: &VerifyingKey) -> Result<Checkpoint, NoteError> {
        Checkpoint::open(note, note.lines().next().unwrap_or_default(), public)
    }

    /// The checkpoint `note` states, if the key of `origin` signed it.
    pub fn open(note: &str, origin: &str, public: &VerifyingKey) -> Result<Checkpoint, NoteError> {
        let checkpoint = Checkpoint::parse(open(note, origin, public)?)?;
        if checkpoint.origin != origin {
            return Err(NoteError::Malformed("the checkpoint names another origin"));
        }
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    const ORIGIN: &str = "example.com/studyhall";

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: ORIGIN.into(),
            size: 42,
            root: crate::tree::leaf_hash(b"x"),
        }
    }

    #[test]
    fn the_other_implementation_reads_our_keys_and_checkpoints() {
        let key = key();
        let vkey = verifier_key(ORIGIN, &key.verifying_key());
        assert_eq!(
            vkey,
            signed_note::new_ed25519_verifier_key(ORIGIN, &key.verifying_key())
        );
        let note = checkpoint().sign(&key);
        let verifier = signed_note::StandardVerifier::new(&vkey).unwrap();
        let parsed = signed_note::Note::from_bytes(note.as_bytes()).unwrap();
        let list = signed_note::VerifierList::new(vec![Box::new(verifier)]);
        let (verified, _) = parsed.verify(&list).unwrap();
        assert_eq!(verified.len(), 1);
        let theirs = tlog_tiles::Checkpoint::from_bytes(parsed.text()).unwrap();
        assert_eq!((theirs.origin(), theirs.size()), (ORIGIN, 42));
        assert_eq!(theirs.hash().0, checkpoint().root);
    }

    #[test]
    fn a_checkpoint_opens_only_with_its_key_and_unaltered() {
        let key = key();
        let note = checkpoint().sign(&key);
        assert_eq!(
            Checkpoint::open(&note, ORIGIN, &key.verifying_key()),
            Ok(checkpoint())
        );
        let other = SigningKey::from_bytes(&[8; 32]);
        assert_eq!(
            Checkpoint::open(&note, ORIGIN, &other.verifying_key()),
            Err(NoteError::Unsigned(ORIGIN.into()))
        );
        let altered = note.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(
            Checkpoint::open(&altered, ORIGIN, &key.verifying_key()),
            Err(NoteError::Forged(ORIGIN.into()))
        );
        // A second signature by an unknown key is ignored; the known one still counts.
        let cosigned = format!(
            "{note}{}",
            sign(&checkpoint().text(), "witness.example", &other)
                .split("\n\n")
                .nth(1)
                .unwrap()
        );
        assert_eq!(
            Checkpoint::open(&cosigned, ORIGIN, &key.verifying_key()),
            Ok(checkpoint())
        );
        for broken in [
            "",
            "no blank line\n",
            "a\n\n\u{2014} name !!!\n",
            "a\n\nnot a signature\n",
        ] {
            assert!(
                matches!(parse(broken), Err(NoteError::Malformed(_))),
                "{broken:?}"
            );
        }
    }
}
