use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use super::{decode_event, page_order, push_filters, KeyRecord, COLUMNS};
use crate::db::SqliteDb;
use crate::events::model::{Event, ListQuery};

/// Candidates an exact filter may leave for a message search to test them one by one
/// rather than walk the trigram index.
const SCAN_WINDOW: i64 = 10_000;

/// How a page is selected: by the filters alone, with the message tested over a
/// bounded window of the page order, or by walking the trigram index.
enum Shape<'a> {
    Plain,
    Window(&'a str),
    Trigram(&'a str),
}

#[derive(Clone, Debug)]
pub struct SqliteEvents {
    pub(super) db: SqliteDb,
}

impl SqliteEvents {
    pub fn new(db: SqliteDb) -> Self {
        SqliteEvents { db }
    }

    pub async fn find_key(&self, scope: &str, key: &str) -> Result<Option<KeyRecord>, sqlx::Error> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT fingerprint, event_id FROM event_idempotency_keys WHERE scope = ? AND key = ?",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&self.db.pool)
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
            .fetch_optional(&self.db.pool)
            .await?
            .map(|row| event_from_row(&row))
            .transpose()
    }

    pub async fn list(&self, query: &ListQuery, limit: u32) -> Result<Vec<Event>, sqlx::Error> {
        let Some(message) = &query.filter.message else {
            return self.fetch(Shape::Plain, query, limit).await;
        };
        let pattern = format!("*{}*", glob_escape(message));
        // With an exact filter that leaves few candidates (counted on its index alone,
        // up to a bound), testing each candidate's message is cheapest and complete.
        // Otherwise walk the trigram index.
        let exact = query.filter.email.is_some()
            || query.filter.environment.is_some()
            || query.filter.component.is_some();
        if exact && self.candidates(query).await? < SCAN_WINDOW {
            return self.fetch(Shape::Window(&pattern), query, limit).await;
        }
        self.fetch(Shape::Trigram(&pattern), query, limit).await
    }

    /// Candidates for the window, counted up to `SCAN_WINDOW`.
    async fn candidates(&self, query: &ListQuery) -> Result<i64, sqlx::Error> {
        let mut count = QueryBuilder::<Sqlite>::new("SELECT count(*) FROM (SELECT 1 FROM events");
        push_filters(&mut count, query);
        push_cursor(&mut count, query);
        count.push(format_args!(" LIMIT {SCAN_WINDOW})"));
        count.build_query_scalar().fetch_one(&self.db.pool).await
    }

    async fn fetch(
        &self,
        shape: Shape<'_>,
        query: &ListQuery,
        limit: u32,
    ) -> Result<Vec<Event>, sqlx::Error> {
        let (op, direction) = page_order(query);
        let order = format!(" ORDER BY created_at {direction}, id {direction}");
        let mut qb = QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM "));
        match shape {
            Shape::Plain => {
                qb.push("events");
                push_filters(&mut qb, query);
                push_cursor(&mut qb, query);
                qb.push(&order);
            }
            Shape::Window(pattern) => {
                qb.push(format_args!("(SELECT {COLUMNS} FROM events"));
                push_filters(&mut qb, query);
                push_cursor(&mut qb, query);
                qb.push(format_args!(
                    "{order} LIMIT {SCAN_WINDOW}) AS events WHERE message GLOB "
                ))
                .push_bind(pattern.to_owned())
                .push(&order);
            }
            Shape::Trigram(pattern) => {
                // Walk the trigram index in rowid order and stop after `limit` matches:
                // no match list is built or sorted. Rowid (`seq`) order is (created_at, id)
                // order because one writer assigns both in step, so the cursor's event
                // gives the rowid to continue from. GLOB is case-sensitive like the seed's
                // LIKE, and the case-sensitive trigram index serves it.
                qb.push("events_message JOIN events ON events.seq = events_message.rowid");
                push_filters(&mut qb, query);
                qb.push(" AND events_message.message GLOB ")
                    .push_bind(pattern.to_owned());
                if let Some(cursor) = &query.after {
                    qb.push(format_args!(
                        " AND events_message.rowid {op} (SELECT seq FROM events WHERE id = "
                    ))
                    .push_bind(cursor.id.to_string())
                    .push(")");
                }
                qb.push(format_args!(" ORDER BY events_message.rowid {direction}"));
            }
        }
        qb.push(format_args!(" LIMIT {limit}"));
        let rows = qb.build().fetch_all(&self.db.pool).await?;
        rows.iter().map(event_from_row).collect()
    }

    pub async fn prune_keys(&self, before: i64) -> Result<u64, sqlx::Error> {
        let done = sqlx::query("DELETE FROM event_idempotency_keys WHERE created_at < ?")
            .bind(before)
            .execute(&self.db.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

fn push_cursor<'a>(qb: &mut QueryBuilder<'a, Sqlite>, query: &'a ListQuery) {
    if let Some(cursor) = &query.after {
        let (op, _) = page_order(query);
        qb.push(format_args!(" AND (created_at, id) {op} ("))
            .push_bind(cursor.created_at)
            .push(", ")
            .push_bind(cursor.id.to_string())
            .push(")");
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
