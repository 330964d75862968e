//! Offline verification of a log, from a database or an export file, with only the
//! public key: chain continuity, every signature, that the events between checkpoints
//! hash to them, that the Merkle tree of the events has the root each tree checkpoint
//! signed (and a checkpoint the auditor kept, if given), and that something signed the
//! log at all.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;

use super::chain::GENESIS;
use super::key::Statement;
use super::note::Checkpoint;
use super::store::ChainedEvent;
use super::tree::{self, Hash};

/// The tree checks: where its leaves start, the roots its checkpoints signed, and a
/// checkpoint the auditor holds from before (`--trusted-checkpoint`).
#[derive(Debug, Clone, Default)]
pub struct TreeCheck {
    /// The position before leaf 0.
    pub base: i64,
    /// Root by size, from checkpoints whose signatures verified.
    pub roots: BTreeMap<u64, Hash>,
    pub trusted: Option<Checkpoint>,
}

/// The right edge of a tree being rebuilt leaf by leaf: its complete subtrees, largest
/// first, each with its level.
#[derive(Debug, Clone, Default)]
struct Edge {
    size: u64,
    subtrees: Vec<(u8, Hash)>,
}

impl Edge {
    fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut level = 0u8;
        while let Some((top, left)) = self.subtrees.last().copied() {
            if top != level {
                break;
            }
            self.subtrees.pop();
            hash = tree::node_hash(&left, &hash);
            level += 1;
        }
        self.subtrees.push((level, hash));
        self.size += 1;
    }

    fn root(&self) -> Hash {
        let mut parts = self.subtrees.iter().rev();
        let Some((_, last)) = parts.next() else {
            return tree::empty_root();
        };
        parts.fold(*last, |right, (_, left)| tree::node_hash(left, &right))
    }
}

/// What a verified log holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verified {
    pub events: u64,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub checkpoints: u64,
    /// Positions removed by the retention policy, as its signed markers state.
    pub removed: i64,
    /// Events after the last checkpoint: chained, but not yet covered by a signature.
    pub unsigned: i64,
    /// Tree checkpoints whose root the events were found to have.
    pub tree_checkpoints: u64,
    /// Why the tree was not rebuilt from the events, if it was not.
    pub tree_unchecked: Option<String>,
}

/// The first place the log is not what was signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("broken at position {position}: {reason}")]
pub struct Broken {
    pub position: i64,
    pub reason: String,
}

fn broken(position: i64, reason: impl Into<String>) -> Broken {
    Broken {
        position,
        reason: reason.into(),
    }
}

/// Checks one log. Feed it every statement first ([`Verifier::new`]), then the events
/// in chain order ([`Verifier::event`]), then [`Verifier::finish`].
pub struct Verifier {
    checkpoints: BTreeMap<i64, Statement>,
    tree: Option<(TreeCheck, Edge)>,
    next: i64,
    previous: String,
    /// The last position whose hash a checkpoint confirmed (or where the log starts).
    confirmed: i64,
    verified: Verified,
}

impl Verifier {
    pub fn new(key: &VerifyingKey, statements: Vec<Statement>) -> Result<Verifier, Broken> {
        let mut markers = Vec::new();
        let mut checkpoints = BTreeMap::new();
        for statement in statements {
            if !statement.verify(key) {
                return Err(broken(
                    statement.position(),
                    "a signed statement's signature does not verify with this public key (forged or altered)",
                ));
            }
            match statement {
                Statement::Retention { .. } => markers.push(statement),
                Statement::Checkpoint { position, .. } => {
                    checkpoints.insert(position, statement);
                }
            }
        }
        markers.sort_by_key(|marker| marker.position());
        markers.dedup();
        let mut next = 1;
        let mut previous = GENESIS.to_owned();
        for marker in &markers {
            let Statement::Retention {
                first_position,
                position,
                hash,
                ..
            } = marker
            else {
                continue;
            };
            if *first_position != next {
                return Err(broken(
                    next,
                    format!(
                        "positions {next}..{} are missing and no retention marker removes them",
                        first_position - 1
                    ),
                ));
            }
            next = position + 1;
            previous = hash.clone();
        }
        Ok(Verifier {
            checkpoints,
            tree: None,
            confirmed: next - 1,
            verified: Verified {
                removed: next - 1,
                ..Verified::default()
            },
            next,
            previous,
        })
    }

    /// Also rebuilds the Merkle tree from the events and checks it against `check`.
    pub fn with_tree(mut self, check: TreeCheck) -> Verifier {
        self.tree = Some((check, Edge::default()));
        self
    }

    /// Adds `event` to the rebuilt tree and checks the roots signed at its size.
    fn grow(&mut self, event: &ChainedEvent) -> Result<(), Broken> {
        let Some((check, edge)) = &mut self.tree else {
            return Ok(());
        };
        if event.position <= check.base {
            return Ok(());
        }
        if event.position != check.base + 1 + edge.size as i64 {
            // Retention removed leaves the tree holds: their hashes are not in the log.
            self.verified.tree_unchecked = Some(format!(
                "the tree's leaves start at position {} and positions before {} were removed",
                check.base + 1,
                event.position
            ));
            self.tree = None;
            return Ok(());
        }
        edge.push(tree::leaf_hash(&event.entry().canonical()));
        let size = edge.size;
        let signed = check.roots.get(&size).copied();
        let trusted = check
            .trusted
            .as_ref()
            .filter(|trusted| trusted.size == size)
            .map(|trusted| trusted.root);
        let checks = [
            (signed, "a tree checkpoint signed", 1),
            (trusted, "the trusted checkpoint holds", 0),
        ];
        for (root, what, counted) in checks {
            let Some(root) = root else { continue };
            if edge.root() != root {
                return Err(broken(
                    check.base + 1,
                    format!(
                        "the events up to position {} do not make the tree root {what} at size {size}: an event was altered, removed or reordered",
                        event.position
                    ),
                ));
            }
            self.verified.tree_checkpoints += counted;
        }
        Ok(())
    }

    pub fn event(&mut self, event: &ChainedEvent) -> Result<(), Broken> {
        if event.position != self.next {
            let reason = if event.position > self.next {
                format!(
                    "the event at position {} is missing (the next one stored is at {})",
                    self.next, event.position
                )
            } else {
                format!("position {} appears twice or out of order", event.position)
            };
            return Err(broken(self.next.min(event.position), reason));
        }
        let hash = event
            .entry()
            .link(&self.previous)
            .map_err(|err| broken(event.position, err.to_string()))?;
        if hash != event.hash {
            return Err(broken(
                event.position,
                "the event's content does not hash to its stored chain hash (altered, or swapped with another)",
            ));
        }
        if let Some(checkpoint) = self.checkpoints.get(&event.position) {
            if checkpoint.hash() != hash {
                return Err(broken(
                    self.confirmed + 1,
                    format!(
                        "the events up to position {} do not hash to the checkpoint signed there: one after position {} was altered, removed or reordered and the chain recomputed",
                        event.position, self.confirmed
                    ),
                ));
            }
            self.confirmed = event.position;
            self.verified.checkpoints += 1;
        }
        self.grow(event)?;
        self.verified.events += 1;
        self.verified.first.get_or_insert(event.position);
        self.verified.last = Some(event.position);
        self.previous = hash;
        self.next += 1;
        Ok(())
    }

    pub fn finish(self) -> Result<Verified, Broken> {
        let end = self.next - 1;
        if let Some((check, edge)) = &self.tree {
            let signed_beyond = check
                .roots
                .range(edge.size + 1..)
                .next()
                .map(|(size, _)| *size);
            let trusted_beyond = check
                .trusted
                .as_ref()
                .map(|trusted| trusted.size)
                .filter(|size| *size > edge.size);
            if let Some(size) = trusted_beyond.or(signed_beyond) {
                return Err(broken(
                    end + 1,
                    format!(
                        "a checkpoint covers {size} entries but the log holds {} after position {}: events were removed from its end",
                        edge.size, check.base
                    ),
                ));
            }
        }
        if let Some((&position, _)) = self.checkpoints.range(end + 1..).next() {
            return Err(broken(
                end + 1,
                format!(
                    "a checkpoint covers position {position} but the log ends at {end}: events were removed from its end"
                ),
            ));
        }
        if self.verified.events > 0
            && self.verified.checkpoints == 0
            && self.verified.tree_checkpoints == 0
        {
            return Err(broken(
                self.verified.first.unwrap_or(1),
                "no checkpoint signs any of these events: a log nobody signed proves nothing (whoever can write the database could have rewritten all of it); verify once a checkpoint is signed",
            ));
        }
        Ok(Verified {
            unsigned: end - self.confirmed,
            ..self.verified
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::AuditKey;
    use serde_json::value::RawValue;
    use studyhall_core::clock::Micros;
    use uuid::Uuid;

    fn log(messages: &[&str]) -> Vec<ChainedEvent> {
        let mut previous = GENESIS.to_owned();
        let mut out = Vec::new();
        for (n, message) in messages.iter().enumerate() {
            let mut event = ChainedEvent {
                position: n as i64 + 1,
                hash: String::new(),
                id: Uuid::now_v7(),
                created_at: Micros(n as i64),
                component: "c".into(),
                environment: "e".into(),
                email: "a@b.co".into(),
                message: (*message).into(),
                data: RawValue::from_string("null".into()).unwrap(),
            };
            event.hash = event.entry().link(&previous).unwrap();
            previous = event.hash.clone();
            out.push(event);
        }
        out
    }

    fn run(
        key: &AuditKey,
        statements: Vec<Statement>,
        events: &[ChainedEvent],
    ) -> Result<Verified, Broken> {
        let mut verifier = Verifier::new(&key.public(), statements)?;
        for event in events {
            verifier.event(event)?;
        }
        verifier.finish()
    }

    #[test]
    fn an_intact_log_verifies_and_reports_its_unsigned_tail() {
        let key = AuditKey::generate().unwrap();
        let events = log(&["a", "b", "c", "d"]);
        let checkpoint = key.checkpoint(3, &events[2].hash, Micros(9));
        let verified = run(&key, vec![checkpoint], &events).unwrap();
        assert_eq!(verified.events, 4);
        assert_eq!(verified.checkpoints, 1);
        assert_eq!(verified.unsigned, 1);
    }

    #[test]
    fn a_recomputed_chain_is_caught_by_the_checkpoint() {
        let key = AuditKey::generate().unwrap();
        let honest = log(&["a", "b", "c", "d"]);
        let checkpoint = key.checkpoint(4, &honest[3].hash, Micros(9));
        // The whole chain recomputed after changing one message: every stored hash
        // matches, but not the signed one.
        let forged = log(&["a", "B", "c", "d"]);
        let err = run(&key, vec![checkpoint], &forged).unwrap_err();
        assert_eq!(err.position, 1);
    }

    #[test]
    fn removed_events_are_fine_only_under_a_signed_marker() {
        let key = AuditKey::generate().unwrap();
        let events = log(&["a", "b", "c"]);
        let rest = &events[2..];
        assert_eq!(run(&key, vec![], rest).unwrap_err().position, 1);
        let marker = key.retention((1, 2), &events[1].hash, None, Micros(9));
        let checkpoint = key.checkpoint(3, &events[2].hash, Micros(9));
        let verified = run(&key, vec![marker.clone(), checkpoint], rest).unwrap();
        assert_eq!((verified.removed, verified.events), (2, 1));
        let other = AuditKey::generate().unwrap();
        let forged = other.retention((1, 2), &events[1].hash, None, Micros(9));
        assert!(run(&key, vec![forged], rest).is_err());
    }

    #[test]
    fn a_log_no_checkpoint_signs_proves_nothing() {
        let key = AuditKey::generate().unwrap();
        let events = log(&["a", "b"]);
        let err = run(&key, vec![], &events).unwrap_err();
        assert!(err.reason.contains("no checkpoint signs"), "{err}");
        // Nothing to sign is fine.
        assert_eq!(run(&key, vec![], &[]).unwrap().events, 0);
    }

    fn tree_of(events: &[ChainedEvent], sizes: &[u64]) -> TreeCheck {
        let mut edge = Edge::default();
        let mut roots = BTreeMap::new();
        for event in events {
            edge.push(tree::leaf_hash(&event.entry().canonical()));
            if sizes.contains(&edge.size) {
                roots.insert(edge.size, edge.root());
            }
        }
        TreeCheck {
            base: 0,
            roots,
            trusted: None,
        }
    }

    fn run_tree(
        key: &AuditKey,
        check: TreeCheck,
        events: &[ChainedEvent],
    ) -> Result<Verified, Broken> {
        let mut verifier = Verifier::new(&key.public(), vec![])?.with_tree(check);
        for event in events {
            verifier.event(event)?;
        }
        verifier.finish()
    }

    #[test]
    fn the_rebuilt_edge_has_the_stored_trees_root_at_every_size() {
        let mut edge = Edge::default();
        let mut store = tree::Fetched::default();
        for n in 0..70u64 {
            assert_eq!(edge.root(), tree::root(&store, n).unwrap(), "size {n}");
            let leaf = tree::leaf_hash(&n.to_be_bytes());
            edge.push(leaf);
            let first = tree::stored_index(0, n);
            for (i, hash) in tree::appended(&store, n, leaf)
                .unwrap()
                .into_iter()
                .enumerate()
            {
                store.0.insert(first + i as u64, hash);
            }
        }
    }

    #[test]
    fn the_rebuilt_tree_must_have_every_signed_root() {
        let key = AuditKey::generate().unwrap();
        let honest = log(&["a", "b", "c", "d", "e"]);
        let verified = run_tree(&key, tree_of(&honest, &[2, 5]), &honest).unwrap();
        assert_eq!(verified.tree_checkpoints, 2);
        // A rewritten and rehashed chain, with every chain checkpoint gone: the tree
        // checkpoint still holds the old root.
        let forged = log(&["a", "b", "C", "d", "e"]);
        let err = run_tree(&key, tree_of(&honest, &[5]), &forged).unwrap_err();
        assert!(err.reason.contains("tree root"), "{err}");
        // Truncated below a signed size.
        let err = run_tree(&key, tree_of(&honest, &[5]), &honest[..4]).unwrap_err();
        assert!(err.reason.contains("removed from its end"), "{err}");
        // A trusted checkpoint the log no longer reaches, or reaches with another root.
        let mut check = tree_of(&honest, &[2]);
        let mut edge = Edge::default();
        for event in &honest {
            edge.push(tree::leaf_hash(&event.entry().canonical()));
        }
        check.trusted = Some(Checkpoint {
            origin: "o".into(),
            size: 5,
            root: edge.root(),
        });
        assert!(run_tree(&key, check.clone(), &honest).is_ok());
        assert!(run_tree(&key, check.clone(), &honest[..3]).is_err());
        assert!(run_tree(&key, check, &forged).is_err());
    }

    #[test]
    fn a_truncated_end_is_caught_when_a_checkpoint_covers_it() {
        let key = AuditKey::generate().unwrap();
        let events = log(&["a", "b", "c"]);
        let checkpoint = key.checkpoint(3, &events[2].hash, Micros(9));
        let err = run(&key, vec![checkpoint], &events[..2]).unwrap_err();
        assert_eq!(err.position, 3);
    }
}
