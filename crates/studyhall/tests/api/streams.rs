use std::time::Duration;

use reqwest::Response;
use serde_json::{json, Value};
use studyhall::config::ServeSettings;

use crate::helpers::{json, TestApp};
use crate::on_every_stream_backend;

const ADMIN: &str = "test-admin-token-0123456789";

fn defaults(_: &mut ServeSettings) {}

/// Leases are tested by moving the server's clock (`TestApp::clock`), not by waiting.
const LEASE: Duration = Duration::from_secs(300);

fn five_minute_lease(settings: &mut ServeSettings) {
    settings.streams.stream_lease_secs = LEASE.as_secs() as u32;
}

/// A five-minute lease with a minute of grace.
fn minute_of_grace(settings: &mut ServeSettings) {
    five_minute_lease(settings);
    settings.streams.stream_grace_secs = 60;
}

fn with_admin(settings: &mut ServeSettings) {
    settings.admin_token = Some(ADMIN.parse().unwrap());
}

fn kick_oldest(settings: &mut ServeSettings) {
    settings.streams.stream_policy = studyhall::config::StreamPolicy::KickOldest;
}

fn dry_run_of_kick_oldest(settings: &mut ServeSettings) {
    kick_oldest(settings);
    settings.streams.stream_dry_run = true;
}

fn dry_run_of_reject(settings: &mut ServeSettings) {
    settings.streams.stream_dry_run = true;
}

fn ask(settings: &mut ServeSettings) {
    settings.streams.stream_policy = studyhall::config::StreamPolicy::Ask;
}

fn untrusted(settings: &mut ServeSettings) {
    settings.identity.trust_identity_headers = false;
}

/// A viewer of its own, so backends that share a server (Redis) never see another
/// test's streams.
fn viewer() -> String {
    format!("viewer-{}", uuid::Uuid::new_v4().simple())
}

async fn start(app: &TestApp, user: &str, body: Option<Value>) -> Response {
    let mut request = app
        .client
        .post(app.url("/api/v1/streams"))
        .header("X-User-Id", user);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn active(app: &TestApp, user: &str) -> (Vec<String>, i64) {
    let (status, list) = json(
        app.client
            .get(app.url("/api/v1/streams"))
            .header("X-User-Id", user)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{list}");
    let ids = list["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, list["limit"].as_i64().unwrap())
}

async fn end(app: &TestApp, user: &str, id: &str) -> u16 {
    app.client
        .delete(app.url(&format!("/api/v1/streams/{id}")))
        .header("X-User-Id", user)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn heartbeat(app: &TestApp, user: &str, id: &str) -> u16 {
    app.client
        .post(app.url(&format!("/api/v1/streams/{id}/heartbeat")))
        .header("X-User-Id", user)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn started_id(response: Response) -> String {
    let (status, body) = json(response).await;
    assert_eq!(status, 201, "{body}");
    body["stream"]["id"].as_str().unwrap().to_owned()
}

on_every_stream_backend! {
    async fn starts_up_to_the_limit_then_429_with_retry_after_and_nothing_stored(app, defaults) {
        let user = viewer();
        for n in 1..=3 {
            let (status, body) = json(start(&app, &user, Some(json!({"video_name": format!("v{n}")}))).await).await;
            assert_eq!(status, 201, "{body}");
            assert_eq!(body["active_streams"], n);
            assert_eq!(body["limit"], 3);
            assert_eq!(body["stream"]["viewer"], format!("user:{user}"));
            assert_eq!(body["stream"]["video_name"], format!("v{n}"));
        }
        let refused = start(&app, &user, None).await;
        assert_eq!(refused.status(), 429);
        let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert_eq!(refused.headers()["content-type"], "application/problem+json");
        let (_, problem) = json(refused).await;
        assert_eq!((problem["active_streams"].as_i64(), problem["limit"].as_i64()), (Some(3), Some(3)));
        assert_eq!(active(&app, &user).await.0.len(), 3, "a refused start stored something");
    }

    async fn the_seed_path_and_the_plural_path_share_one_count(app, defaults) {
        let user = viewer();
        for path in ["/api/v1/stream", "/api/v1/streams", "/api/v1/stream"] {
            let response = app.client.post(app.url(path)).header("X-User-Id", &user).send().await.unwrap();
            assert_eq!(response.status(), 201);
        }
        let response = app.client.post(app.url("/api/v1/stream")).header("X-User-Id", &user).send().await.unwrap();
        assert_eq!(response.status(), 429);
    }

    async fn the_viewer_is_the_user_or_else_the_first_forwarded_address(app, defaults) {
        let address = format!("198.51.100.{}", rand_octet());
        let (status, body) = json(app.client.post(app.url("/api/v1/stream")).header("X-Forwarded-For", format!("{address}, 10.0.0.1")).send().await.unwrap()).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["stream"]["viewer"], format!("ip:{address}"));
        let (_, list) = json(app.client.get(app.url("/api/v1/streams")).header("X-Forwarded-For", &address).send().await.unwrap()).await;
        assert_eq!(list["active_streams"], 1);
    }

    async fn metadata_is_stored_as_given_and_streams_are_listed_oldest_first(app, defaults) {
        let user = viewer();
        let first = json!({"video_name": "a", "codec_info": "h264", "file_type": "mp4", "size": 1024, "src": "s3://x",
                           "framerate": 29.97, "video_playing": true, "video_start_time": "00:00", "ignored": "x"});
        let a = started_id(start(&app, &user, Some(first)).await).await;
        let b = started_id(start(&app, &user, Some(json!({"video_name": "b"}))).await).await;
        let (_, list) = json(app.client.get(app.url("/api/v1/streams")).header("X-User-Id", &user).send().await.unwrap()).await;
        let streams = list["streams"].as_array().unwrap();
        assert_eq!(streams.iter().map(|s| s["id"].as_str().unwrap()).collect::<Vec<_>>(), [a.as_str(), b.as_str()]);
        assert_eq!(streams[0]["framerate"], 29.97);
        assert_eq!(streams[0]["size"], 1024);
        assert_eq!(streams[0]["video_playing"], true);
        assert!(streams[0].get("ignored").is_none());
        assert!(streams[0]["started_at"].as_str().unwrap().ends_with('Z'));
        let (_, singular) = json(app.client.get(app.url("/api/v1/stream")).header("X-User-Id", &user).send().await.unwrap()).await;
        assert_eq!(singular, list, "the original singular path lists the same streams");
    }

    async fn a_repeated_stream_id_renews_its_lease_and_counts_once(app, defaults) {
        let user = viewer();
        for _ in 0..5 {
            let (status, body) = json(start(&app, &user, Some(json!({"stream_id": "tab-1"}))).await).await;
            assert_eq!(status, 201, "{body}");
            assert_eq!(body["active_streams"], 1);
            assert_eq!(body["stream"]["id"], "tab-1");
        }
        started_id(start(&app, &user, None).await).await;
        started_id(start(&app, &user, None).await).await;
        assert_eq!(start(&app, &user, Some(json!({"stream_id": "tab-2"}))).await.status(), 429);
        assert_eq!(start(&app, &user, Some(json!({"stream_id": "tab-1"}))).await.status(), 201, "renewing at the limit is allowed");
    }

    async fn ending_a_stream_frees_its_slot_at_once(app, defaults) {
        let user = viewer();
        let ids = [started_id(start(&app, &user, None).await).await, started_id(start(&app, &user, None).await).await];
        started_id(start(&app, &user, Some(json!({"stream_id": "tv"}))).await).await;
        assert_eq!(start(&app, &user, None).await.status(), 429);
        assert_eq!(end(&app, &user, &ids[0]).await, 204);
        started_id(start(&app, &user, None).await).await;
        // The seed's way to end: video_ended with the stream id.
        let (status, ended) = json(start(&app, &user, Some(json!({"stream_id": "tv", "video_ended": true}))).await).await;
        assert_eq!(status, 200, "{ended}");
        assert_eq!(ended["stream"]["id"], "tv");
        assert_eq!(ended["active_streams"], 2);
        started_id(start(&app, &user, None).await).await;
        assert_eq!(end(&app, &user, &ids[0]).await, 404, "ending twice");
        assert_eq!(end(&app, &user, "never-started").await, 404);
    }

    async fn a_viewer_cannot_end_or_renew_another_viewers_stream(app, defaults) {
        let (owner, other) = (viewer(), viewer());
        let id = started_id(start(&app, &owner, None).await).await;
        assert_eq!(end(&app, &other, &id).await, 404);
        assert_eq!(heartbeat(&app, &other, &id).await, 404);
        let (status, _) = json(start(&app, &other, Some(json!({"stream_id": id, "video_ended": true}))).await).await;
        assert_eq!(status, 404);
        assert_eq!(active(&app, &owner).await.0, [id]);
    }

    async fn a_stream_without_heartbeats_frees_its_slot_after_the_lease(app, five_minute_lease) {
        let user = viewer();
        for _ in 0..3 {
            started_id(start(&app, &user, None).await).await;
        }
        assert_eq!(start(&app, &user, None).await.status(), 429, "leases count until they expire");
        app.clock.advance(LEASE - Duration::from_secs(2));
        assert_eq!(start(&app, &user, None).await.status(), 429, "a lease expired early");
        app.clock.advance(Duration::from_secs(3));
        assert_eq!(start(&app, &user, None).await.status(), 201, "no slot freed after the lease");
        assert_eq!(active(&app, &user).await.0.len(), 1, "the expired leases still count");
    }

    async fn heartbeats_keep_a_stream_alive_and_an_expired_one_must_start_again(app, five_minute_lease) {
        let user = viewer();
        let kept = started_id(start(&app, &user, None).await).await;
        let dropped = started_id(start(&app, &user, None).await).await;
        // Four heartbeats two minutes apart: eight minutes, past the dropped one's lease.
        for _ in 0..4 {
            app.clock.advance(LEASE * 2 / 5);
            assert_eq!(heartbeat(&app, &user, &kept).await, 200);
        }
        assert_eq!(active(&app, &user).await.0, [kept]);
        assert_eq!(heartbeat(&app, &user, &dropped).await, 404);
    }

    async fn a_lease_renewed_within_its_grace_counts_as_continuous_and_holds_its_slot(app, minute_of_grace) {
        let user = viewer();
        let kept = started_id(start(&app, &user, None).await).await;
        let dropped = started_id(start(&app, &user, None).await).await;
        started_id(start(&app, &user, None).await).await;
        app.clock.advance(LEASE + Duration::from_secs(30));
        // Expired half a minute ago: within the grace, every lease still counts.
        let refused = start(&app, &user, None).await;
        assert_eq!(refused.status(), 429, "a slot in its grace was given away");
        let retry: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((29..=31).contains(&retry), "Retry-After {retry} s, the grace left is 30 s");
        assert_eq!(active(&app, &user).await.0.len(), 3);
        let (status, renewed) = json(app.client.post(app.url(&format!("/api/v1/streams/{kept}/heartbeat")))
            .header("X-User-Id", &user).send().await.unwrap()).await;
        assert_eq!(status, 200, "a heartbeat within the grace renews: {renewed}");
        assert_eq!(renewed["stream"]["id"], kept.as_str());
        // Past the grace the other two are gone; the renewed one stays.
        app.clock.advance(Duration::from_secs(31));
        assert_eq!(heartbeat(&app, &user, &dropped).await, 404);
        assert_eq!(active(&app, &user).await.0, [kept.as_str()]);
        started_id(start(&app, &user, None).await).await;
        started_id(start(&app, &user, None).await).await;
        assert_eq!(start(&app, &user, None).await.status(), 429);
    }

    async fn two_hundred_concurrent_starts_for_one_viewer_allow_exactly_the_limit(app, defaults) {
        let user = viewer();
        let attempts: Vec<_> = (0..200).map(|_| {
            let (client, url, user) = (app.client.clone(), app.url("/api/v1/streams"), user.clone());
            tokio::spawn(async move { client.post(url).header("X-User-Id", user).send().await.unwrap().status().as_u16() })
        }).collect();
        let mut statuses = std::collections::HashMap::<u16, usize>::new();
        for attempt in attempts {
            *statuses.entry(attempt.await.unwrap()).or_default() += 1;
        }
        assert_eq!(statuses.get(&201), Some(&3), "{statuses:?}");
        assert_eq!(statuses.get(&429), Some(&197), "{statuses:?}");
        assert_eq!(active(&app, &user).await.0.len(), 3);
    }

    async fn starts_renewals_heartbeats_and_ends_racing_for_one_viewer_keep_its_count_exact(app, defaults) {
        // Forty clients of one viewer (limit 3) at once, each starting a stream id of its
        // own, starting it again, beating and ending it: however their operations fall
        // into batches, an admitted stream stays the client's until it ends it, a
        // re-start counts it once, no answer counts past the limit, and every slot is
        // free at the end.
        let user = viewer();
        let clients = (0..40).map(|n| {
            let (app, user) = (&app, &user);
            async move {
                let id = format!("tab-{n}");
                let (status, body) = json(start(app, user, Some(json!({"stream_id": id}))).await).await;
                if status == 429 {
                    return false;
                }
                assert_eq!(status, 201, "{body}");
                let active = body["active_streams"].as_i64().unwrap();
                assert!((1..=3).contains(&active), "{body}");
                let (status, again) = json(start(app, user, Some(json!({"stream_id": id}))).await).await;
                assert_eq!(status, 201, "{again}");
                assert!(again["active_streams"].as_i64().unwrap() <= 3, "{again}");
                assert_eq!(heartbeat(app, user, &id).await, 200);
                assert_eq!(end(app, user, &id).await, 204);
                assert_eq!(heartbeat(app, user, &id).await, 404, "an ended stream renewed");
                assert_eq!(end(app, user, &id).await, 404, "ended twice");
                true
            }
        });
        let admitted = futures_util::future::join_all(clients).await;
        let admitted = admitted.into_iter().filter(|admitted| *admitted).count();
        assert!(admitted >= 3, "only {admitted} admitted");
        assert_eq!(active(&app, &user).await.0, Vec::<String>::new());
        for _ in 0..3 {
            started_id(start(&app, &user, None).await).await;
        }
        assert_eq!(start(&app, &user, None).await.status(), 429, "a slot was left over");
    }

    async fn kick_oldest_ends_the_oldest_stream_and_its_heartbeat_says_it_was_replaced(app, kick_oldest) {
        let user = viewer();
        let first = started_id(start(&app, &user, Some(json!({"stream_id": "a"}))).await).await;
        for id in ["b", "c"] {
            started_id(start(&app, &user, Some(json!({"stream_id": id}))).await).await;
        }
        // A renewal at the limit takes no one's slot.
        let (status, renewed) = json(start(&app, &user, Some(json!({"stream_id": "a"}))).await).await;
        assert_eq!((status, renewed.get("replaced_streams")), (201, None), "{renewed}");
        let (status, body) = json(start(&app, &user, Some(json!({"stream_id": "d"}))).await).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["replaced_streams"], json!([first]), "the oldest goes first");
        assert_eq!(body["active_streams"], 3);
        assert_eq!(active(&app, &user).await.0, ["b", "c", "d"]);
        let (_, list) = json(app.client.get(app.url("/api/v1/streams")).header("X-User-Id", &user).send().await.unwrap()).await;
        assert_eq!(list["policy"], "kick_oldest", "{list}");
        let beat = app.client.post(app.url("/api/v1/streams/a/heartbeat")).header("X-User-Id", &user).send().await.unwrap();
        let (status, gone) = json(beat).await;
        assert_eq!(status, 410, "{gone}");
        assert_eq!(gone["replaced_by"]["stream"], "d", "{gone}");
        assert!(gone["detail"].as_str().unwrap().contains("replaced by a newer stream"), "{gone}");
        assert!(gone["ended_at"].as_str().unwrap().ends_with('Z'), "{gone}");
        assert_eq!(end(&app, &user, "a").await, 404, "a replaced stream is not active");
        let (_, next) = json(start(&app, &user, None).await).await;
        assert_eq!(next["replaced_streams"], json!(["b"]), "{next}");
        // Starting the replaced id again starts it over, replacing the next oldest.
        let (status, again) = json(start(&app, &user, Some(json!({"stream_id": "a"}))).await).await;
        assert_eq!((status, &again["replaced_streams"]), (201, &json!(["c"])), "{again}");
        assert_eq!(heartbeat(&app, &user, "a").await, 200);
        assert_eq!(heartbeat(&app, &user, "c").await, 410);
        assert_eq!(heartbeat(&app, &user, "never-started").await, 404);
    }

    async fn two_hundred_concurrent_starts_under_kick_oldest_keep_the_limit_and_tell_every_replaced_stream(app, kick_oldest) {
        let user = viewer();
        let starts = (0..200).map(|n| start(&app, &user, Some(json!({"stream_id": format!("s{n}")}))));
        let mut replaced = Vec::new();
        for response in futures_util::future::join_all(starts).await {
            let (status, body) = json(response).await;
            assert_eq!(status, 201, "{body}");
            assert!((1..=3).contains(&body["active_streams"].as_i64().unwrap()), "{body}");
            for id in body["replaced_streams"].as_array().into_iter().flatten() {
                replaced.push(id.as_str().unwrap().to_owned());
            }
        }
        let (left, _) = active(&app, &user).await;
        assert_eq!(left.len(), 3, "{left:?}");
        replaced.sort();
        let before = replaced.len();
        replaced.dedup();
        assert_eq!((before, replaced.len()), (197, 197), "each stream beyond the limit ended exactly once");
        assert!(left.iter().all(|id| !replaced.contains(id)), "{left:?}");
        for id in &replaced {
            let beat = app.client.post(app.url(&format!("/api/v1/streams/{id}/heartbeat"))).header("X-User-Id", &user).send().await.unwrap();
            assert_eq!(beat.status(), 410, "{id}");
        }
    }

    async fn a_devices_new_stream_replaces_its_own_and_takes_no_second_slot(app, defaults) {
        let user = viewer();
        started_id(start(&app, &user, Some(json!({"stream_id": "tv-1", "device_id": "tv"}))).await).await;
        let phone = app.client.post(app.url("/api/v1/streams")).header("X-User-Id", &user)
            .header("X-Device-Id", "phone").json(&json!({"stream_id": "phone-1"})).send().await.unwrap();
        assert_eq!(phone.status(), 201);
        let (status, body) = json(start(&app, &user, Some(json!({"stream_id": "tv-2", "device_id": "tv"}))).await).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!((&body["replaced_streams"], &body["active_streams"]), (&json!(["tv-1"]), &json!(2)), "{body}");
        assert_eq!(body["stream"]["device_id"], "tv");
        let beat = app.client.post(app.url("/api/v1/streams/tv-1/heartbeat")).header("X-User-Id", &user).send().await.unwrap();
        let (status, gone) = json(beat).await;
        assert_eq!(status, 410, "{gone}");
        assert_eq!(gone["replaced_by"], json!({"stream": "tv-2", "device": "tv"}));
        assert!(gone["detail"].as_str().unwrap().contains("on device tv"), "{gone}");
        // At the limit a device still replaces its own stream; another device is refused
        // and nothing changes.
        started_id(start(&app, &user, None).await).await;
        let (status, body) = json(start(&app, &user, Some(json!({"stream_id": "tv-3", "device_id": "tv"}))).await).await;
        assert_eq!((status, &body["replaced_streams"]), (201, &json!(["tv-2"])), "{body}");
        assert_eq!(start(&app, &user, Some(json!({"device_id": "laptop"}))).await.status(), 429);
        let (ids, _) = active(&app, &user).await;
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert!(ids.contains(&"tv-3".to_owned()) && ids.contains(&"phone-1".to_owned()), "{ids:?}");
        let (_, list) = json(app.client.get(app.url("/api/v1/streams")).header("X-User-Id", &user).send().await.unwrap()).await;
        assert_eq!(list["policy"], "reject", "{list}");
        let devices: Vec<_> = list["streams"].as_array().unwrap().iter().map(|s| s["device_id"].clone()).collect();
        assert!(devices.contains(&json!("tv")) && devices.contains(&json!("phone")), "{list}");
        let mismatch = app.client.post(app.url("/api/v1/streams")).header("X-User-Id", &user)
            .header("X-Device-Id", "phone").json(&json!({"device_id": "tv"})).send().await.unwrap();
        assert_eq!(mismatch.status(), 400);
        for bad in [json!({"device_id": 5}), json!({"device_id": "has space"}), json!({"device_id": ""})] {
            assert_eq!(start(&app, &user, Some(bad.clone())).await.status(), 400, "{bad}");
        }
        assert_eq!(active(&app, &user).await.0.len(), 3, "a refused start changed nothing");
    }

    async fn starts_of_one_device_racing_hold_one_slot_between_them(app, defaults) {
        let user = viewer();
        started_id(start(&app, &user, Some(json!({"stream_id": "other-1"}))).await).await;
        started_id(start(&app, &user, Some(json!({"stream_id": "other-2"}))).await).await;
        // One slot left: twenty starts of one device at once, each of a new stream id.
        let starts = (0..20).map(|n| start(&app, &user, Some(json!({"stream_id": format!("tv-{n}"), "device_id": "tv"}))));
        let mut replaced = Vec::new();
        for response in futures_util::future::join_all(starts).await {
            let (status, body) = json(response).await;
            assert_eq!(status, 201, "{body}");
            assert!(body["active_streams"].as_i64().unwrap() <= 3, "{body}");
            for id in body["replaced_streams"].as_array().into_iter().flatten() {
                assert!(id.as_str().unwrap().starts_with("tv-"), "another device's stream ended: {body}");
                replaced.push(id.as_str().unwrap().to_owned());
            }
        }
        let (ids, _) = active(&app, &user).await;
        let tv: Vec<_> = ids.iter().filter(|id| id.starts_with("tv-")).collect();
        assert_eq!((ids.len(), tv.len()), (3, 1), "{ids:?}");
        replaced.sort();
        replaced.dedup();
        assert_eq!(replaced.len(), 19, "{replaced:?}");
        for id in &replaced {
            assert_eq!(heartbeat(&app, &user, id).await, 410, "{id}");
        }
    }

    async fn ask_answers_409_with_each_stream_and_how_to_end_it_and_replace_does_both_at_once(app, ask) {
        let user = viewer();
        for id in ["a", "b", "c"] {
            started_id(start(&app, &user, Some(json!({"stream_id": id, "video_name": id}))).await).await;
        }
        let (status, asked) = json(start(&app, &user, Some(json!({"stream_id": "d"}))).await).await;
        assert_eq!(status, 409, "{asked}");
        let listed: Vec<_> = asked["streams"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
        assert_eq!(listed, ["a", "b", "c"], "{asked}");
        assert_eq!(asked["streams"][1]["end"], json!({"method": "DELETE", "href": "/api/v1/streams/b"}));
        assert_eq!(asked["streams"][0]["replace"], json!({"replace": "a"}));
        assert_eq!(asked["streams"][2]["video_name"], "c");
        assert_eq!((asked["active_streams"].as_i64(), asked["limit"].as_i64()), (Some(3), Some(3)));
        assert_eq!(active(&app, &user).await.0, ["a", "b", "c"], "a 409 stores nothing");
        // Ending one, then starting, succeeds.
        assert_eq!(end(&app, &user, "b").await, 204);
        started_id(start(&app, &user, Some(json!({"stream_id": "d"}))).await).await;
        // `replace` ends one and starts in one step.
        let (status, body) = json(start(&app, &user, Some(json!({"stream_id": "e", "replace": "a"}))).await).await;
        assert_eq!((status, &body["replaced_streams"], &body["active_streams"]), (201, &json!(["a"]), &json!(3)), "{body}");
        assert_eq!(active(&app, &user).await.0, ["c", "d", "e"]);
        let beat = app.client.post(app.url("/api/v1/streams/a/heartbeat")).header("X-User-Id", &user).send().await.unwrap();
        let (status, gone) = json(beat).await;
        assert_eq!((status, &gone["replaced_by"]["stream"]), (410, &json!("e")), "{gone}");
        // A stream to replace that is not active frees nothing: at the limit, 409 again.
        assert_eq!(start(&app, &user, Some(json!({"stream_id": "f", "replace": "a"}))).await.status(), 409);
        assert_eq!(start(&app, &user, Some(json!({"replace": 7}))).await.status(), 400);
        assert_eq!(active(&app, &user).await.0, ["c", "d", "e"]);
    }

    async fn replace_ends_the_named_stream_under_the_reject_policy_too(app, defaults) {
        let user = viewer();
        for id in ["a", "b", "c"] {
            started_id(start(&app, &user, Some(json!({"stream_id": id}))).await).await;
        }
        assert_eq!(start(&app, &user, Some(json!({"stream_id": "d"}))).await.status(), 429);
        let (status, body) = json(start(&app, &user, Some(json!({"stream_id": "d", "replace": "b"}))).await).await;
        assert_eq!((status, &body["replaced_streams"]), (201, &json!(["b"])), "{body}");
        assert_eq!(active(&app, &user).await.0, ["a", "c", "d"]);
    }

    async fn a_dry_run_admits_at_the_limit_and_says_what_the_policy_would_have_done(app, dry_run_of_kick_oldest) {
        let user = viewer();
        for id in ["a", "b", "c"] {
            let (_, body) = json(start(&app, &user, Some(json!({"stream_id": id}))).await).await;
            assert_eq!(body.get("dry_run"), None, "below the limit: {body}");
        }
        let (status, body) = json(start(&app, &user, Some(json!({"stream_id": "d"}))).await).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["dry_run"], json!({"would": "kick_oldest", "would_end": ["a"]}), "{body}");
        assert_eq!((body.get("replaced_streams"), &body["active_streams"]), (None, &json!(4)), "{body}");
        assert_eq!(heartbeat(&app, &user, "a").await, 200, "a dry run ended a stream");
        assert_eq!(active(&app, &user).await.0, ["a", "b", "c", "d"]);
        let (_, next) = json(start(&app, &user, Some(json!({"stream_id": "e"}))).await).await;
        assert_eq!(next["dry_run"], json!({"would": "kick_oldest", "would_end": ["a", "b"]}), "{next}");
    }

    async fn a_dry_run_of_reject_admits_and_notes_the_refusal(app, dry_run_of_reject) {
        let user = viewer();
        for _ in 0..3 {
            started_id(start(&app, &user, None).await).await;
        }
        let (status, body) = json(start(&app, &user, None).await).await;
        assert_eq!((status, &body["dry_run"]), (201, &json!({"would": "refuse", "would_end": []})), "{body}");
        assert_eq!(active(&app, &user).await.0.len(), 4);
    }

    async fn bad_input_is_400_and_takes_no_slot(app, defaults) {
        let user = viewer();
        let long = "x".repeat(1025);
        let bodies = [
            "not json".to_owned(), "[1, 2]".to_owned(), r#""text""#.to_owned(),
            json!({"video_name": long}).to_string(),
            json!({"stream_id": "x".repeat(129)}).to_string(),
            json!({"stream_id": "has space"}).to_string(),
            json!({"stream_id": 7}).to_string(),
            json!({"codec_info": {"nested": true}}).to_string(),
            json!({"video_ended": true}).to_string(),
        ];
        for body in bodies {
            let response = app.client.post(app.url("/api/v1/streams")).header("X-User-Id", &user).body(body.clone()).send().await.unwrap();
            assert_eq!(response.headers()["content-type"], "application/problem+json");
            let (status, problem) = json(response).await;
            assert_eq!(status, 400, "{body} → {problem}");
        }
        let no_identity = app.client.post(app.url("/api/v1/streams")).send().await.unwrap();
        assert_eq!(no_identity.status(), 400);
        let bad_forwarded = app.client.post(app.url("/api/v1/streams")).header("X-Forwarded-For", "not-an-ip").send().await.unwrap();
        assert_eq!(bad_forwarded.status(), 400);
        let bad_user = app.client.post(app.url("/api/v1/streams")).header("X-User-Id", "x".repeat(129)).send().await.unwrap();
        assert_eq!(bad_user.status(), 400);
        let bad_path = app.client.delete(app.url(&format!("/api/v1/streams/{}", "y".repeat(129)))).header("X-User-Id", &user).send().await.unwrap();
        assert_eq!(bad_path.status(), 400);
        assert!(active(&app, &user).await.0.is_empty(), "a rejected request took a slot");
        for _ in 0..3 {
            started_id(start(&app, &user, None).await).await;
        }
    }

    async fn untrusted_identity_headers_are_not_an_identity(app, untrusted) {
        let response = app.client.post(app.url("/api/v1/streams")).header("X-User-Id", "alice").header("X-Forwarded-For", "203.0.113.9").send().await.unwrap();
        let (status, problem) = json(response).await;
        assert_eq!(status, 400);
        assert!(problem["detail"].as_str().unwrap().contains("not trusted"), "{problem}");
    }

    async fn the_admin_token_sets_and_resets_a_viewers_limit(app, with_admin) {
        let user = viewer();
        let path = app.url(&format!("/api/v1/viewers/user:{user}/limit"));
        let unauthenticated = app.client.put(&path).json(&json!({"limit": 5})).send().await.unwrap();
        assert_eq!(unauthenticated.status(), 401);
        let wrong = app.client.put(&path).bearer_auth("not-the-admin-token").json(&json!({"limit": 5})).send().await.unwrap();
        assert_eq!(wrong.status(), 403);
        for bad in [json!({"limit": 0}), json!({"limit": 1001}), json!({"limit": "5"}), json!({}), json!({"limit": 5.5}), json!({"limit": 1e300})] {
            let response = app.client.put(&path).bearer_auth(ADMIN).json(&bad).send().await.unwrap();
            assert_eq!(response.status(), 400, "{bad}");
        }
        // 5.0 is an integer to JSON Schema, and so to a client generated from the document.
        let (status, body) = json(app.client.put(&path).bearer_auth(ADMIN).json(&json!({"limit": 5.0})).send().await.unwrap()).await;
        assert_eq!((status, body), (200, json!({"viewer": format!("user:{user}"), "limit": 5})));
        for _ in 0..5 {
            started_id(start(&app, &user, None).await).await;
        }
        assert_eq!(start(&app, &user, None).await.status(), 429);
        assert_eq!(active(&app, &user).await.1, 5);
        assert_eq!(app.client.delete(&path).bearer_auth(ADMIN).send().await.unwrap().status(), 204);
        assert_eq!(active(&app, &user).await.1, 3);
    }

    async fn a_bare_viewer_in_the_admin_routes_is_a_user(app, with_admin) {
        let user = viewer();
        let (status, body) = json(app.client.put(app.url(&format!("/api/v1/viewers/{user}/limit"))).bearer_auth(ADMIN).json(&json!({"limit": 1})).send().await.unwrap()).await;
        assert_eq!((status, body), (200, json!({"viewer": format!("user:{user}"), "limit": 1})));
        started_id(start(&app, &user, None).await).await;
        assert_eq!(start(&app, &user, None).await.status(), 429, "the limit set for the bare id applies to the user");
        assert_eq!(active(&app, &user).await.1, 1);
        for bad in ["team:x", "ip:not-an-address", "user:"] {
            let response = app.client.put(app.url(&format!("/api/v1/viewers/{bad}/limit"))).bearer_auth(ADMIN).json(&json!({"limit": 2})).send().await.unwrap();
            assert_eq!(response.status(), 400, "{bad}");
        }
        let address = format!("203.0.113.{}", rand_octet());
        let (status, body) = json(app.client.put(app.url(&format!("/api/v1/viewers/ip:{address}/limit"))).bearer_auth(ADMIN).json(&json!({"limit": 2})).send().await.unwrap()).await;
        assert_eq!((status, body["viewer"].clone()), (200, json!(format!("ip:{address}"))));
        assert_eq!(app.client.delete(app.url(&format!("/api/v1/viewers/{user}/limit"))).bearer_auth(ADMIN).send().await.unwrap().status(), 204);
        assert_eq!(active(&app, &user).await.1, 3);
    }

    async fn restarting_an_active_stream_keeps_the_metadata_sent_with_it(app, defaults) {
        let user = viewer();
        let first = json!({"stream_id": "tab-1", "video_name": "intro", "size": 10});
        started_id(start(&app, &user, Some(first)).await).await;
        let (status, renewed) = json(start(&app, &user, Some(json!({"stream_id": "tab-1", "video_name": "chapter 2", "video_playing": true}))).await).await;
        assert_eq!(status, 201, "{renewed}");
        assert_eq!(renewed["stream"]["video_name"], "chapter 2");
        assert_eq!(renewed["stream"]["video_playing"], true);
        let (_, list) = json(app.client.get(app.url("/api/v1/streams")).header("X-User-Id", &user).send().await.unwrap()).await;
        assert_eq!(list["streams"][0]["video_name"], "chapter 2", "{list}");
        // A bare re-start (or a heartbeat) keeps what was sent last.
        let (_, bare) = json(start(&app, &user, Some(json!({"stream_id": "tab-1"}))).await).await;
        assert_eq!(bare["stream"]["video_name"], "chapter 2");
        assert_eq!(heartbeat(&app, &user, "tab-1").await, 200);
        let (_, list) = json(app.client.get(app.url("/api/v1/streams")).header("X-User-Id", &user).send().await.unwrap()).await;
        assert_eq!(list["streams"][0]["video_name"], "chapter 2");
        assert_eq!(list["active_streams"], 1);
    }

    async fn timestamps_have_one_format_on_every_backend(app, defaults) {
        let user = viewer();
        let (_, body) = json(start(&app, &user, None).await).await;
        // RFC 3339, UTC, exactly three fraction digits: 2026-11-22T15:08:06.829Z.
        for field in ["started_at", "expires_at"] {
            let text = body["stream"][field].as_str().unwrap();
            let bytes = text.as_bytes();
            assert_eq!(bytes.len(), 24, "{field}: {text}");
            assert_eq!((bytes[4], bytes[10], bytes[19], bytes[23]), (b'-', b'T', b'.', b'Z'), "{field}: {text}");
            assert!(bytes[20..23].iter().all(u8::is_ascii_digit), "{field}: {text}");
        }
    }

    async fn without_an_admin_token_configured_the_admin_routes_are_refused(app, defaults) {
        let path = app.url("/api/v1/viewers/user:someone/limit");
        let response = app.client.put(&path).bearer_auth(ADMIN).json(&json!({"limit": 5})).send().await.unwrap();
        assert_eq!(response.status(), 403);
    }
}

fn rand_octet() -> u8 {
    (uuid::Uuid::new_v4().as_u128() % 250) as u8 + 1
}

/// What the module records in the audit log.
mod audited {
    use super::*;
    use crate::on_every_backend_each;

    fn audited_five_minute_lease(settings: &mut ServeSettings) {
        with_admin(settings);
        five_minute_lease(settings);
    }

    fn unaudited(settings: &mut ServeSettings) {
        settings.audit.modules.audit_modules = vec!["none".into()];
    }

    /// The log's record of `user`'s streams, oldest first, once it holds `expected`
    /// records or five seconds have passed: with Redis leases a record follows its
    /// answer.
    async fn recorded_once(app: &TestApp, user: &str, expected: usize) -> Vec<Value> {
        for _ in 0..50 {
            let events = recorded(app, user).await;
            if events.len() >= expected {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        recorded(app, user).await
    }

    /// The log's record of `user`'s streams, oldest first.
    async fn recorded(app: &TestApp, user: &str) -> Vec<Value> {
        let (status, page) = json(
            app.get("/api/events?component=studyhall.streams&order=asc&limit=1000")
                .await,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let viewer = format!("user:{user}");
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|event| event["data"]["viewer"] == viewer.as_str())
            .cloned()
            .collect()
    }

    fn messages(events: &[Value]) -> Vec<String> {
        events
            .iter()
            .map(|e| e["message"].as_str().unwrap().to_owned())
            .collect()
    }

    on_every_stream_backend! {
        async fn each_start_refusal_end_and_limit_change_is_recorded_with_its_counts(app, audited_five_minute_lease) {
            let user = viewer();
            let path = app.url(&format!("/api/v1/viewers/user:{user}/limit"));
            assert_eq!(app.client.put(&path).bearer_auth(ADMIN).json(&json!({"limit": 2})).send().await.unwrap().status(), 200);
            let first = started_id(start(&app, &user, None).await).await;
            started_id(start(&app, &user, None).await).await;
            assert_eq!(start(&app, &user, None).await.status(), 429);
            assert_eq!(end(&app, &user, &first).await, 204);
            let events = recorded_once(&app, &user, 5).await;
            assert_eq!(
                messages(&events),
                ["stream.limit_changed", "stream.started", "stream.started", "stream.refused", "stream.ended"]
            );
            assert_eq!(events[0]["data"]["limit"], 2);
            assert_eq!(events[0]["data"]["actor"]["kind"], "operator");
            assert_eq!((events[2]["data"]["active"].as_i64(), events[2]["data"]["limit"].as_i64()), (Some(2), Some(2)));
            assert_eq!((events[3]["data"]["active"].as_i64(), events[3]["data"]["limit"].as_i64()), (Some(2), Some(2)));
            assert!(events[3]["data"]["retry_after_us"].as_i64().unwrap() > 0);
            assert_eq!(events[4]["data"]["stream"], first.as_str());
            assert_eq!(events[4]["data"]["active"], 1);
            assert_eq!(events[1]["data"]["actor"]["id"], format!("user:{user}"));
        }

        async fn concurrent_starts_leave_exactly_one_record_per_decision(app, defaults) {
            // Twenty starts at once against the default limit of three: whatever order they
            // are decided in, the log holds three allowed and seventeen refused.
            let user = viewer();
            let starts: Vec<_> = (0..20).map(|_| start(&app, &user, None)).collect();
            let statuses: Vec<u16> = futures_util::future::join_all(starts)
                .await
                .iter()
                .map(|r| r.status().as_u16())
                .collect();
            assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 3, "{statuses:?}");
            let events = recorded_once(&app, &user, 20).await;
            let started = events.iter().filter(|e| e["message"] == "stream.started").count();
            let refused = events.iter().filter(|e| e["message"] == "stream.refused").count();
            assert_eq!((started, refused), (3, 17));
        }

        async fn a_stream_kicked_to_admit_another_is_recorded_before_the_start_that_did_it(app, kick_oldest) {
            let user = viewer();
            for id in ["a", "b", "c", "d"] {
                started_id(start(&app, &user, Some(json!({"stream_id": id}))).await).await;
            }
            let events = recorded_once(&app, &user, 5).await;
            assert_eq!(
                messages(&events),
                ["stream.started", "stream.started", "stream.started", "stream.kicked", "stream.started"]
            );
            assert_eq!((&events[3]["data"]["stream"], &events[3]["data"]["replaced_by"]), (&json!("a"), &json!("d")));
            assert_eq!(events[4]["data"]["kicked"], json!(["a"]));
            assert_eq!((events[4]["data"]["active"].as_i64(), events[4]["data"]["limit"].as_i64()), (Some(3), Some(3)));
        }

        async fn a_devices_replaced_stream_is_recorded_as_replaced(app, defaults) {
            let user = viewer();
            for id in ["tv-1", "tv-2"] {
                started_id(start(&app, &user, Some(json!({"stream_id": id, "device_id": "tv"}))).await).await;
            }
            let events = recorded_once(&app, &user, 3).await;
            assert_eq!(messages(&events), ["stream.started", "stream.replaced", "stream.started"]);
            assert_eq!((&events[1]["data"]["stream"], &events[1]["data"]["replaced_by"]), (&json!("tv-1"), &json!("tv-2")));
            assert_eq!(events[1]["data"]["device"], "tv");
            assert_eq!((&events[2]["data"]["replaced"], &events[2]["data"]["kicked"]), (&json!(["tv-1"]), &json!([])));
        }

        async fn a_dry_run_records_what_the_policy_would_have_done_with_the_start(app, dry_run_of_kick_oldest) {
            let user = viewer();
            for id in ["a", "b", "c", "d"] {
                started_id(start(&app, &user, Some(json!({"stream_id": id}))).await).await;
            }
            let events = recorded_once(&app, &user, 4).await;
            assert_eq!(messages(&events), ["stream.started"; 4]);
            assert_eq!(events[3]["data"]["dry_run"], json!({"would": "kick_oldest", "would_end": ["a"]}));
            assert_eq!(events[2]["data"].get("dry_run"), None);
        }

        async fn with_streams_auditing_off_nothing_is_recorded(app, unaudited) {
            let user = viewer();
            started_id(start(&app, &user, None).await).await;
            assert!(recorded(&app, &user).await.is_empty());
        }
    }

    /// Expiry is seen by the SQL backends only.
    mod expiry {
        use super::*;

        on_every_backend_each! {
            async fn a_lease_that_expires_unended_is_recorded_as_expired(app, five_minute_lease) {
                let user = viewer();
                let id = started_id(start(&app, &user, None).await).await;
                app.clock.advance(LEASE + Duration::from_secs(1));
                // The sweeper sleeps on the server's clock: it wakes when the clock moves.
                for _ in 0..100 {
                    if messages(&recorded(&app, &user).await).contains(&"stream.expired".to_owned()) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let events = recorded(&app, &user).await;
                assert_eq!(messages(&events), ["stream.started", "stream.expired"]);
                assert_eq!(events[1]["data"]["stream"], id.as_str());
                assert_eq!(events[1]["data"]["actor"]["kind"], "system");
                // An expired lease stays expired: it cannot be ended, and its slot is free.
                assert_eq!(end(&app, &user, &id).await, 404);
                assert_eq!(active(&app, &user).await.0.len(), 0);
            }
        }
    }
}
