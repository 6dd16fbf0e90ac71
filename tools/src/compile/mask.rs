//! The attention mask, folded away.
//!
//! bertling answers one sequence at a time at its own length (the sequence axis is symbolic, see
//! docs/model-format.md): nothing is ever padded, so the attention mask it would feed is all ones.
//! Fed as an input, that mask still costs every request the export's masking: a broadcast `Add`
//! (or `Iff`) of the mask's bias over every `[heads, S, S]` score tensor of every layer, and, in
//! exports whose attention guards against fully masked rows (`torch.where(isnan(p), 0, p)` after
//! the softmax), an `IsNan` and an `Iff` over the probabilities too (ALBERT-base at seq 128:
//! ~20 ms of ~330 on one thread). This pass replaces the input by a constant one broadcast to its
//! shape `[1, S]`, helps tract see that everything computed from it is uniform (tract 0.23.9
//! does not carry uniformity through `Gather`, nor through `GatherNd`, which PyTorch's dynamo
//! exporter writes), lets decluttering fold the masking to nothing, and
//! then drops the NaN guards: with no mask, a softmax row sums to one over finite scores and has no
//! NaN to guard. The file then lists no `AttentionMask` input, and the runtime feeds none.

use anyhow::{Context, Result};
use bertling::format::InputKind;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::array::{Gather, GatherNd, MultiBroadcastTo, Slice};
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::logic::Iff;
use tract_onnx::tract_core::ops::math::IsNan;
use tract_onnx::tract_core::ops::nn::Softmax;

/// What [`fold_attention_mask`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaskFold {
    /// Whether the model had an attention mask input (now removed).
    pub folded: bool,
    /// Softmax NaN guards removed.
    pub nan_guards: usize,
}

/// Replaces the `AttentionMask` input of `model` (listed in `inputs`, in the model's input order)
/// by ones of its shape, declutters, and removes it from `inputs`.
pub fn fold_attention_mask(
    model: &mut TypedModel,
    inputs: &mut Vec<InputKind>,
) -> Result<MaskFold> {
    let Some(ix) = inputs.iter().position(|k| *k == InputKind::AttentionMask) else {
        return Ok(MaskFold::default());
    };
    let outlet = model.input_outlets()?[ix];
    let fact = model.outlet_fact(outlet)?.clone();
    let one = Tensor::from_shape(&vec![1; fact.rank()], &[1i64])?
        .cast_to_dt(fact.datum_type)
        .context("the attention mask's type")?
        .into_owned();
    let mut patch = TypedModelPatch::default();
    let filled = uniform(&mut patch, "bertling.attention_mask", one, &fact)?;
    patch.shunt_outside(model, outlet, filled)?;
    patch.apply(model)?;
    model.inputs.retain(|o| *o != outlet);
    inputs.remove(ix);
    *model = std::mem::take(model).into_decluttered()?;
    // Each round replaces the selections reading a uniform tensor; a handful of rounds suffice
    // (the exports here need one), the bound only guards against a rewrite that would not settle.
    for _ in 0..16 {
        if !propagate_uniform(model)? {
            break;
        }
        *model = std::mem::take(model).into_decluttered()?;
    }
    let nan_guards = drop_softmax_nan_guards(model)?;
    if nan_guards > 0 {
        *model = std::mem::take(model).into_decluttered()?;
    }
    Ok(MaskFold {
        folded: true,
        nan_guards,
    })
}

/// Wires `value` (of rank `fact.rank()`, every dimension 1) broadcast to `fact`'s shape.
fn uniform(
    patch: &mut TypedModelPatch,
    name: &str,
    value: Tensor,
    fact: &TypedFact,
) -> Result<OutletId> {
    let c = patch.add_const(format!("{name}.value"), value)?;
    Ok(patch.wire_node(name, MultiBroadcastTo::new(fact.shape.clone()), &[c])?[0])
}

/// Where an operator that only selects or moves values (`Gather`, `Slice`, axis changes) reads a
/// uniform tensor but its output is not known as uniform, replaces it by that value broadcast to
/// its shape. Returns whether anything changed.
fn propagate_uniform(model: &mut TypedModel) -> Result<bool> {
    let mut changed = false;
    for id in model.eval_order()? {
        let node = model.node(id);
        let selects = node.op_is::<Gather>()
            || node.op_is::<GatherNd>()
            || node.op_is::<Slice>()
            || node.op_is::<AxisOp>();
        if !selects || node.inputs.is_empty() || node.outputs.len() != 1 {
            continue;
        }
        let Some(value) = model.outlet_fact(node.inputs[0])?.uniform.clone() else {
            continue;
        };
        let out = model.outlet_fact(id.into())?.clone();
        if out.uniform.is_some() || out.datum_type != value.datum_type() {
            continue;
        }
        let value = value.into_tensor().broadcast_into_rank(out.rank())?;
        let mut patch = TypedModelPatch::default();
        let name = format!("{}.uniform", node.name);
        let filled = uniform(&mut patch, &name, value, &out)?;
        patch.shunt_outside(model, id.into(), filled)?;
        patch.apply(model)?;
        changed = true;
    }
    Ok(changed)
}

/// Rewires `Iff(IsNan(p), c, p)` with `p` a softmax's output to `p`. Returns how many.
fn drop_softmax_nan_guards(model: &mut TypedModel) -> Result<usize> {
    let mut dropped = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        if !node.op_is::<Iff>() || node.inputs.len() != 3 {
            continue;
        }
        let cond = model.node(node.inputs[0].node);
        let is_nan = cond
            .op_as::<ElementWiseOp>()
            .is_some_and(|op| op.0.is::<IsNan>());
        let p = node.inputs[2];
        if !is_nan || cond.inputs.first() != Some(&p) || !model.node(p.node).op_is::<Softmax>() {
            continue;
        }
        let mut patch = TypedModelPatch::default();
        let tapped = patch.tap_model(model, p)?;
        patch.shunt_outside(model, id.into(), tapped)?;
        patch.apply(model)?;
        dropped += 1;
    }
    Ok(dropped)
}
