//! The log as an RFC 6962 Merkle tree: leaf and node hashes, where each hash of a
//! complete subtree is kept, the root of any size, and inclusion and consistency
//! proofs with their checks.
//!
//! ```text
//! leaf = SHA-256(0x00 ‖ entry)        entry: the event's canonical fields (`chain`)
//! node = SHA-256(0x01 ‖ left ‖ right)
//! ```
//!
//! **Stored hashes.** Every complete subtree's hash is kept once, in the order a
//! growing tree completes them (the layout of Go's checksum database): appending leaf
//! `n` stores its leaf hash, then the hash of each subtree that leaf completes. The
//! subtree of level `L` and index `k` (leaves `k·2^L ..< (k+1)·2^L`) is stored at
//! `count(last leaf) + L`, where `count(n)` is how many hashes the first `n` leaves
//! stored. Rows are only ever inserted, never changed; a root, a proof or a C2SP tile
//! reads at most a few dozen of them, whatever the log's size, and removing old events
//! under retention keeps every hash the proofs need.
//!
//! Proofs are computed in two passes over the same code: the first records which
//! stored hashes it reads, the caller fetches those in one query, the second computes.

use std::cell::RefCell;
use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// A SHA-256 hash in the tree.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(entry);
    hasher.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// How many hashes the first `leaves` leaves stored: one per complete subtree of
/// every level.
pub fn stored_count(leaves: u64) -> u64 {
    (0..64).map(|level| leaves >> level).sum()
}

/// Where the hash of subtree (`level`, `index`) is stored.
pub fn stored_index(level: u8, index: u64) -> u64 {
    let last_leaf = ((index + 1) << level) - 1;
    stored_count(last_leaf) + u64::from(level)
}

/// A subtree: leaves `index·2^level ..< (index+1)·2^level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subtree {
    pub level: u8,
    pub index: u64,
}

impl Subtree {
    pub fn stored_index(self) -> u64 {
        stored_index(self.level, self.index)
    }
}

/// The aligned complete subtrees that make up leaves `lo..hi`, left to right: each the
/// largest that starts where the previous one ended.
pub fn cover(mut lo: u64, hi: u64) -> Vec<Subtree> {
    let mut out = Vec::new();
    while lo < hi {
        let mut level = 0u8;
        while level < 63 {
            let wider = 1u64 << (level + 1);
            if !lo.is_multiple_of(wider) || lo + wider > hi {
                break;
            }
            level += 1;
        }
        out.push(Subtree {
            level,
            index: lo >> level,
        });
        lo += 1u64 << level;
    }
    out
}

/// Somewhere stored hashes are read from.
pub trait Hashes {
    fn hash(&self, at: Subtree) -> Result<Hash, Missing>;
}

/// A stored hash that should exist and does not (the tree is smaller than asked, or
/// its rows were removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the tree has no stored hash for level {} index {}", .0.level, .0.index)]
pub struct Missing(pub Subtree);

/// Stored hashes fetched ahead, by stored index.
#[derive(Debug, Default, Clone)]
pub struct Fetched(pub HashMap<u64, Hash>);

impl Hashes for Fetched {
    fn hash(&self, at: Subtree) -> Result<Hash, Missing> {
        self.0.get(&at.stored_index()).copied().ok_or(Missing(at))
    }
}

/// The first pass: answers every read with zeros and notes where it was.
#[derive(Default)]
pub struct Recorder(RefCell<Vec<u64>>);

impl Hashes for Recorder {
    fn hash(&self, at: Subtree) -> Result<Hash, Missing> {
        self.0.borrow_mut().push(at.stored_index());
        Ok([0; 32])
    }
}

impl Recorder {
    /// The stored indexes read, each once, ascending.
    pub fn indexes(self) -> Vec<u64> {
        let mut indexes = self.0.into_inner();
        indexes.sort_unstable();
        indexes.dedup();
        indexes
    }
}

/// The stored indexes `compute` reads (its result from zeros is thrown away).
pub fn needs<T>(compute: impl FnOnce(&Recorder) -> Result<T, ProofError>) -> Vec<u64> {
    let recorder = Recorder::default();
    // Only the reads matter here; a size error is met again in the real pass.
    let _ = compute(&recorder);
    recorder.indexes()
}

/// The hash of leaves `lo..hi` (a non-empty range).
pub fn range_hash(hashes: &impl Hashes, lo: u64, hi: u64) -> Result<Hash, Missing> {
    let parts = cover(lo, hi);
    let mut parts = parts.iter().rev();
    let Some(last) = parts.next() else {
        return Ok(empty_root());
    };
    let mut hash = hashes.hash(*last)?;
    for part in parts {
        hash = node_hash(&hashes.hash(*part)?, &hash);
    }
    Ok(hash)
}

/// The root of the tree of `size` leaves.
pub fn root(hashes: &impl Hashes, size: u64) -> Result<Hash, Missing> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(hashes, 0, size)
}

/// What appending leaf `n` with hash `leaf` stores, in storage order (from
/// [`stored_index`]`(0, n)` on): the leaf, then each subtree it completes. Reads the
/// left halves of those subtrees.
pub fn appended(hashes: &impl Hashes, n: u64, leaf: Hash) -> Result<Vec<Hash>, Missing> {
    let mut out = vec![leaf];
    let mut hash = leaf;
    let mut level = 0u8;
    // Leaf n completes a subtree of level L+1 when its index's lowest L+1 bits are ones.
    while (n >> level) & 1 == 1 {
        let left = hashes.hash(Subtree {
            level,
            index: (n >> level) - 1,
        })?;
        hash = node_hash(&left, &hash);
        level += 1;
        out.push(hash);
    }
    Ok(out)
}

/// Why a proof cannot be made or does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf {leaf} is not in a tree of {size}")]
    OutOfRange { leaf: u64, size: u64 },
    #[error("a tree of {old} cannot be a prefix of a tree of {new}")]
    Sizes { old: u64, new: u64 },
    #[error("the proof has {got} hashes where {want} are needed")]
    Length { got: usize, want: usize },
    #[error("the proof does not lead to the root")]
    Mismatch,
    #[error(transparent)]
    Missing(#[from] Missing),
}

/// The largest power of two below `n` (n > 1).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The inclusion proof of leaf `leaf` in the tree of `size` (RFC 6962 §2.1.1, PATH).
pub fn inclusion_proof(
    hashes: &impl Hashes,
    leaf: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    if leaf >= size {
        return Err(ProofError::OutOfRange { leaf, size });
    }
    let mut proof = Vec::new();
    path(hashes, leaf, 0, size, &mut proof)?;
    Ok(proof)
}

fn path(
    hashes: &impl Hashes,
    leaf: u64,
    lo: u64,
    hi: u64,
    proof: &mut Vec<Hash>,
) -> Result<(), Missing> {
    if hi - lo == 1 {
        return Ok(());
    }
    let mid = lo + split(hi - lo);
    if leaf < mid {
        path(hashes, leaf, lo, mid, proof)?;
        proof.push(range_hash(hashes, mid, hi)?);
    } else {
        path(hashes, leaf, mid, hi, proof)?;
        proof.push(range_hash(hashes, lo, mid)?);
    }
    Ok(())
}

/// The consistency proof that the tree of `old` leaves is a prefix of the tree of
/// `new` (RFC 6962 §2.1.2, PROOF); empty when the sizes are equal or `old` is 0.
pub fn consistency_proof(
    hashes: &impl Hashes,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, ProofError> {
    if old > new {
        return Err(ProofError::Sizes { old, new });
    }
    let mut proof = Vec::new();
    if old > 0 && old < new {
        subproof(hashes, old, 0, new, true, &mut proof)?;
    }
    Ok(proof)
}

fn subproof(
    hashes: &impl Hashes,
    old: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    proof: &mut Vec<Hash>,
) -> Result<(), Missing> {
    let size = hi - lo;
    if old == size {
        if !whole {
            proof.push(range_hash(hashes, lo, hi)?);
        }
        return Ok(());
    }
    let k = split(size);
    if old <= k {
        subproof(hashes, old, lo, lo + k, whole, proof)?;
        proof.push(range_hash(hashes, lo + k, hi)?);
    } else {
        subproof(hashes, old - k, lo + k, hi, false, proof)?;
        proof.push(range_hash(hashes, lo, lo + k)?);
    }
    Ok(())
}

/// The climb both checks make (RFC 9162 §2.1.3.2 and §2.1.4.2): from node `f_n` of a
/// level whose last node is `s_n`, each proof hash is a sibling, `step` told whether
/// it sits on the left. `counted` is the proof's length as the caller names it. Fails
/// unless the proof ends exactly at the root.
fn climb(
    proof: &[Hash],
    (mut f_n, mut s_n): (u64, u64),
    counted: usize,
    mut step: impl FnMut(&Hash, bool),
) -> Result<(), ProofError> {
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::Length {
                got: counted,
                want: counted - 1,
            });
        }
        let left = f_n & 1 == 1 || f_n == s_n;
        step(p, left);
        if left && f_n & 1 == 0 {
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::Length {
            got: counted,
            want: counted + 1,
        });
    }
    Ok(())
}

/// Checks that `leaf_hash` is leaf `leaf` of the tree of `size` with `root`
/// (RFC 9162 §2.1.3.2).
pub fn check_inclusion(
    proof: &[Hash],
    leaf: u64,
    size: u64,
    leaf_hash: &Hash,
    root: &Hash,
) -> Result<(), ProofError> {
    if leaf >= size {
        return Err(ProofError::OutOfRange { leaf, size });
    }
    let mut r = *leaf_hash;
    climb(proof, (leaf, size - 1), proof.len(), |p, left| {
        r = if left {
            node_hash(p, &r)
        } else {
            node_hash(&r, p)
        };
    })?;
    if &r == root {
        Ok(())
    } else {
        Err(ProofError::Mismatch)
    }
}

/// Checks that the tree of `old` leaves with `old_root` is a prefix of the tree of
/// `new` leaves with `new_root` (RFC 9162 §2.1.4.2).
pub fn check_consistency(
    proof: &[Hash],
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::Sizes { old, new });
    }
    if old == new || old == 0 {
        if !proof.is_empty() {
            return Err(ProofError::Length {
                got: proof.len(),
                want: 0,
            });
        }
        return if old == 0 || old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    let mut hashes: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        hashes.push(*old_root);
    }
    hashes.extend_from_slice(proof);
    let Some((first, rest)) = hashes.split_first() else {
        return Err(ProofError::Length { got: 0, want: 1 });
    };
    let (mut f_n, mut s_n) = (old - 1, new - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut f_r, mut s_r) = (*first, *first);
    climb(rest, (f_n, s_n), proof.len(), |c, left| {
        if left {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
        } else {
            s_r = node_hash(&s_r, c);
        }
    })?;
    if &f_r == old_root && &s_r == new_root {
        Ok(())
    } else {
        Err(ProofError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree built by appending, as the store builds it.
    fn grown(leaves: u64) -> (Fetched, Vec<Hash>) {
        let mut store = Fetched::default();
        let mut leaf_hashes = Vec::new();
        for n in 0..leaves {
            let leaf = leaf_hash(format!("entry {n}").as_bytes());
            leaf_hashes.push(leaf);
            let first = stored_index(0, n);
            assert_eq!(
                first,
                store.0.len() as u64,
                "leaf {n} stores where the last ended"
            );
            for (i, hash) in appended(&store, n, leaf).unwrap().into_iter().enumerate() {
                store.0.insert(first + i as u64, hash);
            }
        }
        (store, leaf_hashes)
    }

    /// MTH straight from RFC 6962's definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    /// The other implementation, over the same stored hashes.
    struct Oracle<'a>(&'a Fetched);

    impl tlog_tiles::HashReader for Oracle<'_> {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
            indexes
                .iter()
                .map(|i| {
                    self.0
                         .0
                        .get(i)
                        .map(|h| tlog_tiles::Hash(*h))
                        .ok_or(tlog_tiles::Error::IndexesNotInTree)
                })
                .collect()
        }
    }

    const SIZES: u64 = 130;

    #[test]
    fn stored_indexes_and_roots_agree_with_the_definition_and_the_other_implementation() {
        let (store, leaves) = grown(SIZES);
        for size in 0..=SIZES {
            let ours = root(&store, size).unwrap();
            assert_eq!(ours, mth(&leaves[..size as usize]), "size {size}");
            let theirs = tlog_tiles::tree_hash(size, &Oracle(&store)).unwrap();
            assert_eq!(theirs.0, ours, "size {size}");
            assert_eq!(stored_count(size), tlog_tiles::stored_hash_count(size));
        }
        for level in 0..8u8 {
            for index in 0..40 {
                assert_eq!(
                    stored_index(level, index),
                    tlog_tiles::stored_hash_index(level, index),
                    "level {level} index {index}"
                );
            }
        }
    }

    #[test]
    fn every_inclusion_proof_checks_here_and_in_the_other_implementation() {
        let (store, leaves) = grown(SIZES);
        for size in 1..=SIZES {
            let tree_root = root(&store, size).unwrap();
            for leaf in 0..size {
                let proof = inclusion_proof(&store, leaf, size).unwrap();
                assert!(proof.len() <= 64 - (size - 1).leading_zeros() as usize);
                check_inclusion(&proof, leaf, size, &leaves[leaf as usize], &tree_root).unwrap();
                let theirs: Vec<tlog_tiles::Hash> =
                    proof.iter().map(|h| tlog_tiles::Hash(*h)).collect();
                tlog_tiles::check_record(
                    &theirs,
                    size,
                    tlog_tiles::Hash(tree_root),
                    leaf,
                    tlog_tiles::Hash(leaves[leaf as usize]),
                )
                .unwrap_or_else(|err| panic!("leaf {leaf} of {size}: {err:?}"));
                let made = tlog_tiles::prove_record(size, leaf, &Oracle(&store)).unwrap();
                assert_eq!(made, theirs, "leaf {leaf} of {size}");
                // Any other leaf, root or size is refused.
                let other = leaves[((leaf + 1) % size) as usize];
                if size > 1 {
                    assert!(check_inclusion(&proof, leaf, size, &other, &tree_root).is_err());
                }
                if leaf ^ 1 < size {
                    let moved =
                        check_inclusion(&proof, leaf ^ 1, size, &leaves[leaf as usize], &tree_root);
                    assert!(
                        moved.is_err(),
                        "leaf {leaf} of {size} claimed at {}",
                        leaf ^ 1
                    );
                }
            }
        }
    }

    #[test]
    fn every_consistency_proof_checks_here_and_in_the_other_implementation() {
        let (store, _) = grown(SIZES);
        let roots: Vec<Hash> = (0..=SIZES).map(|n| root(&store, n).unwrap()).collect();
        for new in 0..=SIZES {
            for old in 0..=new {
                let proof = consistency_proof(&store, old, new).unwrap();
                let (old_root, new_root) = (&roots[old as usize], &roots[new as usize]);
                check_consistency(&proof, old, new, old_root, new_root)
                    .unwrap_or_else(|err| panic!("{old} → {new}: {err}"));
                if old > 0 {
                    let theirs: Vec<tlog_tiles::Hash> =
                        proof.iter().map(|h| tlog_tiles::Hash(*h)).collect();
                    tlog_tiles::check_tree(
                        &theirs,
                        new,
                        tlog_tiles::Hash(*new_root),
                        old,
                        tlog_tiles::Hash(*old_root),
                    )
                    .unwrap_or_else(|err| panic!("{old} → {new}: {err:?}"));
                    let made = tlog_tiles::prove_tree(new, old, &Oracle(&store)).unwrap();
                    assert_eq!(made, theirs, "{old} → {new}");
                }
                // A different history is refused.
                if old > 0 && old < new {
                    let forged = leaf_hash(b"another history");
                    assert!(check_consistency(&proof, old, new, &forged, new_root).is_err());
                    assert!(check_consistency(&proof, old, new, old_root, &forged).is_err());
                }
            }
        }
    }

    #[test]
    fn the_first_pass_names_exactly_what_the_second_reads() {
        let (store, _) = grown(SIZES);
        for (leaf, size) in [(0, 1), (5, 6), (64, 129), (127, 130)] {
            let indexes = needs(|hashes| inclusion_proof(hashes, leaf, size));
            let fetched = Fetched(indexes.iter().map(|i| (*i, store.0[i])).collect());
            assert_eq!(
                inclusion_proof(&fetched, leaf, size).unwrap(),
                inclusion_proof(&store, leaf, size).unwrap()
            );
            assert!(indexes.len() <= 2 * 8, "{indexes:?}");
        }
        let indexes = needs(|hashes| consistency_proof(hashes, 37, 130));
        let fetched = Fetched(indexes.iter().map(|i| (*i, store.0[i])).collect());
        assert_eq!(
            consistency_proof(&fetched, 37, 130).unwrap(),
            consistency_proof(&store, 37, 130).unwrap()
        );
    }
}
