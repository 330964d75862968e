//! Retention: removing the events a signed checkpoint says were chained before the
//! policy's cutoff, under signed markers, after checking the range still chains to it.

use super::key::AuditKey;
use super::key::Statement;
use super::statements::{insert_statement, statement_from_row, StatementRow, STATEMENT_COLUMNS};
use super::store::{chained_after, Filter};
use studyhall_core::clock::Micros;
use studyhall_core::db::Db;
use studyhall_core::sql::Sql;

/// Whether a retention marker says `position` was removed.
pub async fn removed_by_retention(db: &Db, position: i64) -> Result<bool, sqlx::Error> {
    let markers: Option<i64> = Sql::new(
        "SELECT COUNT(*) FROM event_checkpoints
         WHERE kind = 'retention' AND first_position <= $1 AND position >= $1",
    )
    .bind(position)
    .fetch_scalar(db)
    .await?;
    Ok(markers.unwrap_or(0) > 0)
}

/// Removes the events a signed checkpoint says were chained before `cutoff`, oldest
/// first, `batch` per transaction, each transaction leaving a retention marker signed by
/// `key` at `now` that names the cutoff and that checkpoint's time. How old an event is
/// is never read from its `created_at`, which a database writer could back-date: the
/// newest checkpoint this key signed at or before the cutoff is the limit. Before anything is
/// removed the whole range is checked to chain to that checkpoint's hash, so a changed
/// event is never removed under a valid marker. How many it removed.
pub async fn remove_before(
    db: &Db,
    key: &AuditKey,
    (cutoff, now): (Micros, Micros),
    batch: i64,
) -> Result<u64, RetentionError> {
    let Some((limit, limit_hash, chained_by)) = retention_limit(db, key, cutoff).await? else {
        return Ok(0);
    };
    check_range(db, limit, &limit_hash).await?;
    let window = Some(super::key::Window {
        cutoff_us: cutoff,
        chained_by_us: chained_by,
    });
    let mut removed = 0;
    loop {
        let mut tx = db.begin_write().await?;
        let rows: Vec<(i64, String)> = Sql::new(
            "SELECT position, hash FROM events WHERE position IS NOT NULL AND position <= $1
             ORDER BY position LIMIT $2",
        )
        .bind(limit)
        .bind(batch)
        .fetch_all(&mut tx)
        .await?;
        let (Some((first, _)), Some((last, hash))) = (rows.first(), rows.last()) else {
            return Ok(removed);
        };
        let (first, last) = (*first, *last);
        Sql::new(
            "DELETE FROM event_idempotency_keys WHERE event_id IN
               (SELECT id FROM events WHERE position >= $1 AND position <= $2)",
        )
        .bind(first)
        .bind(last)
        .execute(&mut tx)
        .await?;
        let gone = Sql::new("DELETE FROM events WHERE position >= $1 AND position <= $2")
            .bind(first)
            .bind(last)
            .execute(&mut tx)
            .await?;
        // A checkpoint inside the removed range covers events no longer there; the
        // marker now speaks for them.
        Sql::new("DELETE FROM event_checkpoints WHERE kind = 'checkpoint' AND position <= $1")
            .bind(last)
            .execute(&mut tx)
            .await?;
        let marker = key.retention((first, last), hash, window, now);
        insert_statement(&mut tx, &marker).await?;
        tx.commit().await?;
        removed += gone;
        if (rows.len() as i64) < batch || last == limit {
            return Ok(removed);
        }
        // Let writers in between batches.
        tokio::task::yield_now().await;
    }
}

/// Why retention removed nothing.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The events to remove do not chain to the checkpoint: they were changed.
    #[error("retention refused: {0}")]
    Altered(String),
}

/// The newest chain checkpoint `key` signed before `cutoff` (its signature checked, as
/// a database writer could insert rows): its position, hash and signing time.
async fn retention_limit(
    db: &Db,
    key: &AuditKey,
    cutoff: Micros,
) -> Result<Option<(i64, String, Micros)>, sqlx::Error> {
    let rows = Sql::new(&format!(
        "SELECT {STATEMENT_COLUMNS} FROM event_checkpoints
         WHERE kind = 'checkpoint' AND signed_at <= $1 ORDER BY position DESC LIMIT 16"
    ))
    .bind(cutoff)
    .fetch_all::<StatementRow>(db)
    .await?;
    let public = key.public();
    for row in rows {
        let statement = statement_from_row(row)?;
        if let Statement::Checkpoint {
            position,
            hash,
            signed_at_us,
            ..
        } = &statement
        {
            if statement.verify(&public) {
                return Ok(Some((*position, hash.clone(), *signed_at_us)));
            }
        }
    }
    Ok(None)
}

/// Checks that the stored events up to `limit` chain from where the log starts (the
/// last retention marker, or the beginning) to `limit_hash`.
async fn check_range(db: &Db, limit: i64, limit_hash: &str) -> Result<(), RetentionError> {
    let start: Option<(i64, String)> = Sql::new(
        "SELECT position, hash FROM event_checkpoints WHERE kind = 'retention'
         ORDER BY position DESC LIMIT 1",
    )
    .fetch_optional(db)
    .await?;
    let (mut next, mut previous) = match start {
        Some((position, hash)) => (position + 1, hash),
        None => (1, crate::chain::GENESIS.to_owned()),
    };
    let altered = |position: i64, what: &str| {
        RetentionError::Altered(format!(
            "the event at position {position} {what}; nothing was removed"
        ))
    };
    while next <= limit {
        let page = chained_after(db, next - 1, 1000, &Filter::default()).await?;
        let Some(last) = page.last().map(|event| event.position) else {
            return Err(altered(next, "is missing"));
        };
        for event in page.iter().take_while(|event| event.position <= limit) {
            if event.position != next {
                return Err(altered(next, "is missing"));
            }
            let hash = event
                .entry()
                .link(&previous)
                .map_err(|err| altered(event.position, &err.to_string()))?;
            if hash != event.hash {
                return Err(altered(event.position, "does not hash to its stored hash"));
            }
            previous = hash;
            next += 1;
        }
        if last >= limit {
            break;
        }
    }
    if previous != limit_hash {
        return Err(altered(
            limit,
            "does not chain to the hash its signed checkpoint holds (an earlier event was changed and the chain recomputed)",
        ));
    }
    Ok(())
}
