//! The main int8 product: i8 weights pre-packed in panels of 8 output channels, against
//! activations quantized per row to 12-bit codes held in i16 (see [`super::wide::act_max`]).
//!
//! **Panel layout.** A weight `W` (`[N, K]`, i8 codes) is stored as `[⌈N/8⌉, ⌈K/4⌉, 8, 4]`: panel
//! `p` holds channels `8p..8p+8`; inside it, for each group of 4 consecutive `k`, the 4 codes of
//! channel 0, then of channel 1, ..., channel 7 (32 bytes). Padding channels and padding `k` are
//! zero. In one group, a kernel reads the 8 channels' 4 codes as one 32-byte block, which is what
//! every instruction set here wants: AVX2 widens 16 of those bytes to i16 and `vpmaddwd`s them with
//! the row's 4 activation codes broadcast; NEON `ld4` de-interleaves them into 4 vectors of 8
//! channels (one per `k`) for `smlal` by lane. The file stores weights in this layout, so nothing
//! is packed at load or per request ([`pack`] runs in the compiler).
//!
//! **Scales.** One f32 scale per output channel and per group of [`SCALE_GROUP`] (64) consecutive
//! inputs, laid out `[⌈N/8⌉, ⌈K'/64⌉, 8]` (`K' = ⌈K/4⌉·4`; padding channels' scales are zero):
//! `W[c][k] ≈ code(c, k) · scale(c, k / 64)`. A group's codes are summed exactly in i32, then
//! `y += sum · scale` (one fused multiply-add, groups in order), and finally `y · x_scale`. Finer
//! scales than one per channel halve the weights' quantization error on real BERT weights
//! (BENCHMARKS.md, "int8 accuracy"); the file stores them as f16 (3% of the codes' size).
//!
//! Activations are quantized per request into rows of `⌈K/4⌉·4` codes (zero padded).
//!
//! All implementations give the same i32 sums exactly (bounded by [`super::wide::act_max`]), then
//! scale them the same way, so answers do not depend on the CPU: AVX2 (`bertling_panel_avx2`),
//! NEON (`bertling_panel_neon`), NEON with the dot product instruction where the CPU has it
//! (Cortex-A76, Raspberry Pi 5: `bertling_panel_neon_dot`, which splits each 12-bit code `x` into
//! `128 · hi + lo` with `hi` and `lo` bytes and `sdot`s both) and portable Rust.

/// Output channels per panel.
pub const PANEL: usize = 8;
/// Consecutive `k` per group inside a panel.
pub const GROUP: usize = 4;

/// `K` rounded up to a whole group: the stride of quantized activation rows.
pub fn padded_k(k: usize) -> usize {
    k.div_ceil(GROUP) * GROUP
}

/// Number of panels for `n` output channels.
pub fn panels(n: usize) -> usize {
    n.div_ceil(PANEL)
}

/// Length in bytes of a packed `[n, k]` weight.
pub fn packed_len(n: usize, k: usize) -> usize {
    panels(n) * PANEL * padded_k(k)
}

/// Index in the packed layout of the code of channel `n`, input `k`.
#[inline]
pub fn packed_index(n: usize, k: usize, kp: usize) -> usize {
    (n / PANEL) * PANEL * kp + (k / GROUP) * PANEL * GROUP + (n % PANEL) * GROUP + k % GROUP
}

/// Inputs per weight scale.
pub const SCALE_GROUP: usize = 64;

/// Number of scale groups along `k`.
pub fn scale_groups(k: usize) -> usize {
    padded_k(k).div_ceil(SCALE_GROUP)
}

/// Length of the scales of a packed `[n, k]` weight.
pub fn scales_len(n: usize, k: usize) -> usize {
    panels(n) * scale_groups(k) * PANEL
}

/// Index in the scales of channel `n`'s group `g`, with `groups` groups.
#[inline]
pub fn scale_index(n: usize, g: usize, groups: usize) -> usize {
    (n / PANEL) * groups * PANEL + g * PANEL + n % PANEL
}

/// Quantizes a row-major f32 weight `[n, k]`: per channel and group of [`SCALE_GROUP`] inputs,
/// `scale = round_scale(max |w| / 127)` and `code = round(w / scale)` (clamped to ±127, zero when
/// the scale is zero). Returns the packed codes ([`pack`]) and the scales (see the module doc).
/// `round_scale` is how the file stores scales (the compiler rounds them to f16), so the codes are
/// computed against the scales the kernels will read.
///
/// ```
/// use bertling::int8::packed::{quantize_weight, scales_len};
/// let w = [1.0f32, -0.5, 0.0, 0.25];
/// let (codes, scales) = quantize_weight(&w, 1, 4, |s| s);
/// assert_eq!(&codes[..4], &[127, -64, 0, 32]);
/// assert_eq!(scales.len(), scales_len(1, 4));
/// assert_eq!(scales[0], 1.0 / 127.0);
/// ```
pub fn quantize_weight(
    w: &[f32],
    n: usize,
    k: usize,
    round_scale: impl Fn(f32) -> f32,
) -> (Vec<i8>, Vec<f32>) {
    assert_eq!(w.len(), n * k, "quantize_weight: {n} x {k} values expected");
    let groups = scale_groups(k);
    let mut codes = vec![0i8; n * k];
    let mut scales = vec![0f32; scales_len(n, k)];
    for r in 0..n {
        for g in 0..groups {
            let (k0, k1) = ((g * SCALE_GROUP).min(k), ((g + 1) * SCALE_GROUP).min(k));
            let row = &w[r * k + k0..r * k + k1];
            let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = round_scale(amax / 127.0);
            if scale > 0.0 && scale.is_finite() {
                scales[scale_index(r, g, groups)] = scale;
                for (c, v) in codes[r * k + k0..r * k + k1].iter_mut().zip(row) {
                    *c = (v / scale).round().clamp(-127.0, 127.0) as i8;
                }
            }
        }
    }
    (pack(&codes, n, k), scales)
}

/// Packs row-major `[n, k]` codes into the panel layout.
///
/// ```
/// use bertling::int8::packed::{pack, packed_len};
/// // Two channels, K = 3: padded to one panel of 8 channels and one group of 4.
/// let w = [1i8, 2, 3, 4, 5, 6];
/// let p = pack(&w, 2, 3);
/// assert_eq!(p.len(), packed_len(2, 3));
/// assert_eq!(&p[..8], &[1, 2, 3, 0, 4, 5, 6, 0]);
/// assert!(p[8..].iter().all(|&c| c == 0));
/// ```
pub fn pack(w: &[i8], n: usize, k: usize) -> Vec<i8> {
    assert_eq!(w.len(), n * k, "pack: {n} x {k} codes expected");
    let kp = padded_k(k);
    let mut out = vec![0i8; packed_len(n, k)];
    for r in 0..n {
        for c in 0..k {
            out[packed_index(r, c, kp)] = w[r * k + c];
        }
    }
    out
}

/// Which implementation [`gemm`] uses on this CPU for codes within `qmax`.
pub fn kernel_name(qmax: i32) -> &'static str {
    let _ = qmax; // only the dot product kernel depends on it
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        return "bertling_panel_avx2";
    }
    #[cfg(target_arch = "aarch64")]
    if qmax <= 16383 && std::arch::is_aarch64_feature_detected!("dotprod") {
        return "bertling_panel_neon_dot";
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("neon") {
        return "bertling_panel_neon";
    }
    "bertling_panel_portable"
}

/// Quantizes each row of `x` (`rows x k`) to i16 codes in `[-qmax, qmax]`, written with row stride
/// [`padded_k`]`(k)` (the padding codes are zero), one scale per row (see
/// [`super::wide::quantize_row`]).
pub fn quantize_rows(x: &[f32], k: usize, qmax: i32, codes: &mut [i16], scales: &mut [f32]) {
    let kp = padded_k(k);
    for ((row, out), scale) in x
        .chunks_exact(k)
        .zip(codes.chunks_exact_mut(kp))
        .zip(scales)
    {
        out[k..].fill(0);
        *scale = super::wide::quantize_row(row, qmax, &mut out[..k]);
    }
}

/// `out[m * ldo + c] = (Σ_g (Σ_{k in g} x[m][k] · code(c, k)) · scale(c, g)) · x_scale[m]` for
/// `m < rows` and the channels `c` of panels `p0..p1` below `n`: `x` holds `rows` rows of
/// [`padded_k`]`(k)` codes in `[-qmax, qmax]` (from [`quantize_rows`]), `w` is packed ([`pack`])
/// with `n` channels, `w_scale` holds its scales (module doc); the sum over groups `g` is a chain
/// of fused multiply-adds, in order, from 0.
///
/// ```
/// use bertling::int8::packed::{gemm, padded_k, panels, quantize_rows, quantize_weight};
/// let x = [0.5f32, -1.0, 0.25];
/// let (mut codes, mut scale) = (vec![0i16; padded_k(3)], [0f32; 1]);
/// quantize_rows(&x, 3, 2047, &mut codes, &mut scale);
/// let (w, w_scale) = quantize_weight(&[1.0, 0.0, 0.0, 0.0, 2.0, 2.0], 2, 3, |s| s);
/// let mut y = [0f32; 2];
/// gemm(&codes, &scale, 2047, &w, &w_scale, 3, 2, 1, (0, panels(2)), &mut y, 2);
/// assert!((y[0] - 0.5).abs() < 1e-3 && (y[1] + 1.5).abs() < 1e-3, "{y:?}");
/// ```
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    x: &[i16],
    x_scale: &[f32],
    qmax: i32,
    w: &[i8],
    w_scale: &[f32],
    k: usize,
    n: usize,
    rows: usize,
    (p0, p1): (usize, usize),
    out: &mut [f32],
    ldo: usize,
) {
    let _ = qmax; // only the dot product kernel depends on it
    let kp = padded_k(k);
    assert!(x.len() >= rows * kp && x_scale.len() >= rows);
    assert!(w.len() >= packed_len(n, k) && w_scale.len() >= scales_len(n, k));
    assert!(p0 <= p1 && p1 <= panels(n));
    assert!(rows == 0 || n == 0 || out.len() >= (rows - 1) * ldo + n);
    assert!(ldo >= n);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 and FMA are present; the asserts above bound every access.
        unsafe { avx2::gemm(x, x_scale, w, w_scale, kp, n, rows, (p0, p1), out, ldo) };
        return;
    }
    // The dot product kernel splits codes into 128 · hi + lo with hi in i8: |code| <= 16383.
    #[cfg(target_arch = "aarch64")]
    if qmax <= 16383 && std::arch::is_aarch64_feature_detected!("dotprod") {
        // SAFETY: NEON and the dot product are present; the asserts above bound every access.
        unsafe { neon::gemm_dot(x, x_scale, w, w_scale, kp, n, rows, (p0, p1), out, ldo) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("neon") {
        // SAFETY: NEON is present; the asserts above bound every access.
        unsafe { neon::gemm(x, x_scale, w, w_scale, kp, n, rows, (p0, p1), out, ldo) };
        return;
    }
    portable(x, x_scale, w, w_scale, k, n, rows, (p0, p1), out, ldo)
}

/// The reference implementation (and the fallback); same arguments as [`gemm`].
#[allow(clippy::too_many_arguments)]
pub fn portable(
    x: &[i16],
    x_scale: &[f32],
    w: &[i8],
    w_scale: &[f32],
    k: usize,
    n: usize,
    rows: usize,
    (p0, p1): (usize, usize),
    out: &mut [f32],
    ldo: usize,
) {
    let kp = padded_k(k);
    let groups = scale_groups(k);
    for m in 0..rows {
        let xr = &x[m * kp..(m + 1) * kp];
        for c in p0 * PANEL..(p1 * PANEL).min(n) {
            let mut y = 0f32;
            for g in 0..groups {
                let sum: i32 = (g * SCALE_GROUP..((g + 1) * SCALE_GROUP).min(kp))
                    .map(|t| xr[t] as i32 * w[packed_index(c, t, kp)] as i32)
                    .sum();
                y = (sum as f32).mul_add(w_scale[scale_index(c, g, groups)], y);
            }
            out[m * ldo + c] = y * x_scale[m];
        }
    }
}

/// Runs `tile(m, rows_in_tile, p, panels_in_tile)` over `rows x (p0..p1)`: `MR` rows (the last
/// tile fewer) and up to `NP` panels a tile, pass by pass (about 160 KiB of weights each, so they
/// stay in L2 while the block of activation rows stays in L1) so that each pass's panels are reused
/// from cache by every row block. Shared with [`super::a7`].
#[inline(always)]
pub(super) fn tiles<const MR: usize, const NP: usize>(
    kp: usize,
    rows: usize,
    (p0, p1): (usize, usize),
    mut tile: impl FnMut(usize, usize, usize, usize),
) {
    let pass = ((160 << 10) / (PANEL * kp.max(1))).max(NP);
    let mut a = p0;
    while a < p1 {
        let b = (a + pass).min(p1);
        let mut m = 0;
        while m < rows {
            let mr = MR.min(rows - m);
            let mut p = a;
            while p < b {
                let np = NP.min(b - p);
                tile(m, mr, p, np);
                p += np;
            }
            m += mr;
        }
        a = b;
    }
}

/// Stores one row's 8 outputs of panel `p` (only those below `n`: the last panel may be partial).
#[inline(always)]
pub(super) fn store_row(y: &[f32; PANEL], p: usize, n: usize, row: &mut [f32]) {
    let c0 = p * PANEL;
    let len = PANEL.min(n - c0);
    row[c0..c0 + len].copy_from_slice(&y[..len]);
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    //! Per group of 4 `k`: the panel's 32 bytes widened to two vectors of 16 i16 (channels 0-3 and
    //! 4-7), each row's 4 activation codes broadcast, `vpmaddwd` into i32 lanes holding two
    //! partial sums per channel; 6 rows x 8 channels a tile (12 accumulators). With `GROUPED`
    //! (`gemm_grouped`, [`super::super::a8`]'s codes) the activation scales are per row and group
    //! of 64 and go into each group's `fma`; otherwise one per row multiplies the result.
    use super::{PANEL, SCALE_GROUP};
    use std::arch::x86_64::*;

    const MR: usize = 6;

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const R: usize, const GROUPED: bool>(
        x: *const i16,
        w: *const i8,
        kp: usize,
        x_scale: &[f32],
        w_scale: &[f32],
        (m, p, n): (usize, usize, usize),
        out: &mut [f32],
        ldo: usize,
    ) {
        let groups = kp.div_ceil(SCALE_GROUP);
        let sp = w_scale.as_ptr().add(p * groups * PANEL);
        let mut y = [_mm256_setzero_ps(); R];
        for gi in 0..groups {
            let (k0, k1) = (gi * SCALE_GROUP, ((gi + 1) * SCALE_GROUP).min(kp));
            let mut acc = [[_mm256_setzero_si256(); 2]; R];
            let mut g = k0;
            while g < k1 {
                let b = w.add(g * PANEL);
                let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b as *const __m128i));
                let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(16) as *const __m128i));
                for (i, a) in acc.iter_mut().enumerate() {
                    let xv = _mm256_set1_epi64x((x.add(i * kp + g) as *const i64).read_unaligned());
                    a[0] = _mm256_add_epi32(a[0], _mm256_madd_epi16(xv, w0));
                    a[1] = _mm256_add_epi32(a[1], _mm256_madd_epi16(xv, w1));
                }
                g += 4;
            }
            let ws = _mm256_loadu_ps(sp.add(gi * PANEL));
            for (i, (a, y)) in acc.iter().zip(y.iter_mut()).enumerate() {
                // Lanes hold [c0 c0 c1 c1 | c2 c2 c3 c3] and [c4 c4 c5 c5 | c6 c6 c7 c7]: add the
                // pairs, giving [c0 c1 c4 c5 | c2 c3 c6 c7], then put the 64-bit halves in order.
                let s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(a[0], a[1]), 0b11_01_10_00);
                let t = match GROUPED {
                    true => _mm256_mul_ps(ws, _mm256_set1_ps(x_scale[(m + i) * groups + gi])),
                    false => ws,
                };
                *y = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), t, *y);
            }
        }
        let full = (p + 1) * PANEL <= n;
        for (i, y) in y.iter().enumerate() {
            let v = match GROUPED {
                true => *y,
                false => _mm256_mul_ps(*y, _mm256_set1_ps(x_scale[m + i])),
            };
            let row = &mut out[(m + i) * ldo..];
            if full {
                _mm256_storeu_ps(row.as_mut_ptr().add(p * PANEL), v);
            } else {
                let mut tmp = [0f32; PANEL];
                _mm256_storeu_ps(tmp.as_mut_ptr(), v);
                super::store_row(&tmp, p, n, row);
            }
        }
    }

    macro_rules! driver {
        ($name:ident, $grouped:literal) => {
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = "avx2,fma")]
            pub unsafe fn $name(
                x: &[i16],
                x_scale: &[f32],
                w: &[i8],
                w_scale: &[f32],
                kp: usize,
                n: usize,
                rows: usize,
                panels: (usize, usize),
                out: &mut [f32],
                ldo: usize,
            ) {
                let (xp, wp, xs, ws) = (x.as_ptr(), w.as_ptr(), x_scale, w_scale);
                super::tiles::<MR, 1>(kp, rows, panels, |m, r, p, _| {
                    let (x, w) = (xp.add(m * kp), wp.add(p * PANEL * kp));
                    let at = (m, p, n);
                    match r {
                        6 => tile::<6, $grouped>(x, w, kp, xs, ws, at, out, ldo),
                        5 => tile::<5, $grouped>(x, w, kp, xs, ws, at, out, ldo),
                        4 => tile::<4, $grouped>(x, w, kp, xs, ws, at, out, ldo),
                        3 => tile::<3, $grouped>(x, w, kp, xs, ws, at, out, ldo),
                        2 => tile::<2, $grouped>(x, w, kp, xs, ws, at, out, ldo),
                        _ => tile::<1, $grouped>(x, w, kp, xs, ws, at, out, ldo),
                    }
                });
            }
        };
    }

    driver!(gemm, false);
    driver!(gemm_grouped, true);
}

#[cfg(target_arch = "aarch64")]
pub(super) mod neon {
    //! Per group of 4 `k`: `ld4` splits the panel's 32 bytes into 4 vectors of 8 channels (one per
    //! `k`), widened to i16; each row's 4 activation codes are multiplied in by lane (`smlal`,
    //! `smlal2`) into two i32x4 accumulators (channels 0-3, 4-7); 4 rows x 8 channels a tile
    //! (3 with `sdot`, which keeps high and low halves apart).
    use super::{PANEL, SCALE_GROUP};
    use std::arch::aarch64::*;

    const MR: usize = 4;

    /// Scales a row's group sums (channels 0-3, 4-7) into its outputs: `y += sum · scale`.
    #[inline(always)]
    unsafe fn fma_group(y: &mut [float32x4_t; 2], s: [int32x4_t; 2], ws: *const f32) {
        y[0] = vfmaq_f32(y[0], vcvtq_f32_s32(s[0]), vld1q_f32(ws));
        y[1] = vfmaq_f32(y[1], vcvtq_f32_s32(s[1]), vld1q_f32(ws.add(4)));
    }

    /// Writes rows `m..m + R` of panel `p`: `y · x_scale`.
    #[inline(always)]
    unsafe fn store<const R: usize>(
        y: &[[float32x4_t; 2]; R],
        x_scale: &[f32],
        (m, p, n): (usize, usize, usize),
        out: &mut [f32],
        ldo: usize,
    ) {
        let full = (p + 1) * PANEL <= n;
        for (i, y) in y.iter().enumerate() {
            let xs = x_scale[m + i];
            let (v0, v1) = (vmulq_n_f32(y[0], xs), vmulq_n_f32(y[1], xs));
            let row = &mut out[(m + i) * ldo..];
            if full {
                vst1q_f32(row.as_mut_ptr().add(p * PANEL), v0);
                vst1q_f32(row.as_mut_ptr().add(p * PANEL + 4), v1);
            } else {
                let mut tmp = [0f32; PANEL];
                vst1q_f32(tmp.as_mut_ptr(), v0);
                vst1q_f32(tmp.as_mut_ptr().add(4), v1);
                super::store_row(&tmp, p, n, row);
            }
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const R: usize>(
        x: *const i16,
        w: *const i8,
        kp: usize,
        x_scale: &[f32],
        w_scale: &[f32],
        at: (usize, usize, usize),
        out: &mut [f32],
        ldo: usize,
    ) {
        let groups = kp.div_ceil(SCALE_GROUP);
        let sp = w_scale.as_ptr().add(at.1 * groups * PANEL);
        let mut y = [[vdupq_n_f32(0.0); 2]; R];
        for gi in 0..groups {
            let (k0, k1) = (gi * SCALE_GROUP, ((gi + 1) * SCALE_GROUP).min(kp));
            let mut acc = [[vdupq_n_s32(0); 2]; R];
            let mut g = k0;
            while g < k1 {
                let b = vld4_s8(w.add(g * PANEL));
                let (w0, w1, w2, w3) = (vmovl_s8(b.0), vmovl_s8(b.1), vmovl_s8(b.2), vmovl_s8(b.3));
                for (i, a) in acc.iter_mut().enumerate() {
                    let xv = vld1_s16(x.add(i * kp + g));
                    a[0] = vmlal_lane_s16::<0>(a[0], vget_low_s16(w0), xv);
                    a[1] = vmlal_high_lane_s16::<0>(a[1], w0, xv);
                    a[0] = vmlal_lane_s16::<1>(a[0], vget_low_s16(w1), xv);
                    a[1] = vmlal_high_lane_s16::<1>(a[1], w1, xv);
                    a[0] = vmlal_lane_s16::<2>(a[0], vget_low_s16(w2), xv);
                    a[1] = vmlal_high_lane_s16::<2>(a[1], w2, xv);
                    a[0] = vmlal_lane_s16::<3>(a[0], vget_low_s16(w3), xv);
                    a[1] = vmlal_high_lane_s16::<3>(a[1], w3, xv);
                }
                g += 4;
            }
            for (a, y) in acc.iter().zip(y.iter_mut()) {
                fma_group(y, *a, sp.add(gi * PANEL));
            }
        }
        store::<R>(&y, x_scale, at, out, ldo);
    }

    /// A panel's weights for the 16 consecutive `k` from `g` (`steps` groups of 4 present, the
    /// rest zero): per group of 4 `k`, channels 0-3 and channels 4-7. Shared with `a7`.
    #[inline(always)]
    pub(in crate::int8) unsafe fn load16(
        w: *const i8,
        g: usize,
        steps: usize,
    ) -> [[int8x16_t; 2]; 4] {
        let mut wv = [[vdupq_n_s8(0); 2]; 4];
        for (j, v) in wv.iter_mut().enumerate().take(steps) {
            let b = w.add((g + 4 * j) * PANEL);
            *v = [vld1q_s8(b), vld1q_s8(b.add(16))];
        }
        wv
    }

    /// `a[0]` (channels 0-3) and `a[1]` (channels 4-7) `+=` the products of 16 consecutive codes
    /// `x` (4 a lane) with the weights [`load16`] read. Shared with `a7`.
    #[inline(always)]
    pub(in crate::int8) unsafe fn sdot16(
        a: &mut [int32x4_t; 2],
        wv: &[[int8x16_t; 2]; 4],
        x: int8x16_t,
    ) {
        a[0] = sdot_lane::<0>(a[0], wv[0][0], x);
        a[1] = sdot_lane::<0>(a[1], wv[0][1], x);
        a[0] = sdot_lane::<1>(a[0], wv[1][0], x);
        a[1] = sdot_lane::<1>(a[1], wv[1][1], x);
        a[0] = sdot_lane::<2>(a[0], wv[2][0], x);
        a[1] = sdot_lane::<2>(a[1], wv[2][1], x);
        a[0] = sdot_lane::<3>(a[0], wv[3][0], x);
        a[1] = sdot_lane::<3>(a[1], wv[3][1], x);
    }

    /// `acc += Σ` of 4 products per lane: lane `c` of `acc` gets `w[4c..4c+4] · x[4L..4L+4]`
    /// (`sdot` by element, Armv8.2 dot product).
    #[inline(always)]
    unsafe fn sdot_lane<const L: i32>(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
        let mut acc = acc;
        std::arch::asm!(
            "sdot {acc:v}.4s, {w:v}.16b, {x:v}.4b[{l}]",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            x = in(vreg) x,
            l = const L,
            options(pure, nomem, nostack)
        );
        acc
    }

    /// A row's 12-bit codes `x[0..16]` (or the first `4 · groups` of them, the rest zero) as two
    /// byte vectors `hi = x >> 7` and `lo = x & 127`, so `x = 128 · hi + lo` with both in i8.
    #[inline(always)]
    unsafe fn split(x: *const i16, groups: usize) -> (int8x16_t, int8x16_t) {
        let mut buf = [0i16; 16];
        let (a, b) = if groups == 4 {
            (vld1q_s16(x), vld1q_s16(x.add(8)))
        } else {
            std::ptr::copy_nonoverlapping(x, buf.as_mut_ptr(), 4 * groups);
            (vld1q_s16(buf.as_ptr()), vld1q_s16(buf.as_ptr().add(8)))
        };
        let m = vdupq_n_s16(127);
        let hi = vcombine_s8(
            vmovn_s16(vshrq_n_s16::<7>(a)),
            vmovn_s16(vshrq_n_s16::<7>(b)),
        );
        let lo = vcombine_s8(vmovn_s16(vandq_s16(a, m)), vmovn_s16(vandq_s16(b, m)));
        (hi, lo)
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_dot<const R: usize>(
        x: *const i16,
        w: *const i8,
        kp: usize,
        x_scale: &[f32],
        w_scale: &[f32],
        at: (usize, usize, usize),
        out: &mut [f32],
        ldo: usize,
    ) {
        let groups = kp.div_ceil(SCALE_GROUP);
        let sp = w_scale.as_ptr().add(at.1 * groups * PANEL);
        let mut y = [[vdupq_n_f32(0.0); 2]; R];
        for gi in 0..groups {
            let (k0, k1) = (gi * SCALE_GROUP, ((gi + 1) * SCALE_GROUP).min(kp));
            // [row][hi, lo][channels 0-3, 4-7]
            let mut acc = [[[vdupq_n_s32(0); 2]; 2]; R];
            let mut g = k0;
            while g < k1 {
                let steps = ((k1 - g) / 4).min(4);
                let wv = load16(w, g, steps);
                for (i, a) in acc.iter_mut().enumerate() {
                    let (hi, lo) = split(x.add(i * kp + g), steps);
                    sdot16(&mut a[0], &wv, hi);
                    sdot16(&mut a[1], &wv, lo);
                }
                g += 16;
            }
            for (a, y) in acc.iter().zip(y.iter_mut()) {
                // 128 · hi + lo: exact, the sum fits an i32 (wrapping arithmetic in between).
                let s0 = vaddq_s32(vshlq_n_s32::<7>(a[0][0]), a[1][0]);
                let s1 = vaddq_s32(vshlq_n_s32::<7>(a[0][1]), a[1][1]);
                fma_group(y, [s0, s1], sp.add(gi * PANEL));
            }
        }
        store::<R>(&y, x_scale, at, out, ldo);
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "neon,dotprod")]
    pub unsafe fn gemm_dot(
        x: &[i16],
        x_scale: &[f32],
        w: &[i8],
        w_scale: &[f32],
        kp: usize,
        n: usize,
        rows: usize,
        panels: (usize, usize),
        out: &mut [f32],
        ldo: usize,
    ) {
        let (xp, wp) = (x.as_ptr(), w.as_ptr());
        super::tiles::<3, 1>(kp, rows, panels, |m, r, p, _| {
            let (x, w) = (xp.add(m * kp), wp.add(p * PANEL * kp));
            let at = (m, p, n);
            match r {
                3 => tile_dot::<3>(x, w, kp, x_scale, w_scale, at, out, ldo),
                2 => tile_dot::<2>(x, w, kp, x_scale, w_scale, at, out, ldo),
                _ => tile_dot::<1>(x, w, kp, x_scale, w_scale, at, out, ldo),
            }
        });
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "neon")]
    pub unsafe fn gemm(
        x: &[i16],
        x_scale: &[f32],
        w: &[i8],
        w_scale: &[f32],
        kp: usize,
        n: usize,
        rows: usize,
        panels: (usize, usize),
        out: &mut [f32],
        ldo: usize,
    ) {
        let (xp, wp) = (x.as_ptr(), w.as_ptr());
        super::tiles::<MR, 1>(kp, rows, panels, |m, r, p, _| {
            let (x, w) = (xp.add(m * kp), wp.add(p * PANEL * kp));
            let at = (m, p, n);
            match r {
                4 => tile::<4>(x, w, kp, x_scale, w_scale, at, out, ldo),
                3 => tile::<3>(x, w, kp, x_scale, w_scale, at, out, ldo),
                2 => tile::<2>(x, w, kp, x_scale, w_scale, at, out, ldo),
                _ => tile::<1>(x, w, kp, x_scale, w_scale, at, out, ldo),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::wide::{act_max, ACT_MAX_DEFAULT};
    use super::*;

    use super::super::lcg;

    /// The definition, computed from row-major codes and `[n][group]` scales.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[i16],
        xs: &[f32],
        codes: &[i8],
        scales: &[Vec<f32>],
        k: usize,
        n: usize,
        rows: usize,
    ) -> Vec<f32> {
        let kp = padded_k(k);
        let mut out = vec![0f32; rows * n];
        for m in 0..rows {
            for c in 0..n {
                let mut y = 0f32;
                for (g, &s) in scales[c].iter().enumerate() {
                    let sum: i64 = (g * SCALE_GROUP..((g + 1) * SCALE_GROUP).min(k))
                        .map(|t| x[m * kp + t] as i64 * codes[c * k + t] as i64)
                        .sum();
                    y = (i32::try_from(sum).unwrap() as f32).mul_add(s, y);
                }
                out[m * n + c] = y * xs[m];
            }
        }
        out
    }

    fn case(rows: usize, k: usize, n: usize, seed: &mut u64) {
        let kp = padded_k(k);
        let qmax = act_max(k, ACT_MAX_DEFAULT);
        let mut x = vec![0i16; rows * kp];
        for m in 0..rows {
            for t in 0..k {
                x[m * kp + t] = ((lcg(seed) % (2 * qmax as u32 + 1)) as i32 - qmax) as i16;
            }
        }
        let codes: Vec<i8> = (0..n * k)
            .map(|_| ((lcg(seed) % 255) as i32 - 127) as i8)
            .collect();
        let groups = scale_groups(k);
        let scales: Vec<Vec<f32>> = (0..n)
            .map(|_| {
                (0..groups)
                    .map(|_| (1 + lcg(seed) % 1000) as f32 * 1e-5)
                    .collect()
            })
            .collect();
        let mut packed_scales = vec![0f32; scales_len(n, k)];
        for (c, row) in scales.iter().enumerate() {
            for (g, &v) in row.iter().enumerate() {
                packed_scales[scale_index(c, g, groups)] = v;
            }
        }
        let wp = pack(&codes, n, k);
        let xs: Vec<f32> = (0..rows).map(|i| 0.5 + i as f32).collect();
        let want = reference(&x, &xs, &codes, &scales, k, n, rows);
        let ldo = n + 3; // a wider output row: columns past n stay untouched
        let all = (0, panels(n));
        let mut got = vec![-7f32; rows * ldo];
        gemm(
            &x,
            &xs,
            qmax,
            &wp,
            &packed_scales,
            k,
            n,
            rows,
            all,
            &mut got,
            ldo,
        );
        let mut port = vec![-7f32; rows * ldo];
        portable(
            &x,
            &xs,
            &wp,
            &packed_scales,
            k,
            n,
            rows,
            all,
            &mut port,
            ldo,
        );
        for m in 0..rows {
            let row = &want[m * n..(m + 1) * n];
            assert_eq!(&got[m * ldo..m * ldo + n], row, "{rows}x{k}x{n} row {m}");
            assert_eq!(&port[m * ldo..m * ldo + n], row, "{rows}x{k}x{n} row {m}");
            assert!(got[m * ldo + n..(m + 1) * ldo].iter().all(|&v| v == -7.0));
        }
        // A panel range writes only its channels.
        let (p0, p1) = (panels(n) / 2, panels(n));
        let mut part = vec![-7f32; rows * ldo];
        gemm(
            &x,
            &xs,
            qmax,
            &wp,
            &packed_scales,
            k,
            n,
            rows,
            (p0, p1),
            &mut part,
            ldo,
        );
        for m in 0..rows {
            for c in 0..ldo {
                let inside = c >= p0 * PANEL && c < n;
                let expect = if inside { want[m * n + c] } else { -7.0 };
                assert_eq!(part[m * ldo + c], expect, "{rows}x{k}x{n} at {m},{c}");
            }
        }
    }

    #[test]
    fn the_picked_kernel_equals_the_definition_exactly() {
        let mut seed = 3;
        for &(rows, k, n) in &[
            (1, 1, 1),
            (3, 17, 5),
            (2, 16, 8),
            (5, 768, 9),
            (16, 40, 33),
            (7, 3, 2),
            (13, 3072, 24),
            (6, 130, 300),
            (17, 64, 64),
            (4, 200, 16),
        ] {
            case(rows, k, n, &mut seed);
        }
        assert!(kernel_name(2047).starts_with("bertling_panel_"));
    }

    #[test]
    fn extreme_codes_do_not_overflow() {
        for k in [768usize, 3072, 70_001] {
            let q = act_max(k, i16::MAX as i32);
            let kp = padded_k(k);
            let mut x = vec![0i16; 2 * kp];
            for t in 0..k {
                x[t] = -(q as i16);
                x[kp + t] = q as i16;
            }
            let w = pack(&vec![-127i8; 9 * k], 9, k);
            let scales = vec![1f32; scales_len(9, k)];
            let all = (0, panels(9));
            let mut out = vec![0f32; 2 * 9];
            gemm(&x, &[1.0, 1.0], q, &w, &scales, k, 9, 2, all, &mut out, 9);
            let mut port = vec![0f32; 2 * 9];
            portable(&x, &[1.0, 1.0], &w, &scales, k, 9, 2, all, &mut port, 9);
            assert_eq!(out, port, "k = {k}");
            let want = q as f64 * 127.0 * k as f64;
            assert!(want <= i32::MAX as f64);
            for (i, &v) in out.iter().enumerate() {
                let sign = if i < 9 { 1.0 } else { -1.0 };
                // One f32 rounding per group: a relative error of at most groups · 2⁻²⁴.
                assert!(
                    (v as f64 - sign * want).abs() <= want * 1e-4,
                    "k = {k}: {v}"
                );
            }
        }
    }

    #[test]
    fn weights_quantize_per_channel_and_group() {
        // Two channels, K = 130: groups of 64, 64 and 2 inputs.
        let (n, k) = (2, 130);
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i % 7) as f32 - 3.0) * (1 + i / 64) as f32)
            .collect();
        let (codes, scales) = quantize_weight(&w, n, k, |s| s);
        let groups = scale_groups(k);
        assert_eq!(groups, 3);
        for c in 0..n {
            for t in 0..k {
                let s = scales[scale_index(c, t / SCALE_GROUP, groups)];
                let back = codes[packed_index(c, t, padded_k(k))] as f32 * s;
                assert!((back - w[c * k + t]).abs() <= s / 2.0 + 1e-6, "{c},{t}");
            }
        }
        // Padding channels get zero scales and codes.
        assert!(scales[scale_index(2, 0, groups)..]
            .iter()
            .step_by(PANEL)
            .all(|&s| s == 0.0));
    }

    #[test]
    fn rows_are_padded_with_zero_codes() {
        let x = [0.5f32, -1.0, 0.25, 1.0, 1.0];
        let mut codes = vec![9i16; 2 * padded_k(5)];
        let mut scales = [0f32; 1];
        quantize_rows(&x, 5, 2047, &mut codes[..8], &mut scales);
        assert_eq!(&codes[..8], &[1024, -2047, 512, 2047, 2047, 0, 0, 0]);
        assert_eq!(scales, [1.0 / 2047.0]);
    }
}
