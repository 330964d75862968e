use std::collections::HashMap;

use serde_json::{json, Value};
use studyhall::db::Db;
use studyhall::sql::Sql;
use uuid::Uuid;

use crate::helpers::{json, TestApp};
use crate::on_every_backend;

const USER: &str = "9c1b2f8e-6d0a-4a2b-8a57-0b7b0e5d8f11";
const OTHER_USER: &str = "1d7e3c2a-5b4f-4e6d-8c9b-0a1b2c3d4e5f";

fn new_id() -> String {
    Uuid::new_v4().to_string()
}

fn session(id: &str, modules: i64, score: f64, time: i64) -> Value {
    json!({"sessionId": id, "totalModulesStudied": modules, "averageScore": score, "timeStudied": time})
}

async fn post_as(app: &TestApp, user: Option<&str>, course: &str, body: &Value) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url(&format!("/courses/{course}")))
        .json(body);
    if let Some(user) = user {
        request = request.header("X-User-Id", user);
    }
    json(request.send().await.unwrap()).await
}

async fn get_as(app: &TestApp, user: Option<&str>, path: &str) -> (u16, Value) {
    let mut request = app.client.get(app.url(path));
    if let Some(user) = user {
        request = request.header("X-User-Id", user);
    }
    json(request.send().await.unwrap()).await
}

async fn course_stats(app: &TestApp, user: &str, course: &str) -> (u16, Value) {
    get_as(app, Some(user), &format!("/courses/{course}")).await
}

/// The stored aggregate row and the same figures recomputed from the sessions, straight
/// from the database.
async fn stored_and_recomputed(app: &TestApp, user: &str, course: &str) -> ([i64; 5], [i64; 5]) {
    let db = Db::connect(&app.database_url, 1).await.unwrap();
    let stored_sql = "SELECT session_count, total_modules, time_studied, weighted_score, score_sum
        FROM stats_course_totals WHERE user_id = $1 AND course_id = $2";
    let recomputed_sql = "SELECT CAST(count(*) AS BIGINT), CAST(COALESCE(SUM(total_modules), 0) AS BIGINT),
        CAST(COALESCE(SUM(time_studied), 0) AS BIGINT), CAST(COALESCE(SUM(score_units * total_modules), 0) AS BIGINT),
        CAST(COALESCE(SUM(score_units), 0) AS BIGINT)
        FROM stats_sessions WHERE user_id = $1 AND course_id = $2";
    type Row = (i64, i64, i64, i64, i64);
    let fetch = |sql| Sql::new(sql).bind(user).bind(course).fetch_one::<Row>(&db);
    let stored = fetch(stored_sql).await.unwrap();
    let recomputed = fetch(recomputed_sql).await.unwrap();
    db.close().await;
    let array = |(a, b, c, d, e): Row| [a, b, c, d, e];
    (array(stored), array(recomputed))
}

/// The module-weighted mean the contract defines, from the test's own numbers.
fn expected(sessions: &[(i64, f64, i64)]) -> Value {
    let modules: i64 = sessions.iter().map(|s| s.0).sum();
    let time: i64 = sessions.iter().map(|s| s.2).sum();
    let average = if modules > 0 {
        sessions.iter().map(|s| s.0 as f64 * s.1).sum::<f64>() / modules as f64
    } else {
        sessions.iter().map(|s| s.1).sum::<f64>() / sessions.len() as f64
    };
    json!({"totalModulesStudied": modules, "averageScore": average, "timeStudied": time, "sessionCount": sessions.len()})
}

fn assert_stats(actual: &Value, expected: &Value) {
    for field in ["totalModulesStudied", "timeStudied", "sessionCount"] {
        assert_eq!(
            actual[field], expected[field],
            "{field}: {actual} vs {expected}"
        );
    }
    let (a, e) = (
        actual["averageScore"].as_f64().unwrap(),
        expected["averageScore"].as_f64().unwrap(),
    );
    assert!((a - e).abs() < 1e-9, "averageScore {a} vs {e}");
}

/// Asserts a 400 whose `errors` are exactly `messages`.
fn assert_errors(status: u16, problem: &Value, messages: &[&str]) {
    assert_eq!(status, 400, "{problem}");
    let errors: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{problem}"))
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors, messages);
}

on_every_backend! {
    async fn posting_a_session_returns_201_with_the_stored_session(app) {
        let (course, id) = (new_id(), new_id());
        let (status, stored) = post_as(&app, Some(USER), &course, &session(&id, 30, 92.01, 1000)).await;
        assert_eq!(status, 201, "{stored}");
        assert_eq!(stored, json!({"sessionId": id, "totalModulesStudied": 30, "averageScore": 92.01, "timeStudied": 1000}));
        let (status, fetched) = get_as(&app, Some(USER), &format!("/courses/{course}/sessions/{id}")).await;
        assert_eq!(status, 200);
        assert_eq!(fetched, stored);
    }

    async fn the_course_aggregate_is_weighted_by_modules(app) {
        let course = new_id();
        let sessions = [(30, 90.0, 1000), (10, 50.0, 500), (0, 10.0, 250)];
        for (modules, score, time) in sessions {
            let (status, _) = post_as(&app, Some(USER), &course, &session(&new_id(), modules, score, time)).await;
            assert_eq!(status, 201);
        }
        let (status, stats) = course_stats(&app, USER, &course).await;
        assert_eq!(status, 200);
        assert_stats(&stats, &expected(&sessions));
        assert_eq!(stats["averageScore"], 80.0);
        assert_eq!(stats["sessionCount"], 3);
    }

    async fn with_no_modules_the_average_is_the_plain_mean(app) {
        let course = new_id();
        for score in [60.0, 90.0] {
            post_as(&app, Some(USER), &course, &session(&new_id(), 0, score, 10)).await;
        }
        let (_, stats) = course_stats(&app, USER, &course).await;
        assert_eq!(stats["averageScore"], 75.0);
        assert_eq!(stats["totalModulesStudied"], 0);
    }

    async fn reposting_a_session_replaces_its_contribution(app) {
        let (course, id) = (new_id(), new_id());
        post_as(&app, Some(USER), &course, &session(&id, 10, 40.0, 100)).await;
        post_as(&app, Some(USER), &course, &session(&new_id(), 10, 80.0, 100)).await;
        let (status, replaced) = post_as(&app, Some(USER), &course, &session(&id, 30, 100.0, 700)).await;
        assert_eq!(status, 201, "a replacement is still 201");
        assert_eq!(replaced["totalModulesStudied"], 30);
        let (_, stats) = course_stats(&app, USER, &course).await;
        assert_stats(&stats, &expected(&[(30, 100.0, 700), (10, 80.0, 100)]));
        let (_, one) = get_as(&app, Some(USER), &format!("/courses/{course}/sessions/{id}")).await;
        assert_eq!(one["averageScore"], 100.0);
        let (stored, recomputed) = stored_and_recomputed(&app, USER, &course).await;
        assert_eq!(stored, recomputed);
    }

    async fn a_session_id_of_another_user_or_course_is_409_and_changes_nothing(app) {
        let (course, other_course, id) = (new_id(), new_id(), new_id());
        post_as(&app, Some(USER), &course, &session(&id, 10, 50.0, 100)).await;
        let (status, problem) = post_as(&app, Some(OTHER_USER), &course, &session(&id, 99, 99.0, 999)).await;
        assert_eq!(status, 409, "{problem}");
        assert!(problem["errors"][0].as_str().unwrap().contains("another user or course"));
        let (status, _) = post_as(&app, Some(USER), &other_course, &session(&id, 99, 99.0, 999)).await;
        assert_eq!(status, 409);
        let (_, stats) = course_stats(&app, USER, &course).await;
        assert_stats(&stats, &expected(&[(10, 50.0, 100)]));
        assert_eq!(course_stats(&app, OTHER_USER, &course).await.0, 404);
        assert_eq!(course_stats(&app, USER, &other_course).await.0, 404);
    }

    async fn a_new_session_posted_by_two_users_at_once_belongs_to_one(app) {
        // Posts that arrive together are stored by one batch: the session is new to the
        // database but not to the posts after its first, which must find it taken.
        let (course, id) = (new_id(), new_id());
        let tasks: Vec<_> = (0..40).map(|n| {
            let (client, url) = (app.client.clone(), app.url(&format!("/courses/{course}")));
            let user = if n % 2 == 0 { USER } else { OTHER_USER };
            let body = session(&id, n, 50.0, 100 + n);
            tokio::spawn(async move {
                (user, client.post(url).header("X-User-Id", user).json(&body).send().await.unwrap().status().as_u16())
            })
        }).collect();
        let mut statuses: HashMap<&str, Vec<u16>> = HashMap::new();
        for task in tasks {
            let (user, status) = task.await.unwrap();
            statuses.entry(user).or_default().push(status);
        }
        let owner = if statuses[USER].contains(&201) { USER } else { OTHER_USER };
        let other = if owner == USER { OTHER_USER } else { USER };
        assert!(statuses[owner].iter().all(|s| *s == 201), "{statuses:?}");
        assert!(statuses[other].iter().all(|s| *s == 409), "{statuses:?}");
        let (status, stats) = course_stats(&app, owner, &course).await;
        assert_eq!(status, 200);
        assert_eq!(stats["sessionCount"].as_i64(), Some(1), "{stats}");
        assert_eq!(course_stats(&app, other, &course).await.0, 404);
        let (stored, recomputed) = stored_and_recomputed(&app, owner, &course).await;
        assert_eq!(stored, recomputed);
    }

    async fn unknown_sessions_and_courses_are_404_with_the_seeds_messages(app) {
        let (course, id) = (new_id(), new_id());
        let (status, problem) = course_stats(&app, USER, &course).await;
        assert_eq!(status, 404);
        assert_eq!(problem["errors"], json!(["session data not found for course"]));
        let (status, problem) = get_as(&app, Some(USER), &format!("/courses/{course}/sessions/{id}")).await;
        assert_eq!(status, 404);
        assert_eq!(problem["errors"], json!(["session record not found"]));
        // Another user's session is not visible, nor a session under another course.
        post_as(&app, Some(USER), &course, &session(&id, 1, 1.0, 1)).await;
        assert_eq!(get_as(&app, Some(OTHER_USER), &format!("/courses/{course}/sessions/{id}")).await.0, 404);
        assert_eq!(get_as(&app, Some(USER), &format!("/courses/{}/sessions/{id}", new_id())).await.0, 404);
    }

    async fn ids_are_case_insensitive_and_returned_lowercase(app) {
        let (course, id) = (new_id(), new_id());
        let (status, stored) = post_as(&app, Some(&USER.to_uppercase()), &course.to_uppercase(), &session(&id.to_uppercase(), 5, 50.0, 5)).await;
        assert_eq!(status, 201);
        assert_eq!(stored["sessionId"], id);
        let (status, _) = get_as(&app, Some(USER), &format!("/courses/{course}/sessions/{id}")).await;
        assert_eq!(status, 200);
    }

    async fn every_validation_message_is_reported_together(app) {
        let course = new_id();
        let (status, problem) = post_as(&app, None, "not-a-uuid", &json!({})).await;
        assert_errors(status, &problem, &[
            "Course ID is invalid.", "User ID needs to be defined.", "Session ID needs to be defined.",
            "Total modules studied not defined.", "Average Score not defined.", "Time studied not defined.",
        ]);
        let bad = json!({"sessionId": "nope", "totalModulesStudied": -1, "averageScore": 100.01, "timeStudied": -5});
        let (status, problem) = post_as(&app, Some("not-a-uuid"), &course, &bad).await;
        assert_errors(status, &problem, &[
            "User ID is invalid.", "Session ID is invalid.", "Total modules studied invalid.",
            "Average Score invalid.", "Time studied invalid.",
        ]);
        let cases = [
            (json!({"totalModulesStudied": 1.5}), "Total modules studied invalid."),
            (json!({"totalModulesStudied": 1_000_001}), "Total modules studied invalid."),
            (json!({"averageScore": -0.01}), "Average Score invalid."),
            (json!({"averageScore": null}), "Average Score not defined."),
            (json!({"timeStudied": 1_000_000_000_001_i64}), "Time studied invalid."),
            (json!({"sessionId": null}), "Session ID needs to be defined."),
        ];
        for (change, message) in cases {
            let mut body = session(&new_id(), 1, 1.0, 1);
            for (key, value) in change.as_object().unwrap() {
                body[key] = value.clone();
            }
            let (status, problem) = post_as(&app, Some(USER), &course, &body).await;
            assert_errors(status, &problem, &[message]);
        }
        assert_eq!(course_stats(&app, USER, &course).await.0, 404, "a rejected post stored something");
    }

    async fn non_json_and_wrong_typed_bodies_are_400_with_the_errors_array(app) {
        let course = new_id();
        for raw in ["not json", "[1, 2]", "", "null", "{\"sessionId\": "] {
            let response = app.client.post(app.url(&format!("/courses/{course}"))).header("X-User-Id", USER)
                .header("content-type", "application/json").body(raw).send().await.unwrap();
            assert_eq!(response.headers()["content-type"], "application/problem+json");
            let (status, problem) = json(response).await;
            assert_errors(status, &problem, &["Request body must be a JSON object."]);
        }
        let typed = json!({"sessionId": 7, "totalModulesStudied": "30", "averageScore": "92", "timeStudied": {"ms": 1}});
        let (status, problem) = post_as(&app, Some(USER), &course, &typed).await;
        assert_errors(status, &problem, &[
            "Session ID is invalid.", "Total modules studied invalid.", "Average Score invalid.", "Time studied invalid.",
        ]);
        assert_eq!(course_stats(&app, USER, &course).await.0, 404);
    }

    async fn invalid_ids_on_the_reads_are_400(app) {
        let (course, id) = (new_id(), new_id());
        let (status, problem) = get_as(&app, Some(USER), "/courses/xyz").await;
        assert_errors(status, &problem, &["Course ID is invalid."]);
        // The original's reads said "invalid" for a missing user too (only its POST said
        // "needs to be defined").
        let (status, problem) = get_as(&app, None, &format!("/courses/{course}")).await;
        assert_errors(status, &problem, &["User ID is invalid."]);
        let (status, problem) = get_as(&app, None, &format!("/courses/{course}/sessions/{id}")).await;
        assert_errors(status, &problem, &["User ID is invalid."]);
        let (status, problem) = get_as(&app, Some(USER), &format!("/courses/{course}/sessions/abc")).await;
        assert_errors(status, &problem, &["Session ID is invalid."]);
        let (status, problem) = get_as(&app, Some("u"), &format!("/courses/x/sessions/{id}")).await;
        assert_errors(status, &problem, &["Course ID is invalid.", "User ID is invalid."]);
    }

    async fn concurrent_posts_never_lose_or_double_count(app) {
        let course = new_id();
        // 40 sessions each posted 5 times at once with the same figures: the final state
        // is known, so the aggregate can be checked against the test's own arithmetic.
        let fixed: Vec<(String, (i64, f64, i64))> = (0..40).map(|n| (new_id(), (n % 7, 10.0 + n as f64, 100 + n))).collect();
        // 8 more each posted 25 times at once with different figures: whichever write
        // lands last wins, and the aggregate must match the sessions as finally stored.
        let raced: Vec<String> = (0..8).map(|_| new_id()).collect();
        let mut posts = Vec::new();
        for (id, (modules, score, time)) in &fixed {
            posts.extend((0..5).map(|_| session(id, *modules, *score, *time)));
        }
        for round in 0..25 {
            for (n, id) in raced.iter().enumerate() {
                posts.push(session(id, (n + round) as i64, 4.0 * round as f64, 1000 * round as i64));
            }
        }
        let tasks: Vec<_> = posts.into_iter().map(|body| {
            let (client, url) = (app.client.clone(), app.url(&format!("/courses/{course}")));
            tokio::spawn(async move {
                client.post(url).header("X-User-Id", USER).json(&body).send().await.unwrap().status().as_u16()
            })
        }).collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), 201);
        }
        let mut final_state: Vec<(i64, f64, i64)> = fixed.iter().map(|(_, figures)| *figures).collect();
        for id in &raced {
            let (status, s) = get_as(&app, Some(USER), &format!("/courses/{course}/sessions/{id}")).await;
            assert_eq!(status, 200);
            final_state.push((s["totalModulesStudied"].as_i64().unwrap(), s["averageScore"].as_f64().unwrap(), s["timeStudied"].as_i64().unwrap()));
        }
        let (_, stats) = course_stats(&app, USER, &course).await;
        assert_stats(&stats, &expected(&final_state));
        let (stored, recomputed) = stored_and_recomputed(&app, USER, &course).await;
        assert_eq!(stored, recomputed, "stored aggregate drifted from the sessions");
        assert_eq!(stored[0], 48);
    }

    async fn a_random_sequence_of_posts_keeps_the_aggregate_equal_to_the_sessions(app) {
        // A property check over a deterministic pseudo-random sequence: posts and
        // re-posts across users and courses, compared to a model kept by the test.
        let users = [USER, OTHER_USER];
        let courses = [new_id(), new_id()];
        let sessions: Vec<String> = (0..12).map(|_| new_id()).collect();
        let mut owner: HashMap<String, (usize, usize)> = HashMap::new();
        let mut model: HashMap<String, (i64, f64, i64)> = HashMap::new();
        let mut seed: u64 = 0x5eed_cafe;
        let mut next = |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        for _ in 0..150 {
            let id = sessions[next(12) as usize].clone();
            let (u, c) = (next(2) as usize, next(2) as usize);
            let figures = (next(20) as i64, next(10_001) as f64 / 100.0, next(5000) as i64);
            let (status, _) = post_as(&app, Some(users[u]), &courses[c], &session(&id, figures.0, figures.1, figures.2)).await;
            match owner.get(&id) {
                Some(&first) if first != (u, c) => assert_eq!(status, 409),
                _ => {
                    assert_eq!(status, 201);
                    owner.insert(id.clone(), (u, c));
                    model.insert(id, figures);
                }
            }
        }
        for (u, user) in users.iter().enumerate() {
            for (c, course) in courses.iter().enumerate() {
                let mine: Vec<(i64, f64, i64)> = model.iter().filter(|(id, _)| owner[*id] == (u, c)).map(|(_, f)| *f).collect();
                let (status, stats) = course_stats(&app, user, course).await;
                if mine.is_empty() {
                    assert_eq!(status, 404);
                } else {
                    assert_stats(&stats, &expected(&mine));
                }
                let (stored, recomputed) = stored_and_recomputed(&app, user, course).await;
                if !mine.is_empty() {
                    assert_eq!(stored, recomputed);
                }
            }
        }
    }
}

const STATS_SECRET: &str = "stats-test-secret-0123456789";

fn token_for(user: &str) -> String {
    studyhall::auth::mint_hs256(
        STATS_SECRET,
        "sub",
        user,
        None,
        std::time::Duration::from_secs(600),
    )
    .unwrap()
}

mod token_callers {
    use super::*;
    use crate::on_every_backend_with;

    on_every_backend_with! {
        |settings: &mut studyhall::config::ServeSettings| {
            settings.auth.jwt_secret = Some(super::STATS_SECRET.parse().unwrap());
        };

        async fn a_token_user_is_checked_by_the_same_rule_as_the_header(app) {
            let course = new_id();
            let post = |token: String| {
                app.client.post(app.url(&format!("/courses/{course}"))).bearer_auth(token).json(&session(&new_id(), 1, 50.0, 10))
            };
            let (status, problem) = json(post(token_for("alice")).send().await.unwrap()).await;
            assert_errors(status, &problem, &["User ID is invalid."]);
            let (status, _) = json(post(token_for(USER)).send().await.unwrap()).await;
            assert_eq!(status, 201);
            let read = app.client.get(app.url(&format!("/courses/{course}"))).bearer_auth(token_for("alice")).send().await.unwrap();
            let (status, problem) = json(read).await;
            assert_errors(status, &problem, &["User ID is invalid."]);
            assert_eq!(course_stats(&app, USER, &course).await.0, 200);
        }
    }
}

mod untrusted_headers {
    use super::*;
    use crate::on_every_backend_with;

    on_every_backend_with! {
        |settings: &mut studyhall::config::ServeSettings| {
            settings.identity.trust_identity_headers = false;
        };

        async fn a_header_that_is_not_trusted_is_named_as_the_reason(app) {
            let course = new_id();
            let (status, problem) = post_as(&app, Some(USER), &course, &session(&new_id(), 1, 50.0, 10)).await;
            assert_eq!(status, 400);
            let errors = problem["errors"].as_array().unwrap();
            assert!(errors.iter().any(|e| e.as_str().unwrap().contains("STUDYHALL_TRUST_IDENTITY_HEADERS")), "{problem}");
            let (status, problem) = course_stats(&app, USER, &course).await;
            assert_eq!(status, 400);
            assert!(problem["errors"][0].as_str().unwrap().contains("not accepted"), "{problem}");
            let (status, problem) = post_as(&app, None, &course, &session(&new_id(), 1, 50.0, 10)).await;
            assert_errors(status, &problem, &["User ID needs to be defined."]);
        }
    }
}
