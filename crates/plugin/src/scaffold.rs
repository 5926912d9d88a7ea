//! `plugin init`: a working Python tool plugin, laid out as `dify plugin init` lays out a tool plugin.
//!
//! The templates are toolplane's own; the structure (file names, manifest fields, `extra.python.source`) follows the
//! original so the `dify_plugin` SDK runs the result unchanged.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use chrono::{DateTime, SecondsFormat, Utc};
use regex::Regex;
use thiserror::Error;

use crate::manifest::{AUTHOR_PATTERN, NAME_PATTERN};

static AUTHOR: LazyLock<Regex> = LazyLock::new(|| crate::go_pattern(AUTHOR_PATTERN));
static NAME: LazyLock<Regex> = LazyLock::new(|| crate::go_pattern(NAME_PATTERN));
static TOOL_NAME: LazyLock<Regex> = LazyLock::new(|| crate::go_pattern(r"^[a-zA-Z0-9_-]+$"));

/// What to scaffold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaffoldOptions {
    /// `^[a-z0-9_-]{1,64}$`.
    pub author: String,
    /// Plugin name, also the provider name: `^[a-z0-9_-]{1,128}$`.
    pub name: String,
    /// One-line description (English).
    pub description: String,
    /// Name of the first tool; the plugin name when `None`.
    pub tool_name: Option<String>,
    /// Source repository URL for the manifest's `repo`.
    pub repo: Option<String>,
    /// `created_at`; now when `None`.
    pub created_at: Option<DateTime<Utc>>,
}

impl ScaffoldOptions {
    /// Options with the given author, name and description.
    pub fn new(author: impl Into<String>, name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            author: author.into(),
            name: name.into(),
            description: description.into(),
            tool_name: None,
            repo: None,
            created_at: None,
        }
    }
}

/// Why scaffolding failed.
#[derive(Debug, Error)]
pub enum ScaffoldError {
    #[error("invalid {field} {value:?}: expected {expected}")]
    Invalid {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{} already exists and is not empty; choose a new directory", .0.display())]
    NotEmpty(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes a tool plugin into `dir` (created if missing; it must be empty) and returns the files written, relative
/// to `dir`.
///
/// Layout: `manifest.yaml`, `main.py`, `requirements.txt`, `pyproject.toml`, `provider/<name>.yaml|.py`,
/// `tools/<tool>.yaml|.py`, `_assets/icon.svg`, `_assets/icon-dark.svg`, `README.md`, `PRIVACY.md`,
/// `.env.example`, `.difyignore`, `.gitignore`.
pub fn scaffold_tool_plugin(dir: &Path, options: &ScaffoldOptions) -> Result<Vec<PathBuf>, ScaffoldError> {
    let invalid = |field: &'static str, value: &str, expected: &'static str| ScaffoldError::Invalid {
        field,
        value: value.to_owned(),
        expected,
    };
    if !AUTHOR.is_match(&options.author) {
        return Err(invalid(
            "author",
            &options.author,
            "lowercase letters, digits, `_` or `-`, at most 64 (^[a-z0-9_-]{1,64}$)",
        ));
    }
    if !NAME.is_match(&options.name) {
        return Err(invalid(
            "name",
            &options.name,
            "lowercase letters, digits, `_` or `-`, at most 128 (^[a-z0-9_-]{1,128}$)",
        ));
    }
    let tool = options.tool_name.clone().unwrap_or_else(|| options.name.clone());
    if !TOOL_NAME.is_match(&tool) {
        return Err(invalid(
            "tool name",
            &tool,
            "letters, digits, `_` or `-` (^[a-zA-Z0-9_-]+$)",
        ));
    }
    if options.description.chars().count() >= 1024 {
        return Err(invalid(
            "description",
            &options.description,
            "fewer than 1024 characters",
        ));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ScaffoldError::Io { path, source }
    };
    if dir.exists() && fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
        return Err(ScaffoldError::NotEmpty(dir.to_owned()));
    }

    let files = render(options, &tool);
    let mut written = Vec::with_capacity(files.len());
    for (relative, content) in files {
        let path = dir.join(&relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        fs::write(&path, content).map_err(io(&path))?;
        written.push(PathBuf::from(relative));
    }
    Ok(written)
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// `SnakeToCamel`: `my-cool_tool` → `MyCoolTool`.
fn camel(s: &str) -> String {
    let out: String = s
        .split(['_', '-', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        format!("Plugin{out}")
    } else {
        out
    }
}

fn render(o: &ScaffoldOptions, tool: &str) -> Vec<(String, String)> {
    let name = &o.name;
    let author = &o.author;
    let description = q(&o.description);
    let created_at = o
        .created_at
        .unwrap_or_else(Utc::now)
        .to_rfc3339_opts(SecondsFormat::Micros, true);
    let repo = o.repo.as_ref().map(|r| format!("repo: {}\n", q(r))).unwrap_or_default();
    let class = camel(name);
    let tool_class = camel(tool);

    let manifest = format!(
        r#"version: 0.0.1
type: plugin
author: {author}
name: {name}
label:
  en_US: {qname}
  zh_Hans: {qname}
  ja_JP: {qname}
  pt_BR: {qname}
description:
  en_US: {description}
  zh_Hans: {description}
  ja_JP: {description}
  pt_BR: {description}
icon: icon.svg
icon_dark: icon-dark.svg
resource:
  memory: 268435456
  permission: {{}}
plugins:
  tools:
    - provider/{name}.yaml
meta:
  version: 0.0.1
  arch:
    - amd64
    - arm64
  runner:
    language: python
    version: "3.12"
    entrypoint: main
created_at: {created_at}
privacy: PRIVACY.md
{repo}verified: false
"#,
        qname = q(name),
    );

    let provider_yaml = format!(
        r#"identity:
  author: {author}
  name: {name}
  label:
    en_US: {qname}
    zh_Hans: {qname}
    ja_JP: {qname}
    pt_BR: {qname}
  description:
    en_US: {description}
    zh_Hans: {description}
    ja_JP: {description}
    pt_BR: {description}
  icon: icon.svg
  icon_dark: icon-dark.svg
# Credentials the user enters once per workspace, e.g.:
# credentials_for_provider:
#   api_key:
#     type: secret-input
#     required: true
#     label:
#       en_US: API key
tools:
  - tools/{tool}.yaml
extra:
  python:
    source: provider/{name}.py
"#,
        qname = q(name),
    );

    let provider_py = format!(
        r#"from typing import Any

from dify_plugin import ToolProvider
from dify_plugin.errors.tool import ToolProviderCredentialValidationError


class {class}Provider(ToolProvider):
    def _validate_credentials(self, credentials: dict[str, Any]) -> None:
        # Check the credentials declared in provider/{name}.yaml here, e.g. with a cheap API call.
        try:
            pass
        except Exception as e:
            raise ToolProviderCredentialValidationError(str(e)) from e
"#
    );

    let tool_yaml = format!(
        r#"identity:
  name: {qtool}
  author: {author}
  label:
    en_US: {qtool}
    zh_Hans: {qtool}
    ja_JP: {qtool}
    pt_BR: {qtool}
description:
  human:
    en_US: {description}
    zh_Hans: {description}
    ja_JP: {description}
    pt_BR: {description}
  llm: {description}
parameters:
  - name: query
    type: string
    required: true
    label:
      en_US: Query
      zh_Hans: 查询
      ja_JP: クエリ
      pt_BR: Consulta
    human_description:
      en_US: The text to process
      zh_Hans: 要处理的文本
      ja_JP: 処理するテキスト
      pt_BR: O texto a processar
    llm_description: The text to process
    form: llm
extra:
  python:
    source: tools/{tool}.py
"#,
        qtool = q(tool),
    );

    let tool_py = format!(
        r#"from collections.abc import Generator
from typing import Any

from dify_plugin import Tool
from dify_plugin.entities.tool import ToolInvokeMessage


class {tool_class}Tool(Tool):
    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        query = tool_parameters.get("query", "")
        yield self.create_text_message(f"You said: {{query}}")
        yield self.create_json_message({{"query": query, "length": len(query)}})
"#
    );

    let main_py = r#"from dify_plugin import DifyPluginEnv, Plugin

plugin = Plugin(DifyPluginEnv(MAX_REQUEST_TIMEOUT=120))

if __name__ == "__main__":
    plugin.run()
"#
    .to_owned();

    let pyproject = format!(
        r#"[project]
name = {qname}
version = "0.0.1"
requires-python = ">=3.11"
dependencies = [
    "dify_plugin>=0.9.0,<0.10.0",
]
"#,
        qname = q(name),
    );

    let readme = format!(
        "## {name}\n\n**Author:** {author}\n**Version:** 0.0.1\n**Type:** tool\n\n### Description\n\n{}\n\n\
         ### Usage\n\nAdd the `{tool}` tool to an agent or workflow and give it a `query`.\n",
        o.description
    );

    let privacy = format!(
        "## Privacy\n\n{name} processes the text you pass to its tools and sends it nowhere else. \
         Describe here what data the plugin collects, where it sends it and how long it is kept.\n"
    );

    let env_example = "INSTALL_METHOD=remote\nREMOTE_INSTALL_URL=localhost:5003\nREMOTE_INSTALL_KEY=\n".to_owned();

    let difyignore = "# Python caches and environments\n__pycache__/\n*.py[cod]\n.venv/\nvenv/\nenv/\n.env\n\
                      .mypy_cache/\n.pytest_cache/\n.ruff_cache/\n*.egg-info/\nbuild/\ndist/\n\n\
                      # Editors and version control\n.idea/\n.vscode/\n.git/\n.gitignore\n.github/\n.DS_Store\n\n\
                      # Built packages\n*.difypkg\n"
        .to_owned();
    let gitignore = "__pycache__/\n*.py[cod]\n.venv/\n.env\n*.difypkg\n".to_owned();

    vec![
        ("manifest.yaml".into(), manifest),
        ("main.py".into(), main_py),
        ("requirements.txt".into(), "dify_plugin>=0.9.0,<0.10.0\n".into()),
        ("pyproject.toml".into(), pyproject),
        (format!("provider/{name}.yaml"), provider_yaml),
        (format!("provider/{name}.py"), provider_py),
        (format!("tools/{tool}.yaml"), tool_yaml),
        (format!("tools/{tool}.py"), tool_py),
        ("_assets/icon.svg".into(), icon("#2f6fed", "#ffffff")),
        ("_assets/icon-dark.svg".into(), icon("#8fb3ff", "#0b1a33")),
        ("README.md".into(), readme),
        ("PRIVACY.md".into(), privacy),
        (".env.example".into(), env_example),
        (".difyignore".into(), difyignore),
        (".gitignore".into(), gitignore),
    ]
}

/// toolplane's own plugin icon: a rounded square with a wrench-like glyph.
fn icon(background: &str, foreground: &str) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="24" height="24" viewBox="0 0 24 24"><rect x="1" y="1" width="22" height="22" rx="6" fill="{background}"/><path d="M14.5 6.5a3.5 3.5 0 0 0-3.3 4.6L6.6 15.7a1.2 1.2 0 0 0 1.7 1.7l4.6-4.6a3.5 3.5 0 0 0 4.6-3.3l-2 2-1.9-.5-.5-1.9 2-2a3.5 3.5 0 0 0-.6-.1z" fill="{foreground}"/></svg>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_class_names() {
        assert_eq!(camel("hello_world"), "HelloWorld");
        assert_eq!(camel("my-tool"), "MyTool");
        assert_eq!(camel("3d_render"), "Plugin3dRender");
    }

    #[test]
    fn rejects_bad_names_and_non_empty_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let err = scaffold_tool_plugin(dir.path(), &ScaffoldOptions::new("Acme", "x", "d")).unwrap_err();
        assert!(err.to_string().contains("author"), "{err}");
        fs::write(dir.path().join("keep"), "x").unwrap();
        let err = scaffold_tool_plugin(dir.path(), &ScaffoldOptions::new("acme", "x", "d")).unwrap_err();
        assert!(matches!(err, ScaffoldError::NotEmpty(_)), "{err}");
    }
}
