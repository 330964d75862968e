//! Group commit. Requests hand their write to one batcher task per store; the task
//! takes whatever has queued up (up to `MAX_BATCH`) and applies it in one transaction,
//! so concurrent requests share one fsync instead of paying one each. A request is
//! answered only after the transaction holding its write has committed. Every store
//! that batches does it the same way: it implements [`Batched`] and is started with
//! [`Batcher::start`].

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::StoreError;

const MAX_BATCH: usize = 256;
const QUEUE: usize = 4096;
/// After a batch failed because the database was unreachable, batches that queued up
/// meanwhile are answered at once with the same error for this long, instead of each
/// waiting out the pool's connect timeout in turn (a queue of requests would otherwise
/// wait several timeouts). The first batch after it tries the database again.
const UNREACHABLE_COOL_OFF: std::time::Duration = std::time::Duration::from_millis(1000);

type Reply<O> = oneshot::Sender<Result<O, Arc<sqlx::Error>>>;

/// A store whose writes share a transaction: the one shape of every group-committed
/// write path.
pub trait Batched: Send + 'static {
    type Write: Send + 'static;
    type Outcome: Send + 'static;

    /// Stores `writes` in one transaction and returns one outcome per write, in order;
    /// an error fails the whole batch (nothing of it is stored).
    fn apply(
        &mut self,
        writes: Vec<Self::Write>,
    ) -> impl Future<Output = Result<Vec<Self::Outcome>, sqlx::Error>> + Send;
}

pub struct Batcher<J, O> {
    queue: mpsc::Sender<(J, Reply<O>)>,
}

impl<J, O> Clone for Batcher<J, O> {
    fn clone(&self) -> Self {
        Batcher {
            queue: self.queue.clone(),
        }
    }
}

impl<J, O> std::fmt::Debug for Batcher<J, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Batcher")
    }
}

#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error("the writer has stopped")]
    Stopped,
    #[error(transparent)]
    Database(Arc<sqlx::Error>),
}

impl<J: Send + 'static, O: Send + 'static> Batcher<J, O> {
    /// Starts the task over `store`. The task ends once every clone of the batcher is
    /// dropped and the queue is drained, so awaiting the handle after shutdown flushes
    /// pending writes.
    pub fn start<S>(mut store: S) -> (Self, JoinHandle<()>)
    where
        S: Batched<Write = J, Outcome = O>,
    {
        let (queue, mut jobs) = mpsc::channel::<(J, Reply<O>)>(QUEUE);
        let task = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            let mut unreachable: Option<(std::time::Instant, Arc<sqlx::Error>)> = None;
            while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (work, replies): (Vec<J>, Vec<Reply<O>>) = batch.drain(..).unzip();
                if let Some((since, err)) = &unreachable {
                    if since.elapsed() < UNREACHABLE_COOL_OFF {
                        for reply in replies {
                            let _ = reply.send(Err(err.clone()));
                        }
                        continue;
                    }
                }
                unreachable = None;
                match store.apply(work).await {
                    Ok(outcomes) => {
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(Ok(outcome));
                        }
                    }
                    Err(err) => {
                        let err = Arc::new(err);
                        if crate::error::is_unavailable(&err) {
                            unreachable = Some((std::time::Instant::now(), err.clone()));
                        }
                        for reply in replies {
                            let _ = reply.send(Err(err.clone()));
                        }
                    }
                }
            }
        });
        (Batcher { queue }, task)
    }

    /// Queues `job` and waits until the transaction holding it has committed.
    pub async fn submit(&self, job: J) -> Result<O, StoreError> {
        Ok(self.submit_raw(job).await?)
    }

    async fn submit_raw(&self, job: J) -> Result<O, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((job, reply))
            .await
            .map_err(|_| BatchError::Stopped)?;
        answer
            .await
            .map_err(|_| BatchError::Stopped)?
            .map_err(BatchError::Database)
    }
}

impl From<BatchError> for StoreError {
    fn from(err: BatchError) -> Self {
        match err {
            BatchError::Database(err) if !crate::error::is_unavailable(&err) => {
                StoreError::Failed(anyhow::anyhow!(err))
            }
            // Stopped, or the database unreachable: retrying later may work.
            err => StoreError::unavailable(anyhow::anyhow!(err)),
        }
    }
}
