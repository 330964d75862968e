//! What an operator sees of the queue and does to it beyond one job: counts, search,
//! every error of a job, dead jobs grouped by cause, retrying many dead jobs at once,
//! pausing a kind, and each kind's outcomes and timings by minute.

use std::time::Duration;

use super::increments::{Increments, KeyPart};
use super::store::{Claimed, JobState, Queue};
use studyhall_core::clock::Micros;
use studyhall_core::db::Db;
use studyhall_core::dialect::Dialect;
use studyhall_core::sql::Sql;
use studyhall_log::{Actor, Decision};

/// Which jobs: a state, a kind, and text that their payload or last error contains
/// (ASCII letters in any case; at least [`MIN_TEXT`] characters, as its index needs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub kind: Option<String>,
    pub text: Option<String>,
}

/// The shortest search text: the trigram indexes find nothing shorter.
pub const MIN_TEXT: usize = 3;

impl JobFilter {
    /// The condition on `$1` (state), `$2` (kind) and `$3` (a `LIKE` pattern), bound by
    /// [`JobFilter::bind`]: a test of each part the filter sets, so the planner sees
    /// `state = $1` and takes the state's index; a part it leaves unset is a constant
    /// (`$1 = ''`). On PostgreSQL the pattern is served by the trigram indexes; on SQLite
    /// it is checked on the rows of the state (see [`Queue::search`]).
    fn condition(&self, db: &Db) -> String {
        let state = if self.state.is_some() {
            "state = $1"
        } else {
            "$1 = ''"
        };
        let kind = if self.kind.is_some() {
            "kind = $2"
        } else {
            "$2 = ''"
        };
        let text = match self.text {
            None => "$3 = ''".to_owned(),
            Some(_) => {
                let dialect = db.dialect();
                // The expressions PostgreSQL's trigram indexes are built on.
                let (payload, error) = (
                    dialect.like_ci("payload", "$3"),
                    dialect.like_ci("coalesce(last_error, '')", "$3"),
                );
                format!("({payload} OR {error})")
            }
        };
        format!("{state} AND {kind} AND {text}")
    }

    fn bind<'q>(&self, sql: Sql<'q>) -> Sql<'q> {
        sql.bind(self.state.map_or("", JobState::as_str))
            .bind(self.kind.as_deref().unwrap_or(""))
            .bind(self.pattern())
    }

    /// The text as a `LIKE` pattern matching it anywhere, lower case; empty without.
    fn pattern(&self) -> String {
        let Some(text) = self.text.as_deref() else {
            return String::new();
        };
        let mut pattern = String::from("%");
        for c in text.to_lowercase().chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        pattern
    }

    /// The text as a full-text phrase: every character literal.
    fn phrase(&self) -> String {
        format!(
            "\"{}\"",
            self.text.as_deref().unwrap_or("").replace('"', "\"\"")
        )
    }

    /// The same jobs, dead ones only.
    pub fn dead(&self) -> JobFilter {
        JobFilter {
            state: Some(JobState::Dead),
            ..self.clone()
        }
    }
}

/// A job with everything an operator may need to see about it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobDetail {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub payload: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: Micros,
    pub lease_until: Option<Micros>,
    pub lease_holder: Option<String>,
    pub started_at: Option<Micros>,
    pub last_error: Option<String>,
    pub created_at: Micros,
    pub finished_at: Option<Micros>,
}

/// One failed attempt of a job.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobError {
    pub at: Micros,
    pub attempt: i64,
    pub holder: Option<String>,
    pub error: String,
}

/// Dead jobs of one kind that died of the same error.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeadGroup {
    pub kind: String,
    pub error: String,
    pub jobs: i64,
    pub last: Micros,
}

/// How many jobs of a kind are in a state.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StateCount {
    pub kind: String,
    pub state: String,
    pub jobs: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PausedKind {
    pub kind: String,
    pub paused_by: String,
    pub paused_at: Micros,
}

/// One row of `job_minutes`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MinuteCount {
    pub kind: String,
    pub minute: i64,
    pub metric: String,
    pub bucket: i64,
    pub jobs: i64,
}

const DETAIL: &str = "SELECT id, kind, state, payload, attempts, max_attempts, run_at, lease_until,
    lease_holder, started_at, last_error, created_at, finished_at FROM jobs";

/// Selects a page newest first; `$4`/`$5` the cursor (created_at, id), `$6` the limit.
const PAGE: &str = "ORDER BY created_at DESC, id DESC LIMIT $6";

impl Queue {
    pub async fn detail(&self, id: &str) -> Result<Option<JobDetail>, sqlx::Error> {
        Sql::new(&format!("{DETAIL} WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.db())
            .await
    }

    /// Every failed attempt of a job, oldest first.
    pub async fn errors(&self, id: &str) -> Result<Vec<JobError>, sqlx::Error> {
        Sql::new("SELECT at, attempt, holder, error FROM job_errors WHERE job_id = $1 ORDER BY at")
            .bind(id)
            .fetch_all(self.db())
            .await
    }

    /// Jobs matching `filter`, newest first, after the job `before` (its created_at, id).
    pub async fn search(
        &self,
        filter: &JobFilter,
        before: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<JobDetail>, sqlx::Error> {
        let (time, id) = before.unwrap_or((i64::MAX, String::new()));
        let every_state = matches!(filter.state, None | Some(JobState::Succeeded));
        if filter.text.is_some() && every_state && self.db().dialect() == Dialect::Sqlite {
            return self.search_text(filter, &id, limit).await;
        }
        let sql = format!(
            "{DETAIL} WHERE {} AND (created_at < $4 OR (created_at = $4 AND id < $5)) {PAGE}",
            filter.condition(self.db())
        );
        filter
            .bind(Sql::new(&sql))
            .bind(time)
            .bind(&id)
            .bind(limit)
            .fetch_all(self.db())
            .await
    }

    /// A text search on SQLite over most of the queue (every state, or the succeeded
    /// jobs): driven by the trigram index in rowid order (the jobs' order of insertion,
    /// which is their order of creation), so a page reads only the index entries it
    /// shows. The other states hold a queue's few unfinished jobs, whose rows
    /// [`JobFilter::condition`] checks faster than the index would be walked. The text
    /// is checked again on each row, so the page never shows a job the text is not in.
    async fn search_text(
        &self,
        filter: &JobFilter,
        after: &str,
        limit: i64,
    ) -> Result<Vec<JobDetail>, sqlx::Error> {
        // The index's hits in rowid order, each job's row tested by the one filter
        // condition (which checks the text again).
        let sql = format!(
            "SELECT jobs.* FROM (SELECT rowid AS hit FROM jobs_text WHERE jobs_text MATCH $4
                 AND rowid < coalesce((SELECT rowid FROM jobs WHERE id = $5), $6) ORDER BY rowid DESC)
             CROSS JOIN jobs ON jobs.rowid = hit WHERE {} ORDER BY hit DESC LIMIT $7",
            filter.condition(self.db())
        );
        // A first page starts at the newest job; a page after a job since deleted
        // starts again from the newest.
        filter
            .bind(Sql::new(&sql))
            .bind(filter.phrase())
            .bind(after)
            .bind(i64::MAX)
            .bind(limit)
            .fetch_all(self.db())
            .await
    }

    /// How many jobs match `filter`.
    pub async fn count(&self, filter: &JobFilter) -> Result<i64, sqlx::Error> {
        let sql = format!(
            "SELECT CAST(count(*) AS BIGINT) FROM jobs WHERE {}",
            filter.condition(self.db())
        );
        let count: Option<i64> = filter.bind(Sql::new(&sql)).fetch_scalar(self.db()).await?;
        Ok(count.unwrap_or_default())
    }

    /// Requeues every dead job matching `filter` with fresh attempts, in one
    /// transaction, recording once that `by` did and how many; the number requeued.
    pub async fn retry_matching(&self, filter: &JobFilter, by: Actor) -> Result<u64, sqlx::Error> {
        let filter = filter.dead();
        let sql = format!(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $4, lease_until = NULL, finished_at = NULL
             WHERE {}",
            filter.condition(self.db())
        );
        let mut tx = self.db().begin_write().await?;
        let retried = filter
            .bind(Sql::new(&sql))
            .bind(self.clock().now())
            .execute(&mut tx)
            .await?;
        let mut decisions = Vec::new();
        if self.audited && retried > 0 {
            let data = serde_json::json!({
                "kind": filter.kind, "text": filter.text, "jobs": retried,
            });
            let decision = Decision::new("studyhall.jobs", "job.bulk_retried", by, data);
            decisions.push(decision);
        }
        studyhall_log::commit(tx, &decisions, self.clock().now()).await?;
        Ok(retried)
    }

    /// Unfinished and dead jobs by kind and state, from the state index, and the jobs
    /// that succeeded over the last day, from the workers' minutes: succeeded jobs are
    /// most of a queue's rows, and counting them would walk them all.
    pub async fn state_counts(&self) -> Result<(Vec<StateCount>, i64), sqlx::Error> {
        let counts = Sql::new(
            "SELECT kind, state, CAST(count(*) AS BIGINT) AS jobs FROM jobs
             WHERE state IN ('queued', 'running', 'failed', 'dead') GROUP BY kind, state ORDER BY kind, state",
        )
        .fetch_all(self.db())
        .await?;
        let succeeded: Option<i64> = Sql::new(
            "SELECT CAST(coalesce(sum(jobs), 0) AS BIGINT) FROM job_minutes WHERE metric = 'succeeded' AND minute >= $1",
        )
        .bind(self.clock().now().minute() - MINUTES_KEPT)
        .fetch_scalar(self.db())
        .await?;
        Ok((counts, succeeded.unwrap_or_default()))
    }

    /// Dead jobs grouped by kind and error, the largest group first.
    pub async fn dead_groups(&self, limit: i64) -> Result<Vec<DeadGroup>, sqlx::Error> {
        Sql::new(
            "SELECT kind, coalesce(last_error, '') AS error, CAST(count(*) AS BIGINT) AS jobs,
                    max(coalesce(finished_at, created_at)) AS last
             FROM jobs WHERE state = 'dead' GROUP BY kind, last_error
             ORDER BY jobs DESC, last DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.db())
        .await
    }

    /// Pauses `kind` (workers claim none of its jobs; those running finish) or resumes
    /// it, recording that `by` did; false if it was so already.
    pub async fn set_paused(
        &self,
        kind: &str,
        paused: bool,
        by: Actor,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.db().begin_write().await?;
        let change = if paused {
            Sql::new(
                "INSERT INTO job_kinds_paused (kind, paused_by, paused_at) VALUES ($1, $2, $3)
                 ON CONFLICT (kind) DO NOTHING",
            )
            .bind(kind)
            .bind(by.id.as_deref().unwrap_or(by.kind))
            .bind(self.clock().now())
        } else {
            Sql::new("DELETE FROM job_kinds_paused WHERE kind = $1").bind(kind)
        };
        let changed = change.execute(&mut tx).await? == 1;
        let mut decisions = Vec::new();
        if changed && self.audited {
            let message = if paused {
                "job.kind_paused"
            } else {
                "job.kind_resumed"
            };
            let data = serde_json::json!({"kind": kind});
            let decision = Decision::new("studyhall.jobs", message, by, data);
            decisions.push(decision);
        }
        studyhall_log::commit(tx, &decisions, self.clock().now()).await?;
        Ok(changed)
    }

    pub async fn paused(&self) -> Result<Vec<PausedKind>, sqlx::Error> {
        Sql::new("SELECT kind, paused_by, paused_at FROM job_kinds_paused ORDER BY kind")
            .fetch_all(self.db())
            .await
    }

    /// Outcomes and timing buckets from `since` (Unix minutes) on.
    pub async fn minutes(&self, since: i64) -> Result<Vec<MinuteCount>, sqlx::Error> {
        Sql::new(
            "SELECT kind, minute, metric, bucket, jobs FROM job_minutes WHERE minute >= $1
             ORDER BY kind, minute",
        )
        .bind(since)
        .fetch_all(self.db())
        .await
    }
}

/// How long per-minute outcomes and timings are kept.
pub const MINUTES_KEPT: i64 = 24 * 60;

/// Forgets minutes older than [`MINUTES_KEPT`].
pub async fn prune_minutes(queue: &Queue) -> Result<u64, sqlx::Error> {
    let before = queue.clock().now().minute() - MINUTES_KEPT;
    Sql::new("DELETE FROM job_minutes WHERE minute < $1")
        .bind(before)
        .execute(queue.db())
        .await
}

/// Adds a finished attempt to its kind's minute: its outcome, how long it waited once
/// due, and how long it ran; in the minute of `now`.
pub(super) fn time(
    later: &mut Increments,
    job: &Claimed,
    (outcome, now): (&'static str, Micros),
    ran: Duration,
) {
    let minute = now.minute();
    let waited = job.started_at.saturating_sub(job.run_at);
    let ran = studyhall_core::clock::duration_micros(ran);
    for (metric, bucket) in [(outcome, 0), ("wait", bucket(waited)), ("run", bucket(ran))] {
        let key = vec![
            ("kind", KeyPart::Text(job.kind.clone())),
            ("minute", KeyPart::Int(minute)),
            ("metric", KeyPart::Text(metric.to_owned())),
            ("bucket", KeyPart::Int(bucket)),
        ];
        later.add("job_minutes", key, &[("jobs", 1)]);
    }
}

/// The bucket of a duration in µs: quarter octaves, so a bucket spans about 19 %.
pub fn bucket(micros: i64) -> i64 {
    if micros <= 1 {
        return 0;
    }
    (4.0 * (micros as f64).log2()).floor() as i64
}

/// The largest duration (µs) in `bucket`.
pub fn bucket_upper(bucket: i64) -> f64 {
    2f64.powf((bucket + 1) as f64 / 4.0)
}

/// The `q` quantile (0–1) of counts by bucket, as its bucket's upper bound in µs.
pub fn quantile(buckets: &[(i64, i64)], q: f64) -> Option<f64> {
    let total: i64 = buckets.iter().map(|(_, jobs)| jobs).sum();
    if total == 0 {
        return None;
    }
    let mut sorted = buckets.to_vec();
    sorted.sort_unstable();
    let rank = (q * total as f64).ceil().max(1.0) as i64;
    let mut seen = 0;
    for (bucket, jobs) in sorted {
        seen += jobs;
        if seen >= rank {
            return Some(bucket_upper(bucket));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_quarter_octaves_and_quantiles_pick_the_bucket_holding_the_rank() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1024), 40);
        assert!(bucket_upper(bucket(1500)) >= 1500.0);
        assert!(bucket_upper(bucket(1500)) < 1500.0 * 1.2);
        // 90 fast jobs (~1 ms) and 10 slow ones (~1 s): p50 is fast, p95 and p99 slow.
        let counts = [(bucket(1000), 90), (bucket(1_000_000), 10)];
        assert!(quantile(&counts, 0.5).unwrap() < 1300.0);
        assert!(quantile(&counts, 0.95).unwrap() > 1_000_000.0);
        assert_eq!(quantile(&[], 0.5), None);
    }
}
