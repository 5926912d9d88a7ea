//! Import rules: loading, Swagger 2.0 conversion, `$ref`s, operations → tools.

// Test helpers may unwrap: a failure is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use toolplane_core::ToolParameterType as T;
use toolplane_openapi::{
    ApiToolBundle, ApiToolParameter, Loaded, ParameterLocation, ParseOptions, ParsedSpec, SchemaType, inspect_json,
    is_valid_tool_name, load_spec, parse_tools,
};

fn data(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn parse(name: &str) -> ParsedSpec {
    let spec = load_spec(&data(name)).unwrap().into_spec().unwrap();
    parse_tools(&spec, &ParseOptions::default()).unwrap()
}

fn tool<'a>(parsed: &'a ParsedSpec, name: &str) -> &'a ApiToolBundle {
    parsed.tools.iter().find(|t| t.name() == name).unwrap_or_else(|| {
        panic!(
            "no tool {name}; have {:?}",
            parsed.tools.iter().map(|t| t.name()).collect::<Vec<_>>()
        )
    })
}

fn param<'a>(tool: &'a ApiToolBundle, name: &str) -> &'a ApiToolParameter {
    tool.parameters
        .iter()
        .flatten()
        .find(|p| p.parameter.name == name)
        .unwrap_or_else(|| panic!("no parameter {name} in {}", tool.name()))
}

fn codes(parsed: &ParsedSpec) -> Vec<&str> {
    parsed.warnings.iter().map(|w| w.code.as_str()).collect()
}

#[test]
fn petstore_yaml_3_0() {
    let parsed = parse("petstore-3.0.yaml");
    assert_eq!(parsed.schema_type, SchemaType::OpenApi);
    assert_eq!(parsed.server_url, "https://petstore.example.com/v1");
    assert_eq!(parsed.description, "A sample pet store.");
    let names: Vec<&str> = parsed.tools.iter().map(|t| t.name()).collect();
    assert_eq!(names, ["listPets", "createPets", "showPetById", "deletePet"]);

    let list = tool(&parsed, "listPets");
    assert_eq!(list.method, "get");
    assert_eq!(list.server_url, "https://petstore.example.com/v1/pets");
    assert_eq!(list.summary.as_deref(), Some("List all pets"));
    // $ref parameter resolved (Dify's KeyError 'name').
    let limit = param(list, "limit");
    assert_eq!(limit.parameter.kind, T::Number);
    assert_eq!(limit.parameter.max, Some(100.0));
    assert_eq!(limit.location, Some(ParameterLocation::Query));
    // Enum → select with options and a sanitised default.
    let status = param(list, "status");
    assert_eq!(status.parameter.kind, T::Select);
    assert_eq!(status.parameter.option_values(), ["available", "pending", "sold"]);
    assert_eq!(status.parameter.default, Some(json!("available")));

    // $ref'd request body (Dify drops it) becomes its properties; JSON preferred over XML.
    let create = tool(&parsed, "createPets");
    let names: Vec<&str> = create
        .parameters
        .iter()
        .flatten()
        .map(|p| p.parameter.name.as_str())
        .collect();
    assert_eq!(names, ["id", "name", "tag", "category", "photoUrls"]);
    assert!(param(create, "name").parameter.required);
    assert!(!param(create, "tag").parameter.required);
    let category = param(create, "category");
    assert_eq!(category.parameter.kind, T::Object);
    assert_eq!(category.location, Some(ParameterLocation::Body));
    assert_eq!(
        category.parameter.input_schema.as_ref().unwrap()["properties"]["name"]["type"],
        "string"
    );
    assert_eq!(param(create, "photoUrls").parameter.kind, T::Array);
    let content = create.openapi["requestBody"]["content"].as_object().unwrap();
    assert_eq!(content.keys().collect::<Vec<_>>(), ["application/json"]);

    // Path-level parameters are merged (Dify ignores them); path parameters are always required.
    let show = tool(&parsed, "showPetById");
    let pet_id = param(show, "petId");
    assert!(pet_id.parameter.required);
    assert_eq!(pet_id.location, Some(ParameterLocation::Path));
    assert_eq!(show.server_url, "https://petstore.example.com/v1/pets/{petId}");
    assert_eq!(show.openapi["parameters"][0]["name"], "petId");

    // Description wins over summary (Dify), header parameters kept.
    let delete = tool(&parsed, "deletePet");
    assert_eq!(delete.summary.as_deref(), Some("Deletes a pet"));
    assert_eq!(param(delete, "api_key").location, Some(ParameterLocation::Header));

    // securitySchemes → prefilled credentials.
    assert_eq!(
        Value::Object(parsed.credentials.clone()),
        json!({"auth_type": "api_key_header", "api_key_header": "X-API-Key", "api_key_header_prefix": "custom", "api_key_value": ""})
    );
}

#[test]
fn swagger_2_is_converted() {
    let parsed = parse("petstore-2.0.json");
    assert_eq!(parsed.schema_type, SchemaType::Swagger);
    // host/basePath/schemes → servers, https preferred.
    assert_eq!(parsed.server_url, "https://petstore.swagger.io/v2");

    // in: body → requestBody; definitions → components.schemas, refs rewritten and resolved.
    let add = tool(&parsed, "addPet");
    let name = param(add, "name");
    assert!(name.parameter.required);
    assert_eq!(name.location, Some(ParameterLocation::Body));
    assert_eq!(
        param(add, "category").parameter.input_schema.as_ref().unwrap()["type"],
        "object"
    );
    assert_eq!(param(add, "status").parameter.kind, T::Select);
    assert_eq!(add.openapi["requestBody"]["required"], true);
    assert!(add.openapi["requestBody"]["content"]["application/json"].is_object());

    // collectionFormat → style/explode; #/parameters refs inlined.
    let find = tool(&parsed, "findPetsByStatus");
    let status_spec = find.openapi["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "status")
        .unwrap();
    assert_eq!(status_spec["style"], "form");
    assert_eq!(status_spec["explode"], false);
    assert_eq!(param(find, "status").parameter.kind, T::Array);
    let tags_spec = find.openapi["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tags")
        .unwrap();
    assert_eq!(tags_spec["explode"], true);

    // formData with a file → multipart body with a file parameter.
    let upload = tool(&parsed, "uploadFile");
    assert_eq!(param(upload, "file").parameter.kind, T::File);
    assert!(param(upload, "file").parameter.required);
    assert_eq!(param(upload, "petId").location, Some(ParameterLocation::Path));
    assert!(upload.openapi["requestBody"]["content"]["multipart/form-data"].is_object());

    // formData without files → urlencoded; path-level $ref parameter merged.
    let update = tool(&parsed, "updatePetWithForm");
    assert!(update.openapi["requestBody"]["content"]["application/x-www-form-urlencoded"].is_object());
    assert_eq!(param(update, "petId").parameter.kind, T::Number);
    assert_eq!(param(update, "status").location, Some(ParameterLocation::Body));

    // Missing summary → warning, tool still produced.
    assert!(tool(&parsed, "getPetById").summary.is_none());
    assert!(codes(&parsed).contains(&"missing_summary"));
    // The security requirement names the query api key.
    assert_eq!(parsed.credentials["auth_type"], "api_key_query");
    assert_eq!(parsed.credentials["api_key_query_param"], "api_key");
}

#[test]
fn openapi_3_1_rules() {
    let parsed = parse("rules-3.1.json");
    // Server variables substituted by their defaults.
    assert_eq!(parsed.server_url, "https://eu.api.example.com/v2");

    // Invalid operationId sanitised, original kept.
    let get = tool(&parsed, "items_get");
    assert_eq!(get.original_operation_id.as_deref(), Some("items.get"));
    assert_eq!(get.server_url, "https://eu.api.example.com/v2/items/{id}");
    // The operation wins on the same name and `in`; cookie parameters exist.
    let trace = param(get, "trace");
    assert_eq!(trace.parameter.kind, T::Boolean);
    assert_eq!(trace.parameter.llm_description.as_deref(), Some("operation-level"));
    assert_eq!(param(get, "session").location, Some(ParameterLocation::Cookie));
    // 3.1 type arrays, boolean schemas; list defaults dropped; Authorization header ignored.
    assert_eq!(param(get, "fields").parameter.kind, T::Array);
    assert_eq!(param(get, "limit").parameter.kind, T::Number);
    assert_eq!(param(get, "limit").parameter.default, None);
    assert_eq!(param(get, "loose").parameter.kind, T::String);
    assert!(
        get.parameters
            .iter()
            .flatten()
            .all(|p| p.parameter.name != "Authorization")
    );
    let order: Vec<&str> = get
        .parameters
        .iter()
        .flatten()
        .map(|p| p.parameter.name.as_str())
        .collect();
    assert_eq!(order, ["id", "trace", "session", "fields", "limit", "loose"]);

    // No operationId → Dify's derived name; body property clashing with a path parameter renamed.
    let put = tool(&parsed, "itemsid_put");
    assert!(put.original_operation_id.is_none());
    let renamed = param(put, "body_id");
    assert_eq!(renamed.wire_name.as_deref(), Some("id"));
    assert_eq!(param(put, "kind").parameter.kind, T::Select);
    assert_eq!(param(put, "kind").parameter.option_values(), ["1", "2", "3"]);
    let meta = param(put, "meta");
    assert_eq!(meta.parameter.kind, T::Object);
    // A cyclic schema is cut with a marker.
    let node = param(put, "node").parameter.input_schema.clone().unwrap();
    assert_eq!(
        node["properties"]["children"]["items"],
        json!({"x-toolplane-cycle": "#/components/schemas/Node"})
    );
    // External refs are kept and reported.
    assert_eq!(param(put, "other").parameter.input_schema, None);
    assert!(codes(&parsed).contains(&"external_ref"));
    assert!(codes(&parsed).contains(&"ref_cycle"));

    // A non-object body is one `body` parameter with its schema.
    let batch = tool(&parsed, "batch");
    let body = param(batch, "body");
    assert_eq!(body.location, Some(ParameterLocation::RequestBody));
    assert_eq!(body.parameter.kind, T::Array);
    assert_eq!(body.parameter.input_schema.as_ref().unwrap()["type"], "array");
    // Duplicated operationId → unique name.
    let patch = tool(&parsed, "batch_2");
    assert_eq!(patch.method, "patch");
    let one_of = param(patch, "body");
    assert_eq!(one_of.parameter.kind, T::Object);
    assert!(one_of.parameter.required);
    assert!(one_of.parameter.input_schema.as_ref().unwrap().contains_key("oneOf"));
    assert!(codes(&parsed).contains(&"duplicated_tool_name"));

    // Over-long operationId cut to 64 characters.
    let long = parsed.tools.iter().find(|t| t.method == "delete").unwrap();
    assert_eq!(long.name().len(), 64);
    // allOf body merged into properties.
    let composed = tool(&parsed, "composed");
    assert!(param(composed, "base").parameter.required);
    let extra = param(composed, "extra");
    assert!(extra.parameter.required);
    assert_eq!((extra.parameter.min, extra.parameter.max), (Some(0.0), Some(10.0)));
    // `/` with no operationId.
    assert!(parsed.tools.iter().any(|t| t.name() == "root_get"));

    for t in &parsed.tools {
        assert!(is_valid_tool_name(t.name()), "{}", t.name());
    }
    assert_eq!(parsed.credentials["api_key_header_prefix"], "bearer");
}

#[test]
fn request_env_picks_the_server() {
    let spec = load_spec(&data("rules-3.1.json")).unwrap().into_spec().unwrap();
    let options = ParseOptions {
        request_env: Some("staging".into()),
        ..ParseOptions::default()
    };
    let parsed = parse_tools(&spec, &options).unwrap();
    assert_eq!(parsed.server_url, "https://staging.example.com/v2");
    assert_eq!(parsed.tools[0].server_url, "https://staging.example.com/v2/items/{id}");
}

#[test]
fn operation_limit_is_a_clear_error() {
    let spec = load_spec(&data("petstore-3.0.yaml")).unwrap().into_spec().unwrap();
    let options = ParseOptions {
        max_operations: 3,
        ..ParseOptions::default()
    };
    let err = parse_tools(&spec, &options).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("4 operations") && text.contains("limit of 3"), "{text}");
    assert!(text.contains("API_TOOL_MAX_OPERATIONS"), "{text}");
    assert_eq!(err.category(), "too_many_operations");
}

#[test]
fn inspect_json_shape_is_stable() {
    let parsed = parse("petstore-3.0.yaml");
    let out = inspect_json(&parsed);
    assert_eq!(out["schema_type"], "openapi");
    assert_eq!(out["server_url"], "https://petstore.example.com/v1");
    let first = &out["tools"][0];
    let keys: Vec<&String> = first.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "name",
            "operation_id",
            "method",
            "path",
            "url",
            "description",
            "parameters"
        ]
    );
    assert_eq!(first["path"], "/pets");
    assert_eq!(
        first["parameters"][1],
        json!({"name": "status", "type": "select", "form": "llm", "required": false, "in": "query", "options": ["available", "pending", "sold"]})
    );
    assert!(out["warnings"].is_array());
}

#[test]
fn bundles_round_trip_in_dify_shape() {
    let parsed = parse("petstore-3.0.yaml");
    let bundle = tool(&parsed, "createPets");
    let value = serde_json::to_value(bundle).unwrap();
    for key in [
        "server_url",
        "method",
        "summary",
        "operation_id",
        "parameters",
        "author",
        "icon",
        "openapi",
        "output_schema",
    ] {
        assert!(value.get(key).is_some(), "missing {key}");
    }
    // Parameters are Dify ToolParameters plus `in`.
    let p = &value["parameters"][1];
    assert_eq!(p["name"], "name");
    assert_eq!(p["label"]["en_US"], "name");
    assert_eq!(p["form"], "llm");
    assert_eq!(p["in"], "body");
    let back: ApiToolBundle = serde_json::from_value(value).unwrap();
    assert_eq!(&back, bundle);

    // A bundle as Dify stores it (no `in`, no `path`) still deserialises.
    let dify = json!({
        "server_url": "https://x/api/users/{id}", "method": "get", "summary": null, "operation_id": "v1usersid_get",
        "parameters": [{"name": "id", "label": {"en_US": "id"}, "type": "string", "form": "llm", "required": true,
                        "llm_description": "", "human_description": {"en_US": ""}, "placeholder": {"en_US": ""}}],
        "author": "", "icon": null, "openapi": {"parameters": [{"name": "id", "in": "path", "required": true}]}
    });
    let bundle: ApiToolBundle = serde_json::from_value(dify).unwrap();
    assert_eq!(bundle.parameters.unwrap()[0].location, None);
}

#[test]
fn plugin_manifest_asks_for_its_spec() {
    match load_spec(&data("openai-plugin.json")).unwrap() {
        Loaded::FetchSpec { url, .. } => assert_eq!(url, "/openapi.yaml"),
        other => panic!("expected a manifest, got {other:?}"),
    }
    let err = load_spec(r#"{"schema_version":"v1","api":{"type":"graphql","url":"https://x/g"}}"#).unwrap_err();
    assert!(err.to_string().contains("only openapi is supported"), "{err}");
}

#[test]
fn yaml_with_integer_keys_and_anchors() {
    let text = "openapi: 3.0.0\ninfo: {title: t, version: '1'}\nservers: [{url: 'https://a.example'}]\npaths:\n  /x:\n    get:\n      operationId: x\n      parameters:\n        - &p {name: q, in: query, schema: {type: integer}}\n      responses:\n        200: {description: ok}\n";
    let spec = load_spec(text).unwrap().into_spec().unwrap();
    assert_eq!(
        spec.document["paths"]["/x"]["get"]["responses"]["200"]["description"],
        "ok"
    );
    let parsed = parse_tools(&spec, &ParseOptions::default()).unwrap();
    assert_eq!(
        parsed.tools[0].parameters.as_ref().unwrap()[0].parameter.kind,
        T::Number
    );
}
