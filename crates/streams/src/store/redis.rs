use std::sync::LazyLock;

use redis::Script;
use uuid::Uuid;

use super::Policy;
use crate::model::{Beat, Counts, Ended, Replacement, StartRequest, Started, Stream, Why, Would};
use studyhall_core::clock::{Clock, Micros};
use studyhall_core::config::StreamPolicy;
use studyhall_core::error::StoreError;
use studyhall_core::redis_handle::RedisHandle;

macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/prologue.lua"),
                include_str!($file)
            ))
        })
    };
}

static START: LazyLock<Script> = script!("lua/start.lua");
static HEARTBEAT: LazyLock<Script> = script!("lua/heartbeat.lua");
static END: LazyLock<Script> = script!("lua/end.lua");
static LIST: LazyLock<Script> = script!("lua/list.lua");

/// Redis down is never "allow": the request fails and nothing is started.
fn unavailable(err: redis::RedisError) -> StoreError {
    StoreError::Unavailable {
        detail:
            "The stream lease store (Redis) is unreachable; nothing was changed. Retry shortly.",
        cause: err.into(),
    }
}

fn malformed(what: &str) -> StoreError {
    StoreError::Failed(anyhow::anyhow!("unexpected reply from the {what} script"))
}

fn number(text: Option<&String>, what: &str) -> Result<i64, StoreError> {
    text.and_then(|t| t.parse().ok())
        .ok_or_else(|| malformed(what))
}

/// A lease from a script's reply: `fields` are its start, expiry, metadata and device
/// (empty for none).
fn lease(
    viewer: &str,
    id: String,
    fields: Option<&[String]>,
    what: &str,
) -> Result<Stream, StoreError> {
    match fields {
        Some([started, expires, metadata, device]) => Ok(Stream {
            id,
            viewer: viewer.to_owned(),
            started_at: Micros(number(Some(started), what)?),
            expires_at: Micros(number(Some(expires), what)?),
            metadata: metadata.clone(),
            device_id: (!device.is_empty()).then(|| device.clone()),
        }),
        _ => Err(malformed(what)),
    }
}

#[derive(Clone, Debug)]
pub struct RedisStreams {
    redis: RedisHandle,
    policy: Policy,
    clock: Clock,
}

impl RedisStreams {
    pub fn new(redis: RedisHandle, policy: Policy, clock: Clock) -> Self {
        RedisStreams {
            redis,
            policy,
            clock,
        }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The viewer's keys, sharing one hash slot.
    fn keys(viewer: &str) -> [String; 6] {
        let base = format!("studyhall:streams:{{{viewer}}}");
        [
            format!("{base}:active"),
            format!("{base}:started"),
            format!("{base}:meta"),
            format!("{base}:limit"),
            format!("{base}:replaced"),
            format!("{base}:device"),
        ]
    }

    async fn run(
        &self,
        script: &Script,
        viewer: &str,
        args: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut invocation = script.prepare_invoke();
        for key in Self::keys(viewer) {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        // The last arguments of every script: the grace and the clock's shift (see
        // `lua/prologue.lua`).
        invocation.arg(self.policy.grace_us);
        invocation.arg(self.clock.shift());
        invocation
            .invoke_async(&mut self.redis.connection())
            .await
            .map_err(unavailable)
    }

    pub async fn start(&self, viewer: &str, request: &StartRequest) -> Result<Started, StoreError> {
        let id = request
            .stream_id
            .clone()
            .unwrap_or_else(|| Uuid::new_v4().to_string());
        let chosen = if request.stream_id.is_some() {
            "1"
        } else {
            "0"
        };
        let args = [
            id.clone(),
            self.policy.lease_us.to_string(),
            self.policy.default_limit.to_string(),
            request.metadata.clone(),
            chosen.to_owned(),
            if self.policy.on_limit == StreamPolicy::KickOldest {
                "1"
            } else {
                "0"
            }
            .to_owned(),
            super::ENDED_KEPT_US.to_string(),
            request.device_id.clone().unwrap_or_default(),
            request.replace.clone().unwrap_or_default(),
            if self.policy.dry_run { "1" } else { "0" }.to_owned(),
        ];
        let reply = self.run(&START, viewer, &args).await?;
        let counts = Counts {
            active: number(reply.get(1), "start")?,
            limit: number(reply.get(2), "start")?,
        };
        match reply.first().map(String::as_str) {
            Some("refused") => {
                let (now, earliest) = (
                    number(reply.get(3), "start")?,
                    number(reply.get(4), "start")?,
                );
                Ok(Started::Refused {
                    counts,
                    retry_after_us: self.policy.retry_after_us(Some(earliest), now),
                })
            }
            Some(outcome @ ("created" | "renewed" | "over")) => {
                let stream = lease(viewer, id, reply.get(3..7), "start")?;
                let count = reply.get(7).map_or(Ok(0), |n| number(Some(n), "start"))?;
                let after = 8 + 6 * usize::try_from(count).map_err(|_| malformed("start"))?;
                let ended = reply
                    .get(8..after)
                    .ok_or_else(|| malformed("start"))?
                    .chunks(6)
                    .map(|old| {
                        Ok(Ended {
                            stream: lease(viewer, old[0].clone(), old.get(1..5), "start")?,
                            why: old
                                .get(5)
                                .and_then(|why| Why::from_code(why))
                                .ok_or_else(|| malformed("start"))?,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                let would = || match self.policy.on_limit {
                    StreamPolicy::Reject => Would::Refuse,
                    StreamPolicy::Ask => Would::Ask,
                    StreamPolicy::KickOldest => Would::Kick(reply[after..].to_vec()),
                };
                Ok(match outcome {
                    "renewed" => Started::Renewed(stream, counts),
                    "over" => Started::OverLimit(stream, counts, ended, would()),
                    _ if ended.is_empty() => Started::Created(stream, counts),
                    _ => Started::Replacing(stream, counts, ended),
                })
            }
            _ => Err(malformed("start")),
        }
    }

    /// Live leases of every viewer: each viewer's set counted from the store's clock
    /// (a walk over the viewers' keys, for the gauge; never on a request's path).
    pub async fn active_total(&self) -> Result<i64, redis::RedisError> {
        let mut connection = self.redis.connection();
        let (seconds, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut connection).await?;
        let now = seconds * 1_000_000 + micros + self.clock.shift();
        let after_now = format!("({}", self.policy.cutoff(now));
        let (mut cursor, mut total) = (0u64, 0i64);
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("studyhall:streams:{*}:active")
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await?;
            if !keys.is_empty() {
                let mut counts = redis::pipe();
                for key in &keys {
                    counts.cmd("ZCOUNT").arg(key).arg(&after_now).arg("+inf");
                }
                let live: Vec<i64> = counts.query_async(&mut connection).await?;
                total += live.iter().sum::<i64>();
            }
            if next == 0 {
                return Ok(total);
            }
            cursor = next;
        }
    }

    pub async fn heartbeat(&self, viewer: &str, id: &str) -> Result<Beat, StoreError> {
        let reply = self
            .run(
                &HEARTBEAT,
                viewer,
                &[id.to_owned(), self.policy.lease_us.to_string()],
            )
            .await?;
        match reply.first().map(String::as_str) {
            None => Ok(Beat::NotActive),
            Some("replaced") => Ok(Beat::Replaced(Replacement {
                at: Micros(number(reply.get(1), "heartbeat")?),
                by: reply
                    .get(2)
                    .cloned()
                    .ok_or_else(|| malformed("heartbeat"))?,
                device: reply.get(3).filter(|device| !device.is_empty()).cloned(),
            })),
            Some(_) => Ok(Beat::Renewed(lease(
                viewer,
                id.to_owned(),
                reply.get(0..4),
                "heartbeat",
            )?)),
        }
    }

    pub async fn end(
        &self,
        viewer: &str,
        id: &str,
    ) -> Result<Option<(Stream, Counts)>, StoreError> {
        let reply = self
            .run(
                &END,
                viewer,
                &[id.to_owned(), self.policy.default_limit.to_string()],
            )
            .await?;
        if reply.is_empty() {
            return Ok(None);
        }
        let stream = lease(viewer, id.to_owned(), reply.get(0..4), "end")?;
        let counts = Counts {
            active: number(reply.get(4), "end")?,
            limit: number(reply.get(5), "end")?,
        };
        Ok(Some((stream, counts)))
    }

    pub async fn list(&self, viewer: &str) -> Result<(Vec<Stream>, Counts), StoreError> {
        let reply = self
            .run(&LIST, viewer, &[self.policy.default_limit.to_string()])
            .await?;
        let limit = number(reply.first(), "list")?;
        let mut streams = reply
            .get(1..)
            .unwrap_or_default()
            .chunks(5)
            .map(|fields| lease(viewer, fields[0].clone(), fields.get(1..5), "list"))
            .collect::<Result<Vec<_>, _>>()?;
        streams.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        let counts = Counts {
            active: streams.len() as i64,
            limit,
        };
        Ok((streams, counts))
    }

    pub async fn set_limit(&self, viewer: &str, limit: Option<i64>) -> Result<(), StoreError> {
        let key = Self::keys(viewer)[3].clone();
        let mut connection = self.redis.connection();
        let command = match limit {
            Some(limit) => redis::cmd("SET").arg(key).arg(limit).clone(),
            None => redis::cmd("DEL").arg(key).clone(),
        };
        command
            .query_async::<()>(&mut connection)
            .await
            .map_err(unavailable)
    }
}
