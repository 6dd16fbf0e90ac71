//! The encoder's matrix products through tract, as the runtime runs them: activations
//! `[seq x k]` times a constant weight `[k x n]` (packed once when the plan is optimized), for the
//! shapes of a base-size layer: attention projections 768x768, FFN up 768x3072, FFN down 3072x768;
//! seq 16 and 128; one thread. Then bertling's int8 kernels on the same shapes.
//!
//! `cargo bench -p bertling --bench matmul`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tract_core::internal::*;
use tract_core::ops::einsum::EinSum;

fn plan(m: usize, k: usize, n: usize) -> TractResult<Arc<TypedSimplePlan>> {
    let mut model = TypedModel::default();
    let a = model.add_source("a", f32::fact([m, k]))?;
    let w: Vec<f32> = (0..k * n)
        .map(|i| ((i % 97) as f32 - 48.0) * 1e-3)
        .collect();
    let w = model.add_const("w", Tensor::from_shape(&[k, n], &w)?)?;
    let out = model.wire_node(
        "matmul",
        EinSum::new("mk,kn->mn".parse()?, f32::datum_type()),
        &[a, w],
    )?;
    model.select_output_outlets(&out)?;
    TypedSimplePlan::new(model.into_optimized()?)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("encoder_matmul");
    g.sample_size(20);
    for seq in [16usize, 128] {
        for (k, n, what) in [
            (768, 768, "qkvo"),
            (768, 3072, "ffn_up"),
            (3072, 768, "ffn_down"),
        ] {
            let plan = plan(seq, k, n).expect("plans");
            let mut state = plan.spawn().expect("spawns");
            let x: Vec<f32> = (0..seq * k)
                .map(|i| ((i % 13) as f32 - 6.0) * 0.1)
                .collect();
            let x = Tensor::from_shape(&[seq, k], &x).expect("tensor");
            g.throughput(Throughput::Elements((2 * seq * k * n) as u64)); // FLOPs
            g.bench_function(format!("{what}/seq{seq}x{k}x{n}"), |b| {
                b.iter(|| {
                    let out = state.run(tvec![x.clone().into_tvalue()]).expect("runs");
                    black_box(out.len())
                })
            });
        }
    }
    g.finish();
}

/// bertling's own int8 products (`bertling::int8`), each with the per-row quantization of the f32
/// activations that precedes it in a request (and without it, `-gemm-only`); one thread: `a7`,
/// what format 4 files run (7-bit activations with a scale per 64 inputs); `panel`,
/// what format 3 files run (12-bit activations, panel-packed weights, a scale per 64 inputs);
/// `a12`, the row-major kernel of a tied output projection; `a8`, format 2's 8-bit kernel.
fn bench_int8(c: &mut Criterion) {
    use bertling::int8::{a7, kernel, packed, wide};
    let mut g = c.benchmark_group("encoder_matmul_int8");
    g.sample_size(20);
    for seq in [16usize, 128] {
        for (k, n, what) in [
            (768, 768, "qkvo"),
            (768, 3072, "ffn_up"),
            (3072, 768, "ffn_down"),
        ] {
            let x: Vec<f32> = (0..seq * k)
                .map(|i| ((i % 13) as f32 - 6.0) * 0.1)
                .collect();
            let w: Vec<i8> = (0..n * k).map(|i| ((i * 7919) % 255) as i8).collect();
            let w_scale = vec![1e-3f32; n];
            let mut out = vec![0f32; seq * n];
            let mut scales = vec![0f32; seq];
            g.throughput(Throughput::Elements((2 * seq * k * n) as u64)); // FLOPs
            let mut codes8 = vec![0i8; seq * k];
            g.bench_function(format!("a8/{what}/seq{seq}x{k}x{n}"), |b| {
                b.iter(|| {
                    kernel::quantize_rows(&x, k, &mut codes8, &mut scales);
                    kernel::gemm_i8(&codes8, &scales, &w, &w_scale, k, seq, (0, n), &mut out, n);
                    black_box(out[0])
                })
            });
            g.bench_function(format!("a8-gemm-only/{what}/seq{seq}x{k}x{n}"), |b| {
                b.iter(|| {
                    kernel::gemm_i8(&codes8, &scales, &w, &w_scale, k, seq, (0, n), &mut out, n);
                    black_box(out[0])
                })
            });
            let mut codes16 = vec![0i16; seq * k];
            let qmax = wide::act_max(k, wide::ACT_MAX_DEFAULT);
            g.bench_function(format!("a12/{what}/seq{seq}x{k}x{n}"), |b| {
                b.iter(|| {
                    wide::quantize_rows(&x, k, qmax, &mut codes16, &mut scales);
                    wide::gemm(&codes16, &scales, &w, &w_scale, k, seq, (0, n), &mut out, n);
                    black_box(out[0])
                })
            });
            let wp = packed::pack(&w, n, k);
            let gs = vec![1e-3f32; packed::scales_len(n, k)];
            let mut codes_p = vec![0i16; seq * packed::padded_k(k)];
            g.bench_function(format!("panel/{what}/seq{seq}x{k}x{n}"), |b| {
                b.iter(|| {
                    packed::quantize_rows(&x, k, qmax, &mut codes_p, &mut scales);
                    let p = (0, packed::panels(n));
                    packed::gemm(&codes_p, &scales, qmax, &wp, &gs, k, n, seq, p, &mut out, n);
                    black_box(out[0])
                })
            });
            g.bench_function(format!("panel-gemm-only/{what}/seq{seq}x{k}x{n}"), |b| {
                b.iter(|| {
                    let p = (0, packed::panels(n));
                    packed::gemm(&codes_p, &scales, qmax, &wp, &gs, k, n, seq, p, &mut out, n);
                    black_box(out[0])
                })
            });
            let sums = a7::column_sums(&wp, n, k);
            let mut codes7 = vec![0u8; seq * packed::padded_k(k)];
            let mut scales7 = vec![0f32; seq * a7::groups(k)];
            let offset = a7::code_offset();
            g.bench_function(format!("a7/{what}/seq{seq}x{k}x{n}"), |b| {
                b.iter(|| {
                    a7::quantize_rows(&x, k, offset, &mut codes7, &mut scales7);
                    let p = (0, packed::panels(n));
                    a7::gemm(
                        &codes7, &scales7, None, &wp, &gs, &sums, k, n, seq, p, &mut out, n,
                    );
                    black_box(out[0])
                })
            });
            g.bench_function(format!("a7-gemm-only/{what}/seq{seq}x{k}x{n}"), |b| {
                b.iter(|| {
                    let p = (0, packed::panels(n));
                    a7::gemm(
                        &codes7, &scales7, None, &wp, &gs, &sums, k, n, seq, p, &mut out, n,
                    );
                    black_box(out[0])
                })
            });
            g.bench_function(format!("a12-gemm-only/{what}/seq{seq}x{k}x{n}"), |b| {
                b.iter(|| {
                    wide::gemm(&codes16, &scales, &w, &w_scale, k, seq, (0, n), &mut out, n);
                    black_box(out[0])
                })
            });
        }
    }
    g.finish();
}

/// The default int8 product (`--int8-activations grouped8`, [`bertling::int8::a8`]) with the
/// kernel this CPU picks, with and without its quantization; and the two group quantizers alone
/// (bytes, for the VNNI and NEON kernels; i16 `u − z`, for the AVX2 one), whichever this CPU runs.
fn bench_grouped8(c: &mut Criterion) {
    use bertling::int8::{a7, a8, packed};
    let mut g = c.benchmark_group("encoder_matmul_grouped8");
    g.sample_size(20);
    for seq in [16usize, 128] {
        for (k, n, what) in [
            (768, 768, "qkvo"),
            (768, 3072, "ffn_up"),
            (3072, 768, "ffn_down"),
        ] {
            let x: Vec<f32> = (0..seq * k)
                .map(|i| ((i % 13) as f32 - 6.0) * 0.1)
                .collect();
            let w: Vec<i8> = (0..n * k).map(|i| ((i * 7919) % 255) as i8).collect();
            let (wp, sums) = (
                packed::pack(&w, n, k),
                a7::column_sums(&packed::pack(&w, n, k), n, k),
            );
            let ws = vec![1e-3f32; packed::scales_len(n, k)];
            let (kp, gr) = (packed::padded_k(k), a8::groups(k));
            let (mut bytes, mut zeros) = (vec![0u8; seq * kp], vec![0u8; seq * gr]);
            let (mut wide, mut xs) = (vec![0i16; seq * kp], vec![0f32; seq * gr]);
            let mut out = vec![0f32; seq * n];
            let p = (0, packed::panels(n));
            let offset = a8::code_offset();
            let mut product = |with_quantize: bool| {
                let codes = if a8::wide_codes() {
                    if with_quantize {
                        a8::quantize_rows_wide(&x, k, &mut wide, &mut xs);
                    }
                    a8::Codes::Wide(&wide)
                } else {
                    if with_quantize {
                        a8::quantize_rows(&x, k, offset, &mut bytes, &mut xs, &mut zeros);
                    }
                    a8::Codes::Bytes(&bytes, &zeros)
                };
                a8::gemm(codes, &xs, &wp, &ws, &sums, k, n, seq, p, &mut out, n);
                black_box(out[0])
            };
            product(true);
            g.throughput(Throughput::Elements((2 * seq * k * n) as u64)); // FLOPs
            g.bench_function(format!("grouped8/{what}/seq{seq}x{k}x{n}"), |b| {
                b.iter(|| product(true))
            });
            g.bench_function(format!("grouped8-gemm-only/{what}/seq{seq}x{k}x{n}"), |b| {
                b.iter(|| product(false))
            });
            if n != 768 || k != 768 {
                continue; // the quantizers depend on seq and k only
            }
            for k in [768usize, 3072] {
                let x: Vec<f32> = (0..seq * k)
                    .map(|i| ((i % 13) as f32 - 6.0) * 0.1)
                    .collect();
                let (kp, gr) = (packed::padded_k(k), a8::groups(k));
                let (mut bytes, mut zeros) = (vec![0u8; seq * kp], vec![0u8; seq * gr]);
                let (mut wide, mut xs) = (vec![0i16; seq * kp], vec![0f32; seq * gr]);
                g.throughput(Throughput::Elements((seq * k) as u64)); // values
                g.bench_function(format!("quantize-bytes/seq{seq}x{k}"), |b| {
                    b.iter(|| {
                        a8::quantize_rows(&x, k, offset, &mut bytes, &mut xs, &mut zeros);
                        black_box(bytes[0])
                    })
                });
                g.bench_function(format!("quantize-wide/seq{seq}x{k}"), |b| {
                    b.iter(|| {
                        a8::quantize_rows_wide(&x, k, &mut wide, &mut xs);
                        black_box(wide[0])
                    })
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, bench, bench_int8, bench_grouped8);
criterion_main!(benches);
