//! Tests of the `studyhall` binary as a process, one file per topic, and the helpers
//! that start servers and workers for them.

use std::process::Stdio;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

mod audit;
mod durability;
mod images;
mod instances;
mod redis_outage;
mod settings;
mod workers;

pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_studyhall");

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) address: String,
}

/// Starts `studyhall ARGS…` and reads its JSON log until a line with `message`; returns
/// the process and that line. The log keeps being drained so the child never blocks.
async fn spawn(args: &[&str], env: &[(&str, &str)], message: &str) -> (Child, Value) {
    let mut child = Command::new(BINARY)
        .args(args)
        .envs(env.iter().copied())
        .env("STUDYHALL_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start studyhall");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let entry = loop {
        let line = lines
            .next_line()
            .await
            .expect("read log")
            .unwrap_or_else(|| panic!("studyhall exited before `{message}`"));
        if let Ok(entry) = serde_json::from_str::<Value>(&line) {
            if entry["message"] == message {
                break entry;
            }
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, entry)
}

/// Starts `studyhall serve` on a free port and waits until it says where it listens.
async fn start(database_url: &str) -> Server {
    start_with(database_url, &[]).await
}

/// The admin token every server started here has, for the operator routes.
pub(crate) const ADMIN_TOKEN: &str = "process-admin-token-0123456789";

pub(crate) async fn start_with(database_url: &str, env: &[(&str, &str)]) -> Server {
    let mut env = env.to_vec();
    env.insert(0, ("STUDYHALL_ADMIN_TOKEN", ADMIN_TOKEN));
    // No load balancer to drain from unless a test asks for one.
    env.insert(0, ("STUDYHALL_SHUTDOWN_DRAIN", "0s"));
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        database_url,
    ];
    let (child, entry) = spawn(&args, &env, "studyhall is listening").await;
    let address = entry["address"].as_str().expect("address field");
    Server {
        child,
        address: format!("http://{address}"),
    }
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(BINARY);
    // Never the default port: a server the machine already runs may hold it.
    command
        .args(args)
        .env_remove("STUDYHALL_DATABASE_URL")
        .env("STUDYHALL_LISTEN", "127.0.0.1:0");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().await.unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A port nothing listens on now.
pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// Starts `studyhall worker` and waits until it says it runs.
pub(crate) async fn start_worker(database_url: &str, env: &[(&str, &str)]) -> Child {
    let args = [
        "worker",
        "--concurrency",
        "2",
        "--database-url",
        database_url,
    ];
    spawn(&args, env, "studyhall worker is running").await.0
}

/// Posts `n` grades (values n % 11) for `course` through `server`; returns the sum.
pub(crate) async fn post_grades(server: &Server, course: &str, n: usize) -> i64 {
    let student = "44444444-4444-4444-8444-444444444444";
    let mut sum = 0;
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let posts: Vec<_> = chunk
            .iter()
            .map(|i| {
                let url = format!("{}/stats/student/grade", server.address);
                let body = json!({"student_id": student, "course_id": course, "grade": i % 11});
                tokio::spawn(async move {
                    let post = client()
                        .post(url)
                        .header("x-graded-at", "2024-06-01T10:00:00Z");
                    post.json(&body).send().await.unwrap().status().as_u16()
                })
            })
            .collect();
        for post in posts {
            assert_eq!(post.await.unwrap(), 200);
        }
        sum += chunk.iter().map(|i| (i % 11) as i64).sum::<i64>();
    }
    sum
}

/// The course's yearly tally: (grade count, grade sum).
async fn course_tally(server: &Server, course: &str) -> (i64, f64) {
    let response = client()
        .get(format!(
            "{}/stats/course/{course}/average?group_by=year",
            server.address
        ))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body["averages"]
        .as_array()
        .unwrap()
        .iter()
        .fold((0, 0.0), |(count, sum), p| {
            let n = p["grade_count"].as_i64().unwrap();
            (
                count + n,
                sum + p["average_grade"].as_f64().unwrap() * n as f64,
            )
        })
}

async fn jobs_in(server: &Server, state: &str) -> Vec<Value> {
    let page: Value = admin_json(format!("{}/jobs?state={state}&limit=1000", server.address)).await;
    page["jobs"].as_array().unwrap().clone()
}

async fn wait_for_tally(server: &Server, course: &str, count: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while course_tally(server, course).await.0 < count {
        assert!(
            std::time::Instant::now() < deadline,
            "the workers did not finish"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// An event numbered `n`.
pub(crate) fn event(n: usize) -> Value {
    json!({"component": "durability", "data": {"n": n}, "email": "d@x.io", "environment": "test", "message": format!("event {n}")})
}

/// The JSON body of `GET url`.
pub(crate) async fn get_json(url: String) -> Value {
    json_of(client().get(url)).await
}

/// The JSON body of `GET url` on an operator route, with the admin token.
pub(crate) async fn admin_json(url: String) -> Value {
    json_of(client().get(url).bearer_auth(ADMIN_TOKEN)).await
}

pub(crate) async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}
