//! Where a request's time goes: per node and per operator type, and which planned nodes compute
//! from weights alone.
//!
//! An ahead-of-time compiled model should do no work per request that depends on the weights alone
//! (casting, summing or packing them): [`weight_only_nodes`] finds such nodes in an optimized plan,
//! and [`crate::Model::profile`] times every node of a request so the per-operator table shows where
//! the time goes (`bertling bench --profile`).

use std::time::{Duration, Instant};

use tract_core::internal::*;
use tract_core::ops::konst::Const;
use tract_core::plan::eval;

/// The time one planned node took in one request.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTime {
    /// `encoder` or `head`.
    pub graph: &'static str,
    /// The node's name in the plan.
    pub node: String,
    /// The operator's name (`OptMatMul`, `Softmax`, ...).
    pub op: String,
    /// Wall time of its evaluation.
    pub time: Duration,
    /// The shape of its first output (empty if it failed).
    pub shape: Vec<usize>,
}

/// Time per operator type, summed over nodes, longest first.
pub fn by_op(times: &[NodeTime]) -> Vec<(String, Duration, usize)> {
    let mut acc: Vec<(String, Duration, usize)> = vec![];
    for t in times {
        match acc.iter_mut().find(|(op, _, _)| *op == t.op) {
            Some(e) => {
                e.1 += t.time;
                e.2 += 1;
            }
            None => acc.push((t.op.clone(), t.time, 1)),
        }
    }
    acc.sort_by_key(|e| std::cmp::Reverse(e.1));
    acc
}

/// One line per matrix product of an optimized plan: its name, what tract says of it (kernel,
/// packing, geometry) and its input facts. For `bertling bench --profile`.
pub fn matmul_lines(model: &TypedModel) -> Vec<String> {
    model
        .nodes
        .iter()
        .filter(|n| n.op().name().contains("MatMul"))
        .map(|n| {
            let facts: Vec<String> = model
                .node_input_facts(n.id)
                .map(|fs| {
                    fs.iter()
                        .map(|f| format!("{:?}", f.without_value()))
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "{} {} {:?} {:?}",
                n.name,
                n.op().name(),
                n.op().info().unwrap_or_default(),
                facts
            )
        })
        .collect()
}

/// Runs a planned state, timing each node into `out` when given.
pub(crate) fn run(
    state: &mut TypedSimpleState,
    inputs: TVec<TValue>,
    graph: &'static str,
    out: Option<&mut Vec<NodeTime>>,
) -> TractResult<TVec<TValue>> {
    // A model file with valid checksums can still hold a graph that makes tract panic at run time
    // (the loader fuzz target found an overflow in tract's Gather): a request gets an error instead.
    let guarded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match out {
        None => state.run(inputs),
        Some(out) => run_profiled(state, inputs, graph, out),
    }));
    guarded.unwrap_or_else(|_| bail!("tract failed on this model's {graph} graph (internal panic)"))
}

fn run_profiled(
    state: &mut TypedSimpleState,
    inputs: TVec<TValue>,
    graph: &'static str,
    out: &mut Vec<NodeTime>,
) -> TractResult<TVec<TValue>> {
    state.run_plan_with_eval(inputs, |ctx, st, node, input| {
        let start = Instant::now();
        let r = eval(ctx, st, node, input);
        out.push(NodeTime {
            graph,
            node: node.name.clone(),
            op: node.op().name().to_string(),
            time: start.elapsed(),
            shape: r
                .as_ref()
                .ok()
                .and_then(|o| o.first())
                .map(|t| t.shape().to_vec())
                .unwrap_or_default(),
        });
        r
    })
}

/// The nodes of `model` that are neither constants nor depend on a model input or on the request's
/// shape (a symbolic dimension such as the sequence length): work every request would redo on the
/// weights alone. Empty for a well-compiled model.
pub fn weight_only_nodes(model: &TypedModel) -> Vec<String> {
    let order = match model.eval_order() {
        Ok(o) => o,
        Err(_) => return vec!["(no evaluation order)".into()],
    };
    let mut depends_on_input = vec![false; model.nodes.len()];
    let mut found = vec![];
    for id in order {
        let node = model.node(id);
        let shaped_by_request = node
            .outputs
            .iter()
            .any(|o| o.fact.shape.as_concrete().is_none());
        let from_input = shaped_by_request
            || if node.inputs.is_empty() {
                !node.op_is::<Const>()
            } else {
                node.inputs.iter().any(|i| depends_on_input[i.node])
            };
        depends_on_input[id] = from_input;
        if !from_input && !node.op_is::<Const>() {
            found.push(format!("{} ({})", node.name, node.op().name()));
        }
    }
    found
}
