//! Tokenization as a request does it (`Model::encode`: generic mask substituted, then the Hugging
//! Face tokenizer with special tokens, no padding or truncation), on the committed tiny fixture
//! tokenizers and, when a base export is in the cache, the real bert-base-uncased WordPiece one
//! (`~/.cache/bertling/base/distilbert/tokenizer.json`, or `$BERTLING_BASE_DIR/distilbert/`).
//!
//! `cargo bench -p bertling --bench tokenize`

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokenizers::Tokenizer;

const SHORT: &str = "If you don't [MASK] at the sign, you will get a ticket.";

fn long_text() -> String {
    let s = "The quick brown fox jumps over the lazy dog near the river bank, while children \
             play in the park and the old man reads his newspaper on a wooden bench. ";
    let mut t = s.repeat(3);
    t.push_str("Nobody knew why the [MASK] had stopped working.");
    t
}

fn load(path: &PathBuf) -> Option<Tokenizer> {
    let mut tok = Tokenizer::from_file(path).ok()?;
    tok.with_padding(None);
    tok.with_truncation(None).ok()?;
    Some(tok)
}

fn tokenizers() -> Vec<(String, Tokenizer, &'static str)> {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures");
    let mut out = vec![];
    for (arch, mask) in [
        ("albert", "[MASK]"),
        ("distilbert", "[MASK]"),
        ("bert", "[MASK]"),
        ("roberta", "<mask>"),
    ] {
        if let Some(t) = load(&fixtures.join(arch).join("tokenizer.json")) {
            out.push((format!("tiny-{arch}"), t, mask));
        }
    }
    let base = std::env::var_os("BERTLING_BASE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/bertling/base"))
        });
    if let Some(t) = base.and_then(|b| load(&b.join("distilbert/tokenizer.json"))) {
        out.push(("bert-base-uncased".to_string(), t, "[MASK]"));
    }
    out
}

fn bench(c: &mut Criterion) {
    let long = long_text();
    let mut g = c.benchmark_group("tokenize");
    for (name, tok, mask) in tokenizers() {
        for (len, text) in [("short", SHORT), ("long", long.as_str())] {
            let mut buf = String::with_capacity(256);
            g.throughput(Throughput::Bytes(text.len() as u64));
            g.bench_function(format!("{name}/{len}"), |b| {
                b.iter(|| {
                    bertling::text::substitute_mask(black_box(text), mask, &mut buf);
                    let enc = tok.encode(buf.as_str(), true).expect("encodes");
                    black_box(enc.get_ids().len())
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
