use std::collections::HashSet;
use std::time::Duration;

use reqwest::RequestBuilder;
use serde_json::{json, Value};
use studyhall::config::ServeSettings;

use crate::helpers::{json, TestApp};
use crate::on_every_backend_with;

const SECRET: &str = "social-test-secret-0123456789";

fn with_secret(settings: &mut ServeSettings) {
    settings.auth.jwt_secret = Some(SECRET.parse().unwrap());
}

/// A user of the test: an id of its own and a token for it.
struct User {
    id: String,
    token: String,
}

fn user(name: &str) -> User {
    let id = format!("{name}-{}", uuid::Uuid::new_v4().simple());
    let email = format!("{id}@Example.com");
    let token =
        studyhall::auth::mint_hs256(SECRET, "sub", &id, Some(&email), Duration::from_secs(600))
            .unwrap();
    User { id, token }
}

fn as_user(request: RequestBuilder, user: &User) -> RequestBuilder {
    request.bearer_auth(&user.token)
}

async fn get(app: &TestApp, who: &User, path: &str) -> (u16, Value) {
    json(
        as_user(app.client.get(app.url(path)), who)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn post(app: &TestApp, who: &User, path: &str, body: Value) -> (u16, Value) {
    json(
        as_user(app.client.post(app.url(path)), who)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn put(app: &TestApp, who: &User, path: &str, body: Value) -> (u16, Value) {
    json(
        as_user(app.client.put(app.url(path)), who)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn signed_up(app: &TestApp, name: &str, first: &str, last: &str) -> User {
    let who = user(name);
    let (status, profile) = post(
        app,
        &who,
        "/users/me",
        json!({"first_name": first, "last_name": last}),
    )
    .await;
    assert_eq!(status, 200, "{profile}");
    who
}

async fn befriend(app: &TestApp, a: &User, b: &User) {
    assert_eq!(
        post(app, a, "/friendship/requests", json!({"user_id2": b.id}))
            .await
            .0,
        200
    );
    assert_eq!(
        post(app, b, "/friendship/accept", json!({"user_id1": a.id}))
            .await
            .0,
        200
    );
}

/// A small PNG and a small JPEG: their signatures, then bytes of no meaning.
fn png() -> Vec<u8> {
    [b"\x89PNG\r\n\x1a\n".as_slice(), &[7u8; 300]].concat()
}

fn jpeg() -> Vec<u8> {
    [b"\xff\xd8\xff\xe0".as_slice(), &[9u8; 300]].concat()
}

/// An upload URL for `who`'s image of type `ext`.
async fn upload_url(app: &TestApp, who: &User, ext: &str) -> String {
    let (status, url) = get(
        app,
        who,
        &format!("/users/me/profile-image-upload-url?image_ext={ext}"),
    )
    .await;
    assert_eq!(status, 200, "{url}");
    let url = url.as_str().expect("a URL").to_owned();
    assert!(
        url.starts_with(&app.address),
        "{url} is not on {}",
        app.address
    );
    url
}

/// PUTs `bytes` the way the PageNow client does (no token: the URL is the permission).
async fn put_image(app: &TestApp, url: &str, bytes: Vec<u8>, content_type: &str) -> u16 {
    let response = app
        .client
        .put(url)
        .header("x-amz-acl", "private")
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

fn stored_files(app: &TestApp) -> Vec<String> {
    std::fs::read_dir(app.images.path()).map_or_else(
        |_| Vec::new(),
        |entries| {
            entries
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        },
    )
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap().to_owned())
        .collect()
}

on_every_backend_with! {
    with_secret;

    async fn a_token_and_a_header_naming_someone_else_are_refused_as_on_every_route(app) {
        let alice = signed_up(&app, "alice", "Alice", "A").await;
        let bob = signed_up(&app, "bob", "Bob", "B").await;
        let mismatch = as_user(app.client.get(app.url("/users/me")), &alice).header("X-User-Id", &bob.id);
        assert_eq!(mismatch.send().await.unwrap().status(), 403);
        let write = as_user(app.client.post(app.url("/friendship/requests")), &alice)
            .header("X-User-Id", &bob.id)
            .json(&json!({"user_id2": bob.id}));
        assert_eq!(write.send().await.unwrap().status(), 403);
        let agreeing = as_user(app.client.get(app.url("/users/me")), &alice).header("X-User-Id", &alice.id);
        assert_eq!(agreeing.send().await.unwrap().status(), 200);
        let (status, received) = get(&app, &bob, "/friendship/requests").await;
        assert_eq!((status, received), (200, json!([])), "the refused request was not sent");
    }

    async fn every_route_but_the_public_ones_needs_a_token(app) {
        let (status, pong) = json(app.get("/ping").await).await;
        assert_eq!((status, pong), (200, json!("pong")));
        for path in ["/users/me", "/friendship/requests", "/friendship/all", "/users/search/name/a", "/domains/share/warnings",
                     "/notifications/share", "/notifications/share/sent"] {
            let response = app.get(path).await;
            assert_eq!(response.status(), 401, "{path}");
            let (_, problem) = json(response).await;
            assert_eq!(problem["detail"], "Not authenticated");
        }
        // Gateway headers never speak for the caller here.
        let header_only = app.client.get(app.url("/users/me")).header("X-User-Id", "someone").send().await.unwrap();
        assert_eq!(header_only.status(), 401);
    }

    async fn a_page_shared_reaches_every_friend_then_and_is_read_by_each_alone(app) {
        let ann = signed_up(&app, "ann", "Ann", "Sharer").await;
        let (bea, cal, dan) = (
            signed_up(&app, "bea", "Bea", "B").await,
            signed_up(&app, "cal", "Cal", "C").await,
            signed_up(&app, "dan", "Dan", "D").await,
        );
        befriend(&app, &ann, &bea).await;
        befriend(&app, &cal, &ann).await;
        // Dan only asked: a pending request is not a friendship.
        assert_eq!(post(&app, &dan, "/friendship/requests", json!({"user_id2": ann.id})).await.0, 200);
        let (status, first) = post(&app, &ann, "/notifications/share", json!({"url": "https://example.com/a?q=1", "title": "  A page  "})).await;
        assert_eq!(status, 200, "{first}");
        let first = first.as_str().expect("the share's id").to_owned();
        // A friend made later does not receive the earlier share.
        let eve = signed_up(&app, "eve", "Eve", "E").await;
        befriend(&app, &ann, &eve).await;
        app.clock.advance(Duration::from_secs(60));
        let (_, second) = post(&app, &ann, "/notifications/share", json!({"url": "https://example.com/b", "title": ""})).await;
        let second = second.as_str().unwrap().to_owned();
        let (status, got) = get(&app, &bea, "/notifications/share").await;
        assert_eq!(status, 200, "{got}");
        let got = got.as_array().unwrap();
        assert_eq!(got.iter().map(|n| n["event_id"].as_str().unwrap()).collect::<Vec<_>>(), [second.as_str(), first.as_str()], "newest first");
        assert_eq!((got[1]["url"].as_str(), got[1]["title"].as_str()), (Some("https://example.com/a?q=1"), Some("  A page  ")), "stored as sent");
        assert_eq!((got[1]["user_id"].as_str(), got[1]["first_name"].as_str(), got[1]["last_name"].as_str()), (Some(ann.id.as_str()), Some("Ann"), Some("Sharer")));
        assert!(got[1]["seen_at"].is_null() && got[1]["sent_at"].as_str().unwrap().ends_with('Z'), "{got:?}");
        assert_eq!(get(&app, &dan, "/notifications/share").await.1, json!([]), "not a friend");
        assert_eq!(get(&app, &ann, "/notifications/share").await.1, json!([]), "not to oneself");
        assert_eq!(get(&app, &eve, "/notifications/share").await.1.as_array().unwrap().len(), 1);
        let (_, sent) = get(&app, &ann, "/notifications/share/sent").await;
        assert_eq!(sent.as_array().unwrap().iter().map(|n| n["not_seen_count"].as_i64().unwrap()).collect::<Vec<_>>(), [3, 2], "{sent}");
        assert!(sent[0]["sent_to"].is_null());
        // Reading marks the reader's own rows only; someone else's ids change nothing.
        assert_eq!(post(&app, &dan, "/notifications/share/read", json!([{"event_id": first}])).await, (200, json!({"success": true})));
        assert_eq!(post(&app, &bea, "/notifications/share/read", json!([{"event_id": first}])).await, (200, json!({"success": true})));
        let (_, read) = get(&app, &bea, "/notifications/share?is_read=true").await;
        assert_eq!(read.as_array().unwrap().len(), 1);
        assert_eq!(read[0]["event_id"], first.as_str());
        let seen_at = read[0]["seen_at"].as_str().expect("seen").to_owned();
        let (_, unread) = get(&app, &bea, "/notifications/share?is_read=false").await;
        assert_eq!(unread.as_array().unwrap().iter().map(|n| n["event_id"].as_str().unwrap()).collect::<Vec<_>>(), [second.as_str()]);
        // Read again later: the first time it was read stays.
        app.clock.advance(Duration::from_secs(60));
        post(&app, &bea, "/notifications/share/read", json!([{"event_id": first}, {"event_id": second}])).await;
        let (_, read) = get(&app, &bea, "/notifications/share?is_read=true").await;
        assert_eq!(read[1]["seen_at"].as_str(), Some(seen_at.as_str()), "{read}");
        let (_, sent) = get(&app, &ann, "/notifications/share/sent?limit=1&offset=1").await;
        assert_eq!((sent[0]["event_id"].as_str(), sent[0]["not_seen_count"].as_i64()), (Some(first.as_str()), Some(1)), "{sent}");
        let (_, cal_unread) = get(&app, &cal, "/notifications/share?is_read=false").await;
        assert_eq!(cal_unread.as_array().unwrap().len(), 2, "another reader's reading is not cal's");
    }

    async fn a_personal_share_goes_to_one_friend_and_never_to_a_stranger(app) {
        let (ann, bea, cal) = (
            signed_up(&app, "ann", "Ann", "A").await,
            signed_up(&app, "bea", "Bea", "Friend").await,
            signed_up(&app, "cal", "Cal", "C").await,
        );
        befriend(&app, &ann, &bea).await;
        befriend(&app, &ann, &cal).await;
        let page = |to: &str| json!({"url": "https://example.com/p", "title": "P", "sent_to": to});
        let (status, id) = post(&app, &ann, "/notifications/share/personal", page(&bea.id)).await;
        assert_eq!(status, 200, "{id}");
        assert_eq!(get(&app, &bea, "/notifications/share").await.1[0]["event_id"], id);
        assert_eq!(get(&app, &cal, "/notifications/share").await.1, json!([]), "only the one addressed");
        let (_, sent) = get(&app, &ann, "/notifications/share/sent").await;
        assert_eq!((sent[0]["sent_to"].as_str(), sent[0]["first_name"].as_str(), sent[0]["not_seen_count"].as_i64()),
                   (Some(bea.id.as_str()), Some("Bea"), Some(1)));
        // A stranger, an unknown user, a missing recipient: refused, nothing stored.
        let stranger = signed_up(&app, "dan", "Dan", "D").await;
        let (status, problem) = post(&app, &ann, "/notifications/share/personal", page(&stranger.id)).await;
        assert_eq!((status, problem["detail"].as_str()), (403, Some("You can share a page only with a friend")));
        assert_eq!(post(&app, &ann, "/notifications/share/personal", page("nobody")).await.0, 404);
        assert_eq!(post(&app, &ann, "/notifications/share/personal", json!({"url": "u", "title": "t"})).await.0, 422);
        assert_eq!(get(&app, &stranger, "/notifications/share").await.1, json!([]));
        assert_eq!(get(&app, &ann, "/notifications/share/sent").await.1.as_array().unwrap().len(), 1);
        // Bad bodies and queries: a 4xx naming the problem, nothing stored.
        for body in [json!({"url": "", "title": "t"}), json!({"url": "u\u{0}", "title": "t"}), json!({"url": "u", "title": "x".repeat(1001)}),
                     json!({"title": "t"}), json!(["u"]), json!({"url": 5, "title": "t"})] {
            let (status, problem) = post(&app, &ann, "/notifications/share", body.clone()).await;
            assert!(status == 422 || status == 400, "{body}: {status} {problem}");
            assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()), "{problem}");
        }
        assert_eq!(post(&app, &bea, "/notifications/share/read", json!([{"event_id": "not-a-uuid"}])).await.0, 422);
        assert_eq!(post(&app, &bea, "/notifications/share/read", json!({"event_id": id})).await.0, 400, "not a list");
        assert_eq!(get(&app, &bea, "/notifications/share?is_read=true").await.1, json!([]), "a refused read marked nothing");
        assert_eq!(get(&app, &ann, "/notifications/share/sent?limit=-1").await.0, 400);
        assert_eq!(get(&app, &ann, "/notifications/share/sent").await.1.as_array().unwrap().len(), 1);
        // Without a profile there is no one to share from.
        let (status, _) = post(&app, &user("ghost"), "/notifications/share", json!({"url": "u", "title": "t"})).await;
        assert_eq!(status, 404);
    }

    async fn a_profile_image_is_uploaded_once_served_only_as_its_type_replaced_and_deleted(app) {
        let ann = signed_up(&app, "ann", "Ann", "A").await;
        let bea = signed_up(&app, "bea", "Bea", "B").await;
        let url = upload_url(&app, &ann, "png").await;
        assert_eq!(put_image(&app, &url, png(), "image/png").await, 200);
        assert_eq!(put_image(&app, &url, png(), "image/png").await, 403, "an upload URL is used once");
        let (_, me) = get(&app, &ann, "/users/me").await;
        assert_eq!(me["profile_image_extension"], "png");
        assert!(me["profile_image_uploaded_at"].as_str().is_some_and(|at| at.ends_with('Z')), "{me}");
        let (status, shown) = get(&app, &bea, &format!("/users/id/{}/profile-image-url?image_ext=png", ann.id)).await;
        assert_eq!(status, 200, "{shown}");
        let shown = shown.as_str().unwrap().to_owned();
        let image = app.client.get(&shown).send().await.unwrap();
        assert_eq!(image.status(), 200);
        assert_eq!(image.headers()["content-type"], "image/png");
        assert_eq!(image.headers()["x-content-type-options"], "nosniff");
        assert!(image.headers()["content-security-policy"].to_str().unwrap().contains("sandbox"));
        assert_eq!(image.bytes().await.unwrap().to_vec(), png());
        // The batch the chat client asks for: {user_id: url}, null without an image.
        let (status, urls) = get(&app, &bea, &format!("/users/ids/{},{},nobody/profile-image-url?image_ext_arr=png,null", ann.id, bea.id)).await;
        assert_eq!(status, 200, "{urls}");
        assert_eq!(urls, json!({ann.id.clone(): shown.clone(), bea.id.clone(): null}));
        assert_eq!(get(&app, &ann, &format!("/users/id/{}/profile-image-url?image_ext=png", bea.id)).await.0, 404, "no image");
        // A new image replaces the old: the old address dies, one file is kept.
        let url = upload_url(&app, &ann, "jpg").await;
        assert_eq!(put_image(&app, &url, jpeg(), "image/jpeg").await, 200);
        assert_eq!(app.client.get(&shown).send().await.unwrap().status(), 404, "the replaced image is gone");
        let (_, replaced) = get(&app, &bea, &format!("/users/id/{}/profile-image-url", ann.id)).await;
        let replaced = app.client.get(replaced.as_str().unwrap()).send().await.unwrap();
        assert_eq!(replaced.headers()["content-type"], "image/jpeg");
        assert_eq!(replaced.bytes().await.unwrap().to_vec(), jpeg());
        assert_eq!(stored_files(&app).len(), 1, "{:?}", stored_files(&app));
        assert_eq!(get(&app, &ann, "/users/me").await.1["profile_image_extension"], "jpg");
        // Deleted: no image, no file, no address.
        let deleted = as_user(app.client.delete(app.url("/users/me/profile-image")), &ann).send().await.unwrap();
        assert_eq!(json(deleted).await, (200, json!({"success": true})));
        assert!(get(&app, &ann, "/users/me").await.1["profile_image_extension"].is_null());
        assert_eq!(get(&app, &bea, &format!("/users/id/{}/profile-image-url", ann.id)).await.0, 404);
        assert_eq!(stored_files(&app), Vec::<String>::new());
    }

    async fn an_upload_that_is_not_the_image_it_claims_or_comes_too_late_or_twice_stores_nothing(app) {
        let ann = signed_up(&app, "ann", "Ann", "A").await;
        for ext in ["svg", "html", "gif%00", ""] {
            assert_eq!(get(&app, &ann, &format!("/users/me/profile-image-upload-url?image_ext={ext}")).await.0, if ext.contains('%') { 400 } else { 422 }, "{ext}");
        }
        assert_eq!(get(&app, &ann, "/users/me/profile-image-upload-url").await.0, 422);
        assert_eq!(app.get("/users/me/profile-image-upload-url?image_ext=png").await.status(), 401);
        assert_eq!(get(&app, &user("ghost"), "/users/me/profile-image-upload-url?image_ext=png").await.0, 404);
        let url = upload_url(&app, &ann, "png").await;
        // HTML (or a JPEG) sent as a PNG, or too large: refused, and the URL still works.
        assert_eq!(put_image(&app, &url, b"<html><script>alert(1)</script></html>".to_vec(), "image/png").await, 415);
        assert_eq!(put_image(&app, &url, jpeg(), "image/png").await, 415);
        assert_eq!(put_image(&app, &url, [png(), vec![0; 2 * 1024 * 1024]].concat(), "image/png").await, 413);
        assert!(get(&app, &ann, "/users/me").await.1["profile_image_extension"].is_null());
        assert_eq!(stored_files(&app), Vec::<String>::new());
        assert_eq!(put_image(&app, &format!("{}/users/images/upload/made-up", app.address), png(), "image/png").await, 403);
        // Two uploads through one URL at once: one is stored.
        let (first, second) = tokio::join!(put_image(&app, &url, png(), "image/png"), put_image(&app, &url, png(), "image/png"));
        let mut statuses = [first, second];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 403]);
        assert_eq!(stored_files(&app).len(), 1, "{:?}", stored_files(&app));
        // An upload URL expires after ten minutes.
        let late = upload_url(&app, &ann, "png").await;
        app.clock.advance(Duration::from_secs(601));
        assert_eq!(put_image(&app, &late, png(), "image/png").await, 403);
        assert_eq!(stored_files(&app).len(), 1);
        // Only names the service made are served.
        for path in ["/users/images/..%2F..%2Fetc%2Fpasswd", "/users/images/x.html", "/users/images/0123456789abcdef0123456789abcdef.svg",
                     "/users/images/0123456789ABCDEF0123456789ABCDEF.png", "/users/images/0123456789abcdef0123456789abcdef.png"] {
            assert_eq!(app.get(path).await.status(), 404, "{path}");
        }
    }

    async fn the_share_warnings_name_the_sites_that_reveal_personal_activity(app) {
        let (status, warnings) = get(&app, &user("ada"), "/domains/share/warnings").await;
        assert_eq!(status, 200, "{warnings}");
        let sites: Vec<&String> = warnings.as_object().unwrap().keys().collect();
        assert_eq!(sites, ["google.com", "messenger.com", "notion.so"]);
        assert!(warnings["google.com"].as_str().unwrap().contains("Gmail"), "{warnings}");
    }

    async fn a_profile_is_created_once_and_read_back_privately(app) {
        let ada = user("ada");
        assert_eq!(get(&app, &ada, "/users/me").await, (404, get(&app, &ada, "/users/me").await.1));
        let (status, created) = post(&app, &ada, "/users/me", json!({"first_name": " Ada ", "last_name": "Lovelace"})).await;
        assert_eq!(status, 200, "{created}");
        assert_eq!(created["first_name"], "Ada");
        assert_eq!(created["email"], format!("{}@Example.com", ada.id));
        // A new profile shares nothing but the original's default allow list, and its
        // text fields are empty strings, as the original created it.
        assert_eq!(created["share_mode"], "default_none");
        let allowed = created["domain_allow_array"].as_array().unwrap();
        assert_eq!(allowed.len(), 66, "{created}");
        assert!(allowed.contains(&json!("wikipedia.org")) && allowed.contains(&json!("kdnuggets.com")));
        assert_eq!(
            created["domain_deny_array"],
            json!(["facebook.com", "instagram.com", "amazon.com", "twitter.com", "messenger.com", "gmail.com", "mail.google.com"])
        );
        for field in ["description", "gender", "school", "work", "location"] {
            assert_eq!(created[field], "", "{field} of a new profile");
        }
        assert!(created["dob"].is_null());
        assert_eq!(created["friendship_state"], 0);
        let (status, problem) = post(&app, &ada, "/users/me", json!({"first_name": "A", "last_name": "B"})).await;
        assert_eq!((status, problem["detail"].as_str()), (400, Some("User already exists")));
        assert_eq!(get(&app, &ada, "/users/me").await, (200, created));
    }

    async fn updates_change_only_the_fields_sent_and_bad_ones_change_nothing(app) {
        let ada = signed_up(&app, "ada", "Ada", "Lovelace").await;
        let (status, updated) = put(&app, &ada, "/users/me", json!({"school": "Cambridge", "school_public": true, "dob": "1815-12-10", "share_mode": "default_none"})).await;
        assert_eq!(status, 200, "{updated}");
        assert_eq!((updated["school"].as_str(), updated["dob"].as_str(), updated["first_name"].as_str()), (Some("Cambridge"), Some("1815-12-10"), Some("Ada")));
        for bad in [json!({"first_name": ""}), json!({"last_name": "x".repeat(101)}), json!({"share_mode": "everyone"}),
                    json!({"dob": "1815-13-40"}), json!({"description": "d".repeat(1001)}), json!({"first_name": 5})] {
            let (status, problem) = put(&app, &ada, "/users/me", bad.clone()).await;
            assert!(status == 400 || status == 422, "{bad} → {status} {problem}");
            assert!(problem["detail"].is_string(), "{problem}");
        }
        assert_eq!(get(&app, &ada, "/users/me").await.1, updated, "a rejected update changed something");
        let (status, domains) = put(&app, &ada, "/users/me/domain_array/deny", json!(["Ads.Example.com", "tracker.io"])).await;
        assert_eq!(status, 200);
        assert_eq!(domains["domain_deny_array"], json!(["ads.example.com", "tracker.io"]));
        assert_eq!(put(&app, &ada, "/users/me/domain_array/maybe", json!([])).await.0, 400);
        assert_eq!(put(&app, &ada, "/users/me/domain_array/allow", json!(["not a domain"])).await.0, 422);
    }

    async fn public_profiles_show_only_what_the_user_made_public(app) {
        let ada = signed_up(&app, "ada", "Ada", "Lovelace").await;
        let bob = signed_up(&app, "bob", "Bob", "Babbage").await;
        put(&app, &ada, "/users/me", json!({"school": "Cambridge", "school_public": true, "work": "Analyst", "work_public": false, "location": "London"})).await;
        let (status, public) = get(&app, &bob, &format!("/users/id/{}", ada.id)).await;
        assert_eq!(status, 200);
        assert_eq!(public["school"], "Cambridge");
        assert!(public["work"].is_null() && public["location"].is_null());
        for private in ["email", "domain_allow_array", "share_mode", "work_public"] {
            assert!(public.get(private).is_none(), "{private} leaked: {public}");
        }
        let (status, anonymous) = json(app.get(&format!("/users/id/{}", ada.id)).await).await;
        assert_eq!((status, anonymous["school"].as_str()), (200, Some("Cambridge")));
        assert_eq!(get(&app, &bob, "/users/id/nobody-at-all").await.0, 404);
        let (status, many) = get(&app, &bob, &format!("/users/ids/{},nobody,{}", ada.id, bob.id)).await;
        assert_eq!(status, 200);
        assert_eq!(ids(&many), [ada.id.clone(), bob.id.clone()]);
        let too_many = vec!["x"; 101].join(",");
        assert_eq!(get(&app, &bob, &format!("/users/ids/{too_many}")).await.0, 400);
    }

    async fn a_request_accepted_makes_friends_and_unfriending_ends_it(app) {
        let (ada, bob, cy) = (signed_up(&app, "ada", "Ada", "L").await, signed_up(&app, "bob", "Bob", "B").await, signed_up(&app, "cy", "Cy", "C").await);
        assert_eq!(post(&app, &ada, "/friendship/requests", json!({"user_id2": bob.id})).await, (200, json!({"success": true})));
        let (_, row) = get(&app, &bob, &format!("/friendship/check/{}", ada.id)).await;
        assert_eq!((row["user_id1"].as_str(), row["user_id2"].as_str()), (Some(ada.id.as_str()), Some(bob.id.as_str())));
        assert!(row["accepted_at"].is_null());
        let (_, received) = get(&app, &bob, "/friendship/requests").await;
        assert_eq!(ids(&received), [ada.id.as_str()]);
        assert!(received[0]["requested_at"].is_string());
        assert_eq!(received[0]["friendship_state"], 1);
        assert_eq!(get(&app, &ada, &format!("/friendship/requests/{}", bob.id)).await.1["user_id2"], bob.id.as_str());
        assert!(get(&app, &bob, &format!("/friendship/requests/{}", ada.id)).await.1.is_null(), "bob sent nothing");
        assert_eq!(post(&app, &bob, "/friendship/accept", json!({"user_id1": ada.id})).await.0, 200);
        // Accepting what is not pending succeeds and changes nothing, as in the original.
        assert_eq!(post(&app, &bob, "/friendship/accept", json!({"user_id1": ada.id})).await, (200, json!({"success": true})));
        assert_eq!(post(&app, &cy, "/friendship/accept", json!({"user_id1": ada.id})).await, (200, json!({"success": true})));
        assert!(get(&app, &cy, &format!("/friendship/check/{}", ada.id)).await.1.is_null(), "cy and ada stay strangers");
        assert_eq!(get(&app, &cy, &format!("/users/id/{}/friends/count", ada.id)).await, (200, json!({"count_1": 1})));
        let (_, friends) = get(&app, &cy, &format!("/users/id/{}/friends", ada.id)).await;
        assert_eq!(ids(&friends), [bob.id.as_str()]);
        assert_eq!(friends[0]["friendship_state"], 0, "relative to the caller, cy");
        let (_, all) = get(&app, &bob, "/friendship/all").await;
        assert_eq!(all, json!([{"user_id": ada.id}]));
        let unfriend = |a: &str, b: &str| json!({"user_id1": a, "user_id2": b});
        assert_eq!(post(&app, &cy, "/friendship/delete", unfriend(&ada.id, &bob.id)).await.0, 403);
        assert_eq!(post(&app, &ada, "/friendship/delete", unfriend(&ada.id, &ada.id)).await.0, 400);
        assert_eq!(post(&app, &ada, "/friendship/delete", unfriend(&bob.id, &ada.id)).await.0, 200);
        assert_eq!(post(&app, &ada, "/friendship/delete", unfriend(&bob.id, &ada.id)).await, (200, json!({"success": true})));
        assert_eq!(get(&app, &cy, &format!("/users/id/{}/friends/count", ada.id)).await.1, json!({"count_1": 0}));
    }

    async fn request_errors_and_the_crossing_request(app) {
        let (ada, bob) = (signed_up(&app, "ada", "Ada", "L").await, signed_up(&app, "bob", "Bob", "B").await);
        assert_eq!(post(&app, &ada, "/friendship/requests", json!({"user_id2": ada.id})).await.0, 400);
        assert_eq!(post(&app, &ada, "/friendship/requests", json!({"user_id2": "nobody"})).await.0, 404);
        assert_eq!(post(&app, &ada, "/friendship/requests", json!({"user_id2": bob.id})).await.0, 200);
        assert_eq!(post(&app, &ada, "/friendship/requests", json!({"user_id2": bob.id})).await.0, 409);
        // Bob asking Ada back accepts her request.
        assert_eq!(post(&app, &bob, "/friendship/requests", json!({"user_id2": ada.id})).await.0, 200);
        assert!(get(&app, &ada, &format!("/friendship/check/{}", bob.id)).await.1["accepted_at"].is_string());
        assert_eq!(post(&app, &ada, "/friendship/requests", json!({"user_id2": bob.id})).await.0, 409);
        let nobody = user("nobody");
        assert_eq!(post(&app, &nobody, "/friendship/requests", json!({"user_id2": bob.id})).await.0, 404, "no profile yet");
    }

    async fn a_pending_request_can_be_declined_or_withdrawn(app) {
        let (ada, bob) = (signed_up(&app, "ada", "Ada", "L").await, signed_up(&app, "bob", "Bob", "B").await);
        let delete = |who: &User, other: &str| as_user(app.client.delete(app.url(&format!("/friendship/requests/{other}"))), who).send();
        let nothing = delete(&bob, &ada.id).await.unwrap();
        assert_eq!(nothing.status(), 200, "no request to decline is a success, as in the original");
        assert_eq!(nothing.json::<Value>().await.unwrap(), json!({"success": true}));
        post(&app, &ada, "/friendship/requests", json!({"user_id2": bob.id})).await;
        assert_eq!(delete(&bob, &ada.id).await.unwrap().status(), 200, "declined");
        post(&app, &ada, "/friendship/requests", json!({"user_id2": bob.id})).await;
        assert_eq!(delete(&ada, &bob.id).await.unwrap().status(), 200, "withdrawn");
        assert!(get(&app, &ada, &format!("/friendship/check/{}", bob.id)).await.1.is_null());
    }

    async fn two_users_asking_each_other_at_once_become_friends_with_one_row(app) {
        for _ in 0..10 {
            let (ada, bob) = (signed_up(&app, "ada", "Ada", "L").await, signed_up(&app, "bob", "Bob", "B").await);
            let send = |from: &User, to: &User| {
                let request = as_user(app.client.post(app.url("/friendship/requests")), from).json(&json!({"user_id2": to.id}));
                async move { request.send().await.unwrap().status().as_u16() }
            };
            let (first, second) = tokio::join!(send(&ada, &bob), send(&bob, &ada));
            assert_eq!((first, second), (200, 200));
            let (_, row) = get(&app, &ada, &format!("/friendship/check/{}", bob.id)).await;
            assert!(row["accepted_at"].is_string(), "crossing requests must end as friends: {row}");
            assert_eq!(get(&app, &ada, "/friendship/all").await.1, json!([{"user_id": bob.id}]));
        }
    }

    async fn mutual_friends_and_states_are_relative_to_the_caller(app) {
        let ada = signed_up(&app, "ada", "Ada", "A").await;
        let bob = signed_up(&app, "bob", "Bob", "B").await;
        let cy = signed_up(&app, "cy", "Cy", "C").await;
        let dee = signed_up(&app, "dee", "Dee", "D").await;
        befriend(&app, &ada, &cy).await;
        befriend(&app, &bob, &cy).await;
        befriend(&app, &ada, &dee).await;
        befriend(&app, &bob, &dee).await;
        post(&app, &ada, "/friendship/requests", json!({"user_id2": bob.id})).await;
        let (_, mutual) = get(&app, &ada, &format!("/users/id/{}/mutual-friends", bob.id)).await;
        assert_eq!(ids(&mutual), [cy.id.clone(), dee.id.clone()]);
        assert_eq!(get(&app, &ada, &format!("/users/id/{}/mutual-friends/count", bob.id)).await.1, json!({"count_1": 2}));
        let (_, public) = get(&app, &ada, &format!("/users/id/{}", bob.id)).await;
        assert_eq!((public["friendship_state"].as_i64(), public["mutual_friend_count"].as_i64()), (Some(1), Some(2)));
        let (_, from_cy) = get(&app, &cy, &format!("/users/id/{}", ada.id)).await;
        assert_eq!(from_cy["friendship_state"], 2);
        let (_, page) = get(&app, &ada, &format!("/users/id/{}/mutual-friends?limit=1&offset=1", bob.id)).await;
        assert_eq!(ids(&page), [dee.id.as_str()]);
    }

    async fn search_is_case_insensitive_excludes_the_caller_and_pages(app) {
        let ada = signed_up(&app, "ada", "Ada", "Lovelace").await;
        let mut others = Vec::new();
        for n in 0..5 {
            others.push(signed_up(&app, &format!("lov{n}"), &format!("Love{n}"), "Smith").await);
        }
        let (status, found) = get(&app, &ada, "/users/search/name/LOVE").await;
        assert_eq!(status, 200);
        assert_eq!(ids(&found).len(), 5, "the caller is left out: {found}");
        assert_eq!(ids(&get(&app, &ada, "/users/search/name/love2%20smith").await.1).len(), 1, "first last");
        let (_, by_email) = get(&app, &others[0], &format!("/users/search/email/{}", &ada.id[..6].to_uppercase())).await;
        assert_eq!(ids(&by_email), [ada.id.as_str()]);
        assert_eq!(ids(&get(&app, &ada, "/users/search/name/love?limit=2&offset=1").await.1).len(), 2);
        assert_eq!(get(&app, &ada, "/users/search/name/love?limit=0").await.1, json!([]));
        assert_eq!(ids(&get(&app, &ada, "/users/search/name/love?limit=1000").await.1).len(), 5, "limit capped, not refused");
        for bad in ["limit=-1", "offset=-3"] {
            let (status, problem) = get(&app, &ada, &format!("/users/search/name/love?{bad}")).await;
            assert_eq!((status, problem["detail"].as_str()), (400, Some("Limit and offset cannot be negative")));
        }
        assert_eq!(ids(&get(&app, &ada, "/users/search/name/100%25").await.1).len(), 0, "% is literal");
        befriend(&app, &ada, &others[3]).await;
        let (_, friends) = get(&app, &ada, "/friendship/search/name/love").await;
        assert_eq!(ids(&friends), [others[3].id.as_str()]);
        let exact = format!("/friendship/search/email/{}@example.com?exact=true", others[3].id);
        assert_eq!(ids(&get(&app, &ada, &exact).await.1), [others[3].id.as_str()]);
        let partial = format!("/friendship/search/email/{}?exact=true", &others[3].id[..5]);
        assert!(ids(&get(&app, &ada, &partial).await.1).is_empty());
        let unique: HashSet<String> = ids(&found).into_iter().collect();
        assert!(!unique.contains(&ada.id));
        // A renamed user is found by the new name and no longer by the old one.
        put(&app, &others[1], "/users/me", json!({"first_name": "Zelda"})).await;
        assert_eq!(ids(&get(&app, &ada, "/users/search/name/zeld").await.1), [others[1].id.as_str()]);
        assert_eq!(ids(&get(&app, &ada, "/users/search/name/love").await.1).len(), 4);
    }

    async fn search_ranks_friends_then_requests_then_mutual_friends_then_where_the_text_is(app) {
        let ada = signed_up(&app, "ada", "Ada", "A").await;
        let infix = signed_up(&app, "infix", "Bglovey", "R").await;
        let suffix = signed_up(&app, "suffix", "Ann", "Glove").await;
        let (start1, start2) = (signed_up(&app, "start", "Lovely", "S").await, signed_up(&app, "start", "Loveday", "T").await);
        let one_mutual = signed_up(&app, "one", "Aglovez", "Q").await;
        let two_mutual = signed_up(&app, "two", "Zoe", "Loveless").await;
        let pending = signed_up(&app, "pending", "Pat", "Clover").await;
        let friend = signed_up(&app, "friend", "Fay", "Oleander-love").await;
        let other_friend = signed_up(&app, "other", "Gil", "Other").await;
        befriend(&app, &ada, &friend).await;
        befriend(&app, &ada, &other_friend).await;
        befriend(&app, &two_mutual, &friend).await;
        befriend(&app, &two_mutual, &other_friend).await;
        befriend(&app, &one_mutual, &friend).await;
        post(&app, &ada, "/friendship/requests", json!({"user_id2": pending.id})).await;
        let (late, early) = if start1.id > start2.id { (&start1, &start2) } else { (&start2, &start1) };
        let expected = [&friend, &pending, &two_mutual, &one_mutual, late, early, &suffix, &infix].map(|user| user.id.clone());
        let (status, found) = get(&app, &ada, "/users/search/name/love").await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(ids(&found), expected, "{found}");
        let field = |name: &str| -> Vec<i64> { found.as_array().unwrap().iter().map(|u| u[name].as_i64().unwrap()).collect() };
        assert_eq!(field("friendship_state"), [2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(field("mutual_friend_count")[2..], [2, 1, 0, 0, 0, 0]);
        // Pages follow the same order.
        let (_, second_page) = get(&app, &ada, "/users/search/name/love?limit=3&offset=3").await;
        assert_eq!(ids(&second_page), expected[3..6]);
    }
}

/// What the module records in the audit log.
mod audited {
    use super::*;
    use crate::on_every_backend_each;

    /// The log's record of the social module's decisions, oldest first.
    async fn recorded(app: &TestApp) -> Vec<Value> {
        let (status, page) = json(
            app.get("/api/events?component=studyhall.social&order=asc&limit=1000")
                .await,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        page["events"].as_array().unwrap().clone()
    }

    fn unaudited(settings: &mut ServeSettings) {
        with_secret(settings);
        settings.audit.modules.audit_modules = vec!["streams".into(), "jobs".into()];
    }

    on_every_backend_each! {
        async fn each_profile_and_friendship_decision_is_recorded_once(app, with_secret) {
            let ada = signed_up(&app, "ada", "Ada", "Lovelace").await;
            let bob = signed_up(&app, "bob", "Bob", "B").await;
            // A second sign-up of the same user is refused and decides nothing.
            let (status, _) = post(&app, &ada, "/users/me", json!({"first_name": "A", "last_name": "B"})).await;
            assert_eq!(status, 400);
            assert_eq!(post(&app, &ada, "/friendship/requests", json!({"user_id2": bob.id})).await.0, 200);
            assert_eq!(post(&app, &bob, "/friendship/accept", json!({"user_id1": ada.id})).await.0, 200);
            let (status, body) = post(&app, &bob, "/friendship/delete", json!({"user_id1": ada.id, "user_id2": bob.id})).await;
            assert_eq!(status, 200, "{body}");
            // Accepting, declining or ending what is not there succeeds and records nothing.
            assert_eq!(post(&app, &bob, "/friendship/accept", json!({"user_id1": ada.id})).await.0, 200);
            assert_eq!(post(&app, &bob, "/friendship/delete", json!({"user_id1": ada.id, "user_id2": bob.id})).await.0, 200);
            let decline = as_user(app.client.delete(app.url(&format!("/friendship/requests/{}", ada.id))), &bob);
            assert_eq!(decline.send().await.unwrap().status(), 200);
            let events = recorded(&app).await;
            let messages: Vec<&str> = events.iter().map(|e| e["message"].as_str().unwrap()).collect();
            assert_eq!(messages, ["profile.created", "profile.created", "friend.requested", "friend.accepted", "friend.removed"]);
            assert_eq!(events[0]["data"]["user"], ada.id.as_str());
            assert_eq!(events[0]["email"], format!("{}@Example.com", ada.id));
            assert_eq!(events[2]["data"]["from"], ada.id.as_str());
            assert_eq!(events[2]["data"]["to"], bob.id.as_str());
            assert_eq!(events[3]["data"]["actor"]["id"], bob.id.as_str());
            assert_eq!(events[4]["data"]["actor"]["id"], bob.id.as_str());
            assert!(events.iter().all(|e| e["environment"] == "studyhall"));
        }

        async fn with_social_auditing_off_nothing_is_recorded(app, unaudited) {
            let ada = signed_up(&app, "ada", "Ada", "Lovelace").await;
            let bob = signed_up(&app, "bob", "Bob", "B").await;
            assert_eq!(post(&app, &ada, "/friendship/requests", json!({"user_id2": bob.id})).await.0, 200);
            assert!(recorded(&app).await.is_empty());
        }
    }
}
