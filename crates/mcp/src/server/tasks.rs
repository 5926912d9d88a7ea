//! Tasks: a `tools/call` answered with a task handle while the tool goes on running in the background. Two
//! protocols, one store:
//! - the tasks extension of 2026-07-28 (`io.modelcontextprotocol/tasks`, SEP-2663, [`TaskEra::Extension`]): the
//!   server decides to answer with a task (`resultType: "task"`); the client polls `tasks/get` (the status, then
//!   the inlined result or error), answers the tool's questions (`inputRequests`) with `tasks/update`, and stops
//!   it with `tasks/cancel`;
//! - the experimental tasks of 2025-11-25 (SEP-1686, [`TaskEra::Experimental`]), in sessions: the client asks for
//!   a task (`task` in the `tools/call` params) and gets `{task}`; it polls `tasks/get` (status only), fetches the
//!   result with `tasks/result` (which blocks until the task ends, and carries the tool's questions to the client
//!   as ordinary requests tagged `io.modelcontextprotocol/related-task`), lists its tasks with `tasks/list` and
//!   stops one with `tasks/cancel`; status changes go to the session's GET stream as
//!   `notifications/tasks/status`. A tool result with `isError` makes the task `failed` there (in the extension
//!   it is `completed`).
//!
//! A [`TaskStore`] holds the tasks of one transport (the HTTP router, a stdio loop) rather than of an
//! [`McpServer`](super::McpServer), so tasks outlive the server values a resolver rebuilds. Every task records its
//! owner — for HTTP the server code plus the caller's credential — and is found only under that owner: a lookup by
//! anyone else sees "no such task", exactly like an id never issued — and so does a request of the other era. Task
//! ids are 192 random bits, so they cannot
//! be guessed or enumerated. Each task's work runs in its own tokio task under a supervisor: `tasks/cancel` and
//! expiry abort it (the tool's future is dropped, and a catalog invocation's cancellation token fires), a panic
//! becomes a `failed` task instead of taking anything down, and the record is removed once its TTL, counted from
//! its creation, has passed.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::RngCore as _;
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ClientRequestError;
use crate::protocol::{RpcError, codes};

/// The extension's identifier, under `capabilities.extensions` of both sides.
pub const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";

pub use crate::protocol::TaskSupport;

/// The state of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Running.
    Working,
    /// Waiting for the client's answers to `inputRequests`.
    InputRequired,
    /// Finished with a result (which may be a tool error, `isError: true`).
    Completed,
    /// Finished with a JSON-RPC error.
    Failed,
    /// Stopped by `tasks/cancel`.
    Cancelled,
}

impl TaskStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Working => "working",
            Self::InputRequired => "input_required",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the task has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// Which protocol a task belongs to: they show tasks differently and reach the client differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEra {
    /// The 2026-07-28 extension `io.modelcontextprotocol/tasks` (SEP-2663).
    Extension,
    /// The experimental tasks of 2025-11-25 (SEP-1686).
    Experimental,
}

/// How long a task is kept and how often clients are told to poll it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskLimits {
    pub(crate) ttl: Duration,
    pub(crate) poll_interval: Duration,
}

/// A task's work: the tool call, producing its result or a protocol error.
pub(crate) type TaskWork = Pin<Box<dyn Future<Output = Result<Value, RpcError>> + Send>>;

/// A task's status change, for `subscriptions/listen` streams that asked for its id.
#[derive(Debug, Clone)]
pub(crate) struct TaskEvent {
    pub(crate) era: TaskEra,
    pub(crate) owner: Arc<str>,
    pub(crate) task_id: Arc<str>,
    /// The notification's params: the task as `tasks/get` would have shown it at that moment
    /// (`notifications/tasks` of the extension, `notifications/tasks/status` of 2025-11-25).
    pub(crate) task: Value,
}

/// The tasks of one transport. See the [module docs](self).
pub struct TaskStore {
    tasks: Mutex<HashMap<Arc<str>, Arc<TaskEntry>>>,
    max_tasks: usize,
    events: broadcast::Sender<TaskEvent>,
}

impl std::fmt::Debug for TaskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskStore")
            .field("tasks", &self.len())
            .field("max_tasks", &self.max_tasks)
            .finish()
    }
}

impl TaskStore {
    /// A store holding at most `max_tasks` tasks (running or kept for their TTL); more are refused.
    pub fn new(max_tasks: usize) -> Self {
        let (events, _) = broadcast::channel(256);
        Self {
            tasks: Mutex::new(HashMap::new()),
            max_tasks,
            events,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<TaskEntry>>> {
        match self.tasks.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// How many tasks the store holds (running, or finished and within their TTL).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the store holds no task.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers a task of `owner` and starts `work` with the task's side of the client's answers. The task can
    /// be found as soon as this returns (a `CreateTaskResult` may only be sent for a task `tasks/get` finds).
    pub(crate) fn start(
        self: &Arc<Self>,
        owner: Arc<str>,
        era: TaskEra,
        limits: TaskLimits,
        work: impl FnOnce(TaskInputs) -> TaskWork,
    ) -> Result<Arc<TaskEntry>, RpcError> {
        let now = Utc::now();
        let entry = Arc::new(TaskEntry {
            id: new_task_id(),
            era,
            owner,
            created_at: now,
            expires: Instant::now() + limits.ttl,
            ttl_ms: millis(limits.ttl),
            poll_interval_ms: millis(limits.poll_interval).max(1),
            cancel: CancellationToken::new(),
            events: self.events.clone(),
            status: watch::channel(TaskStatus::Working).0,
            state: Mutex::new(TaskState {
                status: TaskStatus::Working,
                status_message: None,
                updated_at: now,
                result: None,
                error: None,
                inputs: Vec::new(),
                issued_keys: HashSet::new(),
            }),
        });
        {
            let mut tasks = self.lock();
            if tasks.len() >= self.max_tasks {
                return Err(RpcError::internal(format!(
                    "this server holds its maximum of {} tasks; retry when some have finished and expired",
                    self.max_tasks
                )));
            }
            tasks.insert(Arc::clone(&entry.id), Arc::clone(&entry));
        }
        let worker = tokio::spawn(work(TaskInputs {
            entry: Arc::clone(&entry),
        }));
        let store = Arc::downgrade(self);
        tokio::spawn(supervise(Arc::clone(&entry), worker, store));
        Ok(entry)
    }

    /// The task `task_id` of `owner` in `era`; `None` when there is no such task, it expired, or it is another
    /// owner's or another era's.
    pub(crate) fn get(&self, owner: &str, era: TaskEra, task_id: &str) -> Option<Arc<TaskEntry>> {
        let entry = self.lock().get(task_id).cloned()?;
        (*entry.owner == *owner && entry.era == era && Instant::now() < entry.expires).then_some(entry)
    }

    /// The live tasks of `owner` in `era`, oldest first (ties by id), for `tasks/list`.
    pub(crate) fn list(&self, owner: &str, era: TaskEra) -> Vec<Arc<TaskEntry>> {
        let now = Instant::now();
        let mut tasks: Vec<_> = self
            .lock()
            .values()
            .filter(|e| *e.owner == *owner && e.era == era && now < e.expires)
            .cloned()
            .collect();
        tasks.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        tasks
    }

    /// One page of [`list`](Self::list) after `cursor` (a `nextCursor` of an earlier page), and the cursor of
    /// the next page when there is one; `Err` for a cursor this store did not make. Cursors name a position
    /// (creation time and id), so tasks that expire between pages do not shift the next page.
    #[allow(clippy::type_complexity)]
    pub(crate) fn list_page(
        &self,
        owner: &str,
        era: TaskEra,
        cursor: Option<&str>,
        page: usize,
    ) -> Result<(Vec<Arc<TaskEntry>>, Option<String>), ()> {
        let after = cursor.map(decode_cursor).transpose()?;
        let tasks = self.list(owner, era);
        let start = match &after {
            Some((micros, id)) => tasks.partition_point(|t| t.order_key() <= (*micros, id.as_str())),
            None => 0,
        };
        let rest = &tasks[start..];
        let shown: Vec<_> = rest.iter().take(page).cloned().collect();
        let next = (rest.len() > shown.len())
            .then(|| shown.last().map(|last| encode_cursor(last.order_key())))
            .flatten();
        Ok((shown, next))
    }

    /// Forgets a task (its work must have ended or been cancelled).
    pub(crate) fn remove(&self, task_id: &str) {
        self.lock().remove(task_id);
    }

    /// Cancels and forgets every task (their transport is going away, and with it every way to reach them).
    pub fn cancel_all(&self) {
        let entries: Vec<_> = self.lock().drain().map(|(_, entry)| entry).collect();
        for entry in entries {
            let _ = entry.cancel();
        }
    }

    /// Status changes from now on (only sent while someone listens).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<TaskEvent> {
        self.events.subscribe()
    }
}

/// Waits for a task's work, records how it ended, and removes the record when the TTL has passed.
async fn supervise(
    entry: Arc<TaskEntry>,
    worker: tokio::task::JoinHandle<Result<Value, RpcError>>,
    store: Weak<TaskStore>,
) {
    let abort = worker.abort_handle();
    let expiry = tokio::time::sleep_until(entry.expires);
    tokio::pin!(expiry);
    let joined = tokio::select! {
        joined = worker => Some(joined),
        _ = entry.cancel.cancelled() => None,
        _ = &mut expiry => None,
    };
    match joined {
        // Cancelled or expired: drop the tool's future where it stands.
        None => {
            abort.abort();
            entry.finish(TaskStatus::Cancelled, None, None);
        }
        Some(Ok(Ok(result))) => entry.finish(TaskStatus::Completed, Some(result), None),
        Some(Ok(Err(error))) => entry.finish(TaskStatus::Failed, None, Some(error)),
        Some(Err(join)) if join.is_panic() => {
            tracing::error!(task = %entry.id, "an MCP task's tool panicked");
            let error = RpcError::internal("the tool failed unexpectedly (it panicked); see the server log");
            entry.finish(TaskStatus::Failed, None, Some(error));
        }
        Some(Err(_)) => entry.finish(TaskStatus::Cancelled, None, None),
    }
    expiry.await;
    entry.cancel.cancel();
    if let Some(store) = store.upgrade() {
        store.remove(&entry.id);
    }
}

/// 24 random bytes, URL-safe: unguessable, so a task id can only be known from the response that created it.
fn new_task_id() -> Arc<str> {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes).into()
}

/// An opaque `tasks/list` cursor for a position (creation time, id).
fn encode_cursor((micros, id): (i64, &str)) -> String {
    URL_SAFE_NO_PAD.encode(format!("{micros}:{id}"))
}

fn decode_cursor(cursor: &str) -> Result<(i64, String), ()> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| ())?;
    let text = String::from_utf8(bytes).map_err(|_| ())?;
    let (micros, id) = text.split_once(':').ok_or(())?;
    Ok((micros.parse().map_err(|_| ())?, id.to_owned()))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One question of a running task to the client, waiting in `inputRequests`.
struct PendingInput {
    key: String,
    method: String,
    /// `{method, params}` as `inputRequests` shows it.
    request: Value,
    /// The client's result, or the error it answered with (2025-11-25 questions are JSON-RPC requests).
    answer: oneshot::Sender<Result<Value, RpcError>>,
    /// 2025-11-25: sent to the client on a `tasks/result` stream that is still waiting for the answer (another
    /// `tasks/result` must not ask again).
    sent: bool,
}

/// A question of a 2025-11-25 task to send to the client as a request.
#[derive(Debug, Clone)]
pub(crate) struct Question {
    pub(crate) key: String,
    pub(crate) method: String,
    pub(crate) params: Value,
}

struct TaskState {
    status: TaskStatus,
    status_message: Option<String>,
    updated_at: DateTime<Utc>,
    result: Option<Value>,
    error: Option<RpcError>,
    /// Outstanding questions, in the order asked.
    inputs: Vec<PendingInput>,
    /// Every `inputRequests` key this task ever used: a key never names two questions.
    issued_keys: HashSet<String>,
}

/// One task: its identity, limits and state.
pub(crate) struct TaskEntry {
    id: Arc<str>,
    era: TaskEra,
    owner: Arc<str>,
    created_at: DateTime<Utc>,
    expires: Instant,
    ttl_ms: u64,
    poll_interval_ms: u64,
    /// Fired by `tasks/cancel` and on expiry; the supervisor then aborts the work.
    cancel: CancellationToken,
    events: broadcast::Sender<TaskEvent>,
    /// The status, for waiters (a call deciding whether to answer directly or with the task).
    status: watch::Sender<TaskStatus>,
    state: Mutex<TaskState>,
}

impl TaskEntry {
    fn lock(&self) -> MutexGuard<'_, TaskState> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The task id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// A receiver of status changes.
    pub(crate) fn watch(&self) -> watch::Receiver<TaskStatus> {
        self.status.subscribe()
    }

    /// The order of `tasks/list`: creation time, then id.
    pub(crate) fn order_key(&self) -> (i64, &str) {
        (self.created_at.timestamp_micros(), &self.id)
    }

    /// The `Task` fields every shape shares (the extension names its durations `ttlMs` and `pollIntervalMs`,
    /// 2025-11-25 `ttl` and `pollInterval`).
    fn envelope(&self, state: &TaskState) -> Map<String, Value> {
        let mut task = Map::new();
        task.insert("taskId".into(), json!(&*self.id));
        task.insert("status".into(), json!(state.status.as_str()));
        if let Some(message) = &state.status_message {
            task.insert("statusMessage".into(), json!(message));
        }
        task.insert("createdAt".into(), json!(timestamp(self.created_at)));
        task.insert("lastUpdatedAt".into(), json!(timestamp(state.updated_at)));
        let (ttl, poll) = match self.era {
            TaskEra::Extension => ("ttlMs", "pollIntervalMs"),
            TaskEra::Experimental => ("ttl", "pollInterval"),
        };
        task.insert(ttl.into(), json!(self.ttl_ms));
        task.insert(poll.into(), json!(self.poll_interval_ms));
        task
    }

    /// The `CreateTaskResult`: in the extension the task's seed state, flat, with `resultType: "task"`; in
    /// 2025-11-25 `{task}`.
    pub(crate) fn create_result(&self) -> Value {
        let state = self.lock();
        let mut result = self.envelope(&state);
        match self.era {
            TaskEra::Extension => {
                result.insert("resultType".into(), json!("task"));
                Value::Object(result)
            }
            TaskEra::Experimental => json!({"task": result}),
        }
    }

    /// The task as its era shows it in `tasks/get` and notifications: the extension's `DetailedTask`, or the
    /// 2025-11-25 `Task` (status only; the result comes from `tasks/result`).
    fn shown_locked(&self, state: &TaskState) -> Map<String, Value> {
        match self.era {
            TaskEra::Extension => self.detailed_locked(state),
            TaskEra::Experimental => self.envelope(state),
        }
    }

    /// The task as `tasks/get` shows it (a `DetailedTask`): pending `inputRequests`, the inlined `result`, or the
    /// `error`, by status.
    fn detailed_locked(&self, state: &TaskState) -> Map<String, Value> {
        let mut task = self.envelope(state);
        match state.status {
            TaskStatus::InputRequired => {
                let requests: Map<String, Value> = state
                    .inputs
                    .iter()
                    .map(|input| (input.key.clone(), input.request.clone()))
                    .collect();
                task.insert("inputRequests".into(), Value::Object(requests));
            }
            TaskStatus::Completed => {
                let mut result = state.result.clone().unwrap_or_else(|| json!({}));
                if let Value::Object(map) = &mut result {
                    map.entry("resultType").or_insert_with(|| json!("complete"));
                }
                task.insert("result".into(), result);
            }
            TaskStatus::Failed => {
                let error = state
                    .error
                    .clone()
                    .unwrap_or_else(|| RpcError::internal("the task failed"));
                task.insert("error".into(), json!(error));
            }
            TaskStatus::Working | TaskStatus::Cancelled => {}
        }
        task
    }

    /// The `tasks/get` result (and, in 2025-11-25, the `tasks/cancel` result and a `tasks/list` entry).
    pub(crate) fn get_result(&self) -> Value {
        let state = self.lock();
        let mut result = self.shown_locked(&state);
        if self.era == TaskEra::Extension {
            result.insert("resultType".into(), json!("complete"));
        }
        Value::Object(result)
    }

    /// 2025-11-25 `tasks/result` of an ended task: exactly what the `tools/call` would have answered (its
    /// result, even one with `isError`, or its JSON-RPC error); `None` while it runs.
    pub(crate) fn payload(&self) -> Option<Result<Value, RpcError>> {
        let state = self.lock();
        match (state.status, &state.result, &state.error) {
            (TaskStatus::Completed | TaskStatus::Failed, Some(result), _) => Some(Ok(result.clone())),
            (TaskStatus::Failed, None, error) => Some(Err(error
                .clone()
                .unwrap_or_else(|| RpcError::internal("the task failed")))),
            (TaskStatus::Completed, None, _) => Some(Ok(json!({"content": []}))),
            (TaskStatus::Cancelled, _, _) => Some(Err(RpcError::internal(format!(
                "task {} was cancelled ({}); it has no result",
                self.id,
                state.status_message.as_deref().unwrap_or("cancelled")
            )))),
            (TaskStatus::Working | TaskStatus::InputRequired, _, _) => None,
        }
    }

    /// How the task ended: its result or error; `None` while it runs.
    pub(crate) fn outcome(&self) -> Option<Result<Value, RpcError>> {
        let state = self.lock();
        match state.status {
            TaskStatus::Completed => Some(Ok(state.result.clone().unwrap_or_else(|| json!({})))),
            TaskStatus::Failed => Some(Err(state
                .error
                .clone()
                .unwrap_or_else(|| RpcError::internal("the task failed")))),
            TaskStatus::Cancelled => Some(Err(RpcError::internal("the call was cancelled"))),
            TaskStatus::Working | TaskStatus::InputRequired => None,
        }
    }

    /// Applies a change under the lock, then tells waiters and listeners.
    fn update(&self, change: impl FnOnce(&mut TaskState) -> bool) {
        let mut state = self.lock();
        if !change(&mut state) {
            return;
        }
        state.updated_at = Utc::now();
        self.status.send_replace(state.status);
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(TaskEvent {
                era: self.era,
                owner: Arc::clone(&self.owner),
                task_id: Arc::clone(&self.id),
                task: Value::Object(self.shown_locked(&state)),
            });
        }
    }

    /// The current task as a `notifications/tasks` params object.
    pub(crate) fn notification(&self) -> Value {
        let state = self.lock();
        Value::Object(self.shown_locked(&state))
    }

    /// Records the end of the work; a task that already ended (cancelled first) keeps its status. In 2025-11-25 a
    /// tool result with `isError` makes the task `failed` (the spec's rule for tool calls), keeping the result for
    /// `tasks/result`.
    fn finish(&self, status: TaskStatus, result: Option<Value>, error: Option<RpcError>) {
        let tool_error = (self.era == TaskEra::Experimental && status == TaskStatus::Completed)
            .then(|| result.as_ref().and_then(tool_error_text))
            .flatten();
        let status = if tool_error.is_some() {
            TaskStatus::Failed
        } else {
            status
        };
        self.update(|state| {
            if state.status.is_terminal() {
                return false;
            }
            state.status = status;
            state.status_message = match (status, &error) {
                (TaskStatus::Failed, Some(error)) => Some(error.message.clone()),
                (TaskStatus::Failed, None) => tool_error,
                (TaskStatus::Cancelled, _) => Some("cancelled".into()),
                _ => None,
            };
            state.result = result;
            state.error = error;
            // Questions still open will never be answered; their waiters see the channel close.
            state.inputs.clear();
            true
        });
    }

    /// `tasks/cancel`: the task is `cancelled` from now on and its work is stopped. A task that already ended is
    /// left as it is: then its status is the error.
    pub(crate) fn cancel(&self) -> Result<(), TaskStatus> {
        let mut ended = None;
        self.update(|state| {
            if state.status.is_terminal() {
                ended = Some(state.status);
                return false;
            }
            state.status = TaskStatus::Cancelled;
            state.status_message = Some("cancelled by the client".into());
            state.inputs.clear();
            true
        });
        self.cancel.cancel();
        match ended {
            Some(status) => Err(status),
            None => Ok(()),
        }
    }

    /// `tasks/update`: hands the answers to the questions they answer. Keys that name no open question (never
    /// issued, already answered, or of an ended task) are ignored; an answer of the wrong shape refuses the whole
    /// update, so nothing is half-applied.
    pub(crate) fn deliver(&self, responses: &Map<String, Value>) -> Result<(), RpcError> {
        let mut failure = None;
        self.update(|state| {
            for (key, answer) in responses {
                if let Some(input) = state.inputs.iter().find(|i| i.key == *key)
                    && let Err(reason) = super::check_answer(&input.method, answer)
                {
                    failure = Some(RpcError::invalid_params(format!(
                        "inputResponses.{key} is not a valid answer: {reason}"
                    )));
                    return false;
                }
            }
            let before = state.inputs.len();
            let mut open = Vec::with_capacity(before);
            for input in std::mem::take(&mut state.inputs) {
                match responses.get(&input.key) {
                    // The work may have been cancelled meanwhile; then nobody needs the answer.
                    Some(answer) => drop(input.answer.send(Ok(answer.clone()))),
                    None => open.push(input),
                }
            }
            state.inputs = open;
            if state.inputs.len() == before {
                return false;
            }
            if state.inputs.is_empty() && state.status == TaskStatus::InputRequired {
                state.status = TaskStatus::Working;
            }
            true
        });
        match failure {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// 2025-11-25: the client's answer to question `key`, sent to it as a request: a result (checked like a
    /// `tasks/update` answer) or the error it answered with. A malformed result reaches the tool as an error, so
    /// the question is never left hanging. Unknown keys are ignored.
    pub(crate) fn answer(&self, key: &str, answer: Result<Value, RpcError>) {
        self.update(|state| {
            let Some(index) = state.inputs.iter().position(|i| i.key == key) else {
                return false;
            };
            let input = state.inputs.remove(index);
            let answer = answer.and_then(|value| {
                super::check_answer(&input.method, &value)
                    .map(|()| value)
                    .map_err(|reason| {
                        RpcError::invalid_params(format!("not a valid {} result: {reason}", input.method))
                    })
            });
            drop(input.answer.send(answer));
            if state.inputs.is_empty() && state.status == TaskStatus::InputRequired {
                state.status = TaskStatus::Working;
            }
            true
        });
    }

    /// 2025-11-25: the open questions not yet sent to the client, marked as sent (a `tasks/result` stream
    /// carries them). Each new question also bumps the status watch, so a waiting stream wakes up for it.
    pub(crate) fn take_unsent(&self) -> Vec<Question> {
        let mut state = self.lock();
        state
            .inputs
            .iter_mut()
            .filter(|i| !i.sent)
            .map(|input| {
                input.sent = true;
                Question {
                    key: input.key.clone(),
                    method: input.method.clone(),
                    params: input.request.get("params").cloned().unwrap_or_else(|| json!({})),
                }
            })
            .collect()
    }

    /// 2025-11-25: question `key` went out on a stream that closed before the client answered; the next
    /// `tasks/result` sends it again.
    pub(crate) fn unsend(&self, key: &str) {
        let state = &mut *self.lock();
        if let Some(input) = state.inputs.iter_mut().find(|i| i.key == key) {
            input.sent = false;
            // Wakes a `tasks/result` already waiting, so it sends the question.
            self.status.send_replace(state.status);
        }
    }

    /// Opens a question under a key unique over the task's life (`key`, else `key.2`, `key.3`, …).
    #[allow(clippy::type_complexity)]
    fn ask(
        &self,
        key: &str,
        method: &str,
        params: Value,
    ) -> Result<(String, oneshot::Receiver<Result<Value, RpcError>>), ()> {
        let (tx, rx) = oneshot::channel();
        let mut issued = None;
        self.update(|state| {
            if state.status.is_terminal() {
                return false;
            }
            let mut unique = key.to_owned();
            let mut n = 1;
            while state.issued_keys.contains(&unique) {
                n += 1;
                unique = format!("{key}.{n}");
            }
            state.issued_keys.insert(unique.clone());
            state.inputs.push(PendingInput {
                key: unique.clone(),
                method: method.to_owned(),
                request: json!({"method": method, "params": params}),
                answer: tx,
                sent: false,
            });
            state.status = TaskStatus::InputRequired;
            state.status_message = None;
            issued = Some(unique);
            true
        });
        issued.map(|key| (key, rx)).ok_or(())
    }

    /// Drops a question nobody waits for any more (its asker was cancelled).
    fn withdraw(&self, key: &str) {
        self.update(|state| {
            let before = state.inputs.len();
            state.inputs.retain(|i| i.key != key);
            if state.inputs.len() == before {
                return false;
            }
            if state.inputs.is_empty() && state.status == TaskStatus::InputRequired {
                state.status = TaskStatus::Working;
            }
            true
        });
    }
}

/// A running task's side of its questions to the client: they wait in `inputRequests` until `tasks/update`
/// answers them.
#[derive(Clone)]
pub(crate) struct TaskInputs {
    entry: Arc<TaskEntry>,
}

impl std::fmt::Debug for TaskInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskInputs").field("task", &self.entry.id).finish()
    }
}

impl TaskInputs {
    /// A token fired when the task is cancelled or expires.
    pub(crate) fn cancel_token(&self) -> CancellationToken {
        self.entry.cancel.child_token()
    }

    /// Asks the client `method` with `params` and waits for the answer `tasks/update` brings.
    pub(crate) async fn ask(&self, key: &str, method: &str, params: Value) -> Result<Value, ClientRequestError> {
        let closed = || ClientRequestError::Closed { method: method.into() };
        let (key, answer) = self.entry.ask(key, method, params).map_err(|()| closed())?;
        /// Takes the question back when the asker stops waiting (the task was cancelled, or the tool gave up).
        struct Withdraw<'a>(&'a TaskEntry, String);
        impl Drop for Withdraw<'_> {
            fn drop(&mut self) {
                self.0.withdraw(&self.1);
            }
        }
        let _withdraw = Withdraw(&self.entry, key);
        match answer.await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(ClientRequestError::Rejected {
                method: method.into(),
                error,
            }),
            Err(_) => Err(closed()),
        }
    }
}

/// The tasks a request may reach: a store and the owner the request acts for.
#[derive(Debug, Clone)]
pub struct TaskScope {
    pub(crate) store: Arc<TaskStore>,
    pub(crate) owner: Arc<str>,
    /// Whether the owner is one requestor (a credential, a stdio client), so its tasks may be listed
    /// (2025-11-25 `tasks/list`); callers of an open server share an owner and must not see each other's tasks.
    pub(crate) listing: bool,
}

impl TaskScope {
    /// The tasks of `owner` in `store`. The owner must identify the server and the authenticated caller (e.g.
    /// the server code and a hash of the caller's key), since it is the only access check a task id gets.
    pub fn new(store: Arc<TaskStore>, owner: impl Into<Arc<str>>) -> Self {
        Self {
            store,
            owner: owner.into(),
            listing: false,
        }
    }

    /// Builder: the owner identifies a single requestor, so 2025-11-25 `tasks/list` is offered.
    pub fn with_listing(mut self, listing: bool) -> Self {
        self.listing = listing;
        self
    }
}

/// The text of a tool result with `isError: true` (its text blocks), for a failed task's `statusMessage`; `None`
/// for any other result.
fn tool_error_text(result: &Value) -> Option<String> {
    if result.get("isError") != Some(&Value::Bool(true)) {
        return None;
    }
    let text: Vec<&str> = result
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|block| block.get("text").and_then(Value::as_str))
        .collect();
    let mut message = if text.is_empty() {
        "the tool reported an error".to_owned()
    } else {
        text.join("\n")
    };
    if message.len() > 1000 {
        let mut end = 1000;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    Some(message)
}

/// -32021 naming the tasks extension as the missing capability.
pub(crate) fn missing_extension(message: impl Into<String>) -> RpcError {
    RpcError::new(codes::MISSING_CLIENT_CAPABILITY, message)
        .with_data(json!({"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}}))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const LIMITS: TaskLimits = TaskLimits {
        ttl: Duration::from_secs(60),
        poll_interval: Duration::from_millis(250),
    };

    async fn settled(entry: &TaskEntry) -> TaskStatus {
        let mut watch = entry.watch();
        *watch.wait_for(|s| s.is_terminal()).await.unwrap()
    }

    #[tokio::test]
    async fn a_panicking_tool_fails_its_task_and_nothing_else() {
        let store = Arc::new(TaskStore::new(10));
        let entry = store
            .start("owner".into(), TaskEra::Extension, LIMITS, |_| {
                Box::pin(async { panic!("the tool broke") })
            })
            .unwrap();
        assert_eq!(settled(&entry).await, TaskStatus::Failed);
        let shown = entry.get_result();
        assert_eq!(shown["error"]["code"], codes::INTERNAL_ERROR);
        assert!(shown.get("result").is_none(), "{shown}");
    }

    #[tokio::test]
    async fn tasks_are_found_only_by_their_owner_and_ids_do_not_repeat() {
        let store = Arc::new(TaskStore::new(10));
        let entry = store
            .start("alice".into(), TaskEra::Extension, LIMITS, |_| {
                Box::pin(async { Ok(json!({"content": []})) })
            })
            .unwrap();
        assert!(store.get("alice", TaskEra::Extension, entry.id()).is_some());
        assert!(store.get("bob", TaskEra::Extension, entry.id()).is_none());
        assert!(store.get("alice", TaskEra::Experimental, entry.id()).is_none());
        let other = store
            .start("alice".into(), TaskEra::Extension, LIMITS, |_| {
                Box::pin(async { Ok(json!({})) })
            })
            .unwrap();
        assert_ne!(entry.id(), other.id());
        assert!(entry.id().len() >= 32, "{}", entry.id());
    }

    #[tokio::test]
    async fn the_store_refuses_tasks_beyond_its_limit() {
        let store = Arc::new(TaskStore::new(1));
        let forever = |_| -> TaskWork { Box::pin(std::future::pending()) };
        let first = store.start("o".into(), TaskEra::Extension, LIMITS, forever).unwrap();
        let error = store
            .start("o".into(), TaskEra::Extension, LIMITS, forever)
            .err()
            .unwrap();
        assert_eq!(error.code, codes::INTERNAL_ERROR);
        first.cancel().unwrap();
        assert_eq!(settled(&first).await, TaskStatus::Cancelled);
    }

    #[tokio::test]
    async fn repeated_question_keys_stay_unique_and_answers_resume_the_work() {
        let store = Arc::new(TaskStore::new(10));
        let entry = store
            .start("o".into(), TaskEra::Extension, LIMITS, |inputs| {
                Box::pin(async move {
                    let first = inputs.ask("q", "elicitation/create", json!({})).await.unwrap();
                    let second = inputs.ask("q", "elicitation/create", json!({})).await.unwrap();
                    Ok(json!({"answers": [first["content"], second["content"]]}))
                })
            })
            .unwrap();
        let mut watch = entry.watch();
        watch.wait_for(|s| *s == TaskStatus::InputRequired).await.unwrap();
        assert_eq!(entry.get_result()["inputRequests"]["q"]["method"], "elicitation/create");
        let bad = Map::from_iter([("q".into(), json!({"action": "maybe"}))]);
        assert_eq!(entry.deliver(&bad).unwrap_err().code, codes::INVALID_PARAMS);
        let answer = |n: i64| json!({"action": "accept", "content": n});
        entry.deliver(&Map::from_iter([("q".into(), answer(1))])).unwrap();
        // (Never lock the task inside a `wait_for` predicate: updates send while holding that lock.)
        while entry.get_result()["inputRequests"].get("q.2").is_none() {
            watch.changed().await.unwrap();
        }
        // The answered key is spent: answering it again changes nothing.
        entry.deliver(&Map::from_iter([("q".into(), answer(9))])).unwrap();
        entry.deliver(&Map::from_iter([("q.2".into(), answer(2))])).unwrap();
        assert_eq!(settled(&entry).await, TaskStatus::Completed);
        assert_eq!(entry.get_result()["result"]["answers"], json!([1, 2]));
    }
}
