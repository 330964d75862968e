//! The shared Redis connection, for every part of the service that uses Redis.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::sensitive::RedisUrl;

/// A shared, self-reconnecting Redis connection. It is created without connecting, so
/// the server starts (and answers 503) while Redis is down, and recovers by itself.
#[derive(Clone)]
pub struct RedisHandle(Arc<ConnectionManager>);

impl std::fmt::Debug for RedisHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisHandle")
    }
}

impl RedisHandle {
    pub fn open(url: &RedisUrl) -> anyhow::Result<RedisHandle> {
        let client = redis::Client::open(url.expose())
            .map_err(|err| anyhow::anyhow!("invalid STUDYHALL_REDIS_URL {url}: {err}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|err| anyhow::anyhow!("cannot set up Redis at {url}: {err}"))?;
        Ok(RedisHandle(Arc::new(manager)))
    }

    /// Opens the handle and says whether Redis answers: starting while it is down is
    /// allowed (what needs it answers 503 until it is back), but said, so that an
    /// operator is not left guessing.
    pub async fn connect(url: &RedisUrl) -> anyhow::Result<RedisHandle> {
        let redis = RedisHandle::open(url)?;
        match tokio::time::timeout(Duration::from_secs(2), redis.ping()).await {
            Ok(Ok(())) => tracing::info!(redis = %url, "Redis answers"),
            Ok(Err(err)) => {
                tracing::warn!(redis = %url, error = %err, "Redis cannot be reached; stream starts answer 503 until it can")
            }
            Err(_) => {
                tracing::warn!(redis = %url, "Redis did not answer within 2 s; stream starts answer 503 until it does")
            }
        }
        Ok(redis)
    }

    pub fn connection(&self) -> ConnectionManager {
        (*self.0).clone()
    }

    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        let mut connection = self.connection();
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .map(drop)
    }
}
