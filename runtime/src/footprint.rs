//! What a loaded model holds in memory, and what its requests are planned to use.
//!
//! Read from the plans the loader made ([`Model::footprint`](crate::Model::footprint)):
//! - **weights**: every constant tensor the plans hold (int8 codes, scales, column sums, f32 weights
//!   pre-packed by tract, embedding tables), a tensor two plans or layers share counted once;
//! - **activations**: the largest total of tensors alive at once while a request of the given
//!   length and masks runs: the plan replayed in tract's order, each output allocated when its
//!   node runs and freed after its last reader, reshapes in place (the encoder's and the head's
//!   plans run one after the other; the larger counts). A test holds it to what the allocator
//!   sees a request hold (`tests/tests/footprint.rs`);
//! - **scratch**: what bertling's operators keep between requests for that length (the int8
//!   products' activation codes, one buffer for all products);
//! - **buffers**: the request buffers [`Model`](crate::Model) allocates at load (token ids, mask
//!   positions, hidden rows and logits for [`MAX_MASKS`](crate::MAX_MASKS) masks).
//!
//! Not counted: the tokenizer and vocabulary strings, the code, thread stacks, and what the
//! allocator keeps around these blocks. `bertling bench` measures the process's resident memory.

use tract_core::internal::*;
use tract_core::ops::change_axes::{AxisOp, IntoShape};
use tract_core::ops::konst::Const;
use tract_linalg::mmm::{EagerPackedInput, MMMInputValue};

use crate::int8::Int8Linear;
use crate::shared_constants::packed_weights;

/// Bytes a loaded model holds and plans for one request length; see the [module docs](self).
///
/// ```
/// let f = bertling::footprint::Footprint {
///     tokens: 128,
///     masks: 16,
///     weights: 12_000_000,
///     activations: 3_000_000,
///     scratch: 800_000,
///     buffers: 2_000_000,
/// };
/// assert_eq!(f.total(), 17_800_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// The request length (tokens, special tokens included) the figures are for.
    pub tokens: usize,
    /// The masks of that request (the head's work and logits grow with them).
    pub masks: usize,
    /// Constant tensors of the plans.
    pub weights: u64,
    /// The peak of tensors alive at once during a request.
    pub activations: u64,
    /// bertling's operators' buffers kept between requests.
    pub scratch: u64,
    /// The model's request buffers.
    pub buffers: u64,
}

impl Footprint {
    /// The planned peak: everything above together.
    pub fn total(&self) -> u64 {
        self.weights + self.activations + self.scratch + self.buffers
    }
}

/// What one plan contributes.
#[derive(Debug, Default)]
pub(crate) struct PlanMemory {
    pub activations: u64,
    pub scratch: u64,
}

/// Adds the plan's constant tensors not met before (by address) to `weights`: constant nodes,
/// and the weights tract packed into its f32 matrix products when it optimized them.
pub(crate) fn count_weights(
    model: &TypedModel,
    seen: &mut std::collections::HashSet<usize>,
    weights: &mut u64,
) -> TractResult<()> {
    for node in model.nodes() {
        if let Some(k) = node.op_as::<Const>() {
            if seen.insert(Arc::as_ptr(k.val()) as *const u8 as usize) {
                *weights += node.outputs[0].fact.mem_size().to_i64()? as u64;
            }
        }
        for value in packed_weights(node) {
            // Clones of a packed value share its bytes.
            let address = match value.downcast_ref::<EagerPackedInput>() {
                Some(eager) => Arc::as_ptr(&eager.packed) as *const u8 as usize,
                None => value as *const dyn MMMInputValue as *const u8 as usize,
            };
            if seen.insert(address) {
                for bytes in value.exotic_fact().buffer_sizes() {
                    *weights += bytes.to_i64()? as u64;
                }
            }
        }
    }
    Ok(())
}

/// Whether tract runs `node` in place on its input's buffer when it owns it: axis insertions and
/// removals and reshapes change the shape alone.
fn shape_only(node: &TypedNode) -> bool {
    node.op_as::<AxisOp>()
        .is_some_and(|op| !matches!(op, AxisOp::Move(..)))
        || node.op_is::<IntoShape>()
}

/// The plan's activation peak and int8 scratch with every symbol at its value in `values`.
///
/// The activations replay the plan: each node's outputs are allocated when it runs (a shape-only
/// node takes over its input's buffer when it is that buffer's only reader, as tract does), and
/// freed after their last reader; the peak is the most held at once.
pub(crate) fn plan_memory(
    model: &TypedModel,
    order: &[usize],
    values: &SymbolValues,
) -> TractResult<PlanMemory> {
    let outputs: Vec<usize> = model.outputs.iter().map(|o| o.node).collect();
    let mut last_read = vec![None; model.nodes.len()];
    for (step, &n) in order.iter().enumerate() {
        for input in &model.node(n).inputs {
            last_read[input.node] = Some(step);
        }
    }
    let mut held = vec![0u64; model.nodes.len()];
    let (mut total, mut activations) = (0u64, 0u64);
    for (step, &n) in order.iter().enumerate() {
        let node = model.node(n);
        if node.op_is::<Const>() {
            continue;
        }
        let mut bytes = 0u64;
        for output in &node.outputs {
            bytes += output.fact.mem_size().eval_to_i64(values)?.max(0) as u64;
        }
        if shape_only(node) {
            let input = node.inputs[0].node;
            let sole_reader = model
                .node(input)
                .outputs
                .iter()
                .map(|o| o.successors.len())
                .sum::<usize>()
                == 1;
            if sole_reader && !outputs.contains(&input) {
                total -= std::mem::take(&mut held[input]);
            }
        }
        held[n] = bytes;
        total += bytes;
        activations = activations.max(total);
        for input in &node.inputs {
            if last_read[input.node] == Some(step) && !outputs.contains(&input.node) {
                total -= std::mem::take(&mut held[input.node]);
            }
        }
        if last_read[n].is_none() && !outputs.contains(&n) {
            total -= std::mem::take(&mut held[n]);
        }
    }
    // The int8 products share one thread-local buffer of activation codes (16-bit at most)
    // sized by the largest input, with a scale and zero point per row and 64 inputs.
    let mut scratch = 0u64;
    for node in model.nodes() {
        if node.op_is::<Int8Linear>() {
            let input = model.outlet_fact(node.inputs[0])?;
            let values_in = input.shape.volume().eval_to_i64(values)? as u64;
            let k = input
                .shape
                .last()
                .map(|d| d.eval_to_i64(values))
                .transpose()?
                .unwrap_or(1)
                .max(1) as u64;
            let groups = (values_in / k) * k.div_ceil(64);
            scratch = scratch.max(values_in * 2 + groups * 5);
        }
    }
    Ok(PlanMemory {
        activations,
        scratch,
    })
}
