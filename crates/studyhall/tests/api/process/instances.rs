//! Several server processes on one database or Redis answer as one server does.

use serde_json::{json, Value};

use super::*;
use crate::helpers::{test_url, TestDatabase};

/// 200 concurrent starts for one viewer, alternating between two servers: exactly the
/// limit may succeed.
async fn split_starts(a: &Server, b: &Server) -> (usize, usize) {
    let viewer = format!("split-{}", uuid::Uuid::new_v4().simple());
    let attempts: Vec<_> = (0..200)
        .map(|n| {
            let url = format!(
                "{}/api/v1/streams",
                if n % 2 == 0 { &a.address } else { &b.address }
            );
            let viewer = viewer.clone();
            tokio::spawn(async move {
                client()
                    .post(url)
                    .header("X-User-Id", viewer)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let (mut allowed, mut refused) = (0, 0);
    for attempt in attempts {
        match attempt.await.unwrap() {
            201 => allowed += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    (allowed, refused)
}

async fn two_servers_sharing_postgresql_allow_exactly_the_limit() {
    let (url, _database) = TestDatabase::postgres().await;
    let a = start(url.expose()).await;
    let b = start(url.expose()).await;
    assert_eq!(split_starts(&a, &b).await, (3, 197));
}
crate::case!(
    two_servers_sharing_postgresql_allow_exactly_the_limit,
    needs = [Postgres]
);

/// Two servers, each on a SQLite database of its own (kept in the directories
/// returned), sharing Redis for stream leases, with `env` besides.
async fn two_sharing_redis(env: &[(&str, &str)]) -> (Server, Server, [tempfile::TempDir; 2]) {
    let redis = test_url("STUDYHALL_TEST_REDIS_URL");
    let mut env = env.to_vec();
    env.extend([
        ("STUDYHALL_STREAMS_BACKEND", "redis"),
        ("STUDYHALL_REDIS_URL", redis.as_str()),
    ]);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let url = |n: usize| format!("sqlite://{}", dirs[n].path().join("studyhall.db").display());
    let a = start_with(&url(0), &env).await;
    let b = start_with(&url(1), &env).await;
    (a, b, dirs)
}

async fn two_servers_sharing_redis_allow_exactly_the_limit() {
    let (a, b, _dirs) = two_sharing_redis(&[]).await;
    assert_eq!(split_starts(&a, &b).await, (3, 197));
}
crate::case!(
    two_servers_sharing_redis_allow_exactly_the_limit,
    needs = [Redis]
);

/// 200 concurrent starts for one viewer alternating between two servers under
/// `kick_oldest`: every start is admitted, exactly the limit stays active, every other
/// stream was ended once to admit a newer one, and its heartbeat on either server says so.
async fn kick_oldest_across(a: &Server, b: &Server) {
    let viewer = format!("kick-{}", uuid::Uuid::new_v4().simple());
    let servers = [a, b];
    let starts = (0..200).map(|n| {
        let url = format!("{}/api/v1/streams", servers[n % 2].address);
        let viewer = viewer.clone();
        async move {
            let answer = client()
                .post(url)
                .header("X-User-Id", viewer)
                .json(&json!({"stream_id": format!("s{n}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 201);
            let body: Value = answer.json().await.unwrap();
            body["replaced_streams"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|id| id.as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    });
    let mut replaced: Vec<String> = futures_util::future::join_all(starts)
        .await
        .into_iter()
        .flatten()
        .collect();
    replaced.sort();
    let kicks = replaced.len();
    replaced.dedup();
    assert_eq!((kicks, replaced.len()), (197, 197));
    let list: Value = client()
        .get(format!("{}/api/v1/streams", b.address))
        .header("X-User-Id", &viewer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["active_streams"], 3, "{list}");
    for (n, id) in replaced.iter().enumerate() {
        let beat = client()
            .post(format!(
                "{}/api/v1/streams/{id}/heartbeat",
                servers[n % 2].address
            ))
            .header("X-User-Id", &viewer)
            .send()
            .await
            .unwrap();
        assert_eq!(beat.status(), 410, "{id}");
    }
}

async fn two_servers_sharing_postgresql_kick_the_oldest_exactly() {
    let (url, _database) = TestDatabase::postgres().await;
    let env = [("STUDYHALL_STREAM_POLICY", "kick_oldest")];
    let a = start_with(url.expose(), &env).await;
    let b = start_with(url.expose(), &env).await;
    kick_oldest_across(&a, &b).await;
}
crate::case!(
    two_servers_sharing_postgresql_kick_the_oldest_exactly,
    needs = [Postgres]
);

async fn two_servers_sharing_redis_kick_the_oldest_exactly() {
    let (a, b, _dirs) = two_sharing_redis(&[("STUDYHALL_STREAM_POLICY", "kick_oldest")]).await;
    kick_oldest_across(&a, &b).await;
}
crate::case!(
    two_servers_sharing_redis_kick_the_oldest_exactly,
    needs = [Redis]
);

/// One scenario touching every module, run with requests alternating between `servers`;
/// returns what a client observes (ids and timestamps left out).
async fn scenario(servers: &[&Server], secret: &str) -> Value {
    let at = |n: usize| &servers[n % servers.len()].address;
    let c = client();
    let mut seen = serde_json::Map::new();

    // Events: written through both, listed by both; an idempotent retry lands elsewhere.
    for n in 0..10 {
        let status = c
            .post(format!("{}/api/events", at(n)))
            .json(&event(n))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 201);
    }
    let keyed = |n: usize| {
        c.post(format!("{}/api/events", at(n)))
            .header("Idempotency-Key", "smoke")
            .json(&event(99))
            .send()
    };
    let first: Value = keyed(0).await.unwrap().json().await.unwrap();
    let retry: Value = keyed(1).await.unwrap().json().await.unwrap();
    assert_eq!(
        first["id"], retry["id"],
        "an idempotent retry on another instance"
    );
    for n in 0..2 {
        let page: Value = get_json(format!("{}/api/events?limit=1000", at(n))).await;
        seen.insert(
            format!("events via {n}"),
            json!(page["events"].as_array().unwrap().len()),
        );
    }

    // Stats: sessions and a re-post through alternating servers.
    let (user, course) = (
        "55555555-5555-4555-8555-555555555555",
        "66666666-6666-4666-8666-666666666666",
    );
    for (n, (modules, score)) in [(10, 50.0), (30, 90.0), (20, 70.0)].into_iter().enumerate() {
        let body = json!({"sessionId": format!("77777777-7777-4777-8777-77777777777{n}"), "totalModulesStudied": modules, "averageScore": score, "timeStudied": 1000});
        let status = c
            .post(format!("{}/courses/{course}", at(n)))
            .header("X-User-Id", user)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 201);
    }
    let repost = json!({"sessionId": "77777777-7777-4777-8777-777777777770", "totalModulesStudied": 40, "averageScore": 80.0, "timeStudied": 500});
    c.post(format!("{}/courses/{course}", at(1)))
        .header("X-User-Id", user)
        .json(&repost)
        .send()
        .await
        .unwrap();
    for n in 0..2 {
        let stats: Value = json_of(
            c.get(format!("{}/courses/{course}", at(n)))
                .header("X-User-Id", user),
        )
        .await;
        seen.insert(format!("course via {n}"), stats);
    }

    // Streams: the limit holds across servers; an end on one frees a slot on the other.
    let start = |n: usize| {
        c.post(format!("{}/api/v1/streams", at(n)))
            .header("X-User-Id", "smoke-viewer")
            .send()
    };
    let mut statuses = Vec::new();
    let mut first_id = String::new();
    for n in 0..4 {
        let response = start(n).await.unwrap();
        statuses.push(response.status().as_u16());
        let body: Value = response.json().await.unwrap();
        if n == 0 {
            first_id = body["stream"]["id"].as_str().unwrap().to_owned();
        }
    }
    let ended = c
        .delete(format!("{}/api/v1/streams/{first_id}", at(1)))
        .header("X-User-Id", "smoke-viewer")
        .send()
        .await
        .unwrap();
    statuses.push(ended.status().as_u16());
    statuses.push(start(0).await.unwrap().status().as_u16());
    seen.insert("stream statuses".into(), json!(statuses));

    // Social: profiles, a request on one server accepted on the other.
    let token = |sub: &str| {
        studyhall::auth::mint_hs256(
            secret,
            "sub",
            sub,
            Some(&format!("{sub}@example.com")),
            std::time::Duration::from_secs(600),
        )
        .unwrap()
    };
    for (n, who) in ["ann", "ben"].into_iter().enumerate() {
        let status = c
            .post(format!("{}/users/me", at(n)))
            .bearer_auth(token(who))
            .json(&json!({"first_name": who, "last_name": "Smoke"}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    c.post(format!("{}/friendship/requests", at(0)))
        .bearer_auth(token("ann"))
        .json(&json!({"user_id2": "ben"}))
        .send()
        .await
        .unwrap();
    let accepted = c
        .post(format!("{}/friendship/accept", at(1)))
        .bearer_auth(token("ben"))
        .json(&json!({"user_id1": "ann"}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
    let friends: Value = json_of(
        c.get(format!("{}/friendship/all", at(0)))
            .bearer_auth(token("ann")),
    )
    .await;
    seen.insert("ann's friends".into(), friends);

    // Grades: queued through both servers, stored by whichever worker runs.
    for n in 0..6 {
        let body = json!({"student_id": "88888888-8888-4888-8888-888888888888", "course_id": "smoke", "grade": n, "on_time": n % 2 == 0});
        assert_eq!(
            c.post(format!("{}/stats/student/grade", at(n)))
                .header("x-graded-at", "2024-03-10T10:00:00Z")
                .json(&body)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    wait_for_tally(servers[0], "smoke", 6).await;
    for n in 0..2 {
        let averages: Value = json_of(c.get(format!(
            "{}/stats/course/smoke/average?group_by=year&end_date=2030-01-01",
            at(n)
        )))
        .await;
        seen.insert(format!("grades via {n}"), averages["averages"].clone());
    }
    Value::Object(seen)
}

async fn two_servers_and_a_worker_answer_as_one_server_does() {
    let redis = test_url("STUDYHALL_TEST_REDIS_URL");
    let secret = "smoke-test-secret-0123456789";
    let env = |worker: bool| {
        let mut env = vec![
            ("STUDYHALL_STREAMS_BACKEND", "redis"),
            ("STUDYHALL_REDIS_URL", redis.as_str()),
            ("STUDYHALL_JWT_SECRET", secret),
        ];
        if !worker {
            env.push(("STUDYHALL_NO_WORKER", "true"));
        }
        env
    };
    // Redis keys are per viewer; each setup flushes the smoke viewer's keys first.
    let forget_viewer = || async {
        let client = redis::Client::open(redis.as_str()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        for suffix in ["active", "started", "meta", "limit"] {
            let _: () = redis::cmd("DEL")
                .arg(format!("studyhall:streams:{{user:smoke-viewer}}:{suffix}"))
                .query_async(&mut connection)
                .await
                .unwrap();
        }
    };

    let (single_url, _single_db) = TestDatabase::postgres().await;
    forget_viewer().await;
    let single = start_with(single_url.expose(), &env(true)).await;
    let one = scenario(&[&single], secret).await;

    let (shared_url, _shared_db) = TestDatabase::postgres().await;
    forget_viewer().await;
    let a = start_with(shared_url.expose(), &env(false)).await;
    let b = start_with(shared_url.expose(), &env(false)).await;
    let _worker = start_worker(shared_url.expose(), &[]).await;
    let many = scenario(&[&a, &b], secret).await;

    assert_eq!(
        one, many,
        "two servers and a worker must answer as one server does"
    );
    assert_eq!(
        one["stream statuses"],
        json!([201, 201, 201, 429, 204, 201])
    );
    assert_eq!(one["events via 0"], json!(11));
}
crate::case!(
    two_servers_and_a_worker_answer_as_one_server_does,
    needs = [Postgres, Redis]
);

/// Deadlocks PostgreSQL has detected in the current database so far.
async fn deadlocks(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn two_servers_batching_the_same_sessions_in_opposite_orders_never_deadlock_or_drift() {
    // Each server stores the posts that queue up together in one transaction. Server A
    // receives the sessions in one order and server B in the reverse one, all at once,
    // re-posted over and over across four shared courses: batches that locked rows in
    // arrival order would wait on each other in a cycle. PostgreSQL would resolve each
    // cycle by failing a transaction (counted in pg_stat_database), and the totals
    // must still equal the sessions as finally stored.
    let (url, _database) = TestDatabase::postgres().await;
    let a = start(url.expose()).await;
    let b = start(url.expose()).await;
    let user = "9c1b2f8e-6d0a-4a2b-8a57-0b7b0e5d8f11";
    let courses: Vec<String> = (0..4).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let sessions: Vec<String> = (0..60).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let pool = sqlx::PgPool::connect(url.expose()).await.unwrap();
    let deadlocks_before = deadlocks(&pool).await;
    let mut posts = Vec::new();
    for round in 0..5i64 {
        for (n, session) in sessions.iter().enumerate() {
            let n = n as i64;
            let body = json!({
                "sessionId": session,
                "totalModulesStudied": (n + round) % 9,
                "averageScore": ((n * 7 + round * 13) % 100) as f64 + 0.25,
                "timeStudied": 1000 * round + n,
            });
            let course = &courses[(n % 4) as usize];
            posts.push((format!("/courses/{course}"), body));
        }
    }
    let reversed: Vec<_> = posts.iter().rev().cloned().collect();
    let mut sent = Vec::new();
    for (server, posts) in [(&a, posts), (&b, reversed)] {
        for (path, body) in posts {
            let url = format!("{}{path}", server.address);
            sent.push(tokio::spawn(async move {
                client()
                    .post(url)
                    .header("X-User-Id", user)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
    }
    for status in sent {
        assert_eq!(status.await.unwrap(), 201);
    }
    let drift: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT t.course_id, t.session_count, COALESCE(s.sessions, 0)
         FROM stats_course_totals t
         LEFT JOIN (SELECT user_id, course_id, count(*) AS sessions, sum(total_modules) AS modules,
                           sum(time_studied) AS time_studied, sum(score_units * total_modules) AS weighted,
                           sum(score_units) AS score_sum
                    FROM stats_sessions GROUP BY user_id, course_id) s
           ON s.user_id = t.user_id AND s.course_id = t.course_id
         WHERE s.sessions IS DISTINCT FROM t.session_count OR s.modules IS DISTINCT FROM t.total_modules
            OR s.time_studied IS DISTINCT FROM t.time_studied OR s.weighted IS DISTINCT FROM t.weighted_score
            OR s.score_sum IS DISTINCT FROM t.score_sum",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        drift.is_empty(),
        "totals drifted from the sessions: {drift:?}"
    );
    let counted: i64 =
        sqlx::query_scalar("SELECT CAST(sum(session_count) AS BIGINT) FROM stats_course_totals")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(counted, 60);
    // Statistics reach pg_stat_database within about a second of a transaction ending.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        deadlocks(&pool).await - deadlocks_before,
        0,
        "batches deadlocked"
    );
}
crate::case!(
    two_servers_batching_the_same_sessions_in_opposite_orders_never_deadlock_or_drift,
    needs = [Postgres]
);

async fn two_servers_batching_starts_for_many_viewers_in_opposite_orders_keep_each_limit() {
    // Each server applies the starts that queue up together in one transaction, each
    // start holding its viewer's row lock until that commits. Server A receives the
    // viewers in one order and server B in the reverse one, all at once: batches that
    // locked viewers in arrival order would deadlock. Every viewer gets four starts,
    // two through each server, and exactly its limit of three may succeed.
    let (url, _database) = TestDatabase::postgres().await;
    let a = start(url.expose()).await;
    let b = start(url.expose()).await;
    let pool = sqlx::PgPool::connect(url.expose()).await.unwrap();
    let deadlocks_before = deadlocks(&pool).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let viewers: Vec<String> = (0..40).map(|n| format!("order-{run}-{n}")).collect();
    let mut sent = Vec::new();
    for round in 0..2 {
        for (server, order) in [(&a, false), (&b, true)] {
            let mut mine = viewers.clone();
            if order {
                mine.reverse();
            }
            for viewer in mine {
                let url = format!("{}/api/v1/streams", server.address);
                sent.push(tokio::spawn(async move {
                    let status = client()
                        .post(url)
                        .header("X-User-Id", &viewer)
                        .json(&json!({"stream_id": format!("{viewer}-{round}-{order}")}))
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16();
                    (viewer, status)
                }));
            }
        }
    }
    let mut allowed: std::collections::HashMap<String, usize> = Default::default();
    for answer in sent {
        let (viewer, status) = answer.await.unwrap();
        match status {
            201 => *allowed.entry(viewer).or_default() += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    for viewer in &viewers {
        assert_eq!(allowed.get(viewer), Some(&3), "{viewer}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        deadlocks(&pool).await - deadlocks_before,
        0,
        "batches deadlocked"
    );
}
crate::case!(
    two_servers_batching_starts_for_many_viewers_in_opposite_orders_keep_each_limit,
    needs = [Postgres]
);
