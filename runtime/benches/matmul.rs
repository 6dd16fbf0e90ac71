//! The encoder's matrix products through tract, as the runtime runs them: activations
//! `[seq x k]` times a constant weight `[k x n]` (packed once when the plan is optimized), for the
//! shapes of a base-size layer: attention projections 768x768, FFN up 768x3072, FFN down 3072x768;
//! seq 16 and 128; one thread.
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

criterion_group!(benches, bench);
criterion_main!(benches);
