use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, SqlitePool};
use uuid::Uuid;

use super::{decode_event, page_order, select_filtered, Inserted, KeyRecord, Pending, COLUMNS};
use crate::events::model::{Event, ListQuery};

#[derive(Clone, Debug)]
pub struct SqliteEvents {
    pool: SqlitePool,
}

impl SqliteEvents {
    pub fn new(pool: SqlitePool) -> Self {
        SqliteEvents { pool }
    }

    pub async fn insert_batch(&self, batch: &[Pending]) -> Result<Vec<Inserted>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for pending in batch {
            let id = pending.id.to_string();
            if let Some(claim) = &pending.claim {
                let claimed = sqlx::query(
                    "INSERT INTO event_idempotency_keys (scope, key, fingerprint, event_id, created_at)
                     VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                )
                .bind(&claim.scope)
                .bind(&claim.key)
                .bind(&claim.fingerprint)
                .bind(&id)
                .bind(pending.created_at)
                .execute(&mut *tx)
                .await?;
                if claimed.rows_affected() == 0 {
                    outcomes.push(Inserted::KeyTaken);
                    continue;
                }
            }
            let event = &pending.event;
            sqlx::query(
                "INSERT INTO events (id, component, data, email, environment, message, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&id)
            .bind(&event.component)
            .bind(event.data.get())
            .bind(&event.email)
            .bind(&event.environment)
            .bind(&event.message)
            .bind(pending.created_at)
            .execute(&mut *tx)
            .await?;
            outcomes.push(Inserted::Created(pending.stored()));
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    pub async fn find_key(&self, scope: &str, key: &str) -> Result<Option<KeyRecord>, sqlx::Error> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT fingerprint, event_id FROM event_idempotency_keys WHERE scope = ? AND key = ?",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(fingerprint, event_id)| {
            Ok(KeyRecord {
                fingerprint,
                event_id: parse_id(&event_id)?,
            })
        })
        .transpose()
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<Event>, sqlx::Error> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM events WHERE id = ?"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(|row| event_from_row(&row))
            .transpose()
    }

    pub async fn list(&self, query: &ListQuery, limit: u32) -> Result<Vec<Event>, sqlx::Error> {
        let mut qb = select_filtered::<Sqlite>(query);
        if let Some(message) = &query.message {
            // GLOB is case-sensitive like the seed's LIKE, and the case-sensitive
            // trigram index serves it.
            qb.push(" AND seq IN (SELECT rowid FROM events_message WHERE message GLOB ")
                .push_bind(format!("*{}*", glob_escape(message)))
                .push(")");
        }
        let (op, direction) = page_order(query);
        if let Some(cursor) = &query.after {
            qb.push(format_args!(" AND (created_at, id) {op} ("))
                .push_bind(cursor.created_at)
                .push(", ")
                .push_bind(cursor.id.to_string())
                .push(")");
        }
        qb.push(format_args!(
            " ORDER BY created_at {direction}, id {direction} LIMIT {limit}"
        ));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(event_from_row).collect()
    }

    pub async fn prune_keys(&self, before: i64) -> Result<u64, sqlx::Error> {
        let done = sqlx::query("DELETE FROM event_idempotency_keys WHERE created_at < ?")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// Makes `*`, `?` and `[` literal inside a GLOB pattern.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '*' | '?' | '[' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    out
}

fn parse_id(text: &str) -> Result<Uuid, sqlx::Error> {
    Uuid::try_parse(text).map_err(|err| sqlx::Error::Decode(Box::new(err)))
}

fn event_from_row(row: &SqliteRow) -> Result<Event, sqlx::Error> {
    decode_event(
        parse_id(row.try_get("id")?)?,
        row.try_get("component")?,
        row.try_get("data")?,
        row.try_get("email")?,
        row.try_get("environment")?,
        row.try_get("message")?,
        row.try_get("created_at")?,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_metacharacters_are_literal() {
        assert_eq!(super::glob_escape("a*b?c[d]"), "a[*]b[?]c[[]d]");
    }
}
