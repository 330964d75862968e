//! The tree in the database: growing it over the chained events, signing checkpoints
//! of it, and reading the stored hashes that roots, proofs and tiles need.
//!
//! Growing is one transaction per batch that holds the `log_tree` row (SQLite's write
//! transaction excludes every other writer anyway), so any number of instances may
//! run it and each leaf is integrated once. Writers never wait on it: it reads events
//! already committed and writes only the tree's own tables.

use studyhall_core::clock::Micros;
use studyhall_core::db::{Db, Tx};
use studyhall_core::sql::{On, Sql};

use super::key::AuditKey;
use super::note::Checkpoint;
use super::store::{chained_from_row, ChainedRow, CHAINED_COLUMNS};
use super::tree::{self, Fetched, Hash, ProofError};

/// Rows per multi-row INSERT of hashes (× 2 parameters).
const INSERT_CHUNK: usize = 1000;
/// Stored indexes per `IN (…)` read.
const READ_CHUNK: usize = 500;

/// How far the tree has grown: `size` leaves, leaf `i` being the event at position
/// `base + 1 + i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grown {
    pub base: i64,
    pub size: u64,
}

impl Grown {
    /// The leaf of the event at `position`, if the tree holds it.
    pub fn leaf(&self, position: i64) -> Option<u64> {
        let leaf = u64::try_from(position - self.base - 1).ok()?;
        (leaf < self.size).then_some(leaf)
    }
}

pub async fn grown<'a>(on: impl Into<On<'a>>) -> Result<Grown, sqlx::Error> {
    let (base, size) = Sql::new("SELECT base, size FROM log_tree WHERE id = 1")
        .fetch_one::<(i64, i64)>(on)
        .await?;
    Ok(Grown {
        base,
        size: size.max(0) as u64,
    })
}

/// The stored hashes at `indexes`.
pub async fn fetch(db: &Db, indexes: &[u64]) -> Result<Fetched, sqlx::Error> {
    let mut fetched = Fetched::default();
    for chunk in indexes.chunks(READ_CHUNK) {
        let rows = read_rows(db.into(), chunk).await?;
        fetched.0.extend(rows);
    }
    Ok(fetched)
}

async fn read_rows(on: On<'_>, indexes: &[u64]) -> Result<Vec<(u64, Hash)>, sqlx::Error> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let text = format!(
        "SELECT idx, hash FROM log_tree_hashes WHERE idx IN ({})",
        studyhall_core::sql::params(1, indexes.len())
    );
    let mut query = Sql::new(&text);
    for index in indexes {
        query = query.bind(*index as i64);
    }
    query
        .fetch_all::<(i64, Vec<u8>)>(on)
        .await?
        .into_iter()
        .map(|(index, hash)| {
            let hash = Hash::try_from(hash).map_err(|bytes| {
                sqlx::Error::Decode(
                    format!("a stored tree hash of {} bytes, not 32", bytes.len()).into(),
                )
            })?;
            Ok((index as u64, hash))
        })
        .collect()
}

/// Runs `compute` over the stored hashes it reads: a first pass to learn which, one
/// read, then the real pass.
pub async fn with_hashes<T>(
    db: &Db,
    compute: impl Fn(&dyn tree::Hashes) -> Result<T, ProofError>,
) -> Result<Result<T, ProofError>, sqlx::Error> {
    let needed = tree::needs(|recorder| compute(recorder));
    let fetched = fetch(db, &needed).await?;
    Ok(compute(&fetched))
}

/// Adds up to `batch` chained events to the tree, in position order, stopping at a
/// position that is missing. How many it added. The sequencer adds what it places in
/// the same transaction ([`extend`]); this catches the tree up with a chain that grew
/// without it (events placed before the tree existed, or while it could not grow).
///
/// What it reads is committed and never changes (an event's position is final, stored
/// hashes are only inserted), so the events are read and hashed outside the write
/// transaction; that transaction holds the writers' turn (SQLite) or the tree's row
/// (PostgreSQL) only to insert the hashes and move the size on, and adds nothing if
/// another instance moved it first.
pub async fn grow(db: &Db, batch: i64) -> Result<u64, sqlx::Error> {
    let before = grown(db).await?;
    let next = before.base + 1 + before.size as i64;
    let text = format!(
        "SELECT {CHAINED_COLUMNS} FROM events WHERE position >= $1 ORDER BY position LIMIT $2"
    );
    let rows: Vec<ChainedRow> = Sql::new(&text).bind(next).bind(batch).fetch_all(db).await?;
    let events = rows
        .into_iter()
        .map(chained_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let contiguous = events
        .iter()
        .enumerate()
        .take_while(|(n, event)| event.position == next + *n as i64)
        .count();
    if contiguous == 0 {
        if let Some(first) = events.first() {
            tracing::error!(
                expected = next,
                found = first.position,
                "the tree cannot grow: the event at the next position is missing"
            );
        }
        return Ok(0);
    }
    let leaves = events
        .iter()
        .take(contiguous)
        .map(|event| tree::leaf_hash(&event.entry().canonical()));
    let rows = completed(db.into(), before.size, leaves).await?;
    let mut tx = db.begin_write().await?;
    if held(&mut tx).await? != before {
        // Another instance grew it meanwhile; the next round starts from there.
        return Ok(0);
    }
    moved_on(&mut tx, before.size, contiguous as u64, &rows).await?;
    tx.commit().await?;
    Ok(contiguous as u64)
}

/// Adds `leaves`, the leaf hashes of the events just placed after `position`, to the
/// tree inside the sequencer's transaction `tx`, if the tree ends exactly there (else
/// [`grow`] catches it up later); whether it did. The tree then never lags the chain
/// by more than a sequencer's round, and no event is read twice.
pub(crate) async fn extend(
    tx: &mut Tx,
    position: i64,
    leaves: &[Hash],
) -> Result<bool, sqlx::Error> {
    let before = held(tx).await?;
    if before.base + before.size as i64 != position {
        return Ok(false);
    }
    let rows = completed(tx.into(), before.size, leaves.iter().copied()).await?;
    moved_on(tx, before.size, leaves.len() as u64, &rows).await?;
    Ok(true)
}

/// How far the tree has grown, its row held by `tx` until it ends (on PostgreSQL;
/// SQLite's write transaction already excludes every other writer).
async fn held(tx: &mut Tx) -> Result<Grown, sqlx::Error> {
    if tx.dialect().concurrent_writes() {
        Sql::new("SELECT size FROM log_tree WHERE id = 1 FOR UPDATE")
            .execute(&mut *tx)
            .await?;
    }
    grown(&mut *tx).await
}

/// The stored hashes that `leaves`, added to a tree of `size` leaves, complete, with
/// their indexes; the tree's right edge is read from `on`.
async fn completed(
    on: On<'_>,
    size: u64,
    leaves: impl Iterator<Item = Hash>,
) -> Result<Vec<(u64, Hash)>, sqlx::Error> {
    let frontier: Vec<u64> = tree::cover(0, size)
        .into_iter()
        .map(tree::Subtree::stored_index)
        .collect();
    let mut hashes = Fetched(read_rows(on, &frontier).await?.into_iter().collect());
    let mut rows = Vec::new();
    for (n, leaf) in leaves.enumerate() {
        let index = size + n as u64;
        let first = tree::stored_index(0, index);
        let stored = tree::appended(&hashes, index, leaf)
            .map_err(|missing| sqlx::Error::Protocol(missing.to_string()))?;
        for (i, hash) in stored.into_iter().enumerate() {
            hashes.0.insert(first + i as u64, hash);
            rows.push((first + i as u64, hash));
        }
    }
    Ok(rows)
}

/// Inserts `rows` and moves the tree's size from `size` on by `added`.
async fn moved_on(
    tx: &mut Tx,
    size: u64,
    added: u64,
    rows: &[(u64, Hash)],
) -> Result<(), sqlx::Error> {
    insert_hashes(tx, rows).await?;
    Sql::new("UPDATE log_tree SET size = $1 WHERE id = 1 AND size = $2")
        .bind((size + added) as i64)
        .bind(size as i64)
        .execute(&mut *tx)
        .await?;
    metrics::gauge!("audit_tree_size").set((size + added) as f64);
    Ok(())
}

async fn insert_hashes(tx: &mut Tx, rows: &[(u64, Hash)]) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        let text = format!(
            "INSERT INTO log_tree_hashes (idx, hash) VALUES {}",
            studyhall_core::sql::values_rows(chunk.len(), 2, studyhall_core::sql::tuple)
        );
        let mut insert = Sql::new(&text);
        for (index, hash) in chunk {
            insert = insert.bind(*index as i64).bind(&hash[..]);
        }
        insert.execute(&mut *tx).await?;
    }
    Ok(())
}

/// The latest signed checkpoint: its size and note.
pub async fn latest_checkpoint(db: &Db) -> Result<Option<(u64, Hash, String)>, sqlx::Error> {
    let row: Option<(i64, Vec<u8>, String)> =
        Sql::new("SELECT size, root, note FROM log_tree_checkpoints ORDER BY size DESC LIMIT 1")
            .fetch_optional(db)
            .await?;
    row.map(|(size, root, note)| {
        let root = Hash::try_from(root)
            .map_err(|_| sqlx::Error::Decode("a checkpoint root that is not 32 bytes".into()))?;
        Ok((size as u64, root, note))
    })
    .transpose()
}

/// Every signed tree checkpoint note, by size.
pub async fn checkpoint_notes(db: &Db) -> Result<Vec<(u64, String)>, sqlx::Error> {
    let rows: Vec<(i64, String)> =
        Sql::new("SELECT size, note FROM log_tree_checkpoints ORDER BY size")
            .fetch_all(db)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(size, note)| (size.max(0) as u64, note))
        .collect())
}

/// How long every signed tree checkpoint is kept; older ones are thinned to the last
/// of each minute.
pub const KEEP_EVERY_CHECKPOINT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Thins the tree checkpoints signed before `now` − [`KEEP_EVERY_CHECKPOINT`] to the
/// last one of each minute (the sealer signs several a second under load); how many it
/// removed. Any checkpoint proves what the ones before it prove (the tree only
/// extends), so nothing a receipt, an auditor or a witness needs goes: receipts use the
/// newest, and consistency proofs are built from the tree's hashes, for any sizes.
pub async fn thin_checkpoints(db: &Db, now: Micros) -> Result<u64, sqlx::Error> {
    let before = now.plus(-studyhall_core::clock::duration_micros(
        KEEP_EVERY_CHECKPOINT,
    ));
    Sql::new(
        "DELETE FROM log_tree_checkpoints WHERE signed_at < $1 AND size NOT IN
           (SELECT max(size) FROM log_tree_checkpoints WHERE signed_at < $1
            GROUP BY signed_at / 60000000)",
    )
    .bind(before)
    .execute(db)
    .await
}

/// Why the tree was not signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The stored tree does not extend what was signed before: its rows were
    /// rewritten. Nothing more is signed.
    #[error("the stored tree no longer extends the checkpoint signed at size {size}: {reason}")]
    Inconsistent { size: u64, reason: String },
}

/// Signs a checkpoint of the tree as it has grown, if it grew since the last one and
/// still extends the last one this process signed (`signed`, kept in memory where a
/// database writer cannot reach it; after a restart, the newest in the database). The
/// note; `signed` then holds the new checkpoint.
pub async fn sign(
    db: &Db,
    key: &AuditKey,
    origin: &str,
    clock: &studyhall_core::clock::Clock,
    signed: &mut Option<(u64, Hash)>,
) -> Result<Option<String>, SignError> {
    let size = grown(db).await?.size;
    let now = clock.now();
    let last = match signed {
        Some(last) => Some(*last),
        None => latest_checkpoint(db)
            .await?
            .map(|(size, root, _)| (size, root)),
    };
    if let Some((last_size, last_root)) = last {
        if last_size >= size {
            return Ok(None);
        }
        let again = with_hashes(db, |hashes| Ok(tree::root(&hashes, last_size)?)).await?;
        if again.as_ref() != Ok(&last_root) {
            return Err(SignError::Inconsistent {
                size: last_size,
                reason: match again {
                    Ok(_) => "its root there differs from the signed one".into(),
                    Err(err) => err.to_string(),
                },
            });
        }
    }
    let root = with_hashes(db, |hashes| Ok(tree::root(&hashes, size)?))
        .await?
        .map_err(|err| SignError::Inconsistent {
            size,
            reason: err.to_string(),
        })?;
    let checkpoint = Checkpoint {
        origin: origin.to_owned(),
        size,
        root,
    };
    let note = key.sign_checkpoint(&checkpoint);
    Sql::new(
        "INSERT INTO log_tree_checkpoints (size, root, note, signed_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (size) DO NOTHING",
    )
    .bind(size as i64)
    .bind(&root[..])
    .bind(note.as_str())
    .bind(now)
    .execute(db)
    .await?;
    *signed = Some((size, root));
    Ok(Some(note))
}

impl tree::Hashes for &dyn tree::Hashes {
    fn hash(&self, at: tree::Subtree) -> Result<Hash, tree::Missing> {
        (**self).hash(at)
    }
}

/// A tile of the C2SP `tlog-tiles` API: `tile/<L>/<N>[.p/<W>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TilePath {
    pub level: u8,
    pub index: u64,
    /// 1 to 256 hashes; 256 is a full tile.
    pub width: u16,
}

/// Hashes per full tile.
pub const TILE_WIDTH: u16 = 256;

impl TilePath {
    /// Reads `<L>/<N>[.p/<W>]` (what follows `tile/`), strictly as the spec writes it.
    pub fn parse(path: &str) -> Option<TilePath> {
        let (path, width) = match path.split_once(".p/") {
            Some((path, width)) => {
                let width: u16 = crate::note::decimal(width)?;
                if !(1..TILE_WIDTH).contains(&width) {
                    return None;
                }
                (path, width)
            }
            None => (path, TILE_WIDTH),
        };
        let (level, index) = path.split_once('/')?;
        let level: u8 = crate::note::decimal(level).filter(|level| *level <= 63)?;
        let parts: Vec<&str> = index.split('/').collect();
        let (last, leading) = parts.split_last()?;
        let mut n: u64 = 0;
        for part in leading {
            n = n
                .checked_mul(1000)?
                .checked_add(three_digits(part.strip_prefix('x')?)?)?;
        }
        let index = n.checked_mul(1000)?.checked_add(three_digits(last)?)?;
        Some(TilePath {
            level,
            index,
            width,
        })
    }

    /// The stored hashes it holds, if a tree of `size` leaves has all of them.
    fn subtrees(&self, size: u64) -> Option<Vec<tree::Subtree>> {
        let level = self.level.checked_mul(8).filter(|level| *level < 64)?;
        let first = self.index.checked_mul(u64::from(TILE_WIDTH))?;
        let end = first.checked_add(u64::from(self.width))?;
        let leaves = end.checked_mul(1u64.checked_shl(u32::from(level))?)?;
        if leaves > size || leaves >> level != end {
            return None;
        }
        Some(
            (first..end)
                .map(|index| tree::Subtree { level, index })
                .collect(),
        )
    }
}

fn three_digits(text: &str) -> Option<u64> {
    (text.len() == 3 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// The tile's bytes (its hashes, concatenated), if the tree has grown over it.
pub async fn tile(db: &Db, path: TilePath) -> Result<Option<Vec<u8>>, sqlx::Error> {
    let size = grown(db).await?.size;
    let Some(subtrees) = path.subtrees(size) else {
        return Ok(None);
    };
    let indexes: Vec<u64> = subtrees.iter().map(|s| s.stored_index()).collect();
    let fetched = fetch(db, &indexes).await?;
    let mut bytes = Vec::with_capacity(indexes.len() * 32);
    for index in &indexes {
        let Some(hash) = fetched.0.get(index) else {
            return Ok(None);
        };
        bytes.extend_from_slice(hash);
    }
    Ok(Some(bytes))
}

/// What can be proved about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// A C2SP `tlog-proof`: the event's entry (as `extra`), its index, its inclusion
    /// proof and the signed checkpoint it leads to.
    Proof(String),
    /// No event has this id.
    Unknown,
    /// Stored, but not yet in a signed checkpoint (it will be within a second or so).
    Pending,
    /// The event as stored, or the tree's hashes, no longer lead to the signed root:
    /// altered after the event was logged.
    Altered,
}

/// The receipt of the event `id`.
pub async fn receipt(db: &Db, id: uuid::Uuid) -> Result<Receipt, sqlx::Error> {
    let position: Option<Option<i64>> = Sql::new("SELECT position FROM events WHERE id = $1")
        .bind(id)
        .fetch_scalar(db)
        .await?;
    let Some(position) = position else {
        return Ok(Receipt::Unknown);
    };
    let (Some(position), Some((size, _, note))) = (position, latest_checkpoint(db).await?) else {
        return Ok(Receipt::Pending);
    };
    let grown = grown(db).await?;
    let Some(leaf) = grown.leaf(position).filter(|leaf| *leaf < size) else {
        return Ok(Receipt::Pending);
    };
    let text = format!("SELECT {CHAINED_COLUMNS} FROM events WHERE position = $1");
    let row: ChainedRow = Sql::new(&text).bind(position).fetch_one(db).await?;
    let event = chained_from_row(row)?;
    let Ok(proof) = with_hashes(db, |hashes| tree::inclusion_proof(&hashes, leaf, size)).await?
    else {
        return Ok(Receipt::Altered);
    };
    let entry = event.entry().canonical();
    // The receipt is checked against the checkpoint it hands out before it is handed
    // out, so an event altered since it was logged is reported rather than answered
    // with a proof that fails.
    let checkpoint = crate::note::parse(&note).and_then(|parsed| Checkpoint::parse(parsed.text));
    let proves = checkpoint.is_ok_and(|checkpoint| {
        tree::check_inclusion(
            &proof,
            leaf,
            size,
            &tree::leaf_hash(&entry),
            &checkpoint.root,
        )
        .is_ok()
    });
    if !proves {
        tracing::error!(
            position,
            "a logged event no longer proves itself against the signed checkpoint"
        );
        return Ok(Receipt::Altered);
    }
    let receipt = crate::receipt::Receipt {
        entry,
        index: leaf,
        proof,
        note,
    };
    Ok(Receipt::Proof(receipt.text()))
}

/// The proof that the tree of `old` leaves is a prefix of the tree of `new`, both at
/// most the tree's size.
pub async fn consistency(
    db: &Db,
    old: u64,
    new: u64,
) -> Result<Result<Vec<Hash>, ProofError>, sqlx::Error> {
    let size = grown(db).await?.size;
    if new > size {
        return Ok(Err(ProofError::Sizes {
            old: new,
            new: size,
        }));
    }
    with_hashes(db, |hashes| tree::consistency_proof(&hashes, old, new)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_paths_read_as_the_spec_writes_them() {
        let tile = |level, index, width| {
            Some(TilePath {
                level,
                index,
                width,
            })
        };
        assert_eq!(TilePath::parse("0/000"), tile(0, 0, 256));
        assert_eq!(TilePath::parse("0/x001/x234/067"), tile(0, 1_234_067, 256));
        assert_eq!(TilePath::parse("1/005.p/17"), tile(1, 5, 17));
        assert_eq!(TilePath::parse("63/999"), tile(63, 999, 256));
        for bad in [
            "",
            "0",
            "0/",
            "0/1",
            "0/0001",
            "00/000",
            "64/000",
            "0/001/002",
            "0/x001",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/01",
            "0/000.p/",
            "-1/000",
            "0/x18446744073709551/000",
        ] {
            assert_eq!(TilePath::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_tile_is_served_only_once_the_tree_holds_all_its_hashes() {
        let path = |level, index, width| TilePath {
            level,
            index,
            width,
        };
        assert!(path(0, 0, 256).subtrees(255).is_none());
        assert_eq!(path(0, 0, 256).subtrees(256).map(|s| s.len()), Some(256));
        assert!(path(0, 0, 17).subtrees(17).is_some());
        assert!(path(1, 0, 1).subtrees(255).is_none());
        let top = path(1, 0, 1).subtrees(256).unwrap();
        assert_eq!(top, vec![tree::Subtree { level: 8, index: 0 }]);
        assert!(
            path(7, 1, 256).subtrees(u64::MAX).is_none(),
            "beyond 2^64 leaves"
        );
    }
}
