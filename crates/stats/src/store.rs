//! Stats storage. The course aggregate is its own row, changed in the same transaction
//! as the session it summarises, by the difference between the session's new and old
//! contribution, so reading it never scans sessions and a re-post never double-counts.
//!
//! Posts are group-committed on both backends (`studyhall_core::batch`): the posts that queued
//! up together are stored in one transaction, and their totals are summed per course
//! and added once per course.

use std::collections::{BTreeMap, HashMap, HashSet};

use tokio::task::JoinHandle;

use super::model::{SessionPost, SessionStats, SessionTotals};

use studyhall_core::batch::{Batched, Batcher};
use studyhall_core::db::{Db, Tx};
use studyhall_core::error::StoreError;
use studyhall_core::sql::{tuple, values_rows, Sql};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Stored,
    /// The session id belongs to another user or course; nothing changed.
    Taken,
}

const TOTALS: &str =
    "SELECT session_count AS sessions, total_modules AS modules, time_studied AS time_ms,
    weighted_score, score_sum FROM stats_course_totals WHERE user_id = $1 AND course_id = $2";

const SESSION: &str =
    "SELECT session_id, total_modules AS total_modules_studied, average_score, time_studied
    FROM stats_sessions WHERE session_id = $1 AND user_id = $2 AND course_id = $3";

#[derive(Clone, Debug)]
pub struct StatsStore {
    db: Db,
    writer: Batcher<SessionPost, Recorded>,
}

impl StatsStore {
    /// The store, and its group-commit task to await at shutdown.
    pub fn new(db: &Db) -> (StatsStore, Option<JoinHandle<()>>) {
        let (writer, task) = Batcher::start(Batch(db.clone()));
        let store = StatsStore {
            db: db.clone(),
            writer,
        };
        (store, Some(task))
    }

    #[tracing::instrument(skip(self), fields(session = %post.session))]
    pub async fn record(&self, post: SessionPost) -> Result<Recorded, StoreError> {
        self.writer.submit(post).await
    }

    #[tracing::instrument(skip(self))]
    pub async fn totals(
        &self,
        user: &str,
        course: &str,
    ) -> Result<Option<SessionTotals>, sqlx::Error> {
        let totals: Option<SessionTotals> = Sql::new(TOTALS)
            .bind(user)
            .bind(course)
            .fetch_optional(&self.db)
            .await?;
        Ok(totals.filter(|totals| totals.sessions > 0))
    }

    #[tracing::instrument(skip(self))]
    pub async fn session(
        &self,
        user: &str,
        course: &str,
        session: &str,
    ) -> Result<Option<SessionStats>, sqlx::Error> {
        Sql::new(SESSION)
            .bind(session)
            .bind(user)
            .bind(course)
            .fetch_optional(&self.db)
            .await
    }
}

/// The posts that queued up together, stored in one transaction by four statements,
/// however many posts there are (the database's round trips do not grow with the
/// batch): new sessions inserted, known ones read (and locked), the sessions posted
/// again written, the course totals added to.
///
/// Locks are taken in one order in every transaction, on every instance: the batch's
/// session rows by session id (inserted in that order, then the known ones locked in
/// that order), then its course totals rows by (user, course). Two batches from
/// different instances therefore never wait on each other in a cycle, however their
/// posts overlap. Posts of the same session keep their arrival order (the sort is
/// stable), and each sees the one before it.
struct Batch(Db);

impl Batched for Batch {
    type Write = SessionPost;
    type Outcome = Recorded;

    async fn apply(&mut self, posts: &[SessionPost]) -> Result<Vec<Recorded>, sqlx::Error> {
        let mut order: Vec<usize> = (0..posts.len()).collect();
        order.sort_by(|&a, &b| posts[a].session.cmp(&posts[b].session));
        let mut firsts: Vec<&SessionPost> = order.iter().map(|&index| &posts[index]).collect();
        firsts.dedup_by(|later, first| later.session == first.session);
        let now = studyhall_core::clock::now_micros();
        let mut tx = self.0.begin_write().await?;
        // A new session is stored by its first post here; a concurrent insert of the
        // same id from another instance waits for ours, then leaves it be.
        let inserted: HashSet<String> = write_sessions(&mut tx, &firsts, now, INSERT_NEW)
            .await?
            .into_iter()
            .collect();
        let known: Vec<&str> = firsts
            .iter()
            .map(|post| post.session.as_str())
            .filter(|session| !inserted.contains(*session))
            .collect();
        // What each known session is as the batch goes (none if it has gone since);
        // a session this batch inserted is absent until its first post is applied.
        let mut current: HashMap<&str, Option<Previous>> =
            known.iter().map(|session| (*session, None)).collect();
        for row in read_locked(&mut tx, &known).await? {
            if let Some(entry) = current.get_mut(row.session_id.as_str()) {
                *entry = Some(row);
            }
        }
        let mut outcomes = vec![Recorded::Stored; posts.len()];
        let mut rewrite: BTreeMap<&str, &SessionPost> = BTreeMap::new();
        let mut changes: BTreeMap<(&str, &str), SessionTotals> = BTreeMap::new();
        for index in order {
            let post = &posts[index];
            let session = post.session.as_str();
            let previous = match current.remove(session) {
                Some(Some(previous)) if !previous.owned_by(post) => {
                    outcomes[index] = Recorded::Taken;
                    current.insert(session, Some(previous));
                    continue;
                }
                Some(previous) => {
                    rewrite.insert(session, post);
                    previous
                }
                // The first post of a session this batch inserted.
                None => None,
            };
            let change = changes.entry((&post.user, &post.course)).or_default();
            *change = change.plus(delta(post, previous.as_ref()));
            current.insert(session, Some(Previous::of(post)));
        }
        let rewrite: Vec<&SessionPost> = rewrite.into_values().collect();
        write_sessions(&mut tx, &rewrite, now, REPLACE).await?;
        add_to_totals(&mut tx, &changes).await?;
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// The session rows of `posts` (distinct sessions), written in their order; `ON
/// CONFLICT (session_id)` and `on_conflict` follow. The ids of the sessions written.
async fn write_sessions(
    tx: &mut Tx,
    posts: &[&SessionPost],
    now: i64,
    on_conflict: &str,
) -> Result<Vec<String>, sqlx::Error> {
    if posts.is_empty() {
        return Ok(Vec::new());
    }
    let text = format!(
        "INSERT INTO stats_sessions
         (session_id, user_id, course_id, total_modules, average_score, score_units, time_studied, updated_at)
         VALUES {} ON CONFLICT (session_id) {on_conflict} RETURNING session_id",
        values_rows(posts.len(), 8, tuple)
    );
    let mut statement = Sql::new(&text);
    for post in posts {
        statement = statement
            .bind(&post.session)
            .bind(&post.user)
            .bind(&post.course)
            .bind(post.modules)
            .bind(post.score)
            .bind(post.score_e4())
            .bind(post.time_ms)
            .bind(now);
    }
    let written: Vec<(String,)> = statement.fetch_all(&mut *tx).await?;
    Ok(written.into_iter().map(|(session,)| session).collect())
}

/// The stored rows of `sessions`, locked (on PostgreSQL) in session order.
async fn read_locked(tx: &mut Tx, sessions: &[&str]) -> Result<Vec<Previous>, sqlx::Error> {
    if sessions.is_empty() {
        return Ok(Vec::new());
    }
    let text = format!(
        "SELECT session_id, user_id, course_id, total_modules, score_units, time_studied
         FROM stats_sessions WHERE session_id IN {} ORDER BY session_id{}",
        values_rows(1, sessions.len(), tuple),
        tx.dialect().for_update()
    );
    let statement = sessions.iter().fold(Sql::new(&text), |statement, session| {
        statement.bind(*session)
    });
    statement.fetch_all(&mut *tx).await
}

/// Adds each (user, course)'s change (possibly negative) to its totals, in key order.
async fn add_to_totals(
    tx: &mut Tx,
    changes: &BTreeMap<(&str, &str), SessionTotals>,
) -> Result<(), sqlx::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let text = format!(
        "INSERT INTO stats_course_totals
         (user_id, course_id, session_count, total_modules, time_studied, weighted_score, score_sum)
         VALUES {}
         ON CONFLICT (user_id, course_id) DO UPDATE SET
            session_count = stats_course_totals.session_count + excluded.session_count,
            total_modules = stats_course_totals.total_modules + excluded.total_modules,
            time_studied = stats_course_totals.time_studied + excluded.time_studied,
            weighted_score = stats_course_totals.weighted_score + excluded.weighted_score,
            score_sum = stats_course_totals.score_sum + excluded.score_sum",
        values_rows(changes.len(), 7, tuple)
    );
    let mut statement = Sql::new(&text);
    for ((user, course), change) in changes {
        statement = statement
            .bind(*user)
            .bind(*course)
            .bind(change.sessions)
            .bind(change.modules)
            .bind(change.time_ms)
            .bind(change.weighted_score)
            .bind(change.score_sum);
    }
    statement.execute(&mut *tx).await?;
    Ok(())
}

/// Stores only a session not stored yet.
const INSERT_NEW: &str = "DO NOTHING";

/// Replaces the stored figures with the posted ones.
const REPLACE: &str = "DO UPDATE SET
    total_modules = excluded.total_modules, average_score = excluded.average_score,
    score_units = excluded.score_units, time_studied = excluded.time_studied,
    updated_at = excluded.updated_at";

/// A stored session's owner and contribution, read before it is replaced.
#[derive(Debug, sqlx::FromRow)]
struct Previous {
    session_id: String,
    user_id: String,
    course_id: String,
    total_modules: i64,
    score_units: i64,
    time_studied: i64,
}

impl Previous {
    /// The session as `post` leaves it.
    fn of(post: &SessionPost) -> Previous {
        Previous {
            session_id: post.session.clone(),
            user_id: post.user.clone(),
            course_id: post.course.clone(),
            total_modules: post.modules,
            score_units: post.score_e4(),
            time_studied: post.time_ms,
        }
    }

    fn owned_by(&self, post: &SessionPost) -> bool {
        self.user_id == post.user && self.course_id == post.course
    }

    fn contribution(&self) -> SessionTotals {
        SessionTotals::of(self.total_modules, self.score_units, self.time_studied)
    }
}

/// What recording `post` changes in its course totals, given what it replaces.
fn delta(post: &SessionPost, previous: Option<&Previous>) -> SessionTotals {
    let new = SessionTotals::of(post.modules, post.score_e4(), post.time_ms);
    new.minus(previous.map(Previous::contribution).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::model::{MAX_MODULES, MAX_TIME_MS};

    proptest! {
        /// Adding each post's delta to the totals, as the stores do, always equals the
        /// totals recomputed from the sessions as they finally stand.
        #[test]
        fn applying_deltas_equals_recomputing_from_the_final_sessions(
            posts in prop::collection::vec((0usize..6, 0..=MAX_MODULES, 0.0f64..=100.0, 0..=MAX_TIME_MS), 1..80)
        ) {
            let mut sessions: HashMap<usize, Previous> = HashMap::new();
            let mut totals = SessionTotals::default();
            for (session, modules, score, time_ms) in posts {
                let post = SessionPost {
                    user: "u".into(), course: "c".into(), session: session.to_string(), modules, score, time_ms,
                };
                totals = totals.plus(delta(&post, sessions.get(&session)));
                sessions.insert(session, Previous::of(&post));
            }
            let recomputed = sessions.values().fold(SessionTotals::default(), |sum, s| sum.plus(s.contribution()));
            prop_assert_eq!(totals, recomputed);
            prop_assert_eq!(totals.sessions as usize, sessions.len());
        }
    }
}
