//! Every module writing to one SQLite file at once: the writers take turns (one write
//! lock, a real busy timeout, `BEGIN IMMEDIATE` everywhere), and none answers a 5xx.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use studyhall::config::ServeSettings;

use crate::helpers::TestApp;

const SECRET: &str = "writers-test-secret-0123456789";
/// Writes per client, 24 clients: enough for every kind of write to wait on every other
/// many times over, counted rather than timed so that a slow machine sends as many.
const WRITES_PER_CLIENT: usize = 125;

fn configure(settings: &mut ServeSettings) {
    settings.auth.jwt_secret = Some(SECRET.parse().unwrap());
}

/// One kind of write, sent again and again by a few concurrent clients.
fn write(app: &TestApp, kind: usize, n: usize) -> reqwest::RequestBuilder {
    let id = uuid::Uuid::new_v4();
    match kind {
        0 => app.client.post(app.url("/api/events")).json(&json!({
            "component": "writers", "data": {"n": n}, "email": "w@x.io", "environment": "test", "message": format!("event {n}")
        })),
        1 => app
            .client
            .post(app.url("/courses/2f6a4f2e-3b1c-4d5e-9f70-1a2b3c4d5e6f"))
            .header("X-User-Id", "9c1b2f8e-6d0a-4a2b-8a57-0b7b0e5d8f11")
            .json(&json!({"sessionId": id, "totalModulesStudied": 3, "averageScore": 70, "timeStudied": 100})),
        2 => app.client.post(app.url("/stats/student/grade")).json(&json!({
            "student_id": format!("s{}", n % 50), "course_id": "c1", "grade": (n % 100) as f64
        })),
        3 => app.client.post(app.url("/stats/student/task/grade")).json(&json!({
            "student_id": format!("s{}", n % 50), "course_id": "c1", "task_id": format!("t{}", n % 5), "grade": (n % 100) as f64
        })),
        4 => app
            .client
            .post(app.url("/api/v1/streams"))
            .header("X-User-Id", format!("viewer-{}", n % 500))
            .json(&json!({"stream_id": format!("tab-{n}")})),
        _ => {
            let user = format!("writer-{id}");
            let token = studyhall::auth::mint_hs256(SECRET, "sub", &user, Some("w@x.io"), Duration::from_secs(600)).unwrap();
            app.client
                .post(app.url("/users/me"))
                .bearer_auth(token)
                .json(&json!({"first_name": "W", "last_name": format!("{n}")}))
        }
    }
}

async fn every_module_writing_at_once_to_one_sqlite_file_never_answers_5xx() {
    let app = Arc::new(TestApp::sqlite_with(configure).await);
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..6 * 4)
        .map(|client| {
            let (app, sent, failed) = (app.clone(), sent.clone(), failed.clone());
            tokio::spawn(async move {
                let mut n = client;
                for _ in 0..WRITES_PER_CLIENT {
                    let response = write(&app, client % 6, n).send().await.unwrap();
                    sent.fetch_add(1, Ordering::Relaxed);
                    if response.status().is_server_error() {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!(
                            "{} on kind {}: {}",
                            response.status(),
                            client % 6,
                            response.text().await.unwrap_or_default()
                        );
                    }
                    n += 24;
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(sent, 24 * WRITES_PER_CLIENT);
    assert_eq!(failed, 0, "{failed} of {sent} writes answered 5xx");
    Arc::into_inner(app)
        .expect("the clients are done")
        .stop()
        .await;
}
crate::case!(every_module_writing_at_once_to_one_sqlite_file_never_answers_5xx);
