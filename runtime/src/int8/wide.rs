//! Kernels for wide activation codes: `acc[m][n] = Σ_k x[m][k] · w[n][k]` with activations as i16
//! codes in `[-qmax, qmax]` (12 bits by default, see [`act_max`]) against the same i8 weight codes
//! `[N, K]` as [`super::kernel`], exactly, in i32.
//!
//! Why: with 8-bit activations, the error of a per-token activation scale (set by the token's
//! largest value) compounds with the weights' error; on a real pretrained BERT (AntiBERTy) 12-bit
//! activations removed most of the int8 top-1 flips that 8-bit ones caused (BENCHMARKS.md, "int8
//! accuracy"), at the same multiply throughput on AVX2: `vpmaddwd` makes 16 exact products an
//! instruction from i16 pairs, the same rate as the 8-bit path's `vpmaddubsw` + `vpmaddwd`.
//!
//! Exactness: every partial sum is bounded by `K · qmax · 127`, which [`act_max`] keeps below
//! `i32::MAX`, so every implementation gives the same i32 sums (and so the same f32 outputs) on every
//! CPU. Implementations: AVX2 (`bertling_a16_avx2`), NEON `smlal` on i16 (`bertling_a16_neon`),
//! portable Rust elsewhere.

/// The default largest activation code: 12-bit codes.
pub const ACT_MAX_DEFAULT: i32 = 2047;

/// The largest activation code allowed for `k` accumulated products with i8 weight codes in
/// `[-127, 127]`: `min(wanted, i32::MAX / (127 · k))`, so no i32 sum can overflow.
///
/// ```
/// use bertling::int8::wide::act_max;
/// assert_eq!(act_max(768, 2047), 2047);
/// assert!(act_max(1 << 20, 2047) * 127 * (1 << 20) <= i32::MAX);
/// ```
pub fn act_max(k: usize, wanted: i32) -> i32 {
    let bound = i32::MAX as i64 / (127 * k.max(1) as i64);
    wanted.min(bound.min(i16::MAX as i64) as i32).max(1)
}

/// Which implementation [`gemm`] uses on this CPU.
pub fn kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        return "bertling_a16_avx2";
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("neon") {
        return "bertling_a16_neon";
    }
    "bertling_a16_portable"
}

/// Quantizes each row of `x` (`rows x k`) to i16 codes in `[-qmax, qmax]`, one scale per row
/// (`x ≈ code · scale`, `scale = max |x| / qmax`); see [`quantize_row`].
pub fn quantize_rows(x: &[f32], k: usize, qmax: i32, codes: &mut [i16], scales: &mut [f32]) {
    for ((row, out), scale) in x.chunks_exact(k).zip(codes.chunks_exact_mut(k)).zip(scales) {
        *scale = quantize_row(row, qmax, out);
    }
}

/// Quantizes one row to codes `round_ties_even(v · qmax / max |v|)` (in `[-qmax, qmax]`) and returns
/// its scale `max |v| / qmax`. A row of zeros gets zero codes and scale 0; a row holding a NaN or an
/// infinity gets zero codes and a NaN scale, which carries the problem to the output instead of
/// hiding it. Vectorized on AVX2 and NEON, with results identical to the portable loop.
///
/// ```
/// use bertling::int8::wide::quantize_row;
/// let mut codes = [0i16; 3];
/// assert_eq!(quantize_row(&[0.5, -1.0, 0.25], 2047, &mut codes), 1.0 / 2047.0);
/// assert_eq!(codes, [1024, -2047, 512]); // 1023.5 rounds to even
/// assert!(quantize_row(&[1.0, f32::NAN, 0.0], 2047, &mut codes).is_nan());
/// ```
pub fn quantize_row(row: &[f32], qmax: i32, out: &mut [i16]) -> f32 {
    let out = &mut out[..row.len()];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present; `out` is as long as `row`.
        return unsafe { avx2::quantize_row(row, qmax as f32, out) };
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("neon") {
        // SAFETY: NEON is present; `out` is as long as `row`.
        return unsafe { neon::quantize_row(row, qmax as f32, out) };
    }
    let q = qmax as f32;
    if row.iter().any(|v| !v.is_finite()) {
        out.fill(0);
        return f32::NAN;
    }
    let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    finish_row(row, q, amax, out, 0)
}

/// The scalar end of [`quantize_row`]: codes from position `from` on, given the row's `amax`
/// (finite); returns the scale.
#[inline(always)]
fn finish_row(row: &[f32], q: f32, amax: f32, out: &mut [i16], from: usize) -> f32 {
    if amax == 0.0 {
        out.fill(0);
        return 0.0;
    }
    let inv = q / amax;
    for (c, v) in out[from..].iter_mut().zip(&row[from..]) {
        // |v · inv| <= q up to one rounding, which cannot reach q + 0.5.
        *c = (v * inv).round_ties_even() as i16;
    }
    amax / q
}

/// `out[m * ldo + n] = (Σ_k x[m][k] · w[n][k]) · x_scale[m] · w_scale[n]` for `m < rows`,
/// `n0 <= n < n1`: x is `rows x k` i16 codes within [`act_max`]`(k, ..)`, w is `N x k` i8 codes.
///
/// ```
/// use bertling::int8::wide::{gemm, quantize_rows};
/// let x = [0.5f32, -1.0, 0.25];
/// let (mut codes, mut scale) = ([0i16; 3], [0f32; 1]);
/// quantize_rows(&x, 3, 2047, &mut codes, &mut scale);
/// let w = [127i8, 0, 0, 0, 127, 127];
/// let w_scale = [1.0 / 127.0, 2.0 / 127.0]; // W = [[1, 0, 0], [0, 2, 2]]
/// let mut y = [0f32; 2];
/// gemm(&codes, &scale, &w, &w_scale, 3, 1, (0, 2), &mut y, 2);
/// assert!((y[0] - 0.5).abs() < 1e-3 && (y[1] + 1.5).abs() < 1e-3, "{y:?}");
/// ```
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    x: &[i16],
    x_scale: &[f32],
    w: &[i8],
    w_scale: &[f32],
    k: usize,
    rows: usize,
    (n0, n1): (usize, usize),
    out: &mut [f32],
    ldo: usize,
) {
    assert!(x.len() >= rows * k && x_scale.len() >= rows);
    assert!(w.len() >= n1 * k && w_scale.len() >= n1 && n0 <= n1);
    assert!(rows == 0 || out.len() >= (rows - 1) * ldo + n1);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present; the asserts above bound every access.
        unsafe { avx2::gemm(x, x_scale, w, w_scale, k, rows, (n0, n1), out, ldo) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("neon") {
        // SAFETY: NEON is present; the asserts above bound every access.
        unsafe { neon::gemm(x, x_scale, w, w_scale, k, rows, (n0, n1), out, ldo) };
        return;
    }
    portable(x, x_scale, w, w_scale, k, rows, (n0, n1), out, ldo)
}

/// The reference implementation (and the fallback): the row-major reference, generic over the
/// activation codes' type.
pub use super::kernel::portable;

/// How many weight rows (output channels) one pass over a block of activation rows visits: about
/// 160 KiB of weights, so they stay in L2 while the activation rows stay in L1.
fn columns_per_pass(k: usize) -> usize {
    ((160 << 10) / k.max(1)).clamp(8, 1 << 16) / 4 * 4
}

/// Runs `tile(m, n, mb, nb)` over `rows x (n0..n1)` in tiles of `MB x NB` (with 1-row and
/// 1-column tails), weight-block by weight-block so that each block of weights is reused from
/// cache by every block of rows.
#[inline(always)]
fn tiles<const MB: usize, const NB: usize>(
    k: usize,
    rows: usize,
    (n0, n1): (usize, usize),
    mut tile: impl FnMut(usize, usize, usize, usize),
) {
    let pass = columns_per_pass(k);
    let mut c0 = n0;
    while c0 < n1 {
        let c1 = (c0 + pass).min(n1);
        let mut m = 0;
        while m < rows {
            let mb = if m + MB <= rows { MB } else { 1 };
            let mut n = c0;
            while n < c1 {
                let nb = if n + NB <= c1 { NB } else { 1 };
                tile(m, n, mb, nb);
                n += nb;
            }
            m += mb;
        }
        c0 = c1;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! Dot products 16 codes at a time: weights widened from i8 with `vpmovsxbw`, `vpmaddwd`
    //! against the i16 activations into i32 lanes; 4 rows x 2 output channels a tile. And the row
    //! quantizer (`vcvtps2dq` rounds to nearest even, like `round_ties_even`).
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2")]
    pub unsafe fn quantize_row(row: &[f32], q: f32, out: &mut [i16]) -> f32 {
        let len = row.len();
        let body = len / 16 * 16;
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
        let inf = _mm256_set1_ps(f32::INFINITY);
        let (mut m, mut bad) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let p = row.as_ptr();
        let mut i = 0;
        while i < len / 8 * 8 {
            let a = _mm256_and_ps(_mm256_loadu_ps(p.add(i)), abs);
            m = _mm256_max_ps(m, a);
            // Not less than infinity: an infinity or a NaN.
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, inf, _CMP_NLT_UQ));
            i += 8;
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), m);
        let mut amax = lanes.iter().fold(0f32, |a, &b| a.max(b));
        let mut finite = _mm256_movemask_ps(bad) == 0;
        for v in &row[i..] {
            finite &= v.is_finite();
            amax = amax.max(v.abs());
        }
        if !finite {
            out.fill(0);
            return f32::NAN;
        }
        if amax == 0.0 {
            out.fill(0);
            return 0.0;
        }
        let inv = _mm256_set1_ps(q / amax);
        let o = out.as_mut_ptr();
        let mut i = 0;
        while i < body {
            let a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p.add(i)), inv));
            let b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p.add(i + 8)), inv));
            // packs works per 128-bit half: [a0-3 b0-3 | a4-7 b4-7]; put the halves in order.
            let c = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0b11_01_10_00);
            _mm256_storeu_si256(o.add(i) as *mut __m256i, c);
            i += 16;
        }
        super::finish_row(row, q, amax, out, body)
    }

    #[inline(always)]
    unsafe fn hsum(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const MB: usize, const NB: usize>(
        x: *const i16,
        w: *const i8,
        k: usize,
        x_scale: *const f32,
        w_scale: *const f32,
        out: *mut f32,
        ldo: usize,
    ) {
        let mut acc = [[_mm256_setzero_si256(); NB]; MB];
        let body = k / 16 * 16;
        let mut kk = 0;
        while kk < body {
            let mut wv = [_mm256_setzero_si256(); NB];
            for (j, v) in wv.iter_mut().enumerate() {
                // A tied projection runs on a row or two against the whole vocabulary: reading
                // the weights is the work, and the hardware prefetcher does not keep up with two
                // interleaved rows (a 30522 x 768 product at one row: 2.9 -> 1.9 ms).
                // (wrapping: the address may lie past the weights; a prefetch never faults)
                _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(j * k + kk + 1024));
                *v = _mm256_cvtepi8_epi16(_mm_loadu_si128(w.add(j * k + kk) as *const __m128i));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let xv = _mm256_loadu_si256(x.add(i * k + kk) as *const __m256i);
                for (j, a) in row.iter_mut().enumerate() {
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(xv, wv[j]));
                }
            }
            kk += 16;
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, a) in row.iter().enumerate() {
                let mut s = hsum(*a);
                for t in body..k {
                    s += *x.add(i * k + t) as i32 * *w.add(j * k + t) as i32;
                }
                *out.add(i * ldo + j) = s as f32 * *x_scale.add(i) * *w_scale.add(j);
            }
        }
    }

    /// One activation row against the channels `0..n` of `w`, channel after channel: the weights
    /// are then read as one sequential stream, one prefetch per cache line. This is the tied
    /// projection at one or two masks, where reading the weights is the whole cost: a
    /// 1 x 768 x 30522 product took ~2.5 ms with 2 interleaved channels and ~1.9 ms this way
    /// (plain streaming of the same 23 MB: ~1.5 ms).
    #[inline(always)]
    unsafe fn row(
        x: *const i16,
        w: *const i8,
        k: usize,
        n: usize,
        scales: (f32, *const f32),
        out: *mut f32,
    ) {
        let body = k / 16 * 16;
        for c in 0..n {
            let wc = w.add(c * k);
            let (mut a0, mut a1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            let mut kk = 0;
            while kk + 32 <= body {
                if kk % 64 == 0 {
                    // wrapping: the address may lie past the weights; a prefetch never faults
                    _mm_prefetch::<_MM_HINT_T0>(wc.wrapping_add(kk + 1024));
                }
                let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wc.add(kk) as *const __m128i));
                let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wc.add(kk + 16) as *const __m128i));
                let x0 = _mm256_loadu_si256(x.add(kk) as *const __m256i);
                let x1 = _mm256_loadu_si256(x.add(kk + 16) as *const __m256i);
                a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(x0, w0));
                a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(x1, w1));
                kk += 32;
            }
            if kk < body {
                let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wc.add(kk) as *const __m128i));
                let x0 = _mm256_loadu_si256(x.add(kk) as *const __m256i);
                a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(x0, w0));
            }
            let mut s = hsum(_mm256_add_epi32(a0, a1));
            for t in body..k {
                s += *x.add(t) as i32 * *wc.add(t) as i32;
            }
            *out.add(c) = s as f32 * scales.0 * *scales.1.add(c);
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2")]
    pub unsafe fn gemm(
        x: &[i16],
        x_scale: &[f32],
        w: &[i8],
        w_scale: &[f32],
        k: usize,
        rows: usize,
        cols: (usize, usize),
        out: &mut [f32],
        ldo: usize,
    ) {
        let (xp, wp, xs, ws, op) = (
            x.as_ptr(),
            w.as_ptr(),
            x_scale.as_ptr(),
            w_scale.as_ptr(),
            out.as_mut_ptr(),
        );
        super::tiles::<4, 2>(k, rows, cols, |m, n, mb, nb| {
            let (x, w) = (xp.add(m * k), wp.add(n * k));
            let (xs, ws, o) = (xs.add(m), ws.add(n), op.add(m * ldo + n));
            match (mb, nb) {
                (4, 2) => tile::<4, 2>(x, w, k, xs, ws, o, ldo),
                (4, _) => tile::<4, 1>(x, w, k, xs, ws, o, ldo),
                _ => row(x, w, k, nb, (*xs, ws), o),
            }
        });
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    //! Dot products 8 codes at a time: weights widened from i8 with `sxtl`, `smlal`/`smlal2` on
    //! i16 into i32 lanes; 4 rows x 4 output channels a tile. And the row quantizer (`fcvtns`
    //! rounds to nearest even, like `round_ties_even`).
    use std::arch::aarch64::*;

    #[target_feature(enable = "neon")]
    pub unsafe fn quantize_row(row: &[f32], q: f32, out: &mut [i16]) -> f32 {
        let len = row.len();
        let body = len / 8 * 8;
        let p = row.as_ptr();
        // `fmax` propagates NaN, so a NaN anywhere makes the maximum NaN.
        let mut m = vdupq_n_f32(0.0);
        let mut i = 0;
        while i < len / 4 * 4 {
            m = vmaxq_f32(m, vabsq_f32(vld1q_f32(p.add(i))));
            i += 4;
        }
        let mut amax = vmaxvq_f32(m);
        for v in &row[i..] {
            amax = if v.is_nan() {
                f32::NAN
            } else {
                amax.max(v.abs())
            };
        }
        if !amax.is_finite() {
            out.fill(0);
            return f32::NAN;
        }
        if amax == 0.0 {
            out.fill(0);
            return 0.0;
        }
        let inv = vdupq_n_f32(q / amax);
        let o = out.as_mut_ptr();
        let mut i = 0;
        while i < body {
            let a = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(p.add(i)), inv));
            let b = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(p.add(i + 4)), inv));
            vst1q_s16(o.add(i), vcombine_s16(vqmovn_s32(a), vqmovn_s32(b)));
            i += 8;
        }
        super::finish_row(row, q, amax, out, body)
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const MB: usize, const NB: usize>(
        x: *const i16,
        w: *const i8,
        k: usize,
        x_scale: *const f32,
        w_scale: *const f32,
        out: *mut f32,
        ldo: usize,
    ) {
        let mut acc = [[vdupq_n_s32(0); NB]; MB];
        let body = k / 8 * 8;
        let mut kk = 0;
        while kk < body {
            let mut wv = [vdupq_n_s16(0); NB];
            for (j, v) in wv.iter_mut().enumerate() {
                *v = vmovl_s8(vld1_s8(w.add(j * k + kk)));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let xv = vld1q_s16(x.add(i * k + kk));
                for (j, a) in row.iter_mut().enumerate() {
                    *a = vmlal_s16(*a, vget_low_s16(xv), vget_low_s16(wv[j]));
                    *a = vmlal_high_s16(*a, xv, wv[j]);
                }
            }
            kk += 8;
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, a) in row.iter().enumerate() {
                let mut s = vaddvq_s32(*a);
                for t in body..k {
                    s += *x.add(i * k + t) as i32 * *w.add(j * k + t) as i32;
                }
                *out.add(i * ldo + j) = s as f32 * *x_scale.add(i) * *w_scale.add(j);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "neon")]
    pub unsafe fn gemm(
        x: &[i16],
        x_scale: &[f32],
        w: &[i8],
        w_scale: &[f32],
        k: usize,
        rows: usize,
        cols: (usize, usize),
        out: &mut [f32],
        ldo: usize,
    ) {
        let (xp, wp, xs, ws, op) = (
            x.as_ptr(),
            w.as_ptr(),
            x_scale.as_ptr(),
            w_scale.as_ptr(),
            out.as_mut_ptr(),
        );
        super::tiles::<4, 4>(k, rows, cols, |m, n, mb, nb| {
            let (x, w) = (xp.add(m * k), wp.add(n * k));
            let (xs, ws, o) = (xs.add(m), ws.add(n), op.add(m * ldo + n));
            match (mb, nb) {
                (4, 4) => tile::<4, 4>(x, w, k, xs, ws, o, ldo),
                (4, _) => tile::<4, 1>(x, w, k, xs, ws, o, ldo),
                (_, 4) => tile::<1, 4>(x, w, k, xs, ws, o, ldo),
                _ => tile::<1, 1>(x, w, k, xs, ws, o, ldo),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::lcg;

    #[test]
    fn the_picked_kernel_equals_the_portable_one_exactly() {
        let mut seed = 11;
        for &(rows, k, n) in &[
            (1, 1, 1),
            (3, 17, 5),
            (2, 16, 4),
            (5, 768, 9),
            (16, 40, 33),
            (7, 3, 2),
            (9, 3072, 7),
            (6, 900, 300),
            (1, 48, 3),
            (2, 80, 5),
            (1, 768, 70),
        ] {
            let qmax = act_max(k, ACT_MAX_DEFAULT);
            let x: Vec<i16> = (0..rows * k)
                .map(|_| (lcg(&mut seed) % (2 * qmax as u32 + 1)) as i32 - qmax)
                .map(|v| v as i16)
                .collect();
            let w: Vec<i8> = (0..n * k)
                .map(|_| ((lcg(&mut seed) % 255) as i32 - 127) as i8)
                .collect();
            let xs: Vec<f32> = (0..rows).map(|i| 0.5 + i as f32).collect();
            let ws: Vec<f32> = (0..n).map(|j| 0.25 * (j + 1) as f32).collect();
            let mut a = vec![0f32; rows * n];
            let mut b = vec![0f32; rows * n];
            gemm(&x, &xs, &w, &ws, k, rows, (0, n), &mut a, n);
            portable(&x, &xs, &w, &ws, k, rows, (0, n), &mut b, n);
            assert_eq!(a, b, "{rows}x{k}x{n} with {}", kernel_name());
            // A column range writes only its columns.
            let mut c = vec![-1f32; rows * n];
            gemm(&x, &xs, &w, &ws, k, rows, (n / 3, n), &mut c, n);
            for m in 0..rows {
                for j in 0..n {
                    let want = if j >= n / 3 { b[m * n + j] } else { -1.0 };
                    assert_eq!(c[m * n + j], want, "{rows}x{k}x{n} at {m},{j}");
                }
            }
        }
    }

    #[test]
    fn extreme_codes_do_not_overflow() {
        for k in [768usize, 3072, 70_000] {
            let q = act_max(k, i16::MAX as i32);
            let x = vec![-(q as i16); k];
            let w = vec![-127i8; 4 * k];
            let mut out = vec![0f32; 4];
            gemm(&x, &[1.0], &w, &[1.0; 4], k, 1, (0, 4), &mut out, 4);
            let want = q as i64 * 127 * k as i64;
            assert!(want <= i32::MAX as i64);
            assert_eq!(out, vec![want as i32 as f32; 4], "k = {k}");
        }
    }

    #[test]
    fn the_vectorized_row_quantizer_equals_the_scalar_one() {
        let mut seed = 5;
        for len in [0usize, 1, 7, 8, 15, 16, 17, 33, 768, 3075] {
            let row: Vec<f32> = (0..len)
                .map(|_| (lcg(&mut seed) as f32 / u32::MAX as f32 - 0.5) * 3.0)
                .collect();
            let mut got = vec![0i16; len];
            let s = quantize_row(&row, 2047, &mut got);
            let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let mut want = vec![0i16; len];
            let s2 = finish_row(&row, 2047.0, amax, &mut want, 0);
            assert_eq!((got, s.to_bits()), (want, s2.to_bits()), "len {len}");
        }
        // Exact halves round to even, non-finite values anywhere poison the scale.
        let mut c = [0i16; 20];
        let mut row = [0f32; 20];
        row[0] = 2047.0;
        row[17] = 0.5;
        row[18] = 1.5;
        row[3] = -2.5;
        quantize_row(&row, 2047, &mut c);
        assert_eq!((c[0], c[3], c[17], c[18]), (2047, -2, 0, 2));
        for at in [0, 9, 19] {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut r = row;
                r[at] = bad;
                assert!(quantize_row(&r, 2047, &mut c).is_nan(), "{bad} at {at}");
                assert!(c.iter().all(|&v| v == 0));
            }
        }
    }

    #[test]
    fn rows_quantize_to_their_nearest_codes() {
        let x = [0.5f32, -1.0, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0];
        let mut codes = [0i16; 8];
        let mut scales = [0f32; 2];
        quantize_rows(&x, 4, 2047, &mut codes, &mut scales);
        assert_eq!(codes, [1024, -2047, 512, 0, 0, 0, 0, 0]);
        assert_eq!(scales, [1.0 / 2047.0, 0.0]);
    }
}
