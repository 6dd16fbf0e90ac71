#!/usr/bin/env bash
# Fuzzes the model loader (runtime/fuzz, target model_loader) for SECONDS (default 600), seeded
# with the four tiny fixtures compiled fp32 and int8. Needs cargo-fuzz (`cargo install cargo-fuzz`);
# runs on stable through RUSTC_BOOTSTRAP, without sanitizers (`-s none`).
#   scripts/fuzz-loader.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
corpus=runtime/fuzz/corpus/model_loader
mkdir -p "$corpus"
cargo build -q -p bertling-tools --bin bertling
for arch in albert distilbert bert roberta; do
    for p in fp32 int8; do
        # Rewritten every run, so the seeds are in the format this build writes.
        target/debug/bertling compile "models/fixtures/$arch" -o "$corpus/seed-$arch-$p.bertling" --precision "$p" >/dev/null
    done
done
cd runtime/fuzz
RUSTC_BOOTSTRAP=1 cargo fuzz run model_loader -s none -- -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=2000000
