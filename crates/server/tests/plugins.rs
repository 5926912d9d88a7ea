//! The plugin daemon beside the console: a package uploaded and installed through Dify's daemon routes shows up in
//! the tenant's catalog with id `author/name/provider`, and uninstalling it makes its tools "deleted".

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::{DAEMON_KEY, Options, TestServer};

fn build_package() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("weather");
    std::fs::create_dir(&root).unwrap();
    toolplane_plugin::scaffold_tool_plugin(
        &root,
        &toolplane_plugin::ScaffoldOptions::new("acme", "weather", "Weather lookups"),
    )
    .unwrap();
    toolplane_plugin::package_dir(&root, 50 * 1024 * 1024, |_| {}).unwrap()
}

async fn daemon_post(s: &TestServer, tenant: &str, path: &str, body: Value) -> Value {
    let response = s
        .http
        .post(s.url(&format!("/plugin/{tenant}/management/{path}")))
        .header("X-Api-Key", DAEMON_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn installed_plugin_tools_join_the_catalog() {
    let s = TestServer::start_with(Options {
        daemon: true,
        ..Options::default()
    })
    .await;

    // The daemon routes use their own key, not toolplane API keys.
    let refused = s
        .http
        .get(s.url(&format!("/plugin/{}/management/list?page=1&page_size=10", s.tenant_a)))
        .bearer_auth(&s.key_a)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let form = reqwest::multipart::Form::new().part(
        "dify_pkg",
        reqwest::multipart::Part::bytes(build_package()).file_name("weather.difypkg"),
    );
    let uploaded: Value = s
        .http
        .post(s.url(&format!("/plugin/{}/management/install/upload/package", s.tenant_a)))
        .header("X-Api-Key", DAEMON_KEY)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(uploaded["code"], 0, "{uploaded}");
    let uid = uploaded["data"]["unique_identifier"].as_str().unwrap().to_owned();
    assert!(uid.starts_with("acme/weather:0.0.1@"), "{uid}");

    let started = daemon_post(
        &s,
        &s.tenant_a,
        "install/identifiers",
        json!({"plugin_unique_identifiers": [uid], "source": "package", "metas": [{}]}),
    )
    .await;
    assert_eq!(started["code"], 0, "{started}");
    let task_id = started["data"]["task_id"].as_str().unwrap().to_owned();
    for _ in 0..100 {
        let task: Value = s
            .http
            .get(s.url(&format!("/plugin/{}/management/install/tasks/{task_id}", s.tenant_a)))
            .header("X-Api-Key", DAEMON_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match task["data"]["status"].as_str() {
            Some("success") => break,
            Some("failed") => panic!("install failed: {task}"),
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }

    // Tenant A's catalog lists the plugin provider; tenant B's does not.
    let (status, tools) = s.get(&s.key_a, &s.url("/v1/tools")).await;
    assert_eq!(status, 200);
    let plugin = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider_type"] == "plugin")
        .unwrap_or_else(|| panic!("no plugin provider in {tools}"));
    assert_eq!(plugin["provider_id"], "acme/weather/weather");
    let tool_name = plugin["tools"][0]["name"].as_str().unwrap().to_owned();
    let (_, tools_b) = s.get(&s.key_b, &s.url("/v1/tools")).await;
    assert!(
        !tools_b
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["provider_type"] == "plugin")
    );

    // The console addresses plugin providers by `org/plugin/provider`, as Dify's `<path:provider>` routes do.
    let (status, console_tools) = s
        .get(
            &s.key_a,
            &s.console("/tool-provider/builtin/acme/weather/weather/tools"),
        )
        .await;
    assert_eq!(status, 200, "{console_tools}");
    assert_eq!(console_tools[0]["name"], tool_name.as_str());
    let (status, info) = s
        .get(&s.key_a, &s.console("/tool-provider/builtin/acme/weather/weather/info"))
        .await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["type"], "plugin");
    let (status, _) = s
        .get(
            &s.key_a,
            &s.console("/tool-provider/builtin/acme/weather/weather/credential/info"),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .get(
            &s.key_b,
            &s.console("/tool-provider/builtin/acme/weather/weather/tools"),
        )
        .await;
    assert_eq!(status, 404, "tenant B has not installed the plugin");

    let reference = json!([{"provider_type": "plugin", "provider_id": "acme/weather/weather", "tool_name": tool_name}]);
    let (_, deleted) = s.post(&s.key_a, &s.url("/v1/tools/deleted"), reference.clone()).await;
    assert_eq!(deleted["deleted_tools"], json!([]));

    // Invoking needs the plugin runtime, which is not there yet: a clear error, not a hang.
    let (status, body) = s
        .post(
            &s.key_a,
            &s.url("/v1/tools/invoke"),
            json!({"provider_type": "plugin", "provider_id": "acme/weather/weather", "tool": tool_name, "parameters": {}}),
        )
        .await;
    assert!(status >= 400, "{body}");

    // Uninstall: the tool is reported as deleted.
    let list: Value = s
        .http
        .get(s.url(&format!("/plugin/{}/management/list?page=1&page_size=10", s.tenant_a)))
        .header("X-Api-Key", DAEMON_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let installation_id = list["data"]["list"][0]["installation_id"].as_str().unwrap().to_owned();
    let removed = daemon_post(
        &s,
        &s.tenant_a,
        "uninstall",
        json!({"plugin_installation_id": installation_id}),
    )
    .await;
    assert_eq!(removed["code"], 0, "{removed}");
    let (_, deleted) = s.post(&s.key_a, &s.url("/v1/tools/deleted"), reference).await;
    assert_eq!(deleted["deleted_tools"][0]["provider_id"], "acme/weather/weather");
    s.stop().await;
}

/// `toolplane serve` mounts the daemon's public endpoint entry point and `/v2/invoke` routes beside the console.
#[tokio::test]
async fn endpoint_entry_point_and_v2_routes_are_mounted() {
    let s = TestServer::start_with(Options {
        daemon: true,
        ..Options::default()
    })
    .await;
    // An unknown hook: the daemon's own 404 envelope, not the server's fallback.
    let response = s.http.get(s.url("/e/abcdefghijklmnop/anything")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], -404, "{body}");
    let inner: Value = serde_json::from_str(body["message"].as_str().unwrap()).unwrap();
    assert_eq!(inner["message"], "endpoint not found");
    let response = s
        .http
        .get(s.url("/v2/invoke/extract"))
        .header("X-Api-Key", DAEMON_KEY)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("X-Plugin-Unique-Identifier"),
        "{body}"
    );
    s.stop().await;
}
