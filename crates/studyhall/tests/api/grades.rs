use serde_json::{json, Value};

use studyhall::clock::Micros;
use studyhall::config::ServeSettings;
use studyhall::db::Db;
use studyhall::jobs::{Queue, Worker, WorkerSettings};
use studyhall::sql::Sql;

use crate::helpers::{json, TestApp};
use crate::on_every_backend_with;

const ADMIN: &str = "grades-admin-token-0123456789";

/// The operator routes on, and no worker: [`drained`] runs the jobs.
fn with_admin(settings: &mut ServeSettings) {
    settings.admin_token = Some(ADMIN.parse().unwrap());
    settings.no_worker = true;
}

/// An operator route, with the admin token.
async fn operator(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
}

// Ids of the kinds the original's own tests used: digits, letters, a 24-hex ObjectId.
const S1: &str = "123";
const S2: &str = "abc";
const S3: &str = "507f1f77bcf86cd799439011";

/// Posts a grade filed at its time (`X-Graded-At`) and returns its job id (200 with the
/// original's text, plus the job).
async fn post(app: &TestApp, path: &str, (body, at): (Value, &str)) -> String {
    let response = app
        .client
        .post(app.url(path))
        .header("x-graded-at", at)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{body}");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (_, accepted) = json(response).await;
    assert_eq!(accepted["status"], 200);
    let queue = if path.contains("task") {
        "task:add_student_grade_task queued successfully"
    } else {
        "task:add_student_grade queued sucessfully"
    };
    assert_eq!(
        accepted["result"],
        format!("Task {queue} (Expected time to be processed: 0.00 minutes)")
    );
    let id = accepted["job_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/jobs/{id}"));
    id
}

/// Runs the queue to empty with a worker of the test's own, batch after batch until
/// none is left, so that reads see every grade posted before. The servers here run no
/// worker of their own.
async fn drained(app: &TestApp) {
    let db = Db::connect(&app.database_url, 2).await.unwrap();
    let (queue, _) = Queue::new(&db, 5, true, studyhall::clock::Clock::system());
    let handlers = studyhall::job_handlers(|_| true);
    let worker = Worker::new(queue, handlers, WorkerSettings::default());
    while worker.run_batch().await.unwrap().claimed() > 0 {}
    db.close().await;
}

/// A course grade's body, and the time it is filed at.
fn grade<'a>(
    student: &str,
    course: &str,
    value: f64,
    on_time: Option<bool>,
    at: &'a str,
) -> (Value, &'a str) {
    let mut body = json!({"student_id": student, "course_id": course, "grade": value});
    if let Some(on_time) = on_time {
        body["on_time"] = json!(on_time);
    }
    (body, at)
}

fn task<'a>(
    student: &str,
    course: &str,
    task: &str,
    value: f64,
    on_time: Option<bool>,
    at: &'a str,
) -> (Value, &'a str) {
    let (mut body, at) = grade(student, course, value, on_time, at);
    body["task_id"] = json!(task);
    (body, at)
}

/// A data set spanning years, days and weeks, with course grades and task grades (one
/// replaced, one stale, one of 0), some without `on_time`.
async fn load(app: &TestApp) {
    for (student, course, value, on_time, at) in [
        (S1, "c1", 80.0, Some(true), "2023-12-31T23:30:00Z"),
        (S1, "c1", 65.0, Some(false), "2024-01-01T00:10:00Z"),
        (S2, "c1", 90.0, Some(true), "2024-01-03T12:00:00Z"),
        (S2, "c1", 40.0, None, "2024-05-19T08:00:00Z"),
        (S3, "c1", 100.0, Some(false), "2025-02-10T08:00:00Z"),
        (S1, "other", 20.0, Some(true), "2024-01-01T00:00:00Z"),
    ] {
        post(
            app,
            "/stats/student/grade",
            grade(student, course, value, on_time, at),
        )
        .await;
    }
    for (student, task_id, value, on_time, at) in [
        (S1, "t1", 50.0, Some(true), "2024-01-02T09:00:00Z"),
        (S2, "t1", 85.0, Some(false), "2024-01-02T09:00:00Z"),
        (S1, "t2", 95.0, Some(true), "2024-03-01T09:00:00Z"),
        (S3, "t2", 0.0, None, "2024-03-02T09:00:00Z"),
    ] {
        post(
            app,
            "/stats/student/task/grade",
            task(student, "c1", task_id, value, on_time, at),
        )
        .await;
    }
    drained(app).await;
    // A later grade replaces the earlier; an older one arriving afterwards does not.
    post(
        app,
        "/stats/student/task/grade",
        task(S1, "c1", "t1", 80.0, Some(false), "2024-02-01T09:00:00Z"),
    )
    .await;
    drained(app).await;
    post(
        app,
        "/stats/student/task/grade",
        task(S1, "c1", "t1", 10.0, Some(true), "2024-01-15T09:00:00Z"),
    )
    .await;
    drained(app).await;
}

/// Every read route, for comparing backends.
const ROUTES: &[&str] = &[
    "/stats/student/123/course/c1",
    "/stats/student/123/average?group_by=day&end_date=2026-01-01",
    "/stats/student/123/average?group_by=year&end_date=2026-01-01",
    "/stats/course/c1/average?group_by=week&end_date=2026-01-01",
    "/stats/course/c1/average?group_by=month&start_date=2024-01-01&end_date=2024-12-31",
    "/stats/course/c1/average?group_by=quarter&end_date=2026-01-01",
    "/stats/course/c1/on_time_percentage?group_by=year&end_date=2026-01-01",
    "/stats/course/c1/on_time_percentage?end_date=2026-01-01",
    "/stats/course/c1/student/abc/on_time_percentage?group_by=month&end_date=2026-01-01",
    "/stats/course/c1/task/t1/averages",
    "/stats/student/123/course/c1/task/average",
    "/stats/student/507f1f77bcf86cd799439011/course/other/task/average",
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
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-9)
}

/// The original's `error` text beside problem+json on a 400.
async fn refused(app: &TestApp, path: &str) -> Value {
    let (status, problem) = json(app.get(path).await).await;
    assert_eq!(status, 400, "{path}: {problem}");
    assert_eq!(problem["status"], 400);
    assert!(problem["detail"].is_string(), "{problem}");
    problem
}

on_every_backend_with! {
    with_admin;

    async fn a_posted_grade_is_queued_then_stored(app) {
        let (status, health) = json(app.get("/stats/health").await).await;
        assert_eq!((status, health), (200, json!({"status": "OK"})));
        let id = post(&app, "/stats/student/grade", grade(S1, "c1", 92.5, Some(true), "2024-05-19T10:00:00Z")).await;
        drained(&app).await;
        let (status, job) = json(operator(&app, &format!("/jobs/{id}")).await).await;
        assert_eq!(status, 200);
        assert_eq!((job["kind"].as_str(), job["state"].as_str(), job["attempts"].as_i64()), (Some("grades.course_grade"), Some("succeeded"), Some(1)));
        let (_, stats) = json(app.get(&format!("/stats/student/{S1}/course/c1")).await).await;
        assert_eq!(stats, json!({
            "result": {"average_grade": 92.5, "tbd": 0, "grade_count": 1, "assignments_completed": 0, "on_time_percentage": 0.0},
            "course_id": "c1", "student_id": S1,
        }));
    }

    async fn invalid_grades_are_400_with_the_original_error_and_queue_nothing(app) {
        let cases = [
            (json!({"student_id": "", "course_id": "c1", "grade": 5}), "student_id"),
            (json!({"student_id": "a\u{7}b", "course_id": "c1", "grade": 5}), "student_id"),
            (json!({"student_id": "s".repeat(129), "course_id": "c1", "grade": 5}), "student_id"),
            (json!({"student_id": 123, "course_id": "c1", "grade": 5}), "student_id"),
            (json!({"student_id": S1, "course_id": "", "grade": 5}), "course_id"),
            (json!({"student_id": S1, "course_id": "c1", "grade": 10000.01}), "grade"),
            (json!({"student_id": S1, "course_id": "c1", "grade": -10001}), "grade"),
            (json!({"student_id": S1, "course_id": "c1", "grade": 1e300}), "grade"),
            (json!({"student_id": S1, "course_id": "c1", "grade": "7"}), "grade"),
            (json!({"student_id": S1, "course_id": "c1"}), "grade"),
            (json!({"student_id": S1, "course_id": "c1", "grade": 5, "on_time": "yes"}), "on_time"),
            (json!({"student_id": S1, "course_id": "c1", "grade": 5, "created_at": "yesterday"}), "created_at"),
        ];
        for (body, field) in cases {
            let (status, problem) = json(app.post_json("/stats/student/grade", &body).await).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(problem["error"], "Invalid input", "{problem}");
            assert!(problem["detail"].as_str().unwrap().contains(field), "{problem}");
        }
        let (status, problem) = json(app.post_json("/stats/student/task/grade", &json!({"student_id": S1, "course_id": "c1", "grade": 5})).await).await;
        assert_eq!((status, problem["error"].as_str()), (400, Some("Invalid input")));
        assert!(problem["detail"].as_str().unwrap().contains("task_id"));
        let (status, raw) = json(app.post_raw("/stats/student/grade", "not json").await).await;
        assert_eq!((status, raw["error"].as_str()), (400, Some("Invalid input")));
        let (_, page) = json(operator(&app, "/jobs").await).await;
        assert_eq!(page["jobs"], json!([]), "a rejected grade was queued");
    }

    async fn a_created_at_in_the_body_is_ignored_and_x_graded_at_files_a_grade_in_the_past(app) {
        // A Go client reusing the original's struct sends its zero time: the grade is
        // filed when it is posted, as the original filed it.
        app.clock.set(Micros(1_741_600_800_000_000)); // 2025-03-10T10:00:00Z
        let zero_time = json!({"student_id": S1, "course_id": "c1", "grade": 60, "created_at": "0001-01-01T00:00:00Z"});
        assert_eq!(app.post_json("/stats/student/grade", &zero_time).await.status(), 200);
        let past = json!({"student_id": S1, "course_id": "c1", "grade": 70, "created_at": "2019-06-01T00:00:00Z"});
        assert_eq!(app.post_json("/stats/student/grade", &past).await.status(), 200);
        // An importer files a grade at the time it was given.
        post(&app, "/stats/student/grade", grade(S1, "c1", 90.0, None, "2021-02-03T04:05:06+01:00")).await;
        let bad = app.client.post(app.url("/stats/student/grade")).header("x-graded-at", "last week")
            .json(&json!({"student_id": S1, "course_id": "c1", "grade": 1})).send().await.unwrap();
        let (status, problem) = json(bad).await;
        assert_eq!((status, problem["error"].as_str()), (400, Some("Invalid input")), "{problem}");
        assert!(problem["detail"].as_str().unwrap().contains("X-Graded-At"), "{problem}");
        drained(&app).await;
        let (status, years) = json(app.get(&format!("/stats/student/{S1}/average?group_by=year")).await).await;
        assert_eq!(status, 200, "{years}");
        assert_eq!(years["averages"], json!([
            {"period": "2021-01-01T00:00:00Z", "average_grade": 90.0, "grade_count": 1},
            {"period": "2025-01-01T00:00:00Z", "average_grade": 65.0, "grade_count": 2},
        ]));
    }

    async fn grades_outside_0_to_100_are_accepted_and_keep_six_decimal_places(app) {
        for value in [8.123456, 8.123457, 105.5, -3.25] {
            post(&app, "/stats/student/grade", grade(S1, "digits", value, None, "2024-05-19T10:00:00Z")).await;
        }
        drained(&app).await;
        let (status, stats) = json(app.get(&format!("/stats/student/{S1}/course/digits")).await).await;
        assert_eq!(status, 200, "{stats}");
        // (8.123456 + 8.123457 + 105.5 - 3.25) / 4, exactly: no digit was rounded away.
        assert_eq!(stats["result"]["average_grade"].as_f64(), Some(118.496913 / 4.0), "{stats}");
        let (_, alone) = json(app.get("/stats/course/digits/average?group_by=year").await).await;
        assert_eq!(alone["averages"][0]["grade_count"], 4, "{alone}");
    }

    async fn any_id_and_any_grade_from_0_to_100_is_accepted_as_the_original_accepted_it(app) {
        for (student, course, value) in [("123", "c1", 7.5), ("student456", "any course, really", 0.0), (S3, "Курс-1", 100.0)] {
            post(&app, "/stats/student/grade", grade(student, course, value, None, "2024-05-19T10:00:00Z")).await;
        }
        drained(&app).await;
        let (status, zero) = json(app.get("/stats/course/any%20course%2C%20really/average?group_by=year&end_date=2025-01-01").await).await;
        assert_eq!(status, 200, "{zero}");
        assert_eq!(zero["averages"], json!([{"period": "2024-01-01T00:00:00Z", "average_grade": 0.0, "grade_count": 1}]));
        let (status, cyrillic) = json(app.get(&format!("/stats/student/{S3}/course/%D0%9A%D1%83%D1%80%D1%81-1")).await).await;
        assert_eq!((status, cyrillic["result"]["average_grade"].as_f64()), (200, Some(100.0)), "{cyrillic}");
    }

    async fn course_and_task_grades_are_kept_apart_and_the_figures_match_independent_arithmetic(app) {
        load(&app).await;
        // S1 in c1: course grades 80, 65; task grades t1 = 80 (replaced, the stale 10
        // ignored, on time: no), t2 = 95 (on time).
        let (_, s1) = json(app.get(&format!("/stats/student/{S1}/course/c1")).await).await;
        assert_eq!(s1["course_id"], "c1");
        assert!(close(&s1["result"]["average_grade"], 72.5), "{s1}");
        assert_eq!((s1["result"]["tbd"].as_i64(), s1["result"]["grade_count"].as_i64()), (Some(0), Some(2)));
        assert_eq!(s1["result"]["assignments_completed"], 2);
        assert!(close(&s1["result"]["on_time_percentage"], 50.0), "{s1}");
        // The course by year, course grades only: 2023 {80}; 2024 {65, 90, 40}; 2025 {100}.
        let (_, by_year) = json(app.get("/stats/course/c1/average?group_by=year&end_date=2026-01-01").await).await;
        let averages = by_year["averages"].as_array().unwrap();
        assert_eq!(averages.iter().map(|p| p["period"].as_str().unwrap()).collect::<Vec<_>>(),
                   ["2023-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"]);
        assert_eq!(averages.iter().map(|p| p["grade_count"].as_i64().unwrap()).collect::<Vec<_>>(), [1, 3, 1]);
        assert!(close(&averages[1]["average_grade"], 65.0));
        assert_eq!(by_year["group_by"], "year");
        // ISO weeks: 2023-12-31 (a Sunday) belongs to the week of Monday 2023-12-25.
        let (_, by_week) = json(app.get("/stats/course/c1/average?group_by=week&end_date=2024-01-07").await).await;
        assert_eq!(by_week["averages"][0]["period"], "2023-12-25T00:00:00Z");
        assert_eq!(by_week["averages"][1]["period"], "2024-01-01T00:00:00Z");
        assert_eq!(by_week["averages"][1]["grade_count"], 2, "65 on Jan 1 and 90 on Jan 3; task grades are not course grades");
        // end_date covers its whole day; the range reads as the original wrote it.
        let (_, day) = json(app.get("/stats/course/c1/average?group_by=day&start_date=2024-01-01&end_date=2024-01-01").await).await;
        assert_eq!(day["averages"], json!([{"period": "2024-01-01T00:00:00Z", "average_grade": 65.0, "grade_count": 1}]));
        assert_eq!(day["time_range"], json!({"start": "2024-01-01T00:00:00Z", "end": "2024-01-01T23:59:59Z"}));
        let (_, open) = json(app.get("/stats/course/c1/average?end_date=2024-01-31").await).await;
        assert_eq!(open["time_range"]["start"], "0001-01-01T00:00:00Z", "an unbounded start is the original's zero time");
        assert_eq!(open["group_by"], "month");
        // On time, task grades only: t1 S1 80 no, t1 S2 85 no, t2 S1 95 yes, t2 S3 0
        // (on_time omitted: no) → 1 of 4, and without group_by one all-time row.
        let (_, all_time) = json(app.get("/stats/course/c1/on_time_percentage?end_date=2030-01-01").await).await;
        assert_eq!(all_time["data"], json!([{"period": "all_time", "on_time_count": 1, "total_count": 4, "percentage": 25.0}]));
        assert_eq!(all_time["group_by"], "");
        let (_, by_year) = json(app.get("/stats/course/c1/on_time_percentage?group_by=year&start_date=2000-01-01&end_date=2030-01-01").await).await;
        assert_eq!(by_year["data"], json!([{"period": "2024-01-01T00:00:00Z", "on_time_count": 1, "total_count": 4, "percentage": 25.0}]));
        let (_, s2) = json(app.get(&format!("/stats/course/c1/student/{S2}/on_time_percentage?group_by=month&end_date=2030-01-01")).await).await;
        assert_eq!(s2["data"], json!([{"period": "2024-01-01T00:00:00Z", "on_time_count": 0, "total_count": 1, "percentage": 0.0}]));
        assert_eq!((s2["course_id"].as_str(), s2["student_id"].as_str()), (Some("c1"), Some(S2)));
        // Task t1: S2 85, S1 80; best first (not id order).
        let (_, t1) = json(app.get("/stats/course/c1/task/t1/averages").await).await;
        assert!(close(&t1["group_average"], 82.5), "{t1}");
        assert_eq!(t1["students"], json!([
            {"student_id": S2, "average_grade": 85.0, "grade_count": 1},
            {"student_id": S1, "average_grade": 80.0, "grade_count": 1},
        ]));
        let (_, page) = json(app.get("/stats/course/c1/task/t1/averages?limit=1").await).await;
        assert_eq!(page["students"][0]["student_id"], S2);
        let next = page["next_cursor"].as_str().unwrap();
        let (_, rest) = json(app.get(&format!("/stats/course/c1/task/t1/averages?limit=1&cursor={next}")).await).await;
        assert_eq!(rest["students"][0]["student_id"], S1);
        assert!(rest["next_cursor"].is_null());
        // S1's task average in c1: (80 + 95) / 2; others best first: S2 85, S3 0.
        let (_, peers) = json(app.get(&format!("/stats/student/{S1}/course/c1/task/average")).await).await;
        assert!(close(&peers["student_average"], 87.5), "{peers}");
        assert_eq!(peers["other_students"], json!([
            {"student_id": S2, "average_grade": 85.0, "grade_count": 1, "task_count": 1},
            {"student_id": S3, "average_grade": 0.0, "grade_count": 1, "task_count": 1},
        ]));
        assert!(peers.get("warning").is_none());
    }

    async fn nothing_found_is_an_empty_200_except_a_students_course_figures(app) {
        load(&app).await;
        let (status, problem) = json(app.get(&format!("/stats/student/{S3}/course/other")).await).await;
        assert_eq!((status, problem["result"].as_str()), (404, Some("No grades found for the student in the course")));
        let (status, body) = json(app.get("/stats/course/nothing/average").await).await;
        assert_eq!((status, body["averages"].clone()), (200, json!([])));
        let (status, body) = json(app.get("/stats/student/nobody/average").await).await;
        assert_eq!((status, body["averages"].clone()), (200, json!([])));
        let (status, body) = json(app.get("/stats/course/c1/task/t9/averages").await).await;
        assert_eq!((status, body["students"].clone(), body["group_average"].as_f64()), (200, json!([]), Some(0.0)));
        let (status, body) = json(app.get(&format!("/stats/student/{S3}/course/other/task/average")).await).await;
        assert_eq!((status, body["other_students"].clone()), (200, json!([])));
        assert_eq!(body["warning"], "No grades found for the requested student");
        let (status, body) = json(app.get(&format!("/stats/course/other/student/{S2}/on_time_percentage")).await).await;
        assert_eq!((status, body["data"].clone()), (200, json!([{"period": "all_time", "on_time_count": 0, "total_count": 0, "percentage": 0.0}])));
        let (status, body) = json(app.get(&format!("/stats/course/other/student/{S2}/on_time_percentage?group_by=month")).await).await;
        assert_eq!((status, body["data"].clone()), (200, json!([])));
        // An empty id names nothing where the original did not check ids: an empty 200.
        let (status, body) = json(app.get("/stats/course//average").await).await;
        assert_eq!((status, body["averages"].clone(), body["course_id"].as_str()), (200, json!([]), Some("")));
        let (status, body) = json(app.get("/stats/student//average").await).await;
        assert_eq!((status, body["averages"].clone()), (200, json!([])));
        let (status, body) = json(app.get("/stats/course//on_time_percentage?group_by=day").await).await;
        assert_eq!((status, body["data"].clone()), (200, json!([])));
        // A subject with grades, but none in range.
        let (status, empty) = json(app.get("/stats/course/c1/average?start_date=2030-01-01&end_date=2030-12-31").await).await;
        assert_eq!((status, empty["averages"].clone()), (200, json!([])));
    }

    async fn bad_parameters_are_400_with_the_original_error_text(app) {
        for path in ["/stats/course/c1/average?start_date=2024-13-01", "/stats/course/c1/average?end_date=01-02-2024",
                     "/stats/course/c1/on_time_percentage?start_date=tomorrow"] {
            assert_eq!(refused(&app, path).await["error"], "Invalid date format. Use YYYY-MM-DD", "{path}");
        }
        for path in ["/stats/course/c1/average?group_by=fortnight", "/stats/course/c1/average?start_date=2024-02-01&end_date=2024-01-01",
                     "/stats/course/c1/task/t1/averages?limit=0", "/stats/course/c1/task/t1/averages?cursor=%25%25",
                     "/stats/course/a%07b/average", "/stats/student/a%00b/average"] {
            assert!(refused(&app, path).await["error"].is_string(), "{path}");
        }
        // Where the original checked ids, an empty one is refused with its text.
        for path in ["/stats/course//task/t1/averages", "/stats/course/c1/task//averages"] {
            assert_eq!(refused(&app, path).await["error"], "Invalid course_id or task_id format");
        }
        assert_eq!(refused(&app, "/stats/student/123/course//task/average").await["error"], "Invalid course_id format");
        let problem = refused(&app, &format!("/stats/student/{S1}/course/bad%20id")).await;
        assert_eq!(problem["result"], "Invalid course_id format (not a valid ObjectID)");
        let problem = refused(&app, "/stats/student/bad$id/course/c1/task/average").await;
        assert_eq!(problem["error"], "Invalid student_id format");
        let problem = refused(&app, &format!("/stats/student/{S1}/course/bad%23id/task/average")).await;
        assert_eq!(problem["error"], "Invalid course_id format");
    }

    async fn the_jobs_api_needs_the_admin_token(app) {
        let id = post(&app, "/stats/student/grade", grade(S1, "c1", 5.0, Some(true), "2024-01-01T00:00:00Z")).await;
        for path in ["/jobs".to_owned(), format!("/jobs/{id}")] {
            assert_eq!(app.get(&path).await.status(), 401, "{path} without a token");
            let wrong = app.client.get(app.url(&path)).bearer_auth("not-the-admin-token-at-all").send().await.unwrap();
            assert_eq!(wrong.status(), 403, "{path} with another token");
        }
        let retry = app.client.post(app.url(&format!("/jobs/{id}/retry"))).send().await.unwrap();
        assert_eq!(retry.status(), 401);
        let (status, problem) = json(app.get("/jobs").await).await;
        assert_eq!(status, 401);
        assert!(problem["detail"].as_str().unwrap().contains("admin token"), "{problem}");
        assert_eq!(operator(&app, "/jobs").await.status(), 200);
    }

    async fn the_jobs_api_lists_filters_and_refuses_to_retry_live_jobs(app) {
        let id = post(&app, "/stats/student/grade", grade(S1, "c1", 5.0, Some(true), "2024-01-01T00:00:00Z")).await;
        drained(&app).await;
        let (_, page) = json(operator(&app, "/jobs?state=succeeded").await).await;
        assert_eq!(page["jobs"][0]["id"], id.as_str());
        let (_, none) = json(operator(&app, "/jobs?state=dead").await).await;
        assert_eq!(none["jobs"], json!([]));
        assert_eq!(operator(&app, "/jobs?state=exploded").await.status(), 400);
        assert_eq!(operator(&app, "/jobs?limit=5000").await.status(), 400);
        assert_eq!(operator(&app, "/jobs/no-such-job").await.status(), 404);
        let retry = app.client.post(app.url(&format!("/jobs/{id}/retry"))).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(retry.status(), 409);
        let path = app.url(&format!("/jobs/{id}"));
        assert_eq!(app.client.delete(&path).send().await.unwrap().status(), 401);
        assert_eq!(app.client.delete(&path).bearer_auth("not-the-admin-token-at-all").send().await.unwrap().status(), 403);
        assert_eq!(app.client.delete(&path).bearer_auth(ADMIN).send().await.unwrap().status(), 204);
        assert_eq!(operator(&app, &format!("/jobs/{id}")).await.status(), 404);
        assert_eq!(app.client.delete(&path).bearer_auth(ADMIN).send().await.unwrap().status(), 404);
    }
}

/// The same grades on SQLite and PostgreSQL give the same JSON on every route.
async fn every_route_answers_the_same_on_sqlite_and_postgresql() {
    let pg = TestApp::postgres_with(with_admin).await;
    let lite = TestApp::sqlite_with(with_admin).await;
    load(&lite).await;
    load(&pg).await;
    let (a, b) = (read_all(&lite).await, read_all(&pg).await);
    for ((route, a), b) in ROUTES.iter().zip(&a).zip(&b) {
        assert_eq!(a, b, "{route} differs between backends");
    }
    lite.stop().await;
    pg.stop().await;
}
crate::case!(
    every_route_answers_the_same_on_sqlite_and_postgresql,
    needs = [Postgres]
);

/// Without an admin token configured, the operator routes are off.
async fn without_an_admin_token_the_jobs_api_is_refused() {
    let app = TestApp::sqlite().await;
    let response = app
        .client
        .get(app.url("/jobs"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let (_, problem) = json(response).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("STUDYHALL_ADMIN_TOKEN"),
        "{problem}"
    );
    app.stop().await;
}
crate::case!(without_an_admin_token_the_jobs_api_is_refused);

/// With the in-process worker: a job that succeeded is removed once the job retention
/// period (a week by default) has passed on the server's clock.
mod retention {
    use super::*;

    fn with_worker(settings: &mut ServeSettings) {
        settings.admin_token = Some(ADMIN.parse().unwrap());
    }

    async fn state(app: &TestApp, id: &str) -> (u16, Value) {
        json(operator(app, &format!("/jobs/{id}")).await).await
    }

    on_every_backend_with! {
        with_worker;

        async fn a_succeeded_job_is_removed_after_the_job_retention(app) {
            let id = post(&app, "/stats/student/grade", grade(S1, "c1", 50.0, None, "2024-05-19T10:00:00Z")).await;
            for _ in 0..200 {
                if state(&app, &id).await.1["state"] == "succeeded" {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert_eq!(state(&app, &id).await.1["state"], "succeeded");
            app.clock.advance(std::time::Duration::from_secs(6 * 24 * 3600));
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert_eq!(state(&app, &id).await.0, 200, "kept for the week");
            app.clock.advance(std::time::Duration::from_secs(24 * 3600 + 60));
            for _ in 0..200 {
                if state(&app, &id).await.0 == 404 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert_eq!(state(&app, &id).await.0, 404, "a week after it succeeded");
        }
    }
}

/// Grades were kept in thousandths before migration 14: those stored then, and those
/// still queued, read the same after it (in millionths).
async fn grades_kept_in_thousandths_read_the_same_after_the_migration_to_millionths() {
    let (url, _database) = crate::helpers::TestDatabase::sqlite();
    let db = Db::connect(&url, 2).await.unwrap();
    let Db::Sqlite(sqlite) = &db else {
        unreachable!("a SQLite test database")
    };
    let mut before = sqlx::migrate!("../core/migrations/sqlite");
    before.migrations = before
        .migrations
        .iter()
        .filter(|migration| migration.version < 14)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&sqlite.pool).await.unwrap();
    // A course grade of 92.5 stored, with its day's tallies, and one of 60.25 queued.
    let at = 1_716_112_800_000_000i64; // 2024-05-19T10:00:00Z
    let day = at.div_euclid(86_400_000_000);
    Sql::new("INSERT INTO grade_records (id, student_id, course_id, units, on_time, created_at) VALUES ('g1', 's1', 'c1', 92500, $1, $2)")
        .bind(true).bind(at).execute(&db).await.unwrap();
    for (table, key) in [
        ("grade_days_course", "course_id"),
        ("grade_days_student", "student_id"),
    ] {
        let id = if key == "course_id" { "c1" } else { "s1" };
        Sql::new(&format!("INSERT INTO {table} ({key}, day, grade_sum, grade_count, on_time_count) VALUES ($1, $2, 92500, 1, 1)"))
            .bind(id).bind(day).execute(&db).await.unwrap();
    }
    Sql::new("INSERT INTO grade_days_course_student (course_id, student_id, day, grade_sum, grade_count, on_time_count) VALUES ('c1', 's1', $1, 92500, 1, 1)")
        .bind(day).execute(&db).await.unwrap();
    let payload = json!({"student_id": "s1", "course_id": "c1", "task_id": null, "grade_e3": 60250, "on_time": false, "created_at": at});
    Sql::new("INSERT INTO jobs (id, kind, payload, state, attempts, max_attempts, run_at, created_at) VALUES ('j1', 'grades.course_grade', $1, 'queued', 0, 5, $2, $2)")
        .bind(payload.to_string()).bind(at).execute(&db).await.unwrap();
    db.migrate().await.unwrap();
    let (queue, _) = Queue::new(&db, 5, true, studyhall::clock::Clock::system());
    let worker = Worker::new(
        queue,
        studyhall::job_handlers(|_| true),
        WorkerSettings::default(),
    );
    assert_eq!(worker.run_batch().await.unwrap().succeeded, 1);
    let stored: Vec<(i64,)> = Sql::new("SELECT units FROM grade_records ORDER BY units")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(stored, [(60_250_000,), (92_500_000,)]);
    for table in [
        "grade_days_course",
        "grade_days_student",
        "grade_days_course_student",
    ] {
        let tally: (i64, i64) = Sql::new(&format!("SELECT grade_sum, grade_count FROM {table}"))
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(tally, (152_750_000, 2), "{table}");
    }
    db.close().await;
}
crate::case!(grades_kept_in_thousandths_read_the_same_after_the_migration_to_millionths);
