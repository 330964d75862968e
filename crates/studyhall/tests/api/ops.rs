use serde_json::json;

use crate::helpers::json;
use crate::on_every_backend;

on_every_backend! {
    async fn unknown_routes_are_404_problems_with_the_seeds_error_field(app) {
        let response = app.get("/no/such/route").await;
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let (status, problem) = json(response).await;
        assert_eq!(status, 404);
        assert_eq!(problem["error"], "Route not found");
        assert_eq!(problem["status"], 404);
        assert_eq!(problem["title"], "Not Found");
    }

    async fn a_wrong_method_is_a_405_problem(app) {
        let response = app.client.delete(app.url("/api/events")).send().await.unwrap();
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let (status, problem) = json(response).await;
        assert_eq!(status, 405, "{problem}");
    }

    async fn every_response_carries_a_request_id_and_a_sent_one_is_kept(app) {
        let generated = app.get("/health").await;
        let id = generated.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        let sent = app.client.get(app.url("/nowhere")).header("x-request-id", "trace-me-42").send().await.unwrap();
        assert_eq!(sent.headers()["x-request-id"], "trace-me-42");
    }

    async fn health_and_readiness_answer(app) {
        let (status, body) = json(app.get("/health").await).await;
        assert_eq!((status, body), (200, json!({"status": "healthy"})));
        let (status, body) = json(app.get("/ready").await).await;
        assert_eq!(status, 200);
        assert_eq!(body["database"], "ok");
    }

    async fn metrics_count_requests_by_route_and_status(app) {
        app.get("/api/events?limit=0").await;
        let response = app.get("/metrics").await;
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
        let text = response.text().await.unwrap();
        assert!(text.contains(r#"http_requests_total{method="GET",route="/api/events",status="400"}"#), "{text}");
        assert!(text.contains("http_request_duration_seconds_bucket{"), "{text}");
    }

    async fn the_openapi_document_is_3_1_and_lists_every_route(app) {
        let (status, doc) = json(app.get("/openapi.json").await).await;
        assert_eq!(status, 200);
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
        let routes = [
            ("/health", "get"), ("/ready", "get"), ("/metrics", "get"), ("/openapi.json", "get"),
            ("/api/health", "get"), ("/api/healthz", "get"),
            ("/api/events", "get"), ("/api/events", "post"), ("/api/events/", "get"), ("/api/events/", "post"),
            ("/courses/{courseId}", "post"), ("/courses/{courseId}", "get"), ("/courses/{courseId}/sessions/{sessionId}", "get"),
            ("/api/v1/stream", "post"), ("/api/v1/streams", "post"), ("/api/v1/streams", "get"),
            ("/api/v1/streams/{id}/heartbeat", "post"), ("/api/v1/streams/{id}", "delete"),
            ("/api/v1/viewers/{viewer}/limit", "put"), ("/api/v1/viewers/{viewer}/limit", "delete"),
            ("/ping", "get"), ("/users/me", "post"), ("/users/me", "get"), ("/users/me", "put"),
            ("/users/me/domain_array/{share_type}", "put"), ("/users/id/{user_id}", "get"), ("/users/ids/{ids}", "get"),
            ("/users/id/{user_id}/friends", "get"), ("/users/id/{user_id}/friends/count", "get"),
            ("/users/id/{user_id}/mutual-friends", "get"), ("/users/id/{user_id}/mutual-friends/count", "get"),
            ("/users/search/email/{email}", "get"), ("/users/search/name/{name}", "get"),
            ("/friendship/check/{user_id}", "get"), ("/friendship/requests", "post"), ("/friendship/requests", "get"),
            ("/friendship/requests/{user_id}", "get"), ("/friendship/requests/{user_id}", "delete"),
            ("/friendship/accept", "post"), ("/friendship/delete", "post"), ("/friendship/all", "get"),
            ("/friendship/search/email/{email}", "get"), ("/friendship/search/name/{name}", "get"),
            ("/stats/health", "get"), ("/stats/student/grade", "post"), ("/stats/student/task/grade", "post"),
            ("/stats/student/{student_id}/course/{course_id}", "get"), ("/stats/student/{student_id}/average", "get"),
            ("/stats/course/{course_id}/average", "get"), ("/stats/course/{course_id}/task/{task_id}/averages", "get"),
            ("/stats/student/{student_id}/course/{course_id}/task/average", "get"),
            ("/stats/course/{course_id}/on_time_percentage", "get"),
            ("/api/events/export", "get"), ("/api/events/checkpoints", "get"),
            ("/stats/course/{course_id}/student/{student_id}/on_time_percentage", "get"),
            ("/jobs", "get"), ("/jobs/{id}", "get"), ("/jobs/{id}", "delete"), ("/jobs/{id}/retry", "post"),
        ];
        for (path, method) in routes {
            let operation = &doc["paths"][path][method];
            assert!(operation.is_object(), "{method} {path} is not documented");
            assert!(operation["responses"].is_object(), "{method} {path} has no responses");
        }
        for code in ["201", "400", "413", "422"] {
            assert!(doc["paths"]["/api/events"]["post"]["responses"][code].is_object(), "POST /api/events lacks {code}");
        }
        let mut operation_ids = std::collections::HashSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                if let Some(id) = operation["operationId"].as_str() {
                    assert!(operation_ids.insert(id.to_owned()), "duplicate operationId {id}");
                }
            }
        }
    }
}

/// `sslmode=require` in the URL (as RDS with `rds.force_ssl` needs) makes every pooled
/// connection TLS; `sslmode=disable` is the control that shows the query can tell.
async fn postgresql_connections_use_tls_when_the_url_asks_for_it() {
    use sqlx::{Connection, PgConnection};
    let admin_url = crate::helpers::test_url("STUDYHALL_TEST_POSTGRES_URL");
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    let (ssl,): (String,) = sqlx::query_as("SHOW ssl")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(
        ssl, "on",
        "the harness runs this test only when the server offers TLS"
    );
    for (mode, tls) in [("require", true), ("disable", false)] {
        let app = crate::helpers::TestApp::postgres_with(|settings| {
            let url = format!("{}?sslmode={mode}", settings.database.database_url.expose());
            settings.database.database_url = url.parse().expect("database url");
        })
        .await;
        assert_eq!(app.get("/ready").await.status(), 200);
        let mut observer = PgConnection::connect(app.database_url.expose())
            .await
            .unwrap();
        let (connections, all_tls): (i64, Option<bool>) = sqlx::query_as(
            "SELECT count(*), bool_and(s.ssl) FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()",
        )
        .fetch_one(&mut observer)
        .await
        .unwrap();
        assert!(connections > 0, "the server holds no connection");
        assert_eq!(all_tls, Some(tls), "sslmode={mode}");
    }
}
crate::case!(
    postgresql_connections_use_tls_when_the_url_asks_for_it,
    needs = [Postgres, PostgresTls]
);

async fn the_document_describes_only_the_modules_served() {
    let app = crate::helpers::TestApp::sqlite_with(|settings| {
        settings.modules = vec!["events".into(), "stats".into()];
    })
    .await;
    let (_, doc) = json(app.get("/openapi.json").await).await;
    let paths = doc["paths"].as_object().unwrap();
    for served in ["/api/events", "/courses/{courseId}", "/health"] {
        assert!(paths.contains_key(served), "{served} missing");
    }
    for absent in ["/users/me", "/stats/health", "/jobs", "/api/v1/streams"] {
        assert!(
            !paths.contains_key(absent),
            "{absent} documented but not served"
        );
        assert_eq!(app.get(absent).await.status(), 404, "{absent} served");
    }
    app.stop().await;
}
crate::case!(the_document_describes_only_the_modules_served);

async fn browser_origins_are_allowed_only_when_configured() {
    let origin = "https://app.example.com";
    let preflight = |app: &crate::helpers::TestApp| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/events"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "content-type, idempotency-key",
            )
            .send()
    };
    let closed = crate::helpers::TestApp::sqlite().await;
    let response = preflight(&closed).await.unwrap();
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    closed.stop().await;

    let open = crate::helpers::TestApp::sqlite_with(|settings| {
        settings.cors_origins = vec![origin.to_owned()];
    })
    .await;
    let response = preflight(&open).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(response.headers()["access-control-allow-origin"], origin);
    let allowed = response.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("idempotency-key"), "{allowed}");
    let read = open
        .client
        .get(open.url("/api/events"))
        .header("Origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(read.headers()["access-control-allow-origin"], origin);
    let other = open
        .client
        .get(open.url("/api/events"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    open.stop().await;
}
crate::case!(browser_origins_are_allowed_only_when_configured);

/// What a reader of `/docs` needs: every operation summarised, every grades response
/// with its fields, and every route that reads a bearer token saying so.
#[test]
fn the_document_summarises_every_operation_and_declares_its_tokens() {
    let doc = serde_json::to_value(studyhall::openapi_document()).unwrap();
    let mut bearer_routes = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert!(
                operation["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path} has no summary"
            );
            let schemes: Vec<&str> = operation["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|requirement| requirement.as_object())
                .flat_map(|requirement| requirement.keys().map(String::as_str))
                .collect();
            let text = operation.to_string();
            if text.contains("No or bad token") || text.contains("admin token") {
                assert!(
                    !schemes.is_empty(),
                    "{method} {path} reads a token but declares no security"
                );
            }
            bearer_routes += usize::from(schemes.contains(&"bearer"));
            if path.starts_with("/stats/") {
                let schema =
                    &operation["responses"]["200"]["content"]["application/json"]["schema"];
                assert!(
                    schema["$ref"].is_string(),
                    "{method} {path} answers a bare {schema}"
                );
            }
        }
    }
    for optional in [
        "/api/v1/streams",
        "/courses/{courseId}",
        "/users/id/{user_id}",
        "/api/events",
    ] {
        let security = &doc["paths"][optional]["get"]["security"];
        assert_eq!(
            security[0],
            serde_json::json!({}),
            "{optional}: the token is optional"
        );
    }
    assert!(bearer_routes >= 30, "{bearer_routes}");
}
