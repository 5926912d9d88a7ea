//! Tool calls as tasks, for long-running tools.
//!
//! With [`CallOptions::as_task`](super::CallOptions::as_task), [`McpClient::call_tool`] runs the call as a task
//! when the server offers tasks:
//! - 2026-07-28, extension `io.modelcontextprotocol/tasks` (in `server/discover`'s `capabilities.extensions`):
//!   the call declares the extension and the server decides whether to answer with a task (`resultType:
//!   "task"`). The client then polls `tasks/get`, which inlines the result (or error) once the task ends, and
//!   answers the questions a task waits on (`inputRequests`, status `input_required`) with the client's
//!   [`ClientHandler`](super::ClientHandler) and `tasks/update`. A task handle the server returns unasked is
//!   followed the same way.
//! - 2025-11-25 sessions whose server announced `tasks.requests.tools.call` (the client declares `tasks` at
//!   `initialize`): the call carries `task: {ttl}`, and the client fetches the result with `tasks/result`, which
//!   waits for the task to end (no poll interval on quick calls). On `input_required` that request stays open and
//!   carries the task's questions (ordinary `elicitation/create` or `sampling/createMessage` requests), which the
//!   transport answers with the handler as it answers any server request.
//!
//! Polls follow the server's `pollIntervalMs` / `pollInterval` (500 ms when it names none, never more often than
//! every 50 ms). The call's timeout bounds the whole task. When it strikes, or the caller's token fires, or the
//! call's future is dropped, the client sends `tasks/cancel` (best effort, at most 5 s). The tool's result goes
//! through the same mapping as a plain call's.
//!
//! Which calls run as tasks is the caller's choice: toolplane's MCP providers
//! ([`McpTool`](crate::provider::McpTool)) do so for tools that require it, and for optional ones when the call
//! may take long (see [`crate::provider`]).

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{CallOptions, Extras, McpClient, McpError};
use crate::protocol::{CallToolResult, META_CLIENT_CAPABILITIES, RpcError};
use crate::server::TASKS_EXTENSION;

/// The session-era version with experimental tasks.
pub(crate) const EXPERIMENTAL_VERSION: &str = "2025-11-25";

/// The polling interval when the server suggests none.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Polls never come closer together than this, whatever the server suggests.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How long `tasks/cancel` may take: the caller is not kept waiting on an unresponsive server.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// A 2025-11-25 task is asked to be kept this much longer than the call may wait for it, so a last poll at the
/// deadline still finds it.
const TTL_SLACK: Duration = Duration::from_secs(60);

/// Which tasks a server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskProtocol {
    /// The 2026-07-28 extension `io.modelcontextprotocol/tasks`.
    Extension,
    /// The experimental tasks of 2025-11-25.
    Experimental,
}

/// The time a call may take, all its requests together.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    total: Duration,
    deadline: Instant,
}

impl Budget {
    pub(crate) fn new(total: Duration) -> Self {
        Self {
            total,
            deadline: Instant::now() + total,
        }
    }

    /// What is left (at least a millisecond, so a last request still gets a chance rather than a zero timeout).
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    }

    fn timeout(&self) -> McpError {
        McpError::Timeout {
            method: "tools/call".into(),
            seconds: self.total.as_secs_f64(),
        }
    }

    /// A request that ran out of the call's time is the call's timeout, reported with the call's limit.
    pub(crate) fn overall(&self, error: McpError) -> McpError {
        match error {
            McpError::Timeout { .. } => self.timeout(),
            other => other,
        }
    }
}

/// Adds the tasks extension to the client capabilities in a 2026-07-28 request's `_meta`.
pub(crate) fn declare_extension(params: &mut Map<String, Value>) {
    let Some(Value::Object(meta)) = params.get_mut("_meta") else {
        return;
    };
    let capabilities = meta.entry(META_CLIENT_CAPABILITIES).or_insert_with(|| json!({}));
    if !capabilities.is_object() {
        *capabilities = json!({});
    }
    if let Value::Object(capabilities) = capabilities {
        let extensions = capabilities.entry("extensions").or_insert_with(|| json!({}));
        if !extensions.is_object() {
            *extensions = json!({});
        }
        if let Value::Object(extensions) = extensions {
            extensions.insert(TASKS_EXTENSION.into(), json!({}));
        }
    }
}

/// How a wait ended early.
enum Abandoned {
    Timeout,
    Cancelled,
}

/// Sends `tasks/cancel` for a task the call stops following before it ended — also when the call's future is
/// dropped (from a detached task then).
struct Cancel {
    client: McpClient,
    protocol: TaskProtocol,
    task_id: String,
    armed: bool,
}

impl Cancel {
    /// Armed for task `task_id` of `client`: the task is cancelled unless it is seen to end.
    fn new(client: &McpClient, protocol: TaskProtocol, task_id: &str) -> Self {
        Self {
            client: client.clone(),
            protocol,
            task_id: task_id.to_owned(),
            armed: true,
        }
    }

    /// The task ended (or the server forgot it): nothing to cancel.
    fn disarm(&mut self) {
        self.armed = false;
    }

    /// Cancels now and waits (bounded) for the server's answer.
    async fn now(&mut self) {
        self.armed = false;
        self.client.cancel_task(self.protocol, &self.task_id).await;
    }
}

impl Drop for Cancel {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, protocol, task_id) = (self.client.clone(), self.protocol, std::mem::take(&mut self.task_id));
        runtime.spawn(async move { client.cancel_task(protocol, &task_id).await });
    }
}

/// The task's suggested polling interval.
fn poll_interval(task: &Value) -> Duration {
    ["pollIntervalMs", "pollInterval"]
        .iter()
        .find_map(|key| task.get(*key).and_then(Value::as_f64))
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map(|ms| Duration::from_secs_f64((ms / 1000.0).min(86_400.0)))
        .unwrap_or(DEFAULT_POLL_INTERVAL)
        .max(MIN_POLL_INTERVAL)
}

fn status(task: &Value) -> &str {
    task.get("status").and_then(Value::as_str).unwrap_or("working")
}

/// The error for a task the server cancelled on its own.
fn cancelled_by_server(tool: &str, task_id: &str, task: &Value) -> McpError {
    let reason = task
        .get("statusMessage")
        .and_then(Value::as_str)
        .unwrap_or("no reason given");
    McpError::Protocol(format!(
        "the MCP server cancelled task {task_id} of tool {tool:?}: {reason}"
    ))
}

fn invalid_result(error: impl std::fmt::Display) -> McpError {
    McpError::Protocol(format!("invalid tools/call result: {error}"))
}

/// Waits for `future` unless the call's time runs out or the caller cancels first.
async fn bounded<T>(
    future: impl Future<Output = T>,
    budget: &Budget,
    cancel: &CancellationToken,
) -> Result<T, Abandoned> {
    tokio::select! {
        value = future => Ok(value),
        _ = tokio::time::sleep_until(budget.deadline) => Err(Abandoned::Timeout),
        _ = cancel.cancelled() => Err(Abandoned::Cancelled),
    }
}

impl McpClient {
    /// The tasks the server offers for `tools/call`, if any.
    pub(crate) async fn task_protocol(&self) -> Option<TaskProtocol> {
        let details = self.shared.details.read().await;
        let capabilities = &details.capabilities;
        if details.is_stateless() {
            let offered = capabilities
                .get("extensions")
                .and_then(|e| e.get(TASKS_EXTENSION))
                .is_some_and(Value::is_object);
            return offered.then_some(TaskProtocol::Extension);
        }
        let offered = details.protocol_version == EXPERIMENTAL_VERSION
            && capabilities
                .pointer("/tasks/requests/tools/call")
                .is_some_and(Value::is_object);
        offered.then_some(TaskProtocol::Experimental)
    }

    /// A request about a task (`tasks/get`, …), declaring the extension in the 2026-07-28 era.
    async fn task_request(
        &self,
        protocol: TaskProtocol,
        method: &str,
        params: Value,
        options: CallOptions,
    ) -> Result<Value, McpError> {
        let extras = Extras {
            headers: Vec::new(),
            tasks_extension: protocol == TaskProtocol::Extension,
        };
        self.request_with(method, Some(params), options, extras).await
    }

    /// `tasks/cancel`, best effort: a failure is only logged (the task ends with its TTL anyway).
    async fn cancel_task(&self, protocol: TaskProtocol, task_id: &str) {
        let options = CallOptions {
            timeout: Some(CANCEL_TIMEOUT),
            ..CallOptions::default()
        };
        match self
            .task_request(protocol, "tasks/cancel", json!({"taskId": task_id}), options)
            .await
        {
            Ok(_) => tracing::debug!(task = %task_id, "cancelled an MCP task"),
            Err(e) => tracing::debug!(task = %task_id, error = %e, "could not cancel an MCP task"),
        }
    }

    /// Options of one request of a task: what is left of the call's time (`limit` at most), the caller's token.
    fn step(&self, options: &CallOptions, budget: &Budget, limit: Option<Duration>) -> CallOptions {
        let remaining = budget.remaining();
        CallOptions {
            timeout: Some(limit.map_or(remaining, |limit| limit.min(remaining))),
            cancel: options.cancel.clone(),
            as_task: false,
        }
    }

    /// The error for a call abandoned while following a task; the task is cancelled first.
    async fn abandon(&self, cancel: &mut Cancel, why: Abandoned, budget: &Budget) -> McpError {
        cancel.now().await;
        match why {
            Abandoned::Timeout => budget.timeout(),
            Abandoned::Cancelled => McpError::Cancelled {
                method: "tools/call".into(),
            },
        }
    }

    /// A failed request while following a task: the call's timeout or the caller's cancellation cancel the task
    /// at once; other failures leave it to the [`Cancel`] guard.
    async fn task_failure(&self, cancel: &mut Cancel, error: McpError, budget: &Budget) -> McpError {
        match error {
            McpError::Cancelled { .. } => self.abandon(cancel, Abandoned::Cancelled, budget).await,
            McpError::Timeout { .. } => self.abandon(cancel, Abandoned::Timeout, budget).await,
            other => other,
        }
    }

    /// 2026-07-28: follows the task a `tools/call` answered with until it ends.
    pub(crate) async fn follow_task(
        &self,
        tool: &str,
        created: Value,
        options: &CallOptions,
        budget: &Budget,
    ) -> Result<CallToolResult, McpError> {
        let protocol = TaskProtocol::Extension;
        let Some(task_id) = created.get("taskId").and_then(Value::as_str).map(str::to_owned) else {
            return Err(McpError::Protocol("a task result without a taskId".into()));
        };
        tracing::debug!(tool, task = %task_id, "MCP tool call runs as a task (2026-07-28)");
        let mut cancel = Cancel::new(self, protocol, &task_id);
        let per_request = Some(self.shared.options.timeout);
        let mut answered = HashSet::new();
        let mut task = created;
        loop {
            match status(&task) {
                "completed" => {
                    cancel.disarm();
                    let result = task.get("result").cloned().unwrap_or_else(|| json!({"content": []}));
                    return CallToolResult::from_value(result).map_err(invalid_result);
                }
                "failed" => {
                    cancel.disarm();
                    let error = task
                        .get("error")
                        .and_then(|e| serde_json::from_value::<RpcError>(e.clone()).ok())
                        .unwrap_or_else(|| {
                            let message = task
                                .get("statusMessage")
                                .and_then(Value::as_str)
                                .unwrap_or("task failed");
                            RpcError::internal(message)
                        });
                    return Err(McpError::Rpc(error));
                }
                "cancelled" => {
                    cancel.disarm();
                    return Err(cancelled_by_server(tool, &task_id, &task));
                }
                "input_required" => {
                    let open: Map<String, Value> = task
                        .get("inputRequests")
                        .and_then(Value::as_object)
                        .into_iter()
                        .flatten()
                        .filter(|(key, _)| !answered.contains(*key))
                        .map(|(key, request)| (key.clone(), request.clone()))
                        .collect();
                    if !open.is_empty() {
                        // The handler may wait for a person; the call's time and the caller still bound it.
                        let responses = match bounded(self.answer_requests(tool, &open), budget, &options.cancel).await
                        {
                            Ok(Ok(responses)) => responses,
                            Ok(Err(error)) => {
                                cancel.now().await;
                                return Err(error);
                            }
                            Err(why) => return Err(self.abandon(&mut cancel, why, budget).await),
                        };
                        answered.extend(open.keys().cloned());
                        let params = json!({"taskId": task_id, "inputResponses": responses});
                        let step = self.step(options, budget, per_request);
                        if let Err(error) = self.task_request(protocol, "tasks/update", params, step).await {
                            return Err(self.task_failure(&mut cancel, error, budget).await);
                        }
                        task = self.poll(&mut cancel, options, budget).await?;
                        continue;
                    }
                }
                _ => {}
            }
            task = self.poll_after_interval(&mut cancel, &task, options, budget).await?;
        }
    }

    /// One `tasks/get` of the task `cancel` guards; a failure is the call's (see [`Self::task_failure`]).
    async fn poll(&self, cancel: &mut Cancel, options: &CallOptions, budget: &Budget) -> Result<Value, McpError> {
        let step = self.step(options, budget, Some(self.shared.options.timeout));
        let params = json!({"taskId": cancel.task_id});
        match self.task_request(cancel.protocol, "tasks/get", params, step).await {
            Ok(task) => Ok(task),
            Err(error) => Err(self.task_failure(cancel, error, budget).await),
        }
    }

    /// The next `tasks/get` after `task`'s polling interval; the call's time and the caller bound the wait.
    async fn poll_after_interval(
        &self,
        cancel: &mut Cancel,
        task: &Value,
        options: &CallOptions,
        budget: &Budget,
    ) -> Result<Value, McpError> {
        if let Err(why) = bounded(tokio::time::sleep(poll_interval(task)), budget, &options.cancel).await {
            return Err(self.abandon(cancel, why, budget).await);
        }
        self.poll(cancel, options, budget).await
    }

    /// 2025-11-25: the call as a task — created with `task`, its result (and on the way its questions) fetched
    /// with `tasks/result`, which waits for the task to end; `tasks/get` polls only tasks in other states.
    pub(crate) async fn call_tool_experimental(
        &self,
        tool: &str,
        arguments: Map<String, Value>,
        options: &CallOptions,
        budget: &Budget,
    ) -> Result<CallToolResult, McpError> {
        let protocol = TaskProtocol::Experimental;
        let ttl = u64::try_from((budget.total + TTL_SLACK).as_millis()).unwrap_or(u64::MAX);
        let params = json!({"name": tool, "arguments": arguments, "task": {"ttl": ttl}});
        let step = self.step(options, budget, None);
        let created = self
            .request_with("tools/call", Some(params), step, Extras::default())
            .await
            .map_err(|e| budget.overall(e))?;
        // A server that does not take the task answers in the request (the spec lets it ignore `task`).
        let Some(task) = created.get("task").filter(|t| t.get("taskId").is_some()).cloned() else {
            return CallToolResult::from_value(created).map_err(invalid_result);
        };
        let Some(task_id) = task.get("taskId").and_then(Value::as_str).map(str::to_owned) else {
            return Err(McpError::Protocol("a task without a string taskId".into()));
        };
        tracing::debug!(tool, task = %task_id, "MCP tool call runs as a task (2025-11-25)");
        let mut cancel = Cancel::new(self, protocol, &task_id);
        let mut task = task;
        loop {
            match status(&task) {
                // The result — or, waiting for input, the task's questions first, answered by the handler on the
                // way: `tasks/result` returns once the task has ended. A working task is not polled first: that
                // would add a poll interval to every quick call, and `tasks/result` already waits for the end.
                "working" | "completed" | "failed" | "input_required" => {
                    let step = self.step(options, budget, None);
                    let fetched = self
                        .task_request(protocol, "tasks/result", json!({"taskId": task_id}), step)
                        .await;
                    return match fetched {
                        Ok(result) => {
                            cancel.disarm();
                            CallToolResult::from_value(result).map_err(invalid_result)
                        }
                        Err(McpError::Rpc(error)) => {
                            cancel.disarm();
                            Err(McpError::Rpc(error))
                        }
                        Err(error) => Err(self.task_failure(&mut cancel, error, budget).await),
                    };
                }
                "cancelled" => {
                    cancel.disarm();
                    return Err(cancelled_by_server(tool, &task_id, &task));
                }
                _ => {}
            }
            task = self.poll_after_interval(&mut cancel, &task, options, budget).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_intervals_follow_the_server_within_bounds() {
        assert_eq!(poll_interval(&json!({"pollIntervalMs": 2000})), Duration::from_secs(2));
        assert_eq!(poll_interval(&json!({"pollInterval": 750})), Duration::from_millis(750));
        assert_eq!(poll_interval(&json!({"pollInterval": 0})), MIN_POLL_INTERVAL);
        assert_eq!(poll_interval(&json!({})), DEFAULT_POLL_INTERVAL);
        assert_eq!(poll_interval(&json!({"pollIntervalMs": "soon"})), DEFAULT_POLL_INTERVAL);
    }

    #[test]
    fn the_extension_is_added_to_declared_capabilities() {
        let mut params = serde_json::Map::new();
        params.insert(
            "_meta".into(),
            json!({META_CLIENT_CAPABILITIES: {"elicitation": {}, "extensions": {"other/ext": {}}}}),
        );
        declare_extension(&mut params);
        assert_eq!(
            params["_meta"][META_CLIENT_CAPABILITIES],
            json!({"elicitation": {}, "extensions": {"other/ext": {}, TASKS_EXTENSION: {}}})
        );
    }
}
