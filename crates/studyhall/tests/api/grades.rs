use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{json, TestApp};
use crate::on_every_backend;

const S1: &str = "11111111-1111-4111-8111-111111111111";
const S2: &str = "22222222-2222-4222-8222-222222222222";
const S3: &str = "33333333-3333-4333-8333-333333333333";

/// Posts a grade and returns its job id (202 + Location).
async fn post(app: &TestApp, path: &str, body: Value) -> String {
    let response = app.post_json(path, &body).await;
    assert_eq!(response.status(), 202, "{body}");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (_, accepted) = json(response).await;
    assert_eq!(accepted["status"], 202);
    let id = accepted["job_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/jobs/{id}"));
    id
}

/// Waits until every job has succeeded (the in-process worker runs them).
async fn drained(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, page) = json(app.get("/jobs?limit=1000").await).await;
        let jobs = page["jobs"].as_array().unwrap();
        if jobs.iter().all(|job| job["state"] == "succeeded") {
            return;
        }
        assert!(Instant::now() < deadline, "jobs did not finish: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn grade(student: &str, course: &str, value: f64, on_time: bool, at: &str) -> Value {
    json!({"student_id": student, "course_id": course, "grade": value, "on_time": on_time, "created_at": at})
}

fn task(student: &str, course: &str, task: &str, value: f64, on_time: bool, at: &str) -> Value {
    json!({"student_id": student, "course_id": course, "task_id": task, "grade": value, "on_time": on_time, "created_at": at})
}

/// A data set spanning years, days and weeks, with a replaced and a stale task grade.
async fn load(app: &TestApp) {
    for (student, value, on_time, at) in [
        (S1, 8.0, true, "2023-12-31T23:30:00Z"),
        (S1, 6.5, false, "2024-01-01T00:10:00Z"),
        (S2, 9.0, true, "2024-01-03T12:00:00Z"),
        (S2, 4.0, true, "2024-05-19T08:00:00Z"),
        (S3, 10.0, false, "2025-02-10T08:00:00Z"),
    ] {
        post(
            app,
            "/stats/student/grade",
            grade(student, "c1", value, on_time, at),
        )
        .await;
    }
    post(
        app,
        "/stats/student/task/grade",
        task(S1, "c1", "t1", 5.0, true, "2024-01-02T09:00:00Z"),
    )
    .await;
    post(
        app,
        "/stats/student/task/grade",
        task(S2, "c1", "t1", 7.0, false, "2024-01-02T09:00:00Z"),
    )
    .await;
    post(
        app,
        "/stats/student/task/grade",
        task(S1, "c1", "t2", 9.5, true, "2024-03-01T09:00:00Z"),
    )
    .await;
    drained(app).await;
    // A later grade replaces the earlier; an older one arriving afterwards does not.
    post(
        app,
        "/stats/student/task/grade",
        task(S1, "c1", "t1", 8.0, false, "2024-02-01T09:00:00Z"),
    )
    .await;
    drained(app).await;
    post(
        app,
        "/stats/student/task/grade",
        task(S1, "c1", "t1", 1.0, true, "2024-01-15T09:00:00Z"),
    )
    .await;
    drained(app).await;
    post(
        app,
        "/stats/student/grade",
        grade(S1, "other", 2.0, true, "2024-01-01T00:00:00Z"),
    )
    .await;
    drained(app).await;
}

/// Every read route, for comparing backends.
const ROUTES: &[&str] = &[
    "/stats/student/11111111-1111-4111-8111-111111111111/course/c1",
    "/stats/student/11111111-1111-4111-8111-111111111111/average?group_by=day&end_date=2026-01-01",
    "/stats/student/11111111-1111-4111-8111-111111111111/average?group_by=year&end_date=2026-01-01",
    "/stats/course/c1/average?group_by=week&end_date=2026-01-01",
    "/stats/course/c1/average?group_by=month&start_date=2024-01-01&end_date=2024-12-31",
    "/stats/course/c1/average?group_by=quarter&end_date=2026-01-01",
    "/stats/course/c1/on_time_percentage?group_by=year&end_date=2026-01-01",
    "/stats/course/c1/student/22222222-2222-4222-8222-222222222222/on_time_percentage?group_by=month&end_date=2026-01-01",
    "/stats/course/c1/task/t1/averages",
    "/stats/student/11111111-1111-4111-8111-111111111111/course/c1/task/average",
];

async fn read_all(app: &TestApp) -> Vec<Value> {
    let mut out = Vec::new();
    for route in ROUTES {
        let (status, body) = json(app.get(route).await).await;
        assert_eq!(status, 200, "{route}: {body}");
        out.push(body);
    }
    out
}

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < 1e-9
}

on_every_backend! {
    async fn a_posted_grade_is_queued_then_stored(app) {
        let (status, health) = json(app.get("/stats/health").await).await;
        assert_eq!((status, health), (200, json!({"status": "ok"})));
        let id = post(&app, "/stats/student/grade", grade(S1, "c1", 8.5, true, "2024-05-19T10:00:00Z")).await;
        drained(&app).await;
        let (status, job) = json(app.get(&format!("/jobs/{id}")).await).await;
        assert_eq!(status, 200);
        assert_eq!((job["kind"].as_str(), job["state"].as_str(), job["attempts"].as_i64()), (Some("grades.course_grade"), Some("succeeded"), Some(1)));
        let (_, stats) = json(app.get(&format!("/stats/student/{S1}/course/c1")).await).await;
        assert_eq!(stats, json!({"student_id": S1, "course_id": "c1", "average_grade": 8.5, "assignments_completed": 0, "on_time_percentage": 100.0}));
    }

    async fn invalid_grades_are_400_with_result_and_status_and_queue_nothing(app) {
        let cases = [
            (json!({"student_id": "nope", "course_id": "c1", "grade": 5}), "student_id"),
            (json!({"student_id": S1, "course_id": "bad id!", "grade": 5}), "course_id"),
            (json!({"student_id": S1, "course_id": "x".repeat(51), "grade": 5}), "course_id"),
            (json!({"student_id": S1, "course_id": "c1", "grade": 10.01}), "grade"),
            (json!({"student_id": S1, "course_id": "c1", "grade": -1}), "grade"),
            (json!({"student_id": S1, "course_id": "c1", "grade": "7"}), "grade"),
            (json!({"student_id": S1, "course_id": "c1"}), "grade"),
            (json!({"student_id": S1, "course_id": "c1", "grade": 5, "on_time": "yes"}), "on_time"),
            (json!({"student_id": S1, "course_id": "c1", "grade": 5, "created_at": "yesterday"}), "created_at"),
        ];
        for (body, field) in cases {
            let (status, problem) = json(app.post_json("/stats/student/grade", &body).await).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(problem["status"], 400);
            assert!(problem["result"].as_str().unwrap().contains(field), "{problem}");
        }
        let (status, problem) = json(app.post_json("/stats/student/task/grade", &json!({"student_id": S1, "course_id": "c1", "grade": 5})).await).await;
        assert_eq!(status, 400);
        assert!(problem["result"].as_str().unwrap().contains("task_id"));
        let (status, raw) = json(app.post_raw("/stats/student/grade", "not json").await).await;
        assert_eq!((status, raw["status"].as_i64()), (400, Some(400)));
        let (_, page) = json(app.get("/jobs").await).await;
        assert_eq!(page["jobs"], json!([]), "a rejected grade was queued");
    }

    async fn the_figures_match_independent_arithmetic(app) {
        load(&app).await;
        // S1 in c1: course grades 8.0, 6.5; task grades t1 = 8.0 (replaced, the stale 1.0 ignored), t2 = 9.5.
        let (_, s1) = json(app.get(&format!("/stats/student/{S1}/course/c1")).await).await;
        assert!(close(&s1["average_grade"], (8.0 + 6.5 + 8.0 + 9.5) / 4.0), "{s1}");
        assert_eq!(s1["assignments_completed"], 2);
        assert!(close(&s1["on_time_percentage"], 50.0), "{s1}");
        // The course by year: 2023 {8.0}; 2024 {6.5, 9, 4, t1 S1 8.0, t1 S2 7.0, t2 9.5}; 2025 {10}.
        let (_, by_year) = json(app.get("/stats/course/c1/average?group_by=year&end_date=2026-01-01").await).await;
        let averages = by_year["averages"].as_array().unwrap();
        assert_eq!(averages.iter().map(|p| p["period"].as_str().unwrap()).collect::<Vec<_>>(),
                   ["2023-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"]);
        assert_eq!(averages.iter().map(|p| p["grade_count"].as_i64().unwrap()).collect::<Vec<_>>(), [1, 6, 1]);
        assert!(close(&averages[1]["average_grade"], (6.5 + 9.0 + 4.0 + 8.0 + 7.0 + 9.5) / 6.0));
        // ISO weeks: 2023-12-31 (a Sunday) belongs to the week of Monday 2023-12-25.
        let (_, by_week) = json(app.get("/stats/course/c1/average?group_by=week&end_date=2024-01-07").await).await;
        assert_eq!(by_week["averages"][0]["period"], "2023-12-25T00:00:00Z");
        assert_eq!(by_week["averages"][1]["period"], "2024-01-01T00:00:00Z");
        assert_eq!(by_week["averages"][1]["grade_count"], 3, "6.5 on Jan 1, 9.0 on Jan 3, S2's t1 on Jan 2");
        // end_date covers its whole day; start_date its first instant.
        let (_, day) = json(app.get("/stats/course/c1/average?group_by=day&start_date=2024-01-01&end_date=2024-01-01").await).await;
        assert_eq!(day["averages"], json!([{"period": "2024-01-01T00:00:00Z", "average_grade": 6.5, "grade_count": 1}]));
        assert_eq!(day["time_range"], json!({"start": "2024-01-01T00:00:00Z", "end": "2024-01-02T00:00:00Z"}));
        // On time in c1: 8 grades, on time: 8.0, 9.0, 4.0, t2 → 4 of 8.
        let (_, on_time) = json(app.get("/stats/course/c1/on_time_percentage?group_by=year&start_date=2000-01-01&end_date=2030-01-01").await).await;
        let totals: (i64, i64) = on_time["data"].as_array().unwrap().iter()
            .fold((0, 0), |(on, all), p| (on + p["on_time_count"].as_i64().unwrap(), all + p["total_count"].as_i64().unwrap()));
        assert_eq!(totals, (4, 8));
        // Task t1: S1 8.0, S2 7.0.
        let (_, t1) = json(app.get("/stats/course/c1/task/t1/averages").await).await;
        assert!(close(&t1["group_average"], 7.5), "{t1}");
        assert_eq!(t1["students"], json!([
            {"student_id": S1, "average_grade": 8.0, "grade_count": 1},
            {"student_id": S2, "average_grade": 7.0, "grade_count": 1},
        ]));
        let (_, page) = json(app.get("/stats/course/c1/task/t1/averages?limit=1").await).await;
        assert_eq!(page["students"].as_array().unwrap().len(), 1);
        let next = page["next_cursor"].as_str().unwrap();
        let (_, rest) = json(app.get(&format!("/stats/course/c1/task/t1/averages?limit=1&cursor={next}")).await).await;
        assert_eq!(rest["students"][0]["student_id"], S2);
        assert!(rest["next_cursor"].is_null());
        // S1's task average in c1: (8.0 + 9.5) / 2; others: S2 with 7.0.
        let (_, peers) = json(app.get(&format!("/stats/student/{S1}/course/c1/task/average")).await).await;
        assert!(close(&peers["student_average"], 8.75));
        assert_eq!(peers["other_students"], json!([{"student_id": S2, "average_grade": 7.0, "grade_count": 1}]));
    }

    async fn missing_data_is_404_and_bad_parameters_are_400(app) {
        load(&app).await;
        for path in [
            format!("/stats/student/{S3}/course/other"),
            "/stats/course/nothing/average".to_owned(),
            "/stats/course/c1/task/t9/averages".to_owned(),
            format!("/stats/student/{S3}/course/c1/task/average"),
            format!("/stats/course/other/student/{S2}/on_time_percentage"),
        ] {
            assert_eq!(app.get(&path).await.status(), 404, "{path}");
        }
        for path in [
            "/stats/course/c1/average?group_by=fortnight",
            "/stats/course/c1/average?start_date=2024-13-01",
            "/stats/course/c1/average?end_date=01-02-2024",
            "/stats/course/c1/average?start_date=2024-02-01&end_date=2024-01-01",
            "/stats/student/not-a-uuid/average",
            "/stats/course/bad%20id/average",
            "/stats/course/c1/task/t1/averages?limit=0",
            "/stats/course/c1/task/t1/averages?cursor=%25%25",
        ] {
            let (status, problem) = json(app.get(path).await).await;
            assert_eq!(status, 400, "{path}: {problem}");
            assert!(problem["result"].is_string(), "{problem}");
        }
        // A subject with grades, but none in range: 200 and no periods.
        let (status, empty) = json(app.get("/stats/course/c1/average?start_date=2030-01-01&end_date=2030-12-31").await).await;
        assert_eq!((status, empty["averages"].clone()), (200, json!([])));
    }

    async fn the_jobs_api_lists_filters_and_refuses_to_retry_live_jobs(app) {
        let id = post(&app, "/stats/student/grade", grade(S1, "c1", 5.0, true, "2024-01-01T00:00:00Z")).await;
        drained(&app).await;
        let (_, page) = json(app.get("/jobs?state=succeeded").await).await;
        assert_eq!(page["jobs"][0]["id"], id.as_str());
        let (_, none) = json(app.get("/jobs?state=dead").await).await;
        assert_eq!(none["jobs"], json!([]));
        assert_eq!(app.get("/jobs?state=exploded").await.status(), 400);
        assert_eq!(app.get("/jobs?limit=5000").await.status(), 400);
        assert_eq!(app.get("/jobs/no-such-job").await.status(), 404);
        let retry = app.client.post(app.url(&format!("/jobs/{id}/retry"))).send().await.unwrap();
        assert_eq!(retry.status(), 409);
    }
}

/// The same grades on SQLite and PostgreSQL give the same JSON on every route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_the_same_on_sqlite_and_postgresql() {
    let Some(pg) = TestApp::postgres().await else {
        return;
    };
    let lite = TestApp::sqlite().await;
    load(&lite).await;
    load(&pg).await;
    let (a, b) = (read_all(&lite).await, read_all(&pg).await);
    for ((route, a), b) in ROUTES.iter().zip(&a).zip(&b) {
        assert_eq!(a, b, "{route} differs between backends");
    }
    lite.stop().await;
    pg.stop().await;
}
