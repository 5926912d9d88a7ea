//! Swagger 2.0 → OpenAPI 3.0 conversion.
//!
//! A real conversion, unlike Dify's shim: `host`/`basePath`/`schemes` become `servers`; `in: body` and
//! `in: formData` parameters become a `requestBody` whose media types come from `consumes` (multipart when a
//! form carries a file); `definitions`, `parameters`, `responses` and `securityDefinitions` move under
//! `components`; `collectionFormat` becomes `style`/`explode`; `$ref`s are rewritten to the new locations.

use serde_json::{Map, Value, json};

use crate::error::Warning;
use crate::util::{METHODS, str_field};

/// Keys of a Swagger 2.0 non-body parameter that belong to its schema in OpenAPI 3.
const SCHEMA_KEYS: [&str; 16] = [
    "type",
    "format",
    "items",
    "default",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "enum",
    "multipleOf",
];

/// Converts a Swagger 2.0 document (already known to declare `swagger: 2.x`) into OpenAPI 3.0.3.
pub(crate) fn swagger2_to_openapi3(doc: Value, warnings: &mut Vec<Warning>) -> Value {
    let Value::Object(src) = doc else {
        return doc;
    };
    let mut out = Map::new();
    out.insert("openapi".into(), json!("3.0.3"));
    out.insert(
        "info".into(),
        src.get("info")
            .filter(|v| v.is_object())
            .cloned()
            .unwrap_or_else(|| json!({"title": "Swagger", "description": "Swagger", "version": "1.0.0"})),
    );
    out.insert("servers".into(), Value::Array(servers(&src)));

    let global_consumes = string_list(src.get("consumes"));
    let global_produces = string_list(src.get("produces"));
    let shared_params = src.get("parameters").and_then(Value::as_object);

    let mut components = Map::new();
    if let Some(definitions) = src.get("definitions").filter(|v| v.is_object()) {
        components.insert("schemas".into(), definitions.clone());
    }
    if let Some(params) = shared_params {
        // Body and form parameters have no place under components.parameters; operations inline them.
        let converted: Map<String, Value> = params
            .iter()
            .filter_map(|(name, p)| {
                let p = p.as_object()?;
                if matches!(str_field(p, "in"), Some("body" | "formData")) {
                    return None;
                }
                Some((name.clone(), Value::Object(convert_parameter(p))))
            })
            .collect();
        if !converted.is_empty() {
            components.insert("parameters".into(), Value::Object(converted));
        }
    }
    if let Some(responses) = src.get("responses").and_then(Value::as_object) {
        let converted: Map<String, Value> = responses
            .iter()
            .map(|(name, r)| (name.clone(), convert_response(r, &global_produces)))
            .collect();
        components.insert("responses".into(), Value::Object(converted));
    }
    if let Some(defs) = src.get("securityDefinitions").and_then(Value::as_object) {
        let converted: Map<String, Value> = defs
            .iter()
            .map(|(name, d)| (name.clone(), convert_security_scheme(d)))
            .collect();
        components.insert("securitySchemes".into(), Value::Object(converted));
    }

    let mut paths = Map::new();
    if let Some(src_paths) = src.get("paths").and_then(Value::as_object) {
        for (path, item) in src_paths {
            let Some(item) = item.as_object() else { continue };
            let mut out_item = Map::new();
            let path_params = resolve_params(item.get("parameters"), shared_params);
            let (regular, _) = split_params(&path_params);
            if !regular.is_empty() {
                out_item.insert("parameters".into(), Value::Array(regular));
            }
            for (key, value) in item {
                if METHODS.contains(&key.as_str()) {
                    let Some(op) = value.as_object() else { continue };
                    let ctx = OpContext {
                        location: format!("{} {path}", key.to_uppercase()),
                        consumes: string_list(op.get("consumes")).or(global_consumes.clone()),
                        produces: string_list(op.get("produces")).or(global_produces.clone()),
                    };
                    let op_params = resolve_params(op.get("parameters"), shared_params);
                    let converted = convert_operation(op, &path_params, op_params, &ctx, warnings);
                    out_item.insert(key.clone(), Value::Object(converted));
                } else if key != "parameters" && key != "$ref" {
                    out_item.insert(key.clone(), value.clone());
                }
            }
            paths.insert(path.clone(), Value::Object(out_item));
        }
    }
    out.insert("paths".into(), Value::Object(paths));
    if !components.is_empty() {
        out.insert("components".into(), Value::Object(components));
    }
    for (key, value) in &src {
        let keep = matches!(key.as_str(), "security" | "tags" | "externalDocs") || key.starts_with("x-");
        if keep {
            out.insert(key.clone(), value.clone());
        }
    }
    let mut out = Value::Object(out);
    rewrite(&mut out, 0);
    out
}

struct OpContext {
    location: String,
    consumes: Option<Vec<String>>,
    produces: Option<Vec<String>>,
}

/// `host` + `basePath` with each scheme (https first); a missing host gives a relative server.
fn servers(src: &Map<String, Value>) -> Vec<Value> {
    let base_path = str_field(src, "basePath").unwrap_or("").trim_end_matches('/');
    let base_path = if base_path.is_empty() || base_path.starts_with('/') {
        base_path.to_owned()
    } else {
        format!("/{base_path}")
    };
    let Some(host) = str_field(src, "host").map(str::trim).filter(|h| !h.is_empty()) else {
        let url = if base_path.is_empty() {
            "/".to_owned()
        } else {
            base_path
        };
        return vec![json!({ "url": url })];
    };
    let mut schemes: Vec<String> = string_list(src.get("schemes"))
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.to_ascii_lowercase())
        .filter(|s| s == "http" || s == "https")
        .collect();
    if schemes.is_empty() {
        schemes.push("https".into());
    }
    schemes.sort_by_key(|s| s != "https");
    schemes.dedup();
    schemes
        .into_iter()
        .map(|scheme| json!({ "url": format!("{scheme}://{host}{base_path}") }))
        .collect()
}

fn string_list(value: Option<&Value>) -> Option<Vec<String>> {
    let items = value?.as_array()?;
    let list: Vec<String> = items.iter().filter_map(Value::as_str).map(str::to_owned).collect();
    (!list.is_empty()).then_some(list)
}

/// Inlines `#/parameters/…` references (one hop) so body and form parameters can be recognised.
fn resolve_params(list: Option<&Value>, shared: Option<&Map<String, Value>>) -> Vec<Map<String, Value>> {
    let Some(items) = list.and_then(Value::as_array) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|p| {
            let p = p.as_object()?;
            match str_field(p, "$ref") {
                Some(r) => {
                    let name = r.strip_prefix("#/parameters/")?;
                    let name = crate::refs::decode_pointer_token(name);
                    shared?.get(&name)?.as_object().cloned()
                }
                None => Some(p.clone()),
            }
        })
        .collect()
}

/// Regular parameters converted to OpenAPI 3; body and form parameters returned separately.
fn split_params(params: &[Map<String, Value>]) -> (Vec<Value>, Vec<Map<String, Value>>) {
    let mut regular = Vec::new();
    let mut body = Vec::new();
    for p in params {
        match str_field(p, "in") {
            Some("body" | "formData") => body.push(p.clone()),
            _ => regular.push(Value::Object(convert_parameter(p))),
        }
    }
    (regular, body)
}

fn convert_operation(
    op: &Map<String, Value>,
    path_params: &[Map<String, Value>],
    op_params: Vec<Map<String, Value>>,
    ctx: &OpContext,
    warnings: &mut Vec<Warning>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in op {
        match key.as_str() {
            "parameters" | "responses" | "consumes" | "produces" | "schemes" => {}
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    // Path-level body/form parameters apply unless the operation overrides them (same name and `in`).
    let mut merged: Vec<Map<String, Value>> = op_params;
    for p in path_params {
        let same = |q: &Map<String, Value>| q.get("name") == p.get("name") && q.get("in") == p.get("in");
        if matches!(str_field(p, "in"), Some("body" | "formData")) && !merged.iter().any(same) {
            merged.push(p.clone());
        }
    }
    let (regular, body_params) = split_params(&merged);
    if !regular.is_empty() {
        out.insert("parameters".into(), Value::Array(regular));
    }
    if let Some(body) = request_body(&body_params, ctx, warnings) {
        out.insert("requestBody".into(), body);
    }
    let produces = ctx.produces.clone();
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        let converted: Map<String, Value> = responses
            .iter()
            .map(|(code, r)| (code.clone(), convert_response(r, &produces)))
            .collect();
        out.insert("responses".into(), Value::Object(converted));
    }
    out
}

fn request_body(params: &[Map<String, Value>], ctx: &OpContext, warnings: &mut Vec<Warning>) -> Option<Value> {
    if let Some(body) = params.iter().find(|p| str_field(p, "in") == Some("body")) {
        if params.iter().any(|p| str_field(p, "in") == Some("formData")) {
            warnings.push(Warning::at(
                "body_and_form",
                &ctx.location,
                "the operation has both a body and formData parameters; the formData parameters were dropped",
            ));
        }
        let schema = body.get("schema").cloned().unwrap_or_else(|| json!({}));
        let types = ctx
            .consumes
            .clone()
            .unwrap_or_else(|| vec!["application/json".to_owned()]);
        let content: Map<String, Value> = types
            .into_iter()
            .filter(|t| !t.contains("form-data") && !t.contains("x-www-form-urlencoded"))
            .map(|t| (t, json!({ "schema": schema.clone() })))
            .collect();
        let content = if content.is_empty() {
            Map::from_iter([("application/json".to_owned(), json!({ "schema": schema }))])
        } else {
            content
        };
        let mut out = Map::new();
        if let Some(d) = body.get("description") {
            out.insert("description".into(), d.clone());
        }
        out.insert("content".into(), Value::Object(content));
        out.insert(
            "required".into(),
            Value::Bool(body.get("required") == Some(&Value::Bool(true))),
        );
        if let Some(name) = body.get("name") {
            out.insert("x-body-name".into(), name.clone());
        }
        return Some(Value::Object(out));
    }
    let form: Vec<&Map<String, Value>> = params
        .iter()
        .filter(|p| str_field(p, "in") == Some("formData"))
        .collect();
    if form.is_empty() {
        return None;
    }
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut has_file = false;
    for p in &form {
        let Some(name) = str_field(p, "name") else { continue };
        let mut schema = param_schema(p);
        if str_field(p, "type") == Some("file") {
            has_file = true;
            schema = json!({"type": "string", "format": "binary"});
        }
        if let (Some(d), Value::Object(s)) = (p.get("description"), &mut schema) {
            s.insert("description".into(), d.clone());
        }
        properties.insert(name.to_owned(), schema);
        if p.get("required") == Some(&Value::Bool(true)) {
            required.push(Value::String(name.to_owned()));
        }
    }
    let consumes = ctx.consumes.clone().unwrap_or_default();
    let media = if has_file || consumes.first().is_some_and(|t| t.contains("multipart/form-data")) {
        "multipart/form-data"
    } else {
        "application/x-www-form-urlencoded"
    };
    let mut schema = Map::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert("required".into(), Value::Array(required.clone()));
    }
    Some(json!({
        "content": { media: { "schema": Value::Object(schema) } },
        "required": !required.is_empty(),
    }))
}

/// The schema part of a non-body Swagger parameter.
fn param_schema(p: &Map<String, Value>) -> Value {
    let mut schema = Map::new();
    for key in SCHEMA_KEYS {
        if let Some(v) = p.get(key) {
            let v = if key == "items" { items_schema(v) } else { v.clone() };
            schema.insert(key.to_owned(), v);
        }
    }
    Value::Object(schema)
}

fn items_schema(items: &Value) -> Value {
    match items {
        Value::Object(map) if !map.contains_key("$ref") => {
            let mut map = map.clone();
            map.remove("collectionFormat");
            if let Some(inner) = map.get("items").map(items_schema) {
                map.insert("items".into(), inner);
            }
            Value::Object(map)
        }
        other => other.clone(),
    }
}

fn convert_parameter(p: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in p {
        if SCHEMA_KEYS.contains(&key.as_str()) || key == "collectionFormat" {
            continue;
        }
        out.insert(key.clone(), value.clone());
    }
    if p.contains_key("schema") {
        return out;
    }
    let location = str_field(p, "in").unwrap_or("query");
    out.insert("schema".into(), param_schema(p));
    if str_field(p, "type") == Some("array") {
        let (style, explode) = match str_field(p, "collectionFormat").unwrap_or("csv") {
            "multi" => ("form", true),
            "ssv" => ("spaceDelimited", false),
            "pipes" => ("pipeDelimited", false),
            _ if location == "query" || location == "cookie" => ("form", false),
            _ => ("simple", false),
        };
        out.insert("style".into(), json!(style));
        out.insert("explode".into(), json!(explode));
    }
    out
}

fn convert_response(response: &Value, produces: &Option<Vec<String>>) -> Value {
    let Some(r) = response.as_object() else {
        return response.clone();
    };
    if r.contains_key("$ref") {
        return response.clone();
    }
    let mut out = Map::new();
    out.insert(
        "description".into(),
        r.get("description").cloned().unwrap_or_else(|| json!("")),
    );
    if let Some(schema) = r.get("schema") {
        let types = produces.clone().unwrap_or_else(|| vec!["application/json".to_owned()]);
        let content: Map<String, Value> = types
            .into_iter()
            .map(|t| (t, json!({ "schema": schema.clone() })))
            .collect();
        out.insert("content".into(), Value::Object(content));
    }
    if let Some(headers) = r.get("headers").and_then(Value::as_object) {
        let converted: Map<String, Value> = headers
            .iter()
            .map(|(name, h)| {
                let schema = h.as_object().map(param_schema).unwrap_or_else(|| json!({}));
                let mut header = Map::new();
                if let Some(d) = h.get("description") {
                    header.insert("description".into(), d.clone());
                }
                header.insert("schema".into(), schema);
                (name.clone(), Value::Object(header))
            })
            .collect();
        out.insert("headers".into(), Value::Object(converted));
    }
    Value::Object(out)
}

fn convert_security_scheme(def: &Value) -> Value {
    let Some(d) = def.as_object() else {
        return def.clone();
    };
    let description = d.get("description").cloned();
    let mut out = match str_field(d, "type") {
        Some("basic") => json!({"type": "http", "scheme": "basic"}),
        Some("apiKey") => json!({"type": "apiKey", "name": d.get("name"), "in": d.get("in")}),
        Some("oauth2") => {
            let flow = match str_field(d, "flow") {
                Some("implicit") => "implicit",
                Some("password") => "password",
                Some("application") => "clientCredentials",
                _ => "authorizationCode",
            };
            let mut f = Map::new();
            for key in ["authorizationUrl", "tokenUrl"] {
                if let Some(v) = d.get(key) {
                    f.insert(key.into(), v.clone());
                }
            }
            f.insert("scopes".into(), d.get("scopes").cloned().unwrap_or_else(|| json!({})));
            json!({"type": "oauth2", "flows": { flow: Value::Object(f) }})
        }
        _ => def.clone(),
    };
    if let (Some(desc), Value::Object(o)) = (description, &mut out) {
        o.insert("description".into(), desc);
    }
    out
}

/// Rewrites `$ref`s to their OpenAPI 3 locations and Swagger-only schema forms (`type: file`, `x-nullable`).
/// The input is depth-bounded by the loader; `depth` guards anyway.
fn rewrite(value: &mut Value, depth: usize) {
    if depth > 512 {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref") {
                for (old, new) in [
                    ("#/definitions/", "#/components/schemas/"),
                    ("#/responses/", "#/components/responses/"),
                    ("#/parameters/", "#/components/parameters/"),
                ] {
                    if let Some(rest) = r.strip_prefix(old) {
                        *r = format!("{new}{rest}");
                        break;
                    }
                }
            }
            if map.get("type").and_then(Value::as_str) == Some("file") {
                map.insert("type".into(), json!("string"));
                map.insert("format".into(), json!("binary"));
            }
            if let Some(nullable) = map.remove("x-nullable") {
                map.insert("nullable".into(), nullable);
            }
            for v in map.values_mut() {
                rewrite(v, depth + 1);
            }
        }
        Value::Array(items) => {
            for v in items {
                rewrite(v, depth + 1);
            }
        }
        _ => {}
    }
}
