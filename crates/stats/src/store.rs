//! Stats storage. The course aggregate is its own row, changed in the same transaction
//! as the session it summarises, by the difference between the session's new and old
//! contribution, so reading it never scans sessions and a re-post never double-counts.
//!
//! Posts are group-committed on both backends (`studyhall_core::batch`): the posts that queued
//! up together are stored in one transaction, and their totals are summed per course
//! and added once per course.

use std::collections::BTreeMap;

use tokio::task::JoinHandle;

use super::model::{SessionPost, SessionStats, SessionTotals};

use studyhall_core::batch::{Batched, Batcher};
use studyhall_core::db::{Db, Tx};
use studyhall_core::error::StoreError;
use studyhall_core::sql::Sql;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Stored,
    /// The session id belongs to another user or course; nothing changed.
    Taken,
}

/// The aggregate upsert: add a contribution (possibly negative) to the course totals.
const ADD_TO_TOTALS: &str = "INSERT INTO stats_course_totals
    (user_id, course_id, session_count, total_modules, time_studied, weighted_score, score_sum)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (user_id, course_id) DO UPDATE SET
        session_count = stats_course_totals.session_count + excluded.session_count,
        total_modules = stats_course_totals.total_modules + excluded.total_modules,
        time_studied = stats_course_totals.time_studied + excluded.time_studied,
        weighted_score = stats_course_totals.weighted_score + excluded.weighted_score,
        score_sum = stats_course_totals.score_sum + excluded.score_sum";

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

/// The posts that queued up together, stored in one transaction.
///
/// Locks are taken in one order in every transaction, on every instance: the batch's
/// session rows by session id, then its course totals rows by (user, course). Two
/// batches from different instances therefore never wait on each other in a cycle,
/// however their posts overlap. Posts of the same session keep their arrival order
/// (the sort is stable), and each sees the one before it.
struct Batch(Db);

impl Batched for Batch {
    type Write = SessionPost;
    type Outcome = Recorded;

    async fn apply(&mut self, posts: &[SessionPost]) -> Result<Vec<Recorded>, sqlx::Error> {
        let mut tx = self.0.begin_write().await?;
        let mut order: Vec<usize> = (0..posts.len()).collect();
        order.sort_by(|&a, &b| posts[a].session.cmp(&posts[b].session));
        let mut outcomes = vec![Recorded::Stored; posts.len()];
        let mut changes: BTreeMap<(&str, &str), SessionTotals> = BTreeMap::new();
        for index in order {
            let post = &posts[index];
            match store_session(&mut tx, post).await? {
                Stored::Taken => outcomes[index] = Recorded::Taken,
                Stored::Replacing(previous) => {
                    let change = changes.entry((&post.user, &post.course)).or_default();
                    *change = change.plus(delta(post, previous.as_ref()));
                }
            }
        }
        for ((user, course), change) in changes {
            Sql::new(ADD_TO_TOTALS)
                .bind(user)
                .bind(course)
                .bind(change.sessions)
                .bind(change.modules)
                .bind(change.time_ms)
                .bind(change.weighted_score)
                .bind(change.score_sum)
                .execute(&mut tx)
                .await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// What storing one session did.
enum Stored {
    /// The session id belongs to another user or course; nothing was written.
    Taken,
    /// Stored, replacing what it had been (nothing, for a new session).
    Replacing(Option<Previous>),
}

/// The posted session as a row; `ON CONFLICT (session_id)` and the caller's clause
/// follow.
const WRITE_SESSION: &str = "INSERT INTO stats_sessions
    (session_id, user_id, course_id, total_modules, average_score, score_units, time_studied, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (session_id) ";

/// Replaces the stored figures with the posted ones.
const REPLACE: &str = "DO UPDATE SET
    total_modules = excluded.total_modules, average_score = excluded.average_score,
    score_units = excluded.score_units, time_studied = excluded.time_studied,
    updated_at = excluded.updated_at";

/// Stores one session inside the batch's transaction.
///
/// On SQLite the batch holds the one write lock, so reading what the session was and
/// then writing it cannot interleave with another writer. On PostgreSQL a new session
/// is inserted first (a concurrent insert of the same id from another instance waits
/// for ours, then does nothing and falls through); a known one is read `FOR UPDATE`,
/// which holds its row until the batch commits.
async fn store_session(tx: &mut Tx, post: &SessionPost) -> Result<Stored, sqlx::Error> {
    let dialect = tx.dialect();
    if dialect.concurrent_writes() && write_session(tx, post, "DO NOTHING").await? == 1 {
        return Ok(Stored::Replacing(None));
    }
    let lock = dialect.for_update();
    let previous: Option<Previous> = Sql::new(&format!(
        "SELECT user_id, course_id, total_modules, score_units, time_studied
         FROM stats_sessions WHERE session_id = $1{lock}"
    ))
    .bind(&post.session)
    .fetch_optional(&mut *tx)
    .await?;
    if previous
        .as_ref()
        .is_some_and(|previous| !previous.owned_by(post))
    {
        return Ok(Stored::Taken);
    }
    write_session(tx, post, REPLACE).await?;
    Ok(Stored::Replacing(previous))
}

async fn write_session(
    tx: &mut Tx,
    post: &SessionPost,
    on_conflict: &str,
) -> Result<u64, sqlx::Error> {
    Sql::new(&format!("{WRITE_SESSION}{on_conflict}"))
        .bind(&post.session)
        .bind(&post.user)
        .bind(&post.course)
        .bind(post.modules)
        .bind(post.score)
        .bind(post.score_e4())
        .bind(post.time_ms)
        .bind(studyhall_core::clock::now_micros())
        .execute(tx)
        .await
}

/// A stored session's owner and contribution, read before it is replaced.
#[derive(Debug, sqlx::FromRow)]
struct Previous {
    user_id: String,
    course_id: String,
    total_modules: i64,
    score_units: i64,
    time_studied: i64,
}

impl Previous {
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
                sessions.insert(session, Previous {
                    user_id: post.user.clone(), course_id: post.course.clone(),
                    total_modules: modules, score_units: post.score_e4(), time_studied: time_ms,
                });
            }
            let recomputed = sessions.values().fold(SessionTotals::default(), |sum, s| sum.plus(s.contribution()));
            prop_assert_eq!(totals, recomputed);
            prop_assert_eq!(totals.sessions as usize, sessions.len());
        }
    }
}
