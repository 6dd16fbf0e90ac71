//! Running the last encoder layer at the masks too: the mask-row gather pushed up the graph.
//!
//! [`super::split`] cuts the graph where positions stop mixing, so the head (transform, LayerNorm,
//! vocabulary projection) runs at the masks only. The last encoder layer mixes positions only
//! through its keys and values: its queries, attention output, residual adds, LayerNorms and
//! feed-forward products are computed per position, and only the mask positions' results are
//! ever read. Running them at the masks saves most of a layer (DistilBERT: one sixth of the
//! encoder; BERT, ALBERT, RoBERTa: one twelfth).
//!
//! The rewrite is general, not a pattern for one architecture: it takes the whole graph with a
//! new input `positions` (`[M]`, the mask positions) and a `Gather` of the logits' sequence axis
//! at the output, and pushes that gather up through every node whose result is only needed at the
//! gathered rows and which computes each row from the same row of its inputs (element-wise ops,
//! matrix products along a non-contracted axis, reductions, softmax and normalizations over other
//! axes, axis changes: checked with the operator's own axes mapping and by typing it on the
//! gathered shapes). Where a tensor is also needed whole (the last layer's input, which feeds the
//! keys and values), the gather is applied to it there. The graph is then cut at the latest
//! tensor the positions-dependent part reads alone: the encoder runs up to it (`[1, S, hidden]`),
//! the head takes it and the positions. The compile-time check compares the result with the
//! whole graph on a probe with two masks.

use std::collections::{BTreeSet, HashMap};

use anyhow::{bail, ensure, Context, Result};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::array::Gather;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::ops::change_axes::{AxisOp, InOut};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::ops::nn::{Reduce, RmsNorm, Softmax};
use tract_onnx::tract_core::ops::source::TypedSource;

use super::split::{cone, wire_cone, Split, MASKS_SYMBOL};

/// Name of the head's second input: the mask positions, i64 `[M]`.
pub const POSITIONS: &str = "positions";

/// Per tensor, the axes along which a consumer (or the output) reads it gathered at the masks.
type Demands = HashMap<OutletId, BTreeSet<usize>>;

/// How a node is computed in the rewritten graph.
#[derive(Debug, Clone)]
enum Plan {
    /// Not needed.
    Unused,
    /// At every position (and gathered afterwards where a consumer wants mask rows).
    Whole,
    /// At the mask rows only, along output axis `axis`; per input, the axis gathered (or `None`:
    /// the input is read whole).
    Rows {
        axis: usize,
        inputs: Vec<Option<usize>>,
    },
}

/// Splits `model` (logits `[.., S, vocab]` from the inputs, sequence symbol `s`) into an encoder
/// and a head that runs everything it can at the mask rows (module doc). Fails when nothing beyond
/// a position-wise head could be moved to the mask rows: [`super::split`] then does as well.
pub fn lift(model: &TypedModel, s: &Symbol) -> Result<Split> {
    ensure!(model.outputs.len() == 1, "one output expected");
    // The plan reads shapes, and decluttering leaves some stale: a node whose inputs a patch
    // narrowed keeps its old output fact (PyTorch's dynamo exports: an attention mask typed
    // `[1, 1, S, S]` that computes `[1, 1, 1, S]` once the mask input is folded). Planned on the
    // stale fact, a gather would read a broadcast axis of one row at the mask positions.
    let mut fresh = model.clone();
    fresh.refresh_output_facts()?;
    let model = &fresh;
    let out = model.outputs[0];
    let out_axis = sequence_axis(model.outlet_fact(out)?, s)
        .context("the output has no single sequence axis")?;
    let order = model.eval_order()?;
    let (plans, demanded) = plan(model, &order, out, out_axis, s)?;

    // The rewritten graph, on the same symbol scope.
    let mut g = TypedModel {
        symbols: model.symbols.clone(),
        ..TypedModel::default()
    };
    let m = g.symbols.sym(MASKS_SYMBOL);
    let positions = g.add_source(POSITIONS, i64::fact([m.to_dim()]))?;
    let mut whole: HashMap<OutletId, OutletId> = HashMap::new();
    let mut rows: HashMap<(OutletId, usize), OutletId> = HashMap::new();
    let mut moved = 0usize;
    for &n in &order {
        let node = model.node(n);
        match &plans[n] {
            Plan::Unused => {}
            Plan::Whole => {
                let outputs: TVec<OutletId> = if let Some(src) = node.op_as::<TypedSource>() {
                    tvec![g.add_source(&node.name, src.fact.clone())?]
                } else {
                    let inputs: TVec<OutletId> = node.inputs.iter().map(|i| whole[i]).collect();
                    g.wire_node(&node.name, node.op.clone(), &inputs)?
                };
                for (ix, o) in outputs.into_iter().enumerate() {
                    let original = OutletId::new(n, ix);
                    ensure!(
                        g.outlet_fact(o)?.shape == model.outlet_fact(original)?.shape,
                        "{} computes another shape when rewired",
                        node.name
                    );
                    whole.insert(original, o);
                    for &axis in demanded.get(&original).into_iter().flatten() {
                        let name = format!("{}.at_masks.{ix}.{axis}", node.name);
                        let gathered = g.wire_node(name, Gather::new(axis), &[o, positions])?[0];
                        rows.insert((original, axis), gathered);
                    }
                }
            }
            Plan::Rows { axis, inputs } => {
                let wires: TVec<OutletId> = node
                    .inputs
                    .iter()
                    .zip(inputs)
                    .map(|(i, b)| match b {
                        Some(b) => rows[&(*i, *b)],
                        None => whole[i],
                    })
                    .collect();
                let name = format!("{}.at_masks", node.name);
                let o = g.wire_node(name, node.op.clone(), &wires)?[0];
                rows.insert((OutletId::new(n, 0), *axis), o);
                moved += 1;
            }
        }
    }
    let mut inputs: Vec<OutletId> = model.inputs.iter().map(|i| whole[i]).collect();
    inputs.push(positions);
    g.inputs = inputs;
    g.outputs = vec![rows[&(out, out_axis)]];

    // Only worth it if the head computes something at every position (the last layer's keys and
    // values): otherwise the plain position-wise split is the same thing.
    let (cut, cone) = cut(&g, positions, s)?;
    let whole_in_head = cone.iter().any(|&n| {
        let node = g.node(n);
        !node.op_is::<Gather>()
            && node
                .outputs
                .iter()
                .any(|o| sequence_axis(&o.fact, s).is_some())
    });
    ensure!(
        whole_in_head,
        "nothing but a position-wise head could be moved past the cut ({moved} nodes)"
    );
    tracing::debug!("{moved} nodes run at the mask rows");

    let mut encoder = g.clone();
    encoder.inputs.retain(|&i| i != positions);
    encoder.select_output_outlets(&[cut])?;
    let encoder = encoder.into_compact()?.into_decluttered()?;
    ensure!(
        encoder.inputs.len() == model.inputs.len(),
        "the encoder lost an input"
    );

    let mut head = TypedModel {
        symbols: g.symbols.clone(),
        ..TypedModel::default()
    };
    let mut mapping: HashMap<OutletId, OutletId> = HashMap::new();
    mapping.insert(
        cut,
        head.add_source("hidden", g.outlet_fact(cut)?.without_value())?,
    );
    mapping.insert(
        positions,
        head.add_source(POSITIONS, g.outlet_fact(positions)?.clone())?,
    );
    wire_cone(&mut head, &g, &cone, &mut mapping)?;
    head.select_output_outlets(&[mapping[&g.outputs[0]]])?;
    let head = head.into_decluttered()?;
    ensure!(head.inputs.len() == 2, "the head lost an input");
    Ok(Split { encoder, head })
}

/// The one axis of `fact` whose length involves `s`.
fn sequence_axis(fact: &TypedFact, s: &Symbol) -> Option<usize> {
    let mut axes = fact
        .shape
        .iter()
        .enumerate()
        .filter(|(_, d)| d.symbols().contains(s));
    let (axis, _) = axes.next()?;
    axes.next().is_none().then_some(axis)
}

/// Decides, from the output back, which nodes run at the mask rows ([`Plan`]); also returns, per
/// tensor, the axes along which a consumer (or the output) reads it gathered.
fn plan(
    model: &TypedModel,
    order: &[usize],
    out: OutletId,
    out_axis: usize,
    s: &Symbol,
) -> Result<(Vec<Plan>, Demands)> {
    let mut whole = vec![false; model.nodes.len()];
    let mut rows = Demands::new();
    rows.entry(out).or_default().insert(out_axis);
    let mut plans = vec![Plan::Unused; model.nodes.len()];
    for &n in order.iter().rev() {
        let node = model.node(n);
        // One gathered axis wanted, and nothing whole: try to compute the node at the rows.
        let axis = rows
            .get(&OutletId::new(n, 0))
            .filter(|axes| axes.len() == 1 && !whole[n] && node.outputs.len() == 1)
            .and_then(|axes| axes.first().copied());
        if let Some(axis) = axis {
            if let Some(inputs) = row_wise(model, node, axis, s)? {
                for (i, b) in node.inputs.iter().zip(&inputs) {
                    match b {
                        Some(b) => {
                            rows.entry(*i).or_default().insert(*b);
                        }
                        None => whole[i.node] = true,
                    }
                }
                plans[n] = Plan::Rows { axis, inputs };
                continue;
            }
        }
        let gathered = (0..node.outputs.len()).any(|ix| rows.contains_key(&OutletId::new(n, ix)));
        if whole[n] || gathered {
            for i in &node.inputs {
                whole[i.node] = true;
            }
            plans[n] = Plan::Whole;
        }
    }
    Ok((plans, rows))
}

/// Whether `node` computes each row of its output along `axis` from the same row of its inputs
/// (and nothing else along that axis); if so, per input, the axis to gather (`None`: read whole,
/// e.g. the keys of an attention product or a broadcast constant).
fn row_wise(
    model: &TypedModel,
    node: &TypedNode,
    axis: usize,
    s: &Symbol,
) -> Result<Option<Vec<Option<usize>>>> {
    let op = &node.op;
    let known = op.is::<TypedBinOp>()
        || op.is::<ElementWiseOp>()
        || op.is::<Cast>()
        || op.is::<EinSum>()
        || op.is::<AxisOp>()
        || op
            .downcast_ref::<Reduce>()
            .is_some_and(|r| !r.axes.contains(&axis))
        || op
            .downcast_ref::<Softmax>()
            .is_some_and(|r| !r.axes.contains(&axis))
        || op.downcast_ref::<RmsNorm>().is_some_and(|r| r.axis != axis);
    if !known || node.outputs.len() != 1 {
        return Ok(None);
    }
    let inputs = model.node_input_facts(node.id)?;
    let output = &node.outputs[0].fact;
    let Some(len) = output.shape.get(axis) else {
        return Ok(None);
    };
    if !len.symbols().contains(s) {
        return Ok(None);
    }
    let m = model.symbols.sym(MASKS_SYMBOL).to_dim();
    let mapping = op.axes_mapping(&inputs, &[output])?;
    let mut gathered = vec![];
    let mut facts = vec![];
    for (ix, fact) in inputs.iter().enumerate() {
        let b = mapping.track_axis((InOut::Out(0), axis), InOut::In(ix))?;
        match b {
            Some(b) if &fact.shape[b] == len => {
                let mut f = (*fact).clone().without_value();
                f.shape.set(b, m.clone());
                gathered.push(Some(b));
                facts.push(f);
            }
            // Broadcast along the axis, or an input without it.
            Some(b) if fact.shape[b].is_one() => {
                gathered.push(None);
                facts.push((*fact).clone());
            }
            None if fact.shape.iter().all(|d| !d.symbols().contains(s)) || op.is::<EinSum>() => {
                gathered.push(None);
                facts.push((*fact).clone());
            }
            _ => return Ok(None),
        }
    }
    if gathered.iter().all(Option::is_none) {
        return Ok(None);
    }
    // Typed on M rows instead of S, the op must give the same output with M rows: an op that holds
    // the sequence length in its attributes (a reshape to S, a broadcast) does not.
    let refs: Vec<&TypedFact> = facts.iter().collect();
    let Ok(typed) = op.output_facts(&refs) else {
        return Ok(None);
    };
    let mut want = output.shape.to_tvec();
    want[axis] = m;
    if typed.len() != 1 || typed[0].datum_type != output.datum_type || *typed[0].shape != *want {
        return Ok(None);
    }
    Ok(Some(gathered))
}

/// The latest whole tensor of `g` that the positions-dependent part reads alone, and that part
/// (the nodes the output depends on when stopping at the cut, in eval order).
fn cut(g: &TypedModel, positions: OutletId, s: &Symbol) -> Result<(OutletId, Vec<usize>)> {
    let order = g.eval_order()?;
    for &n in order.iter().rev() {
        let node = g.node(n);
        if node.op_is::<Const>() || node.inputs.is_empty() || node.outputs.len() != 1 {
            continue;
        }
        let candidate = OutletId::new(n, 0);
        let fact = g.outlet_fact(candidate)?;
        if fact.rank() < 2 || sequence_axis(fact, s).is_none() {
            continue;
        }
        if let Some(cone) = cone(g, &order, candidate, &[positions], |_| true) {
            return Ok((candidate, cone));
        }
    }
    bail!("no tensor separates the encoder from the mask-row part")
}
