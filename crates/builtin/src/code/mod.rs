//! The `code` provider: Dify's `simple_code` tool ("Code Interpreter"), which runs a Python 3 or JavaScript
//! snippet and answers with what it printed.
//!
//! It runs in the same subprocess sandbox as workflow code nodes ([`toolplane_workflow::sandbox::Sandbox`]), so
//! the same limits apply (`CODE_EXECUTION_TIMEOUT`, `CODE_EXECUTION_MEMORY_LIMIT`, no network unless
//! `CODE_EXECUTION_ALLOW_NETWORK`). The sandbox calls a `main` function and returns its object; a snippet is a
//! plain script, so this module wraps it in a small `main` that captures the script's standard output and returns
//! it as `{"stdout": …}`. A limit that is hit becomes a [`ToolError::Invoke`] carrying the sandbox's message
//! (which names the limit and the setting to change).

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use toolplane_core::{MessageStream, Tool, ToolEntity, ToolError, ToolInvokeMessage, ToolRuntime};
use toolplane_workflow::CodeLanguage;
use toolplane_workflow::sandbox::Sandbox;

use crate::declaration::{self, DeclarationError};
use crate::provider::BuiltinProvider;

/// The provider's name (and id).
pub const PROVIDER_NAME: &str = "code";

const DECLARATION_FILE: &str = "code/provider.json";
const DECLARATION: &str = include_str!("provider.json");
const ICON: &[u8] = include_bytes!("icon.svg");

/// Python wrapper: runs the script (passed as the `script` input) with `sys.stdout` captured.
const PYTHON_WRAPPER: &str = r#"
def main(script):
    import io, sys
    captured = io.StringIO()
    previous = sys.stdout
    sys.stdout = captured
    try:
        exec(compile(script, "<code>", "exec"), {"__name__": "__main__"})
    finally:
        sys.stdout = previous
    return {"stdout": captured.getvalue()}
"#;

/// JavaScript prologue: `console.log` and friends append to a buffer that `main` returns. The user's script
/// follows it verbatim (so syntax errors are reported as such), then the epilogue defines `main`.
const JS_PROLOGUE: &str = r#"const __toolplane_out = [];
const __toolplane_print = (...args) => { __toolplane_out.push(args.map((a) => { if (typeof a === 'string') return a; try { const s = JSON.stringify(a); return s === undefined ? String(a) : s; } catch (e) { return String(a); } }).join(' ') + '\n'); };
console.log = __toolplane_print; console.info = __toolplane_print; console.debug = __toolplane_print;
"#;
const JS_EPILOGUE: &str = "\n;function main() { return { stdout: __toolplane_out.join('') }; }\n";

/// Builds the `code` provider; snippets run in `sandbox`.
pub(crate) fn provider(sandbox: Arc<Sandbox>) -> Result<BuiltinProvider, DeclarationError> {
    let declaration = declaration::parse(DECLARATION_FILE, DECLARATION)?;
    let tools = declaration
        .tools
        .into_iter()
        .map(|entity| match entity.identity.name.as_str() {
            "simple_code" => Ok(Arc::new(SimpleCode {
                entity,
                sandbox: sandbox.clone(),
            }) as Arc<dyn Tool>),
            other => Err(DeclarationError {
                file: DECLARATION_FILE,
                reason: format!("tool {other:?} is declared but not implemented"),
            }),
        })
        .collect::<Result<Vec<_>, DeclarationError>>()?;
    Ok(BuiltinProvider::new(declaration.provider, tools, ICON))
}

/// `simple_code`: runs `code` in `language` and answers with its standard output.
struct SimpleCode {
    entity: ToolEntity,
    sandbox: Arc<Sandbox>,
}

#[async_trait]
impl Tool for SimpleCode {
    fn entity(&self) -> &ToolEntity {
        &self.entity
    }

    async fn invoke(
        &self,
        _runtime: ToolRuntime,
        parameters: Map<String, Value>,
        cancel: CancellationToken,
    ) -> Result<MessageStream, ToolError> {
        let language = parameters.get("language").and_then(Value::as_str).unwrap_or_default();
        let code = parameters
            .get("code")
            .and_then(Value::as_str)
            .ok_or_else(|| ToolError::param("parameter \"code\" is required: give the source to run"))?;
        let stdout = tokio::select! {
            result = run(&self.sandbox, language, code) => result?,
            () = cancel.cancelled() => return Err(ToolError::Cancelled),
        };
        Ok(futures::stream::iter([Ok(ToolInvokeMessage::text(stdout))]).boxed())
    }
}

/// Runs a snippet and returns what it printed.
pub(crate) async fn run(sandbox: &Sandbox, language: &str, code: &str) -> Result<String, ToolError> {
    let (language, program, inputs) = match language {
        "python3" => {
            let mut inputs = Map::new();
            inputs.insert("script".into(), Value::String(code.to_owned()));
            (CodeLanguage::Python3, PYTHON_WRAPPER.to_owned(), inputs)
        }
        "javascript" => (
            CodeLanguage::Javascript,
            format!("{JS_PROLOGUE}{code}{JS_EPILOGUE}"),
            Map::new(),
        ),
        other => {
            return Err(ToolError::param(format!(
                "Only python3 and javascript are supported, not {other:?}; set \"language\" to \"python3\" or \"javascript\""
            )));
        }
    };
    let mut result = sandbox
        .run(language, &program, &inputs)
        .await
        .map_err(|e| ToolError::Invoke(e.to_string()))?;
    match result.remove("stdout") {
        Some(Value::String(text)) => Ok(text),
        _ => Err(ToolError::Internal("the code wrapper returned no stdout".into())),
    }
}
