//! int8 matrix products: the operator int8 model files use, and its kernels.
//!
//! [`Int8Linear`] computes `y = x · Wᵀ` for f32 activations `x` (`[..., K]`) and a weight stored as
//! i8 codes `[N, K]` with one f32 scale per output channel (`W ≈ codes · scale`):
//!
//! 1. each row of `x` is quantized on the fly to codes in `[-127, 127]` with its own scale
//!    (`max |x| / 127`);
//! 2. `Σ_k` of code products is computed exactly in i32 ([`kernel::gemm_i8`]: AVX2, NEON or
//!    portable);
//! 3. the sum is scaled back by the row's and the channel's scales.
//!
//! Both sides are symmetric (no zero points), so nothing per request depends on the weights alone:
//! no column sums, no casts, no packing; the stored `[N, K]` codes are what the kernels read.
//!
//! In NNEF it is `bertling_linear_i8(input, weight, scale)` in the `bertling` registry. tract's own
//! integer matrix product was measured 40x slower than its f32 one on AVX2 (tract 0.23.9), which is
//! why bertling carries its own kernels.

pub mod kernel;

use std::cell::RefCell;

use tract_core::internal::*;
use tract_linalg::multithread::{current_tract_executor, Executor};
use tract_nnef::internal::*;
use tract_nnef::ser::invocation;

/// NNEF name of [`Int8Linear`].
pub const NNEF_NAME: &str = "bertling_linear_i8";

/// Below this many multiply-adds a product runs on one thread even with a thread pool.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// `y = x · Wᵀ` with int8 weights `[N, K]` and per-row int8 activations; inputs
/// `(x: f32 [..., K], codes: i8 [N, K], scales: f32 [N])`, output f32 `[..., N]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Int8Linear;

impl Op for Int8Linear {
    fn name(&self) -> StaticName {
        "Int8Linear".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("kernel: {}", kernel::kernel_name())])
    }

    op_as_typed_op!();
}

thread_local! {
    /// Activation codes and row scales, reused across calls: no allocation per request once warm.
    static SCRATCH: RefCell<(Vec<i8>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// A raw output pointer that threads write disjoint columns through.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32, usize);
// SAFETY: each task writes a disjoint set of columns of the output.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl EvalOp for Int8Linear {
    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.compute(inputs)
    }

    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        self.compute(inputs).map(Some)
    }
}

impl Int8Linear {
    fn compute(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(inputs.len() == 3, "Int8Linear takes three inputs");
        let (xt, wt, st) = (&inputs[0], &inputs[1], &inputs[2]);
        ensure!(wt.rank() == 2, "Int8Linear weights must be [N, K]");
        let (n, k) = (wt.shape()[0], wt.shape()[1]);
        ensure!(
            xt.rank() >= 1 && xt.shape()[xt.rank() - 1] == k,
            "Int8Linear: input {:?} does not end with K = {k}",
            xt.shape()
        );
        let x = xt.try_as_plain_ram()?.as_slice::<f32>()?;
        let w = wt.try_as_plain_ram()?.as_slice::<i8>()?;
        let scales = st.try_as_plain_ram()?.as_slice::<f32>()?;
        ensure!(
            scales.len() == n,
            "Int8Linear: {} scales for {n} channels",
            scales.len()
        );
        let rows = x.len().checked_div(k).unwrap_or(0);
        let mut shape: TVec<usize> = xt.shape().into();
        *shape.last_mut().unwrap() = n;
        // SAFETY: f32 has no invalid bit patterns, and the kernels write every element below
        // (all rows, every column range) before anyone reads it.
        let mut out = unsafe { Tensor::uninitialized::<f32>(&shape)? };
        {
            let mut view = out.try_as_plain_ram_mut()?;
            let y = view.as_slice_mut::<f32>()?;
            SCRATCH.with_borrow_mut(|(codes, row_scales)| {
                codes.resize(rows * k, 0);
                row_scales.resize(rows, 0.0);
                kernel::quantize_rows(x, k.max(1), codes, row_scales);
                let pool = match current_tract_executor() {
                    #[allow(unreachable_patterns)]
                    Executor::MultiThread(pool) if rows * n * k >= PARALLEL_MIN_MACS => Some(pool),
                    _ => None,
                };
                match pool {
                    None => kernel::gemm_i8(codes, row_scales, w, scales, k, rows, (0, n), y, n),
                    Some(pool) => {
                        let threads = pool.current_num_threads().max(1);
                        // Column ranges of whole 4-channel blocks, one per thread.
                        let per = n.div_ceil(threads).div_ceil(4) * 4;
                        let ptr = OutPtr(y.as_mut_ptr(), y.len());
                        let (codes, row_scales) = (&codes[..], &row_scales[..]);
                        pool.scope(|s| {
                            for t in 0..threads {
                                let (n0, n1) = ((t * per).min(n), ((t + 1) * per).min(n));
                                if n0 == n1 {
                                    continue;
                                }
                                s.spawn(move |_| {
                                    let ptr = ptr;
                                    // SAFETY: the tasks write disjoint column ranges of `y`,
                                    // which outlives the scope.
                                    let y = unsafe { std::slice::from_raw_parts_mut(ptr.0, ptr.1) };
                                    kernel::gemm_i8(
                                        codes,
                                        row_scales,
                                        w,
                                        scales,
                                        k,
                                        rows,
                                        (n0, n1),
                                        y,
                                        n,
                                    );
                                });
                            }
                        });
                    }
                }
            });
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Int8Linear {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 3, "Int8Linear takes three inputs");
        let (x, w, s) = (inputs[0], inputs[1], inputs[2]);
        ensure!(
            x.datum_type == f32::datum_type(),
            "Int8Linear input must be f32"
        );
        ensure!(
            w.datum_type == i8::datum_type() && w.rank() == 2,
            "Int8Linear weights must be i8 [N, K]"
        );
        ensure!(
            s.datum_type == f32::datum_type() && s.rank() == 1 && s.shape[0] == w.shape[0],
            "Int8Linear scales must be f32 [N]"
        );
        ensure!(
            x.rank() >= 1 && x.shape[x.rank() - 1] == w.shape[1],
            "Int8Linear input {:?} does not end with K = {:?}",
            x.shape,
            w.shape[1]
        );
        let mut shape: TVec<TDim> = x.shape.iter().cloned().collect();
        *shape.last_mut().unwrap() = w.shape[0].clone();
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

fn dump(ast: &mut IntoAst, node: &TypedNode, _op: &Int8Linear) -> TractResult<Option<Arc<RValue>>> {
    let input = ast.mapping[&node.inputs[0]].clone();
    let weight = ast.mapping[&node.inputs[1]].clone();
    let scale = ast.mapping[&node.inputs[2]].clone();
    Ok(Some(invocation(NNEF_NAME, &[input, weight, scale], &[])))
}

fn load(builder: &mut ModelBuilder, invocation: &ResolvedInvocation) -> TractResult<Value> {
    let input = invocation.named_arg_as(builder, "input")?;
    let weight = invocation.named_arg_as(builder, "weight")?;
    let scale = invocation.named_arg_as(builder, "scale")?;
    builder.wire(Int8Linear, &[input, weight, scale])
}

/// Adds the operator to a registry.
pub fn register(registry: &mut Registry) {
    registry.register_dumper(dump);
    registry.register_primitive(
        NNEF_NAME,
        &[
            TypeName::Scalar.tensor().named("input"),
            TypeName::Integer.tensor().named("weight"),
            TypeName::Scalar.tensor().named("scale"),
        ],
        &[("output", TypeName::Scalar.tensor())],
        load,
    );
}
