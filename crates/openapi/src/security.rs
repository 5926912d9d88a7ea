//! `securitySchemes` → prefilled API-tool credentials in Dify's shape (`auth_type`, `api_key_header`,
//! `api_key_header_prefix`, `api_key_query_param`, `api_key_value`).

use serde_json::{Map, Value, json};

use crate::error::Warning;
use crate::util::str_field;

/// The credentials form an import should start from, derived from the spec's security schemes.
///
/// The scheme named first by the top-level `security` requirement wins, else the first declared scheme.
/// `apiKey` in a header or query and HTTP `bearer`/`basic` map directly; OAuth 2 and OpenID Connect become a
/// bearer `Authorization` header (the token has to be obtained elsewhere) with a warning; `apiKey` in a cookie
/// and mutual TLS cannot be expressed and give `auth_type: none` with a warning. `api_key_value` is always
/// empty: the user types it.
pub fn prefill_credentials(document: &Value) -> (Map<String, Value>, Vec<Warning>) {
    let mut warnings = Vec::new();
    let none = || Map::from_iter([("auth_type".to_owned(), json!("none"))]);
    let Some(schemes) = document
        .pointer("/components/securitySchemes")
        .and_then(Value::as_object)
    else {
        return (none(), warnings);
    };
    let required = document
        .get("security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flat_map(|req| req.keys())
        .find(|name| schemes.contains_key(*name));
    let Some((name, scheme)) = required
        .and_then(|name| schemes.get_key_value(name))
        .or_else(|| schemes.iter().next())
    else {
        return (none(), warnings);
    };
    let Some(scheme) = scheme.as_object() else {
        return (none(), warnings);
    };
    let header = |header: &str, prefix: &str| {
        Map::from_iter([
            ("auth_type".to_owned(), json!("api_key_header")),
            ("api_key_header".to_owned(), json!(header)),
            ("api_key_header_prefix".to_owned(), json!(prefix)),
            ("api_key_value".to_owned(), json!("")),
        ])
    };
    let credentials = match (str_field(scheme, "type"), str_field(scheme, "in")) {
        (Some("apiKey"), Some("header")) => header(str_field(scheme, "name").unwrap_or("Authorization"), "custom"),
        (Some("apiKey"), Some("query")) => Map::from_iter([
            ("auth_type".to_owned(), json!("api_key_query")),
            (
                "api_key_query_param".to_owned(),
                json!(str_field(scheme, "name").unwrap_or("key")),
            ),
            ("api_key_value".to_owned(), json!("")),
        ]),
        (Some("http"), _) => match str_field(scheme, "scheme").map(str::to_ascii_lowercase).as_deref() {
            Some("bearer") => header("Authorization", "bearer"),
            Some("basic") => header("Authorization", "basic"),
            other => {
                warnings.push(Warning::global(
                    "unsupported_security",
                    format!(
                        "security scheme {name:?} uses HTTP {} authentication, which API tools cannot send; \
                         auth was set to none",
                        other.unwrap_or("(unnamed)")
                    ),
                ));
                none()
            }
        },
        (Some(kind @ ("oauth2" | "openIdConnect")), _) => {
            warnings.push(Warning::global(
                "oauth_as_bearer",
                format!(
                    "security scheme {name:?} is {kind}; API tools do not run OAuth flows, so auth was prefilled as \
                     a bearer Authorization header: paste an access token as the key"
                ),
            ));
            header("Authorization", "bearer")
        }
        (kind, location) => {
            warnings.push(Warning::global(
                "unsupported_security",
                format!(
                    "security scheme {name:?} ({} in {}) cannot be expressed by API-tool credentials; auth was set \
                     to none",
                    kind.unwrap_or("unknown type"),
                    location.unwrap_or("-")
                ),
            ));
            none()
        }
    };
    (credentials, warnings)
}
