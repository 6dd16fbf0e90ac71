//! One group of activations quantized to asymmetric codes with NEON, in registers: the group's 64
//! values are loaded once into 16 registers and its minimum, maximum, scale, zero point and codes
//! computed from them (the [`super::a7::GroupQuantizer`] of [`super::a8`]'s and [`super::a7`]'s
//! asymmetric codes on aarch64; `group_avx2` is its x86 twin).
//!
//! The codes are those of [`super::a7::quantize_asymmetric`]'s scalar loop, bit for bit:
//! `u = clamp(round_ties_even(v · inv) + z, 0, levels)` computed as `v · inv` converted to i32
//! rounding to nearest with ties to even (`fcvtns`; at most about `levels` in magnitude), plus `z`,
//! narrowed with saturation to i16 (no value reaches it) and clamped there. `fmin` and `fmax`
//! carry a NaN through, and an infinity makes the range infinite: such groups, and groups of
//! zeros, are declined and left to the scalar loop.

use std::arch::aarch64::*;

use super::a7::{self, ACT_GROUP};

/// Whether this CPU has what the quantizer here needs.
pub fn available() -> bool {
    std::arch::is_aarch64_feature_detected!("neon")
}

/// Quantizes one group (at most [`ACT_GROUP`] values) with `levels` levels (127 or 255) and writes
/// its codes as the bytes `u + add` (wrapping) to `out`; returns its scale and zero point, or
/// `None` (writing nothing) for a group the scalar loop must take.
///
/// # Safety
/// NEON must be present ([`available`]); `out` must be at least as long as `part`.
#[target_feature(enable = "neon")]
pub unsafe fn group_bytes(part: &[f32], levels: f32, add: u8, out: &mut [u8]) -> Option<(f32, u8)> {
    let mut buf = [0f32; ACT_GROUP];
    let src = a7::whole_group(part, &mut buf).as_ptr();
    let v: [float32x4_t; 16] = std::array::from_fn(|i| vld1q_f32(src.add(4 * i)));
    // Trees, not chains: the group's latency is what a row of groups waits on. Which of two equal
    // values (+0 and -0) wins may differ from the scalar loop's choice; nothing below depends on
    // it (neither the range nor the rounded, clamped zero point, nor any code).
    let tree = |op: &dyn Fn(float32x4_t, float32x4_t) -> float32x4_t| {
        let mut r: [float32x4_t; 8] = std::array::from_fn(|i| op(v[2 * i], v[2 * i + 1]));
        for w in [4, 2, 1] {
            for i in 0..w {
                r[i] = op(r[2 * i], r[2 * i + 1]);
            }
        }
        op(r[0], vdupq_n_f32(0.0))
    };
    let lo = vminvq_f32(tree(&|a, b| vminq_f32(a, b)));
    let hi = vmaxvq_f32(tree(&|a, b| vmaxq_f32(a, b)));
    let (inv, zero, scale) = a7::group_params(lo, hi, levels)?;
    let (vz, top) = (vdupq_n_s32(zero as i32), vdupq_n_s16(levels as i16));
    let code = |x: float32x4_t| vqmovn_s32(vaddq_s32(vcvtnq_s32_f32(vmulq_n_f32(x, inv)), vz));
    a7::write_group(out, part.len(), |to| {
        for j in 0..8 {
            let u = vcombine_s16(code(v[2 * j]), code(v[2 * j + 1]));
            let u = vminq_s16(vmaxq_s16(u, vdupq_n_s16(0)), top);
            // In [0, levels]: the unsigned narrowing is exact.
            vst1_u8(
                to.as_mut_ptr().add(8 * j),
                vadd_u8(vqmovun_s16(u), vdup_n_u8(add)),
            );
        }
    });
    Some((scale, zero as u8))
}
