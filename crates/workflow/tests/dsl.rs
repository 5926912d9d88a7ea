//! Importing DSL: valid documents parse, bad ones are rejected with every problem listed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use toolplane_workflow::{DslError, DslProblem, Workflow};

fn problems(text: &str) -> Vec<DslProblem> {
    match Workflow::from_dsl(text) {
        Err(DslError::Invalid(problems)) => problems,
        other => panic!("expected an invalid-workflow error, got {other:?}"),
    }
}

#[test]
fn every_test_workflow_imports() {
    for name in [
        "chain.yml",
        "branches.yml",
        "parallel.yml",
        "iteration.yml",
        "code.yml",
        "tools.yml",
        "http.yml",
        "inner_tool.yml",
        "outer_tool.yml",
        "recursive_tool.yml",
    ] {
        Workflow::from_dsl(&common::dsl(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let chain = common::workflow("chain.yml");
    assert_eq!(chain.name.as_deref(), Some("greeting chain"));
    // The canvas note is not a node.
    assert!(chain.node("note1").is_none());
    assert_eq!(chain.start_variables().len(), 2);
}

#[test]
fn unsupported_nodes_are_all_listed_with_id_and_type() {
    let err = Workflow::from_dsl(&common::dsl("unsupported.yml")).unwrap_err();
    assert_eq!(
        err.problems(),
        &[
            DslProblem::UnsupportedNode {
                id: "llm1".into(),
                node_type: "llm".into()
            },
            DslProblem::UnsupportedNode {
                id: "kr".into(),
                node_type: "knowledge-retrieval".into()
            },
        ]
    );
    let text = err.to_string();
    assert!(text.contains("\"llm1\" has unsupported type \"llm\""), "{text}");
    assert!(
        text.contains("\"kr\" has unsupported type \"knowledge-retrieval\""),
        "{text}"
    );
}

const HEADER: &str = "app: {name: t, mode: workflow}\nworkflow:\n  graph:\n";

#[test]
fn missing_start_is_rejected() {
    let text =
        format!("{HEADER}    edges: []\n    nodes:\n      - id: end\n        data: {{type: end, outputs: []}}\n");
    assert_eq!(problems(&text), vec![DslProblem::MissingStart]);
    assert!(
        Workflow::from_dsl(&text)
            .unwrap_err()
            .to_string()
            .contains("no start node")
    );
}

#[test]
fn two_starts_are_rejected() {
    let text = format!(
        "{HEADER}    edges: []\n    nodes:\n      - {{id: s1, data: {{type: start}}}}\n      - {{id: s2, data: {{type: start}}}}\n"
    );
    assert!(matches!(
        &problems(&text)[..],
        [DslProblem::MultipleStarts { count: 2, .. }]
    ));
}

#[test]
fn dangling_edges_are_rejected() {
    let text = format!(
        "{HEADER}    edges:\n      - {{id: e1, source: start, target: ghost}}\n    nodes:\n      - {{id: start, data: {{type: start}}}}\n"
    );
    assert_eq!(
        problems(&text),
        vec![DslProblem::DanglingEdge {
            edge: "e1".into(),
            direction: "to",
            node: "ghost".into()
        }]
    );
}

#[test]
fn cycles_are_rejected() {
    let text = format!(
        "{HEADER}    edges:\n      - {{source: start, target: a}}\n      - {{source: a, target: b}}\n      - {{source: b, target: a}}\n    nodes:\n      - {{id: start, data: {{type: start}}}}\n      - {{id: a, data: {{type: template-transform, template: x}}}}\n      - {{id: b, data: {{type: template-transform, template: y}}}}\n"
    );
    assert_eq!(problems(&text), vec![DslProblem::Cycle("a, b".into())]);
    assert!(
        Workflow::from_dsl(&text)
            .unwrap_err()
            .to_string()
            .contains("cycle through a, b")
    );
}

#[test]
fn unknown_references_are_rejected() {
    let text = format!(
        "{HEADER}    edges:\n      - {{source: start, target: t}}\n    nodes:\n      - {{id: start, data: {{type: start}}}}\n      - id: t\n        data:\n          type: template-transform\n          template: x\n          variables: [{{variable: v, value_selector: [nowhere, out]}}]\n      - id: h\n        data: {{type: http-request, method: get, url: 'http://x/{{{{#missing.id#}}}}'}}\n"
    );
    let found = problems(&text);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        matches!(&found[0], DslProblem::UnknownReference { node, target, .. } if node == "t" && target == "nowhere")
    );
    assert!(
        matches!(&found[1], DslProblem::UnknownReference { node, target, .. } if node == "h" && target == "missing")
    );
}

#[test]
fn chat_apps_and_garbage_are_rejected() {
    let err = Workflow::from_dsl("app: {mode: advanced-chat}\nworkflow: {graph: {nodes: [], edges: []}}").unwrap_err();
    assert_eq!(err, DslError::UnsupportedMode("advanced-chat".into()));
    assert!(matches!(Workflow::from_dsl("{not json"), Err(DslError::Syntax(_))));
    assert!(matches!(Workflow::from_dsl("just: text"), Err(DslError::MissingGraph)));
    let bad_data = format!(
        "{HEADER}    edges: []\n    nodes:\n      - {{id: start, data: {{type: start}}}}\n      - {{id: c, data: {{type: code, code: x}}}}\n"
    );
    assert!(matches!(&problems(&bad_data)[..], [DslProblem::InvalidNodeData { id, .. }] if id == "c"));
}

#[test]
fn json_documents_are_accepted() {
    let json = r#"{"graph": {"nodes": [{"id": "s", "data": {"type": "start", "variables": []}},
        {"id": "e", "data": {"type": "end", "outputs": []}}], "edges": [{"source": "s", "target": "e"}]}}"#;
    let workflow = Workflow::from_dsl(json).unwrap();
    assert_eq!(workflow.nodes.len(), 2);
}
