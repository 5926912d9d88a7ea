//! Bad input gives clear errors, never a panic or a hang.

// Test helpers may unwrap: a failure is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use toolplane_openapi::{LoadOptions, ParseOptions, SpecError, load_from_file, load_spec, load_spec_with, parse_tools};

fn category(text: &str) -> (&'static str, String) {
    let err = match load_spec(text)
        .and_then(|l| l.into_spec())
        .and_then(|s| parse_tools(&s, &ParseOptions::default()))
    {
        Err(e) => e,
        Ok(_) => panic!("expected an error for {:?}", &text[..text.len().min(40)]),
    };
    (err.category(), err.to_string())
}

#[test]
fn neither_json_nor_yaml() {
    let (cat, msg) = category("{ \"openapi\": \"3.0.0\", : }\n  - [");
    assert_eq!(cat, "syntax");
    assert!(
        msg.contains("neither json nor yaml") && msg.contains("json error") && msg.contains("yaml error"),
        "{msg}"
    );
}

#[test]
fn empty_input() {
    assert_eq!(category("   \n").0, "empty");
}

#[test]
fn not_a_spec() {
    let (cat, msg) = category("name: just some yaml\nvalue: 3\n");
    assert_eq!(cat, "not_a_spec");
    assert!(msg.contains("name, value"), "{msg}");
    assert_eq!(category("[1, 2, 3]").0, "not_a_spec");
    assert_eq!(category("plain text that YAML reads as a string").0, "not_a_spec");
    assert_eq!(category("swagger: '1.2'\napis: []").0, "unsupported_version");
    assert_eq!(category("{\"openapi\": \"2.5\"}").0, "unsupported_version");
}

#[test]
fn no_paths() {
    assert_eq!(
        category(r#"{"openapi": "3.0.0", "info": {"title": "t", "version": "1"}}"#).0,
        "no_paths"
    );
    assert_eq!(category(r#"{"openapi": "3.0.0", "paths": {}}"#).0, "no_paths");
    assert_eq!(
        category(r#"{"openapi": "3.0.0", "paths": {"/a": {"parameters": []}}}"#).0,
        "no_paths"
    );
    assert_eq!(category(r#"{"openapi": "3.0.0", "paths": [1]}"#).0, "invalid");
    assert_eq!(category(r#"{"swagger": "2.0", "info": {}}"#).0, "no_paths");
}

#[test]
fn huge_input_is_refused_before_parsing() {
    let options = LoadOptions {
        max_bytes: 1024,
        ..LoadOptions::default()
    };
    let text = format!("{{\"openapi\": \"3.0.0\", \"x\": \"{}\"}}", "a".repeat(2000));
    let err = load_spec_with(&text, &options).unwrap_err();
    assert!(matches!(err, SpecError::TooLarge { limit: 1024, .. }), "{err}");
    assert!(err.to_string().contains("API_TOOL_MAX_SPEC_BYTES"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.json");
    std::fs::write(&path, &text).unwrap();
    assert!(matches!(
        load_from_file(&path, &options).unwrap_err(),
        SpecError::TooLarge { .. }
    ));
}

#[test]
fn deep_json_nesting_is_refused() {
    for depth in [200, 100_000] {
        let text = format!(
            "{{\"openapi\": \"3.0.0\", \"paths\": {}{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let (cat, msg) = category(&text);
        assert_eq!(cat, "too_deep", "{depth}: {msg}");
    }
}

#[test]
fn deep_yaml_nesting_is_refused() {
    let flow = format!("openapi: 3.0.0\npaths: {}{}\n", "[".repeat(50_000), "]".repeat(50_000));
    let (cat, msg) = category(&flow);
    assert_eq!(cat, "too_deep", "{msg}");
    let mut block = String::from("openapi: 3.0.0\npaths:\n");
    for i in 0..300 {
        block.push_str(&" ".repeat(i + 1));
        block.push_str("a:\n");
    }
    let (cat, msg) = category(&block);
    assert!(cat == "too_deep" || cat == "syntax", "{cat}: {msg}");
}

#[test]
fn yaml_alias_bomb_is_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = format!("*a{}", i - 1);
        text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    let started = std::time::Instant::now();
    assert!(load_spec(&text).is_err());
    assert!(started.elapsed().as_secs() < 10);
}

#[test]
fn cyclic_and_dangling_refs_do_not_crash() {
    let text = r##"{
      "openapi": "3.0.0", "servers": [{"url": "https://a.example"}],
      "paths": {
        "/loop": {"$ref": "#/paths/~1loop"},
        "/a": {"post": {"operationId": "a",
          "parameters": [{"$ref": "#/components/parameters/Self"}, {"$ref": "#/nowhere"}, {"$ref": "http://x/p.json"}],
          "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/A"}}}}}}
      },
      "components": {
        "parameters": {"Self": {"$ref": "#/components/parameters/Self"}},
        "schemas": {
          "A": {"type": "object", "properties": {"b": {"$ref": "#/components/schemas/B"}}},
          "B": {"type": "object", "properties": {"a": {"$ref": "#/components/schemas/A"}, "m": {"$ref": "#/components/schemas/Missing"}}}
        }
      }
    }"##;
    let spec = load_spec(text).unwrap().into_spec().unwrap();
    let parsed = parse_tools(&spec, &ParseOptions::default()).unwrap();
    assert_eq!(parsed.tools.len(), 1);
    let b = &parsed.tools[0].parameters.as_ref().unwrap()[0];
    assert_eq!(b.parameter.name, "b");
    let schema = b.parameter.input_schema.as_ref().unwrap();
    assert_eq!(schema["properties"]["a"]["x-toolplane-cycle"], "#/components/schemas/A");
    let codes: Vec<&str> = parsed.warnings.iter().map(|w| w.code.as_str()).collect();
    for code in ["ref_cycle", "unresolved_ref", "external_ref"] {
        assert!(codes.contains(&code), "{code} missing from {codes:?}");
    }
}

#[test]
fn exponential_ref_fan_out_is_bounded() {
    // S0 → two S1 → four S2 → … → 2^30 leaves if expanded naively.
    let mut schemas = serde_json::Map::new();
    for i in 0..30 {
        let next = format!("#/components/schemas/S{}", i + 1);
        schemas.insert(
            format!("S{i}"),
            serde_json::json!({"type": "object", "properties": {"l": {"$ref": next}, "r": {"$ref": next}}}),
        );
    }
    schemas.insert("S30".into(), serde_json::json!({"type": "string"}));
    let doc = serde_json::json!({
        "openapi": "3.0.0", "servers": [{"url": "https://a.example"}],
        "paths": {"/x": {"post": {"operationId": "x", "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/S0"}}}}}}},
        "components": {"schemas": schemas}
    });
    let started = std::time::Instant::now();
    let spec = load_spec(&doc.to_string()).unwrap().into_spec().unwrap();
    let parsed = parse_tools(&spec, &ParseOptions::default()).unwrap();
    assert!(started.elapsed().as_secs() < 5);
    assert!(parsed.warnings.iter().any(|w| w.code == "schema_truncated"));
}
