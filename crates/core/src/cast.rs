//! Parameter casting and validation by Dify's rules, with its bugs fixed.
//!
//! Dify's `cast_parameter_value` and `init_frontend_parameter` are followed, except where they lose data:
//! - the strings `"false"`, `"no"`, `"n"`, `"0"` and `""` are `false` (Dify: `bool("false")` is true), and any other
//!   string given for a boolean is rejected instead of becoming `true`;
//! - a `false` or `0` value is kept rather than replaced by the default (Dify treats every falsy value as missing);
//! - a `select` value outside the options is rejected with the allowed values in the message;
//! - a number outside `min`/`max` is rejected;
//! - an `object` parameter given a string that is not a JSON object is rejected rather than silently becoming `{}`.

use serde_json::{Map, Number, Value};

use crate::{ToolError, ToolParameter, ToolParameterType};

/// Validates `input` against the declared parameters and casts every declared value to its type.
///
/// Missing or empty values take the parameter's default; a required parameter that is still missing is an error
/// that names it. Values for undeclared names pass through unchanged, as in Dify.
pub fn validate_and_cast(
    parameters: &[ToolParameter],
    mut input: Map<String, Value>,
) -> Result<Map<String, Value>, ToolError> {
    for parameter in parameters {
        let given = input.remove(&parameter.name).filter(|v| !is_absent(v));
        let value = match given.or_else(|| parameter.default.clone().filter(|v| !is_absent(v))) {
            Some(value) => value,
            None if parameter.required => {
                return Err(ToolError::param(format!(
                    "missing required parameter {:?} ({})",
                    parameter.name,
                    parameter.kind.as_normal_type()
                )));
            }
            None => continue,
        };
        if parameter.kind == ToolParameterType::Select && !parameter.options.is_empty() {
            check_option(parameter, &value)?;
        }
        let cast = cast_value(parameter, value)?;
        input.insert(parameter.name.clone(), cast);
    }
    Ok(input)
}

/// Casts one value to the parameter's type.
pub fn cast_value(parameter: &ToolParameter, value: Value) -> Result<Value, ToolError> {
    use ToolParameterType as T;
    let wrong_type = |value: &Value| {
        ToolError::param(format!(
            "parameter {:?} expects {} but got {}",
            parameter.name,
            parameter.kind.as_normal_type(),
            describe(value)
        ))
    };
    Ok(match parameter.kind {
        T::String | T::SecretInput | T::Select | T::Checkbox | T::DynamicSelect => match value {
            Value::Null => Value::String(String::new()),
            Value::String(s) => Value::String(s),
            other => Value::String(other.to_string()),
        },
        T::Boolean => Value::Bool(match &value {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "y" | "1" => true,
                "false" | "no" | "n" | "0" | "" => false,
                _ => return Err(wrong_type(&value)),
            },
            _ => return Err(wrong_type(&value)),
        }),
        T::Number => {
            let number = match &value {
                Value::Number(n) => n.clone(),
                Value::String(s) => parse_number(s.trim()).ok_or_else(|| wrong_type(&value))?,
                Value::Bool(b) => Number::from(i64::from(*b)),
                _ => return Err(wrong_type(&value)),
            };
            check_range(parameter, &number)?;
            Value::Number(number)
        }
        T::Files | T::SystemFiles => match value {
            Value::Array(items) => Value::Array(items),
            other => Value::Array(vec![other]),
        },
        T::File => match value {
            Value::Array(mut items) if items.len() == 1 => items.remove(0),
            Value::Array(items) => {
                return Err(ToolError::param(format!(
                    "parameter {:?} accepts one file but got {}",
                    parameter.name,
                    items.len()
                )));
            }
            other => other,
        },
        T::ModelSelector | T::AppSelector => match value {
            Value::Object(o) => Value::Object(o),
            other => {
                return Err(ToolError::param(format!(
                    "parameter {:?}: the selector must be a JSON object, got {}",
                    parameter.name,
                    describe(&other)
                )));
            }
        },
        T::Any => value,
        T::Array => match value {
            Value::Array(items) => Value::Array(items),
            Value::String(s) => match serde_json::from_str::<Value>(&s) {
                Ok(Value::Array(items)) => Value::Array(items),
                _ => Value::Array(vec![Value::String(s)]),
            },
            other => Value::Array(vec![other]),
        },
        T::Object => match value {
            Value::Object(o) => Value::Object(o),
            Value::String(s) => match serde_json::from_str::<Value>(&s) {
                Ok(Value::Object(o)) => Value::Object(o),
                _ => {
                    return Err(ToolError::param(format!(
                        "parameter {:?} expects a JSON object; the string given does not parse as one",
                        parameter.name
                    )));
                }
            },
            other => return Err(wrong_type(&other)),
        },
    })
}

fn is_absent(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

fn check_option(parameter: &ToolParameter, value: &Value) -> Result<(), ToolError> {
    let as_text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if parameter.options.iter().any(|o| o.value == as_text) {
        return Ok(());
    }
    Err(ToolError::param(format!(
        "parameter {:?} value {as_text:?} is not one of the allowed values: {}",
        parameter.name,
        parameter.option_values().join(", ")
    )))
}

fn check_range(parameter: &ToolParameter, number: &Number) -> Result<(), ToolError> {
    let Some(x) = number.as_f64() else { return Ok(()) };
    let below = parameter.min.is_some_and(|min| x < min);
    let above = parameter.max.is_some_and(|max| x > max);
    if below || above {
        let bound = |b: Option<f64>| b.map_or_else(|| "-".to_owned(), |b| b.to_string());
        return Err(ToolError::param(format!(
            "parameter {:?} value {number} is outside the allowed range [{}, {}]",
            parameter.name,
            bound(parameter.min),
            bound(parameter.max)
        )));
    }
    Ok(())
}

/// Integers stay integers (`"42"` → 42); anything with a fraction or exponent becomes a float.
fn parse_number(s: &str) -> Option<Number> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Number::from(i));
    }
    s.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .and_then(Number::from_f64)
}

fn describe(value: &Value) -> String {
    let mut text = value.to_string();
    if text.len() > 60 {
        let cut = (0..=60).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    format!("{kind} {text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ToolParameterForm as F, ToolParameterType as T};
    use serde_json::json;

    fn p(kind: T) -> ToolParameter {
        ToolParameter::new("x", kind, F::Llm)
    }

    fn cast(kind: T, v: Value) -> Result<Value, ToolError> {
        cast_value(&p(kind), v)
    }

    #[test]
    fn booleans_follow_their_text() {
        for (given, want) in [
            ("false", false),
            ("False", false),
            ("no", false),
            ("0", false),
            ("true", true),
            ("Y", true),
            ("1", true),
        ] {
            assert_eq!(cast(T::Boolean, json!(given)).unwrap(), json!(want), "{given}");
        }
        assert_eq!(cast(T::Boolean, json!(0)).unwrap(), json!(false));
        assert_eq!(cast(T::Boolean, json!(2)).unwrap(), json!(true));
        let err = cast(T::Boolean, json!("maybe")).unwrap_err();
        assert!(err.to_string().contains("expects boolean"), "{err}");
    }

    #[test]
    fn numbers_parse_from_strings() {
        assert_eq!(cast(T::Number, json!("42")).unwrap(), json!(42));
        assert_eq!(cast(T::Number, json!("4.5")).unwrap(), json!(4.5));
        assert_eq!(cast(T::Number, json!(7)).unwrap(), json!(7));
        assert!(
            cast(T::Number, json!("abc"))
                .unwrap_err()
                .to_string()
                .contains("expects number")
        );
        assert!(cast(T::Number, json!([1])).is_err());
    }

    #[test]
    fn number_range_is_enforced() {
        let mut param = p(T::Number);
        param.min = Some(1.0);
        param.max = Some(12.0);
        assert!(cast_value(&param, json!(12)).is_ok());
        let err = cast_value(&param, json!(13)).unwrap_err().to_string();
        assert!(err.contains("outside the allowed range [1, 12]"), "{err}");
    }

    #[test]
    fn strings_stringify() {
        assert_eq!(cast(T::String, json!(5)).unwrap(), json!("5"));
        assert_eq!(cast(T::String, Value::Null).unwrap(), json!(""));
        assert_eq!(cast(T::SecretInput, json!(true)).unwrap(), json!("true"));
    }

    #[test]
    fn files_and_file() {
        assert_eq!(cast(T::Files, json!({"id": 1})).unwrap(), json!([{"id": 1}]));
        assert_eq!(cast(T::File, json!([{"id": 1}])).unwrap(), json!({"id": 1}));
        assert!(
            cast(T::File, json!([1, 2]))
                .unwrap_err()
                .to_string()
                .contains("one file but got 2")
        );
    }

    #[test]
    fn arrays_and_objects() {
        assert_eq!(cast(T::Array, json!("[1,2]")).unwrap(), json!([1, 2]));
        assert_eq!(cast(T::Array, json!("a")).unwrap(), json!(["a"]));
        assert_eq!(cast(T::Object, json!("{\"a\":1}")).unwrap(), json!({"a": 1}));
        assert!(cast(T::Object, json!("nope")).is_err());
        assert!(
            cast(T::ModelSelector, json!("x"))
                .unwrap_err()
                .to_string()
                .contains("selector must be a JSON object")
        );
    }

    #[test]
    fn select_outside_options_lists_allowed_values() {
        let tz = ToolParameter::new("timezone", T::Select, F::Form).options(["UTC", "Asia/Tokyo"]);
        let err = validate_and_cast(&[tz], Map::from_iter([("timezone".into(), json!("Mars/Olympus"))])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("\"Mars/Olympus\" is not one of the allowed values: UTC, Asia/Tokyo"),
            "{text}"
        );
    }

    #[test]
    fn missing_required_parameter_is_named() {
        let url = ToolParameter::new("url", T::String, F::Llm).required();
        let err = validate_and_cast(&[url], Map::new()).unwrap_err().to_string();
        assert!(err.contains("missing required parameter \"url\""), "{err}");
    }

    #[test]
    fn defaults_fill_gaps_but_false_is_kept() {
        let flag = ToolParameter::new("flag", T::Boolean, F::Form).default_value(true);
        let fmt = ToolParameter::new("format", T::String, F::Form).default_value("%Y");
        let out = validate_and_cast(
            &[flag, fmt],
            Map::from_iter([
                ("flag".into(), json!(false)),
                ("format".into(), json!("")),
                ("extra".into(), json!(1)),
            ]),
        )
        .unwrap();
        assert_eq!(out["flag"], json!(false));
        assert_eq!(out["format"], json!("%Y"));
        assert_eq!(out["extra"], json!(1), "undeclared parameters pass through");
    }
}
