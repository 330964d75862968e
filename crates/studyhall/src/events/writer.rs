//! Group commit. Every POST hands its event to one writer task per process; the writer
//! takes whatever has queued up (up to `MAX_BATCH`) and stores it in one transaction,
//! so concurrent requests share one fsync instead of paying one each. A request is
//! answered only after the transaction holding its event has committed.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::model::NewEvent;
use super::store::{EventStore, Inserted, KeyClaim, Pending};

const MAX_BATCH: usize = 256;
const QUEUE: usize = 4096;

type Reply = oneshot::Sender<Result<Inserted, Arc<sqlx::Error>>>;

struct Job {
    event: NewEvent,
    claim: Option<KeyClaim>,
    reply: Reply,
}

#[derive(Clone, Debug)]
pub struct Writer {
    queue: mpsc::Sender<Job>,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the event writer has stopped")]
    Stopped,
    #[error(transparent)]
    Database(Arc<sqlx::Error>),
}

impl Writer {
    /// Starts the writer task. It ends once every `Writer` clone is dropped and the
    /// queue is drained, so awaiting the handle after shutdown flushes pending writes.
    pub fn start(store: EventStore) -> (Writer, JoinHandle<()>) {
        let (queue, jobs) = mpsc::channel(QUEUE);
        (Writer { queue }, tokio::spawn(run(store, jobs)))
    }

    pub async fn insert(
        &self,
        event: NewEvent,
        claim: Option<KeyClaim>,
    ) -> Result<Inserted, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job {
                event,
                claim,
                reply,
            })
            .await
            .map_err(|_| WriteError::Stopped)?;
        answer
            .await
            .map_err(|_| WriteError::Stopped)?
            .map_err(WriteError::Database)
    }
}

async fn run(store: EventStore, mut jobs: mpsc::Receiver<Job>) {
    let mut clock = MonotonicClock::default();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (pending, replies): (Vec<Pending>, Vec<Reply>) = batch
            .drain(..)
            .map(|job| {
                let pending = Pending {
                    id: Uuid::now_v7(),
                    created_at: clock.now(),
                    event: job.event,
                    claim: job.claim,
                };
                (pending, job.reply)
            })
            .unzip();
        match store.insert_batch(&pending).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(err) => {
                let err = Arc::new(err);
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// Unix microseconds that never repeat or go backwards within a process, so events
/// stored one after another keep their order even if the wall clock steps back.
#[derive(Default)]
struct MonotonicClock {
    last: i64,
}

impl MonotonicClock {
    fn now(&mut self) -> i64 {
        let wall = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000;
        let wall = i64::try_from(wall).unwrap_or(i64::MAX);
        self.last = wall.max(self.last + 1);
        self.last
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_clock_strictly_increases() {
        let mut clock = super::MonotonicClock::default();
        let a = clock.now();
        let b = clock.now();
        assert!(b > a);
    }
}
