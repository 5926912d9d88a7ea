//! Running code nodes in a subprocess sandbox.
//!
//! Each run is a fresh interpreter process (`python3 -I` or `node`) fed a small runner script; the user's code
//! and inputs arrive as JSON on stdin, the result leaves as JSON on stdout (the user's own prints go to
//! stderr). Limits:
//!
//! - **time**: the process is killed (SIGKILL) when [`SandboxConfig::timeout`] passes;
//! - **memory**: Python sets `RLIMIT_AS` on itself with `resource.setrlimit` before any user code is compiled
//!   (no `unsafe` `pre_exec` needed); Node gets `--max-old-space-size`, because V8 reserves far more address
//!   space than it uses and cannot run under a small `RLIMIT_AS`;
//! - **network**: when `unshare -rn` works on the host (an unprivileged user + network namespace), the
//!   interpreter runs in a namespace with no interfaces at all, so nothing (not even a subprocess) can reach
//!   the network. On top of that, and as the only guard when namespaces are unavailable, the runners disable
//!   networking in-process: Python replaces the `socket` constructors with a function raising a clear error,
//!   JavaScript runs the code in a `vm` context without `require`, `process` or `fetch`. The in-process guard
//!   alone is best effort (code can reach `_socket`), so production hosts should allow user namespaces;
//! - **environment**: cleared except `PATH` and `LANG`; working directory is the system temp directory.
//!
//! Errors say which limit was hit: [`SandboxError::Timeout`], [`SandboxError::Memory`],
//! [`SandboxError::Network`], [`SandboxError::Syntax`], [`SandboxError::Runtime`].

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::OnceCell;

use crate::dsl::CodeLanguage;

/// Limits of code execution.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Python interpreter (resolved to its real executable once, so pyenv-style shims work with a cleared
    /// environment).
    pub python: String,
    /// Node.js executable.
    pub node: String,
    /// Wall-clock limit of one run (`CODE_EXECUTION_TIMEOUT`, default 15 s).
    pub timeout: Duration,
    /// Memory limit in bytes (`CODE_EXECUTION_MEMORY_LIMIT`, default 256 MiB).
    pub memory_bytes: u64,
    /// Lets code reach the network (default false).
    pub allow_network: bool,
    /// Largest result (stdout) accepted, in bytes.
    pub max_output_bytes: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            python: "python3".into(),
            node: "node".into(),
            timeout: Duration::from_secs(15),
            memory_bytes: 256 * 1024 * 1024,
            allow_network: false,
            max_output_bytes: 1024 * 1024,
        }
    }
}

impl SandboxConfig {
    /// Defaults overridden by `CODE_EXECUTION_TIMEOUT` (seconds), `CODE_EXECUTION_MEMORY_LIMIT` (MiB),
    /// `CODE_EXECUTION_ALLOW_NETWORK` (`true`/`false`), `CODE_PYTHON_PATH`, `CODE_NODE_PATH`. Unparsable values
    /// keep the default and log a warning.
    pub fn from_env() -> Self {
        let mut config = Self::default();
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if let Some(v) = get("CODE_EXECUTION_TIMEOUT") {
            match v.trim().parse::<f64>() {
                Ok(s) if s > 0.0 && s.is_finite() => config.timeout = Duration::from_secs_f64(s),
                _ => tracing::warn!(value = %v, "CODE_EXECUTION_TIMEOUT is not a positive number of seconds; using 15"),
            }
        }
        if let Some(v) = get("CODE_EXECUTION_MEMORY_LIMIT") {
            match v.trim().parse::<u64>() {
                Ok(mib) if mib > 0 => config.memory_bytes = mib * 1024 * 1024,
                _ => {
                    tracing::warn!(value = %v, "CODE_EXECUTION_MEMORY_LIMIT is not a positive number of MiB; using 256")
                }
            }
        }
        if let Some(v) = get("CODE_EXECUTION_ALLOW_NETWORK") {
            config.allow_network = matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes");
        }
        if let Some(v) = get("CODE_PYTHON_PATH") {
            config.python = v;
        }
        if let Some(v) = get("CODE_NODE_PATH") {
            config.node = v;
        }
        config
    }
}

/// Why code did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SandboxError {
    #[error("code ran longer than the {millis} ms limit and was killed (CODE_EXECUTION_TIMEOUT)")]
    Timeout { millis: u128 },

    #[error("code exceeded the memory limit of {limit_mib} MiB (CODE_EXECUTION_MEMORY_LIMIT): {detail}")]
    Memory { limit_mib: u64, detail: String },

    #[error("code tried to use the network, which is disabled in the code sandbox: {detail}")]
    Network { detail: String },

    #[error("syntax error in the code: {0}")]
    Syntax(String),

    #[error("code raised an error: {0}")]
    Runtime(String),

    #[error("code result is invalid: {0}")]
    InvalidOutput(String),

    #[error("{language} code cannot run here: {reason}")]
    Unavailable { language: &'static str, reason: String },
}

/// Runs code under [`SandboxConfig`]'s limits. Cheap to share; host capabilities are probed once.
#[derive(Debug, Default)]
pub struct Sandbox {
    config: SandboxConfig,
    python: OnceCell<Result<String, String>>,
    namespaces: OnceCell<bool>,
}

impl Sandbox {
    /// A sandbox with the given limits.
    pub fn new(config: SandboxConfig) -> Self {
        Self {
            config,
            python: OnceCell::new(),
            namespaces: OnceCell::new(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Whether runs are isolated in a network namespace (`unshare -rn` works on this host).
    pub async fn network_namespaces(&self) -> bool {
        *self
            .namespaces
            .get_or_init(|| async {
                let status = Command::new("unshare")
                    .args(["-rn", "true"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .status();
                matches!(tokio::time::timeout(Duration::from_secs(5), status).await, Ok(Ok(s)) if s.success())
            })
            .await
    }

    /// Runs `code`'s `main` with `inputs` and returns the object it returned.
    ///
    /// Python calls `main(**inputs)`; JavaScript calls `main(inputs)` (Dify's templates destructure it).
    pub async fn run(
        &self,
        language: CodeLanguage,
        code: &str,
        inputs: &Map<String, Value>,
    ) -> Result<Map<String, Value>, SandboxError> {
        let limit_mib = self.config.memory_bytes / (1024 * 1024);
        let net_flag = if self.config.allow_network { "1" } else { "0" };
        let (program, args, language_name): (String, Vec<String>, &'static str) = match language {
            CodeLanguage::Python3 => {
                let python = self
                    .python
                    .get_or_init(|| resolve_python(&self.config.python))
                    .await
                    .clone()
                    .map_err(|reason| SandboxError::Unavailable {
                        language: "python3",
                        reason,
                    })?;
                let args = vec![
                    "-I".into(),
                    "-c".into(),
                    PYTHON_RUNNER.into(),
                    self.config.memory_bytes.to_string(),
                    net_flag.into(),
                ];
                (python, args, "python3")
            }
            CodeLanguage::Javascript => {
                let args = vec![
                    format!("--max-old-space-size={}", limit_mib.max(16)),
                    "-e".into(),
                    JS_RUNNER.into(),
                    net_flag.into(),
                ];
                (self.config.node.clone(), args, "javascript")
            }
        };
        let mut command = if !self.config.allow_network && self.network_namespaces().await {
            let mut c = Command::new("unshare");
            c.arg("-rn").arg(&program).args(&args);
            c
        } else {
            let mut c = Command::new(&program);
            c.args(&args);
            c
        };
        command
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| SandboxError::Unavailable {
            language: language_name,
            reason: format!("cannot start {program}: {e}"),
        })?;

        let payload = serde_json::json!({"code": code, "inputs": inputs}).to_string();
        let mut stdin = child.stdin.take();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let max_out = self.config.max_output_bytes;
        let work = async {
            let write = async {
                if let Some(mut stdin) = stdin.take() {
                    // A runner that died early closes the pipe; its exit status tells why.
                    let _ = stdin.write_all(payload.as_bytes()).await;
                    let _ = stdin.shutdown().await;
                }
            };
            let read_out = read_capped(stdout.take(), max_out + 1);
            let read_err = read_capped(stderr.take(), 64 * 1024);
            let ((), out, err, status) = tokio::join!(write, read_out, read_err, child.wait());
            (out, err, status)
        };
        let (out, err, status) = match tokio::time::timeout(self.config.timeout, work).await {
            Ok(done) => done,
            Err(_) => {
                // Dropping the child (kill_on_drop) kills it; kill explicitly too, and reap.
                let _ = child.kill().await;
                return Err(SandboxError::Timeout {
                    millis: self.config.timeout.as_millis(),
                });
            }
        };
        let status = status.map_err(|e| SandboxError::Runtime(format!("cannot wait for the interpreter: {e}")))?;
        let stderr_text = String::from_utf8_lossy(&err).into_owned();
        if out.len() > max_out {
            return Err(SandboxError::InvalidOutput(format!(
                "the result is larger than {max_out} bytes"
            )));
        }
        let parsed: Option<Value> = serde_json::from_slice(&out).ok();
        match parsed {
            Some(Value::Object(mut reply)) => {
                if let Some(Value::Object(error)) = reply.remove("error") {
                    return Err(classify_reported(&error, limit_mib));
                }
                match reply.remove("result") {
                    Some(Value::Object(result)) => Ok(result),
                    Some(other) => Err(SandboxError::InvalidOutput(format!(
                        "main must return an object (dict), got {}",
                        json_type(&other)
                    ))),
                    None => Err(SandboxError::InvalidOutput("the runner returned no result".into())),
                }
            }
            _ => Err(classify_crash(status, &stderr_text, limit_mib)),
        }
    }
}

async fn read_capped<R: tokio::io::AsyncRead + Unpin>(reader: Option<R>, limit: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(reader) = reader {
        let _ = reader.take(limit as u64).read_to_end(&mut buf).await;
    }
    buf
}

async fn resolve_python(configured: &str) -> Result<String, String> {
    let output = Command::new(configured)
        .args(["-I", "-c", "import sys; print(sys.executable)"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(20), output).await {
        Ok(Ok(out)) if out.status.success() => {
            let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if path.is_empty() {
                Ok(configured.to_owned())
            } else {
                Ok(path)
            }
        }
        Ok(Ok(out)) => Err(format!(
            "{configured} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(Err(e)) => Err(format!(
            "cannot start {configured}: {e}; install Python 3 or set CODE_PYTHON_PATH"
        )),
        Err(_) => Err(format!("{configured} did not answer within 20 s")),
    }
}

fn classify_reported(error: &Map<String, Value>, limit_mib: u64) -> SandboxError {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("unknown error")
        .to_owned();
    match error.get("kind").and_then(Value::as_str).unwrap_or("runtime") {
        "syntax" => SandboxError::Syntax(message),
        "memory" => SandboxError::Memory {
            limit_mib,
            detail: message,
        },
        "network" => SandboxError::Network { detail: message },
        "output" => SandboxError::InvalidOutput(message),
        _ => SandboxError::Runtime(message),
    }
}

fn classify_crash(status: std::process::ExitStatus, stderr: &str, limit_mib: u64) -> SandboxError {
    let tail: String = {
        let trimmed = stderr.trim();
        let start = trimmed.len().saturating_sub(2000);
        let start = (start..trimmed.len())
            .find(|&i| trimmed.is_char_boundary(i))
            .unwrap_or(0);
        trimmed[start..].to_owned()
    };
    let memory_markers = [
        "heap out of memory",
        "Reached heap limit",
        "MemoryError",
        "Cannot allocate memory",
    ];
    if memory_markers.iter().any(|m| stderr.contains(m)) {
        return SandboxError::Memory {
            limit_mib,
            detail: last_line(&tail),
        };
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if status.signal() == Some(9) {
            return SandboxError::Memory {
                limit_mib,
                detail: "the interpreter was killed (SIGKILL), most likely by the out-of-memory killer".into(),
            };
        }
    }
    SandboxError::Runtime(format!(
        "the interpreter exited with {status} without a result{}",
        if tail.is_empty() {
            String::new()
        } else {
            format!(": {tail}")
        }
    ))
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}

pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The Python runner. argv: memory limit in bytes, network flag (`1` allows).
const PYTHON_RUNNER: &str = r#"
import sys, json
_stdout = sys.stdout
sys.stdout = sys.stderr

def _finish(obj):
    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        text = json.dumps({"error": {"kind": "output", "message": "main returned a value that is not JSON: %s" % e}})
    _stdout.write(text)
    _stdout.flush()
    sys.exit(0)

try:
    import resource
    _limit = int(sys.argv[1])
    if _limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (_limit, _limit))
except Exception as e:
    _finish({"error": {"kind": "runtime", "message": "cannot apply the memory limit: %s" % e}})

class SandboxNetworkError(PermissionError):
    pass

if sys.argv[2] != "1":
    import socket as _socket
    def _no_network(*args, **kwargs):
        raise SandboxNetworkError("network access is disabled in the code sandbox")
    for _name in ("socket", "create_connection", "getaddrinfo", "gethostbyname", "socketpair", "fromfd"):
        setattr(_socket, _name, _no_network)

_payload = json.loads(sys.stdin.read())
try:
    _compiled = compile(_payload["code"], "<code>", "exec")
except SyntaxError as e:
    _finish({"error": {"kind": "syntax", "message": "line %s: %s" % (e.lineno, e.msg)}})
except MemoryError:
    _finish({"error": {"kind": "memory", "message": "MemoryError while compiling"}})

try:
    _ns = {"__name__": "__main__"}
    exec(_compiled, _ns)
    _main = _ns.get("main")
    if not callable(_main):
        _finish({"error": {"kind": "runtime", "message": "the code must define a function main(...) that returns a dict"}})
    _result = _main(**_payload["inputs"])
except MemoryError:
    _finish({"error": {"kind": "memory", "message": "MemoryError: the code allocated more memory than allowed"}})
except SandboxNetworkError as e:
    _finish({"error": {"kind": "network", "message": str(e)}})
except RecursionError as e:
    _finish({"error": {"kind": "runtime", "message": "RecursionError: %s" % e}})
except OSError as e:
    kind = "network" if getattr(e, "errno", None) in (101, 97, 99, -2, -3) else "runtime"
    _finish({"error": {"kind": kind, "message": "%s: %s" % (type(e).__name__, e)}})
except Exception as e:
    _finish({"error": {"kind": "runtime", "message": "%s: %s" % (type(e).__name__, e)}})
_finish({"result": _result})
"#;

/// The JavaScript runner. argv: network flag (`1` allows).
const JS_RUNNER: &str = r#"
const vm = require('vm');
const write = (s, cb) => process.stdout.write(s, cb);
const log = (...a) => process.stderr.write(a.map(String).join(' ') + '\n');
const allowNetwork = process.argv[process.argv.length - 1] === '1';
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (c) => { input += c; });
process.stdin.on('end', async () => {
  const finish = (obj) => {
    let text;
    try { text = JSON.stringify(obj); } catch (e) { text = JSON.stringify({error: {kind: 'output', message: 'main returned a value that is not JSON: ' + e.message}}); }
    write(text, () => process.exit(0));
  };
  const payload = JSON.parse(input);
  let script;
  try {
    script = new vm.Script(payload.code + "\n;(typeof main === 'function') ? main : undefined", {filename: 'code.js'});
  } catch (e) {
    return finish({error: {kind: e && e.name === 'SyntaxError' ? 'syntax' : 'runtime', message: String(e && e.message || e)}});
  }
  const denied = () => { const e = new Error('network access is disabled in the code sandbox'); e.name = 'SandboxNetworkError'; throw e; };
  const context = {console: {log, info: log, warn: log, error: log, debug: log}};
  if (allowNetwork) { context.fetch = fetch; context.require = require; }
  else { context.fetch = denied; context.require = denied; context.XMLHttpRequest = denied; context.WebSocket = denied; }
  try {
    const main = script.runInNewContext(context);
    if (typeof main !== 'function') return finish({error: {kind: 'runtime', message: 'the code must define a function main(...) that returns an object'}});
    const result = await main(payload.inputs);
    finish({result});
  } catch (e) {
    const name = e && e.name;
    const kind = name === 'SandboxNetworkError' ? 'network' : (name === 'RangeError' && /allocation|memory/i.test(String(e.message)) ? 'memory' : 'runtime');
    finish({error: {kind, message: (name ? name + ': ' : '') + String(e && e.message || e)}});
  }
});
"#;
