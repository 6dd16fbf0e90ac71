//! `bertling::predictions::top_k_softmax` over a whole vocabulary row: BERT-uncased (30522) and
//! RoBERTa (50265) sizes, k = 5 (the pipeline's default) and 64 (the most a request may ask).
//!
//! `cargo bench -p bertling --bench top_k`

use std::hint::black_box;

use bertling::predictions::{top_k_softmax, MaskPrediction};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Deterministic logits shaped like a masked-LM row: mostly small, a few large.
fn logits(n: usize) -> Vec<f32> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
            (u - 0.5) * 8.0 + if u > 0.9995 { 10.0 } else { 0.0 }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("top_k_softmax");
    for vocab in [30522usize, 50265] {
        let row = logits(vocab);
        g.throughput(Throughput::Elements(vocab as u64));
        for k in [5usize, 64] {
            let mut out = MaskPrediction::default();
            g.bench_function(format!("vocab{vocab}/k{k}"), |b| {
                b.iter(|| {
                    top_k_softmax(black_box(&row), k, &mut out);
                    black_box(out.candidates.len())
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
