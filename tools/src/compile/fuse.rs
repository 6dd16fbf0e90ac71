//! Operator fusions tract's decluttering misses on these exports.
//!
//! The tanh approximation of GELU (`gelu_new`: ALBERT; any export with `hidden_act` `gelu_new` or
//! `gelu_pytorch_tanh`; onnxruntime's `FastGelu`) reaches tract as seven element-wise operators,
//! `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`. tract 0.23.9 has a fused
//! `GeluApproximate` and a rule to find it, but its decluttering first rewrites `Pow(x, 3)` into
//! `PowConst`, after which the rule never matches: ALBERT-base spent a quarter of a request in
//! those seven operators. This pass matches the pattern from its cube and fuses it. The cube comes
//! in three forms: `Pow(x, 3)` (Hugging Face's `gelu_new`), `x · (x · x)` (PyTorch's ONNX export of
//! `gelu(approximate="tanh")`) and `(x · x) · x` (tract's expansion of onnxruntime's `FastGelu`, what
//! its transformer optimizer writes, e.g. `optimum-cli export onnx --optimize O2`); tract turns
//! `x · x` into `Square(x)`.
//!
//! Attention's scale `1/√d` sits on the queries (or on queries and keys) in PyTorch's SDPA
//! exports, but on the scores `Q·Kᵀ` in eager-attention ones (transformers before SDPA, or
//! `attn_implementation="eager"`): `softmax((Q·Kᵀ) · s)`. There it is a multiply over every
//! score (heads x tokens x tokens), and it stands between the scores and the softmax, where the
//! runtime's fused attention does not look. [`scale_queries`] moves it onto `Q`, `(s·Q)·Kᵀ`
//! (the same product up to f32 rounding), where the runtime folds it into the query projection.

use anyhow::Result;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::model::TypedModelHelpers;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::math::{mul, Add, Mul, PowConst, Square, Tanh};
use tract_onnx::tract_core::ops::nn::gelu_approximate::gelu_approximate;
use tract_onnx::tract_core::ops::nn::Softmax;

/// Fuses every tanh-approximated GELU of `model`; returns how many.
pub fn fuse_gelu_tanh(model: &mut TypedModel) -> Result<usize> {
    rewrite_each(model, gelu_tanh_patch)
}

/// Applies the patch `at` gives for a node, in evaluation order, until it gives none; returns how
/// many it applied (then drops the nodes they left unread).
fn rewrite_each(
    model: &mut TypedModel,
    at: impl Fn(&TypedModel, &TypedNode) -> Result<Option<TypedModelPatch>>,
) -> Result<usize> {
    let mut applied = 0;
    loop {
        let mut patch = None;
        for id in model.eval_order()? {
            if let Some(p) = at(model, model.node(id))? {
                patch = Some(p);
                break;
            }
        }
        let Some(patch) = patch else { break };
        patch.apply(model)?;
        applied += 1;
    }
    if applied > 0 {
        *model = std::mem::take(model).into_compact()?;
    }
    Ok(applied)
}

/// Moves every scalar scale between an f32 product of two tensors and the softmax that alone
/// reads it onto the product's first input (module doc); returns how many.
pub fn scale_queries(model: &mut TypedModel) -> Result<usize> {
    rewrite_each(model, scale_queries_patch)
}

/// The single f32 value of a constant outlet.
fn scalar_const(model: &TypedModel, outlet: OutletId) -> Option<f32> {
    let k = model.outlet_fact(outlet).ok()?.konst.as_ref()?;
    (k.len() == 1 && k.datum_type() == f32::datum_type())
        .then(|| k.cast_to_scalar::<f32>().ok())
        .flatten()
}

fn scale_queries_patch(model: &TypedModel, scale: &TypedNode) -> Result<Option<TypedModelPatch>> {
    if !is_mul(scale) {
        return Ok(None);
    }
    let Some((scores, einsum, s)) = [(0, 1), (1, 0)].into_iter().find_map(|(a, b)| {
        let s = scalar_const(model, scale.inputs[b])?;
        let scores = model.node(scale.inputs[a].node);
        Some((scores, scores.op_as::<EinSum>()?, s))
    }) else {
        return Ok(None);
    };
    let f32_product = einsum.q_params.is_none()
        && einsum.operating_dt == f32::datum_type()
        && scores.inputs.len() == 2
        && model.outlet_fact(scores.inputs[0])?.datum_type == f32::datum_type();
    let only_read_by_scale = scores.outputs.len() == 1
        && scores.outputs[0].successors.len() == 1
        && scores.outputs[0].successors[0].node == scale.id;
    let Some(softmax) = model.single_succ(scale.id)? else {
        return Ok(None);
    };
    if !f32_product || !only_read_by_scale || softmax.op_as::<Softmax>().is_none() {
        return Ok(None);
    }
    let q = scores.inputs[0];
    let rank = model.outlet_fact(q)?.rank();
    let mut patch = TypedModelPatch::new("scale the queries, not the scores");
    let taps = [
        patch.tap_model(model, q)?,
        patch.tap_model(model, scores.inputs[1])?,
    ];
    let s = patch.add_const(
        format!("{}.scale", scores.name),
        tensor0(s).broadcast_into_rank(rank)?,
    )?;
    let q = patch.wire_node(format!("{}.scaled_q", scores.name), mul(), &[taps[0], s])?[0];
    let y = patch.wire_node(&scores.name, einsum.clone(), &[q, taps[1]])?[0];
    patch.shunt_outside(model, OutletId::new(scale.id, 0), y)?;
    Ok(Some(patch))
}

fn is_elementwise<O: tract_onnx::tract_core::ops::element_wise::ElementWiseMiniOp>(
    node: &TypedNode,
) -> bool {
    node.op_as::<ElementWiseOp>()
        .is_some_and(|op| op.0.is::<O>())
}

fn is_mul(node: &TypedNode) -> bool {
    node.op_as::<TypedBinOp>()
        .is_some_and(|op| op.0.is::<Mul>())
}

/// The `x` of which `outlet` is `x²`: `Square(x)`, `x · x` or `Pow(x, 2)`.
fn square_of(model: &TypedModel, outlet: OutletId) -> Option<OutletId> {
    let node = model.node(outlet.node);
    if is_elementwise::<Square>(node) {
        return Some(node.inputs[0]);
    }
    if is_mul(node) && node.inputs[0] == node.inputs[1] {
        return Some(node.inputs[0]);
    }
    let op = node.op_as::<ElementWiseOp>()?;
    (op.0.downcast_ref::<PowConst>()?.exponent == 2.0).then_some(node.inputs[0])
}

/// The `x` of which `node` computes `x³`: `Pow(x, 3)`, `x · x²` or `x² · x`.
fn cube_of(model: &TypedModel, node: &TypedNode) -> Option<OutletId> {
    if let Some(op) = node.op_as::<ElementWiseOp>() {
        let p = op.0.downcast_ref::<PowConst>()?;
        return (p.exponent == 3.0).then_some(node.inputs[0]);
    }
    if !is_mul(node) {
        return None;
    }
    let (a, b) = (node.inputs[0], node.inputs[1]);
    if square_of(model, b) == Some(a) {
        Some(a)
    } else if square_of(model, a) == Some(b) {
        Some(b)
    } else {
        None
    }
}

fn gelu_tanh_patch(model: &TypedModel, cube: &TypedNode) -> Result<Option<TypedModelPatch>> {
    let Some(x) = cube_of(model, cube) else {
        return Ok(None);
    };
    let dt = model.outlet_fact(x)?.datum_type;
    if dt != f32::datum_type() {
        return Ok(None);
    }
    let Some(cubic) = model.find_succ_bin_with_const::<Mul>(cube, 0.044715) else {
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
    if !is_mul(times) {
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
            (is_mul(n) && n.inputs.contains(&x) && model.matches_single_input_const(n, 0.5))
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
        format!("{}.gelu_tanh", cube.name),
        gelu_approximate(false),
        &[input],
    )?[0];
    patch.shunt_outside(model, OutletId::new(last, 0), out)?;
    Ok(Some(patch))
}
