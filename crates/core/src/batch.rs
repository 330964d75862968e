//! Group commit. Requests hand their write to one batcher task per store; the task
//! takes whatever has queued up (up to `MAX_BATCH`) and applies it in one transaction,
//! so concurrent requests share one fsync instead of paying one each. A request is
//! answered only after the transaction holding its write has committed. Every store
//! that batches does it the same way, on SQLite and on PostgreSQL: it implements
//! [`Batched`] and is started with [`Batcher::start`].
//!
//! Outcomes stay per request. When a batch of several writes fails for a reason other
//! than an unreachable database (a row the database refuses, a deadlock with another
//! instance), each of its writes is applied again alone, so a bad write fails only its
//! own request and the others are stored.

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
    type Write: Send + Sync + 'static;
    type Outcome: Send + 'static;

    /// Stores `writes` in one transaction and returns one outcome per write, in order;
    /// an error fails the whole batch (nothing of it is stored).
    fn apply(
        &mut self,
        writes: &[Self::Write],
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

impl<J: Send + Sync + 'static, O: Send + 'static> Batcher<J, O> {
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
                let answered = match store.apply(&work).await {
                    Ok(outcomes) => Ok(outcomes),
                    Err(err) if work.len() > 1 && !crate::error::is_unavailable(&err) => {
                        tracing::warn!(error = %err, writes = work.len(), "a batch failed; applying its writes one by one");
                        Err(one_by_one(&mut store, &work).await)
                    }
                    Err(err) => {
                        let err = Arc::new(err);
                        Err(work.iter().map(|_| Err(err.clone())).collect())
                    }
                };
                let answers = match answered {
                    Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
                    Err(answers) => answers,
                };
                if let Some(Err(err)) = answers.iter().find(|answer| {
                    answer
                        .as_ref()
                        .is_err_and(|err| crate::error::is_unavailable(err))
                }) {
                    unreachable = Some((std::time::Instant::now(), err.clone()));
                }
                for (reply, answer) in replies.into_iter().zip(answers) {
                    if let Err(Err(err)) = reply.send(answer) {
                        // Handed over (`hand_over`), or its request gave up waiting.
                        metrics::counter!("batched_writes_failed_unawaited_total").increment(1);
                        tracing::warn!(error = %err, "a write no request waited for failed");
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

    /// Queues `job` without waiting for its transaction, for a write that follows a
    /// decision already made elsewhere (the audit record of a decision Redis made). It
    /// waits only while the queue is full, so a slow database slows its callers rather
    /// than growing memory; a write handed over that fails is logged and counted
    /// (`batched_writes_failed_unawaited_total`), since no request waits for its answer.
    pub async fn hand_over(&self, job: J) -> Result<(), StoreError> {
        let (reply, _) = oneshot::channel();
        self.queue
            .send((job, reply))
            .await
            .map_err(|_| StoreError::from(BatchError::Stopped))
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

/// Each write of a failed batch in a transaction of its own: its own outcome or error.
async fn one_by_one<S: Batched>(
    store: &mut S,
    writes: &[S::Write],
) -> Vec<Result<S::Outcome, Arc<sqlx::Error>>> {
    let mut answers = Vec::with_capacity(writes.len());
    for write in writes {
        let answer = store.apply(std::slice::from_ref(write)).await;
        answers.push(match answer.map(|mut outcomes| outcomes.pop()) {
            Ok(Some(outcome)) => Ok(outcome),
            Ok(None) => Err(Arc::new(sqlx::Error::Protocol(
                "a store answered no outcome for a write".into(),
            ))),
            Err(err) => Err(Arc::new(err)),
        });
    }
    answers
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::{Batched, Batcher};
    use crate::error::StoreError;

    /// Stores numbers; a batch holding a negative one is refused whole, as a database
    /// refuses a transaction with one bad row in it.
    struct Numbers {
        stored: Arc<Mutex<Vec<i64>>>,
        batches: Arc<Mutex<Vec<usize>>>,
    }

    impl Batched for Numbers {
        type Write = i64;
        type Outcome = i64;

        async fn apply(&mut self, writes: &[i64]) -> Result<Vec<i64>, sqlx::Error> {
            self.batches.lock().unwrap().push(writes.len());
            if writes.iter().any(|n| *n < 0) {
                return Err(sqlx::Error::Protocol("negative".into()));
            }
            self.stored.lock().unwrap().extend_from_slice(writes);
            Ok(writes.iter().map(|n| n * 10).collect())
        }
    }

    #[tokio::test]
    async fn a_bad_write_fails_only_its_own_request() {
        let stored = Arc::new(Mutex::new(Vec::new()));
        let batches = Arc::new(Mutex::new(Vec::new()));
        let (batcher, task) = Batcher::start(Numbers {
            stored: stored.clone(),
            batches: batches.clone(),
        });
        // Queued before the task first runs, so they arrive as one batch.
        let submits: Vec<_> = [1, 2, -3, 4]
            .into_iter()
            .map(|n| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.submit(n).await })
            })
            .collect();
        let mut answers = Vec::new();
        for submit in submits {
            answers.push(submit.await.unwrap());
        }
        drop(batcher);
        task.await.unwrap();
        assert!(matches!(answers[0], Ok(10)));
        assert!(matches!(answers[1], Ok(20)));
        assert!(
            matches!(answers[2], Err(StoreError::Failed(_))),
            "{:?}",
            answers[2]
        );
        assert!(matches!(answers[3], Ok(40)));
        let mut stored = stored.lock().unwrap().clone();
        stored.sort_unstable();
        assert_eq!(stored, [1, 2, 4]);
        let batches = batches.lock().unwrap().clone();
        assert!(
            batches.iter().any(|size| *size > 1),
            "the writes were never batched: {batches:?}"
        );
    }
}
