use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{
    decide, Active, Policy, ACTIVE, END, ENSURE_VIEWER, INSERT, LIST, NO_METADATA, RENEW,
    SET_LIMIT, VIEWER_LIMIT,
};
use crate::clock::Micros;
use crate::db::Db;
use crate::streams::model::{Counts, StartRequest, Started, Stream};

/// The database's clock, in Unix microseconds.
const NOW: &str = "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

/// One transaction per start, holding the viewer's row lock from the count to the
/// insert, so concurrent starts for one viewer from any number of instances queue up.
#[derive(Clone, Debug)]
pub struct PgStreams {
    pool: PgPool,
    policy: Policy,
}

impl PgStreams {
    pub fn new(pool: PgPool, policy: Policy) -> Self {
        PgStreams { pool, policy }
    }

    pub async fn start(
        &self,
        viewer: &str,
        request: &StartRequest,
    ) -> Result<Started, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(ENSURE_VIEWER)
            .bind(viewer)
            .execute(&mut *tx)
            .await?;
        let limit: Option<i64> = sqlx::query_scalar(&format!("{VIEWER_LIMIT} FOR UPDATE"))
            .bind(viewer)
            .fetch_one(&mut *tx)
            .await?;
        let now: i64 = sqlx::query_scalar(NOW).fetch_one(&mut *tx).await?;
        if let Some(id) = &request.stream_id {
            let renewed: Option<Stream> = sqlx::query_as(RENEW)
                .bind(viewer)
                .bind(id)
                .bind(now)
                .bind(self.policy.lease_us)
                .bind(&request.metadata)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = renewed {
                let counts = counts(&mut tx, viewer, now, self.policy).await?;
                tx.commit().await?;
                return Ok(Started::Renewed(row, counts));
            }
        }
        let Active {
            active, earliest, ..
        }: Active = sqlx::query_as(ACTIVE)
            .bind(viewer)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        let counts = match decide(active, earliest, limit, now, self.policy) {
            Ok(counts) => counts,
            Err(refused) => {
                tx.rollback().await?;
                return Ok(refused);
            }
        };
        let id = request
            .stream_id
            .clone()
            .unwrap_or_else(|| Uuid::new_v4().to_string());
        sqlx::query(INSERT)
            .bind(viewer)
            .bind(&id)
            .bind(now)
            .bind(self.policy.lease_us)
            .bind(&request.metadata)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let stream = Stream {
            id,
            viewer: viewer.to_owned(),
            started_at: Micros(now),
            expires_at: Micros(now).plus(self.policy.lease_us),
            metadata: request.metadata.clone(),
        };
        Ok(Started::Created(
            stream,
            Counts {
                active: counts.active + 1,
                ..counts
            },
        ))
    }

    pub async fn heartbeat(&self, viewer: &str, id: &str) -> Result<Option<Stream>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        let now: i64 = sqlx::query_scalar(NOW).fetch_one(&mut *conn).await?;
        let row: Option<Stream> = sqlx::query_as(RENEW)
            .bind(viewer)
            .bind(id)
            .bind(now)
            .bind(self.policy.lease_us)
            .bind(NO_METADATA)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(row)
    }

    pub async fn end(
        &self,
        viewer: &str,
        id: &str,
    ) -> Result<Option<(Stream, Counts)>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        let now: i64 = sqlx::query_scalar(NOW).fetch_one(&mut *conn).await?;
        let row: Option<Stream> = sqlx::query_as(END)
            .bind(viewer)
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let counts = counts(&mut conn, viewer, now, self.policy).await?;
        Ok(Some((row, counts)))
    }

    pub async fn list(&self, viewer: &str) -> Result<(Vec<Stream>, Counts), sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        let now: i64 = sqlx::query_scalar(NOW).fetch_one(&mut *conn).await?;
        let rows: Vec<Stream> = sqlx::query_as(LIST)
            .bind(viewer)
            .bind(now)
            .fetch_all(&mut *conn)
            .await?;
        let limit: Option<Option<i64>> = sqlx::query_scalar(VIEWER_LIMIT)
            .bind(viewer)
            .fetch_optional(&mut *conn)
            .await?;
        let limit = limit.flatten().unwrap_or(self.policy.default_limit);
        let counts = Counts {
            active: rows.len() as i64,
            limit,
        };
        Ok((rows, counts))
    }

    pub async fn set_limit(&self, viewer: &str, limit: Option<i64>) -> Result<(), sqlx::Error> {
        sqlx::query(SET_LIMIT)
            .bind(viewer)
            .bind(limit)
            .execute(&self.pool)
            .await
            .map(drop)
    }

    /// The database, with the query that reads its clock, for the reads both SQL
    /// backends share.
    pub fn clocked(&self) -> (Db, &'static str) {
        (Db::Postgres(self.pool.clone()), NOW)
    }
}

async fn counts(
    conn: &mut PgConnection,
    viewer: &str,
    now: i64,
    policy: Policy,
) -> Result<Counts, sqlx::Error> {
    let active: Active = sqlx::query_as(ACTIVE)
        .bind(viewer)
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;
    Ok(active.counts(policy))
}
