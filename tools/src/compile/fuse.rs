//! Operator fusions tract's decluttering misses on these exports.
//!
//! The tanh approximation of GELU (`gelu_new`: ALBERT; any export with `hidden_act` `gelu_new` or
//! `gelu_pytorch_tanh`) reaches tract as seven element-wise operators,
//! `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`. tract 0.23.9 has a fused
//! `GeluApproximate` and a rule to find it, but its decluttering first rewrites `Pow(x, 3)` into
//! `PowConst`, after which the rule never matches: ALBERT-base spent a quarter of a request in
//! those seven operators. This pass matches the pattern from the `PowConst` and fuses it.

use anyhow::Result;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::model::TypedModelHelpers;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::math::{Add, Mul, PowConst, Tanh};
use tract_onnx::tract_core::ops::nn::gelu_approximate::gelu_approximate;

/// Fuses every tanh-approximated GELU of `model`; returns how many.
pub fn fuse_gelu_tanh(model: &mut TypedModel) -> Result<usize> {
    let mut fused = 0;
    loop {
        let mut patch = None;
        for id in model.eval_order()? {
            if let Some(p) = gelu_tanh_patch(model, model.node(id))? {
                patch = Some(p);
                break;
            }
        }
        let Some(patch) = patch else { break };
        patch.apply(model)?;
        fused += 1;
    }
    if fused > 0 {
        *model = std::mem::take(model).into_compact()?;
    }
    Ok(fused)
}

fn is_elementwise<O: tract_onnx::tract_core::ops::element_wise::ElementWiseMiniOp>(
    node: &TypedNode,
) -> bool {
    node.op_as::<ElementWiseOp>()
        .is_some_and(|op| op.0.is::<O>())
}

fn gelu_tanh_patch(model: &TypedModel, pow: &TypedNode) -> Result<Option<TypedModelPatch>> {
    let Some(op) = pow.op_as::<ElementWiseOp>() else {
        return Ok(None);
    };
    let Some(p) = op.0.downcast_ref::<PowConst>() else {
        return Ok(None);
    };
    if p.exponent != 3.0 {
        return Ok(None);
    }
    let dt = model.outlet_fact(pow.inputs[0])?.datum_type;
    if dt != f32::datum_type() {
        return Ok(None);
    }
    let x = pow.inputs[0];
    let Some(cubic) = model.find_succ_bin_with_const::<Mul>(pow, 0.044715) else {
        return Ok(None);
    };
    let Some(inner) = model.find_succ_bin_with_outlet::<Add>(cubic, &x) else {
        return Ok(None);
    };
    let Some(scaled) =
        model.find_succ_bin_with_const::<Mul>(inner, (2.0 / std::f32::consts::PI).sqrt())
    else {
        return Ok(None);
    };
    let Some(tanh) = model.single_succ(scaled.id)? else {
        return Ok(None);
    };
    if !is_elementwise::<Tanh>(tanh) {
        return Ok(None);
    }
    let Some(one_plus) = model.find_succ_bin_with_const::<Add>(tanh, 1.0) else {
        return Ok(None);
    };
    let Some(times) = model.single_succ(one_plus.id)? else {
        return Ok(None);
    };
    if !times
        .op_as::<TypedBinOp>()
        .is_some_and(|op| op.0.is::<Mul>())
    {
        return Ok(None);
    }
    // Either (x · (1 + tanh)) · 0.5, or (0.5 · x) · (1 + tanh).
    let last = if times.inputs.contains(&x) {
        match model.find_succ_bin_with_const::<Mul>(times, 0.5) {
            Some(n) => n.id,
            None => return Ok(None),
        }
    } else {
        let half_x = times.inputs.iter().find_map(|i| {
            let n = model.node(i.node);
            (n.op_as::<TypedBinOp>().is_some_and(|op| op.0.is::<Mul>())
                && n.inputs.contains(&x)
                && model.matches_single_input_const(n, 0.5))
            .then_some(n)
        });
        if half_x.is_none() {
            return Ok(None);
        }
        times.id
    };
    let mut patch = TypedModelPatch::new("fuse tanh GELU");
    let input = patch.tap_model(model, x)?;
    let out = patch.wire_node(
        format!("{}.gelu_tanh", pow.name),
        gelu_approximate(false),
        &[input],
    )?[0];
    patch.shunt_outside(model, OutletId::new(last, 0), out)?;
    Ok(Some(patch))
}
