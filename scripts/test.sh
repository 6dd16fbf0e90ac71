#!/usr/bin/env bash
# The test command: formatting, lints, the Rust tests and the Python reference tests
# (live onnxruntime and Python tokenizers). Installs its own Python venv if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

bash models/setup-venv.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build -p bertling-tools
export BERTLING_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/bertling"
cargo test --workspace
.venv/bin/python -m pytest -q tests/python models/tests
