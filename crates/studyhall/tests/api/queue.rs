//! The job queue's behaviour, driven batch by batch, on SQLite and (when configured)
//! PostgreSQL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use studyhall::clock::{Clock, Hand};
use studyhall::db::{Db, Tx};
use studyhall::jobs::{
    complete, remove_succeeded, Handler, Handlers, Increments, JobFuture, JobKind, JobState, Queue,
    Retried, Worker, WorkerSettings,
};
use studyhall::sensitive::DatabaseUrl;
use studyhall::sql::Sql;

use crate::helpers::TestDatabase;

/// Fails each job until it has failed `fail_times` (from its payload), then records its
/// effect in `effects` — a table without a unique key, so a double run would show.
#[derive(Default)]
struct Flaky {
    failures: Mutex<HashMap<String, u64>>,
    runs: AtomicUsize,
}

/// The job the tests enqueue: it fails its first `fail_times` runs.
#[derive(Debug, Default, Serialize, Deserialize)]
struct FlakyJob {
    #[serde(default)]
    fail_times: u64,
}

impl JobKind for FlakyJob {
    const KIND: &'static str = "flaky";
}

fn flaky(fail_times: u64) -> FlakyJob {
    FlakyJob { fail_times }
}

impl Handler<FlakyJob> for Arc<Flaky> {
    fn run<'a>(
        &'a self,
        tx: &'a mut Tx,
        job_id: &'a str,
        job: &'a FlakyJob,
        _later: &'a mut Increments,
    ) -> JobFuture<'a> {
        Box::pin(async move {
            self.runs.fetch_add(1, Ordering::SeqCst);
            let fail_times = job.fail_times;
            {
                let mut failures = self.failures.lock().unwrap();
                let failed = failures.entry(job_id.to_owned()).or_default();
                if *failed < fail_times {
                    *failed += 1;
                    anyhow::bail!("planned failure {failed}");
                }
            }
            Sql::new("INSERT INTO effects (job_id) VALUES ($1)")
                .bind(job_id)
                .execute(tx)
                .await
                .map(drop)?;
            Ok(())
        })
    }
}

struct Fixture {
    db: Db,
    queue: Queue,
    /// Moves the queue's clock (leases, backoff).
    hand: Hand,
    flaky: Arc<Flaky>,
    _database: TestDatabase,
}

impl Fixture {
    async fn sqlite() -> Fixture {
        let (url, database) = TestDatabase::sqlite();
        Fixture::on(url, database).await
    }

    async fn postgres() -> Fixture {
        let (url, database) = TestDatabase::postgres().await;
        Fixture::on(url, database).await
    }

    async fn on(url: DatabaseUrl, database: TestDatabase) -> Fixture {
        let db = Db::connect(&url, 8).await.unwrap();
        db.migrate().await.unwrap();
        Sql::new("CREATE TABLE effects (job_id TEXT NOT NULL)")
            .execute(&db)
            .await
            .map(drop)
            .unwrap();
        let (clock, hand) = Clock::adjustable();
        let (queue, _) = Queue::new(&db, 3, true, clock);
        Fixture {
            db,
            queue,
            hand,
            flaky: Arc::new(Flaky::default()),
            _database: database,
        }
    }

    /// A worker that retries a failed job at once.
    fn worker(&self, lease: Duration) -> Worker {
        self.worker_with(WorkerSettings {
            lease,
            backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
            ..WorkerSettings::default()
        })
    }

    fn worker_with(&self, settings: WorkerSettings) -> Worker {
        let mut handlers = Handlers::default();
        handlers.register::<FlakyJob, _>(self.flaky.clone());
        Worker::new(self.queue.clone(), handlers, settings)
    }

    async fn effects(&self) -> (i64, i64) {
        Sql::new(
            "SELECT CAST(count(*) AS BIGINT), CAST(count(DISTINCT job_id) AS BIGINT) FROM effects",
        )
        .fetch_one(&self.db)
        .await
        .unwrap()
    }

    async fn close(self) {
        self.db.close().await;
    }
}

/// Runs each check once per backend: `sqlite::…` always, `postgres::…` when
/// `STUDYHALL_TEST_POSTGRES_URL` is set when the tests run (otherwise listed as ignored).
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                async fn $name() {
                    super::$name(super::Fixture::sqlite().await).await;
                }
                crate::case!($name);
            )*
        }
        mod postgres {
            $(
                async fn $name() {
                    super::$name(super::Fixture::postgres().await).await;
                }
                crate::case!($name, needs = [Postgres]);
            )*
        }
    };
}

on_every_backend!(
    a_job_that_fails_twice_then_succeeds_is_applied_once,
    a_job_that_always_fails_ends_dead_and_can_be_retried,
    a_job_whose_worker_vanished_is_reclaimed_after_its_lease_and_applied_once,
    a_failed_job_waits_out_its_backoff_and_each_retry_waits_longer,
    succeeded_jobs_past_the_retention_are_removed_and_dead_ones_kept,
    payloads_with_one_fault_die_with_one_error_wherever_it_sits,
    concurrent_workers_run_every_job_exactly_once,
    a_job_enqueued_in_a_transaction_exists_only_if_it_commits
);

async fn a_job_that_fails_twice_then_succeeds_is_applied_once(fx: Fixture) {
    let id = fx.queue.enqueue(&flaky(2)).await.unwrap();
    let worker = fx.worker(Duration::from_secs(30));
    let outcomes = [
        worker.run_batch().await.unwrap(),
        worker.run_batch().await.unwrap(),
        worker.run_batch().await.unwrap(),
    ];
    assert_eq!(
        outcomes.map(|o| (o.failed, o.succeeded)),
        [(1, 0), (1, 0), (0, 1)]
    );
    let job = fx.queue.get(&id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Succeeded, 3));
    assert!(job.finished_at.is_some());
    assert_eq!(fx.effects().await, (1, 1));
    fx.close().await;
}

async fn a_job_that_always_fails_ends_dead_and_can_be_retried(fx: Fixture) {
    let id = fx.queue.enqueue(&flaky(4)).await.unwrap();
    let worker = fx.worker(Duration::from_secs(30));
    for _ in 0..3 {
        worker.run_batch().await.unwrap();
    }
    let job = fx.queue.get(&id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Dead, 3));
    assert!(job
        .last_error
        .as_deref()
        .unwrap()
        .contains("planned failure 3"));
    assert_eq!(
        worker.run_batch().await.unwrap().claimed(),
        0,
        "a dead job is not run again by itself"
    );
    let Retried::Queued(retried) = fx
        .queue
        .retry(&id, studyhall::audit::Actor::operator())
        .await
        .unwrap()
    else {
        panic!("a dead job is retried");
    };
    assert_eq!((retried.state, retried.attempts), (JobState::Queued, 0));
    // The death and the retry are in the audit log, each once, committed with the
    // transition itself.
    let recorded: Vec<(String, String)> = Sql::new(
        "SELECT message, data FROM events WHERE component = 'studyhall.jobs' ORDER BY position",
    )
    .fetch_all(fx.queue.db())
    .await
    .unwrap();
    let messages: Vec<&str> = recorded.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(messages, ["job.dead", "job.retried"]);
    let dead: serde_json::Value = serde_json::from_str(&recorded[0].1).unwrap();
    assert_eq!(dead["job"], id.as_str());
    assert_eq!(dead["attempts"], 3);
    assert!(dead["error"]
        .as_str()
        .unwrap()
        .contains("planned failure 3"));
    let retry: serde_json::Value = serde_json::from_str(&recorded[1].1).unwrap();
    assert_eq!(retry["actor"]["kind"], "operator");
    assert_eq!(
        worker.run_batch().await.unwrap().failed,
        1,
        "the fourth planned failure"
    );
    assert_eq!(
        worker.run_batch().await.unwrap().succeeded,
        1,
        "the fifth run succeeds"
    );
    assert_eq!(fx.effects().await, (1, 1));
    assert!(
        matches!(
            fx.queue
                .retry(&id, studyhall::audit::Actor::operator())
                .await
                .unwrap(),
            Retried::NotDead(JobState::Succeeded)
        ),
        "only dead jobs can be retried"
    );
    assert!(matches!(
        fx.queue
            .retry("no-such-job", studyhall::audit::Actor::operator())
            .await
            .unwrap(),
        Retried::NotFound
    ));

    // A finished job can be deleted, once; the deletion is recorded.
    assert!(matches!(
        fx.queue
            .delete(&id, studyhall::audit::Actor::operator())
            .await
            .unwrap(),
        studyhall::jobs::Deletion::Deleted
    ));
    assert!(fx.queue.get(&id).await.unwrap().is_none());
    assert!(matches!(
        fx.queue
            .delete(&id, studyhall::audit::Actor::operator())
            .await
            .unwrap(),
        studyhall::jobs::Deletion::NotFound
    ));
    let deleted: Option<i64> = Sql::new(
        "SELECT count(*) FROM events WHERE component = 'studyhall.jobs' AND message = 'job.deleted'",
    )
    .fetch_scalar(fx.queue.db())
    .await
    .unwrap();
    assert_eq!(deleted, Some(1));
    fx.close().await;
}

async fn a_job_whose_worker_vanished_is_reclaimed_after_its_lease_and_applied_once(fx: Fixture) {
    let id = fx.queue.enqueue(&flaky(0)).await.unwrap();
    // A worker claims the job for five minutes and dies before finishing it.
    let lease = Duration::from_secs(300);
    let claimed = fx.queue.claim(10, lease.as_micros() as i64).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let worker = fx.worker(Duration::from_secs(30));
    fx.hand.advance(lease - Duration::from_secs(1));
    assert_eq!(
        worker.run_batch().await.unwrap().claimed(),
        0,
        "the lease still holds a second before it ends"
    );
    fx.hand.advance(Duration::from_secs(2));
    assert_eq!(
        worker.run_batch().await.unwrap().succeeded,
        1,
        "reclaimed once the lease expired"
    );
    // The vanished worker comes back and tries to finish: its claim is stale.
    let mut tx = fx.queue.begin().await.unwrap();
    assert!(
        !complete(&mut tx, &claimed[0], fx.queue.clock().now())
            .await
            .unwrap(),
        "a stale claim must not complete the job"
    );
    drop(tx);
    let job = fx.queue.get(&id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Succeeded, 2));
    assert_eq!(fx.effects().await, (1, 1));
    fx.close().await;
}

async fn a_failed_job_waits_out_its_backoff_and_each_retry_waits_longer(fx: Fixture) {
    let id = fx.queue.enqueue(&flaky(2)).await.unwrap();
    let backoff = Duration::from_secs(60);
    let worker = fx.worker_with(WorkerSettings {
        backoff,
        max_backoff: Duration::from_secs(3600),
        ..WorkerSettings::default()
    });
    // Attempt n waits backoff × 2^(n-1), within ±20 % jitter.
    for (attempt, wait) in [(1, backoff), (2, backoff * 2)] {
        assert_eq!(
            worker.run_batch().await.unwrap().failed,
            1,
            "attempt {attempt}"
        );
        assert_eq!(
            worker.run_batch().await.unwrap().claimed(),
            0,
            "retried at once"
        );
        fx.hand.advance(wait * 4 / 5 - Duration::from_secs(1));
        assert_eq!(
            worker.run_batch().await.unwrap().claimed(),
            0,
            "retried early"
        );
        fx.hand.advance(wait * 2 / 5 + Duration::from_secs(2));
    }
    assert_eq!(
        worker.run_batch().await.unwrap().succeeded,
        1,
        "not retried after its backoff"
    );
    let job = fx.queue.get(&id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Succeeded, 3));
    assert_eq!(fx.effects().await, (1, 1));
    fx.close().await;
}

async fn succeeded_jobs_past_the_retention_are_removed_and_dead_ones_kept(fx: Fixture) {
    let week = Duration::from_secs(7 * 24 * 3600);
    let old = [
        fx.queue.enqueue(&flaky(1)).await.unwrap(),
        fx.queue.enqueue(&flaky(0)).await.unwrap(),
    ];
    let dead = fx.queue.enqueue(&flaky(9)).await.unwrap();
    let worker = fx.worker(Duration::from_secs(30));
    while worker.run_batch().await.unwrap().claimed() > 0 {}
    assert_eq!(
        fx.queue.get(&dead).await.unwrap().unwrap().state,
        JobState::Dead
    );
    fx.hand.advance(week + Duration::from_secs(60));
    let recent = fx.queue.enqueue(&flaky(0)).await.unwrap();
    while worker.run_batch().await.unwrap().claimed() > 0 {}
    let before = fx.queue.clock().now().plus(-(week.as_micros() as i64));
    assert_eq!(remove_succeeded(&fx.queue, before).await.unwrap(), 2);
    for id in &old {
        assert!(
            fx.queue.get(id).await.unwrap().is_none(),
            "a job that succeeded a week ago is kept"
        );
    }
    assert_eq!(
        fx.queue.get(&dead).await.unwrap().unwrap().state,
        JobState::Dead,
        "dead jobs stay"
    );
    assert_eq!(
        fx.queue.get(&recent).await.unwrap().unwrap().state,
        JobState::Succeeded
    );
    let errors: (i64,) =
        Sql::new("SELECT CAST(count(*) AS BIGINT) FROM job_errors WHERE job_id = $1")
            .bind(&old[0])
            .fetch_one(&fx.db)
            .await
            .unwrap();
    assert_eq!(errors, (0,), "its failed attempt went with it");
    assert_eq!(remove_succeeded(&fx.queue, before).await.unwrap(), 0);
    fx.close().await;
}

async fn payloads_with_one_fault_die_with_one_error_wherever_it_sits(fx: Fixture) {
    for (n, payload) in [
        r#"{"fail_times": "x"}"#,
        r#"{     "fail_times":       "x"}"#,
    ]
    .iter()
    .enumerate()
    {
        Sql::new("INSERT INTO jobs (id, kind, payload, state, attempts, max_attempts, run_at, created_at)
                  VALUES ($1, 'flaky', $2, 'queued', 0, 1, 0, 0)")
            .bind(format!("bad-{n}"))
            .bind(*payload)
            .execute(&fx.db)
            .await
            .unwrap();
    }
    let worker = fx.worker(Duration::from_secs(30));
    while worker.run_batch().await.unwrap().claimed() > 0 {}
    let groups = fx.queue.dead_groups(10).await.unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0].jobs, 2);
    assert!(
        groups[0].error.contains("expected u64") && !groups[0].error.contains("column"),
        "{groups:?}"
    );
    fx.close().await;
}

async fn concurrent_workers_run_every_job_exactly_once(fx: Fixture) {
    for n in 0..1500 {
        fx.queue
            .enqueue(&flaky(u64::from(n % 10 == 0)))
            .await
            .unwrap();
    }
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let worker = fx.worker(Duration::from_secs(30));
            tokio::spawn(async move {
                let mut idle = 0;
                while idle < 3 {
                    match worker.run_batch().await {
                        Ok(outcome) if outcome.claimed() == 0 => idle += 1,
                        Ok(_) => idle = 0,
                        Err(err) => panic!("{err}"),
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(fx.effects().await, (1500, 1500), "{}", fx.db.backend_name());
    let pending = fx
        .queue
        .list(Some(JobState::Succeeded), None, 2000)
        .await
        .unwrap()
        .len();
    assert_eq!(pending, 1500);
    fx.close().await;
}

async fn a_job_enqueued_in_a_transaction_exists_only_if_it_commits(fx: Fixture) {
    let mut tx = fx.queue.begin().await.unwrap();
    let dropped = fx.queue.enqueue_in(&mut tx, &flaky(0)).await.unwrap();
    drop(tx); // rolled back
    assert!(fx.queue.get(&dropped).await.unwrap().is_none());
    let mut tx = fx.queue.begin().await.unwrap();
    let kept = fx.queue.enqueue_in(&mut tx, &flaky(0)).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        fx.queue.get(&kept).await.unwrap().unwrap().state,
        JobState::Queued
    );
    assert_eq!(
        fx.worker(Duration::from_secs(30))
            .run_batch()
            .await
            .unwrap()
            .succeeded,
        1
    );
    fx.close().await;
}
