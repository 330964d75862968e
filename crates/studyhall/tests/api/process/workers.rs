//! Job worker processes: killed mid-queue, and two at once on PostgreSQL.

use serde_json::Value;

use super::*;
use crate::helpers::TestDatabase;

async fn a_worker_killed_mid_queue_loses_nothing_and_applies_each_job_once() {
    const ROUNDS: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kill.db").display());
    let server = start_with(&url, &[("STUDYHALL_NO_WORKER", "true")]).await;
    let sum = post_grades(&server, "c-kill", 2000).await;
    let lease = [("STUDYHALL_JOB_LEASE_SECS", "1")];
    // Kill workers mid-queue until one dies holding a claimed batch (a kill can land
    // between batches; each round it very likely does not, but a loaded machine can
    // shift the timing, so there are a dozen rounds).
    let mut stranded: Vec<String> = Vec::new();
    for round in 1..=ROUNDS {
        let mut worker = start_worker(&url, &lease).await;
        let target = course_tally(&server, "c-kill").await.0 + 150;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while course_tally(&server, "c-kill").await.0 < target.min(1800) {
            assert!(
                std::time::Instant::now() < deadline,
                "the worker made no progress"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        worker.start_kill().unwrap(); // SIGKILL
        worker.wait().await.unwrap();
        stranded = jobs_in(&server, "running")
            .await
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect();
        if !stranded.is_empty() || round == ROUNDS {
            break;
        }
        // Nothing was held: the lease has no part in this round; wait it out and retry.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    assert!(
        !stranded.is_empty(),
        "no kill landed mid-batch in {ROUNDS} rounds"
    );

    let _worker = start_worker(&url, &lease).await;
    wait_for_tally(&server, "c-kill", 2000).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (count, total) = course_tally(&server, "c-kill").await;
    assert_eq!(count, 2000, "every job applied exactly once");
    assert!((total - sum as f64).abs() < 1e-6, "{total} vs {sum}");
    for id in stranded {
        let job: Value = admin_json(format!("{}/jobs/{id}", server.address)).await;
        assert_eq!(job["state"], "succeeded");
        assert!(
            job["attempts"].as_i64().unwrap() >= 2,
            "a stranded job is reclaimed after its lease: {job}"
        );
    }
}
crate::case!(a_worker_killed_mid_queue_loses_nothing_and_applies_each_job_once);

async fn two_worker_processes_on_postgresql_apply_each_job_exactly_once() {
    let (url, _database) = TestDatabase::postgres().await;
    let server = start_with(url.expose(), &[("STUDYHALL_NO_WORKER", "true")]).await;
    let sum = post_grades(&server, "c-pg", 2000).await;
    let _a = start_worker(url.expose(), &[]).await;
    let _b = start_worker(url.expose(), &[]).await;
    wait_for_tally(&server, "c-pg", 2000).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (count, total) = course_tally(&server, "c-pg").await;
    assert_eq!(count, 2000, "a job ran twice or not at all");
    assert!((total - sum as f64).abs() < 1e-6, "{total} vs {sum}");
    for state in ["queued", "running", "failed", "dead"] {
        assert!(
            jobs_in(&server, state).await.is_empty(),
            "jobs left {state}"
        );
    }
}
crate::case!(
    two_worker_processes_on_postgresql_apply_each_job_exactly_once,
    needs = [Postgres]
);
