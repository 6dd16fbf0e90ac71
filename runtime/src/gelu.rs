//! The tanh approximation of GELU through tract's vectorized `tanh`, for CPUs where tract has no
//! vectorized GELU.
//!
//! ALBERT (and any export whose `hidden_act` is `gelu_new` or `gelu_pytorch_tanh`) computes
//! `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))` after every feed-forward up-projection;
//! the compiler stores it as tract's `GeluApproximate`. tract 0.23.9 evaluates that operator with a
//! vectorized kernel on aarch64 and AVX-512, but on AVX2 it falls back to a scalar loop around
//! libm's `tanhf`: ~7 ms of an ALBERT-base request at 128 tokens. tract does have a vectorized
//! `tanh` for AVX2 + FMA, so [`TanhGelu`] computes the argument, runs that kernel on it, and
//! finishes the product, 2048 values at a time on the stack. The loader puts it in place of
//! `GeluApproximate` where it helps ([`use_vectorized_tanh`]); model files never contain it.

use tract_core::internal::*;
use tract_core::ops::element_wise::{ElementWiseMiniOp, ElementWiseOp};
use tract_core::ops::nn::gelu_approximate::GeluApproximate;
use tract_linalg::element_wise::ElementWise;
use tract_linalg::Func;

/// `√(2/π)`.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// Values per call of the tanh kernel (a stack buffer).
const CHUNK: usize = 2048;

/// The tanh-approximated GELU computed with tract's vectorized `tanh` ([`gelu_tanh`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TanhGelu;

impl ElementWiseMiniOp for TanhGelu {
    fn name(&self) -> String {
        "BertlingTanhGelu".into()
    }

    fn eval_in_place(&self, t: &mut Tensor, _out_dt: Option<DatumType>) -> TractResult<()> {
        // Rows of the last axis split between the request's threads when there are many.
        let row = t.shape().last().copied().unwrap_or(1).max(1);
        let mut view = t.try_as_plain_ram_mut()?;
        let xs = view.as_slice_mut::<f32>()?;
        crate::threads::par_rows(xs, row, |_, rows| gelu_tanh(rows))
    }

    fn eval_out_of_place(&self, t: &Tensor, _out_dt: Option<DatumType>) -> TractResult<Tensor> {
        let mut out = t.clone();
        self.eval_in_place(&mut out, None)?;
        Ok(out)
    }

    fn cost_per_element(&self, dt: DatumType) -> TVec<(Cost, usize)> {
        tvec!((Cost::FMA(dt), 15))
    }
}

/// tract's f32 `tanh` kernel for this CPU, looked up once.
fn tanh_kernel() -> TractResult<&'static dyn ElementWise<f32>> {
    static KERNEL: std::sync::OnceLock<Option<Box<dyn ElementWise<f32>>>> =
        std::sync::OnceLock::new();
    KERNEL
        .get_or_init(|| Func::Tanh.ew_f32().ok())
        .as_deref()
        .context("tract has no f32 tanh kernel on this CPU")
}

/// `x ← 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))` for every value, with tract's `tanh`
/// kernel: within ~2e-6 relative of the exact formula, plus ~4e-7 · |x| where `tanh` saturates
/// (it then ends a little short of ±1); a NaN stays NaN.
///
/// ```
/// let mut x = [-3.0f32, -0.5, 0.0, 0.5, 3.0];
/// bertling::gelu::gelu_tanh(&mut x).unwrap();
/// let exact = |v: f64| 0.5 * v * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v)).tanh());
/// for (got, v) in x.iter().zip([-3.0, -0.5, 0.0, 0.5, 3.0]) {
///     assert!((*got as f64 - exact(v)).abs() < 1e-6, "{got} vs {}", exact(v));
/// }
/// ```
pub fn gelu_tanh(xs: &mut [f32]) -> TractResult<()> {
    let tanh = tanh_kernel()?;
    let mut buf = [0f32; CHUNK];
    for chunk in xs.chunks_mut(CHUNK) {
        let t = &mut buf[..chunk.len()];
        loops::argument(chunk, t);
        tanh.run(t)?;
        loops::finish(chunk, t);
    }
    Ok(())
}

/// The element-wise loops around the `tanh` kernel, compiled for AVX2 where the CPU has it (the
/// same operations in the same order either way, so the same results).
mod loops {
    use super::SQRT_2_OVER_PI;

    #[inline(always)]
    fn argument_any(x: &[f32], t: &mut [f32]) {
        for (t, &x) in t.iter_mut().zip(x) {
            *t = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
        }
    }

    #[inline(always)]
    fn finish_any(x: &mut [f32], t: &[f32]) {
        for (x, &t) in x.iter_mut().zip(t) {
            *x = 0.5 * *x * (1.0 + t);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn argument_avx2(x: &[f32], t: &mut [f32]) {
        argument_any(x, t)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn finish_avx2(x: &mut [f32], t: &[f32]) {
        finish_any(x, t)
    }

    /// `t = √(2/π) · (x + 0.044715 · x³)`.
    pub fn argument(x: &[f32], t: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present.
            return unsafe { argument_avx2(x, t) };
        }
        argument_any(x, t)
    }

    /// `x = 0.5 · x · (1 + t)`.
    pub fn finish(x: &mut [f32], t: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present.
            return unsafe { finish_avx2(x, t) };
        }
        finish_any(x, t)
    }
}

/// Whether tract evaluates `GeluApproximate` with a scalar loop on this CPU (x86-64 below
/// AVX-512), where [`TanhGelu`] is faster.
pub fn tract_gelu_is_scalar() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Puts [`TanhGelu`] in place of every f32 `GeluApproximate` (the `x³` form) of `model` when
/// [`tract_gelu_is_scalar`]; returns how many were replaced.
pub fn use_vectorized_tanh(model: &mut TypedModel) -> TractResult<usize> {
    if !tract_gelu_is_scalar() || tanh_kernel().is_err() {
        return Ok(0);
    }
    let mut replaced = 0;
    for id in 0..model.nodes.len() {
        let swap = model.node(id).op_as::<ElementWiseOp>().is_some_and(|op| {
            op.0.downcast_ref::<GeluApproximate>()
                .is_some_and(|g| !g.fast_impl)
        }) && model.node_input_facts(id)?[0].datum_type == f32::datum_type();
        if swap {
            model.node_mut(id).op = Box::new(ElementWiseOp(Box::new(TanhGelu), None));
            replaced += 1;
        }
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(v: f32) -> f64 {
        let v = v as f64;
        0.5 * v * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v)).tanh())
    }

    #[test]
    fn a_thread_pool_gives_the_same_values() -> TractResult<()> {
        use tract_linalg::multithread::{multithread_tract_scope, Executor};
        // 128 rows of 3072 (an FFN's activations at 128 tokens): split between threads.
        let values: Vec<f32> = (0..128 * 3072usize)
            .map(|i| ((i * 7919 % 4001) as f32 - 2000.0) / 400.0)
            .collect();
        let mut one = Tensor::from_shape(&[128, 3072], &values)?;
        let mut two = one.clone();
        TanhGelu.eval_in_place(&mut one, None)?;
        multithread_tract_scope(Executor::multithread(2), || {
            TanhGelu.eval_in_place(&mut two, None)
        })?;
        let (one, two) = (one.try_as_plain_ram()?, two.try_as_plain_ram()?);
        assert_eq!(one.as_slice::<f32>()?, two.as_slice::<f32>()?);
        let mut want = values.clone();
        gelu_tanh(&mut want)?;
        assert_eq!(one.as_slice::<f32>()?, &want[..]);
        Ok(())
    }

    #[test]
    fn it_matches_the_formula_everywhere() -> TractResult<()> {
        // Every chunk shape (a partial last chunk), the range a GELU sees and far beyond it.
        let mut x: Vec<f32> = (0..1003).map(|i| (i as f32 - 501.0) * 0.02).collect();
        x.extend([-1e4, -60.0, -9.0, 9.0, 60.0, 1e4, 1e-30, -1e-30]);
        let mut y = x.clone();
        gelu_tanh(&mut y)?;
        for (&v, &got) in x.iter().zip(&y) {
            let want = exact(v);
            let err = (got as f64 - want).abs();
            // tract's tanh is within ~4e-7 of ±1 where it saturates, which x scales.
            let tol = 2e-6 * want.abs().max(1.0) + 5e-7 * (v.abs() as f64).min(1e4);
            assert!(err <= tol, "gelu({v}) = {got}, want {want}");
        }
        let mut nan = [f32::NAN, 1.0];
        gelu_tanh(&mut nan)?;
        assert!(nan[0].is_nan());
        Ok(())
    }

    #[test]
    fn the_loader_swaps_the_scalar_gelu_and_only_it() -> TractResult<()> {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([2, 300]))?;
        let exact = GeluApproximate { fast_impl: false };
        let fast = GeluApproximate { fast_impl: true };
        let a = model.wire_node("a", ElementWiseOp(Box::new(exact), None), &[x])?;
        let b = model.wire_node("b", ElementWiseOp(Box::new(fast), None), &a)?;
        model.select_output_outlets(&b)?;
        let input: Vec<f32> = (0..600).map(|i| (i as f32 - 300.0) * 0.03).collect();
        let input = Tensor::from_shape(&[2, 300], &input)?;
        let before = model
            .clone()
            .into_runnable()?
            .run(tvec!(input.clone().into_tvalue()))?;
        let replaced = use_vectorized_tanh(&mut model)?;
        assert_eq!(replaced, usize::from(tract_gelu_is_scalar()));
        let ops: Vec<String> = model
            .nodes
            .iter()
            .map(|n| n.op.name().to_string())
            .collect();
        assert_eq!(
            ops.iter().any(|o| o == "BertlingTanhGelu"),
            tract_gelu_is_scalar(),
            "{ops:?}"
        );
        let after = model
            .into_optimized()?
            .into_runnable()?
            .run(tvec!(input.into_tvalue()))?;
        let (b, a) = (before[0].try_as_plain_ram()?, after[0].try_as_plain_ram()?);
        let (b, a) = (b.as_slice::<f32>()?, a.as_slice::<f32>()?);
        for (x, y) in b.iter().zip(a) {
            assert!((x - y).abs() <= 2e-6 * x.abs().max(1.0), "{x} vs {y}");
        }
        Ok(())
    }
}
