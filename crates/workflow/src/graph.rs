//! The graph structure the engine walks: one scope for the top level and one per iteration body, each with its
//! root, its edges by node and a topological check.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::dsl::{Edge, Node, NodeKind, index_nodes};
use crate::error::DslProblem;

/// One acyclic sub-graph: the top level or the body of one iteration.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    /// Index of the node where execution starts.
    pub root: usize,
    /// Indices of edges leaving each node (only edges between nodes reachable from the root).
    pub outgoing: HashMap<usize, Vec<usize>>,
    /// Indices of edges entering each node (only edges from nodes reachable from the root).
    pub incoming: HashMap<usize, Vec<usize>>,
}

/// Indexes over a validated node and edge list.
#[derive(Debug, Clone, Default)]
pub(crate) struct Graph {
    pub index: HashMap<String, usize>,
    pub start_index: usize,
    /// `None` is the top level; `Some(id)` the body of iteration `id`.
    pub scopes: HashMap<Option<String>, Scope>,
    /// Edge endpoints as node indices: `(source, target)`.
    pub endpoints: Vec<(usize, usize)>,
}

impl Graph {
    /// Builds the scopes and reports dangling edges, misplaced nodes, iteration problems and cycles.
    pub fn build(nodes: &[Node], edges: &[Edge]) -> Result<Graph, Vec<DslProblem>> {
        let index = index_nodes(nodes);
        let mut problems = Vec::new();

        for node in nodes {
            if let Some(parent) = &node.parent {
                let is_iteration = index
                    .get(parent)
                    .is_some_and(|&i| matches!(nodes[i].kind, NodeKind::Iteration(_)));
                if !is_iteration {
                    problems.push(DslProblem::InvalidIteration {
                        iteration: parent.clone(),
                        reason: format!(
                            "node {:?} is placed inside it, but it is not an iteration node",
                            node.id
                        ),
                    });
                }
            }
        }

        let mut endpoints = Vec::with_capacity(edges.len());
        for edge in edges {
            let source = index.get(&edge.source);
            let target = index.get(&edge.target);
            for (found, direction, node) in [(source, "from", &edge.source), (target, "to", &edge.target)] {
                if found.is_none() {
                    problems.push(DslProblem::DanglingEdge {
                        edge: edge.id.clone(),
                        direction,
                        node: node.clone(),
                    });
                }
            }
            if let (Some(&s), Some(&t)) = (source, target) {
                if nodes[s].parent != nodes[t].parent {
                    problems.push(DslProblem::CrossScopeEdge {
                        edge: edge.id.clone(),
                        from: edge.source.clone(),
                        to: edge.target.clone(),
                    });
                }
                endpoints.push((s, t));
            } else {
                endpoints.push((usize::MAX, usize::MAX));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }

        let start_index = nodes
            .iter()
            .position(|n| matches!(n.kind, NodeKind::Start(_)))
            .unwrap_or_default();
        if nodes[start_index].parent.is_some() {
            problems.push(DslProblem::InvalidIteration {
                iteration: nodes[start_index].parent.clone().unwrap_or_default(),
                reason: "the start node cannot be inside an iteration".into(),
            });
            return Err(problems);
        }

        let mut roots: Vec<(Option<String>, usize)> = vec![(None, start_index)];
        for node in nodes {
            let NodeKind::Iteration(data) = &node.kind else {
                continue;
            };
            let children: Vec<usize> = (0..nodes.len())
                .filter(|&c| nodes[c].parent.as_deref() == Some(node.id.as_str()))
                .collect();
            let problem = |reason: String| DslProblem::InvalidIteration {
                iteration: node.id.clone(),
                reason,
            };
            if children.is_empty() {
                problems.push(problem("it has no child nodes".into()));
                continue;
            }
            let named = data.start_node_id.as_ref().filter(|s| !s.is_empty());
            let root = match named {
                Some(start) => match index.get(start) {
                    Some(&r) if children.contains(&r) => Some(r),
                    _ => {
                        problems.push(problem(format!(
                            "start_node_id {start:?} is not a node inside the iteration"
                        )));
                        continue;
                    }
                },
                None => None,
            };
            let root = root
                .or_else(|| {
                    children
                        .iter()
                        .copied()
                        .find(|&c| matches!(nodes[c].kind, NodeKind::IterationStart))
                })
                .or_else(|| {
                    let entry: Vec<usize> = children
                        .iter()
                        .copied()
                        .filter(|&c| !endpoints.iter().any(|&(_, t)| t == c))
                        .collect();
                    (entry.len() == 1).then(|| entry[0])
                });
            match root {
                Some(r) => roots.push((Some(node.id.clone()), r)),
                None => problems.push(problem(
                    "cannot tell where its body starts: set start_node_id or add an iteration-start node".into(),
                )),
            }
        }

        let mut scopes = HashMap::new();
        for (scope_id, root) in roots {
            match build_scope(nodes, &endpoints, root) {
                Ok(scope) => {
                    scopes.insert(scope_id, scope);
                }
                Err(problem) => problems.push(problem),
            }
        }
        if problems.is_empty() {
            Ok(Graph {
                index,
                start_index,
                scopes,
                endpoints,
            })
        } else {
            Err(problems)
        }
    }
}

/// Collects the part of the scope reachable from `root` and checks it for cycles (Kahn's algorithm).
fn build_scope(nodes: &[Node], endpoints: &[(usize, usize)], root: usize) -> Result<Scope, DslProblem> {
    let mut all_out: HashMap<usize, Vec<usize>> = HashMap::new();
    for (e, &(s, _)) in endpoints.iter().enumerate() {
        if nodes[s].parent == nodes[root].parent {
            all_out.entry(s).or_default().push(e);
        }
    }
    let mut reachable = HashSet::from([root]);
    let mut queue = VecDeque::from([root]);
    while let Some(n) = queue.pop_front() {
        for &e in all_out.get(&n).map(Vec::as_slice).unwrap_or_default() {
            let t = endpoints[e].1;
            if reachable.insert(t) {
                queue.push_back(t);
            }
        }
    }
    let mut scope = Scope {
        root,
        ..Scope::default()
    };
    for (&s, list) in &all_out {
        if !reachable.contains(&s) {
            continue;
        }
        for &e in list {
            scope.outgoing.entry(s).or_default().push(e);
            scope.incoming.entry(endpoints[e].1).or_default().push(e);
        }
    }
    for list in scope.outgoing.values_mut().chain(scope.incoming.values_mut()) {
        list.sort_unstable();
    }

    let mut in_degree: HashMap<usize, usize> = reachable
        .iter()
        .map(|&n| (n, scope.incoming.get(&n).map_or(0, Vec::len)))
        .collect();
    let mut ready: VecDeque<usize> = in_degree.iter().filter(|(_, d)| **d == 0).map(|(&n, _)| n).collect();
    let mut visited = 0;
    while let Some(n) = ready.pop_front() {
        visited += 1;
        for &e in scope.outgoing.get(&n).map(Vec::as_slice).unwrap_or_default() {
            let t = endpoints[e].1;
            if let Some(d) = in_degree.get_mut(&t) {
                *d -= 1;
                if *d == 0 {
                    ready.push_back(t);
                }
            }
        }
    }
    if visited < reachable.len() {
        let mut stuck: Vec<&str> = in_degree
            .iter()
            .filter(|(_, d)| **d > 0)
            .map(|(&n, _)| nodes[n].id.as_str())
            .collect();
        stuck.sort_unstable();
        return Err(DslProblem::Cycle(stuck.join(", ")));
    }
    Ok(scope)
}
