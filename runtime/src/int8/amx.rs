//! The AMX kernel for [`super::a8`]'s byte codes (`bertling_a8_amx`): each group of 64 inputs
//! is one `tdpbusd` per panel on Intel's Advanced Matrix Extensions (Sapphire Rapids and later
//! Xeons), and the group's scales are applied with AVX-512 as in [`super::vnni512`].
//!
//! **Why.** One `tdpbusd` multiplies a 16 x 64 tile of unsigned activation codes by a 64 x 8
//! panel of signed weight codes, 8,192 multiply-adds, where one 512-bit `vpdpbusd` does 64:
//! onnxruntime's int8 products use it on these CPUs (it asks Linux for the tile state). With
//! scales per group of 64 inputs ([`super::a8`]) each group's exact i32 sums must be scaled and
//! added on their own, so the AVX-512 part (per group: convert, take back `z · Σw`, scale, add)
//! costs more than the products here; still about half the 512-bit VNNI kernel's time.
//!
//! **Tiles.** A tile is 16 rows x 4 panels (32 channels). Registers: `tmm0`-`tmm3` the i32 sums
//! of the 4 panels (16 rows x 8 channels each), `tmm4` the row codes of the group (16 x 64 bytes,
//! row stride `kp`), `tmm5`-`tmm7` the weight panels in turn. A panel's group is 512 contiguous
//! bytes laid out as `tdpbusd` reads its second operand (16 rows of 4 inputs x 8 channels), so the
//! packed weights are used as they are in the file. Per group: load, 4 `tdpbusd`, store the sums
//! to a 2 KiB scratch, then per row and 16 channels `y = fma(Σuw − z · Σw, ws · xs, y)`: `Σuw`
//! and `z · Σw` are integers below 2²⁴, exact in f32, and `fnmadd` rounds their difference once,
//! to itself, so the bits are the definition's (and every other kernel's).
//!
//! **Availability.** The CPU must report AMX-TILE and AMX-INT8 and Linux must grant the tile data
//! state (`arch_prctl(ARCH_REQ_XCOMP_PERM)`, once per process); [`super::a8`] then checks the
//! kernel against the portable one before first use, as it does every VNNI kernel.
//! `BERTLING_A8_KERNEL=bertling_a8_avx512vnni` turns it off.

use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::a7::{tile_operands, ACT_GROUP};
use super::packed::{self, PANEL};
use super::vnni512::{halves, store_pair};

/// Rows a tile: an AMX tile's rows.
const MR: usize = 16;
/// Panels a tile: one sum tile each.
const NP: usize = 4;
/// i32 sums a scratch row: 4 panels of 8 channels.
const SCRATCH_ROW: usize = NP * PANEL;

/// Whether this CPU and OS run AMX int8 products, asking Linux for the tile state the first time.
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        use std::arch::is_x86_feature_detected as has;
        if !(has!("avx512f") && has!("avx512bw") && has!("fma")) {
            return false;
        }
        // CPUID leaf 7: EDX bit 24 AMX-TILE, bit 25 AMX-INT8.
        let leaf7 = __cpuid_count(7, 0);
        if leaf7.edx & (1 << 24) == 0 || leaf7.edx & (1 << 25) == 0 {
            return false;
        }
        request_tile_state()
    })
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: Linux enables the tile data state for
/// the process only on request (without it the first tile instruction faults).
#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: a system call that only sets a permission of this process; it reads no memory.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// A tile configuration (palette 1): `ldtilecfg`'s 64 bytes.
#[repr(C, align(64))]
struct Config([u8; 64]);

impl Config {
    /// `rows` rows and `kr` inputs (a multiple of 4, at most 64) a group.
    fn new(rows: usize, kr: usize) -> Config {
        let mut c = [0u8; 64];
        c[0] = 1;
        let mut set = |t: usize, colsb: usize, r: usize| {
            c[16 + 2 * t..18 + 2 * t].copy_from_slice(&(colsb as u16).to_le_bytes());
            c[48 + t] = r as u8;
        };
        for t in 0..NP {
            set(t, PANEL * 4, rows);
        }
        set(4, kr, rows);
        for t in 5..8 {
            set(t, PANEL * 4, kr / 4);
        }
        Config(c)
    }
}

/// Loads `cfg` into the tile registers.
#[inline(always)]
unsafe fn load_config(cfg: &Config) {
    asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
}

/// One group: the row codes at `a` (row stride `lda`), the `np` panels' weights at `b` (panel
/// stride `ldb` bytes), their sums `Σuw` to `scratch` (16 x 32 i32).
#[inline(always)]
unsafe fn group_sums(
    a: *const u8,
    lda: usize,
    b: *const i8,
    ldb: usize,
    np: usize,
    scratch: *mut i32,
) {
    const B_STRIDE: usize = PANEL * 4;
    const C_STRIDE: usize = SCRATCH_ROW * 4;
    asm!("tileloadd tmm4, [{a} + {s}*1]", a = in(reg) a, s = in(reg) lda, options(nostack, readonly));
    macro_rules! panel {
        ($j:literal, $c:literal, $b:literal) => {
            if $j < np {
                asm!(
                    concat!("tileloadd ", $b, ", [{b} + {s}*1]"),
                    concat!("tilezero ", $c),
                    concat!("tdpbusd ", $c, ", tmm4, ", $b),
                    b = in(reg) b.add($j * ldb),
                    s = in(reg) B_STRIDE,
                    options(nostack, readonly),
                );
            }
        };
    }
    panel!(0, "tmm0", "tmm5");
    panel!(1, "tmm1", "tmm6");
    panel!(2, "tmm2", "tmm7");
    panel!(3, "tmm3", "tmm5");
    macro_rules! store {
        ($j:literal, $c:literal) => {
            if $j < np {
                asm!(
                    concat!("tilestored [{c} + {s}*1], ", $c),
                    c = in(reg) scratch.add($j * PANEL),
                    s = in(reg) C_STRIDE,
                    options(nostack),
                );
            }
        };
    }
    store!(0, "tmm0");
    store!(1, "tmm1");
    store!(2, "tmm2");
    store!(3, "tmm3");
}

/// One tile: `r` rows from `m`, `np` panels from `p`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    (x, xs, xz): (*const u8, *const f32, Option<*const u8>),
    (w, ws, sums): (*const i8, *const f32, *const i32),
    kp: usize,
    (m, r, p, np, n): (usize, usize, usize, usize, usize),
    out: &mut [f32],
    ldo: usize,
    loaded: &mut (usize, usize),
) {
    let groups = kp.div_ceil(ACT_GROUP);
    // 16-channel vectors: panels (0, 1) and (2, 3).
    let nv = np.div_ceil(2);
    let mut scratch = Scratch([0; MR * SCRATCH_ROW]);
    let mut y = [[_mm512_setzero_ps(); 2]; MR];
    let last = kp - (groups - 1) * ACT_GROUP;
    for gi in 0..groups {
        let want = (r, if gi + 1 == groups { last } else { ACT_GROUP });
        if *loaded != want {
            load_config(&Config::new(want.0, want.1));
            *loaded = want;
        }
        let k0 = gi * ACT_GROUP;
        group_sums(
            x.add(k0),
            kp,
            w.add(k0 * PANEL),
            PANEL * kp,
            np,
            scratch.0.as_mut_ptr(),
        );
        // Per 16 channels: Σw (the column sums hold 64 · Σw) and the weight scales.
        let mut sw = [_mm512_setzero_ps(); 2];
        let mut wsv = [_mm512_setzero_ps(); 2];
        for v in 0..nv {
            let at = 2 * v * groups * PANEL + gi * PANEL;
            let next = (2 * v + 1 < np).then_some(groups * PANEL);
            let c = halves(sums.add(at), next.map(|d| sums.add(at + d)));
            sw[v] = _mm512_cvtepi32_ps(_mm512_srai_epi32::<6>(c));
            let s = halves(ws.add(at), next.map(|d| ws.add(at + d)));
            wsv[v] = _mm512_castsi512_ps(s);
        }
        for (i, y) in y.iter_mut().enumerate().take(r) {
            // Without zero points the codes are offset by 64 (`a7`'s 7-bit codes).
            let z = match xz {
                Some(z) => *z.add(i * groups + gi) as f32,
                None => 64.0,
            };
            let (z, xsv) = (_mm512_set1_ps(z), _mm512_set1_ps(*xs.add(i * groups + gi)));
            for v in 0..nv {
                let c = _mm512_loadu_si512(scratch.0.as_ptr().add(i * SCRATCH_ROW + 16 * v) as _);
                let sum = _mm512_fnmadd_ps(z, sw[v], _mm512_cvtepi32_ps(c));
                y[v] = _mm512_fmadd_ps(sum, _mm512_mul_ps(wsv[v], xsv), y[v]);
            }
        }
    }
    for (i, y) in y.iter().enumerate().take(r) {
        let row = &mut out[(m + i) * ldo..];
        for (v, y) in y.iter().enumerate().take(nv) {
            store_pair(*y, p + 2 * v, 2 * v + 1 < np, n, row);
        }
    }
}

/// The sums of a tile, as `tilestored` writes them.
#[repr(C, align(64))]
struct Scratch([i32; MR * SCRATCH_ROW]);

/// [`super::a7::Simd`]'s product with AMX `tdpbusd`: codes the unsigned bytes `u`.
///
/// # Safety
/// [`available`] returned true; the slices are as long as [`super::a8`]'s checks require.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw")]
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
    if kp == 0 {
        return;
    }
    let operands = ((x, x_scale, x_zero), (w, w_scale, sums));
    // The configuration in the tile registers (rows, inputs a group): `ldtilecfg` only on a change.
    let mut loaded = (0, 0);
    packed::tiles::<MR, NP>(kp, rows, panels, |m, r, p, np| {
        let (xr, wr) = tile_operands(operands, kp, (m, p));
        tile(xr, wr, kp, (m, r, p, np, n), out, ldo, &mut loaded);
    });
    asm!("tilerelease", options(nostack, nomem));
}
