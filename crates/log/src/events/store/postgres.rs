use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::{decode_event, page_order, push_filters, KeyRecord, COLUMNS};
use crate::events::model::Event;
use crate::events::query::ListQuery;

#[derive(Clone, Debug)]
pub(super) struct PgEvents {
    pub(super) pool: PgPool,
}

impl PgEvents {
    pub(super) fn new(pool: PgPool) -> Self {
        PgEvents { pool }
    }

    pub(super) async fn find_key(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<KeyRecord>, sqlx::Error> {
        let row: Option<(String, Uuid)> = sqlx::query_as(
            "SELECT fingerprint, event_id FROM event_idempotency_keys WHERE scope = $1 AND key = $2",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(fingerprint, event_id)| KeyRecord {
            fingerprint,
            event_id,
        }))
    }

    pub(super) async fn get(&self, id: Uuid) -> Result<Option<Event>, sqlx::Error> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM events WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| event_from_row(&row))
            .transpose()
    }

    pub(super) async fn list(
        &self,
        query: &ListQuery,
        limit: u32,
    ) -> Result<Vec<Event>, sqlx::Error> {
        let mut qb = QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM events"));
        push_filters(&mut qb, query);
        if let Some(message) = &query.filter.message {
            // Case-sensitive LIKE, as the seed; the pg_trgm GIN index serves it.
            qb.push(" AND message LIKE ")
                .push_bind(format!("%{}%", like_escape(message)));
        }
        let (op, direction) = page_order(query);
        if let Some(cursor) = &query.after {
            qb.push(format_args!(" AND (created_at, id) {op} ("))
                .push_bind(cursor.created_at)
                .push(", ")
                .push_bind(cursor.id)
                .push(")");
        }
        qb.push(format_args!(
            " ORDER BY created_at {direction}, id {direction} LIMIT {limit}"
        ));
        // Planned afresh with the values each time (an unnamed statement): a plan
        // cached for any values cannot know whether the text is rare, where the
        // trigram index finds it, or common, where the exact filters' index should
        // be walked instead, and picks one for all (seen: 650 ms for a rare text).
        let rows = qb.build().persistent(false).fetch_all(&self.pool).await?;
        rows.iter().map(event_from_row).collect()
    }
}

/// Makes `%`, `_` and `\` literal inside a LIKE pattern (backslash is the default escape).
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn event_from_row(row: &PgRow) -> Result<Event, sqlx::Error> {
    decode_event(
        row.try_get("id")?,
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
    fn like_metacharacters_are_literal() {
        assert_eq!(super::like_escape(r"50%_a\b"), r"50\%\_a\\b");
    }
}
