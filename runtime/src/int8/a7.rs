//! 7-bit activation codes with a scale per row **and per group of 64 inputs**, against i8 weights
//! in [`super::packed`]'s panel layout (8 channels x 4 inputs) with their scales per channel and
//! group of 64 inputs: the less accurate int8 product, faster on some CPUs (`bertling compile
//! --int8-activations grouped7`, format 4).
//!
//! **Why.** 7-bit codes, offset to `u = q + 64` in `[1, 127]`, are what AVX2's `vpmaddubsw`
//! (unsigned x signed bytes, pairs summed in i16) multiplies **without saturating**:
//! `2 · 127 · 127 < 2¹⁵`. That makes 32 exact multiply-adds three instructions (`vpmaddubsw`,
//! `vpmaddwd` by ones, `vpaddd`) instead of four for 12-bit codes, and reads the weights' bytes
//! without widening them: ~1.3x the throughput on a Zen 3. Still two multiplies per 32, though,
//! so where vector integer multiplies issue on one pipe (a first-generation Zen) the group's
//! extra work makes it ~1.2x slower than the 12-bit product (BENCHMARKS.md). NEON multiplies the
//! signed codes directly: one `sdot` (Armv8.2 dot product, Raspberry Pi 5) where 12-bit codes need
//! two, or `smull`/`smlal` into i16 (4 products of at most `63 · 127` fit) on the Pi 3 and 4. One
//! scale per 64 inputs keeps an outlier dimension from coarsening the whole row, but 7 bits stay
//! less accurate than 12 per row on a real pretrained model (BENCHMARKS.md, "int8 accuracy"),
//! hence not the default.
//! The offset is taken back exactly with the weights' column sums (`Σ u·w = Σ q·w + 64 · Σ w`),
//! which depend on the weights alone and are computed once, when the graph is loaded
//! ([`column_sums`]).
//!
//! **Definition.** For row `m` and channel `c`, with `q` the codes, `xs(m, g)` the activation
//! scales (`[rows, groups]`), `ws(c, g)` the weight scales and `S_g = Σ_{k in g} q(m, k) · w(c, k)`
//! (exact, i32): `y = fma(S_{G-1}, ws·xs, ... fma(S_1, ws·xs, fma(S_0, ws·xs, 0)))`, each `ws·xs`
//! one f32 product and the groups in order, so every implementation gives the same bits:
//! AVX2 (`bertling_a7_avx2`), NEON dot product (`bertling_a7_neon_dot`), NEON
//! (`bertling_a7_neon`), portable Rust.
//!
//! **Asymmetric codes** (format 6, [`quantize_rows_asymmetric`]): a group's 128 codes `u` in
//! `[0, 127]` span its own range `[min(lo, 0), max(hi, 0)]` with an integer zero point `z(m, g)`
//! (`x ≈ (u − z) · xs`), like onnxruntime's uint8 activations but per group: twice the resolution
//! of the symmetric codes for the same kernels, since `u` is still a 7-bit unsigned byte for
//! `vpmaddubsw`. The codes are stored as `q = u − 64` in `[−64, 63]` (the same bytes as above) and
//! the definition becomes `S_g = Σ_{k in g} (q(m, k) + 64 − z(m, g)) · w(c, k)`, still exact in
//! i32 (`|q + 64 − z| <= 127`); symmetric codes are the case `z = 64`. The kernels take the zero
//! point back through the same column sums (`Σ (u − z)·w = Σ u·w − z · Σ w`). On AntiBERTy the
//! asymmetric codes flip 32 top-1 answers where symmetric ones flip 55 (BENCHMARKS.md).
//!
//! The quantizer, the portable and NEON kernels (generic over the middle code, 64 here, 128 for
//! 8-bit codes) and the AVX2 kernel (with `vpdpbusd` in place of its two multiplies where VNNI
//! exists) also serve [`super::a8`]'s 8-bit codes, the default.

use super::packed::{
    packed_index, padded_k, panels, scale_groups, scale_index, PANEL, SCALE_GROUP,
};

/// The largest activation code.
pub const ACT_MAX: i32 = 63;

/// Inputs per activation scale (the weights' [`SCALE_GROUP`]).
pub const ACT_GROUP: usize = SCALE_GROUP;

/// What the AVX2 kernel adds to every code (so codes are unsigned bytes for `vpmaddubsw`).
const AVX2_OFFSET: u8 = 64;

/// Whether [`gemm`] runs the AVX2 kernel (which reads codes offset by 64) on this CPU.
fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        return true;
    }
    false
}

/// Which implementation [`gemm`] uses on this CPU.
pub fn kernel_name() -> &'static str {
    if avx2() {
        return "bertling_a7_avx2";
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        return "bertling_a7_neon_dot";
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("neon") {
        return "bertling_a7_neon";
    }
    "bertling_a7_portable"
}

/// The offset [`quantize_rows`] adds to codes for this CPU's kernel: 64 for AVX2, 0 elsewhere.
pub fn code_offset() -> u8 {
    if avx2() {
        AVX2_OFFSET
    } else {
        0
    }
}

/// Number of activation scales per row.
pub fn groups(k: usize) -> usize {
    scale_groups(k)
}

/// Quantizes each row of `x` (`rows x k`): per group of [`ACT_GROUP`] inputs, codes
/// `q = round_ties_even(v · 63 / max |v|)` in `[-63, 63]` stored as the byte `q + offset`
/// (two's complement when `offset` is 0), rows of [`padded_k`]`(k)` bytes (padding: `q = 0`), and
/// the scale `max |v| / 63` in `scales[row · groups(k) + group]`. A group of zeros gets scale 0;
/// one holding a NaN or an infinity gets zero codes and a NaN scale (see
/// [`super::wide::quantize_row`], which quantizes each group).
///
/// ```
/// use bertling::int8::a7::quantize_rows;
/// let mut codes = [0u8; 4];
/// let mut scales = [0f32; 1];
/// quantize_rows(&[0.5, -1.0, 0.25], 3, 64, &mut codes, &mut scales);
/// assert_eq!(scales[0], 1.0 / 63.0);
/// assert_eq!(codes, [64 + 32, 64 - 63, 64 + 16, 64]); // 31.5 rounds to even, 15.75 to 16
/// ```
pub fn quantize_rows(x: &[f32], k: usize, offset: u8, codes: &mut [u8], scales: &mut [f32]) {
    let (kp, g) = (padded_k(k), groups(k));
    let mut buf = [0i16; ACT_GROUP];
    for ((row, out), sc) in x
        .chunks_exact(k)
        .zip(codes.chunks_exact_mut(kp))
        .zip(scales.chunks_exact_mut(g))
    {
        out[k..].fill(offset);
        for ((part, o), s) in row
            .chunks(ACT_GROUP)
            .zip(out.chunks_mut(ACT_GROUP))
            .zip(sc.iter_mut())
        {
            *s = super::wide::quantize_row(part, ACT_MAX, &mut buf);
            for (o, &q) in o.iter_mut().zip(&buf[..part.len()]) {
                *o = (q as i8 as u8).wrapping_add(offset);
            }
        }
    }
}

/// The zero point of symmetric codes: [`gemm`] without zero points reads every group's as this.
pub const SYMMETRIC_ZERO: u8 = 64;

/// Quantizes each row of `x` (`rows x k`) to asymmetric 7-bit codes per group of [`ACT_GROUP`]
/// inputs: with `lo = min(0, min v)`, `hi = max(0, max v)`, the scale `xs = (hi − lo) / 127`, the
/// zero point `z = round_ties_even(−lo · 127 / (hi − lo))` and `u = clamp(round_ties_even(v · 127
/// / (hi − lo)) + z, 0, 127)`, so `v ≈ (u − z) · xs`; stored as the byte `(u − 64) + offset` (two's
/// complement when `offset` is 0) in rows of [`padded_k`]`(k)` bytes (padding: `u = 64`), the
/// scale in `scales[row · groups(k) + group]` and `z` in `zeros` at the same index. A group of
/// zeros gets scale 0 and `z = 64`; one holding a NaN or an infinity gets `u = 64`, `z = 64` and a
/// NaN scale, which carries the problem to the output.
///
/// ```
/// use bertling::int8::a7::quantize_rows_asymmetric;
/// let (mut codes, mut scales, mut zeros) = ([0u8; 4], [0f32; 1], [0u8; 1]);
/// quantize_rows_asymmetric(&[0.5, -1.0, 0.25], 3, 64, &mut codes, &mut scales, &mut zeros);
/// assert_eq!(scales[0], 1.5 / 127.0);
/// assert_eq!(zeros[0], 85); // round(1.0 · 127 / 1.5) = round(84.67)
/// assert_eq!(codes, [127, 0, 106, 64]); // 42.33 + 85 = 127.33 -> 127; 21.17 + 85 -> 106
/// ```
pub fn quantize_rows_asymmetric(
    x: &[f32],
    k: usize,
    offset: u8,
    codes: &mut [u8],
    scales: &mut [f32],
    zeros: &mut [u8],
) {
    let mid = SYMMETRIC_ZERO;
    let store = |u: u8, _z: u8| u.wrapping_sub(mid).wrapping_add(offset);
    #[allow(unused_mut)]
    let mut fast: Option<GroupQuantizer<'_, u8>> = None;
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    let vector = |part: &[f32], out: &mut [u8]| {
        // SAFETY: the instructions are present (checked below); `out` is as long as `part`.
        unsafe { super::group_simd::group_bytes(part, 127.0, offset.wrapping_sub(mid), out) }
    };
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if super::group_simd::available() {
        fast = Some(&vector);
    }
    quantize_asymmetric(x, k, mid, padded_k(k), codes, scales, zeros, store, fast);
}

/// Quantizes one group of at most [`ACT_GROUP`] values as [`quantize_asymmetric`]'s scalar loop
/// does, writing its codes to `out` (as long as the group) and returning `Some((scale, z))`; or
/// returns `None`, writing nothing, to leave the group to the scalar loop (which it must for a
/// group holding a NaN or an infinity, or only zeros).
pub(super) type GroupQuantizer<'a, T> = &'a dyn Fn(&[f32], &mut [T]) -> Option<(f32, u8)>;

/// A group's values as [`ACT_GROUP`] of them, what a [`GroupQuantizer`] loads: `part` itself when
/// whole, else copied into `buf` after zeros (which leave `min(0, ·)` and `max(0, ·)` unchanged).
#[inline(always)]
pub(super) fn whole_group<'a>(
    part: &'a [f32],
    buf: &'a mut [f32; ACT_GROUP],
) -> &'a [f32; ACT_GROUP] {
    match part.try_into() {
        Ok(whole) => whole,
        Err(_) => {
            buf[..part.len()].copy_from_slice(part);
            buf
        }
    }
}

/// Lets `write` fill [`ACT_GROUP`] codes, of which the first `len` go to `out`: `out` itself when
/// the group is whole, else a buffer copied from.
#[inline(always)]
pub(super) fn write_group<T: Copy + Default>(
    out: &mut [T],
    len: usize,
    write: impl FnOnce(&mut [T; ACT_GROUP]),
) {
    match <&mut [T; ACT_GROUP]>::try_from(&mut out[..len]) {
        Ok(whole) => write(whole),
        Err(_) => {
            let mut buf = [T::default(); ACT_GROUP];
            write(&mut buf);
            out[..len].copy_from_slice(&buf[..len]);
        }
    }
}

/// A group's `(inv, zero, scale)` with `levels` levels from `lo = min(0, min v)` and
/// `hi = max(0, max v)`: `inv = levels / (hi − lo)`, the zero point `zero =
/// clamp(round_ties_even(−lo · inv), 0, levels)` (integral) and `scale = (hi − lo) / levels`;
/// `None` if the range is 0 or not finite.
#[inline(always)]
pub(super) fn group_params(lo: f32, hi: f32, levels: f32) -> Option<(f32, f32, f32)> {
    let range = hi - lo;
    if !range.is_finite() || range == 0.0 {
        return None;
    }
    let inv = levels / range;
    let zero = (-lo * inv).round_ties_even().clamp(0.0, levels);
    Some((inv, zero, range / levels))
}

/// The asymmetric quantizer behind [`quantize_rows_asymmetric`] and
/// [`super::a8::quantize_rows`]: `2 · mid − 1` levels per group (127 for 7-bit codes, 255 for
/// 8-bit ones), each code written as `store(u, z)` into rows of `stride` codes (padding:
/// `store(mid, mid)`), and `z` into `zeros` unless it is empty. `fast`, if given, is tried on each
/// group first and must write the same codes (see [`GroupQuantizer`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn quantize_asymmetric<T: Copy>(
    x: &[f32],
    k: usize,
    mid: u8,
    stride: usize,
    codes: &mut [T],
    scales: &mut [f32],
    zeros: &mut [u8],
    store: impl Fn(u8, u8) -> T,
    fast: Option<GroupQuantizer<'_, T>>,
) {
    let g = groups(k);
    let levels = 2.0 * mid as f32 - 1.0;
    let rows = x.len() / k.max(1);
    for m in 0..rows {
        let (row, out) = (
            &x[m * k..(m + 1) * k],
            &mut codes[m * stride..(m + 1) * stride],
        );
        out[k..].fill(store(mid, mid));
        for gi in 0..g {
            let (k0, k1) = (gi * ACT_GROUP, ((gi + 1) * ACT_GROUP).min(k));
            let (part, o) = (&row[k0..k1], &mut out[k0..k1]);
            let (s, z) = match fast.and_then(|fast| fast(part, o)) {
                Some(done) => done,
                None => quantize_group(part, o, mid, levels, &store),
            };
            scales[m * g + gi] = s;
            if !zeros.is_empty() {
                zeros[m * g + gi] = z;
            }
        }
    }
}

/// [`quantize_asymmetric`]'s scalar loop for one group: its codes into `out`, its `(scale, z)`.
/// A group holding a NaN or an infinity gets a NaN scale, one of zeros scale 0; both get every
/// code and the zero point at `mid`.
fn quantize_group<T: Copy>(
    part: &[f32],
    out: &mut [T],
    mid: u8,
    levels: f32,
    store: impl Fn(u8, u8) -> T,
) -> (f32, u8) {
    let (lo, hi) = min_max(part);
    let Some((inv, zero, scale)) = group_params(lo, hi, levels) else {
        out.fill(store(mid, mid));
        return (if (hi - lo).is_finite() { 0.0 } else { f32::NAN }, mid);
    };
    let z = zero as u8;
    for (o, v) in out.iter_mut().zip(part) {
        let u = ((v * inv).round_ties_even() + zero).clamp(0.0, levels);
        *o = store(u as u8, z);
    }
    (scale, z)
}

/// `(min(0, min v), max(0, max v))` of a group, NaN-propagating (an infinity or a NaN makes the
/// range non-finite). Eight lanes so the compiler may vectorize it; the SIMD quantizers
/// ([`GroupQuantizer`]) compute their own and leave the groups where this matters (non-finite
/// values, zeros) to the scalar loop.
fn min_max(v: &[f32]) -> (f32, f32) {
    let (mut lo, mut hi, mut bad) = ([0f32; 8], [0f32; 8], false);
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            lo[i] = if c[i] < lo[i] { c[i] } else { lo[i] };
            hi[i] = if c[i] > hi[i] { c[i] } else { hi[i] };
        }
        bad |= c.iter().any(|x| !x.is_finite());
    }
    finish(chunks.remainder(), lo, hi, bad)
}

/// The end of [`min_max`]: the remainder, then the lanes folded.
fn finish(rest: &[f32], mut lo: [f32; 8], mut hi: [f32; 8], mut bad: bool) -> (f32, f32) {
    for &x in rest {
        lo[0] = if x < lo[0] { x } else { lo[0] };
        hi[0] = if x > hi[0] { x } else { hi[0] };
        bad |= !x.is_finite();
    }
    if bad {
        return (f32::NAN, f32::NAN);
    }
    (
        lo.iter().fold(0f32, |a, &b| a.min(b)),
        hi.iter().fold(0f32, |a, &b| a.max(b)),
    )
}

/// `64 · Σ_{k in g} w(c, k)` for every channel `c` and group `g` of a packed `[n, k]` weight, laid
/// out like its scales (`[panels, groups, 8]`): what the AVX2 kernel takes back for its offset.
pub fn column_sums(w: &[i8], n: usize, k: usize) -> Vec<i32> {
    let (kp, g) = (padded_k(k), groups(k));
    let mut sums = vec![0i32; panels(n) * g * PANEL];
    // In storage order: a panel's blocks of 4 inputs x 8 channels, one pass over the bytes.
    for (p, panel) in w[..panels(n) * PANEL * kp]
        .chunks_exact(PANEL * kp)
        .enumerate()
    {
        for (t4, block) in panel.chunks_exact(PANEL * 4).enumerate() {
            let at = scale_index(p * PANEL, t4 * 4 / ACT_GROUP, g);
            for (s, codes) in sums[at..at + PANEL].iter_mut().zip(block.chunks_exact(4)) {
                *s += AVX2_OFFSET as i32 * codes.iter().map(|&c| c as i32).sum::<i32>();
            }
        }
    }
    debug_assert!((0..panels(n) * PANEL).all(|c| {
        (0..g).all(|gi| {
            let t = gi * ACT_GROUP..((gi + 1) * ACT_GROUP).min(kp);
            let want: i32 = t.map(|t| w[packed_index(c, t, kp)] as i32).sum();
            sums[scale_index(c, gi, g)] == AVX2_OFFSET as i32 * want
        })
    }));
    sums
}

/// `out[m · ldo + c]` for rows `m < rows` and the channels `c < n` of panels `p0..p1` (see the
/// module doc): `x` holds `rows` rows of [`padded_k`]`(k)` codes from [`quantize_rows`] (then
/// `x_zero` is `None`) or [`quantize_rows_asymmetric`] (then `x_zero` holds its zero points) with
/// [`code_offset`], `x_scale` their scales, `w` the packed weights (`[n, k]`), `w_scale` their
/// scales and `sums` their [`column_sums`].
///
/// ```
/// use bertling::int8::a7::{code_offset, column_sums, gemm, groups, quantize_rows};
/// use bertling::int8::packed::{padded_k, panels, quantize_weight};
/// let x = [0.5f32, -1.0, 0.25];
/// let (mut codes, mut xs) = (vec![0u8; padded_k(3)], vec![0f32; groups(3)]);
/// quantize_rows(&x, 3, code_offset(), &mut codes, &mut xs);
/// let (w, ws) = quantize_weight(&[1.0, 0.0, 0.0, 0.0, 2.0, 2.0], 2, 3, |s| s);
/// let sums = column_sums(&w, 2, 3);
/// let mut y = [0f32; 2];
/// gemm(&codes, &xs, None, &w, &ws, &sums, 3, 2, 1, (0, panels(2)), &mut y, 2);
/// assert!((y[0] - 0.5).abs() < 1e-2 && (y[1] + 1.5).abs() < 2e-2, "{y:?}");
/// ```
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    x: &[u8],
    x_scale: &[f32],
    x_zero: Option<&[u8]>,
    w: &[i8],
    w_scale: &[f32],
    sums: &[i32],
    k: usize,
    n: usize,
    rows: usize,
    (p0, p1): (usize, usize),
    out: &mut [f32],
    ldo: usize,
) {
    let (kp, g) = (padded_k(k), groups(k));
    assert!(x.len() >= rows * kp && x_scale.len() >= rows * g);
    assert!(x_zero.is_none_or(|z| z.len() >= rows * g));
    assert!(w.len() >= panels(n) * PANEL * kp);
    assert!(w_scale.len() >= panels(n) * g * PANEL && sums.len() >= panels(n) * g * PANEL);
    assert!(p0 <= p1 && p1 <= panels(n));
    assert!(rows == 0 || n == 0 || out.len() >= (rows - 1) * ldo + n);
    assert!(ldo >= n);
    if let Some(kernel) = simd() {
        // SAFETY: the kernel's instructions are present (`simd` checked); the asserts above
        // bound every access.
        unsafe {
            kernel(
                x,
                x_scale,
                x_zero,
                w,
                w_scale,
                sums,
                kp,
                n,
                rows,
                (p0, p1),
                out,
                ldo,
            )
        };
        return;
    }
    portable(
        x,
        0,
        x_scale,
        x_zero,
        w,
        w_scale,
        k,
        n,
        rows,
        (p0, p1),
        out,
        ldo,
    )
}

/// A SIMD implementation of [`gemm`]: its arguments, with `k` padded ([`padded_k`]).
pub(super) type Simd = unsafe fn(
    &[u8],
    &[f32],
    Option<&[u8]>,
    &[i8],
    &[f32],
    &[i32],
    usize,
    usize,
    usize,
    (usize, usize),
    &mut [f32],
    usize,
);

/// The SIMD implementation [`gemm`] runs on this CPU, if any (see [`kernel_name`]).
fn simd() -> Option<Simd> {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        return Some(avx2::gemm);
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        return Some(neon::gemm_dot);
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("neon") {
        return Some(neon::gemm);
    }
    None
}

/// The reference implementation (and the fallback), for codes stored with `offset`; otherwise
/// the arguments of [`gemm`].
#[allow(clippy::too_many_arguments)]
pub fn portable(
    x: &[u8],
    offset: u8,
    x_scale: &[f32],
    x_zero: Option<&[u8]>,
    w: &[i8],
    w_scale: &[f32],
    k: usize,
    n: usize,
    rows: usize,
    panels: (usize, usize),
    out: &mut [f32],
    ldo: usize,
) {
    let codes = (x, offset, SYMMETRIC_ZERO);
    portable_mid(
        codes,
        x_scale,
        x_zero,
        (w, w_scale),
        (k, n, rows),
        panels,
        out,
        ldo,
    )
}

/// [`portable`] for codes stored as `q = u − mid` (plus `offset`, wrapping): the definition of
/// [`gemm`] with `S_g = Σ (q + mid − z) · w`, for 7-bit (`mid` 64) and 8-bit (`mid` 128) codes.
#[allow(clippy::too_many_arguments)]
pub(super) fn portable_mid(
    (x, offset, mid): (&[u8], u8, u8),
    x_scale: &[f32],
    x_zero: Option<&[u8]>,
    (w, w_scale): (&[i8], &[f32]),
    (k, n, rows): (usize, usize, usize),
    (p0, p1): (usize, usize),
    out: &mut [f32],
    ldo: usize,
) {
    let (kp, g) = (padded_k(k), groups(k));
    for m in 0..rows {
        let xr = &x[m * kp..(m + 1) * kp];
        for c in p0 * PANEL..(p1 * PANEL).min(n) {
            let mut y = 0f32;
            for gi in 0..g {
                let z = x_zero.map_or(mid, |z| z[m * g + gi]) as i32;
                let sum: i32 = (gi * ACT_GROUP..((gi + 1) * ACT_GROUP).min(kp))
                    .map(|t| {
                        let q = xr[t].wrapping_sub(offset) as i8 as i32;
                        (q + mid as i32 - z) * w[packed_index(c, t, kp)] as i32
                    })
                    .sum();
                let s = w_scale[scale_index(c, gi, g)] * x_scale[m * g + gi];
                y = (sum as f32).mul_add(s, y);
            }
            out[m * ldo + c] = y;
        }
    }
}

/// A [`Simd`] kernel's operands: the codes, scales and zero points of the rows, the packed
/// weights, their scales and column sums.
#[cfg(target_arch = "x86_64")]
pub(super) type Operands<'a> = (
    (&'a [u8], &'a [f32], Option<&'a [u8]>),
    (&'a [i8], &'a [f32], &'a [i32]),
);

/// Pointers to a tile's operands (rows of [`padded_k`] `kp` codes and [`groups`] scales; panels
/// of `PANEL · kp` weights and `groups · PANEL` scales and sums): row `m`'s codes, scales and
/// zero points, panel `p`'s weights, scales and column sums.
///
/// # Safety
/// Row `m` and panel `p` must be within the operands.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::type_complexity)]
#[inline(always)]
pub(super) unsafe fn tile_operands(
    ((x, xs, xz), (w, ws, sums)): Operands<'_>,
    kp: usize,
    (m, p): (usize, usize),
) -> (
    (*const u8, *const f32, Option<*const u8>),
    (*const i8, *const f32, *const i32),
) {
    let groups = kp.div_ceil(ACT_GROUP);
    (
        (
            x.as_ptr().add(m * kp),
            xs.as_ptr().add(m * groups),
            xz.map(|z| z.as_ptr().add(m * groups)),
        ),
        (
            w.as_ptr().add(p * PANEL * kp),
            ws.as_ptr().add(p * groups * PANEL),
            sums.as_ptr().add(p * groups * PANEL),
        ),
    )
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    //! Per group of 4 `k`: each panel's 32 bytes (8 channels x 4 codes) as they are, the row's 4
    //! codes broadcast, `vpmaddubsw` (pairs of products in i16, exact) then `vpmaddwd` by ones (the
    //! 4 products of a channel in i32); 6 rows x 2 panels a tile, 12 accumulators. Per group of 64:
    //! the sums start at what the column sums take back (`−64 · Σw` as stored, or `−z · Σw` for
    //! asymmetric codes) and end in `y = fma(sum, ws · xs, y)`.
    use super::{ACT_GROUP, PANEL};
    use std::arch::x86_64::*;

    const MR: usize = 6;

    /// How [`tile`] multiplies: `vpmaddubsw` + `vpmaddwd` by ones (AVX2, 7-bit codes), one
    /// `vpdpbusd` (any unsigned byte: AVX512-VNNI with VL, or AVX-VNNI), or `SIGN`: signed 8-bit
    /// codes `s = u − 128` on AVX2 alone, `vpmaddubsw(|s|, w · sign(s))` (`vpabsb` once per row,
    /// `vpsignb` per panel) + `vpmaddwd` by ones. `|s| ≤ 128` and `|w| ≤ 127` keep each pair of
    /// products within i16 (`2 · 128 · 127 = 32512`), so it is exact where `vpmaddubsw` on the
    /// unsigned `u` would saturate; the sums start at `(128 − z) · Σw`.
    pub(in super::super) const MADDUBS: u8 = 0;
    pub(in super::super) const DPBUSD_512: u8 = 1;
    pub(in super::super) const DPBUSD_AVX: u8 = 2;
    pub(in super::super) const SIGN: u8 = 3;

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const R: usize, const P: usize, const DOT: u8>(
        x: *const u8,
        xs: *const f32,
        xz: Option<*const u8>,
        w: *const i8,
        ws: *const f32,
        sums: *const i32,
        kp: usize,
        (m, p, n): (usize, usize, usize),
        out: &mut [f32],
        ldo: usize,
    ) {
        let groups = kp.div_ceil(ACT_GROUP);
        let ones = _mm256_set1_epi16(1);
        let mut y = [[_mm256_setzero_ps(); P]; R];
        for gi in 0..groups {
            let (k0, k1) = (gi * ACT_GROUP, ((gi + 1) * ACT_GROUP).min(kp));
            // The sums start from what the offset or zero point takes back: `−64 · Σw`, or
            // `−z · Σw` for asymmetric rows (`vpmaddwd`: Σw = sums / 64 fits in the low i16 of
            // its lane, z in the low i16 of the other's), so the group ends with no correction.
            let mut acc = [[_mm256_setzero_si256(); P]; R];
            for j in 0..P {
                let at = j * groups * PANEL + gi * PANEL;
                let c = _mm256_loadu_si256(sums.add(at) as *const __m256i);
                // `c` is 64 · Σw: Σw = c / 64 exactly.
                let c = match xz {
                    Some(_) => _mm256_srai_epi32(c, 6),
                    None => c,
                };
                let neg = _mm256_sub_epi32(_mm256_setzero_si256(), c);
                for (i, a) in acc.iter_mut().enumerate() {
                    a[j] = match xz {
                        // Signed codes: `−(z − 128) · Σw`, `z − 128` in the low i16 only.
                        Some(z) if DOT == SIGN => _mm256_madd_epi16(
                            neg,
                            _mm256_set1_epi32((*z.add(i * groups + gi) as i16 - 128) as u16 as i32),
                        ),
                        Some(z) => _mm256_madd_epi16(
                            neg,
                            _mm256_set1_epi32(*z.add(i * groups + gi) as i32),
                        ),
                        None => neg,
                    };
                }
            }
            let mut g = k0;
            while g < k1 {
                let mut wv = [_mm256_setzero_si256(); P];
                for (j, v) in wv.iter_mut().enumerate() {
                    *v = _mm256_loadu_si256(w.add(j * PANEL * kp + g * PANEL) as *const __m256i);
                }
                for (i, a) in acc.iter_mut().enumerate() {
                    let xv = _mm256_set1_epi32((x.add(i * kp + g) as *const i32).read_unaligned());
                    let xa = match DOT {
                        SIGN => _mm256_abs_epi8(xv),
                        _ => xv,
                    };
                    for (a, v) in a.iter_mut().zip(&wv) {
                        *a = match DOT {
                            DPBUSD_512 => _mm256_dpbusd_epi32(*a, xv, *v),
                            DPBUSD_AVX => _mm256_dpbusd_avx_epi32(*a, xv, *v),
                            SIGN => {
                                let pairs = _mm256_maddubs_epi16(xa, _mm256_sign_epi8(*v, xv));
                                _mm256_add_epi32(*a, _mm256_madd_epi16(pairs, ones))
                            }
                            _ => {
                                let pairs = _mm256_maddubs_epi16(xv, *v);
                                _mm256_add_epi32(*a, _mm256_madd_epi16(pairs, ones))
                            }
                        };
                    }
                }
                g += 4;
            }
            for j in 0..P {
                let s = _mm256_loadu_ps(ws.add(j * groups * PANEL + gi * PANEL));
                for (i, y) in y.iter_mut().enumerate() {
                    let sum = _mm256_cvtepi32_ps(acc[i][j]);
                    let t = _mm256_mul_ps(s, _mm256_set1_ps(*xs.add(i * groups + gi)));
                    y[j] = _mm256_fmadd_ps(sum, t, y[j]);
                }
            }
        }
        for (i, y) in y.iter().enumerate() {
            let row = &mut out[(m + i) * ldo..];
            for (j, y) in y.iter().enumerate() {
                let pj = p + j;
                if (pj + 1) * PANEL <= n {
                    _mm256_storeu_ps(row.as_mut_ptr().add(pj * PANEL), *y);
                } else {
                    let mut tmp = [0f32; PANEL];
                    _mm256_storeu_ps(tmp.as_mut_ptr(), *y);
                    super::super::packed::store_row(&tmp, pj, n, row);
                }
            }
        }
    }

    macro_rules! driver {
        ($name:ident, $feature:literal, $dot:expr, $mr:expr) => {
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = $feature)]
            pub unsafe fn $name(
                x: &[u8],
                x_scale: &[f32],
                x_zero: Option<&[u8]>,
                w: &[i8],
                w_scale: &[f32],
                sums: &[i32],
                kp: usize,
                n: usize,
                rows: usize,
                panels: (usize, usize),
                out: &mut [f32],
                ldo: usize,
            ) {
                let operands = ((x, x_scale, x_zero), (w, w_scale, sums));
                super::super::packed::tiles::<{ $mr }, 2>(kp, rows, panels, |m, r, p, np| {
                    let ((x, xs, xz), (w, ws, s)) = super::tile_operands(operands, kp, (m, p));
                    let at = (m, p, n);
                    macro_rules! go {
                        ($r:literal) => {
                            if np == 2 {
                                tile::<$r, 2, { $dot }>(x, xs, xz, w, ws, s, kp, at, out, ldo)
                            } else {
                                tile::<$r, 1, { $dot }>(x, xs, xz, w, ws, s, kp, at, out, ldo)
                            }
                        };
                    }
                    match r {
                        6 => go!(6),
                        5 => go!(5),
                        4 => go!(4),
                        3 => go!(3),
                        2 => go!(2),
                        _ => go!(1),
                    }
                });
            }
        };
    }

    driver!(gemm, "avx2,fma", MADDUBS, MR);
    driver!(gemm_sign, "avx2,fma", SIGN, 4);
    driver!(gemm_vnni512, "avx2,fma,avx512vnni,avx512vl", DPBUSD_512, MR);
    driver!(gemm_avxvnni, "avx2,fma,avxvnni", DPBUSD_AVX, MR);
}

#[cfg(target_arch = "aarch64")]
pub(super) mod neon {
    //! Signed codes (offset 0). Without the dot product: per group of 4 `k`, `ld4` splits a
    //! panel's 32 bytes into 4 vectors of 8 channels (one per `k`); `smull` + 3 `smlal` by the row's
    //! broadcast codes sum the 4 products in i16 (`4 · 63 · 127 < 2¹⁵`), `saddw` into two i32x4
    //! accumulators; 4 rows x 8 channels a tile. With it: `sdot` by lane, 16 `k` of a row per
    //! load, 6 rows x 8 channels a tile.
    use super::super::packed::neon::{load16, sdot16};
    use super::{ACT_GROUP, PANEL};
    use std::arch::aarch64::*;

    /// `y += sum · (ws · xs)` for a row's 8 channels, after taking back an asymmetric zero point
    /// `z` (`sum += (MID − z) · Σw`, from the stored `64 · Σw` at `sums`).
    #[inline(always)]
    unsafe fn fma_group<const MID: i32>(
        y: &mut [float32x4_t; 2],
        mut s: [int32x4_t; 2],
        (ws, sums): (*const f32, *const i32),
        xs: f32,
        z: Option<u8>,
    ) {
        if let Some(z) = z {
            let d = MID - z as i32;
            s[0] = vmlaq_n_s32(s[0], vshrq_n_s32::<6>(vld1q_s32(sums)), d);
            s[1] = vmlaq_n_s32(s[1], vshrq_n_s32::<6>(vld1q_s32(sums.add(4))), d);
        }
        let t0 = vmulq_n_f32(vld1q_f32(ws), xs);
        let t1 = vmulq_n_f32(vld1q_f32(ws.add(4)), xs);
        y[0] = vfmaq_f32(y[0], vcvtq_f32_s32(s[0]), t0);
        y[1] = vfmaq_f32(y[1], vcvtq_f32_s32(s[1]), t1);
    }

    #[inline(always)]
    unsafe fn store<const R: usize>(
        y: &[[float32x4_t; 2]; R],
        (m, p, n): (usize, usize, usize),
        out: &mut [f32],
        ldo: usize,
    ) {
        for (i, y) in y.iter().enumerate() {
            let mut tmp = [0f32; PANEL];
            vst1q_f32(tmp.as_mut_ptr(), y[0]);
            vst1q_f32(tmp.as_mut_ptr().add(4), y[1]);
            super::super::packed::store_row(&tmp, p, n, &mut out[(m + i) * ldo..]);
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const R: usize, const MID: i32>(
        x: *const i8,
        (xs, xz): (*const f32, Option<*const u8>),
        w: *const i8,
        (ws, sums): (*const f32, *const i32),
        kp: usize,
        at: (usize, usize, usize),
        out: &mut [f32],
        ldo: usize,
    ) {
        let groups = kp.div_ceil(ACT_GROUP);
        let mut y = [[vdupq_n_f32(0.0); 2]; R];
        for gi in 0..groups {
            let (k0, k1) = (gi * ACT_GROUP, ((gi + 1) * ACT_GROUP).min(kp));
            let mut acc = [[vdupq_n_s32(0); 2]; R];
            let mut g = k0;
            while g < k1 {
                let b = vld4_s8(w.add(g * PANEL));
                for (i, a) in acc.iter_mut().enumerate() {
                    let xr = x.add(i * kp + g);
                    let mut s = vmull_s8(b.0, vdup_n_s8(*xr));
                    s = vmlal_s8(s, b.1, vdup_n_s8(*xr.add(1)));
                    if MID > 64 {
                        // 8-bit codes: two products of at most 128 · 127 fit an i16, not four.
                        a[0] = vaddw_s16(a[0], vget_low_s16(s));
                        a[1] = vaddw_high_s16(a[1], s);
                        s = vmull_s8(b.2, vdup_n_s8(*xr.add(2)));
                    } else {
                        s = vmlal_s8(s, b.2, vdup_n_s8(*xr.add(2)));
                    }
                    s = vmlal_s8(s, b.3, vdup_n_s8(*xr.add(3)));
                    a[0] = vaddw_s16(a[0], vget_low_s16(s));
                    a[1] = vaddw_high_s16(a[1], s);
                }
                g += 4;
            }
            for (i, (a, y)) in acc.iter().zip(y.iter_mut()).enumerate() {
                let at = (ws.add(gi * PANEL), sums.add(gi * PANEL));
                let z = xz.map(|z| *z.add(i * groups + gi));
                fma_group::<MID>(y, *a, at, *xs.add(i * groups + gi), z);
            }
        }
        store::<R>(&y, at, out, ldo);
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_dot<const R: usize, const MID: i32>(
        x: *const i8,
        (xs, xz): (*const f32, Option<*const u8>),
        w: *const i8,
        (ws, sums): (*const f32, *const i32),
        kp: usize,
        at: (usize, usize, usize),
        out: &mut [f32],
        ldo: usize,
    ) {
        let groups = kp.div_ceil(ACT_GROUP);
        let mut y = [[vdupq_n_f32(0.0); 2]; R];
        for gi in 0..groups {
            let (k0, k1) = (gi * ACT_GROUP, ((gi + 1) * ACT_GROUP).min(kp));
            let mut acc = [[vdupq_n_s32(0); 2]; R];
            let mut g = k0;
            while g < k1 {
                let steps = ((k1 - g) / 4).min(4);
                let wv = load16(w, g, steps);
                for (i, a) in acc.iter_mut().enumerate() {
                    let xr = x.add(i * kp + g);
                    let xv = if steps == 4 {
                        vld1q_s8(xr)
                    } else {
                        let mut buf = [0i8; 16];
                        std::ptr::copy_nonoverlapping(xr, buf.as_mut_ptr(), 4 * steps);
                        vld1q_s8(buf.as_ptr())
                    };
                    sdot16(a, &wv, xv);
                }
                g += 16;
            }
            for (i, (a, y)) in acc.iter().zip(y.iter_mut()).enumerate() {
                let at = (ws.add(gi * PANEL), sums.add(gi * PANEL));
                let z = xz.map(|z| *z.add(i * groups + gi));
                fma_group::<MID>(y, *a, at, *xs.add(i * groups + gi), z);
            }
        }
        store::<R>(&y, at, out, ldo);
    }

    macro_rules! driver {
        ($name:ident, $feature:literal, $tile:ident, $mid:literal, $mr:literal, [$($r:literal),*]) => {
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = $feature)]
            pub unsafe fn $name(
                x: &[u8],
                x_scale: &[f32],
                x_zero: Option<&[u8]>,
                w: &[i8],
                w_scale: &[f32],
                sums: &[i32],
                kp: usize,
                n: usize,
                rows: usize,
                panels: (usize, usize),
                out: &mut [f32],
                ldo: usize,
            ) {
                let groups = kp.div_ceil(ACT_GROUP);
                let (xp, xsp, wp, wsp) =
                    (x.as_ptr() as *const i8, x_scale.as_ptr(), w.as_ptr(), w_scale.as_ptr());
                super::super::packed::tiles::<$mr, 1>(kp, rows, panels, |m, r, p, _| {
                    let x = xp.add(m * kp);
                    let xs = (xsp.add(m * groups), x_zero.map(|z| z.as_ptr().add(m * groups)));
                    let w = wp.add(p * PANEL * kp);
                    let ws = (wsp.add(p * groups * PANEL), sums.as_ptr().add(p * groups * PANEL));
                    let at = (m, p, n);
                    match r {
                        $($r => $tile::<$r, $mid>(x, xs, w, ws, kp, at, out, ldo),)*
                        _ => $tile::<1, $mid>(x, xs, w, ws, kp, at, out, ldo),
                    }
                });
            }
        };
    }

    driver!(gemm, "neon", tile, 64, 4, [4, 3, 2]);
    driver!(gemm_dot, "neon,dotprod", tile_dot, 64, 6, [6, 5, 4, 3, 2]);
    driver!(gemm8, "neon", tile, 128, 4, [4, 3, 2]);
    driver!(gemm8_dot, "neon,dotprod", tile_dot, 128, 6, [6, 5, 4, 3, 2]);
}

#[cfg(test)]
mod tests {
    use super::super::packed::{pack, quantize_weight};
    use super::*;

    use super::super::lcg;

    /// The definition, from row-major weight codes and signed activation codes.
    fn reference(
        q: &[i32],
        xs: &[f32],
        codes: &[i8],
        ws: &[f32],
        (k, n, rows): (usize, usize, usize),
    ) -> Vec<f32> {
        let g = groups(k);
        let mut out = vec![0f32; rows * n];
        for m in 0..rows {
            for c in 0..n {
                let mut y = 0f32;
                for gi in 0..g {
                    let sum: i32 = (gi * ACT_GROUP..((gi + 1) * ACT_GROUP).min(k))
                        .map(|t| q[m * k + t] * codes[c * k + t] as i32)
                        .sum();
                    y = (sum as f32).mul_add(ws[scale_index(c, gi, g)] * xs[m * g + gi], y);
                }
                out[m * n + c] = y;
            }
        }
        out
    }

    #[test]
    fn every_kernel_gives_the_definition_exactly() {
        let mut seed = 7u64;
        for &(k, n, rows) in &[
            (768, 64, 13),
            (3, 2, 1),
            (130, 19, 7),
            (64, 8, 6),
            (200, 33, 12),
            (1000, 24, 2),
        ] {
            let codes: Vec<i8> = (0..n * k)
                .map(|_| (lcg(&mut seed) % 255) as i32 - 127)
                .map(|v| v as i8)
                .collect();
            let w = pack(&codes, n, k);
            let ws: Vec<f32> = (0..super::super::packed::scales_len(n, k))
                .map(|_| (lcg(&mut seed) % 1000) as f32 * 1e-5)
                .collect();
            let x: Vec<f32> = (0..rows * k)
                .map(|_| (lcg(&mut seed) % 2001) as f32 / 100.0 - 10.0)
                .collect();
            let (kp, g) = (padded_k(k), groups(k));
            let sums = column_sums(&w, n, k);
            for (offset, asymmetric) in [(0u8, false), (64, false), (0, true), (64, true)] {
                let mut xq = vec![0u8; rows * kp];
                let mut xs = vec![0f32; rows * g];
                let mut xz = vec![0u8; rows * g];
                if asymmetric {
                    quantize_rows_asymmetric(&x, k, offset, &mut xq, &mut xs, &mut xz);
                } else {
                    quantize_rows(&x, k, offset, &mut xq, &mut xs);
                }
                let zeros = asymmetric.then_some(&xz[..]);
                // The effective codes of the definition: q + 64 − z, with z = 64 if symmetric.
                let q: Vec<i32> = (0..rows * k)
                    .map(|i| {
                        let (m, t) = (i / k, i % k);
                        let z = zeros.map_or(SYMMETRIC_ZERO, |z| z[m * g + t / ACT_GROUP]);
                        let q = xq[m * kp + t].wrapping_sub(offset) as i8 as i32;
                        assert!((-64..=63).contains(&q), "stored code {q}");
                        q + SYMMETRIC_ZERO as i32 - z as i32
                    })
                    .collect();
                let bound = if asymmetric { 127 } else { ACT_MAX };
                assert!(q.iter().all(|v| v.abs() <= bound));
                let want = reference(&q, &xs, &codes, &ws, (k, n, rows));
                let mut got = vec![f32::NAN; rows * n];
                portable(
                    &xq,
                    offset,
                    &xs,
                    zeros,
                    &w,
                    &ws,
                    k,
                    n,
                    rows,
                    (0, panels(n)),
                    &mut got,
                    n,
                );
                let what = format!("offset {offset}, asymmetric {asymmetric}, {k}x{n}x{rows}");
                assert_eq!(got, want, "portable, {what}");
                if offset == code_offset() {
                    // Split across two column ranges, as threads do.
                    let mut got = vec![f32::NAN; rows * n];
                    let mid = panels(n) / 2;
                    gemm(
                        &xq,
                        &xs,
                        zeros,
                        &w,
                        &ws,
                        &sums,
                        k,
                        n,
                        rows,
                        (0, mid),
                        &mut got,
                        n,
                    );
                    gemm(
                        &xq,
                        &xs,
                        zeros,
                        &w,
                        &ws,
                        &sums,
                        k,
                        n,
                        rows,
                        (mid, panels(n)),
                        &mut got,
                        n,
                    );
                    assert_eq!(got, want, "{}, {what}", kernel_name());
                }
            }
        }
    }

    #[test]
    fn asymmetric_codes_span_each_group_and_reconstruct_it() {
        let mut seed = 3u64;
        // A GELU-like row: mostly small, a long positive tail; one group of zeros, one with a NaN.
        let mut x: Vec<f32> = (0..256)
            .map(|_| (lcg(&mut seed) % 1000) as f32 / 1000.0 * 3.0 - 0.17)
            .collect();
        x[128..192].fill(0.0);
        x[200] = f32::NAN;
        let (mut q, mut s, mut z) = (vec![0u8; 256], vec![0f32; 4], vec![0u8; 4]);
        quantize_rows_asymmetric(&x, 256, 64, &mut q, &mut s, &mut z);
        let group = &x[..64];
        let (lo, hi) = group
            .iter()
            .fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
        assert_eq!(s[0], (hi - lo) / 127.0);
        // Every value within half a step of its code, and both ends of the range used.
        for (v, &u) in group.iter().zip(&q[..64]) {
            let back = (u as f32 - z[0] as f32) * s[0];
            assert!(
                (back - v).abs() <= s[0] * 0.5 + 1e-6,
                "{v} -> {u} -> {back}"
            );
        }
        assert!(q[..64].contains(&127) && q[..64].iter().any(|&u| u <= 1));
        // Twice the resolution of symmetric codes on this skewed group.
        let (mut qs, mut ss) = (vec![0u8; 256], vec![0f32; 4]);
        quantize_rows(&x, 256, 64, &mut qs, &mut ss);
        assert!(s[0] < ss[0] * 0.6, "{} vs {}", s[0], ss[0]);
        assert_eq!((s[2], z[2]), (0.0, SYMMETRIC_ZERO));
        assert!(q[128..192].iter().all(|&u| u == 64));
        assert!(s[3].is_nan() && z[3] == SYMMETRIC_ZERO && q[192..].iter().all(|&u| u == 64));
    }

    #[test]
    fn the_vector_group_quantizer_equals_the_scalar_loop() {
        let mut seed = 23u64;
        for mid in [SYMMETRIC_ZERO, super::super::a8::MID] {
            let levels = 2.0 * mid as f32 - 1.0;
            for len in [1, 7, 8, 9, 31, 63, 64] {
                for case in 0..8 {
                    let mut v: Vec<f32> = (0..len)
                        .map(|_| (lcg(&mut seed) % 2001) as f32 / 100.0 - 10.0)
                        .collect();
                    let at = lcg(&mut seed) as usize % len;
                    match case {
                        1 => v.iter_mut().for_each(|x| *x = x.abs()),
                        2 => v.iter_mut().for_each(|x| *x = -0.0 * x.abs()),
                        3 => v[at] = f32::INFINITY,
                        4 => v[at] = f32::NAN,
                        5 => v[at] = f32::NEG_INFINITY,
                        6 => v.fill(0.0),
                        // Whole and half steps of the group's own range: rounding ties.
                        7 => v
                            .iter_mut()
                            .enumerate()
                            .for_each(|(i, x)| *x = (i as f32 - 20.0) * 0.5 * (63.0 / levels)),
                        _ => {}
                    }
                    let mut want = vec![0u8; len];
                    let (ws, wz) = quantize_group(&v, &mut want, mid, levels, |u, _| u);
                    // Non-finite values (NaN scale) or only zeros (scale 0).
                    let scalar_only = ws.is_nan() || ws == 0.0;
                    assert_eq!(
                        scalar_only,
                        (3..7).contains(&case) || v.iter().all(|x| *x == 0.0)
                    );
                    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
                    if super::super::group_simd::available() {
                        let mut got = vec![7u8; len];
                        // SAFETY: the instructions are present; `got` is as long as `v`.
                        let done = unsafe {
                            super::super::group_simd::group_bytes(&v, levels, 0, &mut got)
                        };
                        match done {
                            Some((s, z)) => {
                                assert!(!scalar_only, "{case}: must be declined: {v:?}");
                                assert_eq!((s.to_bits(), z), (ws.to_bits(), wz), "{v:?}");
                                assert_eq!(got, want, "{v:?}");
                            }
                            None => {
                                assert!(scalar_only, "{case}: declined: {v:?}");
                                assert!(got.iter().all(|&u| u == 7), "written though declined");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn codes_are_7_bit_per_group_and_sums_fit() {
        // A huge value only coarsens its own group.
        let mut x = vec![0.01f32; 128];
        x[3] = 1000.0;
        let (mut q, mut s) = (vec![0u8; 128], vec![0f32; 2]);
        quantize_rows(&x, 128, 0, &mut q, &mut s);
        assert_eq!(s[0], 1000.0 / 63.0);
        assert_eq!(s[1], 0.01 / 63.0);
        assert!(q[64..].iter().all(|&c| c == 63));
        // The worst vpmaddubsw pair cannot saturate.
        assert!(2 * (ACT_MAX + AVX2_OFFSET as i32) * 127 <= i16::MAX as i32);
        let (w, _) = quantize_weight(&[1.0; 64], 1, 64, |s| s);
        assert_eq!(column_sums(&w, 1, 64)[0], 64 * 64 * 127);
    }
}
