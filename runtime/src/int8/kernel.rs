//! The 8-bit-activation int8 kernels (format 2 files, `activation_max = 127`):
//! `acc[m][n] = Σ_k x[m][k] · w[n][k]` over i8 codes in `[-127, 127]`, exactly, in i32; and the
//! per-row quantization of activations that feeds them. Format 3 files use [`super::packed`] (and
//! [`super::wide`] for a tied output projection).
//!
//! Weights are laid out `[N, K]`, each output channel's K codes contiguous: the layout the kernels
//! read, so the file stores them ready to use (nothing is packed at load or per request). Activations
//! are quantized per request into `[M, K]` codes, one scale per row.
//!
//! Implementations, picked at run time: AVX2 on x86-64 (`vpmaddubsw` on `|x|` and `w` carrying
//! x's sign — a pair of products of codes in `[-127, 127]` fits an i16, so 32 exact products an
//! instruction — then `vpmaddwd` against ones into i32; `bertling_i8_avx2`), on aarch64 the dot product instruction `sdot` where the CPU has it
//! (Cortex-A76 / Raspberry Pi 5: `bertling_i8_neon_dot`) and otherwise NEON `smull`/`smlal2` into
//! i16 — two products of codes in `[-127, 127]` cannot overflow it — then `sadalp` into i32
//! (Cortex-A53/A72, Pi 3/4: `bertling_i8_neon`), and portable Rust elsewhere. All give identical i32
//! sums, so answers do not depend on the CPU.

/// The largest magnitude of a code.
pub const QMAX: f32 = 127.0;

/// Which implementation [`gemm_i8`] uses on this CPU.
pub fn kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        return "bertling_i8_avx2";
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        return "bertling_i8_neon_dot";
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("neon") {
        return "bertling_i8_neon";
    }
    "bertling_i8_portable"
}

/// Quantizes each row of `x` (`rows x k`, row-major) to codes in `[-127, 127]`: `codes` gets the
/// codes, `scales` one scale per row (`x ≈ code · scale`).
pub fn quantize_rows(x: &[f32], k: usize, codes: &mut [i8], scales: &mut [f32]) {
    for ((row, out), scale) in x.chunks_exact(k).zip(codes.chunks_exact_mut(k)).zip(scales) {
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        if amax > 0.0 && amax.is_finite() {
            let inv = QMAX / amax;
            for (c, v) in out.iter_mut().zip(row) {
                *c = (v * inv).round() as i8;
            }
            *scale = amax / QMAX;
        } else {
            // All zeros, or a non-finite value: zero codes; a NaN/inf scale carries the problem to
            // the output instead of hiding it.
            out.fill(0);
            *scale = if amax.is_finite() { 0.0 } else { amax };
        }
    }
}

/// `out[m * ldo + n] = (Σ_k x[m][k] · w[n][k]) · x_scale[m] · w_scale[n]` for `m < rows`,
/// `n0 <= n < n1`: x is `rows x k` codes, w is `N x k` codes.
///
/// ```
/// use bertling::int8::kernel::{gemm_i8, quantize_rows};
/// // One row of activations against two output channels (weights [N = 2, K = 3]).
/// let x = [0.5f32, -1.0, 0.25];
/// let (mut codes, mut scale) = ([0i8; 3], [0f32; 1]);
/// quantize_rows(&x, 3, &mut codes, &mut scale);
/// let w = [127i8, 0, 0, 0, 127, 127];
/// let w_scale = [1.0 / 127.0, 2.0 / 127.0]; // W = [[1, 0, 0], [0, 2, 2]]
/// let mut y = [0f32; 2];
/// gemm_i8(&codes, &scale, &w, &w_scale, 3, 1, (0, 2), &mut y, 2);
/// assert!((y[0] - 0.5).abs() < 0.01 && (y[1] + 1.5).abs() < 0.02, "{y:?}");
/// ```
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8(
    x: &[i8],
    x_scale: &[f32],
    w: &[i8],
    w_scale: &[f32],
    k: usize,
    rows: usize,
    (n0, n1): (usize, usize),
    out: &mut [f32],
    ldo: usize,
) {
    assert!(x.len() >= rows * k && w.len() >= n1 * k && w_scale.len() >= n1);
    assert!(rows == 0 || out.len() >= (rows - 1) * ldo + n1);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present; the asserts above bound every access.
        unsafe { avx2::gemm(x, x_scale, w, w_scale, k, rows, (n0, n1), out, ldo) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        // SAFETY: NEON and the dot product are present; the asserts above bound every access.
        unsafe { neon::gemm_dot(x, x_scale, w, w_scale, k, rows, (n0, n1), out, ldo) };
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

/// The reference implementation (and the fallback), for 8-bit (`i8`) and 12-bit (`i16`)
/// activation codes alike.
#[allow(clippy::too_many_arguments)]
pub fn portable<X: Copy + Into<i32>>(
    x: &[X],
    x_scale: &[f32],
    w: &[i8],
    w_scale: &[f32],
    k: usize,
    rows: usize,
    (n0, n1): (usize, usize),
    out: &mut [f32],
    ldo: usize,
) {
    for m in 0..rows {
        let xr = &x[m * k..(m + 1) * k];
        for n in n0..n1 {
            let wr = &w[n * k..(n + 1) * k];
            let acc: i32 = xr.iter().zip(wr).map(|(&a, &b)| a.into() * b as i32).sum();
            out[m * ldo + n] = acc as f32 * x_scale[m] * w_scale[n];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! `vpmaddubsw` with the sign trick: `|x| · sign(w, x)` is `x · w`, and with codes in
    //! `[-127, 127]` a pair of such products fits an i16 (`2 · 127 · 127 < 32768`), so 32 products
    //! a `vpmaddubsw` without saturation; `vpmaddwd` against ones widens the pairs to i32.
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn hsum(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }

    #[inline(always)]
    unsafe fn block<const MB: usize, const NB: usize>(
        x: *const i8,
        w: *const i8,
        k: usize,
    ) -> [[i32; NB]; MB] {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_si256(); NB]; MB];
        let body = k / 32 * 32;
        let mut kk = 0;
        while kk < body {
            let mut wv = [_mm256_setzero_si256(); NB];
            for (j, v) in wv.iter_mut().enumerate() {
                *v = _mm256_loadu_si256(w.add(j * k + kk) as *const __m256i);
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let xv = _mm256_loadu_si256(x.add(i * k + kk) as *const __m256i);
                let ax = _mm256_sign_epi8(xv, xv);
                for (j, a) in row.iter_mut().enumerate() {
                    let sw = _mm256_sign_epi8(wv[j], xv);
                    let p = _mm256_maddubs_epi16(ax, sw);
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(p, ones));
                }
            }
            kk += 32;
        }
        let mut sums = [[0i32; NB]; MB];
        for i in 0..MB {
            for j in 0..NB {
                let mut s = hsum(acc[i][j]);
                for t in body..k {
                    s += *x.add(i * k + t) as i32 * *w.add(j * k + t) as i32;
                }
                sums[i][j] = s;
            }
        }
        sums
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows<const MB: usize, const NB: usize>(
        x: *const i8,
        k: usize,
        wp: *const i8,
        x_scale: &[f32],
        w_scale: &[f32],
        (m, n): (usize, usize),
        out: &mut [f32],
        ldo: usize,
    ) {
        let s = block::<MB, NB>(x.add(m * k), wp.add(n * k), k);
        for i in 0..MB {
            for j in 0..NB {
                out[(m + i) * ldo + n + j] = s[i][j] as f32 * x_scale[m + i] * w_scale[n + j];
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2")]
    pub unsafe fn gemm(
        x: &[i8],
        x_scale: &[f32],
        w: &[i8],
        w_scale: &[f32],
        k: usize,
        rows_n: usize,
        (n0, n1): (usize, usize),
        out: &mut [f32],
        ldo: usize,
    ) {
        const NB: usize = 2;
        let (xp, wp) = (x.as_ptr(), w.as_ptr());
        let mut n = n0;
        while n < n1 {
            if n + NB <= n1 {
                let mut m = 0;
                while m + 4 <= rows_n {
                    rows::<4, NB>(xp, k, wp, x_scale, w_scale, (m, n), out, ldo);
                    m += 4;
                }
                while m < rows_n {
                    rows::<1, NB>(xp, k, wp, x_scale, w_scale, (m, n), out, ldo);
                    m += 1;
                }
                n += NB;
            } else {
                for m in 0..rows_n {
                    rows::<1, 1>(xp, k, wp, x_scale, w_scale, (m, n), out, ldo);
                }
                n += 1;
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;
    use std::arch::asm;

    /// `acc += Σ` of 4 products per lane (the `sdot` instruction, Armv8.2 dot product).
    #[inline(always)]
    unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack)
        );
        acc
    }

    /// Dot products of `MB` rows of x with `NB` rows of w; `DOT` uses `sdot`.
    #[inline(always)]
    unsafe fn block<const MB: usize, const NB: usize, const DOT: bool>(
        x: *const i8,
        w: *const i8,
        k: usize,
    ) -> [[i32; NB]; MB] {
        let mut acc = [[vdupq_n_s32(0); NB]; MB];
        let body = k / 16 * 16;
        let mut kk = 0;
        while kk < body {
            let mut wv = [vdupq_n_s8(0); NB];
            for (j, v) in wv.iter_mut().enumerate() {
                *v = vld1q_s8(w.add(j * k + kk));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let xv = vld1q_s8(x.add(i * k + kk));
                for (j, a) in row.iter_mut().enumerate() {
                    if DOT {
                        *a = sdot(*a, xv, wv[j]);
                    } else {
                        // |code| <= 127: two products fit an i16 (2 * 127 * 127 < 32768).
                        let p = vmull_s8(vget_low_s8(xv), vget_low_s8(wv[j]));
                        let p = vmlal_high_s8(p, xv, wv[j]);
                        *a = vpadalq_s16(*a, p);
                    }
                }
            }
            kk += 16;
        }
        let mut sums = [[0i32; NB]; MB];
        for i in 0..MB {
            for j in 0..NB {
                let mut s = vaddvq_s32(acc[i][j]);
                for t in body..k {
                    s += *x.add(i * k + t) as i32 * *w.add(j * k + t) as i32;
                }
                sums[i][j] = s;
            }
        }
        sums
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows<const MB: usize, const NB: usize, const DOT: bool>(
        x: *const i8,
        k: usize,
        wp: *const i8,
        x_scale: &[f32],
        w_scale: &[f32],
        (m, n): (usize, usize),
        out: &mut [f32],
        ldo: usize,
    ) {
        let s = block::<MB, NB, DOT>(x.add(m * k), wp.add(n * k), k);
        for i in 0..MB {
            for j in 0..NB {
                out[(m + i) * ldo + n + j] = s[i][j] as f32 * x_scale[m + i] * w_scale[n + j];
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn gemm_with<const DOT: bool>(
        x: &[i8],
        x_scale: &[f32],
        w: &[i8],
        w_scale: &[f32],
        k: usize,
        rows_n: usize,
        (n0, n1): (usize, usize),
        out: &mut [f32],
        ldo: usize,
    ) {
        const NB: usize = 4;
        const MB: usize = 4;
        let (xp, wp) = (x.as_ptr(), w.as_ptr());
        let mut n = n0;
        while n < n1 {
            if n + NB <= n1 {
                let mut m = 0;
                while m + MB <= rows_n {
                    rows::<MB, NB, DOT>(xp, k, wp, x_scale, w_scale, (m, n), out, ldo);
                    m += MB;
                }
                while m < rows_n {
                    rows::<1, NB, DOT>(xp, k, wp, x_scale, w_scale, (m, n), out, ldo);
                    m += 1;
                }
                n += NB;
            } else {
                for m in 0..rows_n {
                    rows::<1, 1, DOT>(xp, k, wp, x_scale, w_scale, (m, n), out, ldo);
                }
                n += 1;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "neon")]
    pub unsafe fn gemm(
        x: &[i8],
        x_scale: &[f32],
        w: &[i8],
        w_scale: &[f32],
        k: usize,
        rows_n: usize,
        cols: (usize, usize),
        out: &mut [f32],
        ldo: usize,
    ) {
        gemm_with::<false>(x, x_scale, w, w_scale, k, rows_n, cols, out, ldo)
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "neon,dotprod")]
    pub unsafe fn gemm_dot(
        x: &[i8],
        x_scale: &[f32],
        w: &[i8],
        w_scale: &[f32],
        k: usize,
        rows_n: usize,
        cols: (usize, usize),
        out: &mut [f32],
        ldo: usize,
    ) {
        gemm_with::<true>(x, x_scale, w, w_scale, k, rows_n, cols, out, ldo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> i8 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 33) % 255) as i8 // 0..=254 as i8: -128 never appears
    }

    #[test]
    fn the_picked_kernel_equals_the_portable_one_exactly() {
        let mut seed = 7;
        for &(rows, k, n) in &[
            (1, 1, 1),
            (3, 17, 5),
            (2, 16, 4),
            (5, 768, 9),
            (16, 40, 33),
            (7, 3, 2),
        ] {
            let x: Vec<i8> = (0..rows * k)
                .map(|_| lcg(&mut seed).clamp(-127, 127))
                .collect();
            let w: Vec<i8> = (0..n * k)
                .map(|_| lcg(&mut seed).clamp(-127, 127))
                .collect();
            let xs: Vec<f32> = (0..rows).map(|i| 0.5 + i as f32).collect();
            let ws: Vec<f32> = (0..n).map(|j| 0.25 * (j + 1) as f32).collect();
            let mut a = vec![0f32; rows * n];
            let mut b = vec![0f32; rows * n];
            gemm_i8(&x, &xs, &w, &ws, k, rows, (0, n), &mut a, n);
            portable(&x, &xs, &w, &ws, k, rows, (0, n), &mut b, n);
            assert_eq!(a, b, "{rows}x{k}x{n} with {}", kernel_name());
            // A column range writes only its columns.
            let mut c = vec![-1f32; rows * n];
            gemm_i8(&x, &xs, &w, &ws, k, rows, (n / 2, n), &mut c, n);
            for m in 0..rows {
                for j in 0..n {
                    let want = if j >= n / 2 { b[m * n + j] } else { -1.0 };
                    assert_eq!(c[m * n + j], want);
                }
            }
        }
    }

    #[test]
    fn extreme_codes_do_not_overflow() {
        let k = 4096;
        let x = vec![-127i8; k];
        let w = vec![-127i8; 4 * k];
        let mut out = vec![0f32; 4];
        gemm_i8(&x, &[1.0], &w, &[1.0; 4], k, 1, (0, 4), &mut out, 4);
        assert_eq!(out, vec![(127 * 127 * k) as f32; 4]);
    }

    #[test]
    fn rows_quantize_to_their_nearest_codes() {
        let x = [0.5f32, -1.0, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0];
        let mut codes = [0i8; 8];
        let mut scales = [0f32; 2];
        quantize_rows(&x, 4, &mut codes, &mut scales);
        assert_eq!(codes, [64, -127, 32, 0, 0, 0, 0, 0]);
        assert_eq!(scales, [1.0 / 127.0, 0.0]);
    }
}
