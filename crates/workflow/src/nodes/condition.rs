//! If-else conditions with Dify's comparison operators.

use serde_json::Value;

use crate::dsl::{Case, Condition};
use crate::error::NodeError;
use crate::pool::{VariablePool, value_to_text};

/// The first case whose conditions hold, or `"false"` (the else handle). Also returns each case's result.
pub(crate) fn select_case(cases: &[Case], pool: &VariablePool) -> Result<(String, Vec<bool>), NodeError> {
    let mut results = Vec::with_capacity(cases.len());
    for case in cases {
        let or = case.logical_operator.eq_ignore_ascii_case("or");
        let mut outcome = !or;
        for condition in &case.conditions {
            let holds = evaluate(condition, pool)?;
            if or && holds {
                outcome = true;
                break;
            }
            if !or && !holds {
                outcome = false;
                break;
            }
        }
        if case.conditions.is_empty() {
            outcome = false;
        }
        results.push(outcome);
        if outcome {
            return Ok((case.case_id.clone(), results));
        }
    }
    Ok(("false".to_owned(), results))
}

fn evaluate(condition: &Condition, pool: &VariablePool) -> Result<bool, NodeError> {
    let actual = pool.get(&condition.variable_selector).unwrap_or(&Value::Null);
    let expected = match &condition.value {
        Value::String(s) => Value::String(pool.render(s)),
        other => other.clone(),
    };
    let expected_text = value_to_text(&expected);
    let op = condition.comparison_operator.as_str();
    Ok(match op {
        "contains" => contains(actual, &expected),
        "not contains" => !contains(actual, &expected),
        "start with" => value_to_text(actual).starts_with(&expected_text),
        "end with" => value_to_text(actual).ends_with(&expected_text),
        "is" => equals(actual, &expected),
        "is not" => !equals(actual, &expected),
        "empty" => is_empty(actual),
        "not empty" => !is_empty(actual),
        "null" => actual.is_null(),
        "not null" => !actual.is_null(),
        "exists" => !actual.is_null(),
        "not exists" => actual.is_null(),
        "in" => list_of(&expected).iter().any(|e| equals(actual, e)),
        "not in" => !list_of(&expected).iter().any(|e| equals(actual, e)),
        "all of" => {
            let have = list_of(actual);
            list_of(&expected).iter().all(|e| have.iter().any(|h| equals(h, e)))
        }
        "=" | "≠" | ">" | "<" | "≥" | "≤" | "==" | "!=" | ">=" | "<=" => {
            if actual.is_null() {
                return Ok(false);
            }
            let a = number(actual).ok_or_else(|| {
                NodeError::Input(format!(
                    "condition {op:?} needs a number, but {} is {actual}",
                    condition.variable_selector.join(".")
                ))
            })?;
            let b = number(&expected).ok_or_else(|| {
                NodeError::Input(format!(
                    "condition {op:?} needs a number to compare with, got {expected}"
                ))
            })?;
            match op {
                "=" | "==" => a == b,
                "≠" | "!=" => a != b,
                ">" => a > b,
                "<" => a < b,
                "≥" | ">=" => a >= b,
                _ => a <= b,
            }
        }
        other => {
            return Err(NodeError::Config(format!(
                "unknown comparison operator {other:?}; supported: contains, not contains, start with, end with, is, is not, empty, not empty, in, not in, all of, =, ≠, >, <, ≥, ≤, null, not null, exists, not exists"
            )));
        }
    })
}

fn contains(actual: &Value, expected: &Value) -> bool {
    match actual {
        Value::Array(items) => items.iter().any(|i| equals(i, expected)),
        Value::Null => false,
        other => value_to_text(other).contains(&value_to_text(expected)),
    }
}

/// Equality across representations: `"1"` equals `1`, `"true"` equals `true`.
fn equals(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    match (number(a), number(b)) {
        (Some(x), Some(y)) if !(a.is_string() && b.is_string()) => x == y,
        _ => !a.is_null() && !b.is_null() && value_to_text(a) == value_to_text(b),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn list_of(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(items)) => items,
            _ => s.split(',').map(|p| Value::String(p.trim().to_owned())).collect(),
        },
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}
