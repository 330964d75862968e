use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use super::{decode_event, page_order, push_filters, KeyRecord, TrigramStats, COLUMNS};
use crate::events::model::Event;
use crate::events::query::ListQuery;
use studyhall_core::db::SqliteDb;

/// Index entries the probes of one search may read together: each trigram counts up
/// to its share (at most `COMMON_TRIGRAM`), and a trigram that reaches it is common,
/// where matching on it would read about as much as the full pattern does.
const PROBE_BUDGET: i64 = 120_000;

/// The most a probe counts to.
const COMMON_TRIGRAM: i64 = 20_000;

/// A trigram found in fewer messages than this bounds a search's reads on its own.
const RARE_TRIGRAM: i64 = 1_000;

/// Trigrams of the searched text probed for how common they are, spread over the text.
const TRIGRAM_PROBES: usize = 12;

/// How a page is selected: by the filters alone, in page order, the message (if any)
/// tested on each row they find; or by walking the trigram index — on every
/// trigram of the pattern, or on its less common ones with the pattern tested on each
/// match.
enum Shape<'a> {
    Filtered(Option<&'a str>),
    Trigram {
        pattern: &'a str,
        selective: Option<String>,
    },
}

/// What narrows a message search in the trigram index: an FTS5 query, and about how
/// many messages match it at most (its least common trigram's count).
struct Selective {
    trigrams: String,
    found: i64,
}

/// How many messages hold a trigram, counted up to `bound`.
#[derive(Clone, Copy)]
struct Counted {
    found: i64,
    bound: i64,
}

#[derive(Clone, Debug)]
pub(super) struct SqliteEvents {
    pub(super) db: SqliteDb,
    trigram_counts: TrigramStats<Counted>,
}

impl SqliteEvents {
    pub(super) fn new(db: SqliteDb) -> Self {
        SqliteEvents {
            db,
            trigram_counts: TrigramStats::new(),
        }
    }

    pub(super) async fn find_key(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<KeyRecord>, sqlx::Error> {
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

    pub(super) async fn get(&self, id: Uuid) -> Result<Option<Event>, sqlx::Error> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM events WHERE id = ?"))
            .bind(id.to_string())
            .fetch_optional(&self.db.pool)
            .await?
            .map(|row| event_from_row(&row))
            .transpose()
    }

    pub(super) async fn list(
        &self,
        query: &ListQuery,
        limit: u32,
    ) -> Result<Vec<Event>, sqlx::Error> {
        let Some(message) = &query.filter.message else {
            return self.fetch(Shape::Filtered(None), query, limit).await;
        };
        let pattern = format!("*{}*", glob_escape(message));
        let exact = query.filter.has_exact();
        let shape = match self.selective_trigrams(message).await? {
            // No trigram narrows the search: walk the rows the exact filters find, in
            // page order, testing each (the text is in a good share of all messages,
            // so a page comes after about as many rows as that share makes up for).
            None if exact => Shape::Filtered(Some(&pattern)),
            // The exact filters leave fewer rows than the trigrams would: test them all.
            Some(Selective { found, .. })
                if exact && self.candidates(query, found).await? < found =>
            {
                Shape::Filtered(Some(&pattern))
            }
            selective => Shape::Trigram {
                pattern: &pattern,
                selective: selective.map(|selective| selective.trigrams),
            },
        };
        self.fetch(shape, query, limit).await
    }

    /// What to match a search for `text` on, as an FTS5 query, when it reads less
    /// than the whole pattern would: the first probed trigram that is rare, or else
    /// every probed trigram that is not common (their intersection is short even when
    /// each is not).
    async fn selective_trigrams(&self, text: &str) -> Result<Option<Selective>, sqlx::Error> {
        let probes = probed_trigrams(text);
        let common =
            (PROBE_BUDGET / probes.len().max(1) as i64).clamp(RARE_TRIGRAM, COMMON_TRIGRAM);
        let count = format!(
            "SELECT count(*) FROM (SELECT rowid FROM events_message \
             WHERE events_message MATCH ? LIMIT {common})"
        );
        let mut uncommon = Vec::new();
        let mut fewest = common;
        for phrase in probes {
            // A count remembered serves when it is exact (below the bound it was
            // counted to) or was counted at least as far as this search counts.
            let known = self
                .trigram_counts
                .get(&phrase)
                .filter(|known| known.found < known.bound || known.bound >= common);
            let found = match known {
                Some(known) => known.found.min(common),
                None => {
                    let found: i64 = sqlx::query_scalar(&count)
                        .bind(&phrase)
                        .fetch_one(&self.db.pool)
                        .await?;
                    let counted = Counted {
                        found,
                        bound: common,
                    };
                    self.trigram_counts.insert(&phrase, counted);
                    found
                }
            };
            if found < RARE_TRIGRAM {
                return Ok(Some(Selective {
                    trigrams: phrase,
                    found,
                }));
            }
            if found < common {
                fewest = fewest.min(found);
                uncommon.push(phrase);
            }
        }
        Ok((!uncommon.is_empty()).then(|| Selective {
            trigrams: uncommon.join(" AND "),
            found: fewest,
        }))
    }

    /// The rows the exact filters leave after the cursor, counted on their index up to
    /// `most`.
    async fn candidates(&self, query: &ListQuery, most: i64) -> Result<i64, sqlx::Error> {
        let mut count = QueryBuilder::<Sqlite>::new("SELECT count(*) FROM (SELECT 1 FROM events");
        push_filters(&mut count, query);
        push_cursor(&mut count, query);
        count.push(format_args!(" LIMIT {most})"));
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
            Shape::Filtered(pattern) => {
                qb.push("events");
                push_filters(&mut qb, query);
                push_cursor(&mut qb, query);
                if let Some(pattern) = pattern {
                    qb.push(" AND message GLOB ").push_bind(pattern.to_owned());
                }
                qb.push(&order);
            }
            Shape::Trigram { pattern, selective } => {
                // Walk the trigram index in rowid order and stop after `limit` matches:
                // no match list is built or sorted. Rowid (`seq`) order is (created_at, id)
                // order because one writer assigns both in step, so the cursor's event
                // gives the rowid to continue from. GLOB is case-sensitive like the seed's
                // LIKE, and the case-sensitive trigram index serves it: on every trigram
                // of the pattern, or on the short entry lists of its less common ones
                // with GLOB testing each stored message they lead to.
                qb.push("events_message JOIN events ON events.seq = events_message.rowid");
                push_filters(&mut qb, query);
                match selective {
                    Some(trigrams) => qb
                        .push(" AND events_message MATCH ")
                        .push_bind(trigrams)
                        .push(" AND events.message GLOB "),
                    None => qb.push(" AND events_message.message GLOB "),
                };
                qb.push_bind(pattern.to_owned());
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

/// Up to `TRIGRAM_PROBES` distinct trigrams of `text` (in characters, as the tokenizer
/// counts them), spread from its start to its end, each quoted as an FTS5 phrase.
fn probed_trigrams(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let windows: Vec<&[char]> = chars.windows(3).collect();
    let step = windows.len().div_ceil(TRIGRAM_PROBES).max(1);
    let mut phrases: Vec<String> = Vec::new();
    for window in windows.iter().step_by(step) {
        let trigram: String = window.iter().collect();
        let phrase = format!("\"{}\"", trigram.replace('"', "\"\""));
        if !phrases.contains(&phrase) {
            phrases.push(phrase);
        }
    }
    phrases
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

    #[test]
    fn probed_trigrams_are_quoted_phrases_spread_over_the_text() {
        assert_eq!(super::probed_trigrams("ab"), Vec::<String>::new());
        assert_eq!(
            super::probed_trigrams("a\"bc"),
            ["\"a\"\"b\"", "\"\"\"bc\""]
        );
        assert_eq!(super::probed_trigrams("ééé"), ["\"ééé\""]);
        let long = "x".repeat(10) + &"0123456789".repeat(10);
        let probes = super::probed_trigrams(&long);
        assert!(probes.len() <= super::TRIGRAM_PROBES);
        assert_eq!(probes[0], "\"xxx\"");
        assert!(probes.iter().any(|p| p.contains('9')), "{probes:?}");
    }
}
