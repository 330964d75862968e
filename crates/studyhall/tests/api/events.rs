use std::collections::HashSet;

use serde_json::{json, Value};

use crate::helpers::{json, TestApp};
use crate::on_every_backend;

fn event(message: &str) -> Value {
    json!({"component": "order", "data": {"age": 20}, "email": "ade@gmail.com",
           "environment": "production", "message": message})
}

async fn post(app: &TestApp, body: &Value) -> Value {
    let (status, stored) = json(app.post_json("/api/events", body).await).await;
    assert_eq!(status, 201, "{stored}");
    stored
}

/// `text` as a query parameter's value.
fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn list(app: &TestApp, query: &str) -> (u16, Value) {
    json(app.get(&format!("/api/events?{query}")).await).await
}

async fn count(app: &TestApp) -> usize {
    let (status, page) = list(app, "limit=1000").await;
    assert_eq!(status, 200);
    page["events"].as_array().map_or(0, Vec::len)
}

/// Asserts a 400 whose `message` and `errors` name `field`, and that nothing was stored.
async fn assert_rejected(app: &TestApp, body: &Value, field: &str, message: &str) {
    let before = count(app).await;
    let (status, problem) = json(app.post_json("/api/events", body).await).await;
    assert_eq!(status, 400, "{body} → {problem}");
    assert_eq!(problem["errors"][field], message, "{body} → {problem}");
    assert!(
        problem["message"]
            .as_str()
            .unwrap_or_default()
            .contains(message),
        "{problem}"
    );
    assert_eq!(problem["detail"], problem["message"]);
    assert_eq!(
        count(app).await,
        before,
        "a rejected request stored something: {body}"
    );
}

pub(crate) fn ids(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Follows `next_cursor` to the end, returning every id in order.
async fn all_pages(app: &TestApp, query: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("{query}&cursor={c}"),
            None => query.to_owned(),
        };
        let (status, page) = list(app, &q).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return seen,
        }
    }
}

on_every_backend! {
    async fn posting_a_valid_event_returns_201_with_the_stored_event(app) {
        let before = time_now();
        let response = app.post_json("/api/events", &event("order failed")).await;
        assert_eq!(response.headers()["content-type"], "application/json");
        let (status, stored) = json(response).await;
        assert_eq!(status, 201);
        assert_eq!(stored["component"], "order");
        assert_eq!(stored["data"], json!({"age": 20}));
        assert_eq!(stored["email"], "ade@gmail.com");
        assert_eq!(stored["environment"], "production");
        assert_eq!(stored["message"], "order failed");
        let id = stored["id"].as_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        // A string of Unix seconds, as the original service answered.
        let created: f64 = stored["created_at"].as_str().unwrap().parse().unwrap();
        assert!(created >= before - 1.0 && created <= time_now() + 1.0, "{created}");
        let (_, page) = list(&app, "").await;
        assert_eq!(page["events"][0], stored);
    }

    async fn the_trailing_slash_paths_behave_like_the_plain_ones(app) {
        let (status, stored) = json(app.post_json("/api/events/", &event("slash")).await).await;
        assert_eq!(status, 201, "{stored}");
        let (status, page) = json(app.get("/api/events/?message=slash").await).await;
        assert_eq!(status, 200);
        assert_eq!(page["events"][0]["id"], stored["id"]);
        for path in ["/api/health", "/api/healthz"] {
            let (status, body) = json(app.get(path).await).await;
            assert_eq!((status, body), (200, json!({"status": "healthy"})));
        }
    }

    async fn data_may_be_any_json_value_and_is_returned_exactly(app) {
        for data in [json!(null), json!([1, "two", {"three": 3}]), json!("text"), json!(4.5), json!({"nested": {"deep": [true]}})] {
            let mut body = event("data");
            body["data"] = data.clone();
            assert_eq!(post(&app, &body).await["data"], data);
        }
        // Key order and spacing survive the round trip: data is stored as sent.
        let raw = r#"{"component":"c","data":{"z": 1, "a": 2},"email":"a@b.io","environment":"e","message":"raw"}"#;
        let text = app.post_raw("/api/events", raw).await.text().await.unwrap();
        assert!(text.contains(r#""data":{"z": 1, "a": 2}"#), "{text}");
    }

    async fn missing_blank_and_overlong_fields_are_rejected_naming_the_field(app) {
        let long = |n: usize| "x".repeat(n);
        let cases = [
            ("component", json!(null), "component is required."),
            ("component", json!("   "), "component must not be blank."),
            ("component", json!(long(513)), "component must be at most 512 characters."),
            ("environment", json!(""), "environment must not be blank."),
            ("environment", json!(long(513)), "environment must be at most 512 characters."),
            ("message", json!(" \t"), "message must not be blank."),
            ("email", json!(null), "email is required."),
        ];
        for (field, value, message) in cases {
            let mut body = event("x");
            if value.is_null() {
                body.as_object_mut().unwrap().remove(field);
            } else {
                body[field] = value;
            }
            assert_rejected(&app, &body, field, message).await;
        }
        let mut body = event("x");
        body.as_object_mut().unwrap().remove("data");
        assert_rejected(&app, &body, "data", "data is required (any JSON value, null included).").await;
        // The limits are inclusive, and hold in any script (the indexes count bytes); a
        // message is stored whole at any length the body allows, and every value exactly
        // as sent.
        let trace = format!(" Traceback:\n{}", "  File \"app.py\", line 1, in handler\n".repeat(10_000));
        let mut body = event(&trace);
        body["component"] = json!("漢".repeat(512));
        body["environment"] = json!(format!(" {} ", "é".repeat(510)));
        let stored = post(&app, &body).await;
        for field in ["component", "environment", "message"] {
            assert_eq!(stored[field], body[field], "{field} as sent");
        }
        let (_, page) = list(&app, &format!("environment={}", urlencode(body["environment"].as_str().unwrap()))).await;
        assert_eq!(page["events"][0]["message"].as_str(), Some(trace.as_str()), "read back whole");
    }

    async fn an_invalid_email_gets_the_seeds_message(app) {
        for email in ["ade", "ade@gmail", "@gmail.com", "a b@c.com", "ade@@gmail.com", ""] {
            let mut body = event("x");
            body["email"] = json!(email);
            assert_rejected(&app, &body, "email", "Invalid email address.").await;
        }
    }

    async fn every_invalid_field_is_reported_at_once(app) {
        let (status, problem) = json(app.post_json("/api/events", &json!({"data": 1, "email": "bad"})).await).await;
        assert_eq!(status, 400);
        let errors = problem["errors"].as_object().unwrap();
        let fields: HashSet<&str> = errors.keys().map(String::as_str).collect();
        assert_eq!(fields, HashSet::from(["component", "environment", "message", "email"]));
        assert_eq!(problem["type"], "about:blank");
        assert_eq!(problem["title"], "Bad Request");
        assert_eq!(problem["status"], 400);
    }

    async fn wrong_json_types_are_rejected_naming_the_field(app) {
        for (field, value) in [("component", json!(5)), ("email", json!(["a@b.io"])), ("message", json!({"m": 1})), ("environment", json!(true))] {
            let mut body = event("x");
            body[field] = value;
            let before = count(&app).await;
            let (status, problem) = json(app.post_json("/api/events", &body).await).await;
            assert_eq!(status, 400, "{problem}");
            assert!(problem["errors"][field].is_string(), "{problem}");
            assert!(problem["message"].as_str().unwrap().starts_with(field), "{problem}");
            assert_eq!(count(&app).await, before);
        }
    }

    async fn malformed_and_non_object_bodies_are_400_problems(app) {
        for raw in ["{nope", "", "   ", "[1, 2]", "\"text\"", "null", "{\"component\": \"a\"", "42"] {
            let response = app.post_raw("/api/events", raw).await;
            assert_eq!(response.headers()["content-type"], "application/problem+json");
            let (status, problem) = json(response).await;
            assert_eq!(status, 400, "{raw:?} → {problem}");
            assert!(problem["message"].as_str().unwrap().contains("JSON"), "{raw:?} → {problem}");
        }
        assert_eq!(count(&app).await, 0);
    }

    async fn a_body_over_one_mebibyte_is_refused_with_413(app) {
        let mut body = event("big");
        body["data"] = json!("x".repeat(1024 * 1024));
        let (status, problem) = json(app.post_json("/api/events", &body).await).await;
        assert_eq!(status, 413, "{problem}");
        assert!(problem["message"].as_str().unwrap().contains("1 MiB"));
        assert_eq!(count(&app).await, 0);
    }

    async fn exact_filters_combine_with_and(app) {
        for (component, environment, email) in [("order", "production", "a@x.io"), ("order", "staging", "a@x.io"), ("billing", "production", "b@x.io")] {
            post(&app, &json!({"component": component, "environment": environment, "email": email, "data": null, "message": "m"})).await;
        }
        let matching = |query: &'static str| {
            let app = &app;
            async move {
                let (status, page) = list(app, query).await;
                assert_eq!(status, 200);
                page["events"].as_array().unwrap().iter()
                    .map(|e| format!("{}/{}/{}", e["component"].as_str().unwrap(), e["environment"].as_str().unwrap(), e["email"].as_str().unwrap()))
                    .collect::<HashSet<_>>()
            }
        };
        assert_eq!(matching("component=order").await.len(), 2);
        assert_eq!(matching("environment=production").await.len(), 2);
        assert_eq!(matching("email=b%40x.io").await, HashSet::from(["billing/production/b@x.io".to_owned()]));
        assert_eq!(matching("component=order&environment=staging").await, HashSet::from(["order/staging/a@x.io".to_owned()]));
        assert!(matching("component=order&email=b%40x.io").await.is_empty());
        assert!(matching("component=Order").await.is_empty(), "exact match is case-sensitive");
    }

    async fn the_message_filter_is_a_case_sensitive_substring(app) {
        for message in ["order failed", "payment FAILED", "failed to ship", "ok", "50% off_now", "glob*chars?[x]"] {
            post(&app, &event(message)).await;
        }
        let messages = |query: String| {
            let app = &app;
            async move {
                let (status, page) = list(app, &query).await;
                assert_eq!(status, 200, "{page}");
                let mut found: Vec<String> = page["events"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap().to_owned()).collect();
                found.sort();
                found
            }
        };
        assert_eq!(messages("message=failed".into()).await, ["failed to ship", "order failed"]);
        assert_eq!(messages("message=FAILED".into()).await, ["payment FAILED"]);
        assert_eq!(messages("message=ok".into()).await, ["ok"]);
        assert_eq!(messages("message=o".into()).await.len(), 5, "short substrings work too");
        // Wildcard characters of LIKE and GLOB are literal.
        assert_eq!(messages("message=%25".into()).await, ["50% off_now"]);
        assert_eq!(messages("message=_".into()).await, ["50% off_now"]);
        assert_eq!(messages("message=*chars%3F%5B".into()).await, ["glob*chars?[x]"]);
        assert!(messages("message=%5D%5B".into()).await.is_empty());
        assert_eq!(messages("message=failed&component=order".into()).await.len(), 2);
    }

    async fn a_search_finds_the_same_rows_whichever_way_it_reads_them(app) {
        // Enough events that a text can be common (each of its trigrams in over 10 000
        // messages, so the search walks the exact filters' rows and tests each) or
        // rare (the trigram index is walked instead); a few of another component, fewer
        // than the trigrams of their text would find.
        let posted = post_many(&app, 10_050, |n| if n % 1000 == 7 { format!("needle {n}") } else { format!("hay bales here {n}") }).await;
        assert_eq!(posted, 10_050);
        for n in 0..3 {
            let mut other = event(&format!("hay bales here, sorted {n}"));
            other["component"] = json!("sorting");
            post(&app, &other).await;
        }
        let common = "message=hay%20bales%20here&limit=1000";
        assert_eq!(all_pages(&app, common).await.len(), 10_042, "common text, no exact filter");
        let among_orders = all_pages(&app, &format!("{common}&component=order")).await;
        assert_eq!(among_orders.len(), 10_039, "common text among many exact matches");
        let mut newest_first = all_pages(&app, &format!("{common}&component=order&order=desc")).await;
        newest_first.reverse();
        assert_eq!(newest_first, among_orders);
        let sorted = all_pages(&app, "message=hay&component=sorting&limit=2").await;
        assert_eq!(sorted.len(), 3, "fewer exact matches than the text's trigrams find");
        let mut newest_first = all_pages(&app, "message=hay&component=sorting&limit=2&order=desc").await;
        newest_first.reverse();
        assert_eq!(newest_first, sorted);
        assert_eq!(all_pages(&app, "message=needle&component=order&limit=4").await.len(), 11, "rare text among many exact matches");
        assert!(all_pages(&app, "message=needle&component=sorting").await.is_empty());
        let found = all_pages(&app, "message=needle&limit=4").await;
        assert_eq!(found.len(), 11);
        let (_, page) = list(&app, "message=needle%201007").await;
        assert_eq!(page["events"].as_array().unwrap().len(), 1);
        // "needle 7" is older than the newest 10 000 events: only the index finds it.
        let (_, page) = list(&app, "message=needle%207&order=desc").await;
        let messages: Vec<&str> = page["events"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
        assert_eq!(messages, ["needle 7007", "needle 7"]);
        assert_eq!(all_pages(&app, "message=hay&limit=1000").await.len(), 10_042);
        // Pages in either order hold every match once, newest or oldest first.
        let mut newest_first = all_pages(&app, "message=needle&limit=3&order=desc").await;
        newest_first.reverse();
        assert_eq!(newest_first, found);
        // Text whose first trigrams are in every message and a later one in few.
        let (_, page) = list(&app, "message=here%205005").await;
        let messages: Vec<&str> = page["events"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
        assert_eq!(messages, ["hay bales here 5005"]);
        // Rare trigrams in the text, but not the text itself; and case counts.
        assert!(all_pages(&app, "message=needle%207%20hay").await.is_empty());
        assert!(all_pages(&app, "message=Needle").await.is_empty());
        // Quotes and GLOB's metacharacters in the text are literal.
        assert!(all_pages(&app, "message=ne%22e*dle").await.is_empty());
    }

    async fn date_filters_accept_the_three_formats(app) {
        let first = post(&app, &event("first")).await;
        let second = post(&app, &event("second")).await;
        let instant = |seconds: f64| rfc3339(seconds);
        let second_at = instant(second["created_at"].as_str().unwrap().parse().unwrap());
        let (_, page) = list(&app, &format!("from_date={second_at}")).await;
        assert_eq!(ids(&page), [second["id"].as_str().unwrap()]);
        let (_, page) = list(&app, &format!("to_date={second_at}")).await;
        assert_eq!(ids(&page), [first["id"].as_str().unwrap()]);

        let (today_us, today_iso, tomorrow_iso) = today();
        let (_, page) = list(&app, &format!("from_date={today_us}")).await;
        assert_eq!(ids(&page).len(), 2, "MM-DD-YYYY is midnight UTC");
        let (_, page) = list(&app, &format!("from_date={today_iso}&to_date={tomorrow_iso}")).await;
        assert_eq!(ids(&page).len(), 2);
        let (_, page) = list(&app, &format!("from_date={tomorrow_iso}")).await;
        assert!(ids(&page).is_empty());
    }

    async fn bad_list_parameters_are_400_naming_the_parameter(app) {
        post(&app, &event("x")).await;
        let cases = [
            ("from_date=04/16/2021", "from_date"),
            ("from_date=2021-02-30", "from_date"),
            ("to_date=tomorrow", "to_date"),
            ("from_date=2021-04-17&to_date=2021-04-16", "to_date"),
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=ten", "limit"),
            ("limit=-5", "limit"),
            ("order=sideways", "order"),
            ("cursor=garbage", "cursor"),
        ];
        for (query, field) in cases {
            let response = app.get(&format!("/api/events?{query}")).await;
            assert_eq!(response.headers()["content-type"], "application/problem+json");
            let (status, problem) = json(response).await;
            assert_eq!(status, 400, "{query} → {problem}");
            assert!(problem["errors"][field].is_string(), "{query} → {problem}");
            assert!(problem["message"].as_str().unwrap().contains(field), "{query} → {problem}");
        }
    }

    async fn pages_follow_the_cursor_oldest_first_or_newest_first(app) {
        let mut posted = Vec::new();
        for n in 0..25 {
            posted.push(post(&app, &event(&format!("event {n}"))).await["id"].as_str().unwrap().to_owned());
        }
        let (_, first) = list(&app, "limit=10").await;
        assert_eq!(ids(&first).len(), 10);
        assert!(first["next_cursor"].is_string());
        let newest_first: Vec<String> = posted.iter().rev().cloned().collect();
        // Oldest first unless asked otherwise, as the original listed them.
        assert_eq!(all_pages(&app, "limit=10").await, posted);
        assert_eq!(all_pages(&app, "limit=7&order=asc").await, posted);
        assert_eq!(all_pages(&app, "limit=7&order=desc").await, newest_first);
        assert_eq!(all_pages(&app, "limit=25").await.len(), 25);
        let (_, page) = list(&app, "limit=25").await;
        assert!(page["next_cursor"].is_null(), "an exactly full last page has no next page");
        let (_, page) = list(&app, "").await;
        assert_eq!(ids(&page).len(), 25, "default limit is 100");
    }

    async fn paging_while_events_are_inserted_visits_each_existing_event_once(app) {
        let mut existing = HashSet::new();
        for n in 0..60 {
            existing.insert(post(&app, &event(&format!("old {n}"))).await["id"].as_str().unwrap().to_owned());
        }
        let writer = {
            let (client, url) = (app.client.clone(), app.url("/api/events"));
            tokio::spawn(async move {
                for n in 0..60 {
                    let response = client.post(&url).json(&event(&format!("new {n}"))).send().await.unwrap();
                    assert_eq!(response.status(), 201);
                }
            })
        };
        for order in ["desc", "asc"] {
            let seen = all_pages(&app, &format!("limit=7&order={order}")).await;
            let unique: HashSet<&String> = seen.iter().collect();
            assert_eq!(unique.len(), seen.len(), "an event was visited twice ({order})");
            assert!(existing.iter().all(|id| unique.contains(id)), "an existing event was skipped ({order})");
        }
        writer.await.unwrap();
    }

    async fn idempotency_keys_are_forgotten_after_a_day_and_not_before(app) {
        let send = |key: &'static str, message: &'static str| {
            let request = app.client.post(app.url("/api/events")).header("Idempotency-Key", key).json(&event(message));
            async move { request.send().await.unwrap().status().as_u16() }
        };
        assert_eq!(send("old", "first").await, 201);
        app.clock.advance(std::time::Duration::from_secs(23 * 3600));
        assert_eq!(send("young", "first").await, 201);
        // The old key is 25 hours old, the young one 2: the pruner forgets the first only.
        // It runs every 10 minutes of the clock, counted from when it last finished, which
        // may be after this advance: the loop moves the clock on by more than one period.
        app.clock.advance(std::time::Duration::from_secs(2 * 3600));
        let mut forgotten = false;
        for _ in 0..100 {
            if send("old", "second").await == 201 {
                forgotten = true;
                break;
            }
            app.clock.advance(std::time::Duration::from_secs(15));
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(forgotten, "a key older than a day was still held");
        assert_eq!(send("young", "second").await, 422, "a key younger than a day was forgotten");
    }

    async fn an_idempotent_retry_returns_the_first_response_and_stores_nothing(app) {
        let send = |key: &'static str, body: Value, user: Option<&'static str>| {
            let app = &app;
            async move {
                let mut request = app.client.post(app.url("/api/events")).header("Idempotency-Key", key).json(&body);
                if let Some(user) = user {
                    request = request.header("X-User-Id", user);
                }
                let response = request.send().await.unwrap();
                let replayed = response.headers().get("idempotent-replayed").is_some();
                let (status, body) = json(response).await;
                (status, body, replayed)
            }
        };
        let (status, first, replayed) = send("key-1", event("once"), None).await;
        assert_eq!((status, replayed), (201, false));
        let (status, again, replayed) = send("key-1", event("once"), None).await;
        assert_eq!((status, replayed), (201, true));
        assert_eq!(again, first);
        assert_eq!(count(&app).await, 1);

        let (status, problem, _) = send("key-1", event("a different body"), None).await;
        assert_eq!(status, 422, "{problem}");
        assert!(problem["message"].as_str().unwrap().contains("Idempotency-Key"));
        assert_eq!(count(&app).await, 1);

        // Keys belong to the caller that used them.
        let (status, other, _) = send("key-1", event("once"), Some("8a4b2c3d-0000-4000-8000-000000000001")).await;
        assert_eq!(status, 201);
        assert_ne!(other["id"], first["id"]);
        assert_eq!(count(&app).await, 2);
    }

    async fn concurrent_requests_with_one_key_store_one_event(app) {
        let attempts = (0..20).map(|_| {
            let (client, url) = (app.client.clone(), app.url("/api/events"));
            tokio::spawn(async move {
                let response = client.post(&url).header("Idempotency-Key", "race").json(&event("race")).send().await.unwrap();
                json(response).await
            })
        });
        let mut ids = HashSet::new();
        for attempt in attempts {
            let (status, body) = attempt.await.unwrap();
            assert_eq!(status, 201, "{body}");
            ids.insert(body["id"].as_str().unwrap().to_owned());
        }
        assert_eq!(ids.len(), 1, "every retry must see the one stored event");
        assert_eq!(count(&app).await, 1);
    }

    async fn an_unusable_idempotency_key_is_400(app) {
        let response = app.client.post(app.url("/api/events")).header("Idempotency-Key", "k".repeat(256)).json(&event("x")).send().await.unwrap();
        let (status, problem) = json(response).await;
        assert_eq!(status, 400);
        assert!(problem["message"].as_str().unwrap().contains("Idempotency-Key"));
        assert_eq!(count(&app).await, 0);
    }

    async fn concurrent_posts_are_each_stored_once(app) {
        let posts = (0..100).map(|n| {
            let (client, url) = (app.client.clone(), app.url("/api/events"));
            tokio::spawn(async move {
                let (status, body) = json(client.post(&url).json(&event(&format!("c{n}"))).send().await.unwrap()).await;
                assert_eq!(status, 201, "{body}");
                body["id"].as_str().unwrap().to_owned()
            })
        });
        let mut acknowledged = HashSet::new();
        for post in posts {
            acknowledged.insert(post.await.unwrap());
        }
        let stored: HashSet<String> = all_pages(&app, "limit=1000").await.into_iter().collect();
        assert_eq!(acknowledged.len(), 100);
        assert_eq!(stored, acknowledged);
    }
}

/// Posts `n` events, 32 at a time, with messages from `message`; returns how many got 201.
async fn post_many(app: &TestApp, n: usize, message: impl Fn(usize) -> String) -> usize {
    use futures_util::StreamExt;
    let url = app.url("/api/events");
    // 64 in flight: the server commits them in groups, as it would under real load.
    futures_util::stream::iter((0..n).map(|i| {
        let post = app.client.post(&url).json(&event(&message(i)));
        async move { post.send().await.map(|r| r.status().as_u16()) }
    }))
    .buffer_unordered(64)
    .filter(|status| std::future::ready(matches!(status, Ok(201))))
    .count()
    .await
}

fn time_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// RFC 3339 with microseconds, URL-safe (`+00:00` written as `Z`).
fn rfc3339(seconds: f64) -> String {
    let micros = (seconds * 1_000_000.0).round() as i128;
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(micros * 1000).unwrap();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        at.month() as u8,
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

/// Today as `MM-DD-YYYY` and `YYYY-MM-DD`, and tomorrow as `YYYY-MM-DD` (UTC).
fn today() -> (String, String, String) {
    let now = time::OffsetDateTime::now_utc();
    let tomorrow = now + time::Duration::days(1);
    (
        format!(
            "{:02}-{:02}-{:04}",
            now.month() as u8,
            now.day(),
            now.year()
        ),
        format!(
            "{:04}-{:02}-{:02}",
            now.year(),
            now.month() as u8,
            now.day()
        ),
        format!(
            "{:04}-{:02}-{:02}",
            tomorrow.year(),
            tomorrow.month() as u8,
            tomorrow.day()
        ),
    )
}

/// Idempotency keys belong to the caller as the rest of the service knows it.
mod scoped_keys {
    use super::*;
    use crate::on_every_backend_with;

    const SECRET: &str = "events-test-secret-0123456789";
    const USER: &str = "9c1b2f8e-6d0a-4a2b-8a57-0b7b0e5d8f11";

    fn token(sub: &str) -> String {
        studyhall::auth::mint_hs256(
            SECRET,
            "sub",
            sub,
            None,
            std::time::Duration::from_secs(600),
        )
        .unwrap()
    }

    async fn keyed(app: &TestApp, token: Option<&str>, user: Option<&str>) -> (u16, Value) {
        let mut request = app
            .client
            .post(app.url("/api/events"))
            .header("Idempotency-Key", "scoped")
            .json(&event("scoped"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(user) = user {
            request = request.header("X-User-Id", user);
        }
        json(request.send().await.unwrap()).await
    }

    on_every_backend_with! {
        |settings: &mut studyhall::config::ServeSettings| settings.auth.jwt_secret = Some(SECRET.parse().unwrap());

        async fn a_token_and_its_own_x_user_id_share_keys_and_other_users_do_not(app) {
            let (status, first) = keyed(&app, Some(&token(USER)), None).await;
            assert_eq!(status, 201);
            let (_, same) = keyed(&app, None, Some(&USER.to_uppercase())).await;
            assert_eq!(same["id"], first["id"], "the same caller, by token then by header");
            let (_, other) = keyed(&app, Some(&token("someone-else")), None).await;
            assert_ne!(other["id"], first["id"]);
            let (status, _) = keyed(&app, Some(&token(USER)), Some("someone-else")).await;
            assert_eq!(status, 403, "a token and a header that disagree");
            assert_eq!(count(&app).await, 2);
        }
    }
}

mod untrusted_headers {
    use super::*;
    use crate::on_every_backend_with;

    on_every_backend_with! {
        |settings: &mut studyhall::config::ServeSettings| settings.identity.trust_identity_headers = false;

        async fn an_untrusted_x_user_id_does_not_scope_keys(app) {
            let send = |user: &'static str| {
                let request = app.client.post(app.url("/api/events")).header("Idempotency-Key", "k").header("X-User-Id", user).json(&event("untrusted"));
                async move { json(request.send().await.unwrap()).await }
            };
            let (_, a) = send("alice").await;
            let (_, b) = send("bob").await;
            assert_eq!(a["id"], b["id"], "without trust, both requests come from nobody in particular");
        }
    }
}
