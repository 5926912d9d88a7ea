//! `toolplane openapi inspect|import` end to end on the repository's test specs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn spec(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../openapi/tests/data")
        .join(name)
}

fn toolplane(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_toolplane"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TOOLPLANE_DATA_DIR", data)
        .env("RUST_LOG", "warn");
    command
}

fn run(command: &mut Command) -> (bool, String, String) {
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn inspect_json_has_the_stable_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = spec("petstore-3.0.yaml");
    let (ok, stdout, stderr) = run(toolplane(dir.path()).args(["openapi", "inspect", "--json"]).arg(&path));
    assert!(ok, "{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    let keys: Vec<&str> = out.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["schema_type", "server_url", "tools", "warnings"]);
    assert_eq!(out["schema_type"], "openapi");
    assert_eq!(out["server_url"], "https://petstore.example.com/v1");
    let list = &out["tools"][0];
    for key in [
        "name",
        "operation_id",
        "method",
        "path",
        "url",
        "description",
        "parameters",
    ] {
        assert!(list.get(key).is_some(), "tool lacks {key}: {list}");
    }
    assert_eq!(list["name"], "listPets");
    assert_eq!(list["method"], "get");
    assert_eq!(list["url"], "https://petstore.example.com/v1/pets");
    let status = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "status")
        .unwrap();
    assert_eq!(status["type"], "select");
    assert_eq!(status["in"], "query");
    assert_eq!(status["options"], serde_json::json!(["available", "pending", "sold"]));
    assert!(out["warnings"].is_array());

    // The human form names every tool; Swagger 2.0 is reported as such.
    let (ok, stdout, _) = run(toolplane(dir.path())
        .args(["openapi", "inspect"])
        .arg(spec("petstore-2.0.json")));
    assert!(ok);
    assert!(
        stdout.starts_with("swagger spec, server https://petstore.swagger.io/v2"),
        "{stdout}"
    );
    assert!(stdout.contains("\naddPet POST /pet\n"), "{stdout}");
}

#[test]
fn inspect_refuses_bad_input_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "nope: [").unwrap();
    let not_spec = dir.path().join("data.json");
    std::fs::write(&not_spec, r#"{"hello": "world"}"#).unwrap();
    for (path, expected) in [
        (bad, "neither json nor yaml"),
        (not_spec, "not an OpenAPI 3.x, Swagger 2.0 or OpenAI plugin document"),
        (dir.path().join("missing.json"), "cannot read the spec file"),
    ] {
        let output = toolplane(dir.path())
            .args(["openapi", "inspect", "--json"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{path:?}");
        assert!(output.stdout.is_empty(), "nothing on stdout for {path:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{path:?}: {stderr}");
    }
}

#[test]
fn import_then_tool_list_shows_the_provider() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (ok, _, stderr) = run(toolplane(data).args(["tenant", "create", "acme"]));
    assert!(ok, "{stderr}");

    // The spec declares an API-key header: importing without a key is refused with a hint.
    let path = spec("petstore-3.0.yaml");
    let (ok, _, stderr) = run(toolplane(data)
        .args(["openapi", "import", "--tenant", "acme", "--name", "petstore"])
        .arg(&path));
    assert!(!ok);
    assert!(stderr.contains("--api-key"), "{stderr}");

    let (ok, stdout, stderr) = run(toolplane(data)
        .args(["openapi", "import", "--tenant", "acme", "--name", "petstore"])
        .arg(&path)
        .env("TOOLPLANE_API_KEY_VALUE", "pk-123456789"));
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("imported API provider petstore ("), "{stdout}");

    let (ok, listing, stderr) = run(toolplane(data).args(["tool", "list", "--tenant", "acme", "--json"]));
    assert!(ok, "{stderr}");
    let listing: Value = serde_json::from_str(&listing).unwrap();
    let api = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider_type"] == "api")
        .expect("the imported provider is listed");
    assert_eq!(api["tools"][0], "listPets");

    // A second import under the same name is refused.
    let (ok, _, stderr) = run(toolplane(data)
        .args([
            "openapi",
            "import",
            "--tenant",
            "acme",
            "--name",
            "petstore",
            "--auth-type",
            "none",
        ])
        .arg(&path));
    assert!(!ok);
    assert!(stderr.contains("provider petstore already exists"), "{stderr}");
}
