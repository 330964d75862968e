use sqlx::PgPool;

use super::{delta, Previous, Recorded, ADD_TO_TOTALS};
use crate::clock::now_micros;
use crate::stats::model::SessionPost;

/// One transaction per post. Every post locks its session row, then its course totals
/// row, always in that order, so concurrent posts from any number of instances
/// serialise per session and per course and never deadlock.
#[derive(Clone, Debug)]
pub struct PgStats {
    pool: PgPool,
}

impl PgStats {
    pub fn new(pool: PgPool) -> Self {
        PgStats { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn record(&self, post: &SessionPost) -> Result<Recorded, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // A new session inserts; a concurrent insert of the same id waits for ours and
        // then does nothing, and falls through to the locked read below.
        let inserted = sqlx::query(
            "INSERT INTO stats_sessions
                (session_id, user_id, course_id, total_modules, average_score, score_units, time_studied, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (session_id) DO NOTHING",
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
        .await?
        .rows_affected()
            == 1;
        let previous = if inserted {
            None
        } else {
            let previous: Previous = sqlx::query_as(
                "SELECT user_id, course_id, total_modules, score_units, time_studied
                 FROM stats_sessions WHERE session_id = $1 FOR UPDATE",
            )
            .bind(&post.session)
            .fetch_one(&mut *tx)
            .await?;
            if !previous.owned_by(post) {
                tx.rollback().await?;
                return Ok(Recorded::Taken);
            }
            sqlx::query(
                "UPDATE stats_sessions SET total_modules = $2, average_score = $3, score_units = $4,
                    time_studied = $5, updated_at = $6
                 WHERE session_id = $1",
            )
            .bind(&post.session)
            .bind(post.modules)
            .bind(post.score)
            .bind(post.score_e4())
            .bind(post.time_ms)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
            Some(previous)
        };
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
        tx.commit().await?;
        Ok(Recorded::Stored)
    }
}
