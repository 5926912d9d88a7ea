//! The experimental tasks of 2025-11-25 (SEP-1686) in toolplane's MCP server, over real HTTP sessions on loopback:
//! who is offered them, task-augmented `tools/call`, `tasks/get`, the blocking `tasks/result` carrying a task's
//! questions, `tasks/list` with its cursor, `tasks/cancel`, `notifications/tasks/status` on the GET stream, the
//! spec's error codes, and tasks other callers and the other era cannot reach; and the same over stdio.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::{Value, json};
use toolplane_mcp::ServerOptions;
use toolplane_net::SafeClient;

use common::tasks::{self, Caller, StdioClient, TASKS, catalog_server, fixture_server, serve};
use common::{SseReader, demo};

const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// A session-era client speaking raw JSON-RPC.
struct Session {
    http: SafeClient,
    url: String,
    key: Option<&'static str>,
    id: String,
    version: String,
    next: AtomicI64,
}

/// What a 2025-11-25 client declares to be offered tasks.
fn with_tasks() -> Value {
    json!({"tasks": {}, "elicitation": {}})
}

impl Session {
    /// `initialize` + `notifications/initialized`; also returns the `initialize` result.
    async fn open(
        base: &str,
        code: &str,
        key: Option<&'static str>,
        version: &str,
        capabilities: Value,
    ) -> (Self, Value) {
        let http = common::loopback_client();
        let url = format!("{base}/mcp/server/{code}/mcp");
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": capabilities, "clientInfo": {"name": "t", "version": "1"}}});
        let mut builder = http
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(key) = key {
            builder = builder.bearer_auth(key);
        }
        let response = builder.body(init.to_string()).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let id = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        let body: Value = response.json().await.unwrap();
        let session = Self {
            http,
            url,
            key,
            id,
            version: body["result"]["protocolVersion"].as_str().unwrap().to_owned(),
            next: AtomicI64::new(1),
        };
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert_eq!(session.post(&initialized).await.status().as_u16(), 202);
        (session, body["result"].clone())
    }

    async fn post(&self, body: &Value) -> toolplane_net::Response {
        let mut builder = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", &self.version);
        if let Some(key) = self.key {
            builder = builder.bearer_auth(key);
        }
        builder.body(body.to_string()).send().await.unwrap()
    }

    /// Sends a request; the response (from a JSON body, or the last frame of an SSE stream that carries nothing
    /// else).
    async fn request(&self, method: &str, params: Value) -> Value {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let response = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        if response.headers()["content-type"] == "text/event-stream" {
            let mut stream = SseReader::new(response);
            let message = stream.next().await;
            assert_eq!(message["id"], id, "only the response was expected: {message}");
            return message;
        }
        response.json().await.unwrap()
    }

    /// Sends a request whose answer streams; returns the stream.
    async fn stream(&self, method: &str, params: Value) -> SseReader {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let response = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseReader::new(response)
    }

    async fn result(&self, method: &str, params: Value) -> Value {
        let response = self.request(method, params).await;
        assert!(response.get("error").is_none(), "{method}: {response}");
        response["result"].clone()
    }

    async fn error(&self, method: &str, params: Value) -> Value {
        let response = self.request(method, params).await;
        assert!(response.get("result").is_none(), "{method} should fail: {response}");
        response["error"].clone()
    }

    /// A task-augmented `tools/call`; returns the task id.
    async fn call_as_task(&self, tool: &str, arguments: Value) -> String {
        let created = self
            .result(
                "tools/call",
                json!({"name": tool, "arguments": arguments, "task": {"ttl": 60_000}}),
            )
            .await;
        let task = &created["task"];
        assert_eq!(task["status"], "working", "{created}");
        task["taskId"].as_str().unwrap().to_owned()
    }

    /// Polls `tasks/get` until the task has `status` or has ended (bounded).
    async fn until_status(&self, task_id: &str, status: &str) -> Value {
        let get = async |id: &str| self.result("tasks/get", json!({"taskId": id})).await;
        tasks::poll_until(task_id, get, |t| {
            t["status"] == status || matches!(t["status"].as_str(), Some("completed" | "failed" | "cancelled"))
        })
        .await
    }

    /// Answers a server-to-client request.
    async fn answer(&self, request: &Value, outcome: Result<Value, Value>) {
        let body = match outcome {
            Ok(result) => json!({"jsonrpc": "2.0", "id": request["id"], "result": result}),
            Err(error) => json!({"jsonrpc": "2.0", "id": request["id"], "error": error}),
        };
        assert_eq!(self.post(&body).await.status().as_u16(), 202);
    }

    /// The session's GET stream.
    async fn get_stream(&self) -> SseReader {
        let mut builder = self
            .http
            .get(&self.url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", &self.version);
        if let Some(key) = self.key {
            builder = builder.bearer_auth(key);
        }
        let response = builder.send().await.unwrap();
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseReader::new(response)
    }
}

#[tokio::test]
async fn tasks_are_offered_only_to_2025_11_25_clients_that_declare_them() {
    let base = serve(vec![
        ("keyed", fixture_server(ServerOptions::default()), vec!["k"]),
        ("open", fixture_server(ServerOptions::default()), vec![]),
    ])
    .await;
    let (session, init) = Session::open(&base, "keyed", Some("k"), "2025-11-25", with_tasks()).await;
    assert_eq!(
        init["capabilities"]["tasks"],
        json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}})
    );
    let tools = session.result("tools/list", json!({})).await;
    let support = |name: &str| {
        tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .map(|t| t["execution"]["taskSupport"].clone())
            .unwrap()
    };
    assert_eq!(support("echo"), "optional");
    assert_eq!(support("failing_job"), "required");
    assert_eq!(support("test_simple_text"), "forbidden");

    // An open server cannot tell its callers apart: no tasks/list.
    let (open, init) = Session::open(&base, "open", None, "2025-11-25", with_tasks()).await;
    assert_eq!(
        init["capabilities"]["tasks"],
        json!({"cancel": {}, "requests": {"tools": {"call": {}}}})
    );
    assert_eq!(open.error("tasks/list", json!({})).await["code"], -32601);

    // Older versions, and clients that do not declare `tasks`, get no tasks, and `task` is ignored.
    for (version, capabilities) in [("2025-06-18", with_tasks()), ("2025-11-25", json!({"elicitation": {}}))] {
        let (plain, init) = Session::open(&base, "keyed", Some("k"), version, capabilities).await;
        assert!(init["capabilities"].get("tasks").is_none(), "{version}: {init}");
        let tools = plain.result("tools/list", json!({})).await;
        assert!(tools["tools"][0].get("execution").is_none(), "{tools}");
        let result = plain
            .result(
                "tools/call",
                json!({"name": "echo", "arguments": {"text": "x"}, "task": {"ttl": 1000}}),
            )
            .await;
        assert_eq!(result["content"][0]["text"], "> x", "{version}: {result}");
        for method in ["tasks/get", "tasks/result", "tasks/list", "tasks/cancel"] {
            assert_eq!(plain.error(method, json!({"taskId": "x"})).await["code"], -32601);
        }
    }
}

#[tokio::test]
async fn task_augmented_calls_complete_fail_and_are_listed_page_by_page() {
    let base = serve(vec![("demo", catalog_server(ServerOptions::default()), vec!["k"])]).await;
    let (session, _) = Session::open(&base, "demo", Some("k"), "2025-11-25", with_tasks()).await;

    let created = session
        .result(
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "hi"}, "task": {"ttl": 60_000}}),
        )
        .await;
    let task = &created["task"];
    assert_eq!(task["ttl"], 60_000, "{created}");
    assert_eq!(task["pollInterval"], 500);
    for field in ["createdAt", "lastUpdatedAt"] {
        assert!(task[field].as_str().unwrap().ends_with('Z'), "{created}");
    }
    for absent in ["ttlMs", "pollIntervalMs", "resultType", "content"] {
        assert!(
            task.get(absent).is_none() && created.get(absent).is_none(),
            "{absent}: {created}"
        );
    }
    let id = task["taskId"].as_str().unwrap();
    let done = session.until_status(id, "completed").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(
        done.get("result").is_none(),
        "2025-11-25 tasks/get shows no result: {done}"
    );
    let result = session.result("tasks/result", json!({"taskId": id})).await;
    assert_eq!(result["content"], json!([{"type": "text", "text": "> hi"}]));
    assert_eq!(result["_meta"][RELATED_TASK]["taskId"], id);

    // A tool error fails the task (the 2025-11-25 rule for tool calls); tasks/result still returns the result.
    let failing = session.call_as_task("fail", json!({})).await;
    let failed = session.until_status(&failing, "failed").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["statusMessage"].as_str().unwrap().contains("failed on purpose"),
        "{failed}"
    );
    let result = session.result("tasks/result", json!({"taskId": failing})).await;
    assert_eq!(result["isError"], true);

    // A longer TTL than the server keeps tasks is cut to its limit (1 h by default).
    let long = session
        .result(
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "x"}, "task": {"ttl": 1e12}}),
        )
        .await;
    assert_eq!(long["task"]["ttl"], 3_600_000);

    // 100 tasks a page, oldest first, each listed once; the cursor is checked.
    for n in 0..100 {
        session.call_as_task("echo", json!({"text": n.to_string()})).await;
    }
    let first = session.result("tasks/list", json!({})).await;
    let page = first["tasks"].as_array().unwrap();
    assert_eq!(page.len(), 100);
    assert_eq!(page[0]["taskId"], id);
    assert_eq!(page[1]["taskId"], failing.as_str());
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = session.result("tasks/list", json!({"cursor": cursor})).await;
    assert_eq!(second["tasks"].as_array().unwrap().len(), 3);
    assert!(second.get("nextCursor").is_none(), "{second}");
    let mut seen: Vec<&str> = page
        .iter()
        .chain(second["tasks"].as_array().unwrap())
        .map(|t| t["taskId"].as_str().unwrap())
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 103);
    let error = session.error("tasks/list", json!({"cursor": "not-a-cursor"})).await;
    assert_eq!(error["code"], -32602);
}

#[tokio::test]
async fn required_and_forbidden_tools_answer_with_the_spec_codes() {
    let base = serve(vec![("fx", fixture_server(ServerOptions::default()), vec!["k"])]).await;
    let (session, _) = Session::open(&base, "fx", Some("k"), "2025-11-25", with_tasks()).await;
    // Required without `task`, forbidden with it: -32601.
    let error = session
        .error("tools/call", json!({"name": "failing_job", "arguments": {}}))
        .await;
    assert_eq!(error["code"], -32601, "{error}");
    let error = session
        .error(
            "tools/call",
            json!({"name": "test_simple_text", "arguments": {}, "task": {}}),
        )
        .await;
    assert_eq!(error["code"], -32601, "{error}");
    let error = session
        .error(
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "x"}, "task": 5}),
        )
        .await;
    assert_eq!(error["code"], -32602, "{error}");
    // Optional without `task` answers in the request.
    let result = session
        .result(
            "tools/call",
            json!({"name": "slow_compute", "arguments": {"seconds": 0, "label": "now"}}),
        )
        .await;
    assert!(
        result["content"][0]["text"].as_str().unwrap().starts_with("now"),
        "{result}"
    );

    // A protocol error fails the task, and tasks/result returns that error.
    let id = session.call_as_task("protocol_error_job", json!({})).await;
    let failed = session.until_status(&id, "failed").await;
    assert_eq!(failed["status"], "failed");
    let error = session.error("tasks/result", json!({"taskId": id})).await;
    assert_eq!(error["code"], -32603, "{error}");

    // Unknown tasks, and malformed ids, are invalid params.
    for method in ["tasks/get", "tasks/result", "tasks/cancel"] {
        let error = session.error(method, json!({"taskId": "no-such-task"})).await;
        assert_eq!(error["code"], -32602, "{method}: {error}");
        assert_eq!(session.error(method, json!({"taskId": 7})).await["code"], -32602);
    }
}

#[tokio::test]
async fn tasks_result_waits_and_carries_the_tools_questions_to_the_client() {
    let base = serve(vec![("fx", fixture_server(ServerOptions::default()), vec!["k"])]).await;
    let (session, _) = Session::open(&base, "fx", Some("k"), "2025-11-25", with_tasks()).await;

    // tasks/result on a running task blocks until it ends.
    let slow = session
        .call_as_task("slow_compute", json!({"seconds": 0.5, "label": "late"}))
        .await;
    let result = session.result("tasks/result", json!({"taskId": slow})).await;
    assert!(
        result["content"][0]["text"].as_str().unwrap().starts_with("late"),
        "{result}"
    );

    // The question waits in input_required; tasks/result sends it as a request tagged with the task.
    let id = session
        .call_as_task("confirm_delete", json!({"filename": "a.txt"}))
        .await;
    assert_eq!(
        session.until_status(&id, "input_required").await["status"],
        "input_required"
    );
    let mut stream = session.stream("tasks/result", json!({"taskId": id})).await;
    let question = stream.next().await;
    assert_eq!(question["method"], "elicitation/create", "{question}");
    assert_eq!(question["params"]["_meta"][RELATED_TASK]["taskId"], id.as_str());
    assert_eq!(question["params"]["message"], "Delete a.txt?");
    session
        .answer(&question, Ok(json!({"action": "accept", "content": {"confirm": true}})))
        .await;
    let response = stream.next().await;
    assert_eq!(response["result"]["content"][0]["text"], "Deleted a.txt", "{response}");
    assert_eq!(response["result"]["_meta"][RELATED_TASK]["taskId"], id.as_str());

    // Two questions at once go out together.
    let id = session.call_as_task("multi_input", json!({})).await;
    let mut stream = session.stream("tasks/result", json!({"taskId": id})).await;
    let (first, second) = (stream.next().await, stream.next().await);
    let mut messages = vec![
        first["params"]["message"].as_str().unwrap().to_owned(),
        second["params"]["message"].as_str().unwrap().to_owned(),
    ];
    messages.sort();
    assert_eq!(messages, ["First value?", "Second value?"]);
    for question in [&first, &second] {
        let name = if question["params"]["message"] == "First value?" {
            "A"
        } else {
            "B"
        };
        session
            .answer(question, Ok(json!({"action": "accept", "content": {"name": name}})))
            .await;
    }
    let response = stream.next().await;
    assert_eq!(response["result"]["content"][0]["text"], "Got A and B", "{response}");

    // A stream that closes before the answer leaves the question for the next tasks/result.
    let id = session
        .call_as_task("confirm_delete", json!({"filename": "b.txt"}))
        .await;
    let mut stream = session.stream("tasks/result", json!({"taskId": id})).await;
    let unanswered = stream.next().await;
    drop(stream);
    let mut again = session.stream("tasks/result", json!({"taskId": id})).await;
    let question = again.next().await;
    assert_eq!(question["params"]["message"], "Delete b.txt?");
    assert_ne!(question["id"], unanswered["id"], "a fresh request");
    // The client answers with an error: the tool fails, and so does the task.
    session
        .answer(&question, Err(json!({"code": -32000, "message": "the user went away"})))
        .await;
    let response = again.next().await;
    assert!(
        response["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the user went away"),
        "{response}"
    );
    assert_eq!(
        session.result("tasks/get", json!({"taskId": id})).await["status"],
        "failed"
    );
}

#[tokio::test]
async fn cancellation_and_status_notifications() {
    let base = serve(vec![("demo", catalog_server(ServerOptions::default()), vec!["k"])]).await;
    let (session, _) = Session::open(&base, "demo", Some("k"), "2025-11-25", with_tasks()).await;
    let mut updates = session.get_stream().await;

    let before = demo::cancellations();
    let id = session.call_as_task("slow", json!({})).await;
    let cancelled = session.result("tasks/cancel", json!({"taskId": id})).await;
    assert_eq!(cancelled["taskId"], id.as_str());
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    // The slow tool's invocation is stopped.
    assert!(demo::cancelled_since(before).await, "the slow tool kept running");
    // An ended task cannot be cancelled, and has no result.
    let error = session.error("tasks/cancel", json!({"taskId": id})).await;
    assert_eq!(error["code"], -32602);
    assert!(error["message"].as_str().unwrap().contains("cancelled"), "{error}");
    assert_eq!(
        session.error("tasks/result", json!({"taskId": id})).await["code"],
        -32603
    );

    // The GET stream told of the change.
    let notification = updates.next().await;
    assert_eq!(notification["method"], "notifications/tasks/status", "{notification}");
    assert_eq!(notification["params"]["taskId"], id.as_str());
    assert_eq!(notification["params"]["status"], "cancelled");
    assert!(notification["params"].get("ttl").is_some());
}

#[tokio::test]
async fn tasks_belong_to_their_caller_and_era() {
    let base = serve(vec![(
        "demo",
        catalog_server(ServerOptions::default()),
        vec!["alice", "bob"],
    )])
    .await;
    let (alice, _) = Session::open(&base, "demo", Some("alice"), "2025-11-25", with_tasks()).await;
    let (alice_again, _) = Session::open(&base, "demo", Some("alice"), "2025-11-25", with_tasks()).await;
    let (bob, _) = Session::open(&base, "demo", Some("bob"), "2025-11-25", with_tasks()).await;
    let id = alice.call_as_task("slow", json!({})).await;

    // Another session of the same caller reaches it (tasks outlive sessions); another caller does not.
    assert_eq!(
        alice_again.result("tasks/get", json!({"taskId": id})).await["status"],
        "working"
    );
    for method in ["tasks/get", "tasks/result", "tasks/cancel"] {
        assert_eq!(
            bob.error(method, json!({"taskId": id})).await["code"],
            -32602,
            "{method}"
        );
    }
    assert_eq!(bob.result("tasks/list", json!({})).await["tasks"], json!([]));
    // Nor does a 2026-07-28 request of the same caller.
    let stateless = Caller::new(&base, "demo", "alice", json!({"extensions": {TASKS: {}}}));
    let (_, response) = stateless.send("tasks/get", json!({"taskId": id})).await;
    assert_eq!(response["error"]["code"], -32602, "{response}");
    alice.result("tasks/cancel", json!({"taskId": id})).await;
}

#[tokio::test]
async fn stdio_serves_experimental_tasks() {
    let mut stdio = StdioClient::start(catalog_server(ServerOptions::default()));
    let init = stdio
        .request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {"tasks": {}}, "clientInfo": {"name": "t", "version": "1"}}),
        )
        .await;
    assert!(init["result"]["capabilities"]["tasks"]["list"].is_object(), "{init}");
    let created = stdio
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "piped"}, "task": {}}),
        )
        .await;
    let task = created["result"]["task"]["taskId"].as_str().unwrap().to_owned();
    let result = stdio.request("tasks/result", json!({"taskId": task})).await;
    assert_eq!(result["result"]["content"][0]["text"], "> piped", "{result}");
    let listed = stdio.request("tasks/list", json!({})).await;
    assert_eq!(listed["result"]["tasks"][0]["taskId"], task.as_str());
    assert_eq!(listed["result"]["tasks"][0]["status"], "completed");
    stdio.close().await;
}
