//! A load-time rewrite around [`Int8Linear`]: a product by a constant scalar right after it is
//! folded into its weight scales.
//!
//! BERT-family attention scales its scores by `1/√d`; exports (and tract's decluttering) often
//! apply it to the queries and keys, as a `Mul` of each projection by a constant (`d^-¼` twice in
//! DistilBERT and ALBERT). Since the operator's output is linear in its weight scales,
//! `Int8Linear(x, w, s) · c = Int8Linear(x, w, s · c)`: one pass over the activations less per
//! product, two per layer (~2% of a DistilBERT-base request at 16 tokens). The result differs
//! only by the rounding of `s · c` in f32. Model files never contain the folded scales.

use tract_core::internal::*;
use tract_core::ops::binary::TypedBinOp;
use tract_core::ops::math::Mul;

use super::Int8Linear;

/// `(linear node, mul node, c)` when `node` is a used `Mul` of an [`Int8Linear`] output (used by
/// nothing else, with constant f32 scales) by a constant f32 scalar, with the product's shape.
fn candidate(model: &TypedModel, node: &TypedNode) -> Option<(usize, usize, f32)> {
    let used = node
        .outputs
        .first()
        .is_some_and(|o| !o.successors.is_empty())
        || model.outputs.contains(&OutletId::new(node.id, 0));
    if !used || !node.op_as::<TypedBinOp>()?.0.is::<Mul>() || node.inputs.len() != 2 {
        return None;
    }
    let scalar = |o: OutletId| -> Option<f32> {
        let k = model.outlet_fact(o).ok()?.konst.clone()?;
        (k.len() == 1 && k.datum_type() == f32::datum_type())
            .then(|| k.cast_to_scalar::<f32>().ok())
            .flatten()
    };
    let (lin_outlet, c) = match (scalar(node.inputs[0]), scalar(node.inputs[1])) {
        (None, Some(c)) => (node.inputs[0], c),
        (Some(c), None) => (node.inputs[1], c),
        _ => return None,
    };
    let lin = model.node(lin_outlet.node);
    lin.op_as::<Int8Linear>()?;
    let scales = model.outlet_fact(*lin.inputs.get(2)?).ok()?;
    let alone = lin.outputs.len() == 1 && lin.outputs[0].successors.len() == 1;
    let same_shape = model.outlet_fact(lin_outlet).ok()?.shape
        == model.outlet_fact(OutletId::new(node.id, 0)).ok()?.shape;
    let ok = alone
        && same_shape
        && c.is_finite()
        && scales.datum_type == f32::datum_type()
        && scales.konst.is_some();
    ok.then_some((lin.id, node.id, c))
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
        let mut scaled = scales.into_tensor();
        scaled
            .try_as_plain_ram_mut()?
            .as_slice_mut::<f32>()?
            .iter_mut()
            .for_each(|s| *s *= c);
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

    /// `x [3, k] -> Int8Linear (panels, n outputs) -> Mul by c`, optionally with the product's
    /// output also used elsewhere.
    fn graph(k: usize, n: usize, c: f32, shared: bool) -> TractResult<TypedModel> {
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
        };
        let y = m.wire_node("lin", op, &[x, codes, scales])?[0];
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

    fn run(m: TypedModel, x: &Tensor) -> TractResult<Vec<f32>> {
        let out = m
            .into_optimized()?
            .into_runnable()?
            .run(tvec!(x.clone().into_tvalue()))?;
        Ok(out[0].try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
    }

    #[test]
    fn a_scalar_product_after_the_operator_goes_into_its_scales() -> TractResult<()> {
        let (k, n, c) = (96, 20, 0.353_553_4);
        let values: Vec<f32> = (0..3 * k)
            .map(|i| ((i * 11 % 23) as f32 - 11.0) * 0.1)
            .collect();
        let x = Tensor::from_shape(&[3, k], &values)?;
        let reference = run(graph(k, n, c, false)?, &x)?;
        let mut folded = graph(k, n, c, false)?;
        assert_eq!(fold_output_scales(&mut folded)?, 1);
        let folded = folded.into_optimized()?;
        assert!(
            folded
                .nodes
                .iter()
                .all(|n| n.op_as::<TypedBinOp>().is_none()),
            "the Mul is gone"
        );
        let got = run(folded, &x)?;
        assert!(reference.iter().any(|v| v.abs() > 0.1));
        for (a, b) in reference.iter().zip(&got) {
            assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "{a} vs {b}");
        }
        // An output also used elsewhere keeps its product.
        let mut shared = graph(k, n, c, true)?;
        assert_eq!(fold_output_scales(&mut shared)?, 0);
        Ok(())
    }
}
