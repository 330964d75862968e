use std::collections::HashMap;

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::{decode_event, page_order, push_filters, KeyRecord, TrigramStats, COLUMNS};
use crate::events::model::Event;
use crate::events::query::ListQuery;

/// Trigrams of a searched text whose shares are sampled (its first ones).
const SAMPLED_TRIGRAMS: usize = 30;

/// About how many messages a trigram's share is sampled from.
const SAMPLE: i64 = 2000;

/// A trigram in this share of the messages or more is left out of a search of the
/// trigram index: reading its entries costs more than the rows it rules out.
const COMMON_SHARE: f64 = 0.05;

#[derive(Clone, Debug)]
pub(super) struct PgEvents {
    pub(super) pool: PgPool,
    /// Each sampled trigram's share of the messages.
    trigram_shares: TrigramStats<f64>,
}

/// How a message search reads: the trigram index on the whole text, on the part of it
/// whose trigrams are not common (the whole text then tested on each row found), or
/// not at all (every trigram common: the rows the other filters find are tested).
#[derive(Debug, PartialEq, Eq)]
enum Search<'a> {
    Whole,
    Part(&'a str),
    Scan,
}

impl PgEvents {
    pub(super) fn new(pool: PgPool) -> Self {
        PgEvents {
            pool,
            trigram_shares: TrigramStats::new(),
        }
    }

    /// How a search for `text` reads, from the shares of its trigrams among the
    /// messages (sampled in one statement, remembered for a while).
    async fn search<'t>(&self, text: &'t str) -> Result<Search<'t>, sqlx::Error> {
        let trigrams = trigrams(text);
        if trigrams.is_empty() {
            return Ok(Search::Whole);
        }
        let mut shares: HashMap<&str, f64> = HashMap::new();
        let mut unknown: Vec<&str> = Vec::new();
        for (_, trigram) in &trigrams {
            match self.trigram_shares.get(trigram) {
                Some(share) => {
                    shares.insert(trigram, share);
                }
                None if !unknown.contains(trigram) => unknown.push(trigram),
                None => {}
            }
        }
        if !unknown.is_empty() {
            let counts: Vec<String> = (1..=unknown.len())
                .map(|n| format!("count(*) FILTER (WHERE strpos(message, ${n}) > 0)"))
                .collect();
            // Pages picked at random over the whole table, about SAMPLE rows' worth
            // by the planner's row count (all of them while it has none).
            let sample = format!(
                "SELECT count(*), {} FROM (SELECT message FROM events TABLESAMPLE SYSTEM (( \
                 SELECT least(100, 100.0 * {SAMPLE} / greatest(reltuples, 1)) \
                 FROM pg_class WHERE oid = 'events'::regclass)) LIMIT {}) AS sampled",
                counts.join(", "),
                2 * SAMPLE
            );
            let row = unknown
                .iter()
                .fold(sqlx::query(&sample), |query, trigram| query.bind(*trigram))
                .fetch_one(&self.pool)
                .await?;
            let sampled: i64 = row.try_get(0)?;
            for (n, trigram) in unknown.iter().enumerate() {
                // A trigram the sample missed is taken as in half a row of it, so
                // that a longer run of such trigrams counts as rarer.
                let found: i64 = row.try_get(n + 1)?;
                let share = (found as f64).max(0.5) / sampled.max(1) as f64;
                self.trigram_shares.insert(trigram, share);
                shares.insert(trigram, share);
            }
        }
        Ok(narrowed(text, &trigrams, &shares))
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
            // Case-sensitive, as the seed's LIKE; the pg_trgm GIN index serves LIKE.
            let (indexed, tested) = match self.search(message).await? {
                Search::Whole => (Some(message.as_str()), false),
                Search::Part(part) => (Some(part), true),
                Search::Scan => (None, true),
            };
            if let Some(text) = indexed {
                qb.push(" AND message LIKE ")
                    .push_bind(format!("%{}%", like_escape(text)));
            }
            if tested {
                qb.push(" AND strpos(message, ")
                    .push_bind(message.as_str())
                    .push(") > 0");
            }
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

/// The first `SAMPLED_TRIGRAMS` trigrams of `text` (in characters), each with the byte
/// offset it starts at.
fn trigrams(text: &str) -> Vec<(usize, &str)> {
    let starts: Vec<usize> = text
        .char_indices()
        .map(|(at, _)| at)
        .chain([text.len()])
        .collect();
    starts
        .windows(4)
        .take(SAMPLED_TRIGRAMS)
        .map(|window| (window[0], &text[window[0]..window[3]]))
        .collect()
}

/// The search for `text` given its trigrams' shares: the run of consecutive uncommon
/// trigrams whose shares multiply to the least (the rows all of them are expected in),
/// as the part of the text to search the index for; the whole text when none is
/// common.
fn narrowed<'t>(
    text: &'t str,
    trigrams: &[(usize, &str)],
    shares: &HashMap<&str, f64>,
) -> Search<'t> {
    let share = |trigram: &str| shares.get(trigram).copied().unwrap_or(0.0);
    if trigrams
        .iter()
        .all(|(_, trigram)| share(trigram) < COMMON_SHARE)
    {
        return Search::Whole;
    }
    let mut best: Option<(f64, usize, usize)> = None;
    let mut run: Option<(f64, usize, usize)> = None;
    for (index, (_, trigram)) in trigrams.iter().enumerate() {
        let share = share(trigram);
        run = if share < COMMON_SHARE {
            let (product, first, _) = run.unwrap_or((1.0, index, index));
            Some((product * share, first, index))
        } else {
            None
        };
        if let Some(candidate) = run {
            if best.is_none_or(|best| candidate.0 < best.0) {
                best = Some(candidate);
            }
        }
    }
    match best {
        Some((_, first, last)) => {
            let (start, _) = trigrams[first];
            let (at, trigram) = trigrams[last];
            Search::Part(&text[start..at + trigram.len()])
        }
        None => Search::Scan,
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
    use super::{narrowed, trigrams, Search};

    #[test]
    fn trigrams_are_in_characters_with_their_byte_offsets() {
        assert_eq!(trigrams("ab"), []);
        assert_eq!(trigrams("abcd"), [(0, "abc"), (1, "bcd")]);
        assert_eq!(trigrams("éabc"), [(0, "éab"), (2, "abc")]);
        assert_eq!(trigrams(&"x".repeat(100)).len(), super::SAMPLED_TRIGRAMS);
    }

    #[test]
    fn a_search_leaves_out_its_common_trigrams() {
        let text = "ref-0500000";
        let grams = trigrams(text);
        let shares = |common: &[&'static str], rare: &[(&'static str, f64)]| {
            let mut shares: std::collections::HashMap<&str, f64> =
                grams.iter().map(|(_, t)| (*t, 0.01)).collect();
            shares.extend(common.iter().map(|t| (*t, 1.0)));
            shares.extend(rare.iter().copied());
            shares
        };
        assert_eq!(narrowed(text, &grams, &shares(&[], &[])), Search::Whole);
        let prefix_common = shares(&["ref", "ef-", "f-0", "-05"], &[]);
        assert_eq!(
            narrowed(text, &grams, &prefix_common),
            Search::Part("0500000")
        );
        // Two runs apart: the one expected in fewer rows.
        let split = shares(&["ef-", "050"], &[("500", 0.001)]);
        assert_eq!(narrowed(text, &grams, &split), Search::Part("500000"));
        let all: Vec<&str> = grams.iter().map(|(_, t)| *t).collect();
        assert_eq!(narrowed(text, &grams, &shares(&all, &[])), Search::Scan);
    }

    #[test]
    fn like_metacharacters_are_literal() {
        assert_eq!(super::like_escape(r"50%_a\b"), r"50\%\_a\\b");
    }
}
