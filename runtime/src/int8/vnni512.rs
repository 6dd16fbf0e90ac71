//! The 512-bit AVX512-VNNI kernel for [`super::a8`]'s byte codes (`bertling_a8_avx512vnni`):
//! the same product as [`super::a7`]'s 256-bit tile with `vpdpbusd`
//! (`bertling_a8_avx512vnni_256`), two panels at a time.
//!
//! **Why a second width.** The 256-bit form does 32 multiply-adds an instruction, the 512-bit one
//! 64, which is onnxruntime's int8 kernel on these CPUs. Where the 512-bit unit is two 256-bit
//! halves (Zen 4, Intel's client cores) both widths peak alike; where it is whole (Zen 5, Intel's
//! server cores with two 512-bit units) the 512-bit form has twice the peak.
//!
//! **Tile.** Per group of 4 inputs: panels `p` and `p + 1` (32 bytes each: 8 channels x 4 codes)
//! side by side in one register, 16 channels; each row's 4 codes broadcast; one `vpdpbusd`. 8
//! rows x 4 panels (32 channels, 16 accumulators) a tile. Per group of 64 inputs the sums start
//! at `−z · Σw` from the column sums (`vpmaddwd`: `|Σw| ≤ 64 · 127` fits in i16), and end in
//! `y = fma(sum, ws · xs, y)`, in the order the definition has, so the bits are the portable
//! kernel's.
//!
//! Like the 256-bit VNNI kernels it cannot run where bertling is developed; [`super::a8`] checks it
//! against the portable kernel before first use, and `scripts/emulated-avx512.sh` runs the tests
//! on an emulated AVX-512 CPU.

use std::arch::x86_64::*;

use super::a7::{tile_operands, ACT_GROUP};
use super::packed::{self, PANEL};

/// Rows a tile.
const MR: usize = 8;
/// Panels a tile (two a register).
const NP: usize = 4;

/// 32 bytes at `a` in the low half, and 32 at `b` (if given) in the high one (else zeros).
#[inline(always)]
pub(super) unsafe fn halves<T>(a: *const T, b: Option<*const T>) -> __m512i {
    let lo = _mm256_loadu_si256(a as *const __m256i);
    match b {
        Some(b) => _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), _mm256_loadu_si256(b as _)),
        None => _mm512_zextsi256_si512(lo),
    }
}

/// Stores one row's 16 outputs of panels `p` and (if `pair`) `p + 1`, those below `n` only.
#[inline(always)]
pub(super) unsafe fn store_pair(y: __m512, p: usize, pair: bool, n: usize, row: &mut [f32]) {
    if pair && (p + 2) * PANEL <= n {
        _mm512_storeu_ps(row.as_mut_ptr().add(p * PANEL), y);
    } else {
        let mut tmp = [0f32; 2 * PANEL];
        _mm512_storeu_ps(tmp.as_mut_ptr(), y);
        let (lo, hi) = tmp.split_at(PANEL);
        packed::store_row(lo.try_into().expect("8 lanes"), p, n, row);
        if pair {
            packed::store_row(hi.try_into().expect("8 lanes"), p + 1, n, row);
        }
    }
}

/// One tile: `R` rows from `m`, `Z` registers of two panels from panel `p` (the last holding
/// one panel unless `FULL`); `x`, `xs`, `xz` at row `m`, `w`, `ws`, `sums` at panel `p`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize, const Z: usize, const FULL: bool>(
    (x, xs, xz): (*const u8, *const f32, Option<*const u8>),
    (w, ws, sums): (*const i8, *const f32, *const i32),
    kp: usize,
    (m, p, n): (usize, usize, usize),
    out: &mut [f32],
    ldo: usize,
) {
    let groups = kp.div_ceil(ACT_GROUP);
    // Whether register `j` holds a second panel.
    let pair = |j: usize| j + 1 < Z || FULL;
    let mut y = [[_mm512_setzero_ps(); Z]; R];
    for gi in 0..groups {
        let (k0, k1) = (gi * ACT_GROUP, ((gi + 1) * ACT_GROUP).min(kp));
        // The sums start from what the zero point (or the offset) takes back, as in the 256-bit
        // tile: `−z · Σw` (`vpmaddwd`: Σw = sums / 64 fits in the low i16 of its lane, z in the
        // low i16 of the other's), or `−64 · Σw`.
        let mut acc = [[_mm512_setzero_si512(); Z]; R];
        for j in 0..Z {
            let at = 2 * j * groups * PANEL + gi * PANEL;
            let next = pair(j).then_some(groups * PANEL);
            let c = halves(sums.add(at), next.map(|d| sums.add(at + d)));
            // `c` is 64 · Σw: Σw = c / 64 exactly.
            let c = match xz {
                Some(_) => _mm512_srai_epi32::<6>(c),
                None => c,
            };
            let neg = _mm512_sub_epi32(_mm512_setzero_si512(), c);
            for (i, a) in acc.iter_mut().enumerate() {
                a[j] = match xz {
                    Some(z) => {
                        _mm512_madd_epi16(neg, _mm512_set1_epi32(*z.add(i * groups + gi) as i32))
                    }
                    None => neg,
                };
            }
        }
        let mut g = k0;
        while g < k1 {
            let mut wv = [_mm512_setzero_si512(); Z];
            for (j, v) in wv.iter_mut().enumerate() {
                let a = w.add(2 * j * PANEL * kp + g * PANEL);
                *v = halves(a, pair(j).then(|| a.add(PANEL * kp)));
            }
            for (i, a) in acc.iter_mut().enumerate() {
                let xv = _mm512_set1_epi32((x.add(i * kp + g) as *const i32).read_unaligned());
                for (a, v) in a.iter_mut().zip(&wv) {
                    *a = _mm512_dpbusd_epi32(*a, xv, *v);
                }
            }
            g += 4;
        }
        for j in 0..Z {
            let at = 2 * j * groups * PANEL + gi * PANEL;
            let next = pair(j).then_some(groups * PANEL);
            let s = _mm512_castsi512_ps(halves(ws.add(at), next.map(|d| ws.add(at + d))));
            for (i, y) in y.iter_mut().enumerate() {
                let sum = _mm512_cvtepi32_ps(acc[i][j]);
                let t = _mm512_mul_ps(s, _mm512_set1_ps(*xs.add(i * groups + gi)));
                y[j] = _mm512_fmadd_ps(sum, t, y[j]);
            }
        }
    }
    for (i, y) in y.iter().enumerate() {
        let row = &mut out[(m + i) * ldo..];
        for (j, y) in y.iter().enumerate() {
            store_pair(*y, p + 2 * j, pair(j), n, row);
        }
    }
}

/// [`super::a7::Simd`]'s product with 512-bit `vpdpbusd`: codes the unsigned bytes `u`.
///
/// # Safety
/// The CPU has AVX2, FMA, AVX512F, AVX512BW and AVX512-VNNI; the slices are as long as
/// [`super::a8`]'s checks require.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vnni")]
pub unsafe fn gemm(
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
    packed::tiles::<MR, NP>(kp, rows, panels, |m, r, p, np| {
        let (xr, wr) = tile_operands(operands, kp, (m, p));
        let at = (m, p, n);
        macro_rules! go {
            ($r:literal) => {
                match np {
                    4 => tile::<$r, 2, true>(xr, wr, kp, at, out, ldo),
                    3 => tile::<$r, 2, false>(xr, wr, kp, at, out, ldo),
                    2 => tile::<$r, 1, true>(xr, wr, kp, at, out, ldo),
                    _ => tile::<$r, 1, false>(xr, wr, kp, at, out, ldo),
                }
            };
        }
        match r {
            8 => go!(8),
            7 => go!(7),
            6 => go!(6),
            5 => go!(5),
            4 => go!(4),
            3 => go!(3),
            2 => go!(2),
            _ => go!(1),
        }
    });
}
