//! The server over real HTTP on loopback: two tenants, credentials, invocation, bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::{Db, Options, TestServer, first_text, postgres_url};

/// Tenant A's credentials are encrypted, masked, used by A's invocations, and invisible to tenant B.
async fn tenant_isolation(db: Db) {
    let s = TestServer::start_with(Options {
        db,
        ..Options::default()
    })
    .await;
    let keyed = |path: &str| s.console(&format!("/tool-provider/builtin/keyed{path}"));

    let (status, body) = s
        .post(
            &s.key_a,
            &keyed("/add"),
            json!({"credentials": {"api_key": "sk-tenant-a-123456"}}),
        )
        .await;
    assert_eq!((status, &body), (200, &json!({"result": "success"})));

    // Masked in the list, default first, name generated as Dify does.
    let (status, list) = s.get(&s.key_a, &keyed("/credentials")).await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["name"], "API KEY 1");
    assert_eq!(list[0]["credentials"]["api_key"], "sk**************56");
    assert_eq!(list[0]["credentials"]["region"], "eu", "defaults are filled in");
    assert_eq!(list[0]["is_default"], true);
    let credential_id = list[0]["id"].as_str().unwrap().to_owned();

    // Stored encrypted in Dify's HYBRID format: base64 of b"HYBRID:" + wrapped key + nonce + tag + ciphertext.
    let row = s
        .state
        .store
        .builtin_credentials()
        .get_by_id(&s.tenant_a, &credential_id)
        .await
        .unwrap()
        .unwrap();
    let stored = row.encrypted_credentials["api_key"].as_str().unwrap();
    let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, stored).unwrap();
    assert!(raw.starts_with(b"HYBRID:"), "{stored}");
    assert_eq!(raw.len(), 7 + 256 + 16 + 16 + "sk-tenant-a-123456".len());
    assert_eq!(
        row.encrypted_credentials["region"], "eu",
        "only secret-input fields are encrypted"
    );

    // A's invocation sees A's decrypted key.
    let (status, body) = s.invoke(&s.key_a, "keyed", "whoami", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        first_text(&body),
        format!("tenant={} key=sk-tenant-a-123456 region=eu", s.tenant_a)
    );

    // B sees no credentials, cannot invoke with A's, and cannot touch A's credential by id.
    let (_, list_b) = s.get(&s.key_b, &keyed("/credentials")).await;
    assert_eq!(list_b, json!([]));
    let (status, body) = s.invoke(&s.key_b, "keyed", "whoami", json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "credentials_missing");
    let (status, _) = s
        .post(
            &s.key_b,
            &s.url("/v1/tools/invoke"),
            json!({"provider_type": "builtin", "provider_id": "keyed", "tool": "whoami", "credential_id": credential_id}),
        )
        .await;
    assert_eq!(status, 404, "B cannot use A's credential id");
    for (path, body) in [
        ("/update", json!({"credential_id": credential_id, "name": "stolen"})),
        ("/delete", json!({"credential_id": credential_id})),
        ("/default-credential", json!({"id": credential_id})),
    ] {
        let (status, body) = s.post(&s.key_b, &keyed(path), body).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    // B's key cannot be pointed at A's tenant.
    let response = s
        .http
        .get(keyed("/credentials"))
        .bearer_auth(&s.key_b)
        .header("X-Tenant-Id", &s.tenant_a)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // B's provider listing shows keyed as not authorized; A's as authorized.
    let (_, providers_b) = s.get(&s.key_b, &s.console("/tool-providers?type=builtin")).await;
    let keyed_b = providers_b
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "keyed")
        .unwrap();
    assert_eq!(keyed_b["is_team_authorization"], false);
    let (_, providers_a) = s.get(&s.key_a, &s.console("/tools/builtin")).await;
    let keyed_a = providers_a
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "keyed")
        .unwrap();
    assert_eq!(keyed_a["is_team_authorization"], true);
    assert_eq!(keyed_a["team_credentials"]["api_key"], "sk**************56");

    // Tenant keys cannot use admin routes.
    let (status, _) = s.get(&s.key_a, &s.url("/v1/tenants")).await;
    assert_eq!(status, 403);
    s.stop().await;
}

#[tokio::test]
async fn tenant_isolation_sqlite() {
    tenant_isolation(Db::Sqlite).await;
}

#[tokio::test]
async fn tenant_isolation_postgres() {
    if postgres_url().is_some() {
        tenant_isolation(Db::Postgres).await;
    }
}

#[tokio::test]
async fn credential_lifecycle() {
    let s = TestServer::start().await;
    let keyed = |path: &str| s.console(&format!("/tool-provider/builtin/keyed{path}"));
    let key = &s.key_a;

    assert_eq!(
        s.post(
            key,
            &keyed("/add"),
            json!({"credentials": {"api_key": "first-key-0001"}})
        )
        .await
        .0,
        200
    );
    let (status, _) = s
        .post(
            key,
            &keyed("/add"),
            json!({"credentials": {"api_key": "second-key-0002", "region": "us"}}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, list) = s.get(key, &keyed("/credentials")).await;
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["API KEY 1", "API KEY 2"]);
    let first = list[0]["id"].as_str().unwrap().to_owned();
    let second = list[1]["id"].as_str().unwrap().to_owned();

    // Names are unique per provider; remote validation failures are reported.
    let (status, body) = s
        .post(
            key,
            &keyed("/add"),
            json!({"credentials": {"api_key": "x-123456"}, "name": "API KEY 1"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("the credential name 'API KEY 1' is already used")
    );
    let (status, body) = s
        .post(
            key,
            &keyed("/add"),
            json!({"credentials": {"api_key": "rejected-by-remote"}}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("rejected this API key"),
        "{body}"
    );
    let (status, body) = s
        .post(key, &keyed("/add"), json!({"credentials": {"region": "eu"}}))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("credential \"api_key\" is required"),
        "{body}"
    );
    let (status, body) = s
        .post(
            key,
            &keyed("/add"),
            json!({"credentials": {"api_key": "k-123456", "region": "mars"}}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("\"mars\" is not one of: eu, us"),
        "{body}"
    );

    // Switching the default changes which credential the runtime uses.
    let (_, body) = s.invoke(key, "keyed", "whoami", json!({})).await;
    assert!(first_text(&body).contains("key=first-key-0001"));
    assert_eq!(
        s.post(key, &keyed("/default-credential"), json!({"id": second}))
            .await
            .0,
        200
    );
    let (_, body) = s.invoke(key, "keyed", "whoami", json!({})).await;
    assert!(first_text(&body).contains("key=second-key-0002 region=us"), "{body}");

    // [__HIDDEN__] keeps the stored secret while other fields change; rename works.
    let (status, body) = s
        .post(
            key,
            &keyed("/update"),
            json!({"credential_id": second, "credentials": {"api_key": "[__HIDDEN__]", "region": "eu"}, "name": "prod"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = s.invoke(key, "keyed", "whoami", json!({})).await;
    assert!(first_text(&body).contains("key=second-key-0002 region=eu"), "{body}");
    let (_, list) = s.get(key, &keyed("/credentials")).await;
    assert_eq!(list[0]["name"], "prod");

    // An explicit credential id wins over the default.
    let (_, body) = s
        .post(
            key,
            &s.url("/v1/tools/invoke"),
            json!({"provider_type": "builtin", "provider_id": "keyed", "tool": "whoami", "credential_id": first}),
        )
        .await;
    assert!(first_text(&body).contains("key=first-key-0001"), "{body}");

    // Delete: the remaining credential becomes the one in use.
    assert_eq!(
        s.post(key, &keyed("/delete"), json!({"credential_id": second})).await.0,
        200
    );
    let (_, body) = s.invoke(key, "keyed", "whoami", json!({})).await;
    assert!(first_text(&body).contains("key=first-key-0001"), "{body}");

    // Credential info and schema in Dify's shapes.
    let (_, info) = s.get(key, &keyed("/credential/info")).await;
    assert_eq!(info["supported_credential_types"], json!(["api-key"]));
    assert_eq!(info["credentials"].as_array().unwrap().len(), 1);
    let (_, schema) = s.get(key, &keyed("/credential/schema/api-key")).await;
    assert_eq!(schema[0]["name"], "api_key");
    assert_eq!(schema[0]["type"], "secret-input");
    assert_eq!(schema[1]["options"][1]["value"], "us");

    // Builtin providers without credentials refuse them.
    let (status, body) = s
        .post(
            key,
            &s.console("/tool-provider/builtin/time/add"),
            json!({"credentials": {}}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("does not need credentials"));
    s.stop().await;
}

#[tokio::test]
async fn console_shapes_match_dify() {
    let s = TestServer::start().await;
    let (status, providers) = s.get(&s.key_a, &s.console("/tool-providers")).await;
    assert_eq!(status, 200);
    let ids: Vec<_> = providers
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(&ids[..3], &["code", "time", "webscraper"], "Dify's position file order");
    let time = &providers[1];
    for key in [
        "id",
        "author",
        "name",
        "plugin_id",
        "plugin_unique_identifier",
        "description",
        "icon",
        "icon_dark",
        "label",
        "type",
        "team_credentials",
        "is_team_authorization",
        "allow_delete",
        "tools",
        "labels",
    ] {
        assert!(time.get(key).is_some(), "missing {key} in {time}");
    }
    assert_eq!(time["type"], "builtin");
    assert_eq!(time["allow_delete"], false);
    assert_eq!(time["labels"], json!(["utilities"]));
    assert!(
        time["icon"]
            .as_str()
            .unwrap()
            .ends_with("/console/api/workspaces/current/tool-provider/builtin/time/icon")
    );

    let (status, tools) = s.get(&s.key_a, &s.console("/tool-provider/builtin/time/tools")).await;
    assert_eq!(status, 200);
    let names: Vec<_> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for expected in [
        "current_time",
        "localtime_to_timestamp",
        "timestamp_to_localtime",
        "timezone_conversion",
        "weekday",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    let current = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "current_time")
        .unwrap();
    let tz = current["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "timezone")
        .unwrap();
    assert_eq!(tz["type"], "select");
    assert_eq!(tz["default"], "UTC");
    assert_eq!(
        tz["label"].as_object().unwrap().len(),
        4,
        "I18nObject has all four languages"
    );

    let (status, labels) = s.get(&s.key_a, &s.console("/tool-labels")).await;
    assert_eq!(status, 200);
    assert_eq!(labels.as_array().unwrap().len(), 17);

    let icon = s
        .http
        .get(s.console("/tool-provider/builtin/time/icon"))
        .bearer_auth(&s.key_a)
        .send()
        .await
        .unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    assert!(icon.text().await.unwrap().contains("<svg"));

    let (status, info) = s
        .get(&s.key_a, &s.console("/tool-provider/builtin/webscraper/info"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(info["name"], "webscraper");

    let (status, listing) = s.get(&s.key_a, &s.url("/v1/tools")).await;
    assert_eq!(status, 200);
    assert!(listing.as_array().unwrap().iter().any(|p| p["provider_id"] == "time"));
    s.stop().await;
}

#[tokio::test]
async fn invoke_streams_as_sse() {
    let s = TestServer::start().await;
    assert_eq!(
        s.post(
            &s.key_a,
            &s.console("/tool-provider/builtin/keyed/add"),
            json!({"credentials": {"api_key": "sse-key-1234"}})
        )
        .await
        .0,
        200
    );
    let response = s
        .http
        .post(s.url("/v1/tools/invoke"))
        .bearer_auth(&s.key_a)
        .header("accept", "text/event-stream")
        .json(&json!({"provider_type": "builtin", "provider_id": "keyed", "tool": "whoami", "parameters": {"repeat": "3"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = response.text().await.unwrap();
    let messages: Vec<Value> = body
        .split("\n\n")
        .filter(|e| e.contains("event: message"))
        .map(|e| serde_json::from_str(e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap())
        .collect();
    assert_eq!(messages.len(), 3, "{body}");
    assert_eq!(messages[0]["type"], "text");
    assert!(body.trim_end().ends_with("event: done\ndata: {}"), "{body}");
    s.stop().await;
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let s = TestServer::start().await;
    let key = &s.key_a;

    let (status, body) = s.invoke(key, "nope", "x", json!({})).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("provider_not_found")));
    assert_eq!(body["status"], 404);
    let (status, body) = s.invoke(key, "time", "nope", json!({})).await;
    assert_eq!(status, 404);
    assert!(body["message"].as_str().unwrap().contains("tool \"nope\" not found"));
    let (status, body) = s
        .invoke(
            key,
            "time",
            "weekday",
            json!({"year": "two thousand", "month": 1, "day": 1}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("parameter \"year\" expects number"),
        "{body}"
    );
    let (status, body) = s.invoke(key, "time", "weekday", json!({"month": 1, "day": 1})).await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("missing required parameter \"year\""),
        "{body}"
    );
    let (status, body) = s
        .invoke(key, "time", "current_time", json!({"timezone": "Mars/Olympus"}))
        .await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("allowed values"), "{body}");
    let (status, body) = s
        .post(
            key,
            &s.url("/v1/tools/invoke"),
            json!({"provider_type": "spaceship", "provider_id": "time", "tool": "weekday"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("invalid provider type"),
        "{body}"
    );

    // Malformed JSON, wrong shape, oversized body.
    let malformed = s
        .http
        .post(s.url("/v1/tools/invoke"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body("{\"provider_type\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let body: Value = malformed.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("not valid JSON"), "{body}");
    let (status, body) = s.post(key, &s.url("/v1/tools/invoke"), json!({"tool": 5})).await;
    assert_eq!(status, 422);
    assert!(body["message"].as_str().unwrap().contains("wrong shape"), "{body}");
    let huge = "x".repeat(100_000);
    let (status, body) = s.post(key, &s.url("/v1/tools/invoke"), json!({"padding": huge})).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "payload_too_large");

    // Wrong, missing and admin-only keys.
    let (status, body) = s.get("tp_not-a-real-key", &s.url("/v1/tools")).await;
    assert_eq!(status, 401);
    assert!(body["message"].as_str().unwrap().contains("invalid API key"));
    let response = s.http.get(s.url("/v1/tools")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let (status, body) = s.get(&s.admin_key, &s.url("/v1/tools")).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("X-Tenant-Id"));
    let (status, _) = s.get(key, &s.url("/no/such/route")).await;
    assert_eq!(status, 404);
    let (status, body) = s.get(key, &s.console("/tool-providers?type=spaceship")).await;
    assert_eq!(status, 400, "{body}");

    // Health needs no key; the server still answers after all of the above.
    let health = s.http.get(s.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn admin_key_acts_in_a_named_tenant() {
    let s = TestServer::start().await;
    let response = s
        .http
        .get(s.console("/tool-providers"))
        .bearer_auth(&s.admin_key)
        .header("X-Tenant-Id", &s.tenant_b)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, tenants) = s.get(&s.admin_key, &s.url("/v1/tenants")).await;
    assert_eq!(status, 200);
    assert_eq!(tenants["data"].as_array().unwrap().len(), 3, "default, a and b");
    let (status, keys) = s
        .get(&s.admin_key, &s.url(&format!("/v1/tenants/{}/keys", s.tenant_a)))
        .await;
    assert_eq!(status, 200);
    assert!(keys["data"][0].get("key").is_none(), "keys are never listed in clear");
    s.stop().await;
}

#[tokio::test]
async fn key_rotation_clears_credentials() {
    let s = TestServer::start().await;
    let keyed = s.console("/tool-provider/builtin/keyed/add");
    assert_eq!(
        s.post(&s.key_a, &keyed, json!({"credentials": {"api_key": "rotate-me-1234"}}))
            .await
            .0,
        200
    );
    let pem_before = s
        .state
        .blobs
        .get(&format!("privkeys/{}/private.pem", s.tenant_a))
        .await
        .unwrap();
    let (status, body) = s
        .post(
            &s.admin_key,
            &s.url(&format!("/v1/tenants/{}/rotate-key", s.tenant_a)),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["cleared_credentials"], 1);
    let pem_after = s
        .state
        .blobs
        .get(&format!("privkeys/{}/private.pem", s.tenant_a))
        .await
        .unwrap();
    assert_ne!(pem_before, pem_after);
    assert!(String::from_utf8_lossy(&pem_after).starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let (status, _) = s.invoke(&s.key_a, "keyed", "whoami", json!({})).await;
    assert_eq!(status, 400, "the cleared credential is gone");
    s.stop().await;
}

#[tokio::test]
async fn deleted_tools_are_detected() {
    let s = TestServer::start().await;
    let config = json!({"agent_mode": {"tools": [
        {"provider_type": "builtin", "provider_id": "time", "tool_name": "weekday", "tool_parameters": {}},
        {"provider_type": "builtin", "provider_id": "time", "tool_name": "sundial", "tool_parameters": {}},
        {"provider_type": "mcp", "provider_id": "gone", "tool_name": "x", "tool_parameters": {}}
    ]}});
    let (status, body) = s.post(&s.key_a, &s.url("/v1/tools/deleted"), config).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["deleted_tools"],
        json!([
            {"type": "builtin", "tool_name": "sundial", "provider_id": "time"},
            {"type": "mcp", "tool_name": "x", "provider_id": "gone"}
        ])
    );
    s.stop().await;
}

#[tokio::test]
async fn ssrf_guard_applies_to_builtin_tools() {
    // Default settings: loopback is refused, and the error says which setting would allow it.
    let s = TestServer::start_with(Options {
        allow_loopback: false,
        ..Options::default()
    })
    .await;
    let target = s.url("/health");
    let (status, body) = s
        .invoke(&s.key_a, "webscraper", "webscraper", json!({"url": target}))
        .await;
    assert_eq!(status, 502, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("127.0.0.1") && message.contains("SSRF_ALLOWED_NETWORKS"),
        "{message}"
    );
    let (status, body) = s
        .invoke(
            &s.key_a,
            "webscraper",
            "webscraper",
            json!({"url": "http://169.254.169.254/latest/meta-data"}),
        )
        .await;
    assert_eq!(status, 502);
    assert!(body["message"].as_str().unwrap().contains("169.254.169.254"), "{body}");
    s.stop().await;
}

#[tokio::test]
async fn openapi_document_describes_the_api() {
    let s = TestServer::start().await;
    let (status, doc) = s.get(&s.key_a, &s.url("/v1/openapi.json")).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/health",
        "/v1/tools/invoke",
        "/v1/tools",
        "/v1/tools/deleted",
        "/v1/tenants",
        "/console/api/workspaces/current/tool-providers",
        "/console/api/workspaces/current/tool-provider/builtin/{provider}/add",
        "/console/api/workspaces/current/tool-provider/builtin/{provider}/credential/schema/{credential_type}",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    // Every documented GET route without path parameters exists (answers something other than 404).
    for (path, item) in paths {
        if item.get("get").is_some() && !path.contains('{') {
            let (status, _) = s.get(&s.key_a, &s.url(path)).await;
            assert_ne!(status, 404, "{path} is documented but not routed");
        }
    }
    s.stop().await;
}
