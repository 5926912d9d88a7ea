//! The tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663) of toolplane's MCP server, over real HTTP on
//! loopback: catalog tools and fixture tools as tasks, polling, answers to a task's questions, cancellation,
//! expiry, bad task ids, and tasks that other servers (tenants) and other callers cannot reach.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use toolplane_mcp::ServerOptions;

use common::demo;
use common::tasks::{Caller, StdioClient, TASKS, always_tasks, catalog_server, fixture_server, serve};

fn task_id(created: &Value) -> String {
    assert_eq!(created["resultType"], "task", "{created}");
    created["taskId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn catalog_tools_run_as_tasks_that_complete_fail_and_are_cancelled() {
    let base = serve(vec![("demo", catalog_server(always_tasks()), vec!["k"])]).await;
    let client = Caller::with_tasks(&base, "demo", "k");

    let discovered = client.result("server/discover", json!({})).await;
    assert_eq!(discovered["capabilities"]["extensions"][TASKS], json!({}));
    let tools = client.result("tools/list", json!({})).await;
    assert!(
        tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["execution"]["taskSupport"] == "optional"),
        "{tools}"
    );

    // echo: created durably (tasks/get resolves at once), then completed with the tool's result inlined.
    let created = client.call("echo", json!({"text": "hi"})).await;
    let id = task_id(&created);
    assert_eq!(created["status"], "working");
    assert_eq!(created["ttlMs"], 3_600_000);
    assert_eq!(created["pollIntervalMs"], 500);
    for absent in ["result", "error", "inputRequests", "requestState", "task"] {
        assert!(created.get(absent).is_none(), "{absent} in {created}");
    }
    assert_eq!(client.get(&id).await["taskId"], id.as_str());
    let done = client.until_terminal(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["resultType"], "complete");
    assert_eq!(done["result"]["content"], json!([{"type": "text", "text": "> hi"}]));

    // A tool error is a completed task whose result says isError, not a failed one.
    let failing = task_id(&client.call("fail", json!({})).await);
    let done = client.until_terminal(&failing).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["isError"], true);

    // slow waits until cancelled: tasks/cancel acknowledges, the task is cancelled at once, and the tool's
    // invocation is stopped (its future dropped or its token fired).
    let before = demo::cancellations();
    let slow = task_id(&client.call("slow", json!({})).await);
    assert_eq!(client.get(&slow).await["status"], "working");
    let ack = client.result("tasks/cancel", json!({"taskId": slow})).await;
    assert_eq!(ack["resultType"], "complete");
    for envelope in ["taskId", "status", "result", "error"] {
        assert!(ack.get(envelope).is_none(), "{envelope} in {ack}");
    }
    assert_eq!(client.get(&slow).await["status"], "cancelled");
    assert!(demo::cancelled_since(before).await, "the slow tool kept running");
    // Cancelling an ended task is acknowledged and changes nothing.
    client.result("tasks/cancel", json!({"taskId": id})).await;
    assert_eq!(client.get(&id).await["status"], "completed");
}

#[tokio::test]
async fn a_client_without_the_extension_never_gets_a_task() {
    let base = serve(vec![("fx", fixture_server(always_tasks()), vec!["k"])]).await;
    let plain = Caller::new(&base, "fx", "k", json!({}));
    let result = plain.call("echo", json!({"text": "x"})).await;
    assert_eq!(result["resultType"], "complete");
    assert!(result.get("taskId").is_none(), "{result}");
    // slow_compute may be a task, so it runs in the request; failing_job must be one, so it is refused.
    let result = plain.call("slow_compute", json!({"seconds": 0, "label": "sync"})).await;
    assert!(
        result["content"][0]["text"].as_str().unwrap().starts_with("sync"),
        "{result}"
    );
    let (status, body) = plain
        .send("tools/call", json!({"name": "failing_job", "arguments": {}}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], -32021);
    assert_eq!(
        body["error"]["data"]["requiredCapabilities"]["extensions"][TASKS],
        json!({})
    );
    // The tasks methods are refused the same way, before any task is looked up.
    for method in ["tasks/get", "tasks/update", "tasks/cancel"] {
        let error = plain
            .error(method, json!({"taskId": "whatever", "inputResponses": {}}))
            .await;
        assert_eq!(error["code"], -32021, "{method}");
    }
    // One request may opt in on its own.
    let opted = Caller::new(&base, "fx", "k", json!({"extensions": {TASKS: {}}}));
    let created = opted.call("slow_compute", json!({"seconds": 60})).await;
    opted.result("tasks/cancel", json!({"taskId": task_id(&created)})).await;
}

#[tokio::test]
async fn quick_calls_are_answered_directly_and_questions_make_a_task_at_once() {
    let options = ServerOptions {
        task_after: Duration::from_secs(60),
        ..ServerOptions::default()
    };
    let base = serve(vec![("fx", fixture_server(options), vec!["k"])]).await;
    let client = Caller::with_tasks(&base, "fx", "k");
    // Ends well within task_after: a plain result, no task to poll.
    let result = client.call("echo", json!({"text": "quick"})).await;
    assert_eq!(result["resultType"], "complete", "{result}");
    assert_eq!(result["content"][0]["text"], "> quick");
    // A question to the user cannot be answered within the request: the task is returned at once, waiting.
    let created = client.call("confirm_delete", json!({"filename": "a.txt"})).await;
    let id = task_id(&created);
    let waiting = client.until_input_required(&id, 1).await;
    assert_eq!(waiting["inputRequests"]["confirm"]["method"], "elicitation/create");
    client.result("tasks/cancel", json!({"taskId": id})).await;
}

#[tokio::test]
async fn task_questions_are_answered_with_tasks_update_even_one_at_a_time() {
    let base = serve(vec![("fx", fixture_server(always_tasks()), vec!["k"])]).await;
    let client = Caller::with_tasks(&base, "fx", "k");

    let id = task_id(&client.call("multi_input", json!({})).await);
    let waiting = client.until_input_required(&id, 2).await;
    let keys: Vec<String> = waiting["inputRequests"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["first", "second"]);
    let answer = |name: &str| json!({"action": "accept", "content": {"name": name}});

    // A malformed answer is refused and changes nothing; an unknown key is ignored.
    let error = client
        .error(
            "tasks/update",
            json!({"taskId": id, "inputResponses": {"first": {"action": "maybe"}}}),
        )
        .await;
    assert_eq!(error["code"], -32602);
    let ack = client
        .result(
            "tasks/update",
            json!({"taskId": id, "inputResponses": {"first": answer("A"), "nope": {"x": 1}}}),
        )
        .await;
    assert_eq!(ack, json!({"resultType": "complete", "_meta": ack["_meta"]}));
    let partly = client.get(&id).await;
    assert_eq!(partly["status"], "input_required", "{partly}");
    assert_eq!(
        partly["inputRequests"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["second"]
    );
    client
        .result(
            "tasks/update",
            json!({"taskId": id, "inputResponses": {"second": answer("B")}}),
        )
        .await;
    let done = client.until_terminal(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["content"][0]["text"], "Got A and B");
    assert!(done.get("inputRequests").is_none());

    // A task waiting for its user can be cancelled; answers arriving later are acknowledged and ignored.
    let id = task_id(&client.call("confirm_delete", json!({"filename": "b.txt"})).await);
    client.until_input_required(&id, 1).await;
    client.result("tasks/cancel", json!({"taskId": id})).await;
    let cancelled = client.get(&id).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled.get("inputRequests").is_none(), "{cancelled}");
    client
        .result(
            "tasks/update",
            json!({"taskId": id, "inputResponses": {"confirm": {"action": "accept", "content": {"confirm": true}}}}),
        )
        .await;
    assert_eq!(client.get(&id).await["status"], "cancelled");
}

#[tokio::test]
async fn protocol_errors_fail_the_task_and_input_before_the_task_stays_in_the_request() {
    let base = serve(vec![("fx", fixture_server(always_tasks()), vec!["k"])]).await;
    let client = Caller::with_tasks(&base, "fx", "k");
    let id = task_id(&client.call("protocol_error_job", json!({})).await);
    let failed = client.until_terminal(&id).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], -32603);
    assert!(failed.get("result").is_none());

    // test_tool_with_task asks for the name with input_required (no task yet), and the retry becomes the task.
    let first = client.call("test_tool_with_task", json!({})).await;
    assert_eq!(first["resultType"], "input_required", "{first}");
    assert!(first.get("taskId").is_none());
    let retry = client
        .result(
            "tools/call",
            json!({"name": "test_tool_with_task", "arguments": {},
                   "inputResponses": {"user_name": {"action": "accept", "content": {"name": "Ada"}}}}),
        )
        .await;
    let id = task_id(&retry);
    assert!(retry.get("requestState").is_none() && retry.get("inputRequests").is_none());
    let done = client.until_terminal(&id).await;
    assert_eq!(done["result"]["content"][0]["text"], "Hello, Ada!");
}

#[tokio::test]
async fn bad_task_ids_and_removed_methods_get_clear_errors() {
    let base = serve(vec![("fx", fixture_server(always_tasks()), vec!["k"])]).await;
    let client = Caller::with_tasks(&base, "fx", "k");
    for method in ["tasks/get", "tasks/update", "tasks/cancel"] {
        let error = client
            .error(method, json!({"taskId": "no-such-task", "inputResponses": {}}))
            .await;
        assert_eq!(error["code"], -32602, "{method}: {error}");
        assert!(error["message"].as_str().unwrap().contains("not found"), "{error}");
    }
    for removed in ["tasks/result", "tasks/list"] {
        assert_eq!(client.error(removed, json!({})).await["code"], -32601);
    }
    let id = task_id(&client.call("slow_compute", json!({"seconds": 60})).await);
    let error = client
        .error("tasks/update", json!({"taskId": id, "inputResponses": "yes"}))
        .await;
    assert_eq!(error["code"], -32602);
    // Mcp-Name must carry the task id.
    let response = client
        .post("tasks/get", json!({"taskId": id}), Some("another-task"))
        .await;
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32020);
    client.result("tasks/cancel", json!({"taskId": id})).await;
}

#[tokio::test]
async fn tasks_expire_after_their_ttl_and_running_ones_are_stopped() {
    let options = ServerOptions {
        task_after: Duration::ZERO,
        task_ttl: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let base = serve(vec![("demo", catalog_server(options), vec!["k"])]).await;
    let client = Caller::with_tasks(&base, "demo", "k");
    let before = demo::cancellations();
    let finished = client.call("echo", json!({"text": "x"})).await;
    assert_eq!(finished["ttlMs"], 300);
    let finished = task_id(&finished);
    let running = task_id(&client.call("slow", json!({})).await);
    // Both are counted from their creation; after the TTL neither can be found, and the slow tool was stopped.
    tokio::time::sleep(Duration::from_millis(900)).await;
    for id in [&finished, &running] {
        let error = client.error("tasks/get", json!({"taskId": id})).await;
        assert_eq!(error["code"], -32602, "{error}");
    }
    assert!(
        demo::cancelled_since(before).await,
        "the expired task's tool kept running"
    );
}

#[tokio::test]
async fn a_task_is_reachable_only_by_its_server_and_caller() {
    // Two tenants' servers on one router; alice and bob both hold keys of tenant 1's server.
    let base = serve(vec![
        ("tenant1", catalog_server(always_tasks()), vec!["alice", "bob"]),
        ("tenant2", fixture_server(always_tasks()), vec!["alice"]),
    ])
    .await;
    let alice = Caller::with_tasks(&base, "tenant1", "alice");
    let bob = Caller::with_tasks(&base, "tenant1", "bob");
    let alice_elsewhere = Caller::with_tasks(&base, "tenant2", "alice");
    let id = task_id(&alice.call("slow", json!({})).await);

    for (intruder, who) in [(&bob, "another caller"), (&alice_elsewhere, "another server")] {
        for method in ["tasks/get", "tasks/update", "tasks/cancel"] {
            let error = intruder
                .error(method, json!({"taskId": id, "inputResponses": {}}))
                .await;
            // Exactly the answer for an id never issued: nothing tells that the task exists.
            assert_eq!(error["code"], -32602, "{who} {method}: {error}");
        }
    }
    // Nobody else's cancel reached it.
    assert_eq!(alice.get(&id).await["status"], "working");

    // Status notifications: bob's subscription leaves alice's task out; alice's carries its state and changes.
    let bob_ack = bob.listen(&id).await.next().await;
    assert_eq!(bob_ack["params"]["notifications"]["taskIds"], json!([]));
    let mut stream = alice.listen(&id).await;
    let ack = stream.next().await;
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(ack["params"]["notifications"]["taskIds"], json!([id]));
    let current = stream.next().await;
    assert_eq!(current["method"], "notifications/tasks");
    assert_eq!(current["params"]["taskId"], id.as_str());
    assert_eq!(current["params"]["status"], "working");
    assert_eq!(current["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 1);
    alice.result("tasks/cancel", json!({"taskId": id})).await;
    let changed = stream.next().await;
    assert_eq!(changed["params"]["status"], "cancelled", "{changed}");

    // Subscribing to task notifications needs the extension.
    let plain = Caller::new(&base, "tenant1", "alice", json!({}));
    let (status, body) = plain
        .send("subscriptions/listen", json!({"notifications": {"taskIds": [id]}}))
        .await;
    assert_eq!((status, body["error"]["code"].clone()), (400, json!(-32021)));
}

#[tokio::test]
async fn the_session_era_has_no_tasks() {
    let base = serve(vec![("fx", fixture_server(always_tasks()), vec!["k"])]).await;
    let http = common::loopback_client();
    let url = format!("{base}/mcp/server/fx/mcp");
    let post = |body: Value, session: Option<String>| {
        let mut builder = http
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .bearer_auth("k");
        if let Some(session) = session {
            builder = builder
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-11-25");
        }
        builder.body(body.to_string()).send()
    };
    // Declaring the extension at initialize does not enable it before 2026-07-28 (SEP-2663).
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {"extensions": {TASKS: {}}},
        "clientInfo": {"name": "t", "version": "1"}}});
    let response = post(init, None).await.unwrap();
    let session = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let init: Value = response.json().await.unwrap();
    assert!(init["result"]["capabilities"].get("extensions").is_none(), "{init}");
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "s"}}});
    let reply: Value = post(call, Some(session.clone())).await.unwrap().json().await.unwrap();
    assert_eq!(reply["result"]["content"][0]["text"], "> s", "{reply}");
    let get = json!({"jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"taskId": "x"}});
    let reply: Value = post(get, Some(session.clone())).await.unwrap().json().await.unwrap();
    assert_eq!(reply["error"]["code"], -32601);
    let required = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "failing_job", "arguments": {}}});
    let reply: Value = post(required, Some(session)).await.unwrap().json().await.unwrap();
    assert_eq!(reply["error"]["code"], -32021);
}

#[tokio::test]
async fn stdio_serves_tasks_to_its_client_and_stops_them_when_it_ends() {
    let mut stdio = StdioClient::start(catalog_server(always_tasks()));
    // Each request names the version and declares the extension, as 2026-07-28 requires.
    let stateless = |mut params: Value| {
        params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"extensions": {TASKS: {}}}});
        params
    };
    let discovered = stdio.request("server/discover", stateless(json!({}))).await;
    assert_eq!(discovered["result"]["capabilities"]["extensions"][TASKS], json!({}));
    let created = stdio
        .request("tools/call", stateless(json!({"name": "slow", "arguments": {}})))
        .await;
    let task = task_id(&created["result"]);
    let shown = stdio.request("tasks/get", stateless(json!({"taskId": task}))).await;
    assert_eq!(shown["result"]["status"], "working");
    let malformed = stdio.request("tasks/get", stateless(json!({"taskId": 7}))).await;
    assert_eq!(malformed["error"]["code"], -32602);

    // The client goes away with its task still running: the task is stopped.
    let before = demo::cancellations();
    stdio.close().await;
    assert!(
        demo::cancelled_since(before).await,
        "the task outlived its stdio client"
    );
}
