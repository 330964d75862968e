use sqlx::PgConnection;

use super::{Previous, Stored};
use crate::clock::now_micros;
use crate::stats::model::SessionPost;

/// Stores one session inside the batch's transaction, locking its row: a new session
/// inserts (a concurrent insert of the same id from another instance waits for ours,
/// then does nothing and falls through to the locked read); a known one is read
/// `FOR UPDATE` and replaced.
pub(super) async fn store_session(
    tx: &mut PgConnection,
    post: &SessionPost,
) -> Result<Stored, sqlx::Error> {
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
    if inserted {
        return Ok(Stored::Replacing(None));
    }
    let previous: Previous = sqlx::query_as(
        "SELECT user_id, course_id, total_modules, score_units, time_studied
         FROM stats_sessions WHERE session_id = $1 FOR UPDATE",
    )
    .bind(&post.session)
    .fetch_one(&mut *tx)
    .await?;
    if !previous.owned_by(post) {
        return Ok(Stored::Taken);
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
    Ok(Stored::Replacing(Some(previous)))
}
