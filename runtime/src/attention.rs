//! Self-attention's core, `softmax(Q·Kᵀ)·V` per head, as one operator.
//!
//! tract's decluttering leaves a BERT-family attention block as two `EinSum`s around a `Softmax`:
//! the scores `[heads, queries, keys]` of queries `Q` `[queries, heads, d]` against keys `K`
//! `[keys, heads, d]`, their softmax over the keys, and the weighted sum of the values `V`
//! `[keys, heads, d_v]`, `[queries, heads, d_v]`. tract then runs each `EinSum` as a packed
//! matrix product per head (its packing of `K` and `V` is a copy per request) and the softmax as a
//! third pass over a scores tensor. At the short inputs kiosk text brings (16 tokens), each
//! per-head product is a few thousand multiply-adds, and the per-operator and packing work is most
//! of attention's time: ~3.5 ms of an ALBERT-base request at 16 tokens, ~25 ms at 128.
//!
//! [`Attention`] does it in one pass per head and block of queries (6 with AVX2): the queries'
//! scores against every key (dot products of `d` contiguous values, 8 keys at a time), their
//! softmax in place (a vectorized `exp`), and the weighted sum of the value rows, each value row
//! read once for the block and the sums scaled once by the softmax's `1/Σ` at the end. Nothing is
//! packed or copied; the block's scores live in a per-thread buffer. With a thread pool, heads are
//! split between threads. The arithmetic is the graph's up to the order of f32 operations and the
//! `exp` approximation (within 2 ulp). The loader rewrites the graph ([`fuse_attention`]) where
//! the CPU has AVX2 and FMA ([`vectorized`]); model files never contain the operator.
//!
//! The scale `1/√d` is not the operator's: it stays where the graph has it (on the queries, or
//! folded into the int8 products before them by [`crate::int8::fold`]). A graph with anything
//! between the scores and the softmax (an attention mask: bertling never pads, so its compiler
//! drops them) is left as it is.

use std::cell::RefCell;

use tract_core::internal::*;
use tract_core::ops::einsum::EinSum;
use tract_core::ops::nn::{Softmax, SoftmaxKind};

use crate::rewrite::{is_read, only_reader};
use crate::threads::PARALLEL_MIN_MACS;

/// `out[i, h, :] = Σ_j softmax_j(Q[i, h, :] · K[j, h, :]) · V[j, h, :]`, for `Q` `[.., Sq, H, d]`,
/// `K` `[.., Sk, H, d]`, `V` `[.., Sk, H, d_v]` (leading axes of size 1) and `out` `[Sq, H, d_v]`.
///
/// ```
/// use bertling::attention::Attention;
/// use tract_core::internal::*;
///
/// # fn main() -> TractResult<()> {
/// // One head of width 2: the query matches the first key far better than the second.
/// let q = tensor3(&[[[4.0f32, 0.0]]]);
/// let k = tensor3(&[[[4.0f32, 0.0]], [[0.0, 4.0]]]);
/// let v = tensor3(&[[[1.0f32, 10.0]], [[3.0, 30.0]]]);
/// let out = Attention.compute(tvec!(q.into_tvalue(), k.into_tvalue(), v.into_tvalue()))?;
/// let out = out[0].try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
/// let p = 1.0 / (1.0 + (-16.0f32).exp()); // softmax of [16, 0]
/// assert!((out[0] - (p + 3.0 * (1.0 - p))).abs() < 1e-5, "{out:?}");
/// assert!((out[1] - (10.0 * p + 30.0 * (1.0 - p))).abs() < 1e-4, "{out:?}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Attention;

impl Op for Attention {
    fn name(&self) -> StaticName {
        "BertlingAttention".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Attention {
    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.compute(inputs)
    }

    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        self.compute(inputs).map(Some)
    }
}

/// The sizes of one attention: queries, keys, heads, query/key width, value width.
#[derive(Debug, Clone, Copy)]
struct Dims {
    sq: usize,
    sk: usize,
    h: usize,
    d: usize,
    dv: usize,
}

/// The last three sizes of `shape`, when every axis before them has size 1 (`one`).
fn last3<D: PartialEq + Clone>(shape: &[D], one: &D) -> Option<[D; 3]> {
    let r = shape.len().checked_sub(3)?;
    shape[..r]
        .iter()
        .all(|d| d == one)
        .then(|| [shape[r].clone(), shape[r + 1].clone(), shape[r + 2].clone()])
}

impl Attention {
    /// Evaluates the operator on `[Q, K, V]` (what a plan does; shapes as in the type's doc).
    pub fn compute(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(inputs.len() == 3, "Attention takes Q, K and V");
        let dims = |t: &TValue, what: &str| {
            last3(t.shape(), &1).with_context(|| {
                format!(
                    "Attention: {what} must be [.., S, H, d], got {:?}",
                    t.shape()
                )
            })
        };
        let [sq, h, d] = dims(&inputs[0], "Q")?;
        let [sk, hk, dk] = dims(&inputs[1], "K")?;
        let [sv, hv, dv] = dims(&inputs[2], "V")?;
        ensure!(
            hk == h && hv == h && dk == d && sv == sk,
            "Attention: Q [{sq}, {h}, {d}], K [{sk}, {hk}, {dk}] and V [{sv}, {hv}, {dv}] do not fit"
        );
        let dims = Dims { sq, sk, h, d, dv };
        let mut out = Tensor::zero::<f32>(&[sq, h, dv])?;
        if sq > 0 && sk > 0 && h > 0 && dv > 0 {
            let (q, k, v) = (
                inputs[0].try_as_plain_ram()?,
                inputs[1].try_as_plain_ram()?,
                inputs[2].try_as_plain_ram()?,
            );
            let (q, k, v) = (
                q.as_slice::<f32>()?,
                k.as_slice::<f32>()?,
                v.as_slice::<f32>()?,
            );
            let mut view = out.try_as_plain_ram_mut()?;
            let macs = sq * sk * h * (d + dv);
            let run = |heads, out: &mut [f32]| {
                SCORES.with_borrow_mut(|s| {
                    s.resize(sk * heads::QUERIES, 0.0);
                    heads::run(dims, (q, k, v), heads, out, &mut s[..sk * heads::QUERIES])
                })
            };
            // SAFETY: a range of heads writes only its heads' rows of the output.
            unsafe {
                crate::threads::split(h, macs >= PARALLEL_MIN_MACS, view.as_slice_mut()?, run)
            };
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Attention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 3, "Attention takes Q, K and V");
        ensure!(inputs.iter().all(|f| f.datum_type == f32::datum_type()));
        let one = TDim::from(1);
        let [q, k, v] = [0, 1, 2].map(|i| last3(&inputs[i].shape, &one));
        let (Some(q), Some(k), Some(v)) = (q, k, v) else {
            bail!("Attention: Q, K and V must be [.., S, H, d] with leading axes of size 1");
        };
        ensure!(
            q[1] == k[1] && k[1] == v[1],
            "Attention: head counts differ"
        );
        ensure!(q[2] == k[2], "Attention: Q and K widths differ");
        ensure!(k[0] == v[0], "Attention: K and V lengths differ");
        let [sq, h, _] = q;
        Ok(tvec!(f32::fact([sq, h, v[2].clone()])))
    }

    as_op!();
}

thread_local! {
    /// A block of queries' scores, reused across calls: no allocation per request once warm.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Whether this CPU runs [`Attention`] with its vectorized loops (x86-64 with AVX2 and FMA), where
/// it was measured faster than tract's products ([`fuse_attention`] rewrites nothing elsewhere).
pub fn vectorized() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The per-head loops: the definition in plain Rust, and the same with AVX2 and FMA.
mod heads {
    use super::Dims;

    /// Queries whose scores are held at once.
    #[cfg(target_arch = "x86_64")]
    pub(super) const QUERIES: usize = avx2::QUERIES;
    #[cfg(not(target_arch = "x86_64"))]
    pub(super) const QUERIES: usize = 1;

    /// Heads `h0..h1` of the attention into `out` (`[Sq, H, d_v]`; only those heads' rows),
    /// with `s` (`QUERIES · Sk` values) for the scores.
    pub(super) fn run(
        dims: Dims,
        (q, k, v): (&[f32], &[f32], &[f32]),
        (h0, h1): (usize, usize),
        out: &mut [f32],
        s: &mut [f32],
    ) {
        let Dims { sq, sk, h, d, dv } = dims;
        assert!(q.len() >= sq * h * d && k.len() >= sk * h * d && v.len() >= sk * h * dv);
        assert!(out.len() >= sq * h * dv && h1 <= h && s.len() == QUERIES * sk && sk > 0);
        #[cfg(target_arch = "x86_64")]
        if super::vectorized() {
            // SAFETY: AVX2 and FMA are present; the asserts above bound every access.
            return unsafe { avx2::run(dims, (q, k, v), (h0, h1), out, s) };
        }
        portable(dims, (q, k, v), (h0, h1), out, s)
    }

    /// [`run`] in plain Rust, one query at a time (the definition; the other CPUs' loops).
    pub(super) fn portable(
        dims: Dims,
        (q, k, v): (&[f32], &[f32], &[f32]),
        (h0, h1): (usize, usize),
        out: &mut [f32],
        s: &mut [f32],
    ) {
        let Dims { sq, sk, h, d, dv } = dims;
        let s = &mut s[..sk];
        for head in h0..h1 {
            for i in 0..sq {
                let qi = &q[(i * h + head) * d..][..d];
                for (j, s) in s.iter_mut().enumerate() {
                    let kj = &k[(j * h + head) * d..][..d];
                    *s = qi.iter().zip(kj).map(|(a, b)| a * b).sum();
                }
                let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for s in s.iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                let o = &mut out[(i * h + head) * dv..][..dv];
                o.fill(0.0);
                for (j, &p) in s.iter().enumerate() {
                    let vj = &v[(j * h + head) * dv..][..dv];
                    for (o, &x) in o.iter_mut().zip(vj) {
                        *o += p * x;
                    }
                }
                o.iter_mut().for_each(|o| *o /= sum);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod avx2 {
        //! Scores 8 keys at a time (8 running vectors along `d`, summed across at the end), the
        //! softmax with a vectorized `exp` (Cephes' polynomial, within 2 ulp of `expf` over the
        //! softmax's range), and the value rows 64 columns at a time.
        use super::super::Dims;
        use std::arch::x86_64::*;

        /// Queries computed together (each key and value row is read once for all of them).
        pub(in super::super) const QUERIES: usize = 6;

        /// The 8 lanes of each of `a[0..8]` summed: lane `r` of the result is `Σ a[r]`.
        #[inline(always)]
        unsafe fn sum8(a: [__m256; 8]) -> __m256 {
            let s0123 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
            let s4567 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
            _mm256_add_ps(
                _mm256_permute2f128_ps(s0123, s4567, 0x20),
                _mm256_permute2f128_ps(s0123, s4567, 0x31),
            )
        }

        /// The 8 lanes of `a` summed.
        #[inline(always)]
        unsafe fn sum1(a: __m256) -> f32 {
            let x = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
            let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
            _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)))
        }

        /// Scores of queries `q[r·q_stride ..][.. d]` (`r < rows`) against keys
        /// `k[j·stride ..][.. d]`: `s[r·sk + j]`, `sk = s.len() / rows`. Key blocks outside, so a
        /// block's 8 rows are read from cache by every query.
        #[inline(always)]
        unsafe fn scores(
            (q, q_stride, rows): (*const f32, usize, usize),
            k: *const f32,
            stride: usize,
            d: usize,
            s: &mut [f32],
        ) {
            let sk = s.len() / rows;
            let body = d / 8 * 8;
            let dot_tail = |q: *const f32, j: usize| {
                (body..d).fold(0f32, |x, t| x + *q.add(t) * *k.add(j * stride + t))
            };
            let mut j = 0;
            while j + 8 <= sk {
                for r in 0..rows {
                    let q = q.add(r * q_stride);
                    let mut acc = [_mm256_setzero_ps(); 8];
                    let mut t = 0;
                    while t < body {
                        let qv = _mm256_loadu_ps(q.add(t));
                        for (c, acc) in acc.iter_mut().enumerate() {
                            let kv = _mm256_loadu_ps(k.add((j + c) * stride + t));
                            *acc = _mm256_fmadd_ps(qv, kv, *acc);
                        }
                        t += 8;
                    }
                    let out = &mut s[r * sk + j..r * sk + j + 8];
                    _mm256_storeu_ps(out.as_mut_ptr(), sum8(acc));
                    if body < d {
                        for (c, x) in out.iter_mut().enumerate() {
                            *x += dot_tail(q, j + c);
                        }
                    }
                }
                j += 8;
            }
            for j in j..sk {
                for r in 0..rows {
                    let q = q.add(r * q_stride);
                    let mut acc = _mm256_setzero_ps();
                    let mut t = 0;
                    while t < body {
                        let kv = _mm256_loadu_ps(k.add(j * stride + t));
                        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(t)), kv, acc);
                        t += 8;
                    }
                    s[r * sk + j] = sum1(acc) + dot_tail(q, j);
                }
            }
        }

        /// `eˣ` for `x <= 0` (larger `x` are clamped to 88.7; below −87.3 gives `e^−87.3`).
        #[inline(always)]
        unsafe fn exp(x: __m256) -> __m256 {
            let x = _mm256_min_ps(
                _mm256_max_ps(x, _mm256_set1_ps(-87.336_55)),
                _mm256_set1_ps(88.722_83),
            );
            let n = _mm256_round_ps(
                _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
            );
            // x − n·ln 2 in two steps (ln 2 = 0.693359375 − 2.12194440e-4, the first exact).
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
            let mut p = _mm256_set1_ps(1.987_569_1e-4);
            for c in [
                1.398_199_9e-3,
                8.333_452e-3,
                4.166_579_6e-2,
                0.166_666_65,
                0.5,
            ] {
                p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
            }
            let p = _mm256_add_ps(
                _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r),
                _mm256_set1_ps(1.0),
            );
            let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(
                _mm256_cvtps_epi32(n),
                _mm256_set1_epi32(127),
            ));
            _mm256_mul_ps(p, _mm256_castsi256_ps(e))
        }

        /// `s[j] = exp(s[j] − max s)`; returns `Σ s[j]`.
        #[inline(always)]
        unsafe fn exp_shifted(s: &mut [f32]) -> f32 {
            let body = s.len() / 8 * 8;
            let p = s.as_mut_ptr();
            let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
            for j in (0..body).step_by(8) {
                m = _mm256_max_ps(m, _mm256_loadu_ps(p.add(j)));
            }
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), m);
            let max = lanes
                .iter()
                .chain(&s[body..])
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            let (mv, mut sum) = (_mm256_set1_ps(max), _mm256_setzero_ps());
            for j in (0..body).step_by(8) {
                let e = exp(_mm256_sub_ps(_mm256_loadu_ps(p.add(j)), mv));
                _mm256_storeu_ps(p.add(j), e);
                sum = _mm256_add_ps(sum, e);
            }
            let mut sum = sum1(sum);
            for x in &mut s[body..] {
                *x = (*x - max).exp();
                sum += *x;
            }
            sum
        }

        /// `out[r·o_stride + c] = scale[r] · Σ_j p[r·sk + j] · v[j·stride + c]` for `R` rows and
        /// `c < dv`: 16 columns at a time, each value row read once for the `R` rows.
        #[inline(always)]
        unsafe fn weighted_sum<const R: usize>(
            p: &[f32],
            (v, stride): (*const f32, usize),
            scale: &[f32],
            (o, o_stride, dv): (*mut f32, usize, usize),
        ) {
            let sk = p.len() / R;
            let mut c0 = 0;
            while c0 + 16 <= dv {
                let mut acc = [[_mm256_setzero_ps(); 2]; R];
                for j in 0..sk {
                    let row = v.add(j * stride + c0);
                    let (v0, v1) = (_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8)));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let pv = _mm256_set1_ps(*p.get_unchecked(r * sk + j));
                        acc[0] = _mm256_fmadd_ps(pv, v0, acc[0]);
                        acc[1] = _mm256_fmadd_ps(pv, v1, acc[1]);
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    let (sv, out) = (_mm256_set1_ps(scale[r]), o.add(r * o_stride + c0));
                    _mm256_storeu_ps(out, _mm256_mul_ps(acc[0], sv));
                    _mm256_storeu_ps(out.add(8), _mm256_mul_ps(acc[1], sv));
                }
                c0 += 16;
            }
            for c in c0..dv {
                for r in 0..R {
                    let x = (0..sk).fold(0f32, |x, j| x + p[r * sk + j] * *v.add(j * stride + c));
                    *o.add(r * o_stride + c) = x * scale[r];
                }
            }
        }

        #[cfg(test)]
        #[test]
        fn exp_is_within_2_ulp_over_the_softmax_range() {
            if !super::super::vectorized() {
                return;
            }
            let mut worst = 0f64;
            let mut x = -87.3f32;
            while x <= 0.0 {
                let mut lanes = [0f32; 8];
                // SAFETY: AVX2 and FMA are present.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), exp(_mm256_set1_ps(x))) };
                let want = (x as f64).exp();
                let ulp = (want as f32).abs() as f64 * f32::EPSILON as f64;
                worst = worst.max((lanes[0] as f64 - want).abs() / ulp);
                x += 0.000_37;
            }
            assert!(worst <= 2.0, "{worst} ulp");
        }

        /// [`super::run`] with AVX2 and FMA.
        ///
        /// # Safety
        /// The CPU has AVX2 and FMA; the slices hold what `dims` says (checked by the caller).
        #[target_feature(enable = "avx2,fma")]
        pub(in super::super) unsafe fn run(
            dims: Dims,
            (q, k, v): (&[f32], &[f32], &[f32]),
            (h0, h1): (usize, usize),
            out: &mut [f32],
            s: &mut [f32],
        ) {
            let Dims { sq, sk, h, d, dv } = dims;
            for head in h0..h1 {
                let (k, v) = (k.as_ptr().add(head * d), v.as_ptr().add(head * dv));
                let mut i = 0;
                while i < sq {
                    let rows = QUERIES.min(sq - i);
                    let p = &mut s[..rows * sk];
                    scores(
                        (q.as_ptr().add((i * h + head) * d), h * d, rows),
                        k,
                        h * d,
                        d,
                        p,
                    );
                    let mut scale = [0f32; QUERIES];
                    for (row, scale) in p.chunks_exact_mut(sk).zip(&mut scale) {
                        *scale = exp_shifted(row).recip();
                    }
                    let o = (out.as_mut_ptr().add((i * h + head) * dv), h * dv, dv);
                    match rows {
                        6 => weighted_sum::<6>(p, (v, h * dv), &scale, o),
                        5 => weighted_sum::<5>(p, (v, h * dv), &scale, o),
                        4 => weighted_sum::<4>(p, (v, h * dv), &scale, o),
                        3 => weighted_sum::<3>(p, (v, h * dv), &scale, o),
                        2 => weighted_sum::<2>(p, (v, h * dv), &scale, o),
                        _ => weighted_sum::<1>(p, (v, h * dv), &scale, o),
                    }
                    i += rows;
                }
            }
        }
    }
}

/// An `EinSum`'s expression over its two inputs with the size-1 axes only one input has (and the
/// output lacks) dropped, when they lead that input, and the remaining axes renamed `a`, `b`, ...
/// in order of first appearance: `bmak,cnak->amn` (`b`, `c` of size 1) reads `abc,dbc->bad`.
/// `None` for anything else (an axis twice in one tensor, a quantized or non-f32 product).
fn canonical(model: &TypedModel, node: &TypedNode) -> Option<String> {
    let op = node.op_as::<EinSum>()?;
    if op.q_params.is_some() || op.operating_dt != f32::datum_type() || node.inputs.len() != 2 {
        return None;
    }
    let facts: TVec<&TypedFact> = node
        .inputs
        .iter()
        .map(|i| model.outlet_fact(*i))
        .collect::<TractResult<_>>()
        .ok()?;
    if facts.iter().any(|f| f.datum_type != f32::datum_type()) {
        return None;
    }
    // Per tensor (input 0, input 1, output), the axes in order, `None` where dropped.
    let mut tensors: [Vec<Option<char>>; 3] = [
        vec![None; facts[0].rank()],
        vec![None; facts[1].rank()],
        vec![None; op.axes.rank(InOut::Out(0))],
    ];
    for axis in op.axes.iter_all_axes() {
        let places = [&axis.inputs[0], &axis.inputs[1], &axis.outputs[0]];
        if places.iter().any(|p| p.len() > 1) {
            return None;
        }
        let only_one_input = places[2].is_empty() && (places[0].is_empty() != places[1].is_empty());
        let dropped = only_one_input && {
            let slot = if places[0].is_empty() { 1 } else { 0 };
            let pos = places[slot][0];
            facts[slot].shape[pos].is_one()
        };
        for (t, p) in places.iter().enumerate() {
            if let Some(&pos) = p.first() {
                *tensors[t].get_mut(pos)? = (!dropped).then_some(axis.repr);
            }
        }
    }
    let mut names = Vec::<char>::new();
    let mut text = String::new();
    for (t, axes) in tensors.iter().enumerate() {
        // Dropped axes must lead their input (so the rest keeps its memory layout).
        let first_kept = axes.iter().position(Option::is_some).unwrap_or(axes.len());
        if axes[first_kept..].iter().any(Option::is_none) {
            return None;
        }
        text.push_str(match t {
            1 => ",",
            2 => "->",
            _ => "",
        });
        for &c in axes.iter().flatten() {
            let i = names.iter().position(|&n| n == c).unwrap_or_else(|| {
                names.push(c);
                names.len() - 1
            });
            text.push((b'a' + i as u8) as char);
        }
    }
    Some(text)
}

/// The `(Q, K, V)` inputs and the weighted sum's node of the attention whose value product is
/// `node`: `EinSum(Softmax(EinSum(Q, K)), V)` in the layouts of the module doc, the scores and
/// the softmax read by nothing else.
fn attention_at(model: &TypedModel, node: &TypedNode) -> Option<[OutletId; 3]> {
    if canonical(model, node)? != "abc,cad->bad" {
        return None;
    }
    let softmax = model.node(node.inputs[0].node);
    let op = softmax.op_as::<Softmax>()?;
    let fits = op.axes.as_slice() == [2]
        && op.kind == SoftmaxKind::Softmax
        && op.quant_output_dt.is_none()
        && only_reader(model, softmax.id)? == InletId::new(node.id, 0);
    let scores = model.node(softmax.inputs[0].node);
    let fits = fits
        && canonical(model, scores)? == "abc,dbc->bad"
        && only_reader(model, scores.id)? == InletId::new(softmax.id, 0);
    fits.then(|| [scores.inputs[0], scores.inputs[1], node.inputs[1]])
}

/// Replaces every attention core of `model` (scores, softmax and weighted sum; see the module
/// doc) by one [`Attention`] where the CPU runs it [`vectorized`]; returns how many. The replaced nodes are left without successors,
/// for the optimizer to drop.
pub fn fuse_attention(model: &mut TypedModel) -> TractResult<usize> {
    if !vectorized() {
        return Ok(0);
    }
    let found: Vec<(usize, [OutletId; 3])> = model
        .nodes
        .iter()
        .filter(|n| is_read(model, n.id))
        .filter_map(|n| attention_at(model, n).map(|qkv| (n.id, qkv)))
        .collect();
    for &(end, qkv) in &found {
        let name = format!("{}.attention", model.node(end).name);
        let mut patch = TypedModelPatch::new(format!("fuse attention {name}"));
        let taps = qkv
            .iter()
            .map(|&i| patch.tap_model(model, i))
            .collect::<TractResult<TVec<_>>>()?;
        let y = patch.wire_node(name, Attention, &taps)?[0];
        patch.shunt_outside(model, OutletId::new(end, 0), y)?;
        patch.apply(model)?;
    }
    Ok(found.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::{assert_close, run_f32};
    use tract_core::ops::binary::TypedBinOp;
    use tract_core::ops::math::Add;
    use tract_linalg::multithread::{multithread_tract_scope, Executor};

    fn einsum(expr: &str) -> TractResult<EinSum> {
        Ok(EinSum::new(expr.parse()?, f32::datum_type()))
    }

    fn softmax(axis: usize, kind: SoftmaxKind) -> Softmax {
        Softmax {
            axes: tvec![axis],
            quant_output_dt: None,
            kind,
        }
    }

    /// What can sit between the scores and the weighted sum.
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Variant {
        /// The attention as tract declutters it.
        Plain,
        /// DistilBERT's and BERT's exports: Q, K, V with a leading axis of size 1.
        Leading,
        /// The softmax over the queries.
        OtherAxis,
        LogSoftmax,
        /// The scores are also a model output.
        ScoresRead,
        /// Something added to the scores before the softmax.
        Masked,
    }

    /// `Q [sq, h, d]`, `K [sk, h, d]`, `V [sk, h, dv]` (each with a leading 1 for `Leading`)
    /// through the decluttered attention graph.
    fn graph(dims: Dims, variant: Variant) -> TractResult<TypedModel> {
        let Dims { sq, sk, h, d, dv } = dims;
        let lead = |s: [usize; 3]| -> TVec<usize> {
            let mut v: TVec<usize> = s.iter().copied().collect();
            if variant == Variant::Leading {
                v.insert(0, 1);
            }
            v
        };
        let mut m = TypedModel::default();
        let q = m.add_source("q", f32::fact(lead([sq, h, d])))?;
        let k = m.add_source("k", f32::fact(lead([sk, h, d])))?;
        let v = m.add_source("v", f32::fact(lead([sk, h, dv])))?;
        let (e1, e2) = match variant {
            Variant::Leading => ("bmak,cnak->amn", "amk,bkan->man"),
            _ => ("mak,nak->amn", "amk,kan->man"),
        };
        let mut scores = m.wire_node("scores", einsum(e1)?, &[q, k])?[0];
        if variant == Variant::Masked {
            let mask = m.add_const("mask", Tensor::zero::<f32>(&[1, 1, sk])?)?;
            scores = m.wire_node("masked", TypedBinOp(Box::new(Add), None), &[scores, mask])?[0];
        }
        let sm = match variant {
            Variant::OtherAxis => softmax(1, SoftmaxKind::Softmax),
            Variant::LogSoftmax => softmax(2, SoftmaxKind::LogSoftmax),
            _ => softmax(2, SoftmaxKind::Softmax),
        };
        let p = m.wire_node("softmax", sm, &[scores])?[0];
        let out = m.wire_node("out", einsum(e2)?, &[p, v])?[0];
        let mut outputs = vec![out];
        if variant == Variant::ScoresRead {
            outputs.push(scores);
        }
        m.select_output_outlets(&outputs)?;
        Ok(m)
    }

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 33) % 4001) as f32 / 1000.0 - 2.0
            })
            .collect()
    }

    fn inputs(dims: Dims, leading: bool) -> TractResult<[Tensor; 3]> {
        let Dims { sq, sk, h, d, dv } = dims;
        let t = |s: [usize; 3], seed| -> TractResult<Tensor> {
            let mut shape: Vec<usize> = s.into();
            if leading {
                shape.insert(0, 1);
            }
            Tensor::from_shape(&shape, &values(s.iter().product(), seed))
        };
        Ok([t([sq, h, d], 1)?, t([sk, h, d], 2)?, t([sk, h, dv], 3)?])
    }

    fn dims(sq: usize, sk: usize, h: usize, d: usize, dv: usize) -> Dims {
        Dims { sq, sk, h, d, dv }
    }

    fn op_names(m: &TypedModel) -> Vec<String> {
        m.nodes.iter().map(|n| n.op.name().to_string()).collect()
    }

    #[test]
    fn the_fused_attention_gives_the_graphs_outputs() -> TractResult<()> {
        // Base sizes, queries at the masks only, widths and lengths off the vector sizes, more
        // queries than are computed together, one head.
        let cases = [
            dims(16, 16, 12, 64, 64),
            dims(1, 16, 12, 64, 64),
            dims(3, 37, 3, 24, 24),
            dims(13, 9, 2, 70, 70),
            dims(7, 1, 1, 8, 8),
            dims(2, 5, 2, 5, 3),
        ];
        for case in cases {
            for variant in [Variant::Plain, Variant::Leading] {
                let leading = variant == Variant::Leading;
                let [q, k, v] = inputs(case, leading)?;
                let want = run_f32(graph(case, variant)?, &[&q, &k, &v])?;
                let mut fused = graph(case, variant)?;
                assert_eq!(fuse_attention(&mut fused)?, vectorized() as usize);
                if vectorized() {
                    let names = op_names(&fused.clone().into_optimized()?);
                    assert!(names.iter().any(|n| n == "BertlingAttention"), "{names:?}");
                    assert!(!names.iter().any(|n| n.contains("Softmax")), "{names:?}");
                }
                let got = run_f32(fused, &[&q, &k, &v])?;
                assert_close(&want, &got, 2e-5);
            }
        }
        Ok(())
    }

    #[test]
    fn graphs_that_only_look_like_attention_are_left_alone() -> TractResult<()> {
        let case = dims(4, 4, 2, 8, 8);
        for variant in [
            Variant::OtherAxis,
            Variant::LogSoftmax,
            Variant::ScoresRead,
            Variant::Masked,
        ] {
            let mut m = graph(case, variant)?;
            assert_eq!(fuse_attention(&mut m)?, 0, "{variant:?}");
        }
        Ok(())
    }

    #[test]
    fn the_vectorized_loops_equal_the_definition() {
        if !vectorized() {
            return;
        }
        for case in [
            dims(16, 16, 2, 64, 64),
            dims(7, 13, 3, 70, 40),
            dims(1, 3, 1, 3, 5),
        ] {
            let Dims { sq, sk, h, d, dv } = case;
            let (q, k, v) = (
                values(sq * h * d, 4),
                values(sk * h * d, 5),
                values(sk * h * dv, 6),
            );
            let mut want = vec![0f32; sq * h * dv];
            let mut got = want.clone();
            let mut s = vec![0f32; heads::QUERIES * sk];
            heads::portable(case, (&q, &k, &v), (0, h), &mut want, &mut s);
            heads::run(case, (&q, &k, &v), (0, h), &mut got, &mut s);
            assert_close(&want, &got, 2e-5);
        }
    }

    #[test]
    fn a_thread_pool_gives_the_same_outputs() -> TractResult<()> {
        let case = dims(64, 64, 12, 64, 64);
        const { assert!(64 * 64 * 12 * 128 >= PARALLEL_MIN_MACS) };
        let [q, k, v] = inputs(case, false)?;
        let run = || {
            Attention.compute(tvec!(
                q.clone().into_tvalue(),
                k.clone().into_tvalue(),
                v.clone().into_tvalue()
            ))
        };
        let one = run()?;
        let two = multithread_tract_scope(Executor::multithread(2), run)?;
        assert_eq!(one[0].shape(), &[64, 12, 64]);
        assert_eq!(
            one[0].try_as_plain_ram()?.as_slice::<f32>()?,
            two[0].try_as_plain_ram()?.as_slice::<f32>()?
        );
        Ok(())
    }

    #[test]
    fn mismatched_inputs_are_errors() {
        let t = |s: &[usize]| Tensor::zero::<f32>(s).unwrap().into_tvalue();
        for (q, k, v) in [
            (t(&[2, 2, 4]), t(&[3, 2, 5]), t(&[3, 2, 4])), // widths
            (t(&[2, 2, 4]), t(&[3, 1, 4]), t(&[3, 2, 4])), // heads
            (t(&[2, 2, 4]), t(&[3, 2, 4]), t(&[2, 2, 4])), // lengths
            (t(&[2, 2, 4]), t(&[2, 4]), t(&[3, 2, 4])),    // rank
            (t(&[2, 2, 2, 4]), t(&[3, 2, 4]), t(&[3, 2, 4])), // a leading axis of 2
        ] {
            assert!(Attention.compute(tvec!(q, k, v)).is_err());
        }
    }
}
