//! Cutting the vocabulary projection down to the masked positions.
//!
//! A masked LM's head (transform, LayerNorm, the `hidden x vocab` decoder) works on each position
//! on its own, and a request only needs it at the masks: across the whole sequence it is up to a
//! third of the work (DistilBERT: ~47 MFLOP a position). The compiler splits the graph in two:
//!
//! * the **encoder**: the inputs up to the last tensor that every later node depends on alone
//!   (the "cut"), shape `[1, S, hidden]`;
//! * the **head**: from the cut to the logits, re-typed on a new symbol `M` (the number of masks).
//!
//! The runtime runs the encoder, gathers the mask rows, and runs the head on them. The cut is the
//! earliest tensor whose downstream cone depends on nothing but itself and constants and never
//! mixes positions (no tensor with two sequence axes, no reduction over them); the head must
//! type with `M` in place of `S`; and the compile-time check compares the split model with the
//! whole graph numerically on a probe with several masks, so a cone that mixed positions would be
//! refused rather than shipped.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::konst::Const;

/// The symbol of the head's row count (the number of masks in a request).
pub const MASKS_SYMBOL: &str = "M";

/// The two halves of a split graph.
pub struct Split {
    pub encoder: TypedModel,
    pub head: TypedModel,
}

/// How many axes of `fact` have a length involving the sequence symbol `s`.
fn sequence_axes(fact: &TypedFact, s: &Symbol) -> usize {
    fact.shape
        .iter()
        .filter(|d| d.symbols().contains(s))
        .count()
}

/// Whether `node` may belong to a position-wise head: no tensor it reads or writes has two
/// sequence axes (attention scores), and it keeps the sequence axis of its inputs (no reduction or
/// contraction over positions).
fn keeps_positions_apart(model: &TypedModel, node: &TypedNode, s: &Symbol) -> bool {
    let mut inputs = 0;
    for i in &node.inputs {
        match model.outlet_fact(*i) {
            Ok(f) => inputs = inputs.max(sequence_axes(f, s)),
            Err(_) => return false,
        }
    }
    let outputs = node
        .outputs
        .iter()
        .map(|o| sequence_axes(&o.fact, s))
        .max()
        .unwrap_or(0);
    inputs <= 1 && outputs <= 1 && outputs >= inputs
}

/// The nodes the output depends on when walking back from it and stopping at `cut` and at the
/// `inputs` it may also read, in eval order; `None` if some other non-constant source is reached,
/// if a node of it is not `allowed`, or if `cut` itself is needed (through other outputs of its
/// node). Shared with [`super::lift`].
pub(super) fn cone(
    model: &TypedModel,
    order: &[usize],
    cut: OutletId,
    inputs: &[OutletId],
    allowed: impl Fn(&TypedNode) -> bool,
) -> Option<Vec<usize>> {
    let mut needed = vec![false; model.nodes.len()];
    let mut stack: Vec<usize> = model.outputs.iter().map(|o| o.node).collect();
    while let Some(n) = stack.pop() {
        if needed[n] {
            continue;
        }
        needed[n] = true;
        let node = model.node(n);
        if node.inputs.is_empty() && !node.op_is::<Const>() {
            return None; // a model input reached without crossing the cut
        }
        if !allowed(node) {
            return None;
        }
        for input in &node.inputs {
            if *input != cut && !inputs.contains(input) {
                stack.push(input.node);
            }
        }
    }
    if needed[cut.node] {
        return None;
    }
    Some(order.iter().copied().filter(|&n| needed[n]).collect())
}

/// Wires copies of `model`'s nodes `cone` (in eval order) into `target`, their inputs taken from
/// `mapping` (which must hold every input from outside the cone), and records their outputs there.
/// Shared with [`super::lift`].
pub(super) fn wire_cone(
    target: &mut TypedModel,
    model: &TypedModel,
    cone: &[usize],
    mapping: &mut HashMap<OutletId, OutletId>,
) -> TractResult<()> {
    for &n in cone {
        let node = model.node(n);
        let inputs: TVec<OutletId> = node.inputs.iter().map(|i| mapping[i]).collect();
        let outputs = target.wire_node(&node.name, node.op.clone(), &inputs)?;
        for (ix, o) in outputs.into_iter().enumerate() {
            mapping.insert(OutletId::new(n, ix), o);
        }
    }
    Ok(())
}

/// Rebuilds the cone on a fresh source with `S` replaced by `M`.
fn build_head(
    model: &TypedModel,
    cone: &[usize],
    cut: OutletId,
    s: &Symbol,
) -> TractResult<TypedModel> {
    let mut head = TypedModel::default();
    let m = head.symbols.sym(MASKS_SYMBOL);
    let cut_fact = model.outlet_fact(cut)?;
    let shape: TVec<TDim> = cut_fact
        .shape
        .iter()
        .map(|d| d.substitute(s, &m.to_dim()))
        .collect::<TractResult<_>>()?;
    let source = head.add_source("hidden", cut_fact.datum_type.fact(shape))?;
    let mut mapping: HashMap<OutletId, OutletId> = HashMap::new();
    mapping.insert(cut, source);
    wire_cone(&mut head, model, cone, &mut mapping)?;
    let outputs: TVec<OutletId> = model.outputs.iter().map(|o| mapping[o]).collect();
    head.select_output_outlets(&outputs)?;
    for node in &head.nodes {
        for o in &node.outputs {
            if o.fact.shape.iter().any(|d| d.symbols().contains(s)) {
                bail!(
                    "the head still depends on the sequence length at {}",
                    node.name
                );
            }
        }
    }
    head.into_decluttered()
}

/// Splits a decluttered masked-LM graph whose input facts use the sequence symbol `s`.
pub fn split(model: &TypedModel, s: &Symbol) -> Result<Split> {
    let order = model.eval_order()?;
    let mut last_error = None;
    for &n in &order {
        let node = model.node(n);
        if node.op_is::<Const>() || node.inputs.is_empty() || node.outputs.len() != 1 {
            continue;
        }
        let cut = OutletId::new(n, 0);
        let fact = model.outlet_fact(cut)?;
        if fact.rank() < 2 || !fact.shape.iter().any(|d| d.symbols().contains(s)) {
            continue;
        }
        // The head must not mix positions: without this, a graph whose attention reads no input
        // but the hidden states (the attention mask folded away) would be cut right after its
        // embeddings.
        let row_wise = |node: &TypedNode| keeps_positions_apart(model, node, s);
        let Some(cone) = cone(model, &order, cut, &[], row_wise) else {
            continue;
        };
        match build_head(model, &cone, cut, s) {
            Ok(head) => {
                let mut encoder = model.clone();
                encoder.select_output_outlets(&[cut])?;
                let encoder = encoder.into_compact()?.into_decluttered()?;
                return Ok(Split { encoder, head });
            }
            Err(e) => last_error = Some(e),
        }
    }
    match last_error {
        Some(e) => Err(e).context("no position-wise head could be cut from the graph"),
        None => bail!("no position-wise head could be cut from the graph"),
    }
}
