//! An event's receipt: a C2SP `tlog-proof` file, verifiable offline with the public
//! key alone.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <the event's canonical entry, base64>
//! index <its leaf index>
//! <inclusion proof, one base64 hash per line>
//!
//! <the signed checkpoint the proof leads to>
//! ```

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::VerifyingKey;

use super::note::Checkpoint;
use super::tree::{self, Hash};

const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A receipt's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The event's canonical entry (README, "Audit log"): what its leaf hashes.
    pub entry: Vec<u8>,
    pub index: u64,
    pub proof: Vec<Hash>,
    /// The checkpoint, a signed note, verbatim.
    pub note: String,
}

impl Receipt {
    pub fn text(&self) -> String {
        let head = format!(
            "{HEADER}\nextra {}\nindex {}\n",
            STANDARD.encode(&self.entry),
            self.index
        );
        crate::note::with_proof(head, &self.proof, &self.note)
    }

    pub fn parse(text: &str) -> Result<Receipt, String> {
        let (head, note) = text
            .split_once("\n\n")
            .ok_or("not a tlog-proof: no blank line before the checkpoint")?;
        let mut lines = head.lines();
        if lines.next() != Some(HEADER) {
            return Err(format!("not a tlog-proof: the first line is not {HEADER}"));
        }
        let entry = lines
            .next()
            .and_then(|line| line.strip_prefix("extra "))
            .and_then(|entry| STANDARD.decode(entry).ok())
            .ok_or("the second line is not `extra` and the event's entry in base64")?;
        let index = lines
            .next()
            .and_then(|line| line.strip_prefix("index "))
            .and_then(crate::note::decimal)
            .ok_or("the third line is not `index` and a decimal number")?;
        let proof = crate::note::hash_lines(lines)?;
        Ok(Receipt {
            entry,
            index,
            proof,
            note: note.to_owned(),
        })
    }

    /// The checkpoint, if `public` signed it and the entry is in the tree it states.
    pub fn verify(&self, public: &VerifyingKey) -> Result<Checkpoint, String> {
        let checkpoint = Checkpoint::open_any(&self.note, public)
            .map_err(|err| format!("the checkpoint: {err}"))?;
        tree::check_inclusion(
            &self.proof,
            self.index,
            checkpoint.size,
            &tree::leaf_hash(&self.entry),
            &checkpoint.root,
        )
        .map_err(|err| format!("the entry is not in the signed tree: {err}"))?;
        Ok(checkpoint)
    }
}

/// The fields of a canonical entry, in order: position, id, created_at (µs),
/// component, environment, email, message, data.
pub fn fields(entry: &[u8]) -> Option<Vec<String>> {
    let mut rest = entry;
    let mut out = Vec::with_capacity(8);
    while !rest.is_empty() {
        let (length, tail) = rest.split_first_chunk::<4>()?;
        let length = u32::from_be_bytes(*length) as usize;
        let (field, tail) = (tail.get(..length)?, tail.get(length..)?);
        out.push(String::from_utf8(field.to_vec()).ok()?);
        rest = tail;
    }
    (out.len() == 8).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{appended, inclusion_proof, leaf_hash, root, stored_index, Fetched};
    use ed25519_dalek::SigningKey;

    #[test]
    fn a_receipt_round_trips_and_verifies_only_as_issued() {
        let entries: Vec<Vec<u8>> = (0..5).map(|n| format!("entry {n}").into_bytes()).collect();
        let mut store = Fetched::default();
        for (n, entry) in entries.iter().enumerate() {
            let first = stored_index(0, n as u64);
            for (i, hash) in appended(&store, n as u64, leaf_hash(entry))
                .unwrap()
                .into_iter()
                .enumerate()
            {
                store.0.insert(first + i as u64, hash);
            }
        }
        let key = SigningKey::from_bytes(&[3; 32]);
        let checkpoint = Checkpoint {
            origin: "example.com/log".into(),
            size: 5,
            root: root(&store, 5).unwrap(),
        };
        let receipt = Receipt {
            entry: entries[3].clone(),
            index: 3,
            proof: inclusion_proof(&store, 3, 5).unwrap(),
            note: checkpoint.sign(&key),
        };
        let text = receipt.text();
        assert_eq!(Receipt::parse(&text), Ok(receipt.clone()));
        assert_eq!(receipt.verify(&key.verifying_key()), Ok(checkpoint));
        let other = Receipt {
            entry: b"entry 4".to_vec(),
            ..receipt.clone()
        };
        assert!(other.verify(&key.verifying_key()).is_err(), "another entry");
        let stranger = SigningKey::from_bytes(&[4; 32]);
        assert!(
            receipt.verify(&stranger.verifying_key()).is_err(),
            "another key"
        );
        for broken in [
            "",
            "c2sp.org/tlog-proof@v1\n\n",
            &text.replacen("index 3", "index 03", 1),
        ] {
            assert!(Receipt::parse(broken).is_err(), "{broken:?}");
        }
    }

    #[test]
    fn an_entry_reads_back_as_its_fields() {
        let entry = crate::chain::Entry {
            position: 7,
            id: uuid::Uuid::nil(),
            created_at: studyhall_core::clock::Micros(5),
            component: "c",
            environment: "e",
            email: "a@b.io",
            message: "m",
            data: "{\"k\": 1}",
        };
        let fields = fields(&entry.canonical()).unwrap();
        assert_eq!(fields[0], "7");
        assert_eq!(fields[7], "{\"k\": 1}");
        assert_eq!(super::fields(b"\0\0\0\x05ab"), None);
    }
}
