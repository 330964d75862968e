use sqlx::{SqliteConnection, SqlitePool};
use tokio::task::JoinHandle;

use super::{delta, Previous, Recorded, ADD_TO_TOTALS};
use crate::batch::{Batched, Batcher};
use crate::clock::now_micros;
use crate::error::StoreError;
use crate::stats::model::SessionPost;

/// SQLite has one writer at a time, so writes go through group commit: the posts that
/// queue up together are recorded one after another in one transaction.
#[derive(Clone, Debug)]
pub struct SqliteStats {
    pool: SqlitePool,
    writer: Batcher<SessionPost, Recorded>,
}

impl SqliteStats {
    pub fn start(pool: SqlitePool) -> (SqliteStats, JoinHandle<()>) {
        let (writer, task) = Batcher::start(Batch(pool.clone()));
        (SqliteStats { pool, writer }, task)
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn record(&self, post: SessionPost) -> Result<Recorded, StoreError> {
        self.writer.submit(post).await
    }
}

/// The posts that queued up together, recorded one after another in one transaction.
struct Batch(SqlitePool);

impl Batched for Batch {
    type Write = SessionPost;
    type Outcome = Recorded;

    async fn apply(&mut self, posts: Vec<SessionPost>) -> Result<Vec<Recorded>, sqlx::Error> {
        // IMMEDIATE takes the write lock up front, so a read-then-write never has to
        // upgrade.
        let mut tx = self.0.begin_with("BEGIN IMMEDIATE").await?;
        let mut outcomes = Vec::with_capacity(posts.len());
        for post in &posts {
            outcomes.push(record_one(&mut tx, post).await?);
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

async fn record_one(
    tx: &mut SqliteConnection,
    post: &SessionPost,
) -> Result<Recorded, sqlx::Error> {
    let previous: Option<Previous> = sqlx::query_as(
        "SELECT user_id, course_id, total_modules, score_units, time_studied
         FROM stats_sessions WHERE session_id = ?",
    )
    .bind(&post.session)
    .fetch_optional(&mut *tx)
    .await?;
    if previous
        .as_ref()
        .is_some_and(|previous| !previous.owned_by(post))
    {
        return Ok(Recorded::Taken);
    }
    sqlx::query(
        "INSERT INTO stats_sessions
            (session_id, user_id, course_id, total_modules, average_score, score_units, time_studied, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (session_id) DO UPDATE SET
            total_modules = excluded.total_modules, average_score = excluded.average_score,
            score_units = excluded.score_units, time_studied = excluded.time_studied,
            updated_at = excluded.updated_at",
    )
    .bind(&post.session)
    .bind(&post.user)
    .bind(&post.course)
    .bind(post.modules)
    .bind(post.score)
    .bind(post.score_e4())
    .bind(post.time_ms)
    .bind(now_micros())
    .execute(&mut *tx)
    .await?;
    let change = delta(post, previous.as_ref());
    sqlx::query(ADD_TO_TOTALS)
        .bind(&post.user)
        .bind(&post.course)
        .bind(change.sessions)
        .bind(change.modules)
        .bind(change.time_ms)
        .bind(change.weighted_score)
        .bind(change.score_sum)
        .execute(&mut *tx)
        .await?;
    Ok(Recorded::Stored)
}
