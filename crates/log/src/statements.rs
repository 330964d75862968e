//! The signed statements about the chain in the database: checkpoints and retention
//! markers, stored, listed by position, and the newest checkpoint.

use super::key::{Statement, Window};
use studyhall_core::clock::Micros;
use studyhall_core::db::Db;
use studyhall_core::sql::{On, Sql};

pub(crate) type StatementRow = (
    String,
    i64,
    Option<i64>,
    String,
    i64,
    String,
    Option<i64>,
    Option<i64>,
);

pub(crate) const STATEMENT_COLUMNS: &str =
    "kind, position, first_position, hash, signed_at, signature, cutoff, chained_by";

pub(crate) fn statement_from_row(row: StatementRow) -> Result<Statement, sqlx::Error> {
    let (kind, position, first_position, hash, signed_at, signature, cutoff, chained_by) = row;
    let signed_at_us = Micros(signed_at);
    match (kind.as_str(), first_position) {
        ("checkpoint", _) => Ok(Statement::Checkpoint {
            position,
            hash,
            signed_at_us,
            signature,
        }),
        ("retention", Some(first_position)) => Ok(Statement::Retention {
            first_position,
            position,
            hash,
            window: cutoff.zip(chained_by).map(|(cutoff, chained_by)| Window {
                cutoff_us: Micros(cutoff),
                chained_by_us: Micros(chained_by),
            }),
            signed_at_us,
            signature,
        }),
        _ => Err(sqlx::Error::Decode(
            format!("event_checkpoints holds an unknown statement `{kind}` at {position}").into(),
        )),
    }
}

/// Stores a signed statement; a second one for the same position (another instance
/// got there first) is dropped.
pub async fn insert_statement<'a>(
    on: impl Into<On<'a>>,
    statement: &Statement,
) -> Result<(), sqlx::Error> {
    let (kind, first, window) = match statement {
        Statement::Checkpoint { .. } => ("checkpoint", None, None),
        Statement::Retention {
            first_position,
            window,
            ..
        } => ("retention", Some(*first_position), *window),
    };
    let (signed_at, signature) = match statement {
        Statement::Checkpoint {
            signed_at_us,
            signature,
            ..
        }
        | Statement::Retention {
            signed_at_us,
            signature,
            ..
        } => (*signed_at_us, signature),
    };
    Sql::new(
        "INSERT INTO event_checkpoints
           (kind, position, first_position, hash, signed_at, signature, cutoff, chained_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
    )
    .bind(kind)
    .bind(statement.position())
    .bind(first)
    .bind(statement.hash())
    .bind(signed_at)
    .bind(signature)
    .bind(window.map(|window| window.cutoff_us))
    .bind(window.map(|window| window.chained_by_us))
    .execute(on)
    .await
    .map(drop)
}

/// Statements with `after < position <= through`, by position (a retention marker
/// before a checkpoint at the same position).
pub async fn statements(
    db: &Db,
    after: i64,
    through: i64,
    limit: i64,
) -> Result<Vec<Statement>, sqlx::Error> {
    Sql::new(&format!(
        "SELECT {STATEMENT_COLUMNS} FROM event_checkpoints
         WHERE position > $1 AND position <= $2 ORDER BY position, kind DESC LIMIT $3"
    ))
    .bind(after)
    .bind(through)
    .bind(limit)
    .fetch_all::<StatementRow>(db)
    .await?
    .into_iter()
    .map(statement_from_row)
    .collect()
}

/// The newest checkpoint's position and signing time.
pub async fn last_checkpoint(db: &Db) -> Result<Option<(i64, Micros)>, sqlx::Error> {
    let row: Option<(i64, i64)> = Sql::new(
        "SELECT position, signed_at FROM event_checkpoints WHERE kind = 'checkpoint'
         ORDER BY position DESC LIMIT 1",
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(position, at)| (position, Micros(at))))
}
