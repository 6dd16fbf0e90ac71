//! What the loader's graph rewrites ([`crate::norm`], [`crate::int8::fold`]) ask of a decluttered
//! graph: whether a node's output is read, by whom, and which constants are scalars or vectors
//! along the channel axis.

use tract_core::internal::*;

/// Whether node `id`'s output is read: by a node, or as a model output. A node a rewrite has
/// already replaced is no longer read.
pub(crate) fn is_read(model: &TypedModel, id: usize) -> bool {
    model
        .node(id)
        .outputs
        .first()
        .is_some_and(|o| !o.successors.is_empty())
        || model.outputs.contains(&OutletId::new(id, 0))
}

/// The one node input that reads node `id`'s output, when it has one output, read by one input
/// (and not also a model output).
pub(crate) fn only_reader(model: &TypedModel, id: usize) -> Option<InletId> {
    let node = model.node(id);
    let alone = node.outputs.len() == 1
        && node.outputs[0].successors.len() == 1
        && !model.outputs.contains(&OutletId::new(id, 0));
    alone.then(|| node.outputs[0].successors[0])
}

/// The single f32 value of a constant outlet (a scalar or a tensor of one element).
pub(crate) fn scalar_const(model: &TypedModel, outlet: OutletId) -> Option<f32> {
    let k = model.outlet_fact(outlet).ok()?.konst.as_ref()?;
    (k.len() == 1 && k.datum_type() == f32::datum_type())
        .then(|| k.cast_to_scalar::<f32>().ok())
        .flatten()
}

/// A constant outlet's f32 values as a vector `[n]`, when it holds `n` values along its last
/// axis (any leading axes of size 1, at most `rank` axes): what broadcasts along the channels of
/// a rank-`rank` tensor with `n` channels.
pub(crate) fn channel_vector(
    model: &TypedModel,
    outlet: OutletId,
    n: usize,
    rank: usize,
) -> Option<Tensor> {
    let k = model.outlet_fact(outlet).ok()?.konst.as_ref()?;
    let fits = k.datum_type() == f32::datum_type()
        && k.rank() >= 1
        && k.rank() <= rank
        && k.shape().last() == Some(&n)
        && k.len() == n;
    fits.then(|| k.clone().into_tensor().into_shape(&[n]).ok())
        .flatten()
}

/// Asserts `got` equals `want` within `rel` of each value's magnitude (at least 1).
#[cfg(test)]
pub(crate) fn assert_close(want: &[f32], got: &[f32], rel: f32) {
    assert_eq!(want.len(), got.len());
    for (w, g) in want.iter().zip(got) {
        assert!((w - g).abs() <= rel * w.abs().max(1.0), "{w} vs {g}");
    }
}

/// Optimizes `model`, runs it on `inputs` and returns its first output (tests of the rewrites).
#[cfg(test)]
pub(crate) fn run_f32(model: TypedModel, inputs: &[&Tensor]) -> TractResult<Vec<f32>> {
    let inputs = inputs.iter().map(|t| (*t).clone().into_tvalue()).collect();
    let out = model.into_optimized()?.into_runnable()?.run(inputs)?;
    Ok(out[0].try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
}
