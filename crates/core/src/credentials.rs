//! Validation of credential values against a provider's credential schema.

use serde_json::{Map, Value};

use crate::{ProviderConfig, ProviderConfigType, ToolError};

/// Checks `credentials` against `schema` the way Dify's `validate_credentials_format` does and returns them with
/// defaults filled in.
///
/// Unknown fields, non-string secret and text values, select values outside the options and missing required
/// fields are errors that name the field. A missing optional field with a default gets the default (stringified for
/// secret, text and select fields).
pub fn validate_credentials_format(
    provider: &str,
    schema: &[ProviderConfig],
    mut credentials: Map<String, Value>,
) -> Result<Map<String, Value>, ToolError> {
    let invalid = |message: String| ToolError::CredentialValidation(message);
    if let Some(unknown) = credentials.keys().find(|k| !schema.iter().any(|c| &c.name == *k)) {
        let known: Vec<_> = schema.iter().map(|c| c.name.as_str()).collect();
        return Err(invalid(format!(
            "credential {unknown:?} not found in provider {provider:?}; its credential fields are: {}",
            known.join(", ")
        )));
    }
    for field in schema {
        let present = credentials.get(&field.name).filter(|v| !v.is_null());
        match present {
            None if field.required => {
                return Err(invalid(format!("credential {:?} is required", field.name)));
            }
            None => {
                if let Some(default) = &field.default {
                    let value = match field.kind {
                        ProviderConfigType::SecretInput
                        | ProviderConfigType::TextInput
                        | ProviderConfigType::Select => Value::String(match default {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        }),
                        _ => default.clone(),
                    };
                    credentials.insert(field.name.clone(), value);
                }
            }
            Some(value) => match field.kind {
                ProviderConfigType::SecretInput | ProviderConfigType::TextInput if !value.is_string() => {
                    return Err(invalid(format!("credential {:?} must be a string", field.name)));
                }
                ProviderConfigType::Select => {
                    let Some(text) = value.as_str() else {
                        return Err(invalid(format!("credential {:?} must be a string", field.name)));
                    };
                    let options = field.options.as_deref().unwrap_or_default();
                    if !options.iter().any(|o| o.value == text) {
                        let allowed: Vec<_> = options.iter().map(|o| o.value.as_str()).collect();
                        return Err(invalid(format!(
                            "credential {:?} value {text:?} is not one of: {}",
                            field.name,
                            allowed.join(", ")
                        )));
                    }
                }
                ProviderConfigType::Boolean if !value.is_boolean() => {
                    return Err(invalid(format!("credential {:?} must be true or false", field.name)));
                }
                _ => {}
            },
        }
    }
    Ok(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{I18nObject, ProviderConfigOption};
    use serde_json::json;

    fn schema() -> Vec<ProviderConfig> {
        let mut region = ProviderConfig::new("region", ProviderConfigType::Select);
        region.options = Some(vec![ProviderConfigOption {
            value: "eu".into(),
            label: I18nObject::new("EU"),
        }]);
        region.default = Some(json!("eu"));
        vec![
            ProviderConfig::new("api_key", ProviderConfigType::SecretInput).required(),
            region,
        ]
    }

    #[test]
    fn fills_defaults_and_accepts_valid_values() {
        let out =
            validate_credentials_format("p", &schema(), Map::from_iter([("api_key".into(), json!("k"))])).unwrap();
        assert_eq!(out["region"], "eu");
    }

    #[test]
    fn names_what_is_wrong() {
        let missing = validate_credentials_format("p", &schema(), Map::new())
            .unwrap_err()
            .to_string();
        assert!(missing.contains("credential \"api_key\" is required"), "{missing}");
        let unknown = validate_credentials_format("p", &schema(), Map::from_iter([("token".into(), json!("x"))]))
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("credential \"token\" not found in provider \"p\""),
            "{unknown}"
        );
        let option = validate_credentials_format(
            "p",
            &schema(),
            Map::from_iter([("api_key".into(), json!("k")), ("region".into(), json!("us"))]),
        )
        .unwrap_err()
        .to_string();
        assert!(option.contains("\"us\" is not one of: eu"), "{option}");
        let typed = validate_credentials_format("p", &schema(), Map::from_iter([("api_key".into(), json!(5))]))
            .unwrap_err()
            .to_string();
        assert!(typed.contains("must be a string"), "{typed}");
    }
}
