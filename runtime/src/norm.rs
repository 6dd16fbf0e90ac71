//! LayerNorm as one operator.
//!
//! tract's decluttering turns an ONNX `LayerNormalization` (or its decomposed export) into four
//! operators over the hidden axis: `Reduce<Sum>`, a `Mul` by `1/H`, a `Sub` of that mean, and
//! `RmsNorm` (`x / √(mean(x²) + ε)`); the scale and shift follow as `Mul` and `Add` (or vanish
//! when they are ones and zeros). Each of the four runs as its own pass over the activations, with
//! its own output tensor, and tract 0.23.9's `RmsNorm` kernel is scalar below AVX-512. A BERT-base
//! request runs 25 of them (DistilBERT 13): at 16 tokens, per-operator overhead makes them ~4% of
//! a request. The loader replaces each such chain by [`LayerNorm`], one vectorized pass
//! (two reads of each row), with the same arithmetic up to the order of f32 additions; when the
//! normalized value is a residual connection's sum that nothing else reads (post-LN BERT, ALBERT,
//! DistilBERT, RoBERTa), the sum goes into the same pass, and so do the scale `γ` and shift `β`
//! that follow (a `Mul` and an `Add` of constant vectors, which tract's decluttering keeps
//! separate unless they are ones and zeros). Model files never contain it ([`fuse_layer_norms`]
//! runs at load).

use tract_core::internal::*;
use tract_core::ops::binary::{BinMiniOp, TypedBinOp};
use tract_core::ops::math::{Add, Mul, Sub};
use tract_core::ops::nn::{Reduce, Reducer, RmsNorm};

use crate::rewrite::{channel_vector, is_read, only_reader, scalar_const};

/// `y = (x − mean) / √(mean((x − mean)²) + ε)` along the last axis, with
/// `mean = Σx · inv_len` (`inv_len` is the graph's own `1/H` constant). With two inputs of the
/// same shape, `x` is their sum (a residual connection's sum that nothing else reads).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LayerNorm {
    /// The bits of the f32 `1/H` the graph multiplies the sum by.
    inv_len: u32,
    /// The bits of the f32 `ε`.
    eps: u32,
    /// The scale `γ` `[H]` and shift `β` `[H]` that follow (`y · γ + β`), when the graph has them.
    affine: Option<(Arc<Tensor>, Arc<Tensor>)>,
}

impl LayerNorm {
    /// A LayerNorm with the given `1/H` and `ε`.
    pub fn new(inv_len: f32, eps: f32) -> LayerNorm {
        LayerNorm {
            inv_len: inv_len.to_bits(),
            eps: eps.to_bits(),
            affine: None,
        }
    }

    /// The same, followed by `· γ + β` (two f32 tensors `[H]`).
    pub fn with_affine(self, gamma: Tensor, beta: Tensor) -> LayerNorm {
        LayerNorm {
            affine: Some((Arc::new(gamma), Arc::new(beta))),
            ..self
        }
    }
}

impl Op for LayerNorm {
    fn name(&self) -> StaticName {
        "BertlingLayerNorm".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "1/H: {}, eps: {}",
            f32::from_bits(self.inv_len),
            f32::from_bits(self.eps)
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for LayerNorm {
    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.compute(inputs)
    }

    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        self.compute(inputs).map(Some)
    }
}

impl LayerNorm {
    fn compute(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(
            matches!(inputs.len(), 1 | 2),
            "LayerNorm takes one input, or two to sum"
        );
        let mut inputs = inputs.into_iter();
        let mut t = inputs.next().unwrap().into_tensor();
        ensure!(t.rank() > 0, "LayerNorm needs an axis");
        let len = t.shape()[t.rank() - 1];
        let shape: TVec<usize> = t.shape().into();
        let mut view = t.try_as_plain_ram_mut()?;
        let data = view.as_slice_mut::<f32>()?;
        let other = inputs.next();
        let other = match &other {
            Some(other) => {
                ensure!(
                    other.shape() == &*shape,
                    "LayerNorm: the summed inputs differ in shape"
                );
                Some(other.try_as_plain_ram()?)
            }
            None => None,
        };
        let other = other.as_ref().map(|o| o.as_slice::<f32>()).transpose()?;
        if len > 0 {
            let (inv_len, eps) = (f32::from_bits(self.inv_len), f32::from_bits(self.eps));
            let affine = match &self.affine {
                Some((g, b)) => {
                    let (g, b) = (g.try_as_plain_ram()?, b.try_as_plain_ram()?);
                    let (g, b) = (g.as_slice::<f32>()?, b.as_slice::<f32>()?);
                    ensure!(
                        g.len() == len && b.len() == len,
                        "LayerNorm: γ and β must be [{len}]"
                    );
                    Some((g, b))
                }
                None => None,
            };
            // Rows split between the request's threads when there are many (each row's
            // arithmetic is the same either way).
            crate::threads::par_rows(data, len, |first, chunk| {
                if let Some(other) = other {
                    rows::add(chunk, &other[first * len..][..chunk.len()]);
                }
                for row in chunk.chunks_exact_mut(len) {
                    rows::normalize(row, inv_len, eps, affine);
                }
                Ok(())
            })?;
        }
        Ok(tvec!(t.into_tvalue()))
    }
}

impl TypedOp for LayerNorm {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(matches!(inputs.len(), 1 | 2) && inputs[0].rank() > 0);
        ensure!(inputs.iter().all(|i| i.datum_type == f32::datum_type()));
        ensure!(inputs.iter().all(|i| i.shape == inputs[0].shape));
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// One row's normalization, compiled for AVX2 where the CPU has it (the same operations in the
/// same order either way, so the same results).
mod rows {
    const LANES: usize = 8;

    /// `γ` and `β`, when the norm has them.
    pub type Affine<'a> = Option<(&'a [f32], &'a [f32])>;

    /// `Σ v` with 8 running sums (in lane order, then the tail).
    #[inline(always)]
    fn sum(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
        let mut acc = [0f32; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += f(v);
            }
        }
        let mut s = acc.iter().sum::<f32>();
        for &v in chunks.remainder() {
            s += f(v);
        }
        s
    }

    #[inline(always)]
    fn normalize_any(row: &mut [f32], inv_len: f32, eps: f32, affine: Affine) {
        let mean = sum(row, |v| v) * inv_len;
        let var = sum(row, |v| (v - mean) * (v - mean)) / row.len() as f32;
        let inv_std = (var + eps).sqrt().recip();
        match affine {
            None => row.iter_mut().for_each(|v| *v = (*v - mean) * inv_std),
            Some((g, b)) => {
                for ((v, &g), &b) in row.iter_mut().zip(g).zip(b) {
                    *v = (*v - mean) * inv_std * g + b;
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn normalize_avx2(row: &mut [f32], inv_len: f32, eps: f32, affine: Affine) {
        normalize_any(row, inv_len, eps, affine)
    }

    #[inline(always)]
    fn add_any(x: &mut [f32], y: &[f32]) {
        for (x, &y) in x.iter_mut().zip(y) {
            *x += y;
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn add_avx2(x: &mut [f32], y: &[f32]) {
        add_any(x, y)
    }

    /// `x += y`.
    pub fn add(x: &mut [f32], y: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present.
            return unsafe { add_avx2(x, y) };
        }
        add_any(x, y)
    }

    /// Normalizes `row` in place (see [`super::LayerNorm`]).
    pub fn normalize(row: &mut [f32], inv_len: f32, eps: f32, affine: Affine) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present.
            return unsafe { normalize_avx2(row, inv_len, eps, affine) };
        }
        normalize_any(row, inv_len, eps, affine)
    }
}

/// The node feeding input `slot` of `node`, when it feeds nothing else.
fn sole_feeder(model: &TypedModel, node: &TypedNode, slot: usize) -> Option<usize> {
    let feeder = node.inputs.get(slot)?.node;
    only_reader(model, feeder).map(|_| feeder)
}

/// `(inputs, 1/H, ε)` when `node` is the `RmsNorm` closing a LayerNorm chain over the last axis
/// of an f32 `x`: `RmsNorm(Sub(x, Mul(Reduce<Sum>(x), 1/H)))`, each link used only by the next.
/// The inputs are `[x]`, or `[a, b]` when `x = a + b` (same shapes) is read by the chain alone.
fn layer_norm_chain(model: &TypedModel, node: &TypedNode) -> Option<(TVec<OutletId>, f32, f32)> {
    let rms = node.op_as::<RmsNorm>()?;
    let sub = model.node(sole_feeder(model, node, 0)?);
    if !sub.op_as::<TypedBinOp>()?.0.is::<Sub>() {
        return None;
    }
    let x = sub.inputs[0];
    let mul = model.node(sole_feeder(model, sub, 1)?);
    if !mul.op_as::<TypedBinOp>()?.0.is::<Mul>() {
        return None;
    }
    let (reduce_slot, inv_len) = match (
        scalar_const(model, mul.inputs[0]),
        scalar_const(model, mul.inputs[1]),
    ) {
        (None, Some(c)) => (0, c),
        (Some(c), None) => (1, c),
        _ => return None,
    };
    let reduce = model.node(sole_feeder(model, mul, reduce_slot)?);
    let op = reduce.op_as::<Reduce>()?;
    let x_fact = model.outlet_fact(x).ok()?;
    let last = x_fact.rank().checked_sub(1)?;
    let eps = rms.eps.cast_to_scalar::<f32>().ok()?;
    let chain = reduce.inputs[0] == x
        && op.reducer == Reducer::Sum
        && op.axes.as_slice() == [last]
        && rms.axis == last
        && x_fact.datum_type == f32::datum_type()
        && model.outlet_fact(OutletId::new(node.id, 0)).ok()?.shape == x_fact.shape;
    if !chain {
        return None;
    }
    // The residual sum, when only the chain's Reduce and Sub read it.
    let add = model.node(x.node);
    let summed = add.op_as::<TypedBinOp>().is_some_and(|op| op.0.is::<Add>())
        && add.outputs.len() == 1
        && add.outputs[0].successors.len() == 2
        && !model.outputs.contains(&x)
        && add.inputs.iter().all(|i| {
            model
                .outlet_fact(*i)
                .is_ok_and(|f| f.shape == x_fact.shape && f.datum_type == f32::datum_type())
        });
    Some(if summed {
        (add.inputs.iter().copied().collect(), inv_len, eps)
    } else {
        (tvec![x], inv_len, eps)
    })
}

/// The constant f32 vector `[h]` (any leading size-1 axes) `node` applies with `op` to the
/// output of `from` (its only reader, with the same shape out), and `node`.
fn affine_step<O: BinMiniOp>(model: &TypedModel, from: usize, h: usize) -> Option<(usize, Tensor)> {
    let reader = only_reader(model, from)?;
    let node = model.node(reader.node);
    if !node.op_as::<TypedBinOp>()?.0.is::<O>() || node.inputs.len() != 2 {
        return None;
    }
    let shape = &model.outlet_fact(OutletId::new(from, 0)).ok()?.shape;
    if &model.outlet_fact(OutletId::new(node.id, 0)).ok()?.shape != shape {
        return None;
    }
    let vector = channel_vector(model, node.inputs[1 - reader.slot], h, shape.rank())?;
    Some((node.id, vector))
}

/// The LayerNorm ending at the `RmsNorm` `node`: its inputs, the op, and the node whose output it
/// replaces (the `RmsNorm`, or the `Add` of `β` after a `Mul` by `γ`).
fn fusion(model: &TypedModel, node: &TypedNode) -> Option<(TVec<OutletId>, LayerNorm, usize)> {
    let (inputs, inv_len, eps) = layer_norm_chain(model, node)?;
    let op = LayerNorm::new(inv_len, eps);
    let h = model
        .outlet_fact(OutletId::new(node.id, 0))
        .ok()?
        .shape
        .last()?
        .to_usize()
        .ok()?;
    let affine = affine_step::<Mul>(model, node.id, h).and_then(|(mul, gamma)| {
        affine_step::<Add>(model, mul, h).map(|(add, beta)| (add, gamma, beta))
    });
    Some(match affine {
        Some((end, gamma, beta)) => (inputs, op.with_affine(gamma, beta), end),
        None => (inputs, op, node.id),
    })
}

/// Replaces every LayerNorm chain of `model` (see the module doc), and the scale and shift after
/// it, by one [`LayerNorm`]; returns how many. The chains' nodes are left without successors,
/// for the optimizer to drop.
pub fn fuse_layer_norms(model: &mut TypedModel) -> TractResult<usize> {
    let mut fused = 0;
    // One at a time: a chain's input may be the output of one just fused.
    while let Some((inputs, op, end)) = model
        .nodes
        .iter()
        .filter_map(|n| fusion(model, n))
        .find(|(_, _, end)| is_read(model, *end))
    {
        let name = format!("{}.fused", model.node(end).name);
        let mut patch = TypedModelPatch::new(format!("fuse layer norm {name}"));
        let taps = inputs
            .iter()
            .map(|&i| patch.tap_model(model, i))
            .collect::<TractResult<TVec<_>>>()?;
        let y = patch.wire_node(name, op, &taps)?[0];
        patch.shunt_outside(model, OutletId::new(end, 0), y)?;
        patch.apply(model)?;
        fused += 1;
    }
    Ok(fused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::{assert_close, run_f32};
    use tract_core::ops::binary::TypedBinOp;

    fn add() -> TypedBinOp {
        TypedBinOp(Box::new(Add), None)
    }

    /// Wires the chain tract's decluttering makes of a LayerNorm of `x` (`[rows, h]`, normalized
    /// over axis 1, its mean taken over `mean_axis`); returns the `RmsNorm`'s output.
    fn wire_norm(
        m: &mut TypedModel,
        x: OutletId,
        h: usize,
        mean_axis: usize,
        eps: f32,
    ) -> TractResult<OutletId> {
        let s = m.wire_node("sum", Reduce::new(tvec![mean_axis], Reducer::Sum), &[x])?[0];
        let inv = m.add_const("inv", tensor2(&[[1.0 / h as f32]]))?;
        let mean = m.wire_node("mean", TypedBinOp(Box::new(Mul), None), &[s, inv])?[0];
        let d = m.wire_node("d", TypedBinOp(Box::new(Sub), None), &[x, mean])?[0];
        let rms = RmsNorm {
            axis: 1,
            eps: rctensor0(eps),
        };
        Ok(m.wire_node("rms", rms, &[d])?[0])
    }

    /// A LayerNorm over the last axis of `[3, h]`, with the normalized output also summed with
    /// `x` (so `x` has other successors).
    fn chain(h: usize, eps: f32) -> TractResult<TypedModel> {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([3, h]))?;
        let y = wire_norm(&mut m, x, h, 1, eps)?;
        let out = m.wire_node("res", add(), &[y, x])?;
        m.select_output_outlets(&out)?;
        Ok(m)
    }

    #[test]
    fn a_thread_pool_gives_the_same_values() -> TractResult<()> {
        use tract_linalg::multithread::{multithread_tract_scope, Executor};
        // 128 rows of 768, summed with a residual, then γ and β: split between threads.
        let h = 768;
        let value = |i: usize| ((i * 7919 % 211) as f32 - 100.0) * 0.03;
        let t = |seed: usize| {
            Tensor::from_shape(
                &[128, h],
                &(0..128 * h).map(|i| value(i + seed)).collect::<Vec<_>>(),
            )
        };
        let op = LayerNorm::new(1.0 / h as f32, 1e-12).with_affine(
            Tensor::from_shape(
                &[h],
                &(0..h).map(|i| 1.0 + value(i) * 0.1).collect::<Vec<_>>(),
            )?,
            Tensor::from_shape(&[h], &(0..h).map(value).collect::<Vec<_>>())?,
        );
        let inputs =
            || -> TractResult<TVec<TValue>> { Ok(tvec!(t(0)?.into_tvalue(), t(5)?.into_tvalue())) };
        let one = op.compute(inputs()?)?;
        let two = multithread_tract_scope(Executor::multithread(2), || op.compute(inputs()?))?;
        assert_eq!(
            one[0].try_as_plain_ram()?.as_slice::<f32>()?,
            two[0].try_as_plain_ram()?.as_slice::<f32>()?
        );
        // And the rows are those of the single-threaded loop on the summed rows.
        let (a, b) = (t(0)?, t(5)?);
        let (a, b) = (a.try_as_plain_ram()?, b.try_as_plain_ram()?);
        let mut want: Vec<f32> = a
            .as_slice::<f32>()?
            .iter()
            .zip(b.as_slice::<f32>()?)
            .map(|(x, y)| x + y)
            .collect();
        let (g, bt) = op.affine.as_ref().unwrap();
        let (g, bt) = (g.try_as_plain_ram()?, bt.try_as_plain_ram()?);
        for row in want.chunks_exact_mut(h) {
            rows::normalize(
                row,
                1.0 / h as f32,
                1e-12,
                Some((g.as_slice::<f32>()?, bt.as_slice::<f32>()?)),
            );
        }
        assert_eq!(one[0].try_as_plain_ram()?.as_slice::<f32>()?, &want[..]);
        Ok(())
    }

    fn run(m: TypedModel, x: &Tensor) -> TractResult<Vec<f32>> {
        run_f32(m, &[x])
    }

    #[test]
    fn a_layer_norm_chain_becomes_one_operator_with_the_same_outputs() -> TractResult<()> {
        for (h, eps) in [(768, 1e-12f32), (37, 1e-5), (8, 0.0)] {
            let values: Vec<f32> = (0..3 * h)
                .map(|i| ((i * 7919 % 211) as f32 - 100.0) * 0.03 + 2.0)
                .collect();
            let x = Tensor::from_shape(&[3, h], &values)?;
            let reference = run(chain(h, eps)?, &x)?;
            let mut fused = chain(h, eps)?;
            assert_eq!(fuse_layer_norms(&mut fused)?, 1);
            let fused = fused.into_optimized()?;
            let ops: Vec<String> = fused
                .nodes
                .iter()
                .map(|n| n.op.name().to_string())
                .collect();
            assert!(ops.iter().any(|o| o == "BertlingLayerNorm"), "{ops:?}");
            assert!(
                !ops.iter()
                    .any(|o| o == "RmsNorm" || o.starts_with("Reduce")),
                "{ops:?}"
            );
            assert_close(&reference, &run(fused, &x)?, 1e-5);
        }
        Ok(())
    }

    /// `LayerNorm(a + b)`, the sum also read by `also` when `shared`.
    fn summed_chain(h: usize, shared: bool) -> TractResult<TypedModel> {
        let mut m = TypedModel::default();
        let a = m.add_source("a", f32::fact([2, h]))?;
        let b = m.add_source("b", f32::fact([2, h]))?;
        let x = m.wire_node("x", add(), &[a, b])?[0];
        let mut y = tvec![wire_norm(&mut m, x, h, 1, 1e-12)?];
        if shared {
            y = m.wire_node("also", add(), &[y[0], x])?;
        }
        m.select_output_outlets(&y)?;
        Ok(m)
    }

    #[test]
    fn a_residual_sum_read_by_the_norm_alone_goes_into_it() -> TractResult<()> {
        let h = 40;
        let va: Vec<f32> = (0..2 * h).map(|i| (i % 7) as f32 - 3.0).collect();
        let vb: Vec<f32> = (0..2 * h).map(|i| ((i * 5) % 11) as f32 * 0.3).collect();
        let (a, b) = (
            Tensor::from_shape(&[2, h], &va)?,
            Tensor::from_shape(&[2, h], &vb)?,
        );
        for shared in [false, true] {
            let reference = run_f32(summed_chain(h, shared)?, &[&a, &b])?;
            let mut fused = summed_chain(h, shared)?;
            assert_eq!(fuse_layer_norms(&mut fused)?, 1);
            let fused = fused.into_optimized()?;
            let norm = fused
                .nodes
                .iter()
                .find(|n| n.op_as::<LayerNorm>().is_some())
                .context("fused")?;
            // The sum goes in only when nothing else reads it.
            assert_eq!(norm.inputs.len(), if shared { 1 } else { 2 });
            assert_close(&reference, &run_f32(fused, &[&a, &b])?, 1e-5);
        }
        Ok(())
    }

    #[test]
    fn the_scale_and_shift_after_a_norm_go_into_it() -> TractResult<()> {
        let h = 24;
        let mut m = chain(h, 1e-5)?;
        // chain() ends with `res = rms + x`; put `· γ + β` between the norm and that sum.
        let rms = m.node_by_name("rms")?.id;
        let res = m.node_by_name("res")?.id;
        let g: Vec<f32> = (0..h).map(|i| 0.5 + i as f32 * 0.1).collect();
        let b: Vec<f32> = (0..h).map(|i| i as f32 * -0.2).collect();
        let g = m.add_const("gamma", Tensor::from_shape(&[1, h], &g)?)?;
        let b = m.add_const("beta", Tensor::from_shape(&[1, h], &b)?)?;
        let scaled = m.wire_node(
            "scaled",
            TypedBinOp(Box::new(Mul), None),
            &[OutletId::new(rms, 0), g],
        )?[0];
        let shifted = m.wire_node("shifted", add(), &[b, scaled])?[0];
        m.add_edge(shifted, InletId::new(res, 0))?;
        let values: Vec<f32> = (0..3 * h)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) * 0.1)
            .collect();
        let x = Tensor::from_shape(&[3, h], &values)?;
        let reference = run(m.clone(), &x)?;
        assert_eq!(fuse_layer_norms(&mut m)?, 1);
        let fused = m.into_optimized()?;
        let norm = fused
            .nodes
            .iter()
            .find_map(|n| n.op_as::<LayerNorm>())
            .context("fused")?;
        assert!(norm.affine.is_some());
        let ops: Vec<String> = fused
            .nodes
            .iter()
            .map(|n| n.op.name().to_string())
            .collect();
        assert_eq!(
            ops.iter().filter(|o| o.contains("Mul")).count(),
            0,
            "{ops:?}"
        );
        assert_close(&reference, &run(fused, &x)?, 1e-5);
        Ok(())
    }

    #[test]
    fn other_graphs_are_left_alone() -> TractResult<()> {
        // The mean over another axis than the normalized one.
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([4, 4]))?;
        let y = wire_norm(&mut m, x, 4, 0, 1e-5)?;
        m.select_output_outlets(&[y])?;
        assert_eq!(fuse_layer_norms(&mut m)?, 0);
        // The mean also used elsewhere.
        let mut m = chain(16, 1e-5)?;
        let mean = m.node_by_name("mean")?.id;
        let out = m.outputs[0];
        let extra = m.wire_node("extra", add(), &[out, OutletId::new(mean, 0)])?;
        m.select_output_outlets(&extra)?;
        assert_eq!(fuse_layer_norms(&mut m)?, 0);
        Ok(())
    }
}
