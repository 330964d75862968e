use sqlx::SqliteConnection;

use super::{Previous, Stored};
use crate::clock::now_micros;
use crate::stats::model::SessionPost;

/// Stores one session inside the batch's transaction. SQLite has one writer, which
/// the batch holds (`BEGIN IMMEDIATE`), so reading what the session was and then
/// writing it cannot interleave with another writer.
pub(super) async fn store_session(
    tx: &mut SqliteConnection,
    post: &SessionPost,
) -> Result<Stored, sqlx::Error> {
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
        return Ok(Stored::Taken);
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
    Ok(Stored::Replacing(previous))
}
