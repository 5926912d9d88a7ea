#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
//! The local plugin runtime: runs unmodified Dify plugins (Python, `dify_plugin` SDK) as supervised child processes
//! speaking the SDK's stdio protocol.
//!
//! What this crate owns:
//! - [`env`]: a working folder per unique identifier (`PLUGIN_WORKING_PATH/<author>/<name>-<version>@<checksum>`),
//!   a `.venv` made with `uv` (downloaded from PyPI when absent, `UV_PATH` honoured, one shared uv cache), the
//!   interpreter `meta.runner.version` asks for, `requirements.txt` or `pyproject.toml` + `uv.lock`, bundled wheels,
//!   `PIP_MIRROR_URL`, `PYTHON_ENV_INIT_TIMEOUT`, and a validity marker reused after restarts;
//! - [`PluginRuntime`]: lazy start, readiness by first heartbeat, restart with backoff after crashes, idle stop;
//! - [`Session`]: one request's answer stream, multiplexed by `session_id`; dropping it cancels the session (the
//!   plugin is killed and restarted if it keeps working on cancelled sessions while it has nothing else to do);
//! - [`protocol`]: the NDJSON codec, and [`FrameReader`]: its newline framing (split writes, blank lines, a bound
//!   on line length);
//! - the session multiplexer (`mux.rs`), shared by local processes (stdio) and [`RemotePlugin`]s (remote debugging
//!   over TCP, registered by the daemon);
//! - [`backwards`]: storage KV with quotas, tool calls into the host's catalog ([`backwards::ToolCatalog`]),
//!   upload URLs ([`backwards::FileUploads`]), everything else forwarded to Dify's inner API ([`inner_api`]);
//! - [`sandbox`]: Landlock and seccomp confinement of plugin processes through a launcher.

pub mod backwards;
mod config;
pub mod env;
mod error;
mod frame;
pub mod inner_api;
mod mux;
mod process;
pub mod protocol;
mod remote;
mod runtime;
pub mod sandbox;

pub use backwards::{Backwards, BackwardsToolCall, FileUploads, FsStorage, PluginStorage, StorageError, ToolCatalog};
pub use config::{DEFAULT_MAX_LINE_BYTES, RuntimeConfig};
pub use error::{EnvError, RuntimeError};
pub use frame::{Frame, FrameReader};
pub use inner_api::{DifyInnerApi, InnerApiError};
pub use mux::{PluginIdentity, Session, SessionError};
pub use protocol::{InvokeRequest, PluginError};
pub use remote::RemotePlugin;
pub use runtime::{InstallReport, PluginRuntime, PluginStatus};
pub use sandbox::{SandboxLauncher, SandboxMode};
