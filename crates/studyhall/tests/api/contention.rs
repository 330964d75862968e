//! The job queue under contention: several `studyhall worker` processes on one
//! PostgreSQL applying thousands of grades that share a few courses' tally rows, with
//! task grades replaced and re-sent stale, first left alone and then killed with SIGKILL
//! at random moments. Every job must be applied exactly once, no conflict between
//! batches may surface as a job failure, and every route must answer what the posted
//! grades add up to.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::TestDatabase;
use crate::process::{client, start_with, start_worker, Server};

const COURSES: [&str; 3] = ["k1", "k2", "k3"];
const STUDENTS: usize = 300;
const TASKS: [&str; 4] = ["t1", "t2", "t3", "t4"];
const COURSE_GRADES: usize = 2000;
const TASK_GRADES: usize = 1200;

/// A small deterministic generator, so a failure can be replayed.
struct Dice(u64);

impl Dice {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// A task grade's key (course, task, student) and its latest grade: thousandths, on
/// time, `created_at`.
type TaskKey = (String, String, String);
type TaskGrade = (i64, bool, String);

/// What was posted, and what it must add up to.
#[derive(Default)]
struct Expected {
    /// (course, day) → (grade sum in thousandths, count), course grades.
    course_days: BTreeMap<(String, String), (i64, i64)>,
    /// (student, course) → (sum, count), course grades.
    student_course: HashMap<(String, String), (i64, i64)>,
    /// (course, task, student) → the task grade with the latest `created_at`:
    /// (thousandths, on time, created_at).
    tasks: HashMap<TaskKey, TaskGrade>,
}

/// Builds the posts (course and task grades interleaved) and what they add up to.
/// Each post is its route, its body and the time it is filed at.
fn plan(seed: u64) -> (Vec<(&'static str, Value, String)>, Expected) {
    let mut dice = Dice(seed);
    let mut expected = Expected::default();
    let mut posts = Vec::new();
    for n in 0..COURSE_GRADES + TASK_GRADES {
        let course = COURSES[dice.next(COURSES.len() as u64) as usize].to_owned();
        let student = format!("s{:03}", dice.next(STUDENTS as u64));
        let half_points = dice.next(201) as i64;
        let on_time = dice.next(2) == 1;
        // Three days, so the tally rows are hot; seconds unique per post, so that the
        // latest task grade for a key is never a tie.
        let day = format!("2024-06-0{}", 1 + dice.next(3));
        let at = format!(
            "{day}T{:02}:{:02}:{:02}Z",
            n / 3600 % 24,
            n / 60 % 60,
            n % 60
        );
        let grade = half_points as f64 / 2.0;
        let units = half_points * 500_000;
        // Five posts in eight are course grades: COURSE_GRADES of them in all.
        if n % 8 < 5 {
            let body = json!({"student_id": student, "course_id": course, "grade": grade, "on_time": on_time});
            posts.push(("/stats/student/grade", body, at));
            let day_total = expected
                .course_days
                .entry((course.clone(), day))
                .or_default();
            *day_total = (day_total.0 + units, day_total.1 + 1);
            let mine = expected
                .student_course
                .entry((student, course))
                .or_default();
            *mine = (mine.0 + units, mine.1 + 1);
        } else {
            // Few students per task, so most task posts replace (or are older than) one.
            let student = format!("s{:03}", dice.next(40));
            let task = TASKS[dice.next(TASKS.len() as u64) as usize].to_owned();
            let body = json!({"student_id": student, "course_id": course, "task_id": task, "grade": grade, "on_time": on_time});
            posts.push(("/stats/student/task/grade", body, at.clone()));
            let key = (course, task, student);
            let newer = expected
                .tasks
                .get(&key)
                .is_none_or(|(_, _, previous)| *previous < at);
            if newer {
                expected.tasks.insert(key, (units, on_time, at));
            }
        }
    }
    (posts, expected)
}

/// Posts each grade, filed at its time (`X-Graded-At`).
async fn post_all(server: &Server, posts: &[(&'static str, Value, String)]) {
    for chunk in posts.chunks(64) {
        let sent: Vec<_> = chunk
            .iter()
            .map(|(path, body, at)| {
                let url = format!("{}{path}", server.address);
                let (body, at) = (body.clone(), at.clone());
                tokio::spawn(async move {
                    client()
                        .post(url)
                        .header("x-graded-at", at)
                        .json(&body)
                        .send()
                        .await
                        .unwrap()
                        .status()
                })
            })
            .collect();
        for status in sent {
            assert_eq!(status.await.unwrap(), 200);
        }
    }
}

/// Jobs not yet succeeded.
async fn pending(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state <> 'succeeded'")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn wait_drained(pool: &PgPool, within: Duration) {
    let deadline = Instant::now() + within;
    while pending(pool).await > 0 {
        let states: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, count(*) FROM jobs GROUP BY state ORDER BY state")
                .fetch_all(pool)
                .await
                .unwrap();
        assert!(
            Instant::now() < deadline,
            "the queue did not drain: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(server: &Server, path: &str) -> Value {
    let response = client()
        .get(format!("{}{path}", server.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

fn average(sum: i64, count: i64) -> f64 {
    sum as f64 / count as f64 / 1_000_000.0
}

fn assert_close(actual: &Value, expected: f64, what: &str) {
    let actual = actual.as_f64().unwrap_or(f64::NAN);
    assert!(
        (actual - expected).abs() < 1e-9,
        "{what}: {actual} ≠ {expected}"
    );
}

/// Every route against the arithmetic of what was posted.
async fn assert_routes_add_up(server: &Server, expected: &Expected) {
    for course in COURSES {
        let days = get(server, &format!("/stats/course/{course}/average?group_by=day&start_date=2024-06-01&end_date=2024-06-30")).await;
        let want: Vec<Value> = expected
            .course_days
            .iter()
            .filter(|((c, _), _)| c == course)
            .map(|((_, day), (sum, count))| json!({"period": format!("{day}T00:00:00Z"), "average_grade": average(*sum, *count), "grade_count": count}))
            .collect();
        assert_eq!(days["averages"], json!(want), "course {course} by day");

        let finals: Vec<(&TaskKey, &TaskGrade)> = expected
            .tasks
            .iter()
            .filter(|((c, _, _), _)| c == course)
            .collect();
        let on_time = finals.iter().filter(|(_, (_, on, _))| *on).count();
        let all_time = get(
            server,
            &format!("/stats/course/{course}/on_time_percentage?end_date=2030-01-01"),
        )
        .await;
        assert_eq!(
            all_time["data"][0]["on_time_count"], on_time,
            "course {course} on time"
        );
        assert_eq!(
            all_time["data"][0]["total_count"],
            finals.len(),
            "course {course} task grades"
        );

        for task in TASKS {
            let mut students: Vec<(&String, i64)> = finals
                .iter()
                .filter(|((_, t, _), _)| t == task)
                .map(|((_, _, student), (units, _, _))| (student, *units))
                .collect();
            students.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            let body = get(
                server,
                &format!("/stats/course/{course}/task/{task}/averages?limit=1000"),
            )
            .await;
            let want: Vec<Value> = students
                .iter()
                .map(|(student, units)| json!({"student_id": student, "average_grade": average(*units, 1), "grade_count": 1}))
                .collect();
            assert_eq!(body["students"], json!(want), "course {course} task {task}");
        }
    }
    for ((student, course), (sum, count)) in expected.student_course.iter().take(60) {
        let body = get(server, &format!("/stats/student/{student}/course/{course}")).await;
        assert_close(
            &body["result"]["average_grade"],
            average(*sum, *count),
            &format!("{student} in {course}"),
        );
        assert_eq!(
            body["result"]["grade_count"], *count,
            "{student} in {course}"
        );
    }
}

/// Posts the plan through a server without a worker; returns the server, its pool and
/// what the routes must answer.
async fn loaded(url: &str, seed: u64) -> (Server, PgPool, Expected) {
    let server = start_with(url, &[("STUDYHALL_NO_WORKER", "true")]).await;
    let (posts, expected) = plan(seed);
    post_all(&server, &posts).await;
    let pool = PgPool::connect(url).await.unwrap();
    assert_eq!(pending(&pool).await, posts.len() as i64);
    (server, pool, expected)
}

async fn three_worker_processes_on_hot_rows_drain_without_a_failure_and_add_up() {
    let (url, _database) = TestDatabase::postgres().await;
    let (server, pool, expected) = loaded(url.expose(), 0x9E37_79B9_7F4A_7C15).await;
    let _workers = [
        start_worker(url.expose(), &[]).await,
        start_worker(url.expose(), &[]).await,
        start_worker(url.expose(), &[]).await,
    ];
    wait_drained(&pool, Duration::from_secs(120)).await;
    let retried: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE attempts <> 1 OR last_error IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        retried, 0,
        "a conflict between batches surfaced as a job failure"
    );
    assert_routes_add_up(&server, &expected).await;
}
crate::case!(
    three_worker_processes_on_hot_rows_drain_without_a_failure_and_add_up,
    needs = [Postgres]
);

async fn workers_killed_at_random_moments_still_apply_every_grade_exactly_once() {
    let (url, _database) = TestDatabase::postgres().await;
    let (server, pool, expected) = loaded(url.expose(), 0x2545_F491_4F6C_DD1D).await;
    let lease = [("STUDYHALL_JOB_LEASE_SECS", "1")];
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(start_worker(url.expose(), &lease).await);
    }
    let mut dice = Dice(0x1234_5678_9ABC_DEF1);
    let mut kills = 0;
    while kills < 6 && pending(&pool).await > 0 {
        tokio::time::sleep(Duration::from_millis(50 + dice.next(250))).await;
        let victim = dice.next(workers.len() as u64) as usize;
        workers[victim].start_kill().unwrap();
        workers[victim].wait().await.unwrap();
        kills += 1;
        workers[victim] = start_worker(url.expose(), &lease).await;
    }
    assert!(
        kills >= 3,
        "the queue drained before the workers could be killed"
    );
    wait_drained(&pool, Duration::from_secs(120)).await;
    let failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE last_error IS NOT NULL OR state <> 'succeeded'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        failed, 0,
        "a killed worker's batch surfaced as a job failure"
    );
    assert_routes_add_up(&server, &expected).await;
}
crate::case!(
    workers_killed_at_random_moments_still_apply_every_grade_exactly_once,
    needs = [Postgres]
);
