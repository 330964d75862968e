//! Profile images kept in S3 (`STUDYHALL_S3_BUCKET`), against a stand-in server that
//! stores what it is sent and records what it is asked. It checks the flow the PageNow
//! client follows, not the signatures (the published AWS example checks those:
//! `social::s3`'s unit tests).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{json, Value};

use super::{client, start_with};

/// A stored object: its type and bytes.
type Object = (String, Vec<u8>);

/// The stand-in bucket: objects by path, and every request as `METHOD path?query`
/// with the headers that matter.
#[derive(Clone, Default)]
struct Bucket {
    objects: Arc<Mutex<HashMap<String, Object>>>,
    requests: Arc<Mutex<Vec<(String, String, HeaderMap)>>>,
}

async fn object(
    State(bucket): State<Bucket>,
    method: Method,
    uri: Uri,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let query = uri.query().unwrap_or_default().to_owned();
    bucket.requests.lock().unwrap().push((
        method.to_string(),
        format!("{path}?{query}"),
        headers.clone(),
    ));
    let mut objects = bucket.objects.lock().unwrap();
    let mut out = HeaderMap::new();
    match method {
        Method::PUT => {
            let content_type = headers
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            objects.insert(path, (content_type, body.to_vec()));
            (StatusCode::OK, out, Vec::new())
        }
        Method::GET => match objects.get(&path) {
            Some((content_type, bytes)) => {
                out.insert("content-type", content_type.parse().unwrap());
                (StatusCode::OK, out, bytes.clone())
            }
            None => (StatusCode::NOT_FOUND, out, Vec::new()),
        },
        Method::DELETE => {
            objects.remove(&path);
            (StatusCode::NO_CONTENT, out, Vec::new())
        }
        _ => (StatusCode::METHOD_NOT_ALLOWED, out, Vec::new()),
    }
}

async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

async fn profile_images_go_to_the_bucket_and_replaced_ones_are_deleted_from_it() {
    let bucket = Bucket::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::any(object))
        .with_state(bucket.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("s3.db").display());
    let secret = "process-images-secret-0123456789";
    let server = start_with(
        &database,
        &[
            ("STUDYHALL_JWT_SECRET", secret),
            ("STUDYHALL_S3_BUCKET", "pictures"),
            ("STUDYHALL_S3_REGION", "eu-west-1"),
            ("STUDYHALL_S3_ENDPOINT", &endpoint),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            (
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            ),
        ],
    )
    .await;
    let token = studyhall::auth::mint_hs256(
        secret,
        "sub",
        "ann",
        Some("ann@example.com"),
        Duration::from_secs(600),
    )
    .unwrap();
    let http = client();
    let call = |method: Method, path: &str| {
        http.request(method, format!("{}{path}", server.address))
            .bearer_auth(&token)
    };
    let created = call(Method::POST, "/users/me")
        .json(&json!({"first_name": "Ann", "last_name": "A"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);

    let mut keys = Vec::new();
    for (ext, content_type, bytes) in [
        ("png", "image/png", b"\x89PNG\r\n\x1a\nfirst".to_vec()),
        ("jpeg", "image/jpeg", b"\xff\xd8\xffsecond".to_vec()),
    ] {
        let url: Value = json_of(call(
            Method::GET,
            &format!("/users/me/profile-image-upload-url?image_ext={ext}"),
        ))
        .await;
        let url = url.as_str().expect("an upload URL").to_owned();
        assert!(
            url.starts_with(&format!("{endpoint}/pictures/profile-images/")),
            "{url}"
        );
        assert!(
            url.contains("X-Amz-SignedHeaders=content-type%3Bhost%3Bx-amz-acl"),
            "{url}"
        );
        // The client's own PUT: no token, its file's type and a private ACL.
        let put = http
            .put(&url)
            .header("content-type", content_type)
            .header("x-amz-acl", "private")
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 200);
        let me: Value = json_of(call(Method::GET, "/users/me")).await;
        assert_eq!(me["profile_image_extension"], ext);
        let shown: Value = json_of(call(Method::GET, "/users/id/ann/profile-image-url")).await;
        let shown = shown.as_str().unwrap();
        assert!(
            shown.contains(&format!(
                "response-content-type={}",
                content_type.replace('/', "%2F")
            )),
            "{shown}"
        );
        let image = http.get(shown).send().await.unwrap();
        assert_eq!(image.bytes().await.unwrap().to_vec(), bytes);
        keys.push(
            url.split('?')
                .next()
                .unwrap()
                .trim_start_matches(&format!("{endpoint}/"))
                .to_owned(),
        );
    }
    let deleted = call(Method::DELETE, "/users/me/profile-image")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let me: Value = json_of(call(Method::GET, "/users/me")).await;
    assert!(me["profile_image_extension"].is_null());
    // The first image was deleted when the second replaced it, the second when it was
    // removed; each deletion signed.
    let deletions: Vec<String> = bucket
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|(method, _, _)| method == "DELETE")
        .map(|(_, path, _)| path.clone())
        .collect();
    assert_eq!(deletions.len(), 2, "{deletions:?}");
    for (deletion, key) in deletions.iter().zip(&keys) {
        assert!(
            deletion.starts_with(&format!("{key}?")) && deletion.contains("X-Amz-Signature="),
            "{deletion} for {key}"
        );
    }
    assert!(bucket.objects.lock().unwrap().is_empty());
}
crate::case!(profile_images_go_to_the_bucket_and_replaced_ones_are_deleted_from_it);
