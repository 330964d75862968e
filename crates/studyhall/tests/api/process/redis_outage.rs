//! Redis going away and coming back, and Redis over TLS.

use std::process::Stdio;

use tokio::process::{Child, Command};

use super::*;
use crate::helpers::fixture_path;

/// A private Redis on a free port, so the test can stop and restart it.
struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    async fn start(port: u16) -> PrivateRedis {
        PrivateRedis::start_with(port, &["--port", &port.to_string()]).await
    }

    /// TLS only (as ElastiCache with in-transit encryption), with a password.
    async fn start_tls(port: u16, password: &str) -> PrivateRedis {
        let args = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &fixture_path("tls-server.pem"),
            "--tls-key-file",
            &fixture_path("tls-server-key.pem"),
            "--tls-ca-cert-file",
            &fixture_path("tls-ca.pem"),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            password,
        ];
        PrivateRedis::start_with(port, &args).await
    }

    async fn start_with(port: u16, args: &[&str]) -> PrivateRedis {
        let child = Command::new("redis-server")
            .args(args)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server");
        let redis = PrivateRedis { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        redis
    }

    async fn stop(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

async fn while_redis_is_down_starts_fail_with_503_and_service_recovers_without_restart() {
    let port = free_port();
    let redis = PrivateRedis::start(port).await;
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("STUDYHALL_STREAMS_BACKEND", "redis"),
        ("STUDYHALL_REDIS_URL", url.as_str()),
    ];
    let server = start_with(
        &format!("sqlite://{}", dir.path().join("r.db").display()),
        &env,
    )
    .await;
    let start_stream = || async {
        client()
            .post(format!("{}/api/v1/streams", server.address))
            .header("X-User-Id", "outage")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let ready = || async {
        client()
            .get(format!("{}/ready", server.address))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(start_stream().await, 201);
    assert_eq!(ready().await, 200);

    redis.stop().await;
    assert_eq!(
        start_stream().await,
        503,
        "a start must never be allowed blind"
    );
    assert_eq!(ready().await, 503);

    let _redis = PrivateRedis::start(port).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if start_stream().await == 201 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no recovery after Redis came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(ready().await, 200);
}
crate::case!(
    while_redis_is_down_starts_fail_with_503_and_service_recovers_without_restart,
    needs = [Redis]
);

/// `rediss://` verifies the server against the system's roots (`SSL_CERT_FILE` here), and
/// sends the password, as with ElastiCache's in-transit encryption and auth token.
async fn redis_over_tls_with_a_password_verifies_the_server_certificate() {
    let port = free_port();
    let _redis = PrivateRedis::start_tls(port, "s3cret-token").await;
    let url = format!("rediss://:s3cret-token@localhost:{port}");
    let trusted = fixture_path("tls-ca.pem");
    let untrusted = fixture_path("rsa-1.pub.pem");
    let dir = tempfile::tempdir().unwrap();
    for (roots, expected) in [(trusted.as_str(), 201), (untrusted.as_str(), 503)] {
        let env = [
            ("STUDYHALL_STREAMS_BACKEND", "redis"),
            ("STUDYHALL_REDIS_URL", url.as_str()),
            ("SSL_CERT_FILE", roots),
        ];
        let database = format!(
            "sqlite://{}",
            dir.path().join(format!("{expected}.db")).display()
        );
        let server = start_with(&database, &env).await;
        let started = client()
            .post(format!("{}/api/v1/streams", server.address))
            .header("X-User-Id", "tls")
            .send()
            .await
            .unwrap();
        assert_eq!(started.status().as_u16(), expected, "roots {roots}");
        let ready = client()
            .get(format!("{}/ready", server.address))
            .send()
            .await
            .unwrap();
        let ready_status = if expected == 201 { 200 } else { 503 };
        assert_eq!(ready.status().as_u16(), ready_status, "roots {roots}");
    }
}
crate::case!(
    redis_over_tls_with_a_password_verifies_the_server_certificate,
    needs = [Redis]
);
