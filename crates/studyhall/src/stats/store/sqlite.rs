use sqlx::{SqliteConnection, SqlitePool};
use tokio::task::JoinHandle;

use super::{delta, Previous, Recorded, ADD_TO_TOTALS};
use crate::batch::{BatchError, Batcher};
use crate::clock::now_micros;
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
        let batch_pool = pool.clone();
        let (writer, task) = Batcher::start(move |posts: Vec<SessionPost>| {
            let pool = batch_pool.clone();
            async move { record_batch(&pool, posts).await }
        });
        (SqliteStats { pool, writer }, task)
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn record(&self, post: SessionPost) -> Result<Recorded, BatchError> {
        self.writer.submit(post).await
    }
}

async fn record_batch(
    pool: &SqlitePool,
    posts: Vec<SessionPost>,
) -> Result<Vec<Recorded>, sqlx::Error> {
    // IMMEDIATE takes the write lock up front, so a read-then-write never has to upgrade.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut outcomes = Vec::with_capacity(posts.len());
    for post in &posts {
        outcomes.push(record_one(&mut tx, post).await?);
    }
    tx.commit().await?;
    Ok(outcomes)
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
