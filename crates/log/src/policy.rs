//! A verifier's trust policy (C2SP `tlog-policy`): the logs it accepts, the witnesses
//! it knows, and the quorum of their cosignatures a checkpoint needs.
//!
//! ```text
//! log <vkey> [<url>]
//! witness <name> <vkey> [<url>]
//! group <name> all|any|<k> <name>...
//! quorum <name>|none
//! ```

use std::collections::HashMap;

use super::note::{self, Checkpoint};
use super::witness::{cosigned_at, Vkey};

/// Signature type bytes: a log's checkpoint key, a witness's cosigning key.
const LOG_KEY: u8 = 0x01;
const WITNESS_KEY: u8 = 0x04;

/// A parsed policy.
#[derive(Debug, Clone)]
pub struct Policy {
    logs: Vec<Vkey>,
    witnesses: Vec<(String, Vkey)>,
    /// Name → (threshold, members).
    groups: HashMap<String, (usize, Vec<String>)>,
    /// `None`: no cosignature is needed.
    quorum: Option<String>,
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, String> {
        let mut policy = Policy {
            logs: Vec::new(),
            witnesses: Vec::new(),
            groups: HashMap::new(),
            quorum: None,
        };
        let mut quorum_seen = false;
        for (n, line) in text.lines().enumerate() {
            if line.chars().any(|c| c.is_control() && c != '\t') {
                return Err(format!("line {}: a control character", n + 1));
            }
            let words: Vec<&str> = line.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
            let at = |why: String| format!("line {}: {why}", n + 1);
            match words.as_slice() {
                [] => {}
                [first, ..] if first.starts_with('#') => {}
                ["log", vkey, rest @ ..] if rest.len() <= 1 => {
                    let vkey = Vkey::parse(vkey).map_err(at)?;
                    if vkey.kind != LOG_KEY {
                        return Err(at(
                            "a log key must be an Ed25519 checkpoint key (type 0x01)".into(),
                        ));
                    }
                    if policy.logs.iter().any(|log| log.key == vkey.key) {
                        return Err(at("a log is listed twice".into()));
                    }
                    policy.logs.push(vkey);
                }
                ["witness", name, vkey, rest @ ..] if rest.len() <= 1 => {
                    let vkey = Vkey::parse(vkey).map_err(at)?;
                    if vkey.kind != WITNESS_KEY {
                        return Err(at(
                            "a witness key must be an Ed25519 cosignature key (type 0x04)".into(),
                        ));
                    }
                    policy.define(name).map_err(at)?;
                    if policy
                        .witnesses
                        .iter()
                        .any(|(_, known)| known.key == vkey.key)
                    {
                        return Err(at("a witness is listed twice".into()));
                    }
                    policy.witnesses.push(((*name).to_owned(), vkey));
                }
                ["group", name, threshold, members @ ..] if !members.is_empty() => {
                    policy.define(name).map_err(at)?;
                    let mut seen = Vec::new();
                    for member in members {
                        if !policy.is_defined(member) || *member == "none" {
                            return Err(at(format!("`{member}` is not defined on a line before")));
                        }
                        if seen.contains(member) {
                            return Err(at(format!("`{member}` is listed twice")));
                        }
                        seen.push(member);
                    }
                    let k = match *threshold {
                        "all" => members.len(),
                        "any" => 1,
                        number => note::decimal(number)
                            .filter(|k| (1..=members.len()).contains(k))
                            .ok_or_else(|| {
                                at(format!(
                                    "`{number}` is not all, any, or 1 to {}",
                                    members.len()
                                ))
                            })?,
                    };
                    let members = members.iter().map(|m| (*m).to_owned()).collect();
                    policy.groups.insert((*name).to_owned(), (k, members));
                }
                ["quorum", name] => {
                    if quorum_seen {
                        return Err(at("a second quorum line".into()));
                    }
                    quorum_seen = true;
                    if *name != "none" {
                        if !policy.is_defined(name) {
                            return Err(at(format!("`{name}` is not defined on a line before")));
                        }
                        policy.quorum = Some((*name).to_owned());
                    }
                }
                _ => {
                    return Err(at(format!(
                        "`{line}` is not a log, witness, group or quorum line"
                    )))
                }
            }
        }
        if !quorum_seen {
            return Err("the policy has no quorum line".into());
        }
        Ok(policy)
    }

    fn is_defined(&self, name: &str) -> bool {
        self.groups.contains_key(name) || self.witnesses.iter().any(|(known, _)| known == name)
    }

    fn define(&self, name: &str) -> Result<(), String> {
        if name == "none" || self.is_defined(name) {
            Err(format!("`{name}` is already defined"))
        } else {
            Ok(())
        }
    }

    /// The checkpoint `signed_note` states, if one of the policy's logs signed it and
    /// its cosignatures meet the quorum.
    pub fn check(&self, signed_note: &str) -> Result<Checkpoint, String> {
        let parsed = note::parse(signed_note).map_err(|err| err.to_string())?;
        let checkpoint = Checkpoint::parse(parsed.text).map_err(|err| err.to_string())?;
        let signed = self.logs.iter().any(|log| {
            log.name == checkpoint.origin && note::open(signed_note, &log.name, &log.key).is_ok()
        });
        if !signed {
            return Err(format!(
                "no log the policy lists signed this checkpoint of `{}`",
                checkpoint.origin
            ));
        }
        let Some(quorum) = &self.quorum else {
            return Ok(checkpoint);
        };
        if self.witnessed(quorum, parsed.text, &parsed) {
            Ok(checkpoint)
        } else {
            Err(format!(
                "the checkpoint's cosignatures do not meet the policy's quorum `{quorum}`"
            ))
        }
    }

    fn witnessed(&self, name: &str, text: &str, parsed: &note::Note<'_>) -> bool {
        if let Some((_, vkey)) = self.witnesses.iter().find(|(known, _)| known == name) {
            return cosigned_at(text, parsed, vkey).is_some();
        }
        let Some((k, members)) = self.groups.get(name) else {
            return false;
        };
        members
            .iter()
            .filter(|member| self.witnessed(member, text, parsed))
            .count()
            >= *k
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::witness::cosign;
    use ed25519_dalek::SigningKey;

    const ORIGIN: &str = "example.com/log";

    #[test]
    fn a_quorum_of_groups_is_met_only_by_enough_valid_cosignatures() {
        let log = SigningKey::from_bytes(&[1; 32]);
        let witnesses: Vec<SigningKey> =
            (10..14).map(|n| SigningKey::from_bytes(&[n; 32])).collect();
        let vkey =
            |n: usize| Vkey::witness(&format!("w{n}.example"), witnesses[n].verifying_key()).text();
        let policy = Policy::parse(&format!(
            "# two of X, and Y\nlog {}\nwitness X0 {}\nwitness X1 {}\nwitness X2 {}\ngroup X 2 X0 X1 X2\n\twitness Y {} https://y.example\ngroup XY all X Y\nquorum XY\n",
            Vkey::log(ORIGIN, log.verifying_key()).text(),
            vkey(0), vkey(1), vkey(2), vkey(3)
        ))
        .unwrap();
        let checkpoint = Checkpoint {
            origin: ORIGIN.into(),
            size: 3,
            root: crate::tree::leaf_hash(b"x"),
        };
        let note = checkpoint.sign(&log);
        let text = checkpoint.text();
        let with = |signers: &[usize]| {
            signers.iter().fold(note.clone(), |note, n| {
                format!(
                    "{note}{}",
                    cosign(
                        &witnesses[*n],
                        &format!("w{n}.example"),
                        &text,
                        1_700_000_000
                    )
                )
            })
        };
        assert!(policy.check(&with(&[0, 1, 3])).is_ok());
        assert!(policy.check(&with(&[0, 3])).is_err(), "one of X is not two");
        assert!(policy.check(&with(&[0, 1, 2])).is_err(), "no Y");
        // A cosignature over another checkpoint does not count.
        let other = Checkpoint {
            size: 4,
            ..checkpoint.clone()
        }
        .text();
        let stale = format!(
            "{}{}",
            with(&[0, 1]),
            cosign(&witnesses[3], "w3.example", &other, 1)
        );
        assert!(policy.check(&stale).is_err());
        // A log the policy does not list.
        let stranger = Checkpoint {
            origin: ORIGIN.into(),
            ..checkpoint.clone()
        }
        .sign(&SigningKey::from_bytes(&[2; 32]));
        assert!(policy.check(&stranger).is_err());
        let none = Policy::parse(&format!(
            "log {}\nquorum none\n",
            Vkey::log(ORIGIN, log.verifying_key()).text()
        ))
        .unwrap();
        assert!(none.check(&note).is_ok());
    }

    #[test]
    fn malformed_policies_are_refused_with_the_line() {
        let log = Vkey::log(ORIGIN, SigningKey::from_bytes(&[1; 32]).verifying_key()).text();
        let witness = Vkey::witness(
            "w.example",
            SigningKey::from_bytes(&[3; 32]).verifying_key(),
        )
        .text();
        for (text, says) in [
            (format!("log {log}\n"), "no quorum"),
            ("quorum X\n".to_owned(), "line 1"),
            (
                format!("witness A {witness}\nwitness A {witness}\nquorum A\n"),
                "line 2",
            ),
            (
                format!("witness A {witness}\ngroup G 2 A\nquorum G\n"),
                "line 2",
            ),
            (format!("witness A {log}\nquorum A\n"), "type 0x04"),
            ("quorum none\nquorum none\n".to_owned(), "second quorum"),
            ("frobnicate\nquorum none\n".to_owned(), "line 1"),
        ] {
            let err = Policy::parse(&text).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }
}
