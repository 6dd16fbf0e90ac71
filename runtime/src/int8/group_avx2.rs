//! One group of activations quantized to asymmetric codes on AVX2, in registers: the group's 64
//! values are loaded once and its minimum, maximum, scale, zero point and codes computed from them
//! (the [`super::a7::GroupQuantizer`] of [`super::a8`]'s and [`super::a7`]'s asymmetric codes on
//! x86; `group_neon` is its aarch64 twin). One pass, and no scalar work but the scale and zero
//! point: ~0.75 ns a value on a first-generation Zen, whose 256-bit operations take two cycles.
//!
//! The codes are those of [`super::a7::quantize_asymmetric`]'s scalar loop, bit for bit:
//! `u = clamp(round_ties_even(v · inv) + z, 0, levels)` computed as `v · inv` converted to i32
//! with rounding to nearest, ties to even (at most about `levels` in magnitude), plus `z`, narrowed
//! with saturation to i16 (no value reaches it) and clamped there. A group holding a NaN or an
//! infinity (or whose sum overflows, which the scalar loop then handles correctly), or only zeros,
//! is declined and left to the scalar loop.

use std::arch::x86_64::*;

use super::a7::{self, ACT_GROUP};

/// Whether this CPU has what the quantizers here need.
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// The group's codes `u` in i16, clamped to `[0, levels]`, four registers of 16 in the order
/// `_mm256_packs_epi32` leaves them (register `j` holds values `16j..16j + 4`, `16j + 8..16j + 12`,
/// `16j + 4..16j + 8`, `16j + 12..16j + 16` by 64-bit quarter); the scale and the zero point. `None`
/// for a group the scalar loop must take (see the module doc). `part` holds at most
/// [`ACT_GROUP`] values; missing ones count as zeros, which leave `min(0, ·)` and `max(0, ·)`
/// unchanged.
#[inline(always)]
unsafe fn codes(part: &[f32], levels: f32) -> Option<([__m256i; 4], f32, u8)> {
    let mut buf = [0f32; ACT_GROUP];
    let src = a7::whole_group(part, &mut buf).as_ptr();
    let v: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(8 * i)));
    // A tree, not a chain: the group's latency is what a row of groups waits on. Which of two
    // equal values (+0 and -0) wins may differ from the scalar loop's; nothing below depends on it.
    let zero = _mm256_setzero_ps();
    let tree = |op: &dyn Fn(__m256, __m256) -> __m256| {
        let (a, b) = (
            op(op(v[0], v[1]), op(v[2], v[3])),
            op(op(v[4], v[5]), op(v[6], v[7])),
        );
        op(op(a, b), zero)
    };
    let (lo, hi) = (
        tree(&|a, b| _mm256_min_ps(a, b)),
        tree(&|a, b| _mm256_max_ps(a, b)),
    );
    // The sum is finite unless a value is not (or it overflows): then the scalar loop decides.
    let sum = _mm256_add_ps(
        _mm256_add_ps(_mm256_add_ps(v[0], v[1]), _mm256_add_ps(v[2], v[3])),
        _mm256_add_ps(_mm256_add_ps(v[4], v[5]), _mm256_add_ps(v[6], v[7])),
    );
    if !fold(sum, |a, b| _mm_add_ps(a, b)).is_finite() {
        return None;
    }
    // Neither the range nor the rounded, clamped zero point (nor any code) depends on the sign of
    // a zero `lo` or `hi`.
    let lo = fold(lo, |a, b| _mm_min_ps(a, b));
    let hi = fold(hi, |a, b| _mm_max_ps(a, b));
    let (inv, zero, scale) = a7::group_params(lo, hi, levels)?;
    let (vi, vz) = (_mm256_set1_ps(inv), _mm256_set1_epi32(zero as i32));
    let t: [__m256i; 8] = std::array::from_fn(|i| {
        // The conversion rounds as MXCSR says: to nearest, ties to even, the only mode Rust code
        // may run in (changing the floating-point environment is undefined behaviour).
        _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(v[i], vi)), vz)
    });
    let top = _mm256_set1_epi16(levels as i16);
    let u = std::array::from_fn(|j| {
        let p = _mm256_packs_epi32(t[2 * j], t[2 * j + 1]);
        _mm256_min_epi16(_mm256_max_epi16(p, _mm256_setzero_si256()), top)
    });
    Some((u, scale, zero as u8))
}

/// The eight lanes of `v` folded with `op` (a commutative, associative operation on these
/// values).
#[inline(always)]
unsafe fn fold(v: __m256, op: impl Fn(__m128, __m128) -> __m128) -> f32 {
    let m = op(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = op(m, _mm_movehl_ps(m, m));
    _mm_cvtss_f32(op(m, _mm_shuffle_ps::<1>(m, m)))
}

/// Quantizes one group (at most [`ACT_GROUP`] values) with `levels` levels (127 or 255) and writes
/// its codes as the bytes `u + add` (wrapping) to `out`; returns its scale and zero point, or
/// `None` (writing nothing) for a group the scalar loop must take.
///
/// # Safety
/// AVX2 must be present ([`available`]); `out` must be at least as long as `part`.
#[target_feature(enable = "avx2")]
pub unsafe fn group_bytes(part: &[f32], levels: f32, add: u8, out: &mut [u8]) -> Option<(f32, u8)> {
    let (u, scale, z) = codes(part, levels)?;
    let (order, add) = (
        _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7),
        _mm256_set1_epi8(add as i8),
    );
    a7::write_group(out, part.len(), |to| {
        for h in 0..2 {
            // Codes are in [0, levels]: the unsigned narrowing is exact. Its 32-bit lanes then
            // hold values 0-3, 8-11, 16-19, 24-27, 4-7, 12-15, 20-23, 28-31 of these 32: `order`
            // sorts them.
            let b = _mm256_packus_epi16(u[2 * h], u[2 * h + 1]);
            let b = _mm256_add_epi8(_mm256_permutevar8x32_epi32(b, order), add);
            _mm256_storeu_si256(to.as_mut_ptr().add(32 * h) as *mut __m256i, b);
        }
    });
    Some((scale, z))
}

/// Quantizes one group (at most [`ACT_GROUP`] values) to 8-bit codes and writes them as `u − z`
/// in i16 to `out`; returns its scale and zero point, or `None` (writing nothing) for a group the
/// scalar loop must take.
///
/// # Safety
/// AVX2 must be present ([`available`]); `out` must be at least as long as `part`.
#[target_feature(enable = "avx2")]
pub unsafe fn group_wide(part: &[f32], out: &mut [i16]) -> Option<(f32, u8)> {
    let (u, scale, z) = codes(part, 255.0)?;
    let vz = _mm256_set1_epi16(z as i16);
    a7::write_group(out, part.len(), |to| {
        for (j, u) in u.iter().enumerate() {
            // 64-bit quarters 0, 2, 1, 3 hold values 0-3, 4-7, 8-11, 12-15 of these 16.
            let w = _mm256_sub_epi16(_mm256_permute4x64_epi64::<0b11_01_10_00>(*u), vz);
            _mm256_storeu_si256(to.as_mut_ptr().add(16 * j) as *mut __m256i, w);
        }
    });
    Some((scale, z))
}
