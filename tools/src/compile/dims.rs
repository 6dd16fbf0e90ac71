//! Integer tensors tract types as dimensions.
//!
//! tract reads an ONNX cast to int64 as a cast to `TDim` (its symbolic dimension type), so that
//! shape arithmetic stays symbolic. Most operators compute on `TDim` values, but `CumSum` does not
//! ("TDim is not a number" when a request runs it). RoBERTa's position ids are a running count of
//! the non-padding tokens; PyTorch's dynamo exporter casts the count to int64 *before* the
//! `CumSum` (the TorchScript exporter after it), so a dynamo export of RoBERTa could not run.
//! [`count_in_i64`] gives such sums i64 operands and turns the result back into `TDim`.

use anyhow::Result;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::array::CumSum;
use tract_onnx::tract_core::ops::cast::cast;

/// Runs every `CumSum` of a `TDim` tensor of `model` on i64 instead; returns how many.
pub fn count_in_i64(model: &mut TypedModel) -> Result<usize> {
    let found: Vec<usize> = model
        .nodes()
        .iter()
        .filter(|n| n.op_is::<CumSum>() && n.inputs.len() == 1)
        .filter(|n| {
            model
                .outlet_fact(n.inputs[0])
                .is_ok_and(|f| f.datum_type == TDim::datum_type())
        })
        .map(|n| n.id)
        .collect();
    for &id in &found {
        let node = model.node(id);
        let mut patch = TypedModelPatch::new("CumSum on i64");
        let x = patch.tap_model(model, node.inputs[0])?;
        let x = patch.wire_node(format!("{}.i64", node.name), cast(i64::datum_type()), &[x])?[0];
        let y = patch.wire_node(&node.name, node.op.clone(), &[x])?[0];
        let y = patch.wire_node(
            format!("{}.dims", node.name),
            cast(TDim::datum_type()),
            &[y],
        )?[0];
        patch.shunt_outside(model, OutletId::new(id, 0), y)?;
        patch.apply(model)?;
    }
    Ok(found.len())
}
