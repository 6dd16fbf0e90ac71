//! 8-bit asymmetric activation codes with a scale and a zero point per row **and group of 64
//! inputs**, against the same i8 weights as [`super::a7`] (panels of 8 channels x 4 inputs, a
//! scale per channel and 64 inputs, column sums from the loader): `bertling compile
//! --int8-activations grouped8`, format 7.
//!
//! **Why.** A group's 255 levels between `min(lo, 0)` and `max(hi, 0)` are as accurate as 12-bit
//! codes per row on a real pretrained model (BENCHMARKS.md, "int8 accuracy"), and 8-bit codes are
//! what integer dot-product instructions multiply, exactly, into i32: one `vpdpbusd` (AVX512-VNNI or
//! AVX-VNNI, unsigned x signed bytes) per 32 multiply-adds, one `sdot` (Armv8.2, Raspberry Pi 5) per
//! 16, where 12-bit codes need two instructions. On AVX2 alone no byte instruction is exact for them
//! (`vpmaddubsw` saturates), so there the codes are widened to i16, like 12-bit ones, and cost what
//! they cost.
//!
//! **Definition.** For row `m`, channel `c` and group `g`, with codes `u` in `[0, 255]`, zero
//! points `z(m, g)` and scales `xs(m, g)` (`x ≈ (u − z) · xs`, [`quantize_rows`]), the weight
//! codes `w` and scales `ws(c, g)`, and `S_g = Σ_{k in g} (u(m, k) − z(m, g)) · w(c, k)` (exact,
//! i32): `y = fma(S_{G-1}, ws·xs, ... fma(S_0, ws·xs, 0))`, each `ws·xs` one f32 product and the
//! groups in order: every implementation gives the same bits.
//!
//! **Implementations** ([`kernel_name`]): with AMX (`bertling_a8_amx`: `tdpbusd` on tiles of 16
//! rows x 64 codes, a group a product, `amx.rs`); with VNNI (`bertling_a8_avx512vnni`: 512-bit registers,
//! two panels each, `vnni512.rs`; `bertling_a8_avx512vnni_256` and `bertling_a8_avxvnni`:
//! 256-bit) the bytes `u` as they are into `vpdpbusd`, `z · Σw` taken back per group through the
//! column sums; AVX2 (`bertling_a8_avx2`) the codes stored as `u − z` in i16 and
//! multiplied by `vpmaddwd` against the widened weights (no column sums needed), or, only when
//! [`KERNEL_VAR`] asks for it, `bertling_a8_avx2_sign`: the signed bytes `u − 128` into
//! `vpmaddubsw(|s|, w · sign(s))` (exact: `2 · 128 · 127 < 2¹⁵`), `(128 − z) · Σw` added back
//! per group (slower than the i16 kernel on the Zen 1 it was timed on; fewer instructions per
//! product, so possibly faster on wider cores: see BENCHMARKS.md); NEON
//! (`bertling_a8_neon_dot`: `sdot`; `bertling_a8_neon`: `smull` + `smlal`, two products of at
//! most `128 · 127` in i16) the signed bytes `u − 128`, `(128 − z) · Σw` added back per group;
//! portable Rust elsewhere.
//!
//! **The AMX and VNNI kernels run only on some of the machines bertling is developed on** (and
//! qemu does not emulate them), so before the first product on a CPU that has them,
//! [`kernel_name`]'s choice runs a fixed product through each and the portable kernel and keeps
//! one only if the two agree bit for bit; otherwise it logs a warning and uses the next.

use std::sync::OnceLock;

use super::a7::{self, ACT_GROUP};
#[cfg(target_arch = "x86_64")]
use super::group_avx2;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
use super::group_simd;
#[cfg(target_arch = "x86_64")]
use super::packed::avx2 as packed_avx2;
use super::packed::{padded_k, panels, PANEL};

/// The `activation_max` attribute of 8-bit grouped operators (with `activation_group` 64 and
/// `activation_asymmetric` 1): codes `u − 128` span `[-128, 127]`.
pub const ACT_MAX: i32 = 127;

/// The middle code: codes are stored (for byte kernels) as `u − MID`, and a group of zeros gets
/// this zero point.
pub const MID: u8 = 128;

/// Codes per group, less one: `u` spans `[0, LEVELS]`.
const LEVELS: f32 = 2.0 * MID as f32 - 1.0;

/// Number of activation scales (and zero points) per row.
pub fn groups(k: usize) -> usize {
    a7::groups(k)
}

/// The implementation [`gemm`] runs, chosen once per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // each target architecture constructs its own
enum Kernel {
    Amx,
    Avx512Vnni,
    Avx512Vnni256,
    AvxVnni,
    Avx2Sign,
    Avx2,
    NeonDot,
    Neon,
    Portable,
}

impl Kernel {
    fn name(self) -> &'static str {
        match self {
            Kernel::Amx => "bertling_a8_amx",
            Kernel::Avx512Vnni => "bertling_a8_avx512vnni",
            Kernel::Avx512Vnni256 => "bertling_a8_avx512vnni_256",
            Kernel::AvxVnni => "bertling_a8_avxvnni",
            Kernel::Avx2Sign => "bertling_a8_avx2_sign",
            Kernel::Avx2 => "bertling_a8_avx2",
            Kernel::NeonDot => "bertling_a8_neon_dot",
            Kernel::Neon => "bertling_a8_neon",
            Kernel::Portable => "bertling_a8_portable",
        }
    }
}

/// The best implementation this CPU has, the VNNI ones only after [`self_check`].
fn kernel() -> Kernel {
    static PICKED: OnceLock<Kernel> = OnceLock::new();
    *PICKED.get_or_init(|| {
        let mut candidates = detected();
        candidates.retain(|&k| match k {
            Kernel::Amx | Kernel::Avx512Vnni | Kernel::Avx512Vnni256 | Kernel::AvxVnni => {
                let ok = self_check(k);
                if !ok {
                    tracing::warn!(
                        kernel = k.name(),
                        "an int8 kernel disagrees with the reference on this CPU; not using it"
                    );
                }
                ok
            }
            _ => true,
        });
        if let Ok(name) = std::env::var(KERNEL_VAR) {
            match candidates.iter().find(|k| k.name() == name) {
                Some(&k) => return k,
                None => tracing::warn!(
                    asked = name,
                    available = ?candidates.iter().map(|k| k.name()).collect::<Vec<_>>(),
                    "{KERNEL_VAR} names no int8 kernel this CPU runs; ignoring it"
                ),
            }
        }
        candidates.first().copied().unwrap_or(Kernel::Portable)
    })
}

/// The environment variable that forces one of the kernels this CPU has (by [`kernel_name`]),
/// for comparing them: `BERTLING_A8_KERNEL=bertling_a8_avx2 bertling bench ...`.
pub const KERNEL_VAR: &str = "BERTLING_A8_KERNEL";

/// The implementations this CPU can run, best first.
fn detected() -> Vec<Kernel> {
    #[allow(unused_mut)]
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            if super::amx::available() {
                found.push(Kernel::Amx);
            }
            if has!("avx512f") && has!("avx512bw") && has!("avx512vnni") {
                found.push(Kernel::Avx512Vnni);
            }
            if has!("avx512vnni") && has!("avx512vl") {
                found.push(Kernel::Avx512Vnni256);
            }
            if has!("avxvnni") {
                found.push(Kernel::AvxVnni);
            }
            // The sign kernel is exact too but measured slower on the Zen 1 bertling is timed
            // on (BENCHMARKS.md); `BERTLING_A8_KERNEL` picks it where it may be faster.
            found.push(Kernel::Avx2);
            found.push(Kernel::Avx2Sign);
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::is_aarch64_feature_detected as has;
        if has!("dotprod") {
            found.push(Kernel::NeonDot);
        }
        if has!("neon") {
            found.push(Kernel::Neon);
        }
    }
    found.push(Kernel::Portable);
    found
}

/// Which implementation [`gemm`] uses on this CPU.
///
/// ```
/// assert!(bertling::int8::a8::kernel_name().starts_with("bertling_a8_"));
/// ```
pub fn kernel_name() -> &'static str {
    kernel().name()
}

/// Whether [`gemm`] takes i16 codes `u − z` ([`quantize_rows_wide`]) on this CPU rather than
/// bytes ([`quantize_rows`] with [`code_offset`]).
pub fn wide_codes() -> bool {
    kernel() == Kernel::Avx2
}

/// What [`quantize_rows`] adds to the stored codes `u − 128` for this CPU's kernel: 128 (the
/// unsigned bytes `u` VNNI reads) or 0 (signed bytes).
pub fn code_offset() -> u8 {
    offset_of(kernel())
}

/// The offset `kernel` reads byte codes with.
fn offset_of(kernel: Kernel) -> u8 {
    match kernel {
        Kernel::Amx | Kernel::Avx512Vnni | Kernel::Avx512Vnni256 | Kernel::AvxVnni => MID,
        _ => 0,
    }
}

/// Quantizes each row of `x` (`rows x k`) to 8-bit asymmetric codes per group of [`ACT_GROUP`]
/// inputs: with `lo = min(0, min v)`, `hi = max(0, max v)`, the scale `xs = (hi − lo) / 255`, the
/// zero point `z = round_ties_even(−lo · 255 / (hi − lo))` and `u = clamp(round_ties_even(v · 255
/// / (hi − lo)) + z, 0, 255)`, so `v ≈ (u − z) · xs`; stored as the byte `(u − 128) + offset`
/// (wrapping) in rows of [`padded_k`]`(k)` bytes (padding: `u = 128`), the scale in
/// `scales[row · groups(k) + group]` and `z` in `zeros` at the same index. A group of zeros gets
/// scale 0 and `z = 128`; one holding a NaN or an infinity gets `u = z = 128` and a NaN scale,
/// which carries the problem to the output.
///
/// ```
/// use bertling::int8::a8::quantize_rows;
/// let (mut codes, mut scales, mut zeros) = ([0u8; 4], [0f32; 1], [0u8; 1]);
/// quantize_rows(&[0.5, -1.0, 0.25], 3, 128, &mut codes, &mut scales, &mut zeros);
/// assert_eq!(scales[0], 1.5 / 255.0);
/// assert_eq!(zeros[0], 170); // round(1.0 · 255 / 1.5)
/// assert_eq!(codes, [255, 0, 212, 128]); // 85 + 170; 42.5 rounds to even (42), + 170
/// ```
pub fn quantize_rows(
    x: &[f32],
    k: usize,
    offset: u8,
    codes: &mut [u8],
    scales: &mut [f32],
    zeros: &mut [u8],
) {
    let store = |u: u8, _z: u8| u.wrapping_sub(MID).wrapping_add(offset);
    #[allow(unused_mut)]
    let mut fast: Option<a7::GroupQuantizer<'_, u8>> = None;
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    let vector = |part: &[f32], out: &mut [u8]| {
        // SAFETY: the instructions are present (checked below); `out` is as long as `part`.
        unsafe { group_simd::group_bytes(part, LEVELS, offset.wrapping_sub(MID), out) }
    };
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if group_simd::available() {
        fast = Some(&vector);
    }
    a7::quantize_asymmetric(x, k, MID, padded_k(k), codes, scales, zeros, store, fast);
}

/// [`quantize_rows`] for the AVX2 kernel: the same codes and scales, stored as `u − z` in i16
/// (padding 0), so the zero point needs no storing.
///
/// ```
/// use bertling::int8::a8::quantize_rows_wide;
/// let (mut codes, mut scales) = ([9i16; 4], [0f32; 1]);
/// quantize_rows_wide(&[0.5, -1.0, 0.25], 3, &mut codes, &mut scales);
/// assert_eq!(codes, [85, -170, 42, 0]);
/// ```
pub fn quantize_rows_wide(x: &[f32], k: usize, codes: &mut [i16], scales: &mut [f32]) {
    let store = |u: u8, z: u8| u as i16 - z as i16;
    #[allow(unused_mut)]
    let mut fast: Option<a7::GroupQuantizer<'_, i16>> = None;
    #[cfg(target_arch = "x86_64")]
    let avx2 = |part: &[f32], out: &mut [i16]| {
        // SAFETY: AVX2 is present (checked below); `out` is as long as `part`.
        unsafe { group_avx2::group_wide(part, out) }
    };
    #[cfg(target_arch = "x86_64")]
    if group_avx2::available() {
        fast = Some(&avx2);
    }
    a7::quantize_asymmetric(x, k, MID, padded_k(k), codes, scales, &mut [], store, fast);
}

/// Activation codes as [`gemm`] takes them on this CPU (see [`wide_codes`]).
#[derive(Debug, Clone, Copy)]
pub enum Codes<'a> {
    /// From [`quantize_rows`] with [`code_offset`], and their zero points.
    Bytes(&'a [u8], &'a [u8]),
    /// From [`quantize_rows_wide`].
    Wide(&'a [i16]),
}

/// `out[m · ldo + c]` for rows `m < rows` and the channels `c < n` of panels `p0..p1` (see the
/// module doc): `x` the codes of `rows` rows of [`padded_k`]`(k)` inputs in the form this CPU's
/// kernel takes ([`wide_codes`]), `x_scale` their scales, `w` the packed weights (`[n, k]`),
/// `w_scale` their scales and `sums` their [`a7::column_sums`].
///
/// ```
/// use bertling::int8::a7::column_sums;
/// use bertling::int8::a8::{code_offset, gemm, groups, quantize_rows, quantize_rows_wide};
/// use bertling::int8::a8::{wide_codes, Codes};
/// use bertling::int8::packed::{padded_k, panels, quantize_weight};
/// let x = [0.5f32, -1.0, 0.25];
/// let mut xs = vec![0f32; groups(3)];
/// let (mut bytes, mut zeros, mut wide) = (vec![0u8; padded_k(3)], vec![0u8; 1], vec![0i16; 4]);
/// let codes = if wide_codes() {
///     quantize_rows_wide(&x, 3, &mut wide, &mut xs);
///     Codes::Wide(&wide)
/// } else {
///     quantize_rows(&x, 3, code_offset(), &mut bytes, &mut xs, &mut zeros);
///     Codes::Bytes(&bytes, &zeros)
/// };
/// let (w, ws) = quantize_weight(&[1.0, 0.0, 0.0, 0.0, 2.0, 2.0], 2, 3, |s| s);
/// let sums = column_sums(&w, 2, 3);
/// let mut y = [0f32; 2];
/// gemm(codes, &xs, &w, &ws, &sums, 3, 2, 1, (0, panels(2)), &mut y, 2);
/// assert!((y[0] - 0.5).abs() < 1e-2 && (y[1] + 1.5).abs() < 2e-2, "{y:?}");
/// ```
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    x: Codes<'_>,
    x_scale: &[f32],
    w: &[i8],
    w_scale: &[f32],
    sums: &[i32],
    k: usize,
    n: usize,
    rows: usize,
    panels: (usize, usize),
    out: &mut [f32],
    ldo: usize,
) {
    run(
        kernel(),
        x,
        x_scale,
        w,
        w_scale,
        sums,
        (k, n, rows),
        panels,
        out,
        ldo,
    )
}

/// [`gemm`] with a given implementation, which must be one [`detected`] lists and match the
/// form of `x`.
#[allow(clippy::too_many_arguments)]
fn run(
    kernel: Kernel,
    x: Codes<'_>,
    x_scale: &[f32],
    w: &[i8],
    w_scale: &[f32],
    sums: &[i32],
    (k, n, rows): (usize, usize, usize),
    (p0, p1): (usize, usize),
    out: &mut [f32],
    ldo: usize,
) {
    let (kp, g) = (padded_k(k), groups(k));
    match x {
        Codes::Bytes(c, z) => assert!(c.len() >= rows * kp && z.len() >= rows * g),
        Codes::Wide(c) => assert!(c.len() >= rows * kp),
    }
    assert!(x_scale.len() >= rows * g);
    assert!(w.len() >= panels(n) * PANEL * kp);
    assert!(w_scale.len() >= panels(n) * g * PANEL && sums.len() >= panels(n) * g * PANEL);
    assert!(p0 <= p1 && p1 <= panels(n));
    assert!(rows == 0 || n == 0 || out.len() >= (rows - 1) * ldo + n);
    assert!(ldo >= n);
    let ws = w_scale;
    match (kernel, x) {
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx2, Codes::Wide(c)) => {
            // SAFETY: AVX2 and FMA are present (`detected`); the asserts above bound every access.
            unsafe { packed_avx2::gemm_grouped(c, x_scale, w, ws, kp, n, rows, (p0, p1), out, ldo) }
        }
        (_, Codes::Bytes(c, z)) => match byte_kernel(kernel) {
            // SAFETY: the instructions are present (`detected`); the asserts bound every access.
            Some(f) => unsafe {
                f(
                    c,
                    x_scale,
                    Some(z),
                    w,
                    ws,
                    sums,
                    kp,
                    n,
                    rows,
                    (p0, p1),
                    out,
                    ldo,
                )
            },
            None => {
                let codes = (c, offset_of(kernel), MID);
                let at = (k, n, rows);
                a7::portable_mid(codes, x_scale, Some(z), (w, ws), at, (p0, p1), out, ldo)
            }
        },
        (_, Codes::Wide(c)) => portable_wide(c, x_scale, (w, ws), (k, n, rows), (p0, p1), out, ldo),
    }
}

/// The SIMD kernel for byte codes `kernel` names ([`a7`]'s, with 8-bit codes), if any.
fn byte_kernel(kernel: Kernel) -> Option<a7::Simd> {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Amx => Some(super::amx::gemm),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512Vnni => Some(super::vnni512::gemm),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512Vnni256 => Some(a7::avx2::gemm_vnni512),
        #[cfg(target_arch = "x86_64")]
        Kernel::AvxVnni => Some(a7::avx2::gemm_avxvnni),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2Sign => Some(a7::avx2::gemm_sign),
        #[cfg(target_arch = "aarch64")]
        Kernel::NeonDot => Some(a7::neon::gemm8_dot),
        #[cfg(target_arch = "aarch64")]
        Kernel::Neon => Some(a7::neon::gemm8),
        _ => None,
    }
}

/// The definition for codes stored as `u − z` in i16.
#[allow(clippy::too_many_arguments)]
fn portable_wide(
    x: &[i16],
    x_scale: &[f32],
    (w, w_scale): (&[i8], &[f32]),
    (k, n, rows): (usize, usize, usize),
    (p0, p1): (usize, usize),
    out: &mut [f32],
    ldo: usize,
) {
    use super::packed::{packed_index, scale_index};
    let (kp, g) = (padded_k(k), groups(k));
    for m in 0..rows {
        for c in p0 * PANEL..(p1 * PANEL).min(n) {
            let mut y = 0f32;
            for gi in 0..g {
                let sum: i32 = (gi * ACT_GROUP..((gi + 1) * ACT_GROUP).min(kp))
                    .map(|t| x[m * kp + t] as i32 * w[packed_index(c, t, kp)] as i32)
                    .sum();
                let s = w_scale[scale_index(c, gi, g)] * x_scale[m * g + gi];
                y = (sum as f32).mul_add(s, y);
            }
            out[m * ldo + c] = y;
        }
    }
}

/// Whether `kernel` gives the portable implementation's bits on a fixed product with every
/// code, zero point and a ragged `k`, `n` and row count (see the module doc: VNNI kernels run
/// only where they were checked).
fn self_check(kernel: Kernel) -> bool {
    let (k, n, rows) = (200, 19, 7);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as u32
    };
    let codes: Vec<i8> = (0..n * k)
        .map(|_| (next() % 255) as i32 - 127)
        .map(|v| v as i8)
        .collect();
    let w = super::packed::pack(&codes, n, k);
    let ws: Vec<f32> = (0..super::packed::scales_len(n, k))
        .map(|_| (next() % 1000) as f32 * 1e-4)
        .collect();
    // Skewed rows (asymmetric ranges), one with a group of zeros, one with extremes.
    let mut x: Vec<f32> = (0..rows * k)
        .map(|_| (next() % 2001) as f32 / 100.0 - 3.0)
        .collect();
    x[k..k + ACT_GROUP].fill(0.0);
    x[2 * k] = 1e4;
    x[3 * k + 1] = -1e4;
    let (kp, g) = (padded_k(k), groups(k));
    let (mut xq, mut xs, mut xz) = (
        vec![0u8; rows * kp],
        vec![0f32; rows * g],
        vec![0u8; rows * g],
    );
    let offset = offset_of(kernel);
    quantize_rows(&x, k, offset, &mut xq, &mut xs, &mut xz);
    let mut wide = vec![0i16; rows * kp];
    let codes = if kernel == Kernel::Avx2 {
        quantize_rows_wide(&x, k, &mut wide, &mut xs);
        Codes::Wide(&wide)
    } else {
        Codes::Bytes(&xq, &xz)
    };
    let sums = a7::column_sums(&w, n, k);
    let (mut want, mut got) = (vec![0f32; rows * n], vec![f32::NAN; rows * n]);
    let at = (k, n, rows);
    let all = (0, panels(n));
    a7::portable_mid(
        (&xq, offset, MID),
        &xs,
        Some(&xz),
        (&w, &ws),
        at,
        all,
        &mut want,
        n,
    );
    run(kernel, codes, &xs, &w, &ws, &sums, at, all, &mut got, n);
    want.iter()
        .zip(&got)
        .all(|(a, b)| a.to_bits() == b.to_bits())
}

#[cfg(test)]
mod tests {
    use super::super::lcg;
    use super::super::packed::{pack, scale_index, scales_len};
    use super::*;

    /// The definition, from row-major weight codes, codes `u` and zero points.
    fn reference(
        u: &[i32],
        z: &[i32],
        xs: &[f32],
        (codes, ws): (&[i8], &[f32]),
        (k, n, rows): (usize, usize, usize),
    ) -> Vec<f32> {
        let g = groups(k);
        let mut out = vec![0f32; rows * n];
        for m in 0..rows {
            for c in 0..n {
                let mut y = 0f32;
                for gi in 0..g {
                    let sum: i32 = (gi * ACT_GROUP..((gi + 1) * ACT_GROUP).min(k))
                        .map(|t| (u[m * k + t] - z[m * g + gi]) * codes[c * k + t] as i32)
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
        let mut seed = 11u64;
        for &(k, n, rows) in &[
            (768, 64, 13),
            (3, 2, 1),
            (130, 19, 7),
            (64, 8, 6),
            (200, 33, 12),
            (3072, 16, 5),
            // Rows beyond one 16-row AMX tile, a ragged group and a panel pair cut by `n`.
            (200, 44, 37),
        ] {
            let codes: Vec<i8> = (0..n * k)
                .map(|_| (lcg(&mut seed) % 255) as i32 - 127)
                .map(|v| v as i8)
                .collect();
            // Extreme weights in channel 0: the worst products of the i16 NEON path.
            let codes: Vec<i8> = codes
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    if i < k {
                        if i % 2 == 0 {
                            127
                        } else {
                            -127
                        }
                    } else {
                        c
                    }
                })
                .collect();
            let w = pack(&codes, n, k);
            let ws: Vec<f32> = (0..scales_len(n, k))
                .map(|_| (lcg(&mut seed) % 1000) as f32 * 1e-5)
                .collect();
            let mut x: Vec<f32> = (0..rows * k)
                .map(|_| (lcg(&mut seed) % 2001) as f32 / 100.0 - 6.0)
                .collect();
            // A row alternating between its group's extremes (codes 0 and 255).
            for (i, v) in x[..k].iter_mut().enumerate() {
                *v = if i % 2 == 0 { 5.0 } else { -5.0 };
            }
            let (kp, g) = (padded_k(k), groups(k));
            let sums = a7::column_sums(&w, n, k);
            let want = {
                let (mut q, mut xs, mut z) = (
                    vec![0u8; rows * kp],
                    vec![0f32; rows * g],
                    vec![0u8; rows * g],
                );
                quantize_rows(&x, k, MID, &mut q, &mut xs, &mut z);
                let u: Vec<i32> = (0..rows * k)
                    .map(|i| q[(i / k) * kp + i % k] as i32)
                    .collect();
                assert!(
                    u.contains(&0) && u.contains(&255),
                    "both ends of the code range"
                );
                let z: Vec<i32> = z.iter().map(|&z| z as i32).collect();
                reference(&u, &z, &xs, (&codes, &ws), (k, n, rows))
            };
            let what = format!("{k}x{n}x{rows}");
            for kernel in detected() {
                let (mut q, mut xs, mut z) = (
                    vec![0u8; rows * kp],
                    vec![0f32; rows * g],
                    vec![0u8; rows * g],
                );
                let mut wide = vec![0i16; rows * kp];
                let x_codes = if kernel == Kernel::Avx2 {
                    quantize_rows_wide(&x, k, &mut wide, &mut xs);
                    Codes::Wide(&wide)
                } else {
                    quantize_rows(&x, k, offset_of(kernel), &mut q, &mut xs, &mut z);
                    Codes::Bytes(&q, &z)
                };
                // Split across two column ranges, as threads do.
                let mut got = vec![f32::NAN; rows * n];
                let mid = panels(n) / 2;
                for range in [(0, mid), (mid, panels(n))] {
                    let at = (k, n, rows);
                    run(kernel, x_codes, &xs, &w, &ws, &sums, at, range, &mut got, n);
                }
                assert_eq!(got, want, "{}, {what}", kernel.name());
            }
            // The wide portable path too (the AVX2 kernel's codes on any CPU).
            let (mut wide, mut xs) = (vec![0i16; rows * kp], vec![0f32; rows * g]);
            quantize_rows_wide(&x, k, &mut wide, &mut xs);
            let mut got = vec![f32::NAN; rows * n];
            portable_wide(
                &wide,
                &xs,
                (&w, &ws),
                (k, n, rows),
                (0, panels(n)),
                &mut got,
                n,
            );
            assert_eq!(got, want, "portable wide, {what}");
        }
    }

    #[test]
    fn codes_span_each_group_and_reconstruct_it() {
        let mut seed = 5u64;
        let mut x: Vec<f32> = (0..256)
            .map(|_| (lcg(&mut seed) % 1000) as f32 / 1000.0 * 3.0 - 0.17)
            .collect();
        x[128..192].fill(0.0);
        x[200] = f32::INFINITY;
        let (mut q, mut s, mut z) = (vec![0u8; 256], vec![0f32; 4], vec![0u8; 4]);
        quantize_rows(&x, 256, MID, &mut q, &mut s, &mut z);
        let (lo, hi) = x[..64]
            .iter()
            .fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
        assert_eq!(s[0], (hi - lo) / 255.0);
        for (v, &u) in x[..64].iter().zip(&q[..64]) {
            let back = (u as f32 - z[0] as f32) * s[0];
            assert!(
                (back - v).abs() <= s[0] * 0.5 + 1e-6,
                "{v} -> {u} -> {back}"
            );
        }
        assert!(q[..64].contains(&255) && q[..64].iter().any(|&u| u <= 1));
        // Twice the resolution of the 7-bit asymmetric codes.
        let (mut q7, mut s7, mut z7) = (vec![0u8; 256], vec![0f32; 4], vec![0u8; 4]);
        a7::quantize_rows_asymmetric(&x, 256, 64, &mut q7, &mut s7, &mut z7);
        assert_eq!(s[0] * 255.0, s7[0] * 127.0);
        // Zeros: scale 0, every code at the zero point; an infinity: a NaN scale.
        assert_eq!((s[2], z[2]), (0.0, MID));
        assert!(q[128..192].iter().all(|&u| u == MID));
        assert!(s[3].is_nan() && z[3] == MID && q[192..].iter().all(|&u| u == MID));
        // The wide codes are u − z.
        let (mut wide, mut sw) = (vec![0i16; 256], vec![0f32; 4]);
        quantize_rows_wide(&x, 256, &mut wide, &mut sw);
        assert!(s.iter().zip(&sw).all(|(a, b)| a.to_bits() == b.to_bits()));
        for (i, (&u, &d)) in q.iter().zip(&wide).enumerate() {
            assert_eq!(u as i16 - z[i / 64] as i16, d, "at {i}");
        }
    }

    #[test]
    fn the_vectorized_quantizers_equal_the_definition() {
        let mut seed = 17u64;
        let k = 203; // a short last group, and groups that are no multiple of 8 long
        let mut x: Vec<f32> = (0..9 * k)
            .map(|_| (lcg(&mut seed) % 20001) as f32 / 1000.0 - 4.0)
            .collect();
        // Exact ties: a group whose values are whole and half steps of its own range.
        for (i, v) in x[64..128].iter_mut().enumerate() {
            *v = (i as f32 - 20.0) * 0.5 * (63.0 / 255.0);
        }
        x[64] = 0.0; // keep the range [-10 · 63 / 255, 21.5 · 63 / 255] exactly
        x[2 * k + 5] = f32::NAN;
        x[3 * k..4 * k].fill(0.0);
        x[4 * k + 70] = f32::INFINITY;
        // Whose sum overflows (the AVX2 quantizer leaves it to the scalar loop), with -0s.
        x[5 * k..5 * k + 64].fill(1e38);
        x[5 * k + 64..5 * k + 128].fill(-0.0);
        x[5 * k + 100] = 0.5;
        let (kp, g) = (padded_k(k), groups(k));
        let (mut q, mut s, mut z) = (vec![0u8; 9 * kp], vec![0f32; 9 * g], vec![0u8; 9 * g]);
        quantize_rows(&x, k, 0, &mut q, &mut s, &mut z);
        // The unsigned bytes VNNI reads: the same codes, 128 up (wrapping).
        let (mut qu, mut su, mut zu) = (vec![0u8; 9 * kp], vec![0f32; 9 * g], vec![0u8; 9 * g]);
        quantize_rows(&x, k, MID, &mut qu, &mut su, &mut zu);
        assert_eq!(
            (&su.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), &zu),
            (&s.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), &z)
        );
        let (mut wide, mut sw) = (vec![0i16; 9 * kp], vec![0f32; 9 * g]);
        quantize_rows_wide(&x, k, &mut wide, &mut sw);
        for m in 0..9 {
            for gi in 0..g {
                let part = &x[m * k + gi * 64..m * k + ((gi + 1) * 64).min(k)];
                let lo = part.iter().fold(0f32, |a, &v| a.min(v));
                let hi = part.iter().fold(0f32, |a, &v| a.max(v));
                let (range, at) = (hi - lo, m * g + gi);
                let (want_s, want_z) = if part.iter().any(|v| !v.is_finite()) {
                    (f32::NAN, MID)
                } else if range == 0.0 {
                    (0.0, MID)
                } else {
                    let zero = (-lo * (255.0 / range)).round_ties_even().clamp(0.0, 255.0);
                    (range / 255.0, zero as u8)
                };
                assert_eq!(s[at].to_bits(), want_s.to_bits(), "scale {m} {gi}");
                assert_eq!(sw[at].to_bits(), want_s.to_bits(), "wide scale {m} {gi}");
                assert_eq!(z[at], want_z, "zero {m} {gi}");
                for (t, v) in part.iter().enumerate() {
                    let u = if want_s.is_finite() && range > 0.0 {
                        let inv = 255.0 / range;
                        ((v * inv).round_ties_even() + want_z as f32).clamp(0.0, 255.0) as u8
                    } else {
                        MID
                    };
                    let i = m * kp + gi * 64 + t;
                    assert_eq!(q[i], u.wrapping_sub(MID), "byte {m} {gi} {t}: {v}");
                    assert_eq!(qu[i], u, "unsigned byte {m} {gi} {t}: {v}");
                    assert_eq!(wide[i], u as i16 - want_z as i16, "wide {m} {gi} {t}: {v}");
                }
            }
        }
    }

    #[test]
    fn the_picked_kernel_passes_its_self_check() {
        assert!(self_check(kernel()), "{}", kernel_name());
        assert_eq!(wide_codes(), kernel_name() == "bertling_a8_avx2");
    }

    /// On a CPU with AMX the AMX kernel, else on one with AVX512-VNNI the 512-bit VNNI kernel,
    /// passed its load-time self-check and is the one in use (VNNI run under emulation by
    /// scripts/emulated-avx512.sh); elsewhere the pick is a kernel this CPU has.
    #[test]
    fn vnni_cpus_use_the_vnni_kernel() {
        // For scripts/emulated-avx512.sh, which runs the tests with --nocapture.
        println!("a8 kernel_name(): {}", kernel_name());
        #[cfg(target_arch = "x86_64")]
        if super::super::amx::available() {
            assert_eq!(kernel_name(), "bertling_a8_amx");
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") {
            assert_eq!(kernel_name(), "bertling_a8_avx512vnni");
            return;
        }
        let names: Vec<_> = detected().iter().map(|k| k.name()).collect();
        assert!(
            names.contains(&kernel_name()),
            "{} not in {names:?}",
            kernel_name()
        );
    }
}
