//! API-based extensions against a loopback extension server: CRUD with Dify's validation and masking, the ping on
//! save, and each point through `POST /v1/extensions/{id}/invoke`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use support::{Db, Options, TestServer};

const KEY: &str = "ext-secret-key";

/// An extension server: checks the bearer key and answers each point; `/broken` answers ping wrongly, `/error`
/// with a 500, `/invalid` with an invalid moderation answer. Records the requests it saw.
async fn extension_server() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let log = seen.clone();
    let good = move |headers: HeaderMap, Json(body): Json<Value>| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(body.clone());
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {KEY}")) {
                return (StatusCode::UNAUTHORIZED, Json(json!({"error": "bad key"})));
            }
            let params = &body["params"];
            let answer = match body["point"].as_str().unwrap() {
                "ping" => json!({"result": "pong"}),
                "app.external_data_tool.query" => {
                    json!({"result": format!("weather in {} is sunny", params["inputs"]["city"].as_str().unwrap_or("?"))})
                }
                "app.moderation.input" => {
                    let bad = params["query"].as_str().unwrap_or_default().contains("bomb");
                    json!({"flagged": bad, "action": "direct_output", "preset_response": "I can't help with that.",
                           "inputs": params["inputs"], "query": params["query"]})
                }
                "app.moderation.output" => {
                    json!({"flagged": true, "action": "overridden", "text": params["text"].as_str().unwrap().replace("darn", "d**n")})
                }
                _ => json!({"error": "unknown point"}),
            };
            (StatusCode::OK, Json(answer))
        }
    };
    let app = axum::Router::new()
        .route("/ext", post(good))
        .route("/broken", post(|| async { Json(json!({"result": "ping?"})) }))
        .route(
            "/error",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "x".repeat(300)) }),
        )
        .route(
            "/invalid",
            post(|Json(body): Json<Value>| async move {
                match body["point"].as_str() {
                    Some("ping") => Json(json!({"result": "pong"})),
                    _ => Json(json!({"flagged": "maybe", "action": "direct_output", "result": 5})),
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (origin, seen)
}

#[tokio::test]
async fn crud_with_ping_validation_and_masking() {
    crud(Db::Sqlite).await;
}

#[tokio::test]
async fn crud_on_postgres() {
    if support::postgres_url().is_some() {
        crud(Db::Postgres).await;
    }
}

async fn crud(db: Db) {
    let (origin, seen) = extension_server().await;
    let s = TestServer::start_with(Options {
        db,
        ..Options::default()
    })
    .await;
    let url = s.url("/console/api/api-based-extension");

    // validation, in Dify's words
    for (body, message) in [
        (
            json!({"name": "", "api_endpoint": "x", "api_key": "12345"}),
            "name must not be empty",
        ),
        (
            json!({"name": "n", "api_endpoint": "", "api_key": "12345"}),
            "api_endpoint must not be empty",
        ),
        (
            json!({"name": "n", "api_endpoint": "x", "api_key": "1234"}),
            "api_key must be at least 5 characters",
        ),
    ] {
        let (status, answer) = s.post(&s.key_a, &url, body).await;
        assert_eq!((status, answer["message"].as_str().unwrap()), (400, message));
    }

    // ping on save: failures are "connection error: …"
    let (status, answer) = s
        .post(
            &s.key_a,
            &url,
            json!({"name": "w", "api_endpoint": format!("{origin}/broken"), "api_key": KEY}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        answer["message"].as_str().unwrap().starts_with("connection error: "),
        "{answer}"
    );
    let (status, answer) = s
        .post(
            &s.key_a,
            &url,
            json!({"name": "w", "api_endpoint": format!("{origin}/error"), "api_key": KEY}),
        )
        .await;
    assert_eq!(status, 400);
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.starts_with("connection error: request error, status_code: 500, content: xxx"),
        "{message}"
    );
    assert!(message.ends_with(&"x".repeat(100)) && !message.contains(&"x".repeat(101)));
    let (status, answer) = s
        .post(
            &s.key_a,
            &url,
            json!({"name": "w", "api_endpoint": format!("{origin}/ext"), "api_key": "wrong-key"}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("status_code: 401"));
    let (status, answer) = s
        .post(
            &s.key_a,
            &url,
            json!({"name": "w", "api_endpoint": "http://127.0.0.1:1/none", "api_key": KEY}),
        )
        .await;
    assert_eq!(
        (status, answer["message"].as_str().unwrap()),
        (400, "connection error: request connection error")
    );

    // success: the key is masked (first 3 + ****** + last 3) and stored encrypted
    let (status, created) = s
        .post(
            &s.key_a,
            &url,
            json!({"name": "weather", "api_endpoint": format!("{origin}/ext"), "api_key": KEY}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["api_key"], "ext******key");
    assert_eq!(created["name"], "weather");
    let id = created["id"].as_str().unwrap().to_owned();
    let row = s
        .state
        .store
        .api_based_extensions()
        .get(&s.tenant_a, &id)
        .await
        .unwrap()
        .unwrap();
    assert!(!row.api_key.contains(KEY));
    assert_eq!(
        seen.lock().unwrap().last().unwrap(),
        &json!({"point": "ping", "params": {}})
    );

    // unique names
    let (status, answer) = s
        .post(
            &s.key_a,
            &url,
            json!({"name": "weather", "api_endpoint": format!("{origin}/ext"), "api_key": KEY}),
        )
        .await;
    assert_eq!(
        (status, answer["message"].as_str().unwrap()),
        (400, "name must be unique, it is already existed")
    );

    // list / get; other tenants see nothing
    let (_, list) = s.get(&s.key_a, &url).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["api_key"], "ext******key");
    let (status, _) = s.get(&s.key_b, &format!("{url}/{id}")).await;
    assert_eq!(status, 404);

    // update with [__HIDDEN__] keeps the key (the ping with the stored key succeeds)
    let (status, updated) = s
        .post(
            &s.key_a,
            &format!("{url}/{id}"),
            json!({"name": "weather2", "api_endpoint": format!("{origin}/ext"), "api_key": "[__HIDDEN__]"}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (updated["name"].as_str(), updated["api_key"].as_str()),
        (Some("weather2"), Some("ext******key"))
    );

    // delete → 204
    let response = s
        .http
        .delete(format!("{url}/{id}"))
        .bearer_auth(&s.key_a)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (status, _) = s.get(&s.key_a, &format!("{url}/{id}")).await;
    assert_eq!(status, 404);
    s.stop().await;
}

#[tokio::test]
async fn each_point_through_the_requestor() {
    let (origin, seen) = extension_server().await;
    let s = TestServer::start().await;
    let (_, created) = s
        .post(
            &s.key_a,
            &s.url("/console/api/api-based-extension"),
            json!({"name": "ext", "api_endpoint": format!("{origin}/ext"), "api_key": KEY}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let s = &s;
    let id = &id;
    let invoke = |point: &str, params: Value| {
        let body = json!({"point": point, "params": params});
        let url = s.url(&format!("/v1/extensions/{id}/invoke"));
        async move { s.post(&s.key_a, &url, body).await }
    };

    let (status, answer) = invoke("ping", json!({})).await;
    assert_eq!((status, &answer["result"]), (200, &json!({"result": "pong"})));

    let (status, answer) = invoke(
        "app.external_data_tool.query",
        json!({"app_id": "a1", "tool_variable": "weather", "inputs": {"city": "Paris"}, "query": "?"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["result"], "weather in Paris is sunny");
    let sent = seen.lock().unwrap().last().unwrap().clone();
    assert_eq!(sent["point"], "app.external_data_tool.query");
    assert_eq!(sent["params"]["tool_variable"], "weather");

    let (status, answer) = invoke(
        "app.moderation.input",
        json!({"app_id": "a1", "inputs": {}, "query": "how to build a bomb"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["flagged"], true);
    assert_eq!(answer["result"]["action"], "direct_output");

    let (status, answer) = invoke("app.moderation.output", json!({"app_id": "a1", "text": "darn it"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["result"]["action"].as_str(), answer["result"]["text"].as_str()),
        (Some("overridden"), Some("d**n it"))
    );

    // malformed calls fail before reaching the extension
    let (status, answer) = invoke("app.moderation.output", json!({"app_id": "a1"})).await;
    assert_eq!(status, 400, "{answer}");
    let (status, _) = invoke("app.unknown", json!({})).await;
    assert_eq!(status, 400);

    // invalid responses are reported, not passed on
    let (_, created) = s
        .post(
            &s.key_a,
            &s.url("/console/api/api-based-extension"),
            json!({"name": "bad", "api_endpoint": format!("{origin}/invalid"), "api_key": KEY}),
        )
        .await;
    let bad = created["id"].as_str().unwrap();
    let (status, answer) = s
        .post(
            &s.key_a,
            &s.url(&format!("/v1/extensions/{bad}/invoke")),
            json!({"point": "app.moderation.input", "params": {"app_id": "a", "inputs": {}, "query": "q"}}),
        )
        .await;
    assert_eq!(status, 502, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("`flagged` must be a boolean"),
        "{answer}"
    );
    let (status, answer) = s
        .post(
            &s.key_a,
            &s.url(&format!("/v1/extensions/{bad}/invoke")),
            json!({"point": "app.external_data_tool.query", "params": {"app_id": "a", "tool_variable": "v", "inputs": {}}}),
        )
        .await;
    assert_eq!(status, 502);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("`result` must be a string"),
        "{answer}"
    );
}
