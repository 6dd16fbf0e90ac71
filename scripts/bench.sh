#!/usr/bin/env bash
# The benchmark, in one command, on a fresh machine: installs the dev venv (torch, transformers,
# onnxruntime), builds bertling in release, builds and caches the base-size exports (ALBERT,
# DistilBERT, BERT, RoBERTa; ~/.cache/bertling/base), compiles them, quantizes them for
# onnxruntime, and measures bertling, onnxruntime, the PyTorch pipeline and plain tract-onnx side by
# side (bench/run.py). Rewrites BENCHMARKS.md; raw timings go to target/bench/results.json.
#   scripts/bench.sh                                  # everything (~25 min on the 2-core build machine)
#   scripts/bench.sh --models distilbert --runs 10    # any bench/run.py option passes through
set -euo pipefail
cd "$(dirname "$0")/.."
export BERTLING_BENCH_T0="$(date +%s)"
bash models/setup-venv.sh --dev
cargo build --release -p bertling-tools
export PYTHONPATH=models
exec .venv/bin/python bench/run.py --bin target/release/bertling --command "scripts/bench.sh${*:+ $*}" "$@"
