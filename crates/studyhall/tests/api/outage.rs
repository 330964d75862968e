//! PostgreSQL going away under load, through a TCP proxy the test can cut: requests
//! answer 503 within about 2 s (never hang, never 500), and the service recovers by
//! itself when the database is back. Connections the server terminates are 503s too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::{json, TestApp};

/// Forwards 127.0.0.1:`port` to `upstream` until cut; cutting drops every connection
/// and refuses new ones.
struct Proxy {
    port: u16,
    upstream: String,
    stop: watch::Sender<bool>,
}

impl Proxy {
    async fn start(port: u16, upstream: String) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = watch::channel(false);
        let target = upstream.clone();
        tokio::spawn(async move {
            let mut stopped_accepting = stopped.clone();
            loop {
                let (mut client, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(pair) => pair, Err(_) => return },
                    _ = stopped_accepting.changed() => return,
                };
                let (target, mut stopped) = (target.clone(), stopped.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = stopped.changed() => {}
                    }
                });
            }
        });
        Proxy {
            port,
            upstream,
            stop,
        }
    }

    fn cut(&self) {
        let _ = self.stop.send(true);
    }

    async fn restore(&self) -> Proxy {
        Proxy::start(self.port, self.upstream.clone()).await
    }
}

/// The `host:port` of a database URL.
fn host_and_port(url: &str) -> (String,) {
    let after_scheme = url.split("://").nth(1).unwrap();
    let authority = after_scheme.split('/').next().unwrap();
    (authority.rsplit('@').next().unwrap().to_owned(),)
}

/// Event posts that `clients` clients keep sending while `during` runs: every status,
/// and the slowest answer in ms.
async fn under_load(
    app: &TestApp,
    clients: usize,
    posts: usize,
    during: impl std::future::Future<Output = ()>,
) -> (Vec<u16>, usize) {
    let statuses = Arc::new(std::sync::Mutex::new(Vec::new()));
    let slowest = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..clients)
        .map(|client| {
            let (http, url) = (app.client.clone(), app.url("/api/events"));
            let (statuses, slowest) = (statuses.clone(), slowest.clone());
            tokio::spawn(async move {
                for n in 0..posts {
                    let began = Instant::now();
                    let sent = http.post(&url).json(&event(client * 1000 + n)).send().await;
                    let status = sent.unwrap().status().as_u16();
                    slowest.fetch_max(began.elapsed().as_millis() as usize, Ordering::Relaxed);
                    statuses.lock().unwrap().push(status);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    during.await;
    for task in load {
        task.await.unwrap();
    }
    let statuses = statuses.lock().unwrap().clone();
    (statuses, slowest.load(Ordering::Relaxed))
}

fn event(n: usize) -> serde_json::Value {
    json!({"component": "outage", "data": {"n": n}, "email": "o@x.io", "environment": "test", "message": format!("event {n}")})
}

/// While the database is gone, a route of each module that needs it answers 503, and
/// the API document lists that status for it: a client generated from the document
/// knows to retry.
async fn every_route_answers_503_as_documented(app: &TestApp) {
    let (_, document) = json(app.get("/openapi.json").await).await;
    let (user, course, stream) = (
        "9c1b2f8e-6d0a-4a2b-8a57-0b7b0e5d8f11",
        "2f6a4f2e-3b1c-4d5e-9f70-1a2b3c4d5e6f",
        "0191e4e4-0000-7000-8000-000000000000",
    );
    let http = &app.client;
    let session = json!({"sessionId": "7d1c1a6e-2b3c-4d5e-8f70-1a2b3c4d5e6f", "totalModulesStudied": 2, "averageScore": 80, "timeStudied": 300});
    let requests = [
        (
            "post",
            "/api/events",
            http.post(app.url("/api/events")).json(&event(7)),
        ),
        (
            "get",
            "/api/events",
            http.get(app.url("/api/events?component=outage")),
        ),
        (
            "post",
            "/courses/{courseId}",
            http.post(app.url(&format!("/courses/{course}")))
                .header("X-User-Id", user)
                .json(&session),
        ),
        (
            "get",
            "/courses/{courseId}",
            http.get(app.url(&format!("/courses/{course}")))
                .header("X-User-Id", user),
        ),
        (
            "post",
            "/stats/student/grade",
            http.post(app.url("/stats/student/grade"))
                .json(&json!({"student_id": "s1", "course_id": "c1", "grade": 5})),
        ),
        (
            "get",
            "/stats/student/{student_id}/average",
            http.get(app.url("/stats/student/s1/average")),
        ),
        (
            "post",
            "/api/v1/streams",
            http.post(app.url("/api/v1/streams"))
                .header("X-User-Id", user),
        ),
        (
            "delete",
            "/api/v1/streams/{id}",
            http.delete(app.url(&format!("/api/v1/streams/{stream}")))
                .header("X-User-Id", user),
        ),
        (
            "post",
            "/api/v1/streams/{id}/heartbeat",
            http.post(app.url(&format!("/api/v1/streams/{stream}/heartbeat")))
                .header("X-User-Id", user),
        ),
        (
            "get",
            "/users/id/{user_id}",
            http.get(app.url(&format!("/users/id/{user}"))),
        ),
    ];
    // At once: each waits out the pool's 2 s acquire timeout.
    let answers =
        futures_util::future::join_all(requests.map(|(method, path, request)| async move {
            (
                method,
                path,
                request.send().await.unwrap().status().as_u16(),
            )
        }))
        .await;
    for (method, path, status) in answers {
        assert_eq!(status, 503, "{method} {path} while the database is gone");
        let documented = &document["paths"][path][method]["responses"];
        assert!(
            documented.get(status.to_string()).is_some(),
            "{method} {path} answers {status}, which the document does not list: {documented}"
        );
    }
}

async fn a_database_gone_under_load_is_503_within_seconds_and_service_recovers() {
    // `owner` holds the test database; `app` reaches it through the proxy.
    let owner = TestApp::postgres_with(|_| {}).await;
    let real = owner.database_url.expose().to_owned();
    let upstream = host_and_port(&real).0;
    let mut proxy = Proxy::start(0, upstream.clone()).await;
    let via_proxy = real.replacen(&upstream, &format!("127.0.0.1:{}", proxy.port), 1);
    let cut_app = TestApp::postgres_url_with(via_proxy.parse().unwrap(), |_| {}).await;

    let post = |n: usize| {
        cut_app
            .client
            .post(cut_app.url("/api/events"))
            .json(&event(n))
            .send()
    };
    assert_eq!(post(0).await.unwrap().status(), 201);

    // Load while the database goes away.
    let cut = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        proxy.cut();
    };
    let (statuses, slowest) = under_load(&cut_app, 16, 40, cut).await;
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 503),
        "only 201 or 503: {statuses:?}"
    );
    assert!(statuses.contains(&503), "the outage was not noticed");
    eprintln!("slowest answer while the database was gone: {slowest} ms");
    assert!(
        slowest < 4000,
        "a request waited {slowest} ms for a database that was gone"
    );
    let ready = cut_app.get("/ready").await;
    assert_eq!(ready.status(), 503);
    every_route_answers_503_as_documented(&cut_app).await;

    // Back: the same server serves again, without a restart.
    proxy = proxy.restore().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if post(1).await.unwrap().status() == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cut_app.stop().await;
    drop(proxy);
    owner.stop().await;
}
crate::case!(
    a_database_gone_under_load_is_503_within_seconds_and_service_recovers,
    needs = [Postgres]
);

async fn connections_the_database_terminates_are_never_a_500() {
    let app = TestApp::postgres_with(|_| {}).await;
    let database = app
        .database_url
        .expose()
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let mut admin = PgConnection::connect(app.database_url.expose())
        .await
        .unwrap();
    let terminate = async {
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let sql = format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}' AND pid <> pg_backend_pid()");
            admin.execute(sql.as_str()).await.unwrap();
        }
    };
    let (statuses, _) = under_load(&app, 8, 60, terminate).await;
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 503),
        "only 201 or 503: {statuses:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.post_json("/api/events", &event(9)).await.status() != 201 {
        assert!(Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}
crate::case!(
    connections_the_database_terminates_are_never_a_500,
    needs = [Postgres]
);
