//! Node implementations. Each node is prepared synchronously against the variable pool (all references are
//! resolved into an owned [`Job`]) and then run asynchronously, so concurrent nodes never share the pool.

mod condition;
mod http;
mod tool;

use serde_json::{Map, Value};

use crate::dsl::{
    AggregatorData, CodeData, CodeLanguage, EndData, IterationData, Node, NodeKind, StartData, StartVariable,
    TemplateData, VariableSelector, VariableType,
};
use crate::error::NodeError;
use crate::pool::VariablePool;
use crate::sandbox::json_type;

pub(crate) use http::HttpJob;
pub use tool::FILE_MODEL_IDENTITY;
pub(crate) use tool::{ToolJob, messages_to_outputs};

/// A node ready to run: its inputs (for events) and the work.
pub(crate) struct Prepared {
    pub inputs: Map<String, Value>,
    pub job: Job,
}

/// The work of one node, independent of the pool.
pub(crate) enum Job {
    /// Outputs known at preparation (start, end, aggregator, iteration-start).
    Done(Map<String, Value>),
    /// An if-else decision: outputs and the handle of the taken branch.
    Branch(Map<String, Value>, String),
    Template {
        template: String,
        variables: Map<String, Value>,
    },
    Code {
        language: CodeLanguage,
        code: String,
        variables: Map<String, Value>,
        outputs: Vec<(String, String)>,
    },
    Tool(Box<ToolJob>),
    Http(Box<HttpJob>),
    Iteration {
        data: IterationData,
        items: Vec<Value>,
        pool: VariablePool,
    },
}

/// What the engine knows when it prepares a node.
pub(crate) struct PrepareContext<'a> {
    pub pool: &'a VariablePool,
    /// Run inputs (for the start node).
    pub inputs: &'a Map<String, Value>,
    pub tenant_id: &'a str,
    pub user_id: Option<&'a str>,
    pub call_depth: u32,
}

pub(crate) fn prepare(node: &Node, cx: &PrepareContext<'_>) -> Result<Prepared, NodeError> {
    let pool = cx.pool;
    Ok(match &node.kind {
        NodeKind::Start(data) => {
            let outputs = start_outputs(data, cx.inputs)?;
            Prepared {
                inputs: outputs.clone(),
                job: Job::Done(outputs),
            }
        }
        NodeKind::IterationStart => Prepared {
            inputs: Map::new(),
            job: Job::Done(Map::new()),
        },
        NodeKind::End(EndData { outputs }) => {
            let values = selected(outputs, pool);
            Prepared {
                inputs: values.clone(),
                job: Job::Done(values),
            }
        }
        NodeKind::VariableAggregator(data) => {
            let outputs = aggregate(data, pool);
            Prepared {
                inputs: outputs.clone(),
                job: Job::Done(outputs),
            }
        }
        NodeKind::IfElse(data) => {
            let cases = data.all_cases();
            let (handle, results) = condition::select_case(&cases, pool)?;
            let mut outputs = Map::new();
            outputs.insert("result".into(), Value::Bool(handle != "false"));
            outputs.insert("selected_case_id".into(), Value::String(handle.clone()));
            let mut inputs = Map::new();
            inputs.insert(
                "cases".into(),
                Value::Array(
                    cases
                        .iter()
                        .zip(
                            results
                                .iter()
                                .map(|r| Value::Bool(*r))
                                .chain(std::iter::repeat(Value::Null)),
                        )
                        .map(|(c, r)| serde_json::json!({"case_id": c.case_id, "result": r}))
                        .collect(),
                ),
            );
            Prepared {
                inputs,
                job: Job::Branch(outputs, handle),
            }
        }
        NodeKind::TemplateTransform(TemplateData { variables, template }) => {
            let variables = selected(variables, pool);
            Prepared {
                inputs: variables.clone(),
                job: Job::Template {
                    template: template.clone(),
                    variables,
                },
            }
        }
        NodeKind::Code(data) => {
            let CodeData {
                code_language,
                code,
                variables,
                ..
            } = data;
            let variables = selected(variables, pool);
            Prepared {
                inputs: variables.clone(),
                job: Job::Code {
                    language: *code_language,
                    code: code.clone(),
                    variables,
                    outputs: data.declared_outputs(),
                },
            }
        }
        NodeKind::Tool(data) => {
            let (job, inputs) = ToolJob::prepare(data, cx)?;
            Prepared {
                inputs,
                job: Job::Tool(Box::new(job)),
            }
        }
        NodeKind::HttpRequest(data) => {
            let (job, inputs) = HttpJob::prepare(data, pool)?;
            Prepared {
                inputs,
                job: Job::Http(Box::new(job)),
            }
        }
        NodeKind::Iteration(data) => {
            let items = match pool.get(&data.iterator_selector) {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) => items.clone(),
                Some(other) => {
                    return Err(NodeError::Input(format!(
                        "the iterator {} must be a list, got {}",
                        data.iterator_selector.join("."),
                        json_type(other)
                    )));
                }
            };
            let mut inputs = Map::new();
            inputs.insert("iterator_selector".into(), Value::Array(items.clone()));
            Prepared {
                inputs,
                job: Job::Iteration {
                    data: data.clone(),
                    items,
                    pool: pool.clone(),
                },
            }
        }
    })
}

/// `{variable: value}` for each selector; missing values are `null`.
fn selected(variables: &[VariableSelector], pool: &VariablePool) -> Map<String, Value> {
    variables
        .iter()
        .map(|v| {
            (
                v.variable.clone(),
                pool.get(&v.value_selector).cloned().unwrap_or(Value::Null),
            )
        })
        .collect()
}

fn aggregate(data: &AggregatorData, pool: &VariablePool) -> Map<String, Value> {
    let first = |selectors: &[Vec<String>]| {
        selectors
            .iter()
            .find_map(|s| pool.get(s).filter(|v| !v.is_null()).cloned())
    };
    let mut outputs = Map::new();
    match &data.advanced_settings {
        Some(settings) if settings.group_enabled => {
            for group in &settings.groups {
                let mut inner = Map::new();
                if let Some(value) = first(&group.variables) {
                    inner.insert("output".into(), value);
                }
                outputs.insert(group.group_name.clone(), Value::Object(inner));
            }
        }
        _ => {
            if let Some(value) = first(&data.variables) {
                outputs.insert("output".into(), value);
            }
        }
    }
    outputs
}

/// Validates and casts the run inputs against the start variables (Dify's user-input form rules).
fn start_outputs(data: &StartData, inputs: &Map<String, Value>) -> Result<Map<String, Value>, NodeError> {
    let mut outputs = Map::new();
    for variable in &data.variables {
        let given = inputs
            .get(&variable.variable)
            .filter(|v| !v.is_null() && *v != &Value::String(String::new()));
        let value = match given
            .cloned()
            .or_else(|| variable.default.clone().filter(|d| !d.is_null()))
        {
            Some(value) => cast_start_value(variable, value)?,
            None if variable.required => {
                return Err(NodeError::Input(format!(
                    "{} is required in input form",
                    variable.variable
                )));
            }
            None => Value::Null,
        };
        outputs.insert(variable.variable.clone(), value);
    }
    Ok(outputs)
}

fn cast_start_value(variable: &StartVariable, value: Value) -> Result<Value, NodeError> {
    let name = &variable.variable;
    let wrong = |expected: &str, value: &Value| {
        NodeError::Input(format!(
            "{name} in input form must be {expected}, got {}",
            json_type(value)
        ))
    };
    Ok(match variable.kind {
        VariableType::TextInput | VariableType::Paragraph | VariableType::Select => {
            let text = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                other => return Err(wrong("a string", &other)),
            };
            if let Some(max) = variable.max_length
                && max > 0
                && text.chars().count() as u64 > max
            {
                return Err(NodeError::Input(format!(
                    "{name} in input form must be at most {max} characters"
                )));
            }
            if variable.kind == VariableType::Select
                && !variable.options.is_empty()
                && !variable.options.contains(&text)
            {
                return Err(NodeError::Input(format!(
                    "{name} in input form must be one of: {}",
                    variable.options.join(", ")
                )));
            }
            Value::String(text)
        }
        VariableType::Number => match &value {
            Value::Number(_) => value,
            Value::String(s) => {
                let s = s.trim();
                if let Ok(i) = s.parse::<i64>() {
                    Value::from(i)
                } else {
                    s.parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                        .ok_or_else(|| wrong("a number", &value))?
                }
            }
            _ => return Err(wrong("a number", &value)),
        },
        VariableType::Checkbox => match &value {
            Value::Bool(_) => value,
            Value::String(s) if matches!(s.to_ascii_lowercase().as_str(), "true" | "1") => Value::Bool(true),
            Value::String(s) if matches!(s.to_ascii_lowercase().as_str(), "false" | "0") => Value::Bool(false),
            Value::Number(n) => Value::Bool(n.as_f64().is_some_and(|f| f != 0.0)),
            _ => return Err(wrong("a boolean", &value)),
        },
        VariableType::JsonObject => match value {
            Value::Object(_) => value,
            Value::String(s) => match serde_json::from_str::<Value>(&s) {
                Ok(v @ Value::Object(_)) => v,
                _ => return Err(NodeError::Input(format!("{name} in input form must be a JSON object"))),
            },
            other => return Err(wrong("a JSON object", &other)),
        },
        VariableType::File => match value {
            Value::Object(_) => value,
            Value::Array(mut items) if items.len() == 1 => items.remove(0),
            other => return Err(wrong("a file object", &other)),
        },
        VariableType::FileList => match value {
            Value::Array(_) => value,
            Value::Object(_) => Value::Array(vec![value]),
            other => return Err(wrong("a list of files", &other)),
        },
        VariableType::ExternalDataTool => value,
    })
}

/// Checks a code node's result against its declared outputs and keeps only those (all keys when none are
/// declared).
pub(crate) fn check_code_outputs(
    result: Map<String, Value>,
    declared: &[(String, String)],
) -> Result<Map<String, Value>, NodeError> {
    if declared.is_empty() {
        return Ok(result);
    }
    let mut outputs = Map::new();
    for (name, kind) in declared {
        let value = result
            .get(name)
            .ok_or_else(|| NodeError::Output(format!("output {name:?} is missing from the code's result")))?;
        let ok = match kind.as_str() {
            "string" => value.is_string(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "object" => value.is_object(),
            "array[string]" => array_of(value, Value::is_string),
            "array[number]" => array_of(value, Value::is_number),
            "array[boolean]" => array_of(value, Value::is_boolean),
            "array[object]" => array_of(value, Value::is_object),
            _ => true,
        };
        // Dify lets a declared output be None.
        if !ok && !value.is_null() {
            return Err(NodeError::Output(format!(
                "output {name:?} must be {kind}, got {}",
                json_type(value)
            )));
        }
        outputs.insert(name.clone(), value.clone());
    }
    Ok(outputs)
}

fn array_of(value: &Value, check: fn(&Value) -> bool) -> bool {
    value.as_array().is_some_and(|items| items.iter().all(check))
}
