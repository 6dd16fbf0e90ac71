//! Load-time rewrites around [`Int8Linear`]: a constant bias added right after it, and a product
//! by a constant scalar right after it, are folded into the operator.
//!
//! **Biases.** Every projection of a trained BERT-family model has one, which the exports add as
//! its own `Add` after the product: a pass over the activations, with its own output tensor, six
//! times a layer. The operator adds it in place instead ([`fold_biases`]): the same sum.
//!
//! **Scalars.**
//! BERT-family attention scales its scores by `1/√d`; exports (and tract's decluttering) often
//! apply it to the queries and keys, as a `Mul` of each projection by a constant (`d^-¼` twice in
//! DistilBERT and ALBERT). Since the operator's output is linear in its weight scales,
//! `Int8Linear(x, w, s) · c = Int8Linear(x, w, s · c)`: one pass over the activations less per
//! product, two per layer (~2% of a DistilBERT-base request at 16 tokens). The result differs
//! only by the rounding of `s · c` in f32. Model files never contain the folded scales.

use tract_core::internal::*;
use tract_core::ops::binary::TypedBinOp;
use tract_core::ops::math::{Add, Mul};

use super::Int8Linear;
use crate::rewrite::{channel_vector, is_read, only_reader, scalar_const};

/// `(linear node, mul node, c)` when `node` is a used `Mul` of an [`Int8Linear`] output (used by
/// nothing else, with constant f32 scales) by a constant f32 scalar, with the product's shape.
fn candidate(model: &TypedModel, node: &TypedNode) -> Option<(usize, usize, f32)> {
    if !is_read(model, node.id)
        || !node.op_as::<TypedBinOp>()?.0.is::<Mul>()
        || node.inputs.len() != 2
    {
        return None;
    }
    let (lin_outlet, c) = match (
        scalar_const(model, node.inputs[0]),
        scalar_const(model, node.inputs[1]),
    ) {
        (None, Some(c)) => (node.inputs[0], c),
        (Some(c), None) => (node.inputs[1], c),
        _ => return None,
    };
    let lin = model.node(lin_outlet.node);
    lin.op_as::<Int8Linear>()?;
    let scales = model.outlet_fact(*lin.inputs.get(2)?).ok()?;
    let alone = only_reader(model, lin.id).is_some();
    let same_shape = model.outlet_fact(lin_outlet).ok()?.shape
        == model.outlet_fact(OutletId::new(node.id, 0)).ok()?.shape;
    let ok = alone
        && same_shape
        && c.is_finite()
        && scales.datum_type == f32::datum_type()
        && scales.konst.is_some();
    ok.then_some((lin.id, node.id, c))
}

/// A bias to fold: the [`Int8Linear`] node, the axis changes between it and the `Add` (size-1
/// axes added or removed, outermost last), the `Add` node and the bias `[N]`.
struct BiasFold {
    lin: usize,
    axis_ops: Vec<usize>,
    add: usize,
    bias: Tensor,
}

/// The fold when `node` is a used `Add` of a constant f32 vector along the channels and an
/// [`Int8Linear`] output (without a bias yet), possibly through size-1 axis changes, each link
/// used by nothing else.
fn bias_candidate(model: &TypedModel, node: &TypedNode) -> Option<BiasFold> {
    if !is_read(model, node.id)
        || !node.op_as::<TypedBinOp>()?.0.is::<Add>()
        || node.inputs.len() != 2
    {
        return None;
    }
    let konst = |o: OutletId| model.outlet_fact(o).is_ok_and(|f| f.konst.is_some());
    let (activations, bias) = match (konst(node.inputs[0]), konst(node.inputs[1])) {
        (false, true) => (node.inputs[0], node.inputs[1]),
        (true, false) => (node.inputs[1], node.inputs[0]),
        _ => return None,
    };
    let mut outlet = activations;
    let out = model.outlet_fact(OutletId::new(node.id, 0)).ok()?;
    let n = out.shape.last()?.to_usize().ok()?;
    let mut axis_ops = vec![];
    loop {
        let feeder = model.node(outlet.node);
        let sole = only_reader(model, outlet.node).is_some();
        if !sole || model.outlet_fact(outlet).ok()?.shape.last()? != &n.to_dim() {
            return None;
        }
        if feeder.op_as::<Int8Linear>().is_some() {
            break;
        }
        match feeder.op_as::<AxisOp>()? {
            AxisOp::Add(_) | AxisOp::Rm(_) => axis_ops.push(feeder.id),
            _ => return None,
        }
        outlet = *feeder.inputs.first()?;
    }
    let lin = model.node(outlet.node);
    if lin.op_as::<Int8Linear>()?.bias.is_some() {
        return None;
    }
    // The bias does not widen the activations by broadcasting.
    if model.outlet_fact(activations).ok()?.shape != out.shape {
        return None;
    }
    let bias = channel_vector(model, bias, n, out.rank())?;
    axis_ops.reverse();
    Some(BiasFold {
        lin: lin.id,
        axis_ops,
        add: node.id,
        bias,
    })
}

/// Folds every constant bias `Add` after an [`Int8Linear`] into the operator (see the module
/// doc); returns how many. The replaced nodes are left without successors.
pub fn fold_biases(model: &mut TypedModel) -> TractResult<usize> {
    let mut folded = 0;
    while let Some(fold) = model.nodes.iter().find_map(|n| bias_candidate(model, n)) {
        let node = model.node(fold.lin);
        let mut op = node.op_as::<Int8Linear>().context("checked")?.clone();
        op.bias = Some(Arc::new(fold.bias));
        let name = node.name.clone();
        let mut patch = TypedModelPatch::new(format!("fold a bias into {name}"));
        let inputs = node
            .inputs
            .iter()
            .map(|&i| patch.tap_model(model, i))
            .collect::<TractResult<TVec<_>>>()?;
        let mut y = patch.wire_node(format!("{name}.biased"), op, &inputs)?[0];
        for id in fold.axis_ops {
            let axis = model.node(id);
            y = patch.wire_node(format!("{}.biased", axis.name), axis.op.clone(), &[y])?[0];
        }
        patch.shunt_outside(model, OutletId::new(fold.add, 0), y)?;
        patch.apply(model)?;
        folded += 1;
    }
    Ok(folded)
}

/// `t · c` for an f32 tensor `t`.
fn times(mut t: Tensor, c: f32) -> TractResult<Tensor> {
    t.try_as_plain_ram_mut()?
        .as_slice_mut::<f32>()?
        .iter_mut()
        .for_each(|v| *v *= c);
    Ok(t)
}

/// Folds every constant scalar `Mul` after an [`Int8Linear`] into its scales (see the module doc);
/// returns how many. The replaced nodes are left without successors, for the optimizer to drop.
pub fn fold_output_scales(model: &mut TypedModel) -> TractResult<usize> {
    let mut folded = 0;
    while let Some((lin, mul, c)) = model.nodes.iter().find_map(|n| candidate(model, n)) {
        let node = model.node(lin);
        let op = node.op_as::<Int8Linear>().context("checked")?.clone();
        let scales = model
            .outlet_fact(node.inputs[2])?
            .konst
            .clone()
            .context("checked")?;
        let scaled = times(scales.into_tensor(), c)?;
        let mut op = op;
        if let Some(bias) = &op.bias {
            op.bias = Some(Arc::new(times(bias.as_ref().clone(), c)?));
        }
        let name = node.name.clone();
        let mut patch = TypedModelPatch::new(format!("fold a scalar product into {name}"));
        let mut inputs = tvec![];
        for (slot, &input) in node.inputs.iter().enumerate() {
            inputs.push(if slot == 2 {
                patch.add_const(format!("{name}.scales_folded"), scaled.clone())?
            } else {
                patch.tap_model(model, input)?
            });
        }
        let y = patch.wire_node(format!("{name}.folded"), op, &inputs)?[0];
        patch.shunt_outside(model, OutletId::new(mul, 0), y)?;
        patch.apply(model)?;
        folded += 1;
    }
    Ok(folded)
}

#[cfg(test)]
mod tests {
    use super::super::packed;
    use super::*;
    use crate::rewrite::{assert_close, run_f32};

    /// `x [3, k] -> Int8Linear (panels, n outputs) -> Mul by c`, optionally with the product's
    /// output also used elsewhere.
    fn graph(k: usize, n: usize, c: f32, shared: bool) -> TractResult<TypedModel> {
        graph_with(k, n, c, shared, false)
    }

    fn graph_with(
        k: usize,
        n: usize,
        c: f32,
        shared: bool,
        biased: bool,
    ) -> TractResult<TypedModel> {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([3, k]))?;
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.01)
            .collect();
        let (codes, scales) = packed::quantize_weight(&w, n, k, |s| s);
        let shape = [packed::panels(n), packed::padded_k(k) / 4, 32];
        let codes = m.add_const("w", Tensor::from_shape(&shape, &codes)?)?;
        let shape = [packed::panels(n), packed::scale_groups(k), packed::PANEL];
        let scales = m.add_const("s", Tensor::from_shape(&shape, &scales)?)?;
        let op = Int8Linear {
            layout: super::super::Layout::Panels,
            act_max: 2047,
            channels: n,
            act_group: 0,
            asymmetric: false,
            bias: None,
        };
        let mut y = m.wire_node("lin", op, &[x, codes, scales])?[0];
        if biased {
            let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 2.0).collect();
            let b = m.add_const("b", Tensor::from_shape(&[1, n], &b)?)?;
            let add = TypedBinOp(Box::new(Add), None);
            y = m.wire_node("bias", add, &[b, y])?[0];
        }
        let c = m.add_const("c", tensor2(&[[c]]))?;
        let mut out = m.wire_node("mul", TypedBinOp(Box::new(Mul), None), &[y, c])?;
        if shared {
            out = m.wire_node(
                "also",
                TypedBinOp(Box::new(tract_core::ops::math::Add), None),
                &[out[0], y],
            )?;
        }
        m.select_output_outlets(&out)?;
        Ok(m)
    }

    /// Runs the graph as it is and after `fold`, which must leave no `TypedBinOp` (the `Add`
    /// and `Mul` folded), and checks the outputs agree within `rel`; returns the reference.
    fn check_folded(
        graph: impl Fn() -> TractResult<TypedModel>,
        fold: impl Fn(&mut TypedModel) -> TractResult<()>,
        x: &Tensor,
        rel: f32,
    ) -> TractResult<Vec<f32>> {
        let reference = run_f32(graph()?, &[x])?;
        let mut folded = graph()?;
        fold(&mut folded)?;
        let folded = folded.into_optimized()?;
        assert!(
            folded
                .nodes
                .iter()
                .all(|n| n.op_as::<TypedBinOp>().is_none()),
            "the Add and the Mul are gone"
        );
        assert_close(&reference, &run_f32(folded, &[x])?, rel);
        Ok(reference)
    }

    #[test]
    fn a_scalar_product_after_the_operator_goes_into_its_scales() -> TractResult<()> {
        let (k, n, c) = (96, 20, 0.353_553_4);
        let values: Vec<f32> = (0..3 * k)
            .map(|i| ((i * 11 % 23) as f32 - 11.0) * 0.1)
            .collect();
        let x = Tensor::from_shape(&[3, k], &values)?;
        let fold = |m: &mut TypedModel| {
            assert_eq!(fold_output_scales(m)?, 1);
            Ok(())
        };
        let reference = check_folded(|| graph(k, n, c, false), fold, &x, 1e-6)?;
        assert!(reference.iter().any(|v| v.abs() > 0.1));
        // An output also used elsewhere keeps its product.
        let mut shared = graph(k, n, c, true)?;
        assert_eq!(fold_output_scales(&mut shared)?, 0);
        Ok(())
    }

    #[test]
    fn a_bias_then_a_scalar_go_into_the_operator() -> TractResult<()> {
        let (k, n, c) = (70, 13, -0.75);
        let values: Vec<f32> = (0..3 * k)
            .map(|i| ((i * 5 % 17) as f32 - 8.0) * 0.2)
            .collect();
        let x = Tensor::from_shape(&[3, k], &values)?;
        let fold = |m: &mut TypedModel| {
            assert_eq!(fold_biases(m)?, 1);
            assert_eq!(fold_output_scales(m)?, 1);
            Ok(())
        };
        check_folded(|| graph_with(k, n, c, false, true), fold, &x, 1e-5)?;
        Ok(())
    }
}
