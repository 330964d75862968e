//! Offline verification of a log, from a database or an export file, with only the
//! public key: chain continuity, every signature, and that the events between
//! checkpoints hash to them.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;

use super::chain::GENESIS;
use super::key::Statement;
use super::store::ChainedEvent;

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
            confirmed: next - 1,
            verified: Verified {
                removed: next - 1,
                ..Verified::default()
            },
            next,
            previous,
        })
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
        self.verified.events += 1;
        self.verified.first.get_or_insert(event.position);
        self.verified.last = Some(event.position);
        self.previous = hash;
        self.next += 1;
        Ok(())
    }

    pub fn finish(self) -> Result<Verified, Broken> {
        let end = self.next - 1;
        if let Some((&position, _)) = self.checkpoints.range(end + 1..).next() {
            return Err(broken(
                end + 1,
                format!(
                    "a checkpoint covers position {position} but the log ends at {end}: events were removed from its end"
                ),
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
        let marker = key.retention(1, 2, &events[1].hash, Micros(9));
        let verified = run(&key, vec![marker], rest).unwrap();
        assert_eq!((verified.removed, verified.events), (2, 1));
        let other = AuditKey::generate().unwrap();
        let forged = other.retention(1, 2, &events[1].hash, Micros(9));
        assert!(run(&key, vec![forged], rest).is_err());
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
