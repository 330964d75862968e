//! The store ceiling (`studyhall store-ceiling`, run by `bench/run`): the rows a write
//! endpoint stores, written through the same store code, batching and durability, by
//! N concurrent tasks in this process and without HTTP. The benchmark sets each
//! endpoint's rate beside it, so a reader sees how far the HTTP path is from what the
//! storage itself can do.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::config::ServeSettings;
use crate::error::StoreError;
use crate::events::model::NewEvent;
use crate::grades::post::GradePost;
use crate::grades::CourseGrade;
use crate::stats::model::SessionPost;
use crate::streams::model::{StartRequest, Started};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Write {
    /// `POST /api/events`: one event through the events writer.
    Events,
    /// `POST /courses/{id}`: one new learning session.
    Sessions,
    /// `POST /stats/student/grade`: one grade job enqueued, the worker running.
    Grades,
    /// `POST /api/v1/streams` then `DELETE /api/v1/streams/{id}`: one start+end pair.
    StreamPairs,
}

#[derive(Debug, Clone, Args)]
pub struct CeilingArgs {
    /// The write to measure.
    #[arg(long, value_enum)]
    pub write: Write,

    /// Concurrent writers (as wrk's connections).
    #[arg(long, default_value_t = 32)]
    pub connections: u32,

    /// Seconds to write for.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,

    #[command(flatten)]
    pub serve: ServeSettings,
}

/// What a run measured, as `bench/run` reads it.
#[derive(Debug, Serialize)]
pub struct Report {
    pub rps: f64,
    pub p50: f64,
    pub p99: f64,
    pub requests: u64,
    pub errors: u64,
}

/// One write of the measured kind: the `n`-th of writer `task`.
type WriteOnce = Arc<dyn Fn(u64, u64) -> Pending + Send + Sync>;
type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send>>;

pub async fn run(args: &CeilingArgs) -> anyhow::Result<Report> {
    let settings = &args.serve;
    let (core, enqueuer) = crate::module::Core::open(
        &settings.database,
        settings.redis_url.as_ref(),
        settings.jobs.job_max_attempts,
        &settings.audit.modules,
        settings.clock.clone(),
    )
    .await?;
    let db = core.db.clone();
    let mut tasks = crate::module::Tasks::upkeep(&db);
    tasks.writer(enqueuer);
    let write: WriteOnce = match args.write {
        Write::Events => {
            let (_, writer, task) = crate::events::writer(&core);
            tasks.writer(Some(task));
            Arc::new(move |task, n| {
                let writer = writer.clone();
                Box::pin(async move { writer.insert(event(task, n), None).await.map(drop) })
            })
        }
        Write::Sessions => {
            let (store, task) = crate::stats::store(&core);
            tasks.writer(task);
            let run = run_tag();
            Arc::new(move |task, n| {
                let store = store.clone();
                let post = session(&run, task, n);
                Box::pin(async move { store.record(post).await.map(drop) })
            })
        }
        Write::Grades => {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let handlers = crate::job_handlers(|plugin| plugin.name == "grades");
            let worker =
                crate::jobs::run_worker(core.queue.clone(), handlers, &settings.jobs, stopped);
            tasks.worker(stop, tokio::spawn(worker));
            let queue = core.queue.clone();
            Arc::new(move |task, n| {
                let queue = queue.clone();
                Box::pin(async move { queue.enqueue(&CourseGrade(grade(task, n))).await.map(drop) })
            })
        }
        Write::StreamPairs => {
            let (store, task) = crate::streams::store(&core, &settings.streams)?;
            tasks.writer(task);
            let run = run_tag();
            Arc::new(move |task, n| {
                let store = store.clone();
                let viewer = format!("ceiling-{run}-{task}-{n}");
                Box::pin(async move {
                    let start = StartRequest {
                        stream_id: Some(format!("s{n}")),
                        device_id: None,
                        replace: None,
                        metadata: r#"{"video_name":"bench"}"#.to_owned(),
                        ends: false,
                    };
                    match store.start(&viewer, &start).await? {
                        Started::Created(stream, _)
                        | Started::Renewed(stream, _)
                        | Started::Replacing(stream, _, _)
                        | Started::OverLimit(stream, _, _, _) => {
                            store.end(&viewer, &stream.id).await.map(drop)
                        }
                        Started::Refused { .. } => Err(StoreError::Failed(anyhow::anyhow!(
                            "a new viewer's first stream was refused"
                        ))),
                    }
                })
            })
        }
    };
    drop(core);
    let report = drive(write, args.connections, Duration::from_secs(args.seconds)).await;
    tasks.stop().await;
    db.close().await;
    Ok(report)
}

/// Runs `write` on `connections` tasks for `length`, each waiting for its write to be
/// acknowledged before starting the next, as an HTTP client on one connection does.
async fn drive(write: WriteOnce, connections: u32, length: Duration) -> Report {
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + length;
    let mut writers = tokio::task::JoinSet::new();
    for task in 0..u64::from(connections) {
        let write = write.clone();
        let errors = errors.clone();
        writers.spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline {
                let at = Instant::now();
                if write(task, n).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                latencies.push(at.elapsed());
                n += 1;
            }
            latencies
        });
    }
    let mut latencies: Vec<Duration> = Vec::new();
    while let Some(done) = writers.join_next().await {
        latencies.extend(done.unwrap_or_default());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let quantile = |q: f64| {
        let index = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        latencies
            .get(index)
            .map_or(0.0, |latency| latency.as_secs_f64() * 1000.0)
    };
    Report {
        rps: latencies.len() as f64 / elapsed,
        p50: quantile(0.50),
        p99: quantile(0.99),
        requests: latencies.len() as u64,
        errors: errors.load(Ordering::Relaxed),
    }
}

/// The rows `bench/post_events.lua`, `post_sessions.lua` and `post_grades.lua` send.
fn event(task: u64, n: u64) -> NewEvent {
    const COMPONENTS: [&str; 5] = ["order", "billing", "auth", "search", "video"];
    const ENVIRONMENTS: [&str; 3] = ["production", "staging", "development"];
    let data = serde_json::value::RawValue::from_string(format!(r#"{{"n":{n},"t":{task}}}"#))
        .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned());
    NewEvent {
        component: COMPONENTS[(n % 5) as usize].to_owned(),
        data,
        email: format!("user{}@example.com", n % 997),
        environment: ENVIRONMENTS[(n % 3) as usize].to_owned(),
        message: format!("bench event {task}-{n} failed"),
    }
}

/// Distinct per run, so a second run on the same database writes new rows too.
fn run_tag() -> String {
    format!("{:x}", crate::clock::now_micros())
}

fn session(run: &str, task: u64, n: u64) -> SessionPost {
    SessionPost {
        user: "9c1b2f8e-6d0a-4a2b-8a57-0b7b0e5d8f11".to_owned(),
        course: format!("00000000-0000-4000-8000-{:012}", n % 50),
        session: format!("ceiling-{run}-{task}-{n}"),
        modules: (n % 15) as i64,
        score: (n % 100) as f64 + 0.5,
        time_ms: (n * 7 % 100_000) as i64,
    }
}

fn grade(task: u64, n: u64) -> GradePost {
    GradePost {
        student_id: format!("{task:08x}-0000-4000-8000-{:012x}", n % 1000),
        course_id: format!("bench-{}", n % 20),
        task_id: None,
        grade_e6: ((n % 10) * 10_000_000 + (n % 10) * 100_000) as i64,
        on_time: !n.is_multiple_of(3),
        created_at: crate::clock::Micros::now(),
    }
}

/// `studyhall store-ceiling`: prints the report as one JSON line.
pub async fn print(args: &CeilingArgs) -> anyhow::Result<()> {
    let report = run(args).await?;
    println!(
        "{}",
        serde_json::to_string(&report).context("serialising the report")?
    );
    Ok(())
}
