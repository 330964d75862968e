//! Settings and commands: invalid settings stop the program naming them; the
//! `migrate`, `token` and `openapi` commands.

use std::process::Stdio;

use serde_json::Value;
use tokio::process::Command;

use super::*;

async fn an_invalid_setting_stops_the_program_naming_it() {
    let (ok, _, stderr) = run(&["serve"], &[("STUDYHALL_LISTEN", "not-an-address")]).await;
    assert!(!ok);
    assert!(stderr.contains("--listen"), "{stderr}");
    let (ok, _, stderr) = run(&["serve"], &[("STUDYHALL_DATABASE_URL", "mysql://db")]).await;
    assert!(!ok);
    assert!(stderr.contains("mysql"), "{stderr}");
    let (ok, _, stderr) = run(&["serve"], &[("STUDYHALL_LISTN", "127.0.0.1:1")]).await;
    assert!(!ok);
    assert!(stderr.contains("STUDYHALL_LISTN"), "{stderr}");
    assert!(
        stderr.contains("did you mean STUDYHALL_LISTEN?"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(
        &["serve"],
        &[("STUDYHALL_CORS_ORIGINS", "https://app.example.com/path")],
    )
    .await;
    assert!(!ok);
    assert!(stderr.contains("not an origin"), "{stderr}");
    let (ok, _, stderr) = run(&["serve", "--modules", "events,nope"], &[]).await;
    assert!(!ok);
    assert!(stderr.contains("nope"), "{stderr}");
}
crate::case!(an_invalid_setting_stops_the_program_naming_it);

async fn a_database_that_cannot_be_opened_is_named_with_the_reason_at_once() {
    let started = std::time::Instant::now();
    let (ok, _, stderr) = run(
        &[
            "serve",
            "--database-url",
            "postgres://postgres@127.0.0.1:1/none",
        ],
        &[],
    )
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("127.0.0.1:1") && stderr.contains("Connection refused"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "it waited {:?}",
        started.elapsed()
    );
    assert_eq!(
        stderr.matches("Connection refused").count(),
        1,
        "a cause said twice: {stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("x.db");
    let url = format!("sqlite://{}", missing.display());
    let (ok, _, stderr) = run(&["serve", "--database-url", &url], &[]).await;
    assert!(!ok);
    assert!(
        stderr.contains(&missing.display().to_string()),
        "the absolute path: {stderr}"
    );
    assert!(stderr.contains("No such file or directory"), "{stderr}");
}
crate::case!(a_database_that_cannot_be_opened_is_named_with_the_reason_at_once);

async fn studyhall_token_without_a_database_there_refuses_to_invent_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("absent.db").display());
    let (ok, stdout, stderr) = run(&["token", "--sub", "alice", "--database-url", &url], &[]).await;
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("there is no studyhall database at"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("absent.db.jwt-secret").exists(),
        "a secret was made up"
    );
}
crate::case!(studyhall_token_without_a_database_there_refuses_to_invent_a_secret);

async fn openapi_into_a_reader_that_stops_early_does_not_panic() {
    let mut child = Command::new(BINARY)
        .arg("openapi")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    tokio::io::AsyncReadExt::read_exact(&mut stdout, &mut first)
        .await
        .unwrap();
    drop(stdout);
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.status.success(), "{stderr}");
}
crate::case!(openapi_into_a_reader_that_stops_early_does_not_panic);

async fn migrate_creates_the_schema_and_openapi_prints_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let (ok, _, stderr) = run(&["migrate", "--database-url", &url], &[]).await;
    assert!(ok, "{stderr}");
    assert!(dir.path().join("m.db").exists());
    let (ok, stdout, _) = run(&["openapi"], &[]).await;
    assert!(ok);
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert!(doc["paths"]["/api/events"].is_object());
}
crate::case!(migrate_creates_the_schema_and_openapi_prints_the_document);
